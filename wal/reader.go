package wal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/sirupsen/logrus"
)

// ReaderOptions configures a Reader.
type ReaderOptions struct {
	// Follow keeps reading as the writer appends, across segment rotation; without it Next returns
	// io.EOF at the end of the data.
	Follow bool
	// Changed, when set, returns a channel closed at the writer's next append (WAL.Changed), so a
	// following reader wakes at once. The reader also polls every PollInterval.
	Changed func() <-chan struct{}
	// FirstSegment, when set, returns the oldest retained segment (WAL.FirstSegment); the reader
	// skips forward when a cap evicted the segment under it.
	FirstSegment func() int
	// ShareLabels, when set, is given the ref and the encoded labels (AppendLabels) of every
	// series the reader loads from a Series record or checkpoint, and may return an identical
	// string the reader keeps instead of a copy of its own (WAL.ShareLabels): a reader in the
	// writer's process then keeps the writer's label data.
	ShareLabels func(ref SeriesRef, enc []byte) (string, bool)
	// PollInterval is how often a following reader looks for new data without a notification.
	// Default 250ms without Changed, and 5s with it: the writer notifies at every commit, so the
	// poll is only a safety net, and each one costs a read and a directory listing.
	PollInterval time.Duration
	// Logger gets the reader's warnings (position adjusted, data skipped). Default: discard.
	Logger logrus.FieldLogger
}

// Batch is the content of one Samples record: one scrape.
type Batch struct {
	// Samples are valid until the next call to Next.
	Samples []record.RefSample
	// Start is the position of the record, End the position after it. Committing End says this
	// record and everything before it is done.
	Start, End Position
}

// serBufKeep is the label data a reader keeps room for between Series records (Reader.serBuf): a
// first scrape declares every series in Series records of up to 4 MiB, later ones few.
const serBufKeep = 256 << 10

// readerSeries is a series known to a reader.
// It is 24 bytes: a reader holds one per series of the WAL.
type readerSeries struct {
	enc    string // its labels, encoded by AppendLabels
	defSeg int32  // segment of its newest definition (a checkpoint's index for one loaded from it)
	ckpt   int32  // index of the newest checkpoint that held it, -1 if none
}

// setLabels sets the labels of series ref, whose entry is e, forgetting its derived form
// (Derived) when they change.
func (r *Reader) setLabels(ref SeriesRef, e *readerSeries, enc string) {
	if e.enc != enc && r.derived.len() > 0 {
		r.derived.del(ref)
	}
	e.enc = enc
}

// Default poll intervals of a following reader (ReaderOptions.PollInterval).
const (
	defaultPollInterval  = 250 * time.Millisecond
	notifiedPollInterval = 5 * time.Second
)

// maxSnapshotTries bounds how often a reader reloads the checkpoint because truncation replaced it
// while it was being read; each try is started by a truncation that made progress.
const maxSnapshotTries = 100

// Reader reads a WAL from a position, resolving every series ref it meets. It needs no lock and no
// WAL handle: it works while a writer appends, in another process, and on a copied directory.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	dir    string
	opts   ReaderOptions
	logger logrus.FieldLogger

	pos     Position
	sr      *segmentReader
	spent   *segmentReader // the closed reader of the previous segment, whose buffers the next one takes
	sealed  bool           // a later segment exists and sr's buffer was dropped once since
	series  refTable[readerSeries]
	derived refTable[string] // Derived's forms of the labels, by ref
	ckpt    int              // newest checkpoint whose series are loaded
	prune   bool             // series absent from checkpoint ckpt are still to be forgotten
	dec     record.Decoder
	samples []record.RefSample
	serBuf  encodedRecord // the series of the last Series record
	closed  bool
	// missing counts the segments the reader had to jump over because they were gone (truncated
	// or evicted before it read them); see MissingSegments.
	missing int
}

// MissingSegments returns how many segments between the start position and the current one
// were missing when the reader reached them (deleted by truncation or a cap): their records
// were not read. A start at the zero Position (the oldest retained data) misses none.
func (r *Reader) MissingSegments() int { return r.missing }

