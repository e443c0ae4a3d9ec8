package shipper

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func TestParseProtocol(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Protocol
	}{
		{"", ProtocolV1}, {"v1", ProtocolV1}, {"prometheus.WriteRequest", ProtocolV1},
		{"v2", ProtocolV2}, {"io.prometheus.write.v2.Request", ProtocolV2}, {"auto", ProtocolAuto},
	} {
		got, err := ParseProtocol(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseProtocol(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"V2", "2.0", "io.prometheus.write.v2", "both"} {
		if _, err := ParseProtocol(in); !errors.Is(err, ErrInvalidProtocol) {
			t.Errorf("ParseProtocol(%q) = %v, want ErrInvalidProtocol", in, err)
		}
	}
	o := DefaultOptions()
	o.Protocol = "v3"
	if _, err := New(logrus.New(), prometheus.NewRegistry(), "http://hub/api/v1/receive", o); !errors.Is(err, ErrInvalidProtocol) {
		t.Fatalf("New with protocol v3: %v, want ErrInvalidProtocol", err)
	}
}

// promReceiver is Prometheus' own remote-write handler over a real TSDB, accepting the given
// messages, behind a recorder of the Content-Type of every request. rewriteV1, when set, turns
// every request into a 1.0 one on the way in: a 1.x receiver that ignores the Content-Type.
type promReceiver struct {
	db  *tsdb.DB
	srv *httptest.Server

	mu           sync.Mutex
	contentTypes []string // guarded by mu
}

func newPromReceiver(t *testing.T, accept remoteapi.MessageTypes, rewriteV1 bool) *promReceiver {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	db, err := tsdb.Open(t.TempDir(), logger, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	h := remote.NewWriteHandler(logger, nil, db, accept, false, false)
	r := &promReceiver{db: db}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.contentTypes = append(r.contentTypes, req.Header.Get("Content-Type")+" "+req.Header.Get("X-Prometheus-Remote-Write-Version"))
		r.mu.Unlock()
		if rewriteV1 {
			req.Header.Set("Content-Type", "application/x-protobuf")
			req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *promReceiver) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.contentTypes...)
}

// stored returns the number of samples the TSDB holds for series with the label job="rw".
func (r *promReceiver) stored(t *testing.T) int {
	t.Helper()
	q, err := r.db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "rw"))
	n := 0
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			n++
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

const (
	seenV1 = "application/x-protobuf 0.1.0"
	seenV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request 2.0.0"
)

// rwBatch returns n series of one sample each at time ts, labelled job="rw".
func rwBatch(n int, ts int64) []prompb.TimeSeries {
	out := make([]prompb.TimeSeries, n)
	for i := range out {
		out[i] = prompb.TimeSeries{
			Labels:  lbls("__name__", "rw_test", "job", "rw", "i", strings.Repeat("x", i+1)),
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: ts}},
		}
	}
	return out
}

