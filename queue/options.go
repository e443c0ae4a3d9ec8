package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/collector-dev/collector/wal"
)

// Options configures a Queue. Start from DefaultOptions; the zero value is not valid.
type Options struct {
	// Consumer names the durable position of this queue in the WAL (positions/<Consumer>.json).
	// One per endpoint: the agent uses the endpoint name. Required.
	Consumer string

	// MaxSamplesPerSend caps the samples of one request. Default 5000: on the e2e/benche2e
	// workload at 200k series, 5000 and 10000 cost 8-12 % less CPU per sample than Prometheus'
	// 2000 (fewer requests, each with its HTTP round trip and goroutine hand-offs) at the same
	// peak RSS; 20000 saved little more and cost 15 MiB. A receiver that refuses a request as
	// too large (413) gets it split.
	MaxSamplesPerSend int
	// MaxRequestBytes caps the estimated size of one request before compression (labels once per
	// series of the request, plus 16 bytes and framing per sample). Default 4 MiB.
	MaxRequestBytes int
	// BatchSendDeadline is how long a shard waits for a batch to fill before sending it anyway.
	// Default 5s.
	BatchSendDeadline time.Duration
	// Capacity is the number of samples each shard buffers ahead of its request in flight, in
	// chunks of at most MaxSamplesPerSend; it bounds memory together with MaxShards. Default
	// 10000 (2 requests' worth): the WAL is the buffer, so a shard only needs its next request
	// ready while one is in flight.
	Capacity int

	// MinShards and MaxShards bound the number of shards (concurrent requests). Defaults 1 and 50
	// (Prometheus' defaults; 50 × 5000 samples per 100 ms ≈ 2.5 M samples/s).
	MinShards, MaxShards int
	// ShardUpdateInterval is how often the desired number of shards is computed. Default 10s.
	ShardUpdateInterval time.Duration

	// MinBackoff and MaxBackoff bound the exponential backoff between retries of a recoverable
	// failure (doubling, ±BackoffJitter). Defaults 30ms and 30s: at most 30 s of delay after an
	// outage ends, at most one request per 30 s per shard while it lasts.
	MinBackoff, MaxBackoff time.Duration
	// BackoffJitter is the randomization factor of the backoff: each delay is drawn from
	// [d×(1−j), d×(1+j)]. Default 0.2.
	BackoffJitter float64
	// MaxRetryAfter caps a Retry-After asked for by the receiver. It takes precedence over the
	// backoff up to this value. Default 5m.
	MaxRetryAfter time.Duration

	// SampleAgeLimit drops samples older than this at send time (each attempt), with reason
	// "too_old". 0, the default, never drops. Thanos receive without an out-of-order window
	// refuses (409) samples older than about 1 h behind the tenant's newest sample: setting a
	// limit slightly under that (e.g. 55m) turns those refusals into counted drops before they
	// cost a request; leave it 0 when the receiver has an out-of-order window.
	SampleAgeLimit time.Duration

	// FlushDeadline is how long Run keeps sending what it holds after its context is cancelled
	// before it cancels the requests in flight. The flush also ends at the first recoverable
	// failure (or at once when the endpoint is failing): it only waits for a working endpoint.
	// What a shard holds is at most Capacity samples plus the request in flight, a few requests'
	// worth, so a healthy endpoint needs seconds. Default 15s.
	FlushDeadline time.Duration
	// CommitInterval is the least time between two commits of the position while it moves, and
	// the delay before a failed commit is retried. Nothing is written while nothing moves.
	// Default 1s.
	CommitInterval time.Duration
	// KeepAlive, when positive, commits the position at least this often even when it did not
	// move, so that its Updated time stays fresh: a replay's lease on the WAL (see
	// wal.Options.LeasePrefix) while the endpoint is down. Default 0: only changes are committed.
	KeepAlive time.Duration

	// StopAtEnd makes Run return nil once every sample up to the end of the WAL is delivered or
	// dropped, instead of following the writer (replay).
	StopAtEnd bool
	// NoCommit never writes the position file: counters live only in Stats (replay beside a
	// running agent). Reading still starts at the consumer's durable position unless StartAt is
	// set.
	NoCommit bool
	// StartAt, when set, is where reading starts instead of the durable position (a zero
	// Position means the oldest retained segment).
	StartAt *wal.Position
	// MinTime and MaxTime, when not zero, skip samples outside [MinTime, MaxTime] (milliseconds).
	// Skipped samples count as filtered, not dropped.
	MinTime, MaxTime int64

	// WriteRelabelConfigs are the endpoint's write_relabel_configs (Prometheus' relabeling),
	// applied to the labels of each series once, before its samples are sharded (the outcome,
	// encoded for the wire, is kept with the series by the reader). A series they drop is counted with reason "write_relabel" and never
	// sent; a series whose rules remove its metric name too. Nil: series are sent as written.
	WriteRelabelConfigs []*relabel.Config

	// PollInterval is how often the reader looks for new data without a notification from the
	// writer. Default (0): the reader's default, 250ms for a bare directory and 5s for a WAL of
	// this process, whose writer wakes the reader at every commit (wal.ReaderOptions).
	PollInterval time.Duration
	// Now is the clock (age limit, timestamps of metrics). Default time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx is done, returning ctx.Err() then. It is the backoff's timer;
	// tests replace it. Default: a real timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// DefaultOptions returns the defaults documented on each field of Options. Consumer is left empty.
func DefaultOptions() Options {
	return Options{
		MaxSamplesPerSend:   5000,
		MaxRequestBytes:     4 << 20,
		BatchSendDeadline:   5 * time.Second,
		Capacity:            10000,
		MinShards:           1,
		MaxShards:           50,
		ShardUpdateInterval: 10 * time.Second,
		MinBackoff:          30 * time.Millisecond,
		MaxBackoff:          30 * time.Second,
		BackoffJitter:       0.2,
		MaxRetryAfter:       5 * time.Minute,
		FlushDeadline:       15 * time.Second,
		CommitInterval:      time.Second,
		Now:                 time.Now,
		Sleep:               sleep,
	}
}

func (o *Options) validate() error {
	if err := wal.ValidateID(o.Consumer); err != nil {
		return fmt.Errorf("consumer %q: %w", o.Consumer, err)
	}
	switch {
	case o.MaxSamplesPerSend <= 0:
		return fmt.Errorf("max samples per send %d must be positive", o.MaxSamplesPerSend)
	case o.MaxRequestBytes <= 0:
		return fmt.Errorf("max request bytes %d must be positive", o.MaxRequestBytes)
	case o.BatchSendDeadline <= 0:
		return fmt.Errorf("batch send deadline %v must be positive", o.BatchSendDeadline)
	case o.Capacity < o.MaxSamplesPerSend:
		return fmt.Errorf("capacity %d must be at least max samples per send %d", o.Capacity, o.MaxSamplesPerSend)
	case o.MinShards < 1 || o.MaxShards < o.MinShards:
		return fmt.Errorf("shards min %d max %d: need 1 <= min <= max", o.MinShards, o.MaxShards)
	case o.ShardUpdateInterval <= 0:
		return fmt.Errorf("shard update interval %v must be positive", o.ShardUpdateInterval)
	case o.MinBackoff <= 0 || o.MaxBackoff < o.MinBackoff:
		return fmt.Errorf("backoff min %v max %v: need 0 < min <= max", o.MinBackoff, o.MaxBackoff)
	case o.BackoffJitter < 0 || o.BackoffJitter >= 1:
		return fmt.Errorf("backoff jitter %v must be in [0, 1)", o.BackoffJitter)
	case o.MaxRetryAfter < 0 || o.SampleAgeLimit < 0 || o.FlushDeadline < 0:
		return fmt.Errorf("max retry-after, sample age limit and flush deadline must not be negative")
	case o.CommitInterval <= 0:
		return fmt.Errorf("commit interval %v must be positive", o.CommitInterval)
	case o.MaxTime != 0 && o.MaxTime < o.MinTime:
		return fmt.Errorf("time filter [%d, %d] is empty", o.MinTime, o.MaxTime)
	}
	for i, c := range o.WriteRelabelConfigs {
		if c == nil {
			return fmt.Errorf("write relabel rule %d is empty", i)
		}
		if err := c.Validate(model.UTF8Validation); err != nil {
			return fmt.Errorf("write relabel rule %d: %w", i, err)
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	return nil
}

// sleep waits d on a real timer, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
