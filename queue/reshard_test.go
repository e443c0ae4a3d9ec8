package queue

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
)

func TestDesiredShards(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   shardInputs
		want int
	}{
		{"nothing sent keeps the count", shardInputs{current: 3, min: 1, max: 50}, 3},
		// 10k samples/s in and out, 1 ms per sample: 10 shards.
		{"throughput", shardInputs{current: 1, min: 1, max: 50, in: 10000, out: 10000, sendSeconds: 10}, 10},
		{"within tolerance", shardInputs{current: 9, min: 1, max: 50, in: 10000, out: 10000, sendSeconds: 10}, 9},
		{"clamped to max", shardInputs{current: 1, min: 1, max: 4, in: 10000, out: 10000, sendSeconds: 10}, 4},
		{"clamped to min", shardInputs{current: 10, min: 2, max: 50, in: 10, out: 10, sendSeconds: 0.01}, 2},
		// 100 s behind at 1000/s: pending 100k, catch up 5k/s more, 1 ms per sample: 6 shards.
		{"backlog raises", shardInputs{current: 1, min: 1, max: 50, in: 1000, out: 1000, sendSeconds: 1, delay: 100}, 6},
		{"no downshard while behind", shardInputs{current: 10, min: 1, max: 50, in: 10, out: 10, sendSeconds: 0.01, delay: 11}, 10},
		// Half the samples dropped: only the kept half needs shards.
		{"dropped samples need no shards", shardInputs{current: 1, min: 1, max: 50, in: 10000, out: 5000, dropped: 5000, sendSeconds: 5}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := desiredShards(tc.in); got != tc.want {
				t.Fatalf("desired %d, want %d", got, tc.want)
			}
		})
	}
}

func TestShardModelGuards(t *testing.T) {
	now := time.Unix(1000, 0)
	interval := 10 * time.Second
	load := func(r *rates) {
		r.in.Store(100000)
		r.out.Store(100000)
		r.sendNanos.Store(int64(100 * time.Second)) // 10 send-seconds per second: 10 shards
		r.highestRead.Store(now.UnixMilli())
		r.highestSent.Store(now.UnixMilli())
	}
	for _, tc := range []struct {
		name    string
		mod     func(r *rates)
		allowed bool
		desired int
	}{
		{"healthy", func(r *rates) { r.lastSendOK.Store(now.UnixNano()) }, true, 10},
		{"failing requests hold it", func(r *rates) {
			r.lastSendOK.Store(now.UnixNano())
			r.noReshardUntil.Store(now.Add(time.Second).UnixNano())
		}, false, 10},
		{"no recent success holds it", func(r *rates) { r.lastSendOK.Store(now.Add(-time.Minute).UnixNano()) }, false, 10},
		{"tailer blocked: behind by the wall clock", func(r *rates) {
			r.lastSendOK.Store(now.UnixNano())
			r.highestSent.Store(now.Add(-time.Hour).UnixMilli())
			r.highestRead.Store(now.Add(-time.Hour).UnixMilli())
			r.blockedNanos.Store(int64(9 * time.Second))
		}, true, 50},
		{"tailer not blocked: read vs sent", func(r *rates) {
			r.lastSendOK.Store(now.UnixNano())
			r.highestSent.Store(now.Add(-time.Hour).UnixMilli())
			r.highestRead.Store(now.Add(-time.Hour).UnixMilli())
		}, true, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r rates
			load(&r)
			tc.mod(&r)
			var m shardModel
			_, desired, ok := m.tick(&r, 1, 1, 50, interval, now)
			if desired != tc.desired || ok != tc.allowed {
				t.Fatalf("desired %d allowed %v, want %d %v", desired, ok, tc.desired, tc.allowed)
			}
		})
	}
}

func TestEWMA(t *testing.T) {
	var e ewmaRate
	if got := e.tick(100, time.Second); got != 100 {
		t.Fatalf("first tick %v", got)
	}
	if got := e.tick(0, time.Second); got != 80 {
		t.Fatalf("second tick %v", got)
	}
}

// TestAutoReshard runs the update loop for real (in a synctest bubble, so its intervals and the
// slow sender cost no wall time): a backlog behind a slow sender raises the shard count, and a
// sender that keeps failing recoverably holds it.
func TestAutoReshard(t *testing.T) {
	for _, tc := range []struct {
		name            string
		failOdd         bool
		wantMoreThanOne bool
	}{
		{name: "backlog raises shards", wantMoreThanOne: true},
		{name: "failing requests hold shards", failOdd: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := openWAL(t)
				total := fill(t, w, 200, 50, 1000)
				s := newFakeSender(func(ctx context.Context, call int, _ []prompb.TimeSeries) error {
					time.Sleep(50 * time.Millisecond) // fake time: a slow receiver
					if tc.failOdd && call%2 == 1 {
						return httpErr(503)
					}
					return nil
				})
				o := fastOptions("ep")
				o.MinShards, o.MaxShards = 1, 8
				o.MaxSamplesPerSend, o.Capacity = 100, 200
				o.ShardUpdateInterval = time.Second
				o.MinBackoff, o.MaxBackoff = time.Second, time.Second
				o.Sleep = sleep // fake time too
				o.StopAtEnd = true
				q, err := New(testLogger(), nil, w, s, o)
				if err != nil {
					t.Fatal(err)
				}
				if err := q.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
				s.checkOrder(t)
				reshards := testutil.ToFloat64(q.metrics.reshards)
				if st := q.Stats(); st.Delivered != int64(total) {
					t.Fatalf("stats %+v", st)
				}
				t.Logf("reshards %v, shards at the end %d, max requests in flight %d", reshards, q.Stats().Shards, s.maxInflight)
				if tc.wantMoreThanOne != (reshards > 0) {
					t.Fatalf("reshards %v, max in flight %d", reshards, s.maxInflight)
				}
				if tc.wantMoreThanOne && s.maxInflight < 2 {
					t.Fatalf("at most %d requests in flight", s.maxInflight)
				}
			})
		})
	}
}
