package queue_test

// An in-process remote-write receiver: the Prometheus module's own write handler over a real TSDB
// in a temporary directory, behind an HTTP server that tests can take down, bring back on the same
// port, and make misbehave. Reusable by any test of this package; it exports nothing.

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"
)

// receiver is a remote-write endpoint storing into a TSDB.
type receiver struct {
	t    testing.TB
	db   *tsdb.DB
	addr string
	url  string
	next http.Handler

	requests atomic.Int64

	// mu guards srv and behaviour.
	mu        sync.Mutex
	srv       *http.Server
	behaviour func(w http.ResponseWriter, r *http.Request, next http.Handler)
}

// newReceiver starts a receiver. ooo enables an out-of-order window of one day, which makes the
// TSDB accept re-sent older samples (after a crash) instead of refusing the whole request.
func newReceiver(t testing.TB, ooo bool) *receiver {
	t.Helper()
	opts := tsdb.DefaultOptions()
	if ooo {
		opts.OutOfOrderTimeWindow = (24 * time.Hour).Milliseconds()
	}
	logger := slog.New(slog.DiscardHandler)
	db, err := tsdb.Open(t.TempDir(), logger, nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{
		t:    t,
		db:   db,
		next: remote.NewWriteHandler(logger, nil, db, remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, false, false),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.url = "http://" + r.addr + "/api/v1/write"
	r.serve(ln)
	t.Cleanup(func() {
		r.down()
		_ = db.Close()
	})
	return r
}

func (r *receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 10 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	r.mu.Lock()
	b := r.behaviour
	r.mu.Unlock()
	if b != nil {
		b(w, req, r.next)
		return
	}
	r.next.ServeHTTP(w, req)
}

// setBehaviour puts fn in front of the write handler (nil: plain receiver). fn calls next to
// store the request.
func (r *receiver) setBehaviour(fn func(w http.ResponseWriter, r *http.Request, next http.Handler)) {
	r.mu.Lock()
	r.behaviour = fn
	r.mu.Unlock()
}

// down closes the listener and every connection: connections are refused until up.
func (r *receiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// up listens again on the same port.
func (r *receiver) up() {
	r.t.Helper()
	var ln net.Listener
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err = net.Listen("tcp", r.addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		// The port can linger for a moment after Close; waiting for it is waiting for a
		// condition, bounded by the deadline.
		runtime.Gosched()
	}
	if err != nil {
		r.t.Fatalf("listen again on %s: %v", r.addr, err)
	}
	r.serve(ln)
}

// samples returns the stored timestamps per series, keyed by the "instance" label (or the whole
// label set), sorted.
func (r *receiver) samples() map[string][]int64 {
	r.t.Helper()
	q, err := r.db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		r.t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	out := map[string][]int64{}
	for ss.Next() {
		s := ss.At()
		k := s.Labels().Get("instance")
		if k == "" {
			k = s.Labels().String()
		}
		it := s.Iterator(nil)
		for it.Next() != 0 {
			ts, _ := it.At()
			out[k] = append(out[k], ts)
		}
		if err := it.Err(); err != nil {
			r.t.Fatal(err)
		}
		sort.Slice(out[k], func(i, j int) bool { return out[k][i] < out[k][j] })
	}
	if err := ss.Err(); err != nil && !errors.Is(err, context.Canceled) {
		r.t.Fatal(err)
	}
	return out
}

// count returns the number of samples stored.
func (r *receiver) count() int {
	n := 0
	for _, ts := range r.samples() {
		n += len(ts)
	}
	return n
}
