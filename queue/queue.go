package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// Sender delivers series as one remote-write request. It is called concurrently by the shards,
// at most once at a time per shard. It must not keep series (or anything it points to) after it
// returns: the queue reuses them, and it must not modify them. It returns nil for a 2xx; failures
// are classified by the interfaces in errors.go. When ctx is cancelled it returns promptly.
type Sender interface {
	Send(ctx context.Context, series []Series) error
}

// Series is one series of a request. Labels holds its labels already encoded, the form in which
// the WAL keeps them in memory (wal.AppendLabels): the repeated TimeSeries.labels field of remote-write 1.0
// (prompb.TimeSeries field 1, each a prompb.Label), in label order, byte for byte what gogo's
// generated Marshal writes for them; a sender copies it into the request as it is (1.0) or
// reads the names and values from it (2.0). Samples are the series' samples in time order.
//
// Series is an alias of an unnamed struct type so that a sender can declare the identical type
// without importing queue (shipper.Series is the same type): queue never imports shipper, and
// shipper imports nothing internal.
type Series = struct {
	Labels  string
	Samples []Sample
}

// Sample is one sample of a Series: 16 bytes, no pointers. An alias of an unnamed struct type,
// as Series is (shipper.Sample is the same type).
type Sample = struct {
	Timestamp int64
	Value     float64
}

// Source is the WAL a queue tails. *wal.WAL implements it (the agent's case: the reader wakes at
// every commit and follows truncation); DirSource serves a bare directory.
type Source interface {
	// Dir is the WAL directory of one cluster ID.
	Dir() string
	// Changed returns a channel closed at the writer's next commit.
	Changed() <-chan struct{}
	// FirstSegment returns the oldest retained segment.
	FirstSegment() int
}

// labelSharer is the optional part of a Source that lets the reader keep the writer's copy of
// the series labels instead of its own (*wal.WAL): with it a queue costs no label data.
type labelSharer interface {
	ShareLabels(ref wal.SeriesRef, enc []byte) (string, bool)
}

var _ labelSharer = (*wal.WAL)(nil)

// DirSource returns a Source for the WAL in dir without a writer's handle: a replay beside a
// running agent (which holds the lock) or of a copied directory. The reader polls for new data.
func DirSource(dir string) Source { return dirSource(dir) }

type dirSource string

func (d dirSource) Dir() string              { return string(d) }
func (d dirSource) Changed() <-chan struct{} { return nil }
func (d dirSource) FirstSegment() int        { return 0 }

// Stats is a snapshot of a queue's progress.
type Stats struct {
	// Position is the delivered position: every record before it is acknowledged or dropped.
	Position wal.Position
	// Delivered counts the acknowledged samples of the records before Position. Cumulative over
	// restarts, loaded from the position file (unless Options.NoCommit), and committed with the
	// position, so a record re-sent after a crash is counted once: appended = Delivered + Dropped
	// + what lies after Position. collector_queue_samples_sent_total counts every acknowledged
	// request instead, re-sends included.
	Delivered int64
	// Deferred counts the samples of the records before Position that the receiver refused as
	// too old for its head and that were stored in the dead-letter log for backfill; cumulative
	// like Delivered. appended = Delivered + Deferred + Dropped + what lies after Position.
	Deferred int64
	// Dropped counts samples dropped deliberately, by reason, in the records before Position;
	// cumulative like Delivered.
	Dropped map[string]int64
	// Filtered counts samples skipped by Options.MinTime/MaxTime in this run.
	Filtered int64
	// Pending counts samples read and neither acknowledged nor dropped yet.
	Pending int64
	// RecordsDelivered counts the WAL records wholly delivered in this run.
	RecordsDelivered int64
	// Shards is the number of shards running.
	Shards int
	// MissingSegments counts the WAL segments this run had to jump over because they were
	// deleted (truncated or evicted) before it read them; their samples were not sent.
	MissingSegments int
}

