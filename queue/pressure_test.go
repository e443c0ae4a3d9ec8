package queue

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
)

// TestBackPressure blocks the sender: the tailer must stop reading once the shard's buffer is
// full, however much the WAL holds. synctest.Wait returns when every goroutine is blocked, so
// the count of records read is final.
func TestBackPressure(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		shards, perSend, capac int
		seriesPerScrape        int
		want                   int // records read when everything is blocked
	}{
		// One shard: 1 record in the request in flight, 2 in the channel (capacity/perSend),
		// 1 in the tailer waiting for room.
		{name: "one shard", shards: 1, perSend: 10, capac: 20, seriesPerScrape: 10, want: 4},
		// Records of 20 samples in chunks of 10: the request holds half a record, the channel
		// 2 chunks, the tailer the rest.
		{name: "records larger than a request", shards: 1, perSend: 10, capac: 20, seriesPerScrape: 20, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := openWAL(t)
				fill(t, w, tc.seriesPerScrape, 500, 1000)
				release := make(chan struct{})
				s := newFakeSender(func(ctx context.Context, _ int, _ []prompb.TimeSeries) error {
					select {
					case <-release:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				})
				o := fastOptions("ep")
				o.MinShards, o.MaxShards = tc.shards, tc.shards
				o.MaxSamplesPerSend, o.Capacity = tc.perSend, tc.capac
				o.BatchSendDeadline = time.Hour
				o.StopAtEnd = true
				q, err := New(testLogger(), nil, w, s, o)
				if err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := q.Run(context.Background()); err != nil {
						t.Error(err)
					}
				}()
				synctest.Wait()
				if got := int(testutil.ToFloat64(q.metrics.recordsRead)); got != tc.want {
					t.Fatalf("read %d records while the sender is blocked, want %d", got, tc.want)
				}
				close(release)
				wg.Wait()
				if st := q.Stats(); st.Delivered != int64(500*tc.seriesPerScrape) {
					t.Fatalf("stats %+v", st)
				}
			})
		})
	}
}

// TestReshardAtDrainedBoundary asks for a reshard while a request is stuck: reading stops, no
// request of the new shard set starts before the old shard finished, and order per series holds.
func TestReshardAtDrainedBoundary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := openWAL(t)
		fill(t, w, 40, 50, 1000)
		release := make(chan struct{})
		s := newFakeSender(func(ctx context.Context, call int, _ []prompb.TimeSeries) error {
			if call == 1 {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
		o := fastOptions("ep")
		o.MinShards, o.MaxShards = 1, 8
		o.MaxSamplesPerSend, o.Capacity = 20, 40
		o.StopAtEnd = true
		q, err := New(testLogger(), nil, w, s, o)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- q.Run(context.Background()) }()
		synctest.Wait()
		readBefore := testutil.ToFloat64(q.metrics.recordsRead)
		q.reshardc <- 8
		synctest.Wait()
		// Draining: the old shard is stuck, so no new shard set and no reading.
		if got := testutil.ToFloat64(q.metrics.recordsRead); got != readBefore {
			t.Fatalf("read %v records during the drain, had %v", got, readBefore)
		}
		if q.Stats().Shards != 1 {
			t.Fatalf("shards %d during the drain", q.Stats().Shards)
		}
		s.mu.Lock()
		calls := s.calls
		s.mu.Unlock()
		if calls != 1 {
			t.Fatalf("%d requests while one was stuck in the old shard set", calls)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if st := q.Stats(); st.Delivered != 2000 || st.Shards != 8 {
			t.Fatalf("stats %+v", st)
		}
		if testutil.ToFloat64(q.metrics.reshards) != 1 {
			t.Fatal("no reshard counted")
		}
		s.checkOrder(t)
	})
}

// TestBatchDeadline: a partial batch is sent after BatchSendDeadline, not before.
func TestBatchDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := openWAL(t)
		fill(t, w, 3, 1, 1000)
		s := newFakeSender(nil)
		o := fastOptions("ep")
		o.BatchSendDeadline = 5 * time.Second
		q, err := New(testLogger(), nil, w, s, o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- q.Run(ctx) }()
		synctest.Wait()
		time.Sleep(4 * time.Second) // fake time inside the bubble
		synctest.Wait()
		if s.ackedSamples() != 0 {
			t.Fatalf("sent %d samples before the deadline", s.ackedSamples())
		}
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		if s.ackedSamples() != 3 {
			t.Fatalf("sent %d samples after %v", s.ackedSamples(), time.Since(start))
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
