package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/collector-dev/collector/wal"
)

// commitLoop makes the position durable every CommitInterval until ctx is done. It logs its own
// failures (and retries at the next tick); Run commits once more at the end.
func (q *Queue) commitLoop(ctx context.Context, dir string, t *tracker) {
	tick := time.NewTicker(q.opts.CommitInterval)
	defer tick.Stop()
	var last uint64
	lastAt := q.opts.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		q.updatePositionGauges(t)
		if q.opts.NoCommit {
			continue
		}
		st, v := t.state()
		now := q.opts.Now()
		if v == last && (q.opts.KeepAlive <= 0 || now.Sub(lastAt) < q.opts.KeepAlive) {
			continue
		}
		st.Updated = now
		if err := wal.CommitPosition(dir, q.opts.Consumer, st); err != nil {
			q.metrics.commitErrors.Inc()
			q.logger.WithError(err).Warn("commit position; retrying at the next interval (a restart would resend more)")
			continue
		}
		last, lastAt = v, now
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
