package deploy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// overlays/rhacm: collector in place of RHACM's metrics-collector-deployment.
const (
	rhacmDir              = "kubernetes/overlays/rhacm"
	rhacmNamespace        = "open-cluster-management-addon-observability"
	rhacmName             = "metrics-collector-deployment"
	rhacmContainer        = "metrics-collector"
	rhacmCommand          = "/usr/bin/metrics-collector"
	rhacmCASecret         = "observability-managed-cluster-certs"
	rhacmClientCertSecret = "observability-controller-open-cluster-management.io-observability-signer-client-cert"
	rhacmWALDirEnv        = "COLLECTOR_WAL_DIR"
)

// rhacmFixedFlags are the flags RHACM's operator renders before the allowlist's --match,
// --recordingrule, --rename and --collectrule lines, in its order; the values that depend on the
// cluster (labels) or on ObservabilityAddon (interval, limit, workers) are prefixes only.
var rhacmFixedFlags = []string{
	"--listen=:8080",
	"--from=$(FROM)",
	"--from-query=$(FROM_QUERY)",
	"--to-upload=$(TO)",
	"--to-upload-ca=/tlscerts/ca/ca.crt",
	"--to-upload-cert=/tlscerts/certs/tls.crt",
	"--to-upload-key=/tlscerts/certs/tls.key",
	"--interval=",
	"--evaluate-interval=",
	"--limit-bytes=",
	`--label="cluster=`,
	`--label="clusterID=`,
	"--from-token-file=" + tokenPath,
	"--from-ca-file=/etc/serving-certs-ca-bundle/service-ca.crt",
	"--worker-number=",
}

// TestRHACMOverlay checks the overlay's shape against the operator's Deployment: name, namespace
// and labels, the command unchanged (the operator's binary name first, its fixed flags in its
// order, nothing of collector's), readiness at /healthz/ready, the certificate Secrets where the
// operator mounts them; and what it adds: a PVC for the WAL named by the environment, and the
// image providing the operator's binary name.
func TestRHACMOverlay(t *testing.T) {
	r := mustRender(t, rhacmDir)
	sts := one[appsv1.StatefulSet](t, r)
	if sts.Name != rhacmName || sts.Namespace != rhacmNamespace || sts.Labels["component"] != "metrics-collector" {
		t.Errorf("StatefulSet %s/%s labels %v: want %s/%s with component=metrics-collector", sts.Namespace, sts.Name, sts.Labels, rhacmNamespace, rhacmName)
	}
	sel, err := metav1LabelSelector(sts)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(sts.Spec.Template.Labels)) || sts.Spec.Selector.MatchLabels["component"] != "metrics-collector" {
		t.Errorf("selector %v does not select the pod's labels %v as component=metrics-collector", sts.Spec.Selector, sts.Spec.Template.Labels)
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
		t.Error("want exactly one replica: one writer per WAL")
	}
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType || p.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("PVC retention %v: want Retain (the WAL holds undelivered data)", p)
	}

	c := container(t, sts)
	if c.Name != rhacmContainer {
		t.Errorf("container %s, want the operator's %s", c.Name, rhacmContainer)
	}
	if len(c.Args) != 0 || len(c.Command) == 0 || c.Command[0] != rhacmCommand {
		t.Fatalf("command %q args %q: want the operator's command starting with %s and no args", c.Command, c.Args, rhacmCommand)
	}
	flags := c.Command[1:]
	if len(flags) < len(rhacmFixedFlags) {
		t.Fatalf("%d flags, want at least the operator's %d", len(flags), len(rhacmFixedFlags))
	}
	for i, want := range rhacmFixedFlags {
		if !strings.HasPrefix(flags[i], want) {
			t.Errorf("flag %d is %q, want the operator's %q", i, flags[i], want)
		}
	}
	var prev = map[string]string{}
	for _, f := range flags[len(rhacmFixedFlags):] {
		name, _, _ := strings.Cut(f, "=")
		if !slices.Contains([]string{"--match", "--recordingrule", "--rename", "--collectrule"}, name) {
			t.Errorf("flag %q is not one the operator renders from the allowlist", f)
		}
		if f < prev[name] {
			t.Errorf("%q after %q: the operator sorts them", f, prev[name])
		}
		prev[name] = f
	}
	for _, f := range flags {
		if strings.HasPrefix(f, "--wal-") || f == "run" {
			t.Errorf("flag %q is collector's: it goes in the environment, the command stays the operator's", f)
		}
	}

	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz/ready" || !portIs(p.HTTPGet.Port, c.Ports[0]) || c.Ports[0].ContainerPort != listenPort {
		t.Errorf("readiness probe %+v on ports %v: want the operator's GET /healthz/ready on :%d", p, c.Ports, listenPort)
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	vols := map[string]corev1.Volume{}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	for path, secret := range map[string]string{"/tlscerts/certs": rhacmClientCertSecret, "/tlscerts/ca": rhacmCASecret} {
		m, ok := mounts[path]
		if v := vols[m.Name]; !ok || v.Secret == nil || v.Secret.SecretName != secret || !m.ReadOnly {
			t.Errorf("%s: want Secret %s mounted read-only, as the operator does", path, secret)
		}
	}
	if m, ok := mounts["/etc/serving-certs-ca-bundle"]; !ok || vols[m.Name].ConfigMap == nil || configMap(t, r, vols[m.Name].ConfigMap.Name).Annotations[injectCA] != "true" {
		t.Error("/etc/serving-certs-ca-bundle: want a ConfigMap the service CA is injected into")
	}

	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volumeClaimTemplate (the WAL), have %d", len(sts.Spec.VolumeClaimTemplates))
	}
	walVol := sts.Spec.VolumeClaimTemplates[0].Name
	var walDir string
	for _, e := range c.Env {
		if e.Name == rhacmWALDirEnv {
			walDir = e.Value
		}
	}
	m, ok := mounts[filepath.Dir(walDir)]
	if walDir == "" || !ok || m.Name != walVol || m.ReadOnly {
		t.Errorf("%s=%q: want a directory on the writable volume %s", rhacmWALDirEnv, walDir, walVol)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("want readOnlyRootFilesystem, as the operator's container")
	}

	svc := one[corev1.Service](t, r)
	if svc.Name != sts.Spec.ServiceName || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("Service %s selecting %v: want the StatefulSet's serviceName %s selecting its pod", svc.Name, svc.Spec.Selector, sts.Spec.ServiceName)
	}
	crb := one[rbacv1.ClusterRoleBinding](t, r)
	if crb.RoleRef.Name != "cluster-monitoring-view" || len(crb.Subjects) != 1 || crb.Subjects[0].Name != sts.Spec.Template.Spec.ServiceAccountName || crb.Subjects[0].Namespace != rhacmNamespace {
		t.Errorf("ClusterRoleBinding %+v: want cluster-monitoring-view for the pod's service account", crb)
	}

	df, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), "ln -s collector /out/links/"+filepath.Base(rhacmCommand)) || !strings.Contains(string(df), "COPY --from=build /out/links/ /usr/bin/") {
		t.Errorf("the image must provide %s as a link to collector", rhacmCommand)
	}
}

