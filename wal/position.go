package wal

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Position is a place in a WAL: the start of the next record to read. Every record before it (in
// its segment and in every earlier segment) has been delivered or deliberately dropped.
type Position struct {
	Segment int   `json:"segment"`
	Offset  int64 `json:"offset"`
}

// Before reports whether p comes before q.
func (p Position) Before(q Position) bool {
	return p.Segment < q.Segment || (p.Segment == q.Segment && p.Offset < q.Offset)
}

func (p Position) String() string { return fmt.Sprintf("%d:%d", p.Segment, p.Offset) }

// ConsumerState is what a consumer makes durable with CommitPosition: its position, and its
// cumulative counters so that `wal status` can report them from the files alone.
type ConsumerState struct {
	Position
	// Delivered counts samples acknowledged by the receiver, cumulative.
	Delivered int64 `json:"delivered_samples"`
	// Dropped counts samples deliberately dropped, by reason, cumulative.
	Dropped map[string]int64 `json:"dropped,omitempty"`
	// Deferred counts samples the receiver refused as too old for its head, cumulative: they
	// were stored in the consumer's dead-letter log (DeferredDir) for backfill, not dropped.
	Deferred int64 `json:"deferred_samples,omitempty"`
	// Updated is when the state was committed.
	Updated time.Time `json:"updated"`
}

type positionFile struct {
	Version int           `json:"version"`
	State   ConsumerState `json:"state"`
	CRC     uint32        `json:"crc32c"`
}

const positionVersion = 1

func positionPath(walDir, consumer string) string {
	return filepath.Join(walDir, positionDir, consumer+".json")
}

// CommitPosition makes st the durable state of consumer in the WAL directory walDir: written to a
// temporary file, fsynced, renamed over the old one, and the directory fsynced. It needs no lock and
// works while a writer runs.
func CommitPosition(walDir, consumer string, st ConsumerState) error {
	if err := ValidateID(consumer); err != nil {
		return fmt.Errorf("consumer %q: %w", consumer, err)
	}
	body, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode position of %s: %w", consumer, err)
	}
	data, err := json.Marshal(positionFile{Version: positionVersion, State: st, CRC: crc32.Checksum(body, castagnoli)})
	if err != nil {
		return fmt.Errorf("encode position of %s: %w", consumer, err)
	}
	if err := os.MkdirAll(filepath.Join(walDir, positionDir), 0o750); err != nil {
		return fmt.Errorf("create position directory: %w", err)
	}
	return writeFileDurable(positionPath(walDir, consumer), append(data, '\n'))
}

// ReadPosition returns the durable state of consumer. It returns ErrNoPosition when there is no
// file, and a *PositionError when the file is torn, garbled or fails its checksum; in both cases
// the consumer starts from the oldest retained segment (data may be sent twice, never skipped).
func ReadPosition(walDir, consumer string) (ConsumerState, error) {
	if err := ValidateID(consumer); err != nil {
		return ConsumerState{}, fmt.Errorf("consumer %q: %w", consumer, err)
	}
	path := positionPath(walDir, consumer)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ConsumerState{}, fmt.Errorf("%w for consumer %s in %s", ErrNoPosition, consumer, walDir)
	}
	if err != nil {
		return ConsumerState{}, &PositionError{Path: path, Err: err}
	}
	var pf positionFile
	if err := json.Unmarshal(data, &pf); err != nil {
		return ConsumerState{}, &PositionError{Path: path, Err: fmt.Errorf("decode: %w", err)}
	}
	if pf.Version != positionVersion {
		return ConsumerState{}, &PositionError{Path: path, Err: fmt.Errorf("unsupported version %d", pf.Version)}
	}
	body, err := json.Marshal(pf.State)
	if err != nil {
		return ConsumerState{}, &PositionError{Path: path, Err: err}
	}
	if c := crc32.Checksum(body, castagnoli); c != pf.CRC {
		return ConsumerState{}, &PositionError{Path: path, Err: fmt.Errorf("checksum %08x, expected %08x", c, pf.CRC)}
	}
	if pf.State.Segment < 0 || pf.State.Offset < 0 {
		return ConsumerState{}, &PositionError{Path: path, Err: fmt.Errorf("negative position %v", pf.State.Position)}
	}
	return pf.State, nil
}

// RemovePosition deletes the position file of consumer, durably (a finished replay releasing its
// lease). A missing file is not an error.
func RemovePosition(walDir, consumer string) error {
	if err := ValidateID(consumer); err != nil {
		return fmt.Errorf("consumer %q: %w", consumer, err)
	}
	if err := os.Remove(positionPath(walDir, consumer)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove position of %s: %w", consumer, err)
	}
	return syncDir(filepath.Join(walDir, positionDir))
}