func protocolClient(t *testing.T, url string, p Protocol) (*Client, *prometheus.Registry, *logtest.Hook) {
	t.Helper()
	log, hook := testLogger()
	reg := prometheus.NewRegistry()
	o := DefaultOptions()
	o.Protocol = p
	c, err := New(log, reg, url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, reg, hook
}

func checkProtocolMetric(t *testing.T, reg *prometheus.Registry, v1, v2 int) {
	t.Helper()
	want := "# HELP collector_shipper_protocol 1 for the remote-write version the endpoint is sent (1.0 or 2.0), 0 for the other.\n" +
		"# TYPE collector_shipper_protocol gauge\n" +
		"collector_shipper_protocol{version=\"1.0\"} " + itoa(v1) + "\n" +
		"collector_shipper_protocol{version=\"2.0\"} " + itoa(v2) + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "collector_shipper_protocol"); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

// TestProtocolAgainstPrometheus sends with each protocol setting to Prometheus' own handler over
// a real TSDB that takes 2.0, one that takes only 1.0 (and answers 415 to 2.0), and one in front
// of which a 1.x receiver is emulated (the Content-Type ignored: 2xx without written counts), and
// checks what went on the wire, what the TSDB holds and which protocol the client keeps.
func TestProtocolAgainstPrometheus(t *testing.T) {
	both := remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}
	onlyV1 := remoteapi.MessageTypes{remoteapi.WriteV1MessageType}
	for _, tc := range []struct {
		name      string
		accept    remoteapi.MessageTypes
		rewriteV1 bool
		protocol  Protocol
		wantSeen  []string // the first two Sends
		wantFinal Protocol
		fail      bool  // every Send returns a recoverable *Error and nothing is stored
		wantErr   error // what that error wraps
	}{
		{"auto to a 2.0 receiver stays 2.0", both, false, ProtocolAuto, []string{seenV2, seenV2}, ProtocolV2, false, nil},
		{"auto falls back on 415 and remembers", onlyV1, false, ProtocolAuto, []string{seenV2, seenV1, seenV1}, ProtocolV1, false, nil},
		{"auto falls back on 2xx without written counts", both, true, ProtocolAuto, []string{seenV2, seenV1, seenV1}, ProtocolV1, false, nil},
		{"v1 sends 1.0 to a 2.0 receiver", both, false, ProtocolV1, []string{seenV1, seenV1}, ProtocolV1, false, nil},
		{"v2 to a 2.0 receiver", both, false, ProtocolV2, []string{seenV2, seenV2}, ProtocolV2, false, nil},
		{"v2 keeps a 415 recoverable", onlyV1, false, ProtocolV2, []string{seenV2, seenV2}, ProtocolV2, true, nil},
		{"v2 keeps a 2xx without written counts recoverable", both, true, ProtocolV2, []string{seenV2, seenV2}, ProtocolV2, true, ErrNotConfirmed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newPromReceiver(t, tc.accept, tc.rewriteV1)
			c, reg, hook := protocolClient(t, r.srv.URL+"/api/v1/write", tc.protocol)
			now := time.Now().Truncate(time.Second).UnixMilli()
			var errs []error
			for i := range 2 {
				errs = append(errs, c.Send(context.Background(), toSeries(rwBatch(3, now+int64(i)*1000))))
			}
			if got := r.seen(); strings.Join(got, "|") != strings.Join(tc.wantSeen, "|") {
				t.Errorf("requests seen:\n%q\nwant\n%q", got, tc.wantSeen)
			}
			if c.Protocol() != tc.wantFinal {
				t.Errorf("Protocol() = %q, want %q", c.Protocol(), tc.wantFinal)
			}
			v2 := 0
			if tc.wantFinal == ProtocolV2 {
				v2 = 1
			}
			checkProtocolMetric(t, reg, 1-v2, v2)
			warnings := 0
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "does not take remote-write 2.0") {
					warnings++
				}
			}
			if wantWarn := btoi(tc.protocol == ProtocolAuto && tc.wantFinal == ProtocolV1); warnings != wantWarn {
				t.Errorf("%d fallback warnings, want %d", warnings, wantWarn)
			}
			failing := tc.fail
			for i, err := range errs {
				var e *Error
				switch {
				case !failing && err != nil:
					t.Errorf("Send %d: %v", i, err)
				case failing && (!errors.As(err, &e) || !e.Recoverable()):
					t.Errorf("Send %d = %v, want a recoverable *Error", i, err)
				case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
					t.Errorf("Send %d = %v, want %v", i, err, tc.wantErr)
				}
			}
			if want := 6 * btoi(!failing); r.stored(t) != want {
				t.Errorf("TSDB holds %d samples, want %d", r.stored(t), want)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestProtocolWrittenCounts: a 2xx to a 2.0 request is a success only when its written counts
// cover the request; a lower or unreadable count leaves the batch queued (recoverable), and the
// counts are not looked at for 1.0.
func TestProtocolWrittenCounts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		protocol Protocol
		headers  map[string]string
		wantErr  error
	}{
		{"all written", ProtocolV2, map[string]string{headerSamplesWritten: "3"}, nil},
		{"more written than sent", ProtocolV2, map[string]string{headerSamplesWritten: "4", headerHistogramsWrite: "0"}, nil},
		{"fewer written", ProtocolV2, map[string]string{headerSamplesWritten: "2", headerHistogramsWrite: "0", headerExemplarsWritten: "0"}, ErrPartialWrite},
		{"samples header missing means 0", ProtocolV2, map[string]string{headerExemplarsWritten: "0"}, ErrPartialWrite},
		{"unreadable count", ProtocolV2, map[string]string{headerSamplesWritten: "three"}, ErrPartialWrite},
		{"negative count", ProtocolV2, map[string]string{headerSamplesWritten: "-3"}, ErrPartialWrite},
		{"no count at all", ProtocolV2, nil, ErrNotConfirmed},
		{"1.0 ignores the counts", ProtocolV1, map[string]string{headerSamplesWritten: "0"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.headers {
					w.Header().Set(k, v)
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(srv.Close)
			c, _, _ := protocolClient(t, srv.URL, tc.protocol)
			err := c.Send(context.Background(), toSeries(rwBatch(3, 1000)))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if v := testutil.ToFloat64(c.metrics.sentSamples); v != 3 {
					t.Fatalf("sent samples %v, want 3", v)
				}
				return
			}
			var e *Error
			if !errors.Is(err, tc.wantErr) || !errors.As(err, &e) || !e.Recoverable() || e.TooLarge() || e.Timing() {
				t.Fatalf("Send = %v, want a recoverable *Error wrapping %v", err, tc.wantErr)
			}
			if v := testutil.ToFloat64(c.metrics.sentSamples); v != 0 {
				t.Fatalf("sent samples %v, want 0", v)
			}
		})
	}
}
