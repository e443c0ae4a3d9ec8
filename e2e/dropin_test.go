package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// allowlistFile is RHACM's default observability-metrics-allowlist ConfigMap.
const allowlistFile = "../agent/testdata/allowlist/rhacm-metrics-allowlist.yaml"

// opAllowlist is the metrics_list.yaml document as RHACM's endpoint operator reads it
// (operators/pkg/config MetricsAllowlist).
type opAllowlist struct {
	Names          []string          `yaml:"names"`
	Matches        []string          `yaml:"matches"`
	Renames        map[string]string `yaml:"renames"`
	RecordingRules []struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	} `yaml:"recording_rules"`
	CollectRules []struct {
		Group    string `yaml:"group"`
		Selector struct {
			MatchExpressions []struct {
				Key      string   `yaml:"key"`
				Operator string   `yaml:"operator"`
				Values   []string `yaml:"values"`
			} `yaml:"matchExpressions"`
		} `yaml:"selector"`
		Rules []struct {
			Collect        string `yaml:"collect"`
			Expr           string `yaml:"expr"`
			For            string `yaml:"for"`
			DynamicMetrics struct {
				Names   []string `yaml:"names"`
				Matches []string `yaml:"matches"`
			} `yaml:"dynamic_metrics"`
		} `yaml:"rules"`
	} `yaml:"collect_rules"`
}

// operatorCluster is what the operator knows of the managed cluster.
type operatorCluster struct {
	name, id, clusterType string
	intervalSeconds       int // ObservabilityAddon spec.interval
}

var nameInMatch = regexp.MustCompile(`__name__="([^,]*)"`)

// operatorCommand renders the metrics-collector container's command as RHACM's endpoint
// operator does (operators/endpointmetrics/pkg/collector/metrics_collector.go getCommands, for a
// cluster whose Prometheus the operator did not install): the binary, the fixed flags, then the
// collect rules of the groups whose selector matches the cluster type, a --match for every name
// and match that no collect rule federates dynamically, a --rename per rename and a
// --recordingrule per recording rule, the metric arguments sorted together. $(FROM), $(FROM_QUERY)
// and $(TO) are left for the kubelet to expand.
func operatorCommand(t *testing.T, al opAllowlist, c operatorCluster) []string {
	t.Helper()
	interval := fmt.Sprintf("%ds", c.intervalSeconds)
	evaluate := "30s"
	if c.intervalSeconds < 30 {
		evaluate = interval
	}
	cmd := []string{
		"/usr/bin/metrics-collector",
		"--listen=:8080",
		"--from=$(FROM)",
		"--from-query=$(FROM_QUERY)",
		"--to-upload=$(TO)",
		"--to-upload-ca=/tlscerts/ca/ca.crt",
		"--to-upload-cert=/tlscerts/certs/tls.crt",
		"--to-upload-key=/tlscerts/certs/tls.key",
		"--interval=" + interval,
		"--evaluate-interval=" + evaluate,
		"--limit-bytes=1073741824",
		fmt.Sprintf(`--label="cluster=%s"`, c.name),
		fmt.Sprintf(`--label="clusterID=%s"`, c.id),
		"--from-token-file=/var/run/secrets/kubernetes.io/serviceaccount/token",
		"--from-ca-file=/etc/serving-certs-ca-bundle/service-ca.crt",
	}
	if c.clusterType != "" {
		cmd = append(cmd, fmt.Sprintf(`--label="clusterType=%s"`, c.clusterType))
	}
	start := len(cmd)
	dynamic := map[string]bool{}
	for _, g := range al.CollectRules {
		for _, e := range g.Selector.MatchExpressions {
			in := false
			for _, v := range e.Values {
				in = in || (e.Key == "clusterType" && v == c.clusterType)
			}
			if (e.Operator == "In") != in {
				continue
			}
			for _, r := range g.Rules {
				var matches []string
				for _, m := range r.DynamicMetrics.Matches {
					matches = append(matches, `"`+strings.ReplaceAll(m, `"`, `\"`)+`"`)
					if n := nameInMatch.FindStringSubmatch(m); n != nil {
						dynamic[n[1]] = true
					}
				}
				for _, n := range r.DynamicMetrics.Names {
					dynamic[n] = true
				}
				cmd = append(cmd, fmt.Sprintf(`--collectrule={"name":"%s","expr":"%s","for":"%s","names":%v,"matches":%v}`,
					r.Collect, r.Expr, r.For, `["`+strings.Join(r.DynamicMetrics.Names, `","`)+`"]`, "["+strings.Join(matches, ",")+"]"))
			}
		}
	}
	for _, n := range al.Names {
		if !dynamic[n] {
			cmd = append(cmd, fmt.Sprintf(`--match={__name__="%s"}`, n))
		}
	}
	for _, m := range al.Matches {
		if n := nameInMatch.FindStringSubmatch(m); n != nil && dynamic[n[1]] {
			continue
		}
		cmd = append(cmd, fmt.Sprintf("--match={%s}", m))
	}
	for k, v := range al.Renames {
		cmd = append(cmd, fmt.Sprintf(`--rename="%s=%s"`, k, v))
	}
	for _, r := range al.RecordingRules {
		cmd = append(cmd, fmt.Sprintf(`--recordingrule={"name":"%s","query":"%s"}`, r.Record, r.Expr))
	}
	sort.Strings(cmd[start:])
	return cmd
}

