package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Remote-write content types as they appear on the wire (Content-Type and
// X-Prometheus-Remote-Write-Version).
const (
	wireV1 = "application/x-protobuf 0.1.0"
	wireV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request 2.0.0"
)

var prometheus3 struct {
	once sync.Once
	path string
	err  error
}

// requirePrometheus3 returns the Prometheus 3 binary that `make prometheus3` builds from
// tools/prometheus3 (.cache/bin/prometheus-<version>), building it first when it is missing (a cold
// build takes minutes: make test builds it before the tests). It fails, never skips, when it cannot.
func requirePrometheus3(t testing.TB) string {
	t.Helper()
	prometheus3.once.Do(func() {
		gomod, err := os.ReadFile(filepath.Join("..", "tools", "prometheus3", "go.mod"))
		if err != nil {
			prometheus3.err = err
			return
		}
		version := ""
		for _, line := range strings.Split(string(gomod), "\n") {
			if v, ok := strings.CutPrefix(line, "require github.com/prometheus/prometheus "); ok {
				version = strings.TrimSpace(v)
			}
		}
		if version == "" {
			prometheus3.err = fmt.Errorf("tools/prometheus3/go.mod does not require github.com/prometheus/prometheus on one line")
			return
		}
		path, err := filepath.Abs(filepath.Join("..", ".cache", "bin", "prometheus-"+version))
		if err != nil {
			prometheus3.err = err
			return
		}
		prometheus3.path = path
		if _, err := os.Stat(path); err == nil {
			return
		}
		t.Logf("building Prometheus %s into %s (make prometheus3)", version, path)
		cmd := exec.Command("make", "prometheus3")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			prometheus3.err = fmt.Errorf("make prometheus3: %w\n%s", err, out)
		}
	})
	if prometheus3.err != nil {
		t.Fatalf("the Prometheus 3 receiver: %v", prometheus3.err)
	}
	return prometheus3.path
}

// wireRecorder is a reverse proxy in front of a receiver that records, for every remote-write
// request, its content type and version header and the status of the answer.
type wireRecorder struct {
	srv  *httptest.Server
	path string // of the receiver's remote-write URL

	mu   sync.Mutex
	seen map[string]int // "<content type> <version> -> <status>" → requests; guarded by mu
}

// newWireRecorder records the requests to writeURL, a receiver's remote-write URL.
func newWireRecorder(t testing.TB, writeURL string) *wireRecorder {
	t.Helper()
	u, err := url.Parse(writeURL)
	if err != nil {
		t.Fatal(err)
	}
	w := &wireRecorder{seen: map[string]int{}, path: u.Path}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	rp.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		key := fmt.Sprintf("%s %s -> %d", r.Header.Get("Content-Type"), r.Header.Get("X-Prometheus-Remote-Write-Version"), resp.StatusCode)
		w.mu.Lock()
		w.seen[key]++
		w.mu.Unlock()
		return nil
	}
	w.srv = httptest.NewServer(rp)
	t.Cleanup(w.srv.Close)
	return w
}

// WriteURL is the remote-write URL of the receiver through the recorder.
func (w *wireRecorder) WriteURL() string { return w.srv.URL + w.path }

// counts returns a copy of what was recorded.
func (w *wireRecorder) counts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.seen))
	for k, v := range w.seen {
		out[k] = v
	}
	return out
}

