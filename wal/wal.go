package wal

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/sirupsen/logrus"
)

// SeriesRef identifies a series in one WAL. Refs start at 1, are stable across restarts, and are
// never reissued by one writer process (after a restart, refs above the highest one still on disk
// may be issued again; see FORMAT.md).
type SeriesRef = chunks.HeadSeriesRef

const (
	lockFile    = "lock"
	corruptDir  = "corrupt"
	positionDir = "positions"
	statsFile   = "stats.json"
)

// memSeries is the writer's state of one series.
// Kept to 40 bytes: Commit touches one per sample.
type memSeries struct {
	enc     string // the labels, encoded by AppendLabels (shared with readers: see labels.go)
	lastT   int64  // newest timestamp appended; math.MinInt64 before the first
	lastSeg int32  // newest segment holding a sample (or the Series record) of this series
	used    uint32 // epoch of the last Ref returning it or ReleaseSeries letting it go
	holders int32  // HoldSeries minus ReleaseSeries: caches that may present the ref
	written bool   // its Series record is in a retained segment or the checkpoint
}

// segmentMeta summarises one retained segment.
type segmentMeta struct {
	samples    int64
	minT, maxT int64
	bytes      int64
}

// WAL is the write-ahead log of one cluster ID. Appends go through Appenders; Commit is safe for
// concurrent use. Readers are separate (NewReader) and need no WAL handle.
type WAL struct {
	dir     string
	logger  logrus.FieldLogger
	metrics *metrics
	opts    Options
	lock    *os.File

	stopc chan struct{}
	wg    sync.WaitGroup // the interval fsync goroutine

	// mtx guards every field below. Commit holds it while writing; readers never take it.
	mtx     sync.Mutex
	wl      *wlog.WL
	series  refTable[memSeries]
	byHash  hashIndex
	nextRef SeriesRef
	epoch   uint32         // incremented by every Truncate; see freeableLocked
	active  map[uint32]int // open appenders by the epoch they began in
	segs    map[int]*segmentMeta
	first   int // oldest retained segment
	cur     int // segment being written
	dirty   bool
	enc     record.Encoder
	seed    maphash.Seed // of the hashes in byHash (hashLabels)
	recBuf  []byte       // the Samples record of a commit
	serRec  []byte       // one Series record of a commit
	serBuf  []encodedSeries
	keep    []record.RefSample
	undo    []undoEntry
	changed chan struct{}
	stats   Stats
	closed  bool
	cutAt   *Position // set while a failed scrape's records still have to be cut
}

type undoEntry struct {
	ref   SeriesRef
	lastT int64
}

// Open opens (creating it if needed) the WAL of cluster id below baseDir and takes its lock. It
// reads every retained segment to rebuild the series refs and the newest timestamp of each series,
// and repairs what a crash or corruption left: a torn tail is cut, a corrupted record and what
// follows it in its segment are cut and kept under corrupt/; later segments are kept. Each repair
// is logged and counted.
func Open(logger logrus.FieldLogger, reg prometheus.Registerer, baseDir, id string, opts Options) (*WAL, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("wal options: %w", err)
	}
	if logger == nil {
		logger = discardLogger()
	}
	dir := filepath.Join(baseDir, id)
	if err := os.MkdirAll(filepath.Join(dir, positionDir), 0o750); err != nil {
		return nil, fmt.Errorf("create wal directory %s: %w", dir, err)
	}
	lock, err := acquireLock(dir)
	if err != nil {
		return nil, err
	}
	w := &WAL{
		dir:     dir,
		logger:  logger.WithField("cluster_id", id),
		metrics: newMetrics(reg),
		opts:    opts,
		lock:    lock,
		stopc:   make(chan struct{}),
		byHash:  newHashIndex(),
		seed:    maphash.MakeSeed(),
		nextRef: 1,
		active:  map[uint32]int{},
		segs:    map[int]*segmentMeta{},
		changed: make(chan struct{}),
	}
	if err := w.load(); err != nil {
		lock.Close()
		return nil, err
	}
	wl, err := newWlog(dir, opts)
	if err != nil {
		lock.Close()
		return nil, err
	}
	w.wl = wl
	seg, _, err := wl.LastSegmentAndOffset()
	if err != nil {
		wl.Close()
		lock.Close()
		return nil, fmt.Errorf("list segments in %s: %w", dir, err)
	}
	w.cur = seg
	w.segs[seg] = &segmentMeta{minT: math.MaxInt64, maxT: math.MinInt64}
	if len(w.segs) == 1 {
		w.first = seg
	}
	w.updateGauges()
	w.metrics.maxSizeBytes.Set(float64(opts.MaxSize))
	w.checkPositions()
	if opts.Fsync == FsyncInterval {
		w.wg.Add(1)
		go w.syncLoop()
	}
	return w, nil
}

