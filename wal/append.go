package wal

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"os"
	"slices"
	"syscall"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/sirupsen/logrus"
)

// seriesRecordBytes bounds one Series record; a scrape with many new series writes several.
const seriesRecordBytes = 4 << 20

// Appender collects one scrape. Nothing reaches the WAL before Commit, which writes the scrape
// whole or not at all. An Appender is not safe for concurrent use; several Appenders of one WAL are.
type Appender struct {
	w       *WAL
	samples []record.RefSample
	lblBuf  []byte // Ref's scratch for AppendLabels
	open    bool   // between Begin (or Ref) and Commit or Rollback
	epoch   uint32 // the WAL's epoch at Begin
}

// AppendStats reports what one Commit did.
type AppendStats struct {
	Samples       int // appended
	NewSeries     int // Series records written
	Duplicate     int // skipped: same timestamp as the series' last sample
	OutOfOrder    int // skipped: older than the series' last sample
	UnknownSeries int // skipped: ref unknown to this WAL (never issued, or freed: see HoldSeries)
	Bytes         int // record bytes written, before framing and compression
	Segment       int // segment that holds the scrape
}

// Appender returns an empty Appender.
func (w *WAL) Appender() *Appender { return &Appender{w: w} }

// Ref returns the ref of the series lset, creating it if the WAL does not know it. The Series
// record of a new series is written by the first Commit that holds a sample of it. lset must be
// sorted and hold __name__ (labels.Labels always is sorted). Ref begins the scrape (see Begin).
func (a *Appender) Ref(lset labels.Labels) SeriesRef {
	w := a.w
	a.lblBuf = AppendLabels(a.lblBuf[:0], lset)
	w.mtx.Lock()
	defer w.mtx.Unlock()
	a.beginLocked()
	h := maphash.Bytes(w.seed, a.lblBuf) // hashLabels, without a string of a.lblBuf
	if ref := w.byHash.find(h, func(ref SeriesRef) bool {
		ms := w.series.get(ref)
		return ms != nil && ms.enc == string(a.lblBuf)
	}); ref != 0 {
		w.series.get(ref).used = w.epoch
		return ref
	}
	ref := w.nextRef
	w.addSeriesHashed(ref, string(a.lblBuf), h, w.cur, false)
	return ref
}

// Append adds a sample of series ref to the scrape. Validation happens in Commit.
func (a *Appender) Append(ref SeriesRef, t int64, v float64) {
	a.samples = append(a.samples, record.RefSample{Ref: ref, T: t, V: v})
}

// Len returns the number of samples added since the last Commit or Rollback.
func (a *Appender) Len() int { return len(a.samples) }

// Rollback discards the scrape.
func (a *Appender) Rollback() {
	a.samples = a.samples[:0]
	a.end()
}