// Queue ships one WAL to one endpoint from the endpoint's durable position. See the package
// documentation for its guarantees. Run it once.
type Queue struct {
	logger  logrus.FieldLogger
	metrics *metrics
	src     Source
	sender  Sender
	opts    Options

	chunks    chunkPool
	rates     rates
	numShards atomic.Int64
	tracker   atomic.Pointer[tracker]
	started   atomic.Bool
	reshardc  chan int // desired shard count, from the update loop to Run
	abortOnce sync.Once
	abortc    chan struct{}
	failing   *failing
	// lastFailed is set by a recoverable failure and cleared by an acknowledged request: whether
	// the endpoint's last answer was a failure. flushing is set when the flush phase begins; a
	// recoverable failure from then on signals failc, which ends the flush.
	lastFailed atomic.Bool
	flushing   atomic.Bool
	failc      chan struct{}
	// missingSegs is the reader's MissingSegments, stored by the tailer.
	missingSegs atomic.Int64

	// stopRun ends Run with a cause (a tracker violation); set by Run.
	stopRun atomic.Pointer[context.CancelCauseFunc]

	// deferrer keeps the samples refused as too old for backfill; nil with Options.NoCommit.
	deferrer *deferrer

	// skipFinalCommit makes Run return without committing, like a crash (tests).
	skipFinalCommit bool
}

// New returns a queue that ships the WAL src to sender. opts.Consumer names its position.
func New(logger logrus.FieldLogger, reg prometheus.Registerer, src Source, sender Sender, opts Options) (*Queue, error) {
	if src == nil || sender == nil {
		return nil, errors.New("new queue: source and sender are required")
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("queue options: %w", err)
	}
	if logger == nil {
		logger = logrus.New()
	}
	q := &Queue{
		logger:   logger.WithFields(logrus.Fields{"component": "queue", "consumer": opts.Consumer}),
		metrics:  newMetrics(reg),
		src:      src,
		sender:   sender,
		opts:     opts,
		reshardc: make(chan int, 1),
		abortc:   make(chan struct{}),
		failc:    make(chan struct{}, 1),
	}
	q.failing = newFailing(q.logger, q.metrics.failingShards, opts.Now)
	if !opts.NoCommit {
		q.deferrer = newDeferrer(src.Dir(), opts.Consumer)
	}
	q.metrics.shardsMin.Set(float64(opts.MinShards))
	q.metrics.shardsMax.Set(float64(opts.MaxShards))
	return q, nil
}

// Stats returns the queue's progress. It is safe to call at any time, also while Run runs.
func (q *Queue) Stats() Stats {
	t := q.tracker.Load()
	if t == nil {
		return Stats{}
	}
	st := t.stats()
	st.Shards = int(q.numShards.Load())
	st.MissingSegments = int(q.missingSegs.Load())
	return st
}

// Abort ends the flush phase of Run at once: requests in flight are cancelled and what they
// carried stays in the WAL. Run still commits the position. Call it after cancelling Run's
// context (a second signal); before that it only shortens the coming flush to nothing.
func (q *Queue) Abort() { q.abortOnce.Do(func() { close(q.abortc) }) }

