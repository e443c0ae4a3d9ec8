package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/prometheus/config"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/wal"
)

// TestPastedRemoteWrite: the remote_write block of a Prometheus configuration, with every key
// Prometheus accepts, loads as it is (Prometheus' own loader accepts the same file), and each key
// collector implements lands where it acts.
func TestPastedRemoteWrite(t *testing.T) {
	path := filepath.Join("testdata", "config", "prometheus-remote-write.yaml")
	if _, err := promconfig.LoadFile(path, false, nil); err != nil {
		t.Fatalf("Prometheus refuses the fixture: %v", err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Endpoints) != 3 {
		t.Fatalf("%d endpoints, want 3", len(c.Endpoints))
	}
	dir := filepath.Join("testdata", "config")
	hub := c.Endpoints[0]
	if hub.Name != "hub" || hub.URL != "https://thanos-receive.hub.example.com/api/v1/receive" || hub.Timeout != time.Minute || hub.Headers["X-Scope-OrgID"] != "team-a" {
		t.Errorf("hub: %+v", hub)
	}
	tls := hub.HTTPClientConfig.TLSConfig
	if tls.CAFile != filepath.Join(dir, "certs/ca.crt") || tls.KeyFile != filepath.Join(dir, "certs/client.key") || tls.ServerName != "thanos-receive" {
		t.Errorf("hub tls_config: %+v", tls)
	}
	if a := hub.HTTPClientConfig.Authorization; a == nil || a.CredentialsFile != filepath.Join(dir, "token") {
		t.Errorf("hub authorization: %+v", a)
	}
	if len(hub.WriteRelabelConfigs) != 2 {
		t.Errorf("hub: %d write relabel rules", len(hub.WriteRelabelConfigs))
	}
	base := queue.DefaultOptions()
	o := hub.QueueOptions(base)
	if o.Capacity != 10000 || o.MaxShards != 20 || o.MinShards != 2 || o.MaxSamplesPerSend != 5000 ||
		o.BatchSendDeadline != 10*time.Second || o.MinBackoff != 100*time.Millisecond || o.MaxBackoff != 10*time.Second ||
		o.SampleAgeLimit != 55*time.Minute || len(o.WriteRelabelConfigs) != 2 {
		t.Errorf("hub queue options: %+v", o)
	}
	if sv := c.Endpoints[1]; sv.SigV4Config == nil || sv.SigV4Config.Region != "eu-west-1" || sv.Name != "aps-workspaces.eu-west-1.amazonaws.com" {
		t.Errorf("sigv4 endpoint: %+v", sv)
	}
	if az := c.Endpoints[2]; az.AzureADConfig == nil || az.ProtobufMessage != ProtobufMessageV2 {
		t.Errorf("azuread endpoint: %+v", az)
	}
	// Without queue_config an endpoint keeps the flags' values, not Prometheus' defaults.
	if got := c.Endpoints[1].QueueOptions(base); got.Capacity != base.Capacity || got.MaxBackoff != base.MaxBackoff {
		t.Errorf("endpoint without queue_config: capacity %d max backoff %s", got.Capacity, got.MaxBackoff)
	}
	want := []string{
		"line 5: remote_write[0] (hub): metadata_config is ignored",
		"line 5: remote_write[0] (hub): send_native_histograms is ignored",
		"line 5: remote_write[0] (hub): queue_config.retry_on_http_429: false is ignored",
	}
	if len(c.Warnings) != len(want) {
		t.Fatalf("warnings %q, want %d", c.Warnings, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(c.Warnings[i], w) {
			t.Errorf("warning %d %q, want it to start with %q", i, c.Warnings[i], w)
		}
	}
}

// TestRemoteWriteKeysMirrorPrometheus: a remote_write entry has every key of Prometheus' entry,
// its queue_config and metadata_config, so that a pasted block never meets "field not found".
func TestRemoteWriteKeysMirrorPrometheus(t *testing.T) {
	for _, tc := range []struct {
		name       string
		prom, ours reflect.Type
	}{
		{"remote_write", reflect.TypeFor[promconfig.RemoteWriteConfig](), reflect.TypeFor[RemoteWriteConfig]()},
		{"queue_config", reflect.TypeFor[promconfig.QueueConfig](), reflect.TypeFor[RemoteWriteQueueConfig]()},
		{"metadata_config", reflect.TypeFor[promconfig.MetadataConfig](), reflect.TypeFor[RemoteWriteMetadataConfig]()},
	} {
		ours := yamlFields(tc.ours)
		for k := range yamlFields(tc.prom) {
			if _, ok := ours[k]; !ok {
				t.Errorf("%s: Prometheus' key %s is missing", tc.name, k)
			}
		}
	}
}

// TestRemoteWriteQueueOptions: only the queue_config keys given replace the flags' values; a raised
// max_samples_per_send without capacity raises capacity to two requests' worth.
func TestRemoteWriteQueueOptions(t *testing.T) {
	base := queue.DefaultOptions()
	n := 3 * base.MaxSamplesPerSend
	e := EndpointConfig{Queue: RemoteWriteQueueConfig{MaxSamplesPerSend: &n}}
	o := e.QueueOptions(base)
	if o.MaxSamplesPerSend != n || o.Capacity != 2*n || o.MaxShards != base.MaxShards || o.MaxBackoff != base.MaxBackoff {
		t.Errorf("options %+v", o)
	}
	if o := (EndpointConfig{}).QueueOptions(base); !reflect.DeepEqual(o.Capacity, base.Capacity) || o.WriteRelabelConfigs != nil {
		t.Errorf("no queue_config changed the options: %+v", o)
	}
}

// TestLoadConfigEveryError: every problem of a file is reported, each with its line (and column
// where yaml knows it), not just the first.
func TestLoadConfigEveryError(t *testing.T) {
	body := `sources:
  - id: a
    from: http://x
    metric_relabel_configs:
      - {source_labels: [job], regex: "(", action: drop}
remote_write:
  - url: http://hub/w
    tls_config: {ca_fil: ca.crt}
    queue_config:
      max_shards: many
      batch_send_deadline: soon
    write_relabel_configs:
      - {action: explode}
  - url: http://b/w
    google_iam: {credentials_file: x}
    basic_auth: {username: u, password: p}
    authorization: {credentials: t}
    headers: {Authorization: x}
  - url: http://c/w
    sigv4: {region: eu-west-1}
    oauth2: {client_id: a, client_secret: b, token_url: "http://t/"}
    protobuf_message: v3
    write_relabel_configs:
      - {action: replace, regex: x}
`
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs := loadConfig(path)
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	for _, want := range []string{
		"line 5, column 39: error parsing regexp",
		"line 8, column 18: field ca_fil not found in config.TLSConfig",
		"line 10: cannot unmarshal !!str `many` into int",
		`line 11, column 28: not a valid duration string: "soon"`,
		"line 13, column 18: unknown relabel action \"explode\"",
		"line 14, column 5: remote_write[1]: google_iam is not supported",
		"line 14, column 5: remote_write[1]: endpoint \"b\": at most one of basic_auth, oauth2 & authorization must be configured",
		"line 14, column 5: remote_write[1]: headers: Authorization is set by collector",
		`line 19, column 5: remote_write[2]: protobuf_message "v3"`,
		"line 19, column 5: remote_write[2]: endpoint \"c\": at most one of basic_auth, authorization, oauth2, sigv4 and azuread may be set, got oauth2, sigv4",
		"line 19, column 5: remote_write[2]: write_relabel_configs[0]: relabel configuration for replace action requires 'target_label' value",
	} {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, want) }) {
			t.Errorf("no error contains %q", want)
		}
	}
	if n := strings.Count(strings.Join(got, "\n"), "requires 'target_label'"); n != 1 {
		t.Errorf("the bad write relabel rule is reported %d times, want once", n)
	}
	if t.Failed() {
		t.Logf("errors:\n%s", strings.Join(got, "\n"))
	}
}