// NewReader returns a reader of the WAL in dir (a cluster's directory) that starts at from. The
// series defined before from are loaded first (checkpoint, then Series records only). A position
// that the files cannot honour (before the oldest segment, inside a record, past the data) is
// moved to the nearest safe place before it, or to the oldest retained data, and logged: data may
// be read twice, never skipped.
func NewReader(dir string, from Position, opts ReaderOptions) (*Reader, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = defaultPollInterval
		if opts.Changed != nil {
			opts.PollInterval = notifiedPollInterval
		}
	}
	logger := opts.Logger
	if logger == nil {
		logger = discardLogger()
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("open wal %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("open wal %s: %w", dir, ErrNotWAL)
	}
	r := &Reader{dir: dir, opts: opts, logger: logger}
	// A consistent snapshot: the newest checkpoint, then the Series records of the segments
	// before from. Truncation deletes segments and checkpoints only after renaming a newer
	// checkpoint into place, so if the newest checkpoint is the same after the scan, nothing the
	// scan needed was deleted under it; otherwise start again from the newer one.
	for try := 0; ; try++ {
		r.series, r.derived, r.ckpt, r.prune = refTable[readerSeries]{}, refTable[string]{}, -1, false
		if err := r.loadCheckpoint(); err != nil {
			return nil, err
		}
		if err := r.seek(from); err != nil {
			return nil, err
		}
		_, idx, err := lastCheckpoint(r.dir)
		if err != nil {
			return nil, fmt.Errorf("find checkpoint in %s: %w", r.dir, err)
		}
		if idx == r.ckpt {
			break
		}
		if try == maxSnapshotTries {
			return nil, fmt.Errorf("open wal %s: checkpoint replaced %d times while loading series", r.dir, try)
		}
	}
	r.series.compact()
	return r, nil
}

// loadCheckpoint merges the series of the newest checkpoint, if newer than the one loaded. It is
// merged one Series record (at most seriesRecordBytes of labels) at a time: holding the whole
// checkpoint first cost a transient buffer of about twice every live series' labels (600 MiB at
// 1M series), each time the reader passed a truncation. If truncation replaced the checkpoint
// meanwhile (it is deleted only after a newer one is in place), the newer one is read and merged
// too: a reader never ends up with a partial or missing checkpoint because of a concurrent
// truncation. What the replaced one added is a definition that was true (a ref never changes its
// labels); the series it has and the newer one has not are marked with the older index, so
// afterSegment prunes them like any series the checkpoint dropped.
func (r *Reader) loadCheckpoint() error {
	for try := 0; ; try++ {
		ckDir, idx, err := lastCheckpoint(r.dir)
		if err != nil {
			return fmt.Errorf("find checkpoint in %s: %w", r.dir, err)
		}
		if idx <= r.ckpt {
			return nil
		}
		err = readRecords(ckDir, func(rec []byte, _ int) error {
			if r.dec.Type(rec) != record.Series {
				return nil
			}
			return r.mergeSeries(rec, idx, true)
		})
		_, now, lerr := lastCheckpoint(r.dir)
		if lerr != nil {
			return fmt.Errorf("find checkpoint in %s: %w", r.dir, lerr)
		}
		if now != idx {
			if try == maxSnapshotTries {
				return fmt.Errorf("read checkpoint in %s: replaced %d times while being read", r.dir, try)
			}
			continue // replaced (and maybe deleted) while read: take the newer one
		}
		complete := err == nil
		if err != nil {
			// Still the newest, so not deleted under us: bit rot. Series defined only in the
			// unreadable part are lost; keep every series the reader knows.
			r.logger.WithError(err).Warn("wal checkpoint unreadable; samples of series defined only there will be unresolvable")
		}
		r.ckpt, r.prune = idx, complete
		return nil
	}
}

func (r *Reader) addSeries(rec []byte, seg int) error { return r.mergeSeries(rec, seg, false) }

