package wal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/prometheus/prometheus/util/compression"
)

// deferredDirName holds one dead-letter log per consumer: <wal>/deferred/<consumer>/.
const (
	deferredDirName  = "deferred"
	deferredLock     = "lock"
	backfillLock     = "backfill.lock"
	deferredSegBytes = 8 << 20
)

// DeferredDir returns the dead-letter directory of consumer in the WAL directory walDir: the
// samples the receiver refused as too old for its head, kept for backfill (FORMAT.md).
func DeferredDir(walDir, consumer string) string {
	return filepath.Join(walDir, deferredDirName, consumer)
}

// DeferredConsumers returns the consumers that have a dead-letter directory in walDir.
func DeferredConsumers(walDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(walDir, deferredDirName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list dead-letter logs in %s: %w", walDir, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && ValidateID(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// DeferredLog is the writer of one consumer's dead-letter log: a tsdb/wlog directory of Series
// and Samples records. It opens a segment lazily at the first Append after OpenDeferred or Seal
// (wlog always starts a new segment, so a writer never appends to a segment that existed before)
// and holds the directory's lock from then until Seal or Close: a segment is sealed exactly when
// no writer holds the lock or a newer segment exists (DeferredSegments). It is safe for
// concurrent use.
type DeferredLog struct {
	dir string

	// mu guards every field below.
	mu     sync.Mutex
	closed bool
	lock   *os.File // held while wl is open
	wl     *wlog.WL // nil while sealed
	enc    record.Encoder
	buf    []byte
	refs   []record.RefSeries
	smpl   []record.RefSample
}

// OpenDeferred returns the writer of the dead-letter log of consumer in walDir, creating its
// directory. Nothing is locked or written until the first Append.
func OpenDeferred(walDir, consumer string) (*DeferredLog, error) {
	if err := ValidateID(consumer); err != nil {
		return nil, fmt.Errorf("consumer %q: %w", consumer, err)
	}
	dir := DeferredDir(walDir, consumer)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create dead-letter directory %s: %w", dir, err)
	}
	return &DeferredLog{dir: dir}, nil
}

// Dir returns the dead-letter directory.
func (d *DeferredLog) Dir() string { return d.dir }

// Append writes series and their samples as one Series and one Samples record (refs local to
// the call: FORMAT.md) and fsyncs them. When it returns nil the samples survive a crash; when it
// returns an error nothing may be assumed stored and the caller keeps the samples unsettled. It
// returns an error wrapping ErrLocked while another writer (or a backfill listing the segments)
// holds the directory.
func (d *DeferredLog) Append(series []prompb.TimeSeries) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.wl == nil {
		lock, err := acquireLock(d.dir)
		if err != nil {
			return err
		}
		wl, err := wlog.NewSize(nil, nil, d.dir, deferredSegBytes, compression.None)
		if err != nil {
			lock.Close()
			return fmt.Errorf("open dead-letter segment in %s: %w", d.dir, err)
		}
		d.lock, d.wl = lock, wl
	}
	d.refs, d.smpl = d.refs[:0], d.smpl[:0]
	var b labels.ScratchBuilder
	for i, ts := range series {
		if len(ts.Samples) == 0 {
			continue
		}
		b.Reset()
		for _, l := range ts.Labels {
			b.Add(l.Name, l.Value)
		}
		b.Sort()
		ref := chunks.HeadSeriesRef(i + 1)
		d.refs = append(d.refs, record.RefSeries{Ref: ref, Labels: b.Labels()})
		for _, s := range ts.Samples {
			d.smpl = append(d.smpl, record.RefSample{Ref: ref, T: s.Timestamp, V: s.Value})
		}
	}
	if len(d.smpl) == 0 {
		return nil
	}
	ser := d.enc.Series(d.refs, d.buf[:0])
	smp := d.enc.Samples(d.smpl, ser[len(ser):])
	d.buf = smp[:0]
	if err := d.wl.Log(ser, smp); err != nil {
		return d.failLocked(fmt.Errorf("write %d deferred samples in %s: %w", len(d.smpl), d.dir, err))
	}
	if err := d.wl.Sync(); err != nil {
		return d.failLocked(fmt.Errorf("fsync %d deferred samples in %s: %w", len(d.smpl), d.dir, err))
	}
	return nil
}