// loadOperatorAllowlist reads the metrics_list.yaml key of the allowlist ConfigMap.
func loadOperatorAllowlist(t *testing.T) opAllowlist {
	t.Helper()
	b, err := os.ReadFile(allowlistFile)
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	var al opAllowlist
	if err := yaml.Unmarshal([]byte(cm.Data["metrics_list.yaml"]), &al); err != nil {
		t.Fatal(err)
	}
	if len(al.Names) == 0 || len(al.Renames) == 0 || len(al.RecordingRules) == 0 || len(al.CollectRules) == 0 {
		t.Fatalf("%s: names, renames, recording rules or collect rules missing", allowlistFile)
	}
	return al
}

// kubeletExpand replaces $(VAR) by its value, as the kubelet does in a container's command.
func kubeletExpand(args []string, env map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		for k, v := range env {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		out[i] = a
	}
	return out
}

// seedModel is what the seed (MCO metrics-collector) makes of the operator's arguments, computed
// here from the arguments alone: the selectors it federates, the recording rules it evaluates and
// its transforms (--label overriding, --rename, the default elided labels).
type seedModel struct {
	matchers []string
	rules    map[string]string // name → query
	labels   map[string]string
	renames  map[string]string
	elide    []string
}

func newSeedModel(t *testing.T, args []string) seedModel {
	t.Helper()
	m := seedModel{rules: map[string]string{}, labels: map[string]string{}, renames: map[string]string{},
		elide: []string{"prometheus", "prometheus_replica", "managed_cluster"}}
	pflagCSV := func(v string) []string { // pflag's StringSlice: the value is one CSV record
		rec, err := csv.NewReader(strings.NewReader(v)).Read()
		if err != nil {
			t.Fatalf("the seed refuses %q: %v", v, err)
		}
		return rec
	}
	for _, a := range args[1:] {
		name, v, _ := strings.Cut(a, "=")
		switch name {
		case "--match":
			m.matchers = append(m.matchers, v)
		case "--label":
			for _, kv := range pflagCSV(v) {
				k, val, _ := strings.Cut(kv, "=")
				m.labels[k] = val
			}
		case "--rename":
			for _, kv := range pflagCSV(v) {
				k, val, _ := strings.Cut(kv, "=")
				m.renames[k] = val
			}
		case "--recordingrule":
			var r struct{ Name, Query string }
			if err := json.Unmarshal([]byte(v), &r); err != nil {
				t.Fatalf("the seed refuses %s: %v", a, err)
			}
			m.rules[r.Name] = r.Query
		}
	}
	return m
}

// transform applies the seed's Label, Rename and Elide to one series and drops empty values.
func (m seedModel) transform(ls map[string]string) string {
	out := map[string]string{}
	for k, v := range ls {
		out[k] = v
	}
	for k, v := range m.labels {
		out[k] = v
	}
	if nw, ok := m.renames[out["__name__"]]; ok {
		out["__name__"] = nw
	}
	for _, k := range m.elide {
		delete(out, k)
	}
	return seriesKey(out)
}

// expected queries the source as the seed would (each selector, each recording rule at the
// current time) and returns the series it would send.
func (m seedModel) expected(src string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, sel := range m.matchers {
		res, err := vectorLabels(src, sel)
		if err != nil {
			return nil, err
		}
		for _, ls := range res {
			out[m.transform(ls)] = true
		}
	}
	for name, q := range m.rules {
		res, err := vectorLabels(src, q)
		if err != nil {
			return nil, fmt.Errorf("recording rule %s: %w", name, err)
		}
		for _, ls := range res {
			ls["__name__"] = name
			out[m.transform(ls)] = true
		}
	}
	return out, nil
}

// seriesKey is a label set as name{k="v", ...}, labels sorted, empty values dropped.
func seriesKey(ls map[string]string) string {
	var parts []string
	for k, v := range ls {
		if k != "__name__" && v != "" {
			parts = append(parts, fmt.Sprintf("%s=%q", k, v))
		}
	}
	sort.Strings(parts)
	return ls["__name__"] + "{" + strings.Join(parts, ", ") + "}"
}

