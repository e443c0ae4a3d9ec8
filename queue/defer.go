package queue

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/collector-dev/collector/wal"
	"github.com/sirupsen/logrus"
)

// deferrer stores the samples the receiver refuses as too old in the consumer's dead-letter log
// (wal.DeferredLog), opened at the first deferral. Safe for concurrent use.
type deferrer struct {
	walDir, consumer string

	// mu guards log.
	mu  sync.Mutex
	log *wal.DeferredLog
	// watermark is the newest timestamp (ms) of a sample the receiver refused alone as too old,
	// math.MinInt64 before the first: the head's lower bound only moves forward, so samples at or
	// before it are deferred without a request (re-sent to the dead-letter log, never lost).
	watermark atomic.Int64
}

func newDeferrer(walDir, consumer string) *deferrer {
	d := &deferrer{walDir: walDir, consumer: consumer}
	d.watermark.Store(math.MinInt64)
	return d
}

// store appends series to the dead-letter log and fsyncs it.
func (d *deferrer) store(series []Series) error {
	ts, err := toPrompb(series)
	if err != nil {
		return fmt.Errorf("decode series to defer: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.log == nil {
		l, err := wal.OpenDeferred(d.walDir, d.consumer)
		if err != nil {
			return fmt.Errorf("open dead-letter log: %w", err)
		}
		d.log = l
	}
	return d.log.Append(ts)
}

// seal closes the dead-letter segment being written, so that a backfill can take it.
func (d *deferrer) seal() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.log == nil {
		return nil
	}
	return d.log.Seal()
}

// close seals the segment and releases the dead-letter log.
func (d *deferrer) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.log == nil {
		return nil
	}
	err := d.log.Close()
	d.log = nil
	return err
}

func (d *deferrer) raise(t int64) {
	for {
		cur := d.watermark.Load()
		if t <= cur || d.watermark.CompareAndSwap(cur, t) {
			return
		}
	}
}

// SealDeferred seals the segment of the dead-letter log being written, so that a backfill takes
// every sample deferred so far. Safe to call at any time; the next deferral starts a new segment.
func (q *Queue) SealDeferred() error {
	if q.deferrer == nil {
		return nil
	}
	return q.deferrer.seal()
}

// deferSamples stores b in the dead-letter log and settles its samples as deferred. A failed
// store (disk full, lock held) is retried with the shard's backoff like a recoverable send: the
// samples stay unsettled, so the position does not pass them until they are durable. It returns
// ctx.Err() when cancelled first; b is then left unsettled (sent again after a restart).
func (s *shard) deferSamples(ctx context.Context, b batch, refused int64) error {
	q := s.q
	for {
		err := q.deferrer.store(b.series)
		if err == nil {
			if refused != math.MinInt64 {
				q.deferrer.raise(refused)
			}
			q.settle(s.flatten(b), ReasonDeferred)
			return nil
		}
		q.metrics.deferErrors.Inc()
		d := s.bo.NextBackOff()
		s.logger.WithError(err).WithFields(logrus.Fields{"samples": b.samples(), "backoff": d}).Error("samples refused as too old cannot be stored for backfill; kept unsettled and tried again")
		if err := q.opts.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// deferOld defers, without a request, the samples of b at or before the deferrer's watermark,
// and returns the rest.
func (s *shard) deferOld(ctx context.Context, b batch) (batch, error) {
	if s.q.deferrer == nil {
		return b, nil
	}
	wm := s.q.deferrer.watermark.Load()
	if wm == math.MinInt64 {
		return b, nil
	}
	keep, old := b.splitAtOrBefore(wm)
	if old.samples() == 0 {
		return b, nil
	}
	if err := s.deferSamples(ctx, old, math.MinInt64); err != nil {
		return b, err
	}
	return keep, nil
}

// splitAtOrBefore returns the samples of b newer than cutoff (ms) and those at or before it, in
// new batches (b's storage is not modified).
func (b batch) splitAtOrBefore(cutoff int64) (keep, old batch) {
	for i, ts := range b.series {
		seqs := b.seqs[i]
		// Samples of a series are in time order: find the first one newer than cutoff.
		j := 0
		for j < len(ts.Samples) && ts.Samples[j].Timestamp <= cutoff {
			j++
		}
		if j > 0 {
			old.series = append(old.series, Series{Labels: ts.Labels, Samples: ts.Samples[:j:j]})
			old.seqs = append(old.seqs, seqs[:j:j])
		}
		if j < len(ts.Samples) {
			keep.series = append(keep.series, Series{Labels: ts.Labels, Samples: ts.Samples[j:]})
			keep.seqs = append(keep.seqs, seqs[j:])
		}
	}
	return keep, old
}

// closeDeferrer releases the dead-letter log at the end of Run.
func (q *Queue) closeDeferrer() error {
	if q.deferrer == nil {
		return nil
	}
	if err := q.deferrer.close(); err != nil {
		return fmt.Errorf("close dead-letter log of %s: %w", q.opts.Consumer, err)
	}
	return nil
}