// mergeSeries merges the Series record rec, read from segment seg or, with checkpoint, from
// checkpoint seg. A segment's definition always sets the labels; a checkpoint's only when the
// reader has none newer than the checkpoint, and it marks the series as in that checkpoint (what
// afterSegment's pruning looks at).
func (r *Reader) mergeSeries(rec []byte, seg int, checkpoint bool) error {
	r.serBuf.reset()
	if err := r.serBuf.add(rec); err != nil {
		return err
	}
	for k := range r.serBuf.len() {
		ref := r.serBuf.refs[k]
		e, created := r.series.put(ref)
		if created {
			e.ckpt = -1
		}
		if !checkpoint || created || int(e.defSeg) <= seg {
			r.setLabels(ref, e, r.labelsOf(ref, e, r.serBuf.enc(k)))
		}
		e.defSeg = max(e.defSeg, int32(seg))
		if checkpoint {
			e.ckpt = int32(seg)
		}
	}
	return nil
}

// labelsOf returns the string to keep for the labels enc of series ref, whose entry is e: the
// one e already keeps if equal (a definition read again: a checkpoint and a segment), else the
// writer's copy when it shares it, else a string of the reader's own. Series records are decoded
// straight into this encoding (encodedRecord), so a reader that shares the writer's labels
// allocates nothing per series.
func (r *Reader) labelsOf(ref SeriesRef, e *readerSeries, enc []byte) string {
	if e.enc == string(enc) {
		return e.enc
	}
	if r.opts.ShareLabels != nil {
		if s, ok := r.opts.ShareLabels(ref, enc); ok {
			return s
		}
	}
	return string(enc)
}

// seek positions the reader at from, loading the series defined before it. Where it starts is
// decided by resolvePosition, which `wal status` uses too.
func (r *Reader) seek(from Position) error {
	segs, err := listSegments(r.dir)
	if err != nil {
		return fmt.Errorf("list segments in %s: %w", r.dir, err)
	}
	if len(segs) == 0 {
		r.pos = Position{Segment: max(from.Segment, r.ckpt+1)}
		return nil
	}
	start, reason, err := resolvePosition(segs, from, r.scanSeriesTo)
	if err != nil {
		return err
	}
	if reason == positionEvicted {
		r.missing += start.Segment - from.Segment
	}
	if reason != "" {
		r.logger.WithFields(logrus.Fields{"position": from, "start": start, "reason": reason}).Warn(positionAdjustments[reason])
	}
	r.pos = start
	return nil
}

// scanSeriesTo loads the Series records of segment k that start before limit (all when limit < 0)
// and returns the last record boundary at or before limit.
func (r *Reader) scanSeriesTo(k int, limit int64) (int64, error) {
	sr, err := openSegmentReader(r.dir, k, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open segment %d in %s: %w", k, r.dir, err)
	}
	defer sr.Close()
	for {
		start := sr.offset()
		if limit >= 0 && start >= limit {
			return start, nil
		}
		rec, err := sr.next()
		if err != nil {
			// End of the data, a record being written or corruption: the position cannot be
			// later than the readable data.
			if !errors.Is(err, io.EOF) && !errors.Is(err, errIncomplete) {
				r.logger.WithError(err).Warn("corrupted wal segment while loading series")
			}
			return start, nil
		}
		if limit >= 0 && sr.offset() > limit {
			return start, nil
		}
		if r.dec.Type(rec) == record.Series {
			if err := r.addSeries(rec, k); err != nil {
				r.logger.WithError(err).WithField("segment", k).Warn("undecodable series record skipped")
			}
		}
	}
}

// Position returns the position of the next record.
func (r *Reader) Position() Position { return r.pos }

// Labels returns the labels of series ref.
func (r *Reader) Labels(ref SeriesRef) (labels.Labels, bool) {
	e := r.series.get(ref)
	if e == nil {
		return labels.EmptyLabels(), false
	}
	var b labels.ScratchBuilder
	lset, err := DecodeLabels(e.enc, &b)
	if err != nil {
		return labels.EmptyLabels(), false // the reader encoded them itself: cannot happen
	}
	return lset, true
}