// newWlog starts a new segment after the existing ones. wlog's own metrics are not registered: the
// WAL exports its own.
func newWlog(dir string, opts Options) (*wlog.WL, error) {
	wl, err := wlog.NewSize(nil, nil, dir, opts.SegmentSize, opts.Compression)
	if err != nil {
		return nil, fmt.Errorf("open wal segment in %s: %w", dir, err)
	}
	return wl, nil
}

func acquireLock(dir string) (*os.File, error) {
	return lockPath(filepath.Join(dir, lockFile), dir)
}

// lockPath takes an exclusive flock on the file at path, created if missing; when another
// process holds it the error wraps ErrLocked and names what.
func lockPath(path, what string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, what)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

func discardLogger() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// Dir returns the WAL's directory, <baseDir>/<cluster-id>.
func (w *WAL) Dir() string { return w.dir }

// load rebuilds the in-memory state from the checkpoint and the segments, repairing as it goes.
func (w *WAL) load() error {
	// A checkpoint left half-written by a crash is garbage.
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("read wal directory %s: %w", w.dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), checkpointPrefix) && strings.HasSuffix(e.Name(), ".tmp") {
			if err := os.RemoveAll(filepath.Join(w.dir, e.Name())); err != nil {
				return fmt.Errorf("remove unfinished checkpoint: %w", err)
			}
		}
		if strings.HasSuffix(e.Name(), ".tmp") && !e.IsDir() {
			_ = os.Remove(filepath.Join(w.dir, e.Name()))
		}
	}
	st, err := readStats(w.dir)
	if err != nil {
		w.logger.WithError(err).Warn("wal stats file unreadable; counters restart from zero")
	}
	w.stats = st
	w.stats.Consumers = append([]string(nil), w.opts.Consumers...)
	if err := writeStats(w.dir, w.stats); err != nil {
		return err
	}

	ckDir, ckIdx, err := lastCheckpoint(w.dir)
	if err != nil {
		return fmt.Errorf("find checkpoint in %s: %w", w.dir, err)
	}
	var dec record.Decoder
	var series encodedRecord
	if ckDir != "" {
		err := readRecords(ckDir, func(rec []byte, _ int) error {
			if dec.Type(rec) != record.Series {
				return nil
			}
			series.reset()
			if err := series.add(rec); err != nil {
				return err
			}
			w.addSeriesRecord(&series, ckIdx)
			return nil
		})
		if err != nil {
			// The checkpoint is written whole and renamed into place; an error here is bit rot.
			// Samples whose series are lost are reported by readers as unknown.
			w.logger.WithError(err).Error("wal checkpoint unreadable; series defined only there are lost")
			w.metrics.repairs.WithLabelValues("corruption").Inc()
		}
	}

	if err := w.checkSegments(ckIdx); err != nil {
		return err
	}
	segs, err := listSegments(w.dir)
	if err != nil {
		return fmt.Errorf("list segments in %s: %w", w.dir, err)
	}
	var samples []record.RefSample
	for _, k := range segs {
		if k <= ckIdx {
			// Covered by the checkpoint: a crash came between checkpoint and deletion.
			if err := os.Remove(segmentName(w.dir, k)); err != nil {
				return fmt.Errorf("remove checkpointed segment %d: %w", k, err)
			}
			continue
		}
		meta := &segmentMeta{minT: math.MaxInt64, maxT: math.MinInt64}
		w.segs[k] = meta
		sr, err := openSegmentReader(w.dir, k, 0)
		if err != nil {
			return fmt.Errorf("open segment %d in %s: %w", k, w.dir, err)
		}
		for {
			rec, err := sr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				sr.Close()
				if rerr := w.repair(k, sr.offset(), err); rerr != nil {
					return rerr
				}
				break
			}
			switch dec.Type(rec) {
			case record.Series:
				series.reset()
				if err := series.add(rec); err != nil {
					err = &CorruptionError{Dir: w.dir, Segment: k, Offset: sr.offset(), Err: err}
					w.logger.WithError(err).Error("undecodable series record; skipped")
					continue
				}
				w.addSeriesRecord(&series, k)
			case record.Samples, record.SamplesV2:
				samples, err = dec.Samples(rec, samples[:0])
				if err != nil {
					err = &CorruptionError{Dir: w.dir, Segment: k, Offset: sr.offset(), Err: err}
					w.logger.WithError(err).Error("undecodable samples record; skipped")
					continue
				}
				w.loadSamples(k, meta, samples)
			}
		}
		sr.Close()
		if fi, err := os.Stat(segmentName(w.dir, k)); err == nil {
			meta.bytes = fi.Size()
		}
	}
	if len(segs) > 0 {
		w.first = -1
		for k := range w.segs {
			if w.first < 0 || k < w.first {
				w.first = k
			}
		}
	}
	w.series.compact()
	return nil
}

