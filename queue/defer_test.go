package queue_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// pushHead appends one sample of another series to the receiver's TSDB at bound + 1h: its head
// then refuses every sample older than bound as out of bounds (min valid time = newest - half
// the 2h block range), as Thanos receive's head does once other clusters pushed it forward.
func pushHead(t *testing.T, rc *receiver, bound int64) {
	t.Helper()
	app := rc.db.Appender(context.Background())
	if _, err := app.Append(0, labels.FromStrings("__name__", "pusher", "instance", "pusher"), bound+time.Hour.Milliseconds(), 1); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// thanosLike answers like Thanos receive's writer, sample by sample into the receiver's TSDB:
// samples before bound are refused as out of bounds, samples older than the series' newest as
// out of order, exact duplicates are accepted silently, the rest is written; any refusal is
// answered with 409 naming it, after the rest was written.
func thanosLike(t *testing.T, rc *receiver, bound int64) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		req := decode(t, r)
		var oob, ooo int
		for _, ts := range req.Timeseries {
			var b labels.ScratchBuilder
			for _, l := range ts.Labels {
				b.Add(l.Name, l.Value)
			}
			b.Sort()
			lset := b.Labels()
			for _, s := range ts.Samples {
				if s.Timestamp < bound {
					oob++
					continue
				}
				app := rc.db.Appender(r.Context())
				_, err := app.Append(0, lset, s.Timestamp, s.Value)
				switch {
				case err == nil:
					err = app.Commit()
				case errors.Is(err, storage.ErrOutOfOrderSample), errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
					ooo++
					err = app.Rollback()
				}
				if err != nil {
					t.Error(err)
				}
			}
		}
		var msgs []string
		if oob > 0 {
			msgs = append(msgs, fmt.Sprintf("add %d samples: out of bounds", oob))
		}
		if ooo > 0 {
			msgs = append(msgs, fmt.Sprintf("add %d samples: out of order sample", ooo))
		}
		if len(msgs) > 0 {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, "store locally for endpoint 127.0.0.1:10901: %s", strings.Join(msgs, "; "))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// readDeferred returns the timestamps in the dead-letter log of consumer, by instance, sorted,
// duplicates removed.
func readDeferred(t *testing.T, walDir, consumer string) map[string][]int64 {
	t.Helper()
	dir := wal.DeferredDir(walDir, consumer)
	segs, err := wal.DeferredSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int64{}
	torn, err := wal.ReadDeferred(dir, segs, func(s wal.DeferredSample) error {
		k := s.Labels.Get("instance")
		out[k] = append(out[k], s.T)
		return nil
	})
	if err != nil || len(torn) > 0 {
		t.Fatalf("read dead-letter log: %v %v", err, torn)
	}
	for k := range out {
		slices.Sort(out[k])
		out[k] = slices.Compact(out[k])
	}
	return out
}

// splitWant splits the appended timestamps at bound.
func splitWant(want map[string][]int64, bound int64) (old, fresh map[string][]int64, nOld int64) {
	old, fresh = map[string][]int64{}, map[string][]int64{}
	for k, ts := range want {
		for _, x := range ts {
			if x < bound {
				old[k] = append(old[k], x)
				nOld++
			} else {
				fresh[k] = append(fresh[k], x)
			}
		}
	}
	return old, fresh, nOld
}

// TestDeferTooOld: samples the receiver refuses as too old for its head are stored in the
// dead-letter log and counted as deferred, exactly; the rest is delivered; nothing is dropped.
// Before deferral existed, they were dropped as http_400 / http_409.
func TestDeferTooOld(t *testing.T) {
	const series, scrapes = 10, 60
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, h *harness, bound int64)
	}{
		{"prometheus 400 out of bounds, whole request rolled back", func(t *testing.T, h *harness, bound int64) {
			pushHead(t, h.rc, bound)
		}},
		{"thanos 409 out of bounds, the rest written", func(t *testing.T, h *harness, bound int64) {
			h.rc.setBehaviour(thanosLike(t, h.rc, bound))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, series, scrapes, false)
			t0 := slices.Min(h.want["host-0"])
			bound := t0 + scrapes/2*1000 + 500
			tc.setup(t, h, bound)
			o := options("ep")
			o.StopAtEnd = true
			st := runToEnd(t, h.newQueue(o))

			old, fresh, nOld := splitWant(h.want, bound)
			got := h.rc.samples()
			delete(got, "pusher")
			for k := range got {
				got[k] = slices.Compact(got[k])
			}
			if !maps.EqualFunc(got, fresh, slices.Equal[[]int64]) {
				t.Fatalf("receiver holds %d samples, want the %d at or after the bound", countMap(got), countMap(fresh))
			}
			if d := readDeferred(t, h.w.Dir(), "ep"); !maps.EqualFunc(d, old, slices.Equal[[]int64]) {
				t.Fatalf("dead-letter log holds %d samples, want the %d before the bound", countMap(d), countMap(old))
			}
			if st.Deferred != nOld || len(st.Dropped) != 0 || st.Delivered+st.Deferred != int64(h.appended) || st.Pending != 0 {
				t.Fatalf("delivered %d deferred %d (want %d) dropped %v pending %d, appended %d", st.Delivered, st.Deferred, nOld, st.Dropped, st.Pending, h.appended)
			}
			ps, err := wal.ReadPosition(h.w.Dir(), "ep")
			if err != nil || ps.Deferred != st.Deferred || ps.Delivered != st.Delivered {
				t.Fatalf("position file %+v (%v), stats %+v", ps, err, st)
			}
			if v := metric(t, h.reg, "collector_queue_samples_deferred_total"); v != float64(nOld) {
				t.Fatalf("collector_queue_samples_deferred_total %v, want %d", v, nOld)
			}
		})
	}
}