// Encoded returns the labels of series ref as AppendLabels encodes them (the string a writer
// in this process shares with the reader, see WAL.ShareLabels), or false for an unknown ref.
func (r *Reader) Encoded(ref SeriesRef) (string, bool) {
	if e := r.series.get(ref); e != nil {
		return e.enc, true
	}
	return "", false
}

// Derived returns the labels of series ref in the caller's form: derive(ref, enc) of their
// encoding (AppendLabels), computed at the first call after the series was defined (or
// redefined with other labels) and kept until then, so that a caller that needs the labels in
// another form at every sample (the queue, with write relabeling) computes it once per series.
// The derived forms are kept in a table of their own (24 bytes a series on top of the string
// derive returns), which is empty for a caller that only uses Encoded. Pass the same derive at
// every call: the value kept is whichever computed it. It returns false for an unknown ref.
func (r *Reader) Derived(ref SeriesRef, derive func(SeriesRef, string) string) (string, bool) {
	e := r.series.get(ref)
	if e == nil {
		return "", false
	}
	if d := r.derived.get(ref); d != nil {
		return *d, true
	}
	d, _ := r.derived.put(ref)
	*d = derive(ref, e.enc)
	return *d, true
}

// Next returns the next scrape. Series records on the way are absorbed (see Labels). At the end of
// the data it returns io.EOF, or waits for more when following, until ctx is done. A
// *CorruptionError stops the reader at the record it names; SkipSegment moves past it.
func (r *Reader) Next(ctx context.Context) (Batch, error) {
	if r.closed {
		return Batch{}, ErrClosed
	}
	for {
		var changed <-chan struct{}
		if r.opts.Follow && r.opts.Changed != nil {
			changed = r.opts.Changed()
		}
		if r.opts.FirstSegment != nil {
			if first := r.opts.FirstSegment(); r.pos.Segment < first {
				r.logger.WithFields(logrus.Fields{"position": r.pos, "segment": first}).Warn("segment evicted under the reader; moving to the oldest retained segment")
				r.missing += first - r.pos.Segment
				r.closeSegment()
				r.pos = Position{Segment: first}
				if err := r.afterSegment(); err != nil {
					return Batch{}, err
				}
			}
		}
		if r.sr == nil {
			ok, err := r.openSegment()
			if err != nil {
				return Batch{}, err
			}
			if !ok {
				if err := r.wait(ctx, changed); err != nil {
					return Batch{}, err
				}
				continue
			}
		}
		start := r.pos
		rec, err := r.sr.next()
		if err == nil {
			r.pos.Offset = r.sr.offset()
			switch r.dec.Type(rec) {
			case record.Series:
				if err := r.addSeries(rec, r.pos.Segment); err != nil {
					return Batch{}, &CorruptionError{Dir: r.dir, Segment: start.Segment, Offset: start.Offset, Err: err}
				}
			case record.Samples, record.SamplesV2:
				if cap(r.serBuf.data) > serBufKeep {
					// The Series records of a first scrape are behind: later ones declare few series.
					r.serBuf = encodedRecord{}
				}
				// The decoder sizes the buffer itself (a sample per 10 bytes of record at most).
				r.samples, err = r.dec.Samples(rec, r.samples[:0])
				if err != nil {
					return Batch{}, &CorruptionError{Dir: r.dir, Segment: start.Segment, Offset: start.Offset, Err: err}
				}
				return Batch{Samples: r.samples, Start: start, End: r.pos}, nil
			}
			continue
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, errIncomplete) {
			return Batch{}, err
		}
		// End of the bytes on disk. Move on if a later segment exists: the writer creates it only
		// after flushing this one, so read once more to catch the last flush.
		next, err2 := r.nextSegmentIndex()
		if err2 != nil {
			return Batch{}, err2
		}
		if next < 0 {
			if !r.opts.Follow {
				return Batch{}, io.EOF
			}
			if err := r.wait(ctx, changed); err != nil {
				return Batch{}, err
			}
			continue
		}
		if !r.sealed {
			// A later segment exists, so this one is sealed: the writer creates the next one only
			// after its last write here, and a writer that failed mid-record cuts the tail before.
			// Drop what is buffered and read the file once more as it is now.
			r.sealed = true
			r.sr.dropBuffer()
			continue
		}
		if errors.Is(err, errIncomplete) {
			return Batch{}, &CorruptionError{Dir: r.dir, Segment: r.pos.Segment, Offset: r.pos.Offset, Err: errors.New("torn record at the end of a sealed segment")}
		}
		r.closeSegment()
		r.pos = Position{Segment: next}
		if err := r.afterSegment(); err != nil {
			return Batch{}, err
		}
	}
}

