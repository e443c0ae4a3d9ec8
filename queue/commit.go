package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/collector-dev/collector/wal"
)

// commitLoop makes the position durable until ctx is done: after the tracker changes, at most
// once every CommitInterval, and every KeepAlive when that is set. It logs its own failures and
// retries after CommitInterval; Run commits once more at the end.
//
// It sleeps while nothing changes instead of ticking: in the runtime every timer that fires in
// an idle process wakes two threads, the one that polls the network (twice: the poll's timeout
// is in whole milliseconds, rounded down) and sysmon, which sleeps until the next timer. A
// one-second ticker took about 60 of the 500 context switches of a 15-second scrape interval at
// 200k series.
func (q *Queue) commitLoop(ctx context.Context, dir string, t *tracker) {
	var keep <-chan time.Time
	var keepTimer *time.Timer
	if q.opts.KeepAlive > 0 {
		keepTimer = time.NewTimer(q.opts.KeepAlive)
		defer keepTimer.Stop()
		keep = keepTimer.C
	}
	var retry <-chan time.Time
	var last uint64
	var next time.Time // the earliest start of the next pass
	for {
		renew := false
		select {
		case <-ctx.Done():
			return
		case <-t.changed:
		case <-retry:
			retry = nil
		case <-keep:
			renew = true
		}
		if d := time.Until(next); d > 0 {
			if sleep(ctx, d) != nil {
				return
			}
		}
		next = time.Now().Add(q.opts.CommitInterval)
		q.updatePositionGauges(t)
		if q.opts.NoCommit {
			continue
		}
		st, v := t.state()
		if v == last && !renew {
			continue
		}
		st.Updated = q.opts.Now()
		if err := wal.CommitPosition(dir, q.opts.Consumer, st); err != nil {
			q.metrics.commitErrors.Inc()
			q.logger.WithError(err).Warn("commit position; retrying (a restart would resend more)")
			last = v - 1 // differs from any version: the next pass commits
			retry = time.After(q.opts.CommitInterval)
			continue
		}
		last = v
		if keepTimer != nil {
			keepTimer.Reset(q.opts.KeepAlive)
		}
	}
}

// commit makes the current position durable.
func (q *Queue) commit(dir string, t *tracker) error {
	st, _ := t.state()
	st.Updated = q.opts.Now()
	if err := wal.CommitPosition(dir, q.opts.Consumer, st); err != nil {
		q.metrics.commitErrors.Inc()
		return fmt.Errorf("commit position %v of consumer %s: %w", st.Position, q.opts.Consumer, err)
	}
	return nil
}

func (q *Queue) updatePositionGauges(t *tracker) {
	st := t.stats()
	q.metrics.positionSegment.Set(float64(st.Position.Segment))
	q.metrics.positionOffset.Set(float64(st.Position.Offset))
	q.metrics.pending.Set(float64(st.Pending))
}