// dropinRules are recording rules of the source Prometheus that give the allowlist something to
// select: a renamed metric, a series whose cluster and clusterID labels the seed overrides and
// whose managed_cluster and prometheus_replica labels it elides, and container_memory_rss, which
// the operator leaves out of --match on an SNO cluster (a collect rule federates it) but which the
// recording rule container_memory_rss:sum aggregates.
const dropinRules = `groups:
  - name: dropin
    interval: 1s
    rules:
      - record: etcd_mvcc_db_total_size_in_bytes
        expr: vector(1048576)
        labels: {job: etcd, instance: "10.0.0.1:2379"}
      - record: namespace:kube_pod_container_resource_requests_cpu_cores:sum
        expr: vector(2)
        labels: {namespace: ns1}
      - record: cluster:capacity_cpu_cores:sum
        expr: vector(4)
        labels: {cluster: wrong, clusterID: wrong-id, managed_cluster: mc, prometheus_replica: replica-0}
      - record: container_memory_rss
        expr: vector(100)
        labels: {container: c1, namespace: ns1, pod: p1}
`

// writePKI writes a CA and a client certificate and key signed by it, as PEM files in dir.
func writePKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "e2e client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.crt", "CERTIFICATE", caDER), write("tls.crt", "CERTIFICATE", der), write("tls.key", "EC PRIVATE KEY", kb)
}

// TestDropInOperatorCommand is the drop-in proof: the collector binary, installed as
// /usr/bin/metrics-collector, runs the exact command RHACM's endpoint operator renders from the
// default allowlist for an SNO cluster (every match, rename, recording rule and collect rule, the
// quotes inside --label and --rename, duplicates, no command and no --id; FROM, FROM_QUERY and TO
// in the environment and expanded by the kubelet), against a real Prometheus and a real receiver.
// Only what belongs to the pod is replaced: the mounted certificate and token paths by files of
// the test, port 8080 by a free port, and the WAL directory comes from COLLECTOR_WAL_DIR (the
// operator's command has none). The receiver gets exactly the series the seed would send,
// computed from the same arguments by a model of the seed (cluster, clusterID and clusterType set,
// overriding the source's, renames applied, prometheus, prometheus_replica and managed_cluster
// elided, recording rules evaluated), /healthz/ready answers 200, and SIGTERM ends it with 0.
func TestDropInOperatorCommand(t *testing.T) {
	t.Parallel()
	tails := &logTails{}
	rulesDir := testDir(t, "source-rules")
	rules := filepath.Join(rulesDir, "dropin.rules.yml")
	if err := os.WriteFile(rules, []byte(dropinRules), 0o644); err != nil {
		t.Fatal(err)
	}
	src := startPrometheus(t, tails, "source", promConfig{Config: sourceConfig + fmt.Sprintf("rule_files: [%q]\n", rules)})
	rcv := startPrometheus(t, tails, "receiver", promConfig{Config: receiverConfig, Receiver: true})
	// The seed's result depends on what the source holds: wait until it holds all of it.
	eventually(t, 60*time.Second, "the source's series", func() error {
		for q, want := range map[string]float64{`count(up)`: 2, `count(etcd_mvcc_db_total_size_in_bytes)`: 1, `count(cluster:capacity_cpu_cores:sum)`: 1, `count(container_memory_rss)`: 1} {
			n, err := scalarQuery(src.URL(), q, time.Time{})
			if err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("%s = %v, want %v", q, n, want)
			}
		}
		return nil
	})

	cluster := operatorCluster{name: "spoke-1", id: "5f3c1e2a-7b9d-4c1e-9a2b-0d4e6f8a1b2c", clusterType: "SNO", intervalSeconds: 15}
	command := operatorCommand(t, loadOperatorAllowlist(t), cluster)
	checkRendered(t, command)

	// The pod: the binary under the seed's name, the mounts, the environment.
	pod := testDir(t, "pod")
	bin := filepath.Join(pod, "metrics-collector")
	if err := os.Symlink(collectorBin, bin); err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile := writePKI(t, pod)
	tokenFile := filepath.Join(pod, "token")
	if err := os.WriteFile(tokenFile, []byte("sa-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	mounts := strings.NewReplacer(
		"/tlscerts/ca/ca.crt", caFile, "/tlscerts/certs/tls.crt", certFile, "/tlscerts/certs/tls.key", keyFile,
		"/var/run/secrets/kubernetes.io/serviceaccount/token", tokenFile,
		"/etc/serving-certs-ca-bundle/service-ca.crt", caFile,
		"--listen=:8080", fmt.Sprintf("--listen=127.0.0.1:%d", port),
	)
	env := map[string]string{"FROM": src.URL(), "FROM_QUERY": src.URL(), "TO": rcv.WriteURL()}
	args := kubeletExpand(command, env)
	envArgs := []string{"FROM=" + env["FROM"], "FROM_QUERY=" + env["FROM_QUERY"], "TO=" + env["TO"],
		"COLLECTOR_WAL_DIR=" + filepath.Join(pod, "wal")}
	argv := append(envArgs, bin)
	for _, a := range args[1:] {
		argv = append(argv, mounts.Replace(a))
	}
	p := startProcess(t, tails, "metrics-collector", filepath.Join(pod, "collector.log"), "/usr/bin/env", argv...)
	waitHTTP(t, p, fmt.Sprintf("http://127.0.0.1:%d/healthz/ready", port), readyTimeout)

	seed := newSeedModel(t, args)
	var want map[string]bool
	eventually(t, 90*time.Second, "the seed's series at the receiver", func() error {
		if p.exited() {
			return errExited{p.name, p.err}
		}
		var err error
		if want, err = seed.expected(src.URL()); err != nil {
			return err
		}
		res, err := vectorLabels(rcv.URL(), `{__name__=~".+"}`)
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, ls := range res {
			got[seriesKey(ls)] = true
		}
		var diff []string
		for k := range want {
			if !got[k] {
				diff = append(diff, "missing "+k)
			}
		}
		for k := range got {
			if !want[k] {
				diff = append(diff, "unexpected "+k)
			}
		}
		sort.Strings(diff)
		if len(diff) > 0 {
			return fmt.Errorf("%d differences: %s", len(diff), strings.Join(diff, "; "))
		}
		return nil
	})

	// The model is not trusted alone: the series that show each transform are spelled out.
	labels := fmt.Sprintf(`cluster="spoke-1", clusterID=%q, clusterType="SNO"`, cluster.id)
	for _, k := range []string{
		fmt.Sprintf(`up{%s, instance=%q, job="prometheus"}`, labels, src.addr()),
		fmt.Sprintf(`up{%s, instance=%q, job="other"}`, labels, src.addr()),
		fmt.Sprintf(`etcd_debugging_mvcc_db_total_size_in_bytes{%s, instance="10.0.0.1:2379", job="etcd"}`, labels),
		fmt.Sprintf(`namespace_cpu:kube_pod_container_resource_requests:sum{%s, namespace="ns1"}`, labels),
		fmt.Sprintf(`cluster:capacity_cpu_cores:sum{%s}`, labels),
		fmt.Sprintf(`container_memory_rss:sum{%s, container="c1", namespace="ns1"}`, labels),
	} {
		if !want[sortedKey(k)] {
			t.Errorf("the receiver lacks %s", k)
		}
	}
	for k := range want {
		if strings.HasPrefix(k, "container_memory_rss{") || strings.HasPrefix(k, "etcd_mvcc_db_total_size_in_bytes{") {
			t.Errorf("unexpected at the receiver: %s", k)
		}
	}
	if len(want) != 6 {
		t.Errorf("%d series at the receiver, want the 6 above", len(want))
	}

	ok, err := p.stop(stopTimeout)
	if !ok || err != nil {
		t.Fatalf("after SIGTERM: exited in time %v, status %v; want exit 0", ok, err)
	}
}

