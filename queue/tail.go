package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/sirupsen/logrus"
)

type tailResult int

const (
	tailInterrupted tailResult = iota // the epoch's context was cancelled (shutdown or reshard)
	tailEnd                           // io.EOF without Follow
	tailFailed                        // the WAL cannot be read
)

// tailer reads records and hands their samples to the shards. It lives across shard epochs: a
// record interrupted half-way by a reshard is finished with the next shard set. Not safe for
// concurrent use: owned by Run.
type tailer struct {
	q   *Queue
	r   *wal.Reader
	t   *tracker
	dir string
	// runCtx is Run's context; sendCtx ends when the flush ends (see Run).
	runCtx, sendCtx context.Context

	counts []int        // per shard, an upper bound of the samples still to route
	cur    []*chunk     // per shard, the chunk being filled
	ready  []readyChunk // chunks to hand over, in order
	// left holds the samples of record leftSeq not handed over when the last epoch ended.
	left    []item
	leftSeq uint64
	// relabel applies the endpoint's write relabeling; nil without rules.
	relabel *writeRelabeler
	// derive is deriveLabels as a func value, made once (a method value allocates); encBuf and
	// sb are its scratch space.
	derive func(wal.SeriesRef, string) string
	encBuf []byte
	sb     labels.ScratchBuilder
}

// init sets up the write relabeling and the derivation of labels; call it once, before run.
func (tl *tailer) init() *tailer {
	tl.relabel = newWriteRelabeler(tl.q.opts.WriteRelabelConfigs)
	tl.derive = tl.deriveLabels
	return tl
}

// droppedLabels is what the reader keeps for a series that the write relabeling drops: not the
// encoding of any label set (which starts with a field tag, or is empty).
const droppedLabels = "\x00"

// deriveLabels is what the reader keeps per series for a queue with write relabeling
// (wal.Reader.Derived): the labels to send after relabeling, encoded as Series.Labels, given
// their encoding in the WAL, enc (enc itself when the rules change nothing, so the string is
// shared), or droppedLabels when the rules drop the series. It runs once per series definition,
// not per sample. Without write relabeling the queue sends enc as the reader has it
// (wal.Reader.Encoded): the reader's, in the writer's process the writer's, string, so a queue
// keeps no label data of its own.
func (tl *tailer) deriveLabels(ref wal.SeriesRef, enc string) string {
	lset, err := wal.DecodeLabels(enc, &tl.sb)
	if err != nil {
		// The reader encoded enc itself; send the series as it is rather than lose it.
		tl.q.logger.WithError(err).WithField("ref", ref).Error("undecodable series labels; sent without write relabeling")
		return enc
	}
	lset, keep := tl.relabel.apply(lset)
	if !keep {
		return droppedLabels
	}
	tl.encBuf = wal.AppendLabels(tl.encBuf[:0], lset)
	if string(tl.encBuf) == enc {
		return enc // unchanged: share the reader's string
	}
	return string(tl.encBuf)
}

type readyChunk struct {
	shard int
	c     *chunk
}

// run reads until ctx is cancelled, the end of the WAL (StopAtEnd) or an unreadable WAL.
func (tl *tailer) run(ctx context.Context, shards []*shard) (tailResult, error) {
	if len(tl.left) > 0 {
		left, seq := tl.left, tl.leftSeq
		tl.left = nil
		tl.startRouting(len(shards))
		for i := range left {
			tl.counts[tl.shardOf(left[i].ref)]++
		}
		for i := range left {
			tl.put(tl.shardOf(left[i].ref), left[i])
		}
		tl.endRouting()
		if !tl.handOver(ctx, shards, seq) {
			return tailInterrupted, nil
		}
	}
	var corr *wal.CorruptionError
	for {
		if ctx.Err() != nil {
			// Next reads what is there without looking at ctx.
			return tailInterrupted, nil
		}
		b, err := tl.r.Next(ctx)
		tl.q.missingSegs.Store(int64(tl.r.MissingSegments()))
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return tailEnd, nil
		case ctx.Err() != nil:
			return tailInterrupted, nil
		case errors.As(err, &corr):
			tl.q.metrics.segmentsSkipped.Inc()
			tl.q.logger.WithError(err).WithFields(logrus.Fields{"segment": corr.Segment, "offset": corr.Offset}).
				Warn("corrupted wal record; skipping the rest of the segment, its samples are lost")
			if err := tl.r.SkipSegment(); err != nil {
				return tailFailed, fmt.Errorf("skip corrupted segment %d of %s: %w", corr.Segment, tl.dir, err)
			}
			continue
		default:
			return tailFailed, fmt.Errorf("read wal %s at %v: %w", tl.dir, tl.r.Position(), err)
		}
		if !tl.record(ctx, shards, b) {
			return tailInterrupted, nil
		}
	}
}

