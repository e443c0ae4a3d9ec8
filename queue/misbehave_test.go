package queue_test

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// harness is a WAL, a receiver and the expected content.
type harness struct {
	t        *testing.T
	w        *wal.WAL
	rc       *receiver
	order    orderChecker
	want     map[string][]int64
	appended int
	reg      *prometheus.Registry
	timeout  time.Duration

	mu    sync.Mutex
	waits []time.Duration
}

func newHarness(t *testing.T, nSeries, scrapes int, ooo bool) *harness {
	h := &harness{t: t, w: openWAL(t), rc: newReceiver(t, ooo), want: map[string][]int64{}, reg: prometheus.NewRegistry(), timeout: 10 * time.Second}
	h.appended = fill(t, h.w, nSeries, scrapes, baseTime(), h.want)
	return h
}

// newQueue returns a queue to the receiver whose backoff waits are recorded and shortened to at
// most a millisecond.
func (h *harness) newQueue(o queue.Options) *queue.Queue {
	o.Sleep = func(ctx context.Context, d time.Duration) error {
		h.mu.Lock()
		h.waits = append(h.waits, d)
		h.mu.Unlock()
		t := time.NewTimer(min(d, time.Millisecond))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	q, err := queue.New(discardLogger(), h.reg, h.w, newSender(h.rc.url, h.timeout), o)
	if err != nil {
		h.t.Fatal(err)
	}
	return q
}

// store is the default behaviour: store and check the order.
func (h *harness) store(w http.ResponseWriter, r *http.Request, next http.Handler) {
	h.order.store(h.t, w, r, next)
}

// check verifies that the receiver holds exactly what was appended minus missing, and that the
// queue's numbers add up.
func (h *harness) check(st queue.Stats, missing map[string][]int64, wantDropped map[string]int64) {
	t := h.t
	t.Helper()
	want := map[string][]int64{}
	for k, ts := range h.want {
		for _, x := range ts {
			if !slices.Contains(missing[k], x) {
				want[k] = append(want[k], x)
			}
		}
	}
	got := h.rc.samples()
	for k := range got {
		got[k] = slices.Compact(got[k])
	}
	if !maps.EqualFunc(got, want, slices.Equal[[]int64]) {
		t.Fatalf("receiver holds %d samples in %d series, want %d in %d", countMap(got), len(got), countMap(want), len(want))
	}
	if !maps.Equal(st.Dropped, wantDropped) && !(len(st.Dropped) == 0 && len(wantDropped) == 0) {
		t.Fatalf("dropped %v, want %v", st.Dropped, wantDropped)
	}
	if st.Delivered+dropped(st) != int64(h.appended) || st.Pending != 0 {
		t.Fatalf("delivered %d + dropped %d != appended %d (pending %d)", st.Delivered, dropped(st), h.appended, st.Pending)
	}
	ps, err := wal.ReadPosition(h.w.Dir(), "ep")
	if err != nil {
		t.Fatal(err)
	}
	if ps.Delivered != st.Delivered || !maps.Equal(ps.Dropped, st.Dropped) || ps.Position != st.Position {
		t.Fatalf("position file %+v, stats %+v", ps, st)
	}
	h.order.mu.Lock()
	defer h.order.mu.Unlock()
	if len(h.order.errors) > 0 {
		t.Fatalf("order violated at the receiver %d times, first %s", len(h.order.errors), h.order.errors[0])
	}
}

func countMap(m map[string][]int64) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// nth returns a behaviour that applies bad to requests first..last (1-based) and stores the
// others.
func (h *harness) nth(first, last int64, bad func(w http.ResponseWriter, r *http.Request, next http.Handler)) func(http.ResponseWriter, *http.Request, http.Handler) {
	var n atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if k := n.Add(1); k >= first && k <= last {
			bad(w, r, next)
			return
		}
		h.store(w, r, next)
	}
}

func status(code int, header ...string) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, _ *http.Request, _ http.Handler) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
	}
}

func runToEnd(t *testing.T, q *queue.Queue) queue.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("queue did not reach the end of the wal in time")
	}
	return q.Stats()
}