// Commit writes the scrape as one Samples record, preceded by Series records for the series it
// introduces, and makes it durable according to the fsync policy. Samples not newer than the last
// one of their series are skipped and counted. On error nothing of the scrape is kept and the
// per-series state is unchanged. The Appender is reset either way.
func (a *Appender) Commit() (AppendStats, error) {
	defer a.Rollback()
	w := a.w
	w.mtx.Lock()
	defer w.mtx.Unlock()
	var st AppendStats
	if w.closed {
		return st, ErrClosed
	}
	if w.wl == nil {
		// An earlier write or fsync failed and the recovery did not finish: try again now.
		if err := w.reopenLocked(); err != nil {
			w.metrics.commitsFailed.Inc()
			return st, fmt.Errorf("reopen wal %s after a failed write: %w", w.dir, err)
		}
	}
	// keep is a.samples itself until a sample is skipped; only then are the kept ones copied
	// (into w.keep, which never aliases an Appender's buffer). undo is sized once: grown by
	// appends it would leave its halves behind as garbage.
	keep, copied := a.samples, false
	undo, ser := slices.Grow(w.undo[:0], len(a.samples)), w.serBuf[:0]
	cur0 := int32(w.cur)
	for i, s := range a.samples {
		ms := w.series.get(s.Ref)
		skip := ms == nil || s.T <= ms.lastT
		if skip && !copied {
			keep, copied = append(w.keep[:0], a.samples[:i]...), true
		}
		if ms == nil {
			st.UnknownSeries++
			continue
		}
		if s.T <= ms.lastT {
			if s.T == ms.lastT {
				st.Duplicate++
			} else {
				st.OutOfOrder++
			}
			continue
		}
		undo = append(undo, undoEntry{ref: s.Ref, lastT: ms.lastT})
		ms.lastT = s.T
		// Corrected below if the record lands in a new segment; left as is if the write fails
		// (a later lastSeg only keeps the series in the checkpoint longer).
		ms.lastSeg = cur0
		if !ms.written {
			// A new series, or one whose definition truncation deleted: (re-)declare it.
			ms.written = true // undone below if the write fails
			ser = append(ser, encodedSeries{ref: s.Ref, enc: ms.enc})
		}
		if copied {
			keep = append(keep, s)
		}
	}
	if copied {
		w.keep = keep
	}
	w.undo, w.serBuf = undo, ser
	w.countSkipped(st)
	if len(keep) == 0 {
		return st, nil
	}

	// The Samples record is encoded first; the Series records are encoded and logged one at a
	// time into one reused buffer (logSeriesLocked), since the first scrape after a start
	// declares every series and encoding them all at once cost their whole label data again.
	buf := w.enc.Samples(keep, w.recBuf[:0])
	w.recBuf = buf
	need := len(buf)
	for _, s := range ser {
		need += seriesBytes(s)
	}

	if err := w.checkFreeLocked(need); err != nil {
		w.rollbackLocked(undo, ser)
		w.metrics.commitsFailed.Inc()
		return st, err
	}
	// Where the scrape starts: a failed write or fsync cuts the WAL back to here. Without it a
	// cut could reach acknowledged scrapes, so the scrape is not written.
	size, err := statSegment(w.dir, w.cur)
	if err != nil {
		w.rollbackLocked(undo, ser)
		w.metrics.commitsFailed.Inc()
		return st, fmt.Errorf("locate the end of segment %d in %s: %w", w.cur, w.dir, err)
	}
	from := Position{Segment: w.cur, Offset: size}
	serBytes, err := w.logSeriesLocked(ser)
	if err == nil {
		err = w.wl.Log(buf)
	}
	if err != nil {
		w.rollbackLocked(undo, ser)
		w.metrics.commitsFailed.Inc()
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("%w: %w", ErrDiskFull, err)
		}
		return st, w.recoverLocked(fmt.Errorf("append scrape of %d samples to %s: %w", len(keep), w.dir, err), from)
	}
	if w.opts.Fsync == FsyncScrape {
		if err := w.syncLocked(); err != nil {
			// After a failed fsync the page cache cannot be trusted to reach the disk, and a
			// second fsync may succeed without writing what the first one dropped. The scrape
			// fails, its records are cut and the writer starts a new segment.
			w.rollbackLocked(undo, ser)
			w.metrics.commitsFailed.Inc()
			return st, w.recoverLocked(fmt.Errorf("fsync scrape of %d samples in %s: %w", len(keep), w.dir, err), from)
		}
	} else {
		w.dirty = true
	}
	// wlog rotates inside Log when a record does not fit; a new segment file tells. A stat is
	// far cheaper than listing the directory on every commit.
	seg := w.cur
	if _, err := os.Stat(segmentName(w.dir, w.cur+1)); err == nil {
		last, _, err := w.wl.LastSegmentAndOffset()
		if err != nil {
			return st, fmt.Errorf("locate wal tail in %s: %w", w.dir, err)
		}
		seg = last
		w.rotatedLocked(seg)
	}
	meta := w.segs[seg]
	var minT, maxT int64 = math.MaxInt64, math.MinInt64
	for _, s := range keep {
		if seg != int(cur0) {
			w.series.get(s.Ref).lastSeg = int32(seg)
		}
		minT = min(minT, s.T)
		maxT = max(maxT, s.T)
	}
	meta.samples += int64(len(keep))
	meta.minT = min(meta.minT, minT)
	meta.maxT = max(meta.maxT, maxT)
	if size, err := statSegment(w.dir, seg); err == nil {
		meta.bytes = size
	}

	w.releaseBuffersLocked(len(buf), serBytes, len(keep), len(ser))
	w.updateGauges()
	st.Samples = len(keep)
	st.NewSeries = len(ser)
	st.Bytes = len(buf) + serBytes
	st.Segment = seg
	w.metrics.samplesAppended.Add(float64(len(keep)))
	w.metrics.seriesCreated.Add(float64(len(ser)))
	w.metrics.bytesWritten.Add(float64(st.Bytes))
	w.notifyLocked()
	return st, nil
}

