package queue_test

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
)

// TestCrashAgainstReceiver abandons the queue many times during delivery, without flushing,
// while the WAL grows, and reopens it from the persisted position each time: the receiver ends
// with every sample. Re-sent samples are duplicates (counted); the receiver has an out-of-order
// window because a re-sent sample can be older than the newest one stored for its series.
func TestCrashAgainstReceiver(t *testing.T) {
	h := newHarness(t, 25, 10, true)
	h.rc.setBehaviour(h.storeUnordered)
	t0 := baseTime() + 10_000
	var acked int64
	for round := 0; round < 12; round++ {
		h.appended += fill(t, h.w, 25, 10, t0, h.want)
		t0 += 10_000
		o := options("ep")
		o.FlushDeadline = 0
		o.MaxSamplesPerSend = 20
		h.reg = prometheus.NewRegistry()
		q := h.newQueue(o)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- q.Run(ctx) }()
		var startDelivered int64
		if ps, err := wal.ReadPosition(h.w.Dir(), "ep"); err == nil {
			startDelivered = ps.Delivered
		}
		waitFor(t, "some delivery", func() bool {
			st := q.Stats()
			return st.Delivered >= startDelivered+100 || (st.Pending == 0 && st.Delivered > startDelivered)
		})
		cancel()
		q.Abort()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		acked = q.Stats().Delivered
	}
	o := options("ep")
	o.StopAtEnd = true
	h.reg = prometheus.NewRegistry()
	st := runToEnd(t, h.newQueue(o))
	got := h.rc.samples()
	stored := 0
	for k := range got {
		stored += len(got[k])
		got[k] = slices.Compact(got[k])
	}
	if !maps.EqualFunc(got, h.want, slices.Equal[[]int64]) {
		t.Fatalf("receiver holds %d distinct samples, appended %d", countMap(got), h.appended)
	}
	if len(st.Dropped) != 0 || st.Delivered < int64(h.appended) {
		t.Fatalf("stats %+v, appended %d", st, h.appended)
	}
	t.Logf("appended %d; acknowledged %d (%d re-sent after 12 abandoned runs; %d acknowledged before the last run)",
		h.appended, st.Delivered, st.Delivered-int64(h.appended), acked)
}

// storeUnordered stores without the order check: after a crash, re-sent samples go back in time.
func (h *harness) storeUnordered(w http.ResponseWriter, r *http.Request, next http.Handler) {
	next.ServeHTTP(w, r)
}

// TestTwoEndpoints runs two queues over one WAL, one per endpoint: with one endpoint down the
// other delivers everything, and the positions are independent.
func TestTwoEndpoints(t *testing.T) {
	w := openWAL(t)
	want := map[string][]int64{}
	appended := fill(t, w, 30, 20, baseTime(), want)
	up, down := newReceiver(t, false), newReceiver(t, false)
	down.down()
	newQ := func(consumer string, rc *receiver) *queue.Queue {
		o := options(consumer)
		q, err := queue.New(discardLogger(), prometheus.NewRegistry(), w, newSender(rc.url, 10*time.Second), o)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	qUp, qDown := newQ("hub-a", up), newQ("hub-b", down)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- qUp.Run(ctx) }()
	go func() { errs <- qDown.Run(ctx) }()

	waitFor(t, "hub-a to receive everything", func() bool { return qUp.Stats().Delivered == int64(appended) })
	waitFor(t, "hub-a's position to be committed", func() bool {
		ps, err := wal.ReadPosition(w.Dir(), "hub-a")
		return err == nil && ps.Delivered == int64(appended)
	})
	if st := qDown.Stats(); st.Delivered != 0 || st.Position != (wal.Position{}) {
		t.Fatalf("hub-b delivered while down: %+v", st)
	}
	if got := up.samples(); !maps.EqualFunc(got, want, slices.Equal[[]int64]) {
		t.Fatalf("hub-a holds %d samples, want %d", countMap(got), appended)
	}

	down.up()
	waitFor(t, "hub-b to catch up", func() bool { return qDown.Stats().Delivered == int64(appended) })
	cancel()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := down.samples(); !maps.EqualFunc(got, want, slices.Equal[[]int64]) {
		t.Fatalf("hub-b holds %d samples, want %d", countMap(got), appended)
	}
	a, errA := wal.ReadPosition(w.Dir(), "hub-a")
	b, errB := wal.ReadPosition(w.Dir(), "hub-b")
	if errA != nil || errB != nil || a.Position != b.Position || a.Delivered != b.Delivered {
		t.Fatalf("positions a %+v (%v), b %+v (%v)", a, errA, b, errB)
	}
}