// TestRunRemoteWriteEntries: the agent built from a file's remote_write entries ships each
// endpoint as its entry says: the endpoint whose write_relabel_configs drop every series gets no
// request and counts the drops in its position, the other endpoint gets the samples.
func TestRunRemoteWriteEntries(t *testing.T) {
	src := newFederateServer(t)
	dropped := newWriteReceiver(t, http.StatusNoContent)
	kept := newWriteReceiver(t, http.StatusNoContent)
	path := filepath.Join(t.TempDir(), "collector.yaml")
	body := fmt.Sprintf(`sources:
  - {id: c1, from: %q, interval: 1s}
remote_write:
  - name: filtered
    url: %s/api/v1/write
    write_relabel_configs:
      - {source_labels: [__name__], regex: up, action: drop}
    queue_config: {max_samples_per_send: 10, capacity: 20}
  - name: all
    url: %s/api/v1/write
`, src.URL, dropped.URL, kept.URL)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t)
	a, err := New(discardLogger(), prometheus.NewRegistry(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	pos := func(ep string) wal.ConsumerState {
		st, _ := wal.ReadPosition(filepath.Join(opts.WALDir, "c1"), ep)
		return st
	}
	waitFor(t, "samples delivered to all and dropped by the rules of filtered", 10*time.Second, func() bool {
		return pos("all").Delivered > 0 && pos("filtered").Dropped["write_relabel"] > 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := dropped.requests.Load(); n != 0 {
		t.Errorf("the endpoint whose rules drop every series got %d requests", n)
	}
	if st := pos("filtered"); st.Delivered != 0 {
		t.Errorf("filtered: %d samples delivered", st.Delivered)
	}
}

// TestReloadSameRemoteWrite: reloading an unchanged file whose remote_write entries have
// write_relabel_configs and queue_config is not a change; changing a rule or a queue setting is.
func TestReloadSameRemoteWrite(t *testing.T) {
	dir := t.TempDir()
	load := func(regex, shards string) []EndpointConfig {
		t.Helper()
		p := filepath.Join(dir, "c.yaml")
		body := fmt.Sprintf("remote_write:\n  - url: http://hub/w\n    write_relabel_configs: [{source_labels: [__name__], regex: %q, action: drop}]\n    queue_config: {max_shards: %s}\n", regex, shards)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		return c.Endpoints
	}
	a := &Agent{endpoints: load("go_.*", "5")}
	if err := a.sameEndpoints(load("go_.*", "5")); err != nil {
		t.Fatalf("unchanged file refused: %v", err)
	}
	for _, eps := range [][]EndpointConfig{load("up", "5"), load("go_.*", "6")} {
		if err := a.sameEndpoints(eps); err == nil || !strings.Contains(err.Error(), "changes hub") {
			t.Errorf("changed entry: %v, want the change refused", err)
		}
	}
}