// record routes the samples of b that are to be sent into chunks per shard (shardOf), counts the
// others, registers the record with the tracker and hands the chunks over (handOver, whose
// result it returns). The samples go from the reader's batch into the chunks in one copy.
func (tl *tailer) record(ctx context.Context, shards []*shard, b wal.Batch) bool {
	q, o := tl.q, tl.q.opts
	tl.startRouting(len(shards))
	for _, s := range b.Samples {
		tl.counts[tl.shardOf(s.Ref)]++
	}
	unknown, filtered, relabeled, kept := 0, 0, 0, 0
	var maxT int64
	for _, s := range b.Samples {
		maxT = max(maxT, s.T)
		if (o.MinTime != 0 && s.T < o.MinTime) || (o.MaxTime != 0 && s.T > o.MaxTime) {
			filtered++
			continue
		}
		var lbl string
		var ok bool
		if tl.relabel == nil {
			lbl, ok = tl.r.Encoded(s.Ref)
		} else {
			lbl, ok = tl.r.Derived(s.Ref, tl.derive)
		}
		if !ok {
			unknown++
			continue
		}
		if lbl == droppedLabels {
			relabeled++
			continue
		}
		tl.put(tl.shardOf(s.Ref), item{lbl: lbl, ref: s.Ref, t: s.T, v: s.V})
		kept++
	}
	tl.endRouting()
	q.metrics.recordsRead.Inc()
	q.metrics.samplesRead.Add(float64(len(b.Samples)))
	storeMax(&q.rates.highestRead, maxT)
	q.metrics.highestRead.Set(float64(q.rates.highestRead.Load()) / 1e3)
	if unknown > 0 {
		tl.t.drop(ReasonUnknownSeries, unknown)
		q.metrics.samplesDropped.WithLabelValues(ReasonUnknownSeries).Add(float64(unknown))
		q.rates.dropped.Add(int64(unknown))
	}
	if relabeled > 0 {
		tl.t.drop(ReasonWriteRelabel, relabeled)
		q.metrics.samplesDropped.WithLabelValues(ReasonWriteRelabel).Add(float64(relabeled))
	}
	if filtered > 0 {
		tl.t.filter(filtered)
		q.metrics.samplesFiltered.Add(float64(filtered))
	}
	seq := tl.t.add(b.End, kept)
	q.rates.in.Add(int64(kept))
	return tl.handOver(ctx, shards, seq)
}

// shardOf is the shard of series ref: ref modulo the shard count (startRouting).
func (tl *tailer) shardOf(ref wal.SeriesRef) int { return int(uint64(ref) % uint64(len(tl.cur))) }

// startRouting prepares routing to n shards; the caller then counts the samples per shard in
// tl.counts (an upper bound: it sizes the chunks) and puts them.
func (tl *tailer) startRouting(n int) {
	tl.counts = append(tl.counts[:0], make([]int, n)...)
	tl.cur = append(tl.cur[:0], make([]*chunk, n)...)
	tl.ready = tl.ready[:0]
}

// put appends it to the chunk of shard k, which joins tl.ready when it holds MaxSamplesPerSend.
func (tl *tailer) put(k int, it item) {
	maxChunk := tl.q.opts.MaxSamplesPerSend
	c := tl.cur[k]
	if c == nil {
		c = tl.q.chunks.get(min(tl.counts[k], maxChunk))
		tl.cur[k] = c
	}
	c.items = append(c.items, it)
	tl.counts[k]--
	if len(c.items) == maxChunk {
		tl.ready = append(tl.ready, readyChunk{k, c})
		tl.cur[k] = nil
	}
}

// endRouting moves the chunks being filled to tl.ready.
func (tl *tailer) endRouting() {
	for k, c := range tl.cur {
		if c != nil {
			tl.ready = append(tl.ready, readyChunk{k, c})
		}
	}
	clear(tl.cur)
}

// handOver gives the ready chunks, samples of record seq, to their shards in order, waiting for
// room: this is the back-pressure that keeps memory bounded. It returns false when ctx (the
// epoch) was cancelled first, or at shutdown when the flush ended first; the samples not handed
// over are kept in tl.left.
func (tl *tailer) handOver(ctx context.Context, shards []*shard, seq uint64) bool {
	ready := tl.ready
	defer func() { clear(ready); tl.ready = ready[:0] }()
	for i, rc := range ready {
		rc.c.seq = seq
		select {
		case shards[rc.shard].in <- rc.c:
			continue
		default:
		}
		if !tl.wait(ctx, shards[rc.shard], rc.c) {
			for _, rest := range ready[i:] {
				tl.left = append(tl.left, rest.c.items...)
				tl.q.chunks.put(rest.c)
			}
			tl.leftSeq = seq
			return false
		}
	}
	return true
}

// wait hands c to s, waiting for room. It gives up when ctx (the epoch) ends, except at shutdown:
// then it finishes the record in hand while the shards flush, so that the position can pass it,
// and gives up only when the flush ends.
func (tl *tailer) wait(ctx context.Context, s *shard, c *chunk) bool {
	start := time.Now()
	defer func() { tl.q.rates.blockedNanos.Add(int64(time.Since(start))) }()
	stop := ctx.Done()
	for {
		select {
		case s.in <- c:
			return true
		case <-stop:
			if tl.runCtx.Err() == nil || stop == tl.sendCtx.Done() {
				return false
			}
			stop = tl.sendCtx.Done()
		}
	}
}

// updateShardsLoop computes the desired shard count every ShardUpdateInterval and asks Run to
// reshard when the model and its guards say so.
func (q *Queue) updateShardsLoop(ctx context.Context) {
	interval := q.opts.ShardUpdateInterval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var m shardModel
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cur := int(q.numShards.Load())
		raw, desired, ok := m.tick(&q.rates, cur, q.opts.MinShards, q.opts.MaxShards, interval, q.opts.Now())
		q.metrics.shardsDesired.Set(raw)
		if !ok {
			continue
		}
		select {
		case <-q.reshardc: // replace a request not yet taken
		default:
		}
		select {
		case q.reshardc <- desired:
		default:
		}
	}
}