// loadSamples replays samples read on open into the per-series state.
func (w *WAL) loadSamples(seg int, meta *segmentMeta, samples []record.RefSample) {
	for _, s := range samples {
		meta.samples++
		meta.minT = min(meta.minT, s.T)
		meta.maxT = max(meta.maxT, s.T)
		// A sample whose Series record was lost to corruption: its ref is not issued again.
		w.nextRef = max(w.nextRef, s.Ref+1)
		ms := w.series.get(s.Ref)
		if ms == nil {
			continue
		}
		ms.lastT = max(ms.lastT, s.T)
		ms.lastSeg = int32(seg)
	}
}

// addSeries records a series read from disk (written) or created by an appender (not yet
// written), its labels encoded by AppendLabels.
func (w *WAL) addSeries(ref SeriesRef, enc string, seg int, written bool) {
	w.addSeriesHashed(ref, enc, w.hashLabels(enc), seg, written)
}

// addSeriesHashed is addSeries given hashLabels(enc).
func (w *WAL) addSeriesHashed(ref SeriesRef, enc string, h uint64, seg int, written bool) {
	w.nextRef = max(w.nextRef, ref+1)
	ms, created := w.series.put(ref)
	if !created {
		// Repeated definition (checkpoint and segment both hold it): keep the newest segment.
		ms.lastSeg = max(ms.lastSeg, int32(seg))
		return
	}
	*ms = memSeries{enc: enc, lastT: math.MinInt64, lastSeg: int32(seg), used: w.epoch, written: written}
	w.byHash.add(h, ref)
}

// hashLabels is the key of a series in byHash: a hash of its encoded labels.
func (w *WAL) hashLabels(enc string) uint64 { return maphash.String(w.seed, enc) }

// addSeriesRecord records the series of a Series record read from segment (or checkpoint) seg.
func (w *WAL) addSeriesRecord(d *encodedRecord, seg int) {
	for k := range d.len() {
		if ms := w.series.get(d.refs[k]); ms != nil {
			ms.lastSeg = max(ms.lastSeg, int32(seg)) // repeated definition: see addSeries
			continue
		}
		w.addSeries(d.refs[k], string(d.enc(k)), seg, true)
	}
}

// repair cuts segment k at off after a read error, keeping the cut bytes under corrupt/.
func (w *WAL) repair(k int, off int64, cause error) error {
	name := segmentName(w.dir, k)
	fi, err := os.Stat(name)
	if err != nil {
		return fmt.Errorf("repair segment %d in %s: %w", k, w.dir, err)
	}
	cut := fi.Size() - off
	kind := repairKind(w.dir, k, cause)
	if kind == "" {
		return fmt.Errorf("read segment %d in %s: %w", k, w.dir, cause)
	}
	if err := saveCut(w.dir, k, off); err != nil {
		return err
	}
	lostRecs := decodeLost(w.dir, k, off)
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("repair segment %d in %s: %w", k, w.dir, err)
	}
	if err := f.Truncate(off); err != nil {
		f.Close()
		return fmt.Errorf("cut segment %d at offset %d in %s: %w", k, off, w.dir, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync segment %d in %s: %w", k, w.dir, err)
	}
	f.Close()
	w.metrics.repairs.WithLabelValues(kind).Inc()
	w.metrics.repairedBytes.Add(float64(cut))
	w.stats.Repairs++
	w.stats.RepairedBytes += cut
	lost := w.countLost(kind, lostRecs)
	w.logger.WithFields(logrus.Fields{
		"segment": k, "offset": off, "bytes_cut": cut, "kind": kind, "err": cause, "undelivered_samples": lost,
	}).Warn("wal repaired: cut the segment at the first unreadable record, kept the cut bytes under corrupt/ and every later segment")
	return writeStats(w.dir, w.stats)
}