// releaseBuffersLocked lets go of commit buffers far larger than the last commit needed: the first
// scrape after a start writes every series (hundreds of bytes each), later ones only samples, and
// keeping the first scrape's buffers would cost about as much memory as the series themselves.
func (w *WAL) releaseBuffersLocked(recBytes, serBytes, samples, series int) {
	const slack = 1 << 20
	if cap(w.recBuf) > 4*recBytes+slack {
		w.recBuf = nil
	}
	if cap(w.serRec) > 4*serBytes+slack {
		w.serRec = nil
	}
	if c := cap(w.serBuf); c > 4*series+1024 {
		w.serBuf = nil
	}
	if c := cap(w.keep); c*24 > 4*samples*24+slack {
		w.keep, w.undo = nil, nil
	}
}

// seriesBytes bounds the encoded size of s in a Series record.
func seriesBytes(s encodedSeries) int { return 16 + len(s.enc) }

// logSeriesLocked logs the Series records of ser, each of about seriesRecordBytes, encoded in
// turn into w.serRec, and returns the bytes it logged. A failure may leave some of them in the
// WAL: the caller cuts the scrape back (recoverLocked), as after a failure inside one Log call.
func (w *WAL) logSeriesLocked(ser []encodedSeries) (int, error) {
	n := 0
	for i := 0; i < len(ser); {
		size, j := 0, i
		for ; j < len(ser) && (j == i || size < seriesRecordBytes); j++ {
			size += seriesBytes(ser[j])
		}
		var err error
		w.serRec, err = appendSeriesRecord(slices.Grow(w.serRec[:0], size), ser[i:j]) // size bounds it
		if err != nil {
			// The writer encoded these labels itself: memory corruption or a bug.
			return n, err
		}
		if err := w.wl.Log(w.serRec); err != nil {
			return n, err
		}
		n += len(w.serRec)
		i = j
	}
	return n, nil
}

func (w *WAL) countSkipped(st AppendStats) {
	for _, c := range []struct {
		reason string
		n      int
	}{{"duplicate", st.Duplicate}, {"out_of_order", st.OutOfOrder}, {"unknown_series", st.UnknownSeries}} {
		if c.n > 0 {
			w.metrics.samplesSkipped.WithLabelValues(c.reason).Add(float64(c.n))
			w.stats.addSkipped(c.reason, int64(c.n))
		}
	}
}

func (w *WAL) rollbackLocked(undo []undoEntry, ser []encodedSeries) {
	for i := len(undo) - 1; i >= 0; i-- {
		w.series.get(undo[i].ref).lastT = undo[i].lastT
	}
	for _, s := range ser {
		w.series.get(s.ref).written = false
	}
}

// rotatedLocked notes that the writer moved on to segment seg: the previous segment is sealed
// (wlog fsyncs it in the background) and a new one is tracked.
func (w *WAL) rotatedLocked(seg int) {
	for k := w.cur; k < seg; k++ {
		m := w.segs[k]
		if m == nil {
			continue
		}
		if size, err := statSegment(w.dir, k); err == nil {
			m.bytes = size
		}
		// wlog fsyncs a sealed segment in the background; under FsyncScrape a Commit returns
		// only when everything before it is durable, so fsync it here too.
		if w.opts.Fsync == FsyncScrape {
			err := fsyncFile(segmentName(w.dir, k))
			if err == nil && w.opts.syncHook != nil {
				err = w.opts.syncHook(k)
			}
			if err != nil {
				// Every scrape in it was fsynced by its own Commit; only the page padding that
				// sealed it is in doubt.
				w.metrics.fsyncFailures.Inc()
				w.logger.WithError(err).WithField("segment", k).Error("fsync of sealed segment failed; its scrapes were fsynced by their commits, only its padding is in doubt")
			}
		}
	}
	for k := w.cur + 1; k <= seg; k++ {
		if w.segs[k] == nil {
			w.segs[k] = &segmentMeta{minT: math.MaxInt64, maxT: math.MinInt64}
		}
	}
	w.cur = seg
	w.updateGauges()
}

