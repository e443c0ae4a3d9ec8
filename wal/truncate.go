package wal

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/sirupsen/logrus"
)

// TruncateStats reports what one Truncate did.
type TruncateStats struct {
	// Deleted counts segments deleted because every consumer had passed them.
	Deleted int
	// Evicted counts segments deleted by a cap while some consumer still needed them.
	Evicted int
	// EvictedSamples counts, per consumer, the undelivered samples those evictions dropped.
	EvictedSamples map[string]int64
	// Checkpoint is the index of the checkpoint written, or -1.
	Checkpoint int
}

// Truncate deletes the segments that every registered consumer has passed (once older than the
// retention), then applies the age and size caps, evicting the oldest segments even if undelivered
// and counting, per consumer, every sample that was not yet delivered. Before any deletion it
// writes a checkpoint holding the series still referenced by the retained segments, so that every
// ref stays resolvable. The open segment is never deleted. Consumers' positions are read from
// their files; a consumer without a usable file holds back everything.
func (w *WAL) Truncate() (TruncateStats, error) {
	st := TruncateStats{Checkpoint: -1}
	w.mtx.Lock()
	defer w.mtx.Unlock()
	if w.closed {
		return st, ErrClosed
	}
	w.epoch++
	now := w.opts.Now()

	positions := map[string]Position{}
	minPos := Position{Segment: math.MaxInt}
	for _, c := range w.opts.Consumers {
		p := Position{Segment: w.first}
		cs, err := ReadPosition(w.dir, c)
		switch {
		case err == nil:
			p = cs.Position
		case errors.Is(err, ErrNoPosition):
		default:
			w.logger.WithError(err).WithField("consumer", c).Warn("position unreadable; holding back every segment for this consumer")
		}
		if p.Segment < w.first {
			p = Position{Segment: w.first}
		}
		positions[c] = p
		if p.Before(minPos) {
			minPos = p
		}
	}
	for _, p := range w.leasesLocked(now) {
		if p.Before(minPos) {
			minPos = p
		}
	}
	segs := w.sortedSegments()
	defer w.exportUndelivered(positions)

	// cut is the first segment kept; everything before it goes.
	cut := w.first
	for _, k := range segs {
		if k >= w.cur || k >= minPos.Segment {
			break
		}
		if w.opts.Retention > 0 {
			fi, err := os.Stat(segmentName(w.dir, k))
			if err == nil && now.Sub(fi.ModTime()) < w.opts.Retention {
				break
			}
		}
		cut = k + 1
		st.Deleted++
	}

	// Caps: evict from the oldest while over them.
	size := w.sizeLocked()
	for _, k := range segs {
		if k < cut {
			size -= w.segs[k].bytes
			continue
		}
		if k >= w.cur {
			break
		}
		m := w.segs[k]
		reason := ""
		switch {
		case w.opts.MaxAge > 0 && m.samples > 0 && time.UnixMilli(m.maxT).Before(now.Add(-w.opts.MaxAge)):
			reason = "max_age"
		case w.opts.MaxSize > 0 && size > w.opts.MaxSize:
			reason = "max_size"
		}
		if reason == "" {
			break
		}
		for c, p := range positions {
			n, err := w.undeliveredIn(k, p)
			if err != nil {
				return st, err
			}
			if n > 0 {
				if st.EvictedSamples == nil {
					st.EvictedSamples = map[string]int64{}
				}
				st.EvictedSamples[c] += n
				w.stats.addEvicted(c, reason, n)
				w.metrics.samplesEvicted.WithLabelValues(c, reason).Add(float64(n))
			}
		}
		w.logger.WithFields(logrus.Fields{
			"segment": k, "reason": reason, "samples": m.samples, "bytes": m.bytes,
			"undelivered": st.EvictedSamples,
		}).Warn("wal cap reached: evicted the oldest segment; its undelivered samples are dropped and counted per consumer in collector_wal_samples_evicted_total")
		size -= m.bytes
		cut = k + 1
		st.Evicted++
	}
	if cut <= w.first {
		return st, nil
	}

	if err := w.checkpointLocked(cut - 1); err != nil {
		return st, err
	}
	w.orphanSeriesLocked(cut - 1)
	st.Checkpoint = cut - 1
	for _, k := range segs {
		if k >= cut {
			break
		}
		if err := os.Remove(segmentName(w.dir, k)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return st, fmt.Errorf("delete segment %d in %s: %w", k, w.dir, err)
		}
		delete(w.segs, k)
	}
	w.first = cut
	// Positions that were evicted under their consumer move forward.
	for c, p := range positions {
		if p.Segment >= cut {
			continue
		}
		cs, err := ReadPosition(w.dir, c)
		if err != nil {
			cs = ConsumerState{}
		}
		cs.Position = Position{Segment: cut}
		cs.Updated = now
		if err := CommitPosition(w.dir, c, cs); err != nil {
			return st, err
		}
	}
	if err := syncDir(w.dir); err != nil {
		return st, err
	}
	if err := writeStats(w.dir, w.stats); err != nil {
		return st, err
	}
	w.metrics.truncations.Inc()
	w.updateGauges()
	return st, nil
}

// leasesLocked returns the positions of the unexpired leases (see Options.LeasePrefix).
func (w *WAL) leasesLocked(now time.Time) []Position {
	if w.opts.LeasePrefix == "" || w.opts.LeaseTTL <= 0 {
		return nil
	}
	names, err := Consumers(w.dir)
	if err != nil {
		w.logger.WithError(err).Warn("list position files; leases not honoured in this truncation")
		return nil
	}
	var out []Position
	for _, n := range names {
		if !strings.HasPrefix(n, w.opts.LeasePrefix) {
			continue
		}
		cs, err := ReadPosition(w.dir, n)
		if err != nil || now.Sub(cs.Updated) >= w.opts.LeaseTTL {
			continue // unreadable or expired: a replay that is gone
		}
		out = append(out, cs.Position)
	}
	return out
}

