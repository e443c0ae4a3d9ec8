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