// Run tails the WAL and ships it until ctx is cancelled (or, with StopAtEnd, until everything up
// to the end of the WAL is settled). After ctx is cancelled it reads no further record and keeps
// sending what it holds (the record in hand included) while requests succeed, for up to
// FlushDeadline: the flush ends at once when the endpoint is failing (its last request failed
// recoverably) or at the first recoverable failure during the flush, and at Abort. Then it
// cancels the requests in flight, commits the position and returns nil; what was not
// acknowledged stays in the WAL. It returns an error only when the WAL cannot be read, when the
// final commit fails, or when the position tracking broke (a bug, counted in
// collector_queue_settle_errors_total: Run then stops as if ctx were cancelled); it returns after
// every goroutine it started has exited.
func (q *Queue) Run(ctx context.Context) error {
	if !q.started.CompareAndSwap(false, true) {
		return ErrRunning
	}
	ctx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	q.stopRun.Store(&stopRun)
	dir := q.src.Dir()
	start, st := q.startState(dir)
	ropts := wal.ReaderOptions{Follow: !q.opts.StopAtEnd, PollInterval: q.opts.PollInterval, Logger: q.logger}
	if _, ok := q.src.(dirSource); !ok {
		ropts.Changed, ropts.FirstSegment = q.src.Changed, q.src.FirstSegment
	}
	if ls, ok := q.src.(labelSharer); ok {
		ropts.ShareLabels = ls.ShareLabels
	}
	r, err := wal.NewReader(dir, start, ropts)
	if err != nil {
		return fmt.Errorf("open reader of %s at %v: %w", dir, start, err)
	}
	defer r.Close()
	t := newTracker(r.Position(), st)
	q.tracker.Store(t)
	q.updatePositionGauges(t)

	// Requests outlive ctx by up to FlushDeadline: the flush phase starts when ctx is cancelled
	// and ends when everything held is sent or when flushDeadline cancels sendCtx.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	flushed := make(chan struct{})
	stopFlush := context.AfterFunc(ctx, func() {
		defer close(flushed)
		q.flushDeadline(sendCtx, cancelSends)
	})
	defer func() {
		cancelSends()
		if !stopFlush() {
			<-flushed
		}
	}()
	bgCtx, stopBg := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); q.commitLoop(bgCtx, dir, t) }()
	go func() { defer bg.Done(); q.updateShardsLoop(bgCtx) }()

	tl := (&tailer{q: q, r: r, t: t, dir: dir, runCtx: ctx, sendCtx: sendCtx}).init()
	n := q.opts.MinShards
	var runErr error
	for {
		shards, done := q.startShards(sendCtx, n)
		epochCtx, cancelEpoch := context.WithCancel(ctx)
		next, watched := n, make(chan struct{})
		go func() {
			defer close(watched)
			select {
			case next = <-q.reshardc:
				cancelEpoch()
			case <-epochCtx.Done():
			}
		}()
		res, err := tl.run(epochCtx, shards)
		cancelEpoch()
		<-watched
		// Reading stopped; the shards send what they hold and exit (at a reshard as long as it
		// takes, at shutdown until the flush deadline).
		for _, s := range shards {
			close(s.in)
		}
		<-done
		if err != nil {
			runErr = err
			break
		}
		if res != tailInterrupted || ctx.Err() != nil {
			break
		}
		if next != n {
			q.logger.WithFields(logrus.Fields{"from": n, "to": next}).Info("resharded at a drained boundary")
			q.metrics.reshards.Inc()
			n = next
		}
	}
	stopBg()
	bg.Wait()
	q.updatePositionGauges(t)
	if cause := context.Cause(ctx); errors.Is(cause, errSettle) {
		runErr = errors.Join(runErr, cause)
	}
	if err := q.closeDeferrer(); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if q.opts.NoCommit || q.skipFinalCommit {
		return runErr
	}
	if err := q.commit(dir, t); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

// startState returns where to start reading and the counters to start from.
func (q *Queue) startState(dir string) (wal.Position, wal.ConsumerState) {
	st, err := wal.ReadPosition(dir, q.opts.Consumer)
	var perr *wal.PositionError
	switch {
	case err == nil:
	case errors.Is(err, wal.ErrNoPosition):
		q.logger.Info("no delivered position yet; starting at the oldest retained segment")
		st = wal.ConsumerState{}
	case errors.As(err, &perr):
		q.logger.WithError(err).Warn("position file unusable; starting at the oldest retained segment with counters at zero (samples may be sent twice, none skipped)")
		st = wal.ConsumerState{}
	default:
		q.logger.WithError(err).Warn("position unreadable; starting at the oldest retained segment with counters at zero (samples may be sent twice, none skipped)")
		st = wal.ConsumerState{}
	}
	pos := st.Position
	if q.opts.StartAt != nil {
		pos = *q.opts.StartAt
	}
	if q.opts.NoCommit {
		st = wal.ConsumerState{}
	}
	return pos, st
}

