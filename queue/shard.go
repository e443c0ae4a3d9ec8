package queue

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/sirupsen/logrus"
)

// shard sends the samples of the series routed to it, one request at a time, in the order it
// received them. It is owned by one goroutine (run) and not safe for concurrent use.
type shard struct {
	q      *Queue
	id     int
	in     chan *chunk
	bld    *builder
	bo     *backoff.ExponentialBackOff
	logger logrus.FieldLogger

	// failReason is the reason of the failure being retried, "" while requests succeed (see
	// failing).
	failReason string
	scratch    []uint64
}

func (q *Queue) newShard(id int) *shard {
	o := q.opts
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     o.MinBackoff,
		RandomizationFactor: o.BackoffJitter,
		Multiplier:          2,
		MaxInterval:         o.MaxBackoff,
		MaxElapsedTime:      0, // never give up: the data is in the WAL
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	bo.Reset()
	return &shard{
		q:      q,
		id:     id,
		in:     make(chan *chunk, max(1, o.Capacity/o.MaxSamplesPerSend)),
		bld:    newBuilder(o.MaxSamplesPerSend, o.MaxRequestBytes),
		bo:     bo,
		logger: q.logger.WithField("shard", id),
	}
}

// run sends until in is closed and everything received is settled, or until ctx (the send
// context) is cancelled: then what it holds stays unacknowledged.
func (s *shard) run(ctx context.Context) {
	defer s.setFailing("", nil, 0, true)
	deadline := time.NewTimer(s.q.opts.BatchSendDeadline)
	deadline.Stop()
	defer deadline.Stop()
	for {
		select {
		case c, ok := <-s.in:
			if !ok {
				s.flush(ctx)
				return
			}
			for i := range c.items {
				it := &c.items[i]
				k := s.bld.entry(it, c.seq)
				if !s.bld.fits(it, k) {
					if !s.flush(ctx) {
						return
					}
					k = -1
				}
				if s.bld.len() == 0 {
					deadline.Reset(s.q.opts.BatchSendDeadline)
				}
				s.bld.add(it, k, c.seq)
			}
			s.q.chunks.put(c)
			if s.bld.full() && !s.flush(ctx) {
				return
			}
			if s.bld.len() == 0 {
				deadline.Stop()
			}
		case <-deadline.C:
			if !s.flush(ctx) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// flush delivers the batch being built. It returns false when ctx was cancelled first.
func (s *shard) flush(ctx context.Context) bool {
	if s.bld.len() == 0 {
		return ctx.Err() == nil
	}
	err := s.deliver(ctx, s.bld.batch())
	s.bld.reset()
	return err == nil
}

// deliver sends b until it is acknowledged, deferred or dropped: it retries recoverable failures
// forever, splits on 413, on a 400 about timing and on a refusal as too old (down to single
// samples; what is still refused as too old is deferred, the rest dropped), and drops b on any
// other permanent refusal without sending it again. It returns
// ctx.Err() when cancelled; b is then left unsettled.
func (s *shard) deliver(ctx context.Context, b batch) error {
	q := s.q
	for {
		if q.opts.SampleAgeLimit > 0 {
			cutoff := q.opts.Now().Add(-q.opts.SampleAgeLimit).UnixMilli()
			var old []uint64
			b, old = b.dropOlder(cutoff, s.scratch[:0])
			s.scratch = old
			q.settle(old, ReasonTooOld)
		}
		var err error
		if b, err = s.deferOld(ctx, b); err != nil {
			return err
		}
		n := b.samples()
		if n == 0 {
			return nil
		}
		start := time.Now()
		err = q.sender.Send(ctx, b.series)
		q.observeSend(time.Since(start))
		if err == nil {
			s.setFailing("", nil, 0, false)
			s.bo.Reset()
			q.delivered(s.flatten(b), maxTimestamp(b))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		verdict, reason := classify(err)
		switch verdict {
		case split, deferral, held:
			q.metrics.requestsFailed.WithLabelValues("split").Inc()
			if n == 1 && verdict == deferral && q.deferrer != nil {
				return s.deferSamples(ctx, b, maxTimestamp(b))
			}
			if n == 1 && verdict == held {
				q.metrics.samplesHeld.Inc()
				q.delivered(s.flatten(b), maxTimestamp(b))
				return nil
			}
			if n == 1 {
				s.logger.WithError(err).WithField("reason", reason).Warn("single sample refused; dropped")
				q.settle(s.flatten(b), reason)
				return nil
			}
			l, r := b.split()
			if err := s.deliver(ctx, l); err != nil {
				return err
			}
			b = r
			continue
		case drop:
			q.metrics.requestsFailed.WithLabelValues("drop").Inc()
			s.logger.WithError(err).WithFields(logrus.Fields{"samples": n, "reason": reason}).Warn("batch refused permanently; dropped and counted, not sent again")
			q.settle(s.flatten(b), reason)
			return nil
		}
		q.metrics.requestsFailed.WithLabelValues("retry").Inc()
		q.metrics.samplesRetried.Add(float64(n))
		d, ok := retryAfter(err, q.opts.MaxRetryAfter)
		if !ok {
			d = s.bo.NextBackOff()
		}
		q.recoverableFailure(d)
		r := failureReason(err)
		if r == "" {
			r = "unknown"
		}
		s.setFailing(r, err, d, false)
		if err := q.opts.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// setFailing records that the shard retries a failure with reason (or, with "", that it does
// not); quiet skips the recovery log of a shard that stops.
func (s *shard) setFailing(reason string, err error, backoff time.Duration, quiet bool) {
	if reason == s.failReason {
		return
	}
	s.q.failing.change(s.id, s.failReason, reason, err, backoff, quiet)
	s.failReason = reason
}

// flatten returns the record of every sample of b, in a scratch slice valid until the next call.
func (s *shard) flatten(b batch) []uint64 {
	out := s.scratch[:0]
	for _, seqs := range b.seqs {
		out = append(out, seqs...)
	}
	s.scratch = out
	return out
}

func maxTimestamp(b batch) int64 {
	var m int64
	for _, ts := range b.series {
		if k := len(ts.Samples); k > 0 {
			m = max(m, ts.Samples[k-1].Timestamp)
		}
	}
	return m
}