// TestMisbehavingReceiver runs the queue against real HTTP servers that fail in the ways a hub
// does, and checks that every appended sample was stored or counted as dropped with its reason,
// exactly.
func TestMisbehavingReceiver(t *testing.T) {
	const series, scrapes = 20, 30
	t.Run("connections refused for a while", func(t *testing.T) {
		h := newHarness(t, series, scrapes, false)
		h.rc.setBehaviour(h.store)
		h.rc.down()
		o := options("ep")
		o.StopAtEnd = true
		q := h.newQueue(o)
		done := make(chan queue.Stats, 1)
		go func() { done <- runToEnd(t, q) }()
		waitFor(t, "retries while refused", func() bool {
			return metric(t, h.reg, "collector_queue_requests_failed_total", "action", "retry") >= 20
		})
		if st := q.Stats(); st.Delivered != 0 {
			t.Fatalf("delivered %d while down", st.Delivered)
		}
		h.rc.up()
		h.check(<-done, nil, nil)
	})
	t.Run("503 for a window", func(t *testing.T) {
		h := newHarness(t, series, scrapes, false)
		h.rc.setBehaviour(h.nth(1, 15, status(503)))
		o := options("ep")
		o.StopAtEnd = true
		st := runToEnd(t, h.newQueue(o))
		h.check(st, nil, nil)
		if r := metric(t, h.reg, "collector_queue_samples_retried_total"); r == 0 {
			t.Fatal("no retries counted")
		}
	})
	t.Run("429 with Retry-After in seconds and as a date", func(t *testing.T) {
		h := newHarness(t, series, scrapes, false)
		var n atomic.Int64
		h.rc.setBehaviour(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			switch k := n.Add(1); {
			case k <= 2:
				status(429, "Retry-After", "2")(w, r, next)
			case k <= 4:
				status(429, "Retry-After", time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat))(w, r, next)
			default:
				h.store(w, r, next)
			}
		})
		o := options("ep")
		o.StopAtEnd = true
		o.MinShards, o.MaxShards = 1, 1
		st := runToEnd(t, h.newQueue(o))
		h.check(st, nil, nil)
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.waits) != 4 || h.waits[0] != 2*time.Second || h.waits[1] != 2*time.Second {
			t.Fatalf("waits %v", h.waits)
		}
		for _, d := range h.waits[2:] {
			if d <= time.Second || d > 3*time.Second {
				t.Fatalf("waits %v: the date form should give (1s, 3s]", h.waits)
			}
		}
	})
	t.Run("409 for one batch, nothing written: bisected and delivered", func(t *testing.T) {
		h := newHarness(t, series, scrapes, false)
		var refused prompbReq
		h.rc.setBehaviour(h.nth(3, 3, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			refused.set(decode(t, r))
			status(409)(w, r, next)
		}))
		o := options("ep")
		o.StopAtEnd = true
		st := runToEnd(t, h.newQueue(o))
		if _, n := refused.get(); n == 0 {
			t.Fatal("no request refused")
		}
		// Thanos writes the valid samples of a 409'd request; this one wrote none. Its halves are
		// sent again and accepted: nothing missing, nothing dropped or deferred.
		h.check(st, nil, nil)
		if st.Deferred != 0 {
			t.Fatalf("deferred %d", st.Deferred)
		}
	})
	for _, code := range []int{401, 403, 404} {
		// A revoked certificate, a wrong tenant, a wrong path: time, never data.
		t.Run(strconv.Itoa(code)+" for a window, then accepted", func(t *testing.T) {
			h := newHarness(t, series, scrapes, false)
			h.rc.setBehaviour(h.nth(1, 15, status(code)))
			o := options("ep")
			o.StopAtEnd = true
			st := runToEnd(t, h.newQueue(o))
			h.check(st, nil, nil)
			if r := metric(t, h.reg, "collector_queue_requests_failed_total", "action", "retry"); r != 15 {
				t.Fatalf("%v retries, want 15", r)
			}
			if f := metric(t, h.reg, "collector_queue_failing_shards"); f != 0 {
				t.Fatalf("%v failing shards after recovery", f)
			}
		})
	}
	t.Run("plain 400 for one request: dropped, never sent again", func(t *testing.T) {
		h := newHarness(t, series, scrapes, false)
		var refused prompbReq
		var mu sync.Mutex
		sent := map[string]int{} // instance/timestamp -> requests that carried it
		var n atomic.Int64
		h.rc.setBehaviour(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			req := decode(t, r)
			mu.Lock()
			for _, ts := range req.Timeseries {
				for _, s := range ts.Samples {
					sent[instance(ts)+"/"+strconv.FormatInt(s.Timestamp, 10)]++
				}
			}
			mu.Unlock()
			if n.Add(1) == 3 {
				refused.set(req)
				http.Error(w, "unsupported remote-write request", http.StatusBadRequest)
				return
			}
			h.store(w, r, next)
		})
		o := options("ep")
		o.StopAtEnd = true
		st := runToEnd(t, h.newQueue(o))
		missing, k := refused.get()
		if k == 0 {
			t.Fatal("no request refused")
		}
		h.check(st, missing, map[string]int64{"http_400": int64(k)})
		mu.Lock()
		defer mu.Unlock()
		for s, c := range sent {
			if c != 1 {
				t.Fatalf("sample %s sent %d times", s, c)
			}
		}
		if len(sent) != h.appended {
			t.Fatalf("%d samples sent, %d appended", len(sent), h.appended)
		}
	})
	t.Run("samples re-sent after a crash: the timing 400 is bisected", func(t *testing.T) {
		// The receiver already holds the first 10 scrapes of 5 series, as after a crash before
		// the position was committed. Prometheus refuses a whole request (400 "out of order
		// sample") for any of them older than the newest it holds; bisection delivers the rest,
		// the newest held one is an exact duplicate (accepted), and exactly the 9 older held
		// samples of each series are dropped.
		h := newHarness(t, series, scrapes, false)
		app := h.rc.db.Appender(context.Background())
		for i := 0; i < 5; i++ {
			k := "host-" + strconv.Itoa(i)
			lset := labels.FromStrings("__name__", "test_metric", "instance", k, "job", "test")
			for _, ts := range h.want[k][:10] {
				if _, err := app.Append(0, lset, ts, float64(i)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
		h.rc.setBehaviour(h.storeUnordered)
		o := options("ep")
		o.StopAtEnd = true
		st := runToEnd(t, h.newQueue(o))
		h.check(st, nil, map[string]int64{"http_400": 5 * 9})
		if s := metric(t, h.reg, "collector_queue_requests_failed_total", "action", "split"); s == 0 {
			t.Fatal("nothing was split")
		}
	})
	t.Run("413 for large batches and for one series always", func(t *testing.T) {
		h := newHarness(t, series, scrapes, false)
		h.rc.setBehaviour(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			req := decode(t, r)
			for _, ts := range req.Timeseries {
				if instance(ts) == "host-7" {
					status(413)(w, r, next)
					return
				}
			}
			if countSamples(req) > 50 {
				status(413)(w, r, next)
				return
			}
			h.store(w, r, next)
		})
		o := options("ep")
		o.StopAtEnd = true
		st := runToEnd(t, h.newQueue(o))
		h.check(st, map[string][]int64{"host-7": h.want["host-7"]}, map[string]int64{"too_large": scrapes})
	})
	t.Run("slow responses beyond the client timeout", func(t *testing.T) {
		h := newHarness(t, series, scrapes, true) // re-sent samples are older than stored ones
		h.timeout = 100 * time.Millisecond
		h.rc.setBehaviour(h.nth(1, 4, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			next.ServeHTTP(w, r) // stored, but the answer comes too late
			<-r.Context().Done()
		}))
		o := options("ep")
		o.StopAtEnd = true
		st := runToEnd(t, h.newQueue(o))
		h.check(st, nil, nil)
	})
	t.Run("connections closed mid-request", func(t *testing.T) {
		h := newHarness(t, series, scrapes, false)
		h.rc.setBehaviour(h.nth(1, 6, func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			_ = conn.Close()
		}))
		o := options("ep")
		o.StopAtEnd = true
		st := runToEnd(t, h.newQueue(o))
		h.check(st, nil, nil)
	})
}

// prompbReq keeps the samples of one refused request.
type prompbReq struct {
	mu      sync.Mutex
	missing map[string][]int64
	n       int
}

func (p *prompbReq) set(req prompb.WriteRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.missing = map[string][]int64{}
	for _, ts := range req.Timeseries {
		for _, s := range ts.Samples {
			p.missing[instance(ts)] = append(p.missing[instance(ts)], s.Timestamp)
		}
	}
	p.n = countSamples(req)
}

func (p *prompbReq) get() (map[string][]int64, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.missing, p.n
}