// startShards starts n shards; done is closed when all have exited.
func (q *Queue) startShards(ctx context.Context, n int) ([]*shard, <-chan struct{}) {
	shards := make([]*shard, n)
	var wg sync.WaitGroup
	for i := range shards {
		shards[i] = q.newShard(i)
		wg.Add(1)
		go func(s *shard) {
			defer wg.Done()
			s.run(ctx)
		}(shards[i])
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	q.numShards.Store(int64(n))
	q.metrics.shards.Set(float64(n))
	return shards, done
}

// flushDeadline runs when ctx is cancelled: it cancels the requests in flight after
// FlushDeadline, at Abort, or as soon as the endpoint fails (everything is in the WAL: waiting
// for a failing endpoint only delays the restart), or returns when the sends end otherwise
// (sendCtx done).
func (q *Queue) flushDeadline(sendCtx context.Context, cancelSends context.CancelFunc) {
	// flushing before failing is read, failing before flushing is read (recoverableFailure):
	// one of the two sees the other.
	q.flushing.Store(true)
	if q.lastFailed.Load() {
		q.logger.Warn("endpoint failing at shutdown: not flushing; what the queue holds stays in the wal and is sent after restart")
		cancelSends()
		return
	}
	t := time.NewTimer(q.opts.FlushDeadline)
	defer t.Stop()
	select {
	case <-sendCtx.Done():
	case <-q.abortc:
		cancelSends()
	case <-q.failc:
		q.logger.Warn("request failed during the flush: flush stopped; what the queue holds stays in the wal and is sent after restart")
		cancelSends()
	case <-t.C:
		q.logger.WithField("flush_deadline", q.opts.FlushDeadline).Warn("flush deadline passed; cancelling requests in flight, their samples stay in the wal and are sent after restart")
		cancelSends()
	}
}

// settle records samples dropped with reason (or acknowledged when reason is "").
func (q *Queue) settle(seqs []uint64, reason string) {
	if len(seqs) == 0 {
		return
	}
	recs, bad := q.tracker.Load().settle(seqs, reason)
	q.metrics.recordsDelivered.Add(float64(recs))
	if bad > 0 {
		q.metrics.settleErrors.Add(float64(bad))
		err := fmt.Errorf("%w: %d runs of samples (reason %q) match no record in flight", errSettle, bad, reason)
		q.logger.WithError(err).Error("position tracking broken: the position stays behind; stopping the queue so that a restart resends from it")
		if stop := q.stopRun.Load(); stop != nil {
			(*stop)(err)
		}
	}
	if reason == ReasonDeferred {
		q.metrics.samplesDeferred.Add(float64(len(seqs)))
	} else if reason != "" {
		q.metrics.samplesDropped.WithLabelValues(reason).Add(float64(len(seqs)))
		q.rates.dropped.Add(int64(len(seqs)))
	}
}

// delivered records an acknowledged request.
func (q *Queue) delivered(seqs []uint64, maxT int64) {
	q.lastFailed.Store(false)
	q.settle(seqs, "")
	n := len(seqs)
	q.metrics.samplesSent.Add(float64(n))
	q.rates.out.Add(int64(n))
	storeMax(&q.rates.highestSent, maxT)
	q.metrics.highestSent.Set(float64(q.rates.highestSent.Load()) / 1e3)
	now := q.opts.Now()
	q.rates.lastSendOK.Store(now.UnixNano())
	q.metrics.lastSend.Set(float64(now.UnixNano()) / 1e9)
}

func (q *Queue) observeSend(d time.Duration) {
	q.metrics.requestDuration.Observe(d.Seconds())
	q.rates.sendNanos.Add(int64(d))
}

// recoverableFailure holds resharding back for twice the coming delay, and ends a flush in
// progress.
func (q *Queue) recoverableFailure(d time.Duration) {
	storeMax(&q.rates.noReshardUntil, q.opts.Now().Add(2*d).UnixNano())
	q.lastFailed.Store(true)
	if q.flushing.Load() {
		select {
		case q.failc <- struct{}{}:
		default:
		}
	}
}