// saveCut copies the bytes of segment k from off to its end into corrupt/<segment>-<offset>.
func saveCut(dir string, k int, off int64) error {
	src, err := os.Open(segmentName(dir, k))
	if err != nil {
		return fmt.Errorf("open segment %d for repair: %w", k, err)
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Join(dir, corruptDir), 0o750); err != nil {
		return fmt.Errorf("create %s: %w", corruptDir, err)
	}
	dst, err := os.Create(filepath.Join(dir, corruptDir, fmt.Sprintf("%08d-%d", k, off)))
	if err != nil {
		return fmt.Errorf("save cut bytes of segment %d: %w", k, err)
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, math.MaxInt64-off)); err != nil {
		dst.Close()
		return fmt.Errorf("save cut bytes of segment %d: %w", k, err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return fmt.Errorf("save cut bytes of segment %d: %w", k, err)
	}
	return dst.Close()
}

// readRecords calls fn for every record of every segment in dir (a checkpoint), in order.
func readRecords(dir string, fn func(rec []byte, seg int) error) error {
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	var prev *segmentReader
	for _, k := range segs {
		sr, err := openSegmentReaderAfter(dir, k, 0, prev)
		if err != nil {
			return err
		}
		prev = sr
		for {
			rec, err := sr.next()
			if err == io.EOF {
				break
			}
			if errors.Is(err, errIncomplete) {
				err = &CorruptionError{Dir: dir, Segment: k, Offset: sr.offset(), Err: err}
			}
			if err == nil {
				err = fn(rec, k)
			}
			if err != nil {
				sr.Close()
				return err
			}
		}
		sr.Close()
	}
	return nil
}

// Changed returns a channel that is closed at the next successful Commit (or at Close). Readers in
// the same process wait on it instead of polling.
func (w *WAL) Changed() <-chan struct{} {
	w.mtx.Lock()
	defer w.mtx.Unlock()
	return w.changed
}

// FirstSegment returns the oldest retained segment. A reader positioned before it lost data to a
// cap and moves forward.
func (w *WAL) FirstSegment() int {
	w.mtx.Lock()
	defer w.mtx.Unlock()
	return w.first
}

func (w *WAL) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *WAL) syncLoop() {
	defer w.wg.Done()
	t := time.NewTicker(w.opts.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stopc:
			return
		case <-t.C:
			w.mtx.Lock()
			if w.dirty && !w.closed && w.wl != nil {
				if err := w.syncLocked(); err != nil {
					w.syncFailedLocked(err)
				}
			}
			w.mtx.Unlock()
		}
	}
}

func (w *WAL) syncLocked() error {
	start := time.Now()
	err := w.wl.Sync()
	w.metrics.fsyncDuration.Observe(time.Since(start).Seconds())
	if err == nil && w.opts.syncHook != nil {
		err = w.opts.syncHook(w.cur)
	}
	if err != nil {
		w.metrics.fsyncFailures.Inc()
	}
	if err == nil {
		w.dirty = false
	}
	return err
}

// Close flushes and fsyncs the open segment, writes the stats file and releases the lock.
func (w *WAL) Close() error {
	w.mtx.Lock()
	if w.closed {
		w.mtx.Unlock()
		return ErrClosed
	}
	w.closed = true
	close(w.stopc)
	w.notifyLocked()
	w.mtx.Unlock()
	w.wg.Wait()

	w.mtx.Lock()
	defer w.mtx.Unlock()
	var errs []error
	if w.wl != nil {
		if err := w.wl.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close segment: %w", err))
		}
	}
	if err := writeStats(w.dir, w.stats); err != nil {
		errs = append(errs, err)
	}
	if err := w.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("release lock: %w", err))
	}
	return errors.Join(errs...)
}

func (w *WAL) updateGauges() {
	var size int64
	for _, m := range w.segs {
		size += m.bytes
	}
	w.metrics.segments.Set(float64(len(w.segs)))
	w.metrics.sizeBytes.Set(float64(size))
	w.metrics.series.Set(float64(w.series.len()))
}