// failLocked drops the segment after a failed write or fsync: the next Append starts a new one,
// and the caller sends the samples again (a torn tail is skipped by readers).
func (d *DeferredLog) failLocked(err error) error {
	_ = d.sealLocked() // the write already failed; what closing reports adds nothing
	return err
}

// Seal closes the segment being written (fsynced) and releases the directory's lock: every
// segment is then sealed and can be backfilled. The next Append starts a new segment.
func (d *DeferredLog) Seal() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sealLocked()
}

func (d *DeferredLog) sealLocked() error {
	if d.wl == nil {
		return nil
	}
	err := d.wl.Close()
	d.wl = nil
	err = errors.Join(err, d.lock.Close())
	d.lock = nil
	if err != nil {
		return fmt.Errorf("seal dead-letter segment in %s: %w", d.dir, err)
	}
	return nil
}

// Close seals the segment; the log takes no further Append.
func (d *DeferredLog) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return d.sealLocked()
}

// DeferredSegments returns the sealed segments of the dead-letter directory dir, ascending: all
// of them when no writer holds it, all but the newest (the one being written) when one does.
func DeferredSegments(dir string) ([]int, error) {
	segs, err := listSegments(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list dead-letter segments in %s: %w", dir, err)
	}
	lock, err := acquireLock(dir)
	switch {
	case errors.Is(err, ErrLocked):
		if len(segs) > 0 {
			segs = segs[:len(segs)-1]
		}
	case err != nil:
		return nil, err
	default:
		// Listed under the lock: a writer opening from now on starts after these segments.
		lock.Close()
	}
	return segs, nil
}

// LockBackfill takes the lock that keeps two backfills of the dead-letter directory dir apart.
// It returns ErrLocked when another backfill holds it; Close the file to release it.
func LockBackfill(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create dead-letter directory %s: %w", dir, err)
	}
	return lockPath(filepath.Join(dir, backfillLock), "backfill of "+dir)
}

// DeferredSample is one sample read back from a dead-letter log.
type DeferredSample struct {
	Labels labels.Labels
	T      int64
	V      float64
}

// ReadDeferred calls fn for every sample in the given segments of the dead-letter directory dir,
// in write order. A segment whose tail is torn (a crash during an Append that therefore never
// returned: its samples were sent again) is read up to the tear; the tear is reported in torn.
// Corruption before the tail of a sealed segment is reported the same way: its remaining
// samples cannot be read.
func ReadDeferred(dir string, segs []int, fn func(DeferredSample) error) (torn []error, err error) {
	var dec record.Decoder
	series := map[chunks.HeadSeriesRef]labels.Labels{}
	var refs []record.RefSeries
	var samples []record.RefSample
	for _, k := range segs {
		f, err := wlog.OpenReadSegment(segmentName(dir, k))
		if err != nil {
			return torn, fmt.Errorf("open dead-letter segment %d in %s: %w", k, dir, err)
		}
		r := wlog.NewReader(f)
		for r.Next() {
			rec := r.Record()
			switch dec.Type(rec) {
			case record.Series:
				refs, err = dec.Series(rec, refs[:0])
				if err != nil {
					break
				}
				clear(series)
				for _, s := range refs {
					series[s.Ref] = s.Labels
				}
			case record.Samples:
				samples, err = dec.Samples(rec, samples[:0])
				if err != nil {
					break
				}
				for _, s := range samples {
					lset, ok := series[s.Ref]
					if !ok {
						err = fmt.Errorf("sample of series ref %d without a series record", s.Ref)
						break
					}
					if ferr := fn(DeferredSample{Labels: lset, T: s.T, V: s.V}); ferr != nil {
						f.Close()
						return torn, ferr
					}
				}
			}
			if err != nil {
				break
			}
		}
		if err == nil {
			err = r.Err()
		}
		f.Close()
		if err != nil && !errors.Is(err, io.EOF) {
			torn = append(torn, &CorruptionError{Dir: dir, Segment: k, Offset: r.Offset(), Err: err})
		}
	}
	return torn, nil
}

// RemoveDeferred deletes the given segments of the dead-letter directory dir (after their
// samples were backfilled) and fsyncs the directory.
func RemoveDeferred(dir string, segs []int) error {
	for _, k := range segs {
		if err := os.Remove(segmentName(dir, k)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove dead-letter segment %d in %s: %w", k, dir, err)
		}
	}
	return syncDir(dir)
}