// TestDeferStoreFailureKeepsPosition: while the refused samples cannot be stored in the
// dead-letter log, they stay unsettled and the position does not pass them (a crash then resends
// them); once storing works they are deferred and every sample is accounted for.
func TestDeferStoreFailureKeepsPosition(t *testing.T) {
	const series, scrapes = 10, 60
	h := newHarness(t, series, scrapes, false)
	t0 := slices.Min(h.want["host-0"])
	bound := t0 + scrapes/2*1000 + 500
	pushHead(t, h.rc, bound)
	// A file where the dead-letter directories go: opening the log fails.
	block := filepath.Join(h.w.Dir(), "deferred")
	if err := os.WriteFile(block, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o := options("ep")
	q := h.newQueue(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	waitFor(t, "failed deferrals", func() bool { return metric(t, h.reg, "collector_queue_defer_errors_total") >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ps, err := wal.ReadPosition(h.w.Dir(), "ep")
	if err != nil {
		t.Fatal(err)
	}
	// The first record's samples are all refused: the position cannot have left it.
	if ps.Deferred != 0 || len(ps.Dropped) != 0 || ps.Delivered != 0 {
		t.Fatalf("position passed samples that were not stored: %+v", ps)
	}

	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	o.StopAtEnd = true
	h.reg = prometheus.NewRegistry()
	st := runToEnd(t, h.newQueue(o))
	old, _, nOld := splitWant(h.want, bound)
	if d := readDeferred(t, h.w.Dir(), "ep"); !maps.EqualFunc(d, old, slices.Equal[[]int64]) {
		t.Fatalf("dead-letter log holds %d samples, want the %d before the bound", countMap(d), countMap(old))
	}
	if st.Deferred != nOld || len(st.Dropped) != 0 || st.Delivered+st.Deferred != int64(h.appended) {
		t.Fatalf("delivered %d deferred %d (want %d) dropped %v, appended %d", st.Delivered, st.Deferred, nOld, st.Dropped, h.appended)
	}
}
