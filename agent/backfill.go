package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/collector-dev/collector/queue/backfill"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// DefaultBackfillInterval is how often the agent backfills deferred samples when
// Options.Backfill is set.
const DefaultBackfillInterval = 5 * time.Minute

// BackfillOptions makes the agent upload the samples its queues deferred (refused as too old by
// the receiver) as blocks to the hub's bucket, on its own.
type BackfillOptions struct {
	// Bucket receives the blocks. Required.
	Bucket backfill.Bucket
	// Options configures the blocks (external labels, replica label, block duration).
	Options backfill.Options
	// Interval is how often a pass runs (and the first one at start). Default
	// DefaultBackfillInterval.
	Interval time.Duration
}

// newBackfillers gives every queue a Backfiller of its dead-letter log, with its metrics labelled
// by cluster_id and endpoint. Without Options.Backfill the metrics are exported at zero.
func (a *Agent) newBackfillers(reg prometheus.Registerer) error {
	bo := a.opts.Backfill
	if bo == nil {
		for _, c := range a.clusters {
			for _, eq := range c.queues {
				backfill.RegisterMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"cluster_id": c.id, "endpoint": eq.name}, reg))
			}
		}
		return nil
	}
	if bo.Interval <= 0 {
		bo.Interval = DefaultBackfillInterval
	}
	for _, c := range a.clusters {
		for _, eq := range c.queues {
			b, err := backfill.New(a.logger.WithFields(logrus.Fields{"cluster_id": c.id, "endpoint": eq.name}),
				prometheus.WrapRegistererWith(prometheus.Labels{"cluster_id": c.id, "endpoint": eq.name}, reg), bo.Bucket, bo.Options)
			if err != nil {
				return fmt.Errorf("backfill of source %s, endpoint %s: %w", c.id, eq.name, err)
			}
			eq.backfill = b
		}
	}
	return nil
}

// backfillLoop runs a backfill pass over every queue's dead-letter log at start and every
// Interval until ctx is cancelled. Each pass first seals the segment the queue writes, so that
// everything deferred so far is taken. A failed pass is logged and retried at the next tick
// (the deferred samples stay; the pass resumes).
func (a *Agent) backfillLoop(ctx context.Context) {
	bo := a.opts.Backfill
	if bo == nil {
		return
	}
	interval := bo.Interval
	if interval <= 0 {
		interval = DefaultBackfillInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, c := range a.clusters {
			for _, eq := range c.queues {
				a.backfillOnce(ctx, c, eq)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) backfillOnce(ctx context.Context, c *cluster, eq *endpointQueue) {
	if eq.backfill == nil || ctx.Err() != nil {
		return
	}
	log := a.logger.WithFields(logrus.Fields{"component": "backfill", "cluster_id": c.id, "endpoint": eq.name})
	if err := eq.queue.SealDeferred(); err != nil {
		log.WithError(err).Warn("seal dead-letter segment; its samples wait for a later pass")
	}
	res, err := eq.backfill.Run(ctx, wal.DeferredDir(c.wal.Dir(), eq.name), nil)
	if err != nil {
		if ctx.Err() == nil {
			log.WithError(err).Error("backfill pass failed; the deferred samples stay and the next pass resumes")
		}
		return
	}
	if res.Blocks > 0 {
		log.WithFields(logrus.Fields{"blocks": res.Blocks, "samples": res.Samples}).Info("deferred samples backfilled")
	}
}