func metav1LabelSelector(sts appsv1.StatefulSet) (labels.Selector, error) {
	return labels.ValidatedSelectorFromSet(sts.Spec.Selector.MatchLabels)
}

// TestRHACMOverlayRuns starts collector as the overlay's pod would: under the operator's binary
// name (a link to the binary under test), with the operator's command line, the environment and
// files where the volumes put them, against a TLS source verified with the service CA (/federate
// with the --match selectors, /api/v1/query for the recording rule) and the mTLS hub. It must
// deliver, be ready at /healthz/ready, write only under the WAL's volume and stop cleanly.
func TestRHACMOverlayRuns(t *testing.T) {
	t.Parallel()
	r := mustRender(t, rhacmDir)
	c := container(t, one[appsv1.StatefulSet](t, r))
	var matchers []string
	for _, f := range c.Command {
		if m, ok := strings.CutPrefix(f, "--match="); ok {
			matchers = append(matchers, m)
		}
	}
	p := newPKI(t)
	src := &source{token: p.token, matchers: matchers, errs: make(chan error, 16)}
	queries := make(chan string, 16)
	mux := http.NewServeMux()
	mux.HandleFunc("/federate", src.serve)
	mux.HandleFunc("/api/v1/query", func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "Bearer "+p.token {
			src.fail(fmt.Errorf("query: Authorization %q, want the service account token", got))
		}
		select {
		case queries <- r.FormValue("query"):
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{
			"resultType": "vector",
			"result":     []any{map[string]any{"metric": map[string]string{}, "value": []any{float64(time.Now().Unix()), "4"}}},
		}})
	})
	src.srv = httptest.NewUnstartedServer(mux)
	src.srv.TLS = p.service.serverTLS(t)
	src.srv.StartTLS()
	t.Cleanup(src.srv.Close)
	snk := newSink(t, p)
	srcURL := "https://" + src.srv.Listener.Addr().String()
	pd := newPod(t, r, p, map[string]string{"from": srcURL, "from-query": srcURL, "to": snk.srv.URL + "/api/v1/receive"})
	if t.Failed() {
		t.FailNow()
	}
	if want := fmt.Sprintf(":%d", listenPort); pd.listen != want {
		t.Fatalf("--listen=%s, want %s (the container port)", pd.listen, want)
	}
	if pd.args[0] != rhacmCommand {
		t.Fatalf("first word %q, want %s", pd.args[0], rhacmCommand)
	}
	// The WAL directory comes from the environment: put it under the pod's root.
	for i, e := range pd.env {
		if v, ok := strings.CutPrefix(e, rhacmWALDirEnv+"="); ok {
			pd.walDir = filepath.Join(pd.root, v)
			pd.env[i] = rhacmWALDirEnv + "=" + pd.walDir
		}
	}
	if pd.walDir == "" {
		t.Fatalf("no %s in the environment", rhacmWALDirEnv)
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(rhacmCommand))
	if err := os.Symlink(collectorBin, bin); err != nil {
		t.Fatal(err)
	}
	rn := startPod(t, pd, bin, append([]string(nil), pd.args[1:]...))

	rn.waitFor(t, "a delivered remote-write request", 30*time.Second, func() bool { return snk.ok.Load() > 0 })
	rn.waitFor(t, "the recording rule's query", 30*time.Second, func() bool { return len(queries) > 0 })
	if q := <-queries; q != `sum(kube_node_status_allocatable{resource="cpu"})` {
		t.Errorf("query %q: want the --recordingrule's", q)
	}
	for _, path := range []string{c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path} {
		rn.waitFor(t, "probe "+path, 10*time.Second, func() bool {
			code, _, _ := rn.get(path)
			return code == http.StatusOK
		})
	}
	select {
	case err := <-src.errs:
		t.Error(err)
	default:
	}
	rn.stop(t)
	if stray := pd.strayWrites(t, filepath.Join(pd.root, walMount)); len(stray) > 0 {
		t.Errorf("collector wrote outside the WAL volume (read-only root filesystem): %v", stray)
	}
	if entries, err := os.ReadDir(pd.walDir); err != nil || len(entries) == 0 {
		t.Errorf("%s %s is empty (%v)", rhacmWALDirEnv, pd.walDir, err)
	}
}