// checkFreeLocked fails with ErrDiskFull when writing n record bytes would leave less than the
// reserve free on the WAL's file system.
func (w *WAL) checkFreeLocked(n int) error {
	if w.opts.ReserveBytes == 0 {
		return nil
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(w.dir, &fs); err != nil {
		return nil // no answer is no reason to refuse: the write itself will tell
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	// Framing adds a 7-byte header per page and a page of padding at worst.
	need := int64(n) + int64(n/pageSize+1)*recordHeaderSize + pageSize + w.opts.ReserveBytes
	if free < need {
		return fmt.Errorf("%w: %d bytes free in %s, the scrape needs %d and %d are kept in reserve (--wal-reserve)", ErrDiskFull, free, w.dir, n, w.opts.ReserveBytes)
	}
	return nil
}

// recoverLocked handles a failed write or fsync of a scrape that started at from. wlog may have
// left the scrape's records, whole or in part, in the open segment (ENOSPC, EIO) and in segments
// it rotated to inside Log. They belong to a scrape whose Commit fails, so they are cut without
// being saved (which needs no free space), the segment is re-read from disk up to the cut, and the
// next Commit writes to a new segment. cause is returned, joined with any error of the recovery;
// when the recovery fails, the next Commit tries it again.
func (w *WAL) recoverLocked(cause error, from Position) error {
	w.logger.WithError(cause).WithFields(logrus.Fields{"segment": from.Segment, "offset": from.Offset}).
		Error("wal write failed; the scrape fails, its records are cut and the next scrape goes to a new segment")
	// wlog's Close flushes its last page; when that fails it keeps the segment file open, and the
	// WAL never uses that handle again.
	_ = w.wl.Close()
	w.wl = nil
	w.cutAt = &from
	if err := w.reopenLocked(); err != nil {
		return fmt.Errorf("%w (and reopening the wal failed: %v)", cause, err)
	}
	return cause
}

// reopenLocked finishes a recovery: it cuts what the failed scrape left, checks the segment by
// reading it from disk, repairing what does not read back, and starts a new segment.
func (w *WAL) reopenLocked() error {
	if c := w.cutAt; c != nil {
		if err := cutAfter(w.dir, *c); err != nil {
			return err
		}
		w.cutAt = nil
	}
	sr, err := openSegmentReader(w.dir, w.cur, 0)
	if err != nil {
		return err
	}
	for {
		_, err := sr.next()
		if err == nil {
			continue
		}
		sr.Close()
		if err != io.EOF {
			if rerr := w.repair(w.cur, sr.offset(), err); rerr != nil {
				return rerr
			}
		}
		break
	}
	wl, err := newWlog(w.dir, w.opts)
	if err != nil {
		return err
	}
	w.wl = wl
	seg, _, err := wl.LastSegmentAndOffset()
	if err != nil {
		return err
	}
	w.rotatedLocked(seg)
	return nil
}

// cutAfter cuts segment from.Segment at from.Offset and empties every later segment (created by
// wlog for the failed scrape), then fsyncs them. The files stay: a reader may hold them open, and
// a new file under the same name would be one it never sees.
func cutAfter(dir string, from Position) error {
	segs, err := listSegments(dir)
	if err != nil {
		return fmt.Errorf("list segments in %s: %w", dir, err)
	}
	for _, k := range segs {
		if k < from.Segment {
			continue
		}
		off := from.Offset
		if k > from.Segment {
			off = 0
		}
		size, err := statSegment(dir, k)
		if err != nil {
			return fmt.Errorf("cut segment %d in %s: %w", k, dir, err)
		}
		if size <= off {
			continue
		}
		f, err := os.OpenFile(segmentName(dir, k), os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("cut segment %d in %s: %w", k, dir, err)
		}
		err = f.Truncate(off)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("cut segment %d at offset %d in %s: %w", k, off, dir, err)
		}
	}
	return nil
}

func fsyncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// statSegment returns the size of segment k.
func statSegment(dir string, k int) (int64, error) {
	fi, err := os.Stat(segmentName(dir, k))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// syncFailedLocked handles a failed fsync of the interval policy. The scrapes since the last fsync
// were acknowledged and stay, but fsyncing the same file again proves nothing (the kernel may have
// dropped the pages it could not write), so the writer closes the segment and starts a new one.
func (w *WAL) syncFailedLocked(cause error) {
	w.logger.WithError(cause).WithField("segment", w.cur).Error("wal fsync failed; scrapes since the last fsync may not survive a machine crash; starting a new segment")
	_ = w.wl.Close()
	w.wl = nil
	if err := w.reopenLocked(); err != nil {
		w.logger.WithError(err).Error("reopen wal after a failed fsync; the next scrape tries again")
		return
	}
	w.dirty = false // the new segment holds nothing yet

}
