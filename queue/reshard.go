package queue

import (
	"math"
	"sync/atomic"
	"time"
)

// The shard model is Prometheus' (storage/remote/queue_manager.go, calculateDesiredShards): rates
// are exponentially weighted moving averages over ShardUpdateInterval ticks, weight 0.2, and
//
//	keptRatio     = out / (out + dropped)
//	timePerSample = sendSeconds / out
//	pending       = delay × in × keptRatio
//	desired       = ceil(timePerSample × (in × keptRatio + 0.05 × pending))
//
// with these guards: no change within ±30% of the current count, no downsharding while more
// than 10 s behind, no resharding while requests fail recoverably (more shards make rate limiting
// worse) or when nothing was sent for two intervals, and clamping to [MinShards, MaxShards].
//
// One adaptation to a WAL-backed queue: Prometheus' delay is newest appended − newest sent, but
// our reader reads only as fast as the shards drain, so during a backlog the newest read is
// close to the newest sent. When the tailer spent at least half of the interval blocked on full
// shards, the WAL holds unread data and the delay is taken as now − newest sent instead.

const (
	ewmaWeight             = 0.2
	shardToleranceFraction = 0.3
	catchupFraction        = 0.05
	maxDelayToDownshard    = 10 * time.Second
	backlogBlockedFraction = 0.5
)

// ewmaRate is an exponentially weighted moving average of a per-second rate. Not safe for
// concurrent use.
type ewmaRate struct {
	rate float64
	init bool
}

func (e *ewmaRate) tick(events float64, interval time.Duration) float64 {
	instant := events / interval.Seconds()
	if e.init {
		e.rate += ewmaWeight * (instant - e.rate)
	} else {
		e.rate, e.init = instant, true
	}
	return e.rate
}

// shardInputs are the smoothed rates (per second) the model works from.
type shardInputs struct {
	current, min, max int
	in, out, dropped  float64
	sendSeconds       float64 // seconds spent in Send per second
	delay             float64 // seconds behind
}

// desiredShards returns the raw model value and the count to run (tolerance, downshard guard and
// clamping applied).
func desiredShards(in shardInputs) (float64, int) {
	if in.out <= 0 {
		return float64(in.current), in.current
	}
	kept := in.out / (in.out + in.dropped)
	timePerSample := in.sendSeconds / in.out
	pending := in.delay * in.in * kept
	raw := timePerSample * (in.in*kept + catchupFraction*pending)
	desired := int(math.Ceil(raw))
	lower := float64(in.current) * (1 - shardToleranceFraction)
	upper := float64(in.current) * (1 + shardToleranceFraction)
	switch {
	case lower <= float64(desired) && float64(desired) <= upper:
		desired = in.current
	case desired < in.current && in.delay > maxDelayToDownshard.Seconds():
		desired = in.current
	}
	return raw, min(max(desired, in.min), in.max)
}

// rates are the counters the shard model reads; updated by the tailer and the shards.
type rates struct {
	in, out, dropped atomic.Int64
	sendNanos        atomic.Int64
	blockedNanos     atomic.Int64 // tailer waiting for room in a shard
	highestRead      atomic.Int64 // ms
	highestSent      atomic.Int64 // ms
	lastSendOK       atomic.Int64 // unix nanos
	noReshardUntil   atomic.Int64 // unix nanos: set on recoverable failures
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// shardModel turns the counters into a desired shard count at every tick. Not safe for
// concurrent use: owned by the update loop.
type shardModel struct {
	in, out, dropped, send ewmaRate
}

// tick consumes the counters of one interval and returns the raw desired value, the count to run
// and whether resharding is allowed now.
func (m *shardModel) tick(r *rates, current, minShards, maxShards int, interval time.Duration, now time.Time) (float64, int, bool) {
	in := m.in.tick(float64(r.in.Swap(0)), interval)
	out := m.out.tick(float64(r.out.Swap(0)), interval)
	dropped := m.dropped.tick(float64(r.dropped.Swap(0)), interval)
	send := m.send.tick(float64(r.sendNanos.Swap(0))/1e9, interval)
	blocked := time.Duration(r.blockedNanos.Swap(0))

	sent := r.highestSent.Load()
	var delay float64
	if blocked >= time.Duration(float64(interval)*backlogBlockedFraction) {
		delay = float64(now.UnixMilli()-sent) / 1e3
	} else {
		delay = float64(r.highestRead.Load()-sent) / 1e3
	}
	delay = max(delay, 0)
	raw, desired := desiredShards(shardInputs{
		current: current, min: minShards, max: maxShards,
		in: in, out: out, dropped: dropped, sendSeconds: send, delay: delay,
	})
	allowed := desired != current &&
		now.UnixNano() >= r.noReshardUntil.Load() &&
		now.Sub(time.Unix(0, r.lastSendOK.Load())) <= 2*interval
	return raw, desired, allowed
}
