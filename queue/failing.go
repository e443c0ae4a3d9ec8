package queue

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// failing tracks the shards whose request failed recoverably and is being retried, by the
// failure's reason, for collector_queue_failing_shards and for the log: the endpoint is logged
// as failing when a reason first appears (the first failing shard, or a new kind of failure),
// and as recovered when no shard fails any longer. Retries in between log nothing. Safe for
// concurrent use.
type failing struct {
	logger logrus.FieldLogger
	gauge  *prometheus.GaugeVec
	now    func() time.Time

	mu       sync.Mutex
	byReason map[string]int // guarded by mu: failing shards per reason
	total    int            // guarded by mu: sum of byReason
	since    time.Time      // guarded by mu: when total became positive
}

func newFailing(logger logrus.FieldLogger, gauge *prometheus.GaugeVec, now func() time.Time) *failing {
	return &failing{logger: logger, gauge: gauge, now: now, byReason: map[string]int{}}
}

// change moves a shard from the failure reason from to the reason to ("" is not failing). err and
// backoff describe the failure that led to it, for the log. With quiet, a shard that leaves the
// failing state because it stops (shutdown) does not log a recovery.
func (f *failing) change(shard int, from, to string, err error, backoff time.Duration, quiet bool) {
	if from == to {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if from != "" {
		f.byReason[from]--
		f.total--
		f.gauge.WithLabelValues(from).Set(float64(f.byReason[from]))
	}
	if to == "" {
		if f.total == 0 && !quiet {
			f.logger.WithFields(logrus.Fields{"shard": shard, "failed_for": f.now().Sub(f.since).Round(time.Millisecond)}).Info("remote write recovered")
		}
		return
	}
	if f.total == 0 {
		f.since = f.now()
	}
	f.byReason[to]++
	f.total++
	f.gauge.WithLabelValues(to).Set(float64(f.byReason[to]))
	if f.byReason[to] == 1 {
		f.logger.WithError(err).WithFields(logrus.Fields{"shard": shard, "reason": to, "backoff": backoff}).Warn("remote write failing; retrying until it succeeds, the samples wait in the wal")
	}
}