// sortedKey re-sorts the labels of a key written by hand, as seriesKey writes them.
func sortedKey(k string) string {
	name, rest, _ := strings.Cut(k, "{")
	parts := strings.Split(strings.TrimSuffix(rest, "}"), ", ")
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ", ") + "}"
}

// checkRendered checks that the rendered command is what the issue describes: the seed's binary,
// no command, no --id, quotes inside --label and --rename, every kind of argument, duplicates kept.
func checkRendered(t *testing.T, command []string) {
	t.Helper()
	count := map[string]int{}
	seen := map[string]int{}
	for _, a := range command[1:] {
		name, _, _ := strings.Cut(a, "=")
		count[name]++
		seen[a]++
	}
	if command[0] != "/usr/bin/metrics-collector" || !strings.HasPrefix(command[1], "--") || count["--id"] != 0 {
		t.Fatalf("rendered command starts %q", command[:2])
	}
	for _, name := range []string{"--match", "--rename", "--recordingrule", "--collectrule"} {
		if count[name] == 0 {
			t.Errorf("no %s rendered", name)
		}
	}
	if seen[`--match={__name__="node_cpu_seconds_total"}`] != 2 {
		t.Errorf("the duplicate --match of node_cpu_seconds_total is not rendered twice")
	}
	if seen[`--label="cluster=spoke-1"`] != 1 || seen[`--rename="etcd_mvcc_db_total_size_in_bytes=etcd_debugging_mvcc_db_total_size_in_bytes"`] != 1 {
		t.Errorf("--label and --rename not rendered with their quotes")
	}
	t.Logf("rendered command: %d arguments (%d --match, %d --rename, %d --recordingrule, %d --collectrule)",
		len(command), count["--match"], count["--rename"], count["--recordingrule"], count["--collectrule"])
}