// SkipSegment abandons the rest of the current segment (after a *CorruptionError) and moves to the
// next one. The caller counts what it lost.
func (r *Reader) SkipSegment() error {
	next, err := r.nextSegmentIndex()
	if err != nil {
		return err
	}
	r.closeSegment()
	if next < 0 {
		next = r.pos.Segment + 1
	}
	r.pos = Position{Segment: next}
	return r.afterSegment()
}

// afterSegment runs when the reader moved to a new segment (r.pos, not yet read). Truncation may
// have written a newer checkpoint: its series are merged (adding is always safe). A checkpoint
// holds every series referenced after its index, and a series it left out is declared again
// before any later sample of it, so once the reader is past the index the series defined at or
// before it and absent from it are forgotten: that is what bounds the reader's memory under
// series churn. Before the reader is past it (it may still read a segment the checkpoint covers,
// through an open file or one not yet deleted) nothing is forgotten.
func (r *Reader) afterSegment() error {
	if err := r.loadCheckpoint(); err != nil {
		return err
	}
	if !r.prune || r.ckpt >= r.pos.Segment {
		return nil
	}
	var drop []SeriesRef
	r.series.each(func(ref SeriesRef, e *readerSeries) {
		if int(e.ckpt) != r.ckpt && int(e.defSeg) <= r.ckpt {
			drop = append(drop, ref)
		}
	})
	for _, ref := range drop {
		r.series.del(ref)
		r.derived.del(ref)
	}
	r.prune = false
	r.series.compact()
	r.derived.compact()
	return nil
}

// openSegment opens the segment at r.pos, or the next existing one. It returns false when there is
// none yet.
func (r *Reader) openSegment() (bool, error) {
	sr, err := openSegmentReaderAfter(r.dir, r.pos.Segment, r.pos.Offset, r.spent)
	if err == nil {
		r.sr, r.spent = sr, nil
		return true, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("open segment %d in %s: %w", r.pos.Segment, r.dir, err)
	}
	segs, err := listSegments(r.dir)
	if err != nil {
		return false, fmt.Errorf("list segments in %s: %w", r.dir, err)
	}
	for _, k := range segs {
		if k > r.pos.Segment {
			r.logger.WithFields(logrus.Fields{"segment": r.pos.Segment, "next": k}).Warn("segment missing (truncated or evicted under the reader); continuing with the next one")
			r.missing += k - r.pos.Segment
			r.pos = Position{Segment: k}
			// The checkpoint written before the deletion holds the series of the skipped ones.
			if err := r.afterSegment(); err != nil {
				return false, err
			}
			return r.openSegment()
		}
	}
	if !r.opts.Follow {
		return false, io.EOF
	}
	return false, nil
}

func (r *Reader) nextSegmentIndex() (int, error) {
	segs, err := listSegments(r.dir)
	if err != nil {
		return -1, fmt.Errorf("list segments in %s: %w", r.dir, err)
	}
	for _, k := range segs {
		if k > r.pos.Segment {
			return k, nil
		}
	}
	return -1, nil
}

func (r *Reader) wait(ctx context.Context, changed <-chan struct{}) error {
	t := time.NewTimer(r.opts.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-t.C:
	}
	return nil
}

func (r *Reader) closeSegment() {
	r.sealed = false
	if r.sr != nil {
		r.sr.Close()
		r.sr, r.spent = nil, r.sr // its buffers go to the next segment's reader
	}
}

// Close releases the open segment.
func (r *Reader) Close() error {
	r.closed = true
	r.closeSegment()
	return nil
}