// Consumers lists the consumers that have a position file in walDir.
func Consumers(walDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(walDir, positionDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if e.Type().IsRegular() && filepath.Ext(name) == ".json" {
			out = append(out, name[:len(name)-len(".json")])
		}
	}
	return out, nil
}

// writeFileDurable replaces path with data: tmp → fsync → rename → fsync dir.
func writeFileDurable(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// Reasons why a reader does not start at the position it was given (resolvePosition).
const (
	// positionEvicted: the position is before the oldest retained segment (a cap evicted what
	// was after it; counted as evicted).
	positionEvicted = "before_first"
	// positionPastEnd: the position is past the newest segment (the reader starts at the oldest
	// retained segment) or past the data of its segment (it starts at the end of that data).
	positionPastEnd = "past_end"
	// positionMidRecord: the position is not at a record boundary; the reader starts at the
	// boundary before it, sending that record again.
	positionMidRecord = "mid_record"
)

// positionAdjustments says, per reason, what a reader does about the position.
var positionAdjustments = map[string]string{
	positionEvicted:   "position is before the oldest retained segment (evicted by a cap or truncated); reading from the oldest",
	positionPastEnd:   "position is past the end of the wal or of its segment; reading from the oldest retained segment, or from the end of the position's segment",
	positionMidRecord: "position is not at a record boundary of the segment; reading from the record boundary before it (that record is sent again)",
}

// resolvePosition decides where a reader asked to start at from starts, given the segments on
// disk (at least one), and says why when that is not from. scan(k, limit) reads segment k and
// returns its last record boundary at or before limit (the end of its readable data when limit <
// 0); the reader also loads Series records with it. Readers and `wal status` both start here, so
// what status reports as undelivered is what a consumer sends. Data may be read twice, never
// skipped.
func resolvePosition(segs []int, from Position, scan func(k int, limit int64) (int64, error)) (Position, string, error) {
	first, last := segs[0], segs[len(segs)-1]
	reason := ""
	switch {
	case from.Segment < first:
		if from != (Position{}) {
			reason = positionEvicted
		}
		from = Position{Segment: first}
	case from.Segment > last:
		reason = positionPastEnd
		from = Position{Segment: first}
	}
	for _, k := range segs {
		if k >= from.Segment {
			break
		}
		if _, err := scan(k, -1); err != nil {
			return from, "", err
		}
	}
	if from.Offset > 0 {
		off, err := scan(from.Segment, from.Offset)
		if err != nil {
			return from, "", err
		}
		if off != from.Offset {
			reason = positionMidRecord
			if end, err := scan(from.Segment, -1); err == nil && from.Offset > end {
				reason = positionPastEnd
			}
			from.Offset = off
		}
	}
	return from, reason, nil
}

// boundaryScan is the scan of resolvePosition for callers that need no series.
func boundaryScan(dir string) func(k int, limit int64) (int64, error) {
	return func(k int, limit int64) (int64, error) {
		sr, err := openSegmentReader(dir, k, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("open segment %d in %s: %w", k, dir, err)
		}
		defer sr.Close()
		for {
			start := sr.offset()
			if limit >= 0 && start >= limit {
				return start, nil
			}
			if _, err := sr.next(); err != nil || (limit >= 0 && sr.offset() > limit) {
				return start, nil
			}
		}
	}
}

// checkPositions counts, at open, the registered consumers whose position cannot be used as it
// is: unreadable files (the consumer restarts at the oldest segment), positions past the end or
// inside a record (resolvePosition). The queue and the reader log them when they start there.
func (w *WAL) checkPositions() {
	segs, err := listSegments(w.dir)
	if err != nil || len(segs) == 0 {
		return
	}
	for _, c := range w.opts.Consumers {
		cs, err := ReadPosition(w.dir, c)
		var perr *PositionError
		switch {
		case errors.As(err, &perr):
			w.metrics.positionErrors.WithLabelValues(c, "unreadable").Inc()
			continue
		case err != nil:
			continue
		}
		// The scan of segments before the position is only needed to load series.
		scan := boundaryScan(w.dir)
		_, reason, err := resolvePosition(segs, cs.Position, func(k int, limit int64) (int64, error) {
			if k != cs.Position.Segment {
				return 0, nil
			}
			return scan(k, limit)
		})
		if err == nil && (reason == positionPastEnd || reason == positionMidRecord) {
			w.metrics.positionErrors.WithLabelValues(c, reason).Inc()
		}
	}
}