// backfillStateFile records a dead-letter directory's backfill progress.
const backfillStateFile = "backfill.json"

// BackfillState is the durable progress of the backfill of one dead-letter directory
// (backfill.json, written tmp → fsync → rename → fsync dir). A pass plans Segments into Blocks,
// built under the directory's blocks/ folder, uploads them one by one (Uploaded), and only when
// every block is uploaded removes the segments, adds the samples to Backfilled and clears the
// plan. A pass interrupted at any point resumes from here: uploaded blocks are skipped.
type BackfillState struct {
	// Segments are the dead-letter segments of the pass in progress; empty between passes.
	Segments []int `json:"segments,omitempty"`
	// Blocks are the pass' blocks.
	Blocks []BackfillBlock `json:"blocks,omitempty"`
	// Backfilled counts the samples (duplicates included) of the finished passes, cumulative;
	// BlocksUploaded their blocks.
	Backfilled     int64 `json:"backfilled_samples"`
	BlocksUploaded int64 `json:"blocks_uploaded"`
	// LastPass is when the last pass finished; LastError what stopped the last failed one.
	LastPass  time.Time `json:"last_pass,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// BackfillBlock is one block of a backfill pass.
type BackfillBlock struct {
	ULID     string `json:"ulid"`
	MinTime  int64  `json:"min_time"`
	MaxTime  int64  `json:"max_time"`
	Samples  int64  `json:"samples"`
	Uploaded bool   `json:"uploaded"`
}

// Pending counts the samples of the pass in progress whose blocks are not uploaded yet.
func (s BackfillState) Pending() (samples int64, blocks int) {
	for _, b := range s.Blocks {
		if !b.Uploaded {
			samples += b.Samples
			blocks++
		}
	}
	return samples, blocks
}

// ReadBackfillState returns the backfill progress of the dead-letter directory dir; the zero
// state when there is none yet.
func ReadBackfillState(dir string) (BackfillState, error) {
	var st BackfillState
	data, err := os.ReadFile(filepath.Join(dir, backfillStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read backfill state in %s: %w", dir, err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return BackfillState{}, fmt.Errorf("decode backfill state in %s: %w", dir, err)
	}
	return st, nil
}

// CommitBackfillState makes st the durable backfill progress of the dead-letter directory dir.
func CommitBackfillState(dir string, st BackfillState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode backfill state of %s: %w", dir, err)
	}
	return writeFileDurable(filepath.Join(dir, backfillStateFile), append(data, '\n'))
}

// DeferredStatus describes one consumer's dead-letter log for `wal status`.
type DeferredStatus struct {
	// Segments and Samples are what waits for backfill (every segment, the one a running agent
	// writes included; re-sent duplicates included); Oldest and Newest their time range.
	Segments int       `json:"segments"`
	Samples  int64     `json:"samples"`
	Oldest   time.Time `json:"oldest,omitzero"`
	Newest   time.Time `json:"newest,omitzero"`
	// Backfill is the durable backfill progress.
	Backfill BackfillState `json:"backfill"`
	// Torn lists unreadable segment tails.
	Torn []string `json:"torn,omitempty"`
}

// ReadDeferredStatus reads the dead-letter log of consumer in walDir, from the files alone. It
// returns ok false when the consumer never deferred a sample.
func ReadDeferredStatus(walDir, consumer string) (st DeferredStatus, ok bool, err error) {
	dir := DeferredDir(walDir, consumer)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	segs, err := listSegments(dir)
	if err != nil {
		return st, true, fmt.Errorf("list dead-letter segments in %s: %w", dir, err)
	}
	st.Segments = len(segs)
	var oldest, newest int64 = math.MaxInt64, math.MinInt64
	torn, err := ReadDeferred(dir, segs, func(s DeferredSample) error {
		st.Samples++
		oldest, newest = min(oldest, s.T), max(newest, s.T)
		return nil
	})
	if err != nil {
		return st, true, err
	}
	for _, t := range torn {
		st.Torn = append(st.Torn, t.Error())
	}
	if st.Samples > 0 {
		st.Oldest, st.Newest = time.UnixMilli(oldest).UTC(), time.UnixMilli(newest).UTC()
	}
	st.Backfill, err = ReadBackfillState(dir)
	return st, true, err
}