// TestRemoteWrite2 runs a pipeline with --to-upload-protocol auto against three real receivers,
// a recorder of the wire in front of each, and the oracle behind (everything the source served
// is at the receiver, read back through its query API; nothing dropped):
//
//   - Prometheus 3 (tools/prometheus3) takes remote-write 2.0: every request is 2.0 and answered
//     204, and the collector reports collector_shipper_protocol{version="2.0"} 1. It needs no flag
//     beyond --web.enable-remote-write-receiver: 3.x accepts both messages by default
//     (--web.remote-write-receiver.accepted-protobuf-messages).
//   - Prometheus 3 accepting only prometheus.WriteRequest answers 2.0 with 415: the collector falls
//     back to 1.0 and sends the refused batch again as 1.0.
//   - Debian's Prometheus 2.42 ignores the Content-Type, decodes the 2.0 message as an empty 1.0
//     one and answers 204 without written counts: the collector falls back to 1.0 all the same.
func TestRemoteWrite2(t *testing.T) {
	t.Parallel()
	for i, tc := range []struct {
		name         string
		prometheus3  bool // else Debian's prometheus
		args         []string
		wantVersion  string // collector_shipper_protocol's version at 1
		wantFallback string // the answer that made it fall back; "" for none
	}{
		{"prometheus 3 takes 2.0", true, nil, "2.0", ""},
		{"prometheus 3 taking only 1.0 answers 415", true, []string{"--web.remote-write-receiver.accepted-protobuf-messages=prometheus.WriteRequest"}, "1.0", wireV2 + " -> 415"},
		{"prometheus 2.42 answers 204 without written counts", false, nil, "1.0", wireV2 + " -> 204"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin := ""
			if tc.prometheus3 {
				bin = requirePrometheus3(t)
			}
			var rec *wireRecorder
			p := newPipeline(t, fmt.Sprintf("e2e-rw2-%d", i), pipelineOptions{
				receiverBin:  bin,
				receiverArgs: tc.args,
				flags:        []string{"--to-upload-protocol", "auto"},
				front: func(rcv *promServer) string {
					rec = newWireRecorder(t, rcv.WriteURL())
					return rec.WriteURL()
				},
			})
			p.col.start()
			p.waitFlowing(5)
			waitProtocol(t, p.col, rec, tc.wantVersion)
			p.waitAppended(time.Now().Add(2*time.Second), 30*time.Second)
			p.finish(books{})

			got := rec.counts()
			t.Logf("on the wire: %v", got)
			for k, n := range got {
				switch {
				case tc.wantFallback == "" && k == wireV2+" -> 204":
				case tc.wantFallback != "" && k == wireV1+" -> 204":
				case k == tc.wantFallback:
					// One refused 2.0 request per shard at most: those sent before the first
					// answer; each was sent again as 1.0.
					if n > 50 {
						t.Errorf("%d requests %s, want at most one per shard", n, k)
					}
				default:
					t.Errorf("%d requests %s: not expected", n, k)
				}
			}
			if want := wireV2 + " -> 204"; tc.wantFallback == "" && got[want] < 5 {
				t.Errorf("%d requests %s, want the whole run", got[want], want)
			}
			if tc.wantFallback != "" && (got[tc.wantFallback] == 0 || got[wireV1+" -> 204"] < 5) {
				t.Errorf("want a fallback after %s and then 1.0, got %v", tc.wantFallback, got)
			}
		})
	}
}

// waitProtocol waits until the collector reports collector_shipper_protocol 1 for version and 0
// for the other, for the endpoint of rec.
func waitProtocol(t testing.TB, col *collector, rec *wireRecorder, version string) {
	t.Helper()
	eventually(t, 30*time.Second, "collector_shipper_protocol", func() error {
		m, err := col.metrics()
		if err != nil {
			return err
		}
		for _, v := range []string{"1.0", "2.0"} {
			want := 0.0
			if v == version {
				want = 1
			}
			if got := sumMetric(m, fmt.Sprintf(`collector_shipper_protocol{endpoint=%q,version=%q}`, endpointName(rec), v)); got != want {
				return fmt.Errorf("collector_shipper_protocol{version=%q} %v, want %v", v, got, want)
			}
		}
		return nil
	})
}

// TestRemoteWrite2Thanos: --to-upload-protocol auto against `thanos receive` of the version
// tools/thanos pins, a recorder of the wire in front of it. Thanos v0.42.0 does not speak
// remote-write 2.0: it reads neither the Content-Type nor the version header, decodes the 2.0
// message as an empty 1.0 one and answers 200 without written counts. The collector falls back to
// 1.0 after the first answer (the batches refused meanwhile, at most one per shard, are sent again
// as 1.0), and everything the source served is queryable through `thanos query`, of the
// collector's tenant, nothing dropped.
func TestRemoteWrite2Thanos(t *testing.T) {
	t.Parallel()
	tails := &logTails{}
	rcv := startReceive(t, tails, "receive", receiveOptions{})
	q := startThanosQuery(t, tails, "query", rcv)
	rec := newWireRecorder(t, rcv.WriteURL())
	p := newThanosPipeline(t, tails, "e2e-rw2-thanos", thanosTenant, rec.WriteURL(), q, "--to-upload-protocol", "auto")
	p.col.start()
	waitHubFlowing(p, q, 5)
	waitProtocol(t, p.col, rec, "1.0")
	p.waitAppended(time.Now().Add(2*time.Second), 30*time.Second)
	p.finish(books{})

	got := rec.counts()
	t.Logf("on the wire: %v", got)
	for k, n := range got {
		switch k {
		case wireV1 + " -> 200":
		case wireV2 + " -> 200":
			if n > 50 {
				t.Errorf("%d requests %s, want at most one per shard", n, k)
			}
		default:
			t.Errorf("%d requests %s: not expected", n, k)
		}
	}
	if got[wireV2+" -> 200"] == 0 || got[wireV1+" -> 200"] < 5 {
		t.Errorf("want 2.0 answered 200 without counts, then 1.0; got %v", got)
	}
}

// endpointName is the name the collector gives the endpoint of the recorder: its host and port.
func endpointName(rec *wireRecorder) string {
	u, _ := url.Parse(rec.srv.URL)
	return strings.ReplaceAll(u.Host, ":", "_")
}