// exportUndelivered sets collector_wal_undelivered_bytes for each consumer from its durable
// position.
func (w *WAL) exportUndelivered(positions map[string]Position) {
	for c, p := range positions {
		var n int64
		for k, m := range w.segs {
			switch {
			case k > p.Segment:
				n += m.bytes
			case k == p.Segment:
				n += max(0, m.bytes-p.Offset)
			}
		}
		w.metrics.undelivered.WithLabelValues(c).Set(float64(n))
	}
}

func (w *WAL) sortedSegments() []int {
	segs := make([]int, 0, len(w.segs))
	for k := range w.segs {
		segs = append(segs, k)
	}
	sort.Ints(segs)
	return segs
}

func (w *WAL) sizeLocked() int64 {
	if m := w.segs[w.cur]; m != nil {
		if size, err := statSegment(w.dir, w.cur); err == nil {
			m.bytes = size
		}
	}
	var size int64
	for _, m := range w.segs {
		size += m.bytes
	}
	return size
}

// undeliveredIn counts the samples of segment k at or after position p.
func (w *WAL) undeliveredIn(k int, p Position) (int64, error) {
	switch {
	case p.Segment > k:
		return 0, nil
	case p.Segment < k || p.Offset == 0:
		return w.segs[k].samples, nil
	}
	n, _, err := countSamples(w.dir, k, p.Offset)
	return n, err
}

// countSamples counts the samples of segment k from offset off, and returns the newest timestamp.
func countSamples(dir string, k int, off int64) (int64, int64, error) {
	sr, err := openSegmentReader(dir, k, off)
	if err != nil {
		return 0, 0, fmt.Errorf("open segment %d in %s: %w", k, dir, err)
	}
	defer sr.Close()
	var (
		dec     record.Decoder
		samples []record.RefSample
		n       int64
		maxT    int64 = math.MinInt64
	)
	for {
		rec, err := sr.next()
		if err != nil {
			// End of data, or corruption: what cannot be read cannot be delivered either.
			return n, maxT, nil
		}
		switch dec.Type(rec) {
		case record.Samples, record.SamplesV2:
			samples, err = dec.Samples(rec, samples[:0])
			if err != nil {
				continue
			}
			n += int64(len(samples))
			for _, s := range samples {
				maxT = max(maxT, s.T)
			}
		}
	}
}

// checkpointLocked writes checkpoint.<last>: the Series records of every series with a sample in a
// segment after last. Series used only up to last are left out (orphanSeriesLocked). The
// checkpoint is built in a temporary directory and renamed into place; older checkpoints are then
// deleted.
func (w *WAL) checkpointLocked(last int) error {
	final := filepath.Join(w.dir, fmt.Sprintf("%s%08d", checkpointPrefix, last))
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove %s: %w", tmp, err)
	}
	cw, err := wlog.NewSize(nil, nil, tmp, w.opts.SegmentSize, w.opts.Compression)
	if err != nil {
		return fmt.Errorf("create checkpoint %s: %w", tmp, err)
	}
	var (
		batch []encodedSeries
		size  int
		buf   []byte
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var err error
		if buf, err = appendSeriesRecord(buf[:0], batch); err != nil {
			return err
		}
		batch, size = batch[:0], 0
		return cw.Log(buf)
	}
	var ferr error
	w.series.each(func(ref SeriesRef, ms *memSeries) {
		if ferr != nil || !ms.written || int(ms.lastSeg) <= last {
			return // not written yet, or an orphan: see orphanSeriesLocked
		}
		batch = append(batch, encodedSeries{ref: ref, enc: ms.enc})
		size += 16 + len(ms.enc)
		if size >= seriesRecordBytes {
			ferr = flush()
		}
	})
	if ferr != nil {
		cw.Close()
		return fmt.Errorf("write checkpoint %s: %w", tmp, ferr)
	}
	if err := flush(); err != nil {
		cw.Close()
		return fmt.Errorf("write checkpoint %s: %w", tmp, err)
	}
	if err := cw.Close(); err != nil { // flushes and fsyncs
		return fmt.Errorf("close checkpoint %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename checkpoint %s: %w", tmp, err)
	}
	if err := syncDir(w.dir); err != nil {
		return err
	}
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("read wal directory %s: %w", w.dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() && strings.HasPrefix(name, checkpointPrefix) && filepath.Join(w.dir, name) != final && !strings.HasSuffix(name, ".tmp") {
			if err := os.RemoveAll(filepath.Join(w.dir, name)); err != nil {
				return fmt.Errorf("delete old checkpoint %s: %w", name, err)
			}
		}
	}
	return nil
}

// orphanSeriesLocked runs once checkpoint.<last> is in place and the segments up to last are about
// to go: the series with nothing after last lose their definition (a sample of one re-declares
// it) and the freeable ones are forgotten.
func (w *WAL) orphanSeriesLocked(last int) {
	var free []SeriesRef
	w.series.each(func(ref SeriesRef, ms *memSeries) {
		if int(ms.lastSeg) > last {
			return
		}
		ms.written = false
		if w.freeableLocked(ms) {
			free = append(free, ref)
		}
	})
	for _, ref := range free {
		w.dropSeriesLocked(ref)
	}
	w.compactSeriesLocked()
}
