package wal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Stats are the WAL's own cumulative counters, persisted in stats.json so that `wal status` can
// report them from the files alone. They are written at truncation, repair and Close; a crash loses
// the increments since the last write (the Prometheus metrics are the live source).
type Stats struct {
	// Skipped counts samples not appended, by reason (duplicate, out_of_order, unknown_series).
	Skipped map[string]int64 `json:"skipped,omitempty"`
	// Evicted counts undelivered samples deleted by a cap, by consumer then reason (max_size, max_age).
	Evicted map[string]map[string]int64 `json:"evicted,omitempty"`
	// Repairs counts repairs made on open; RepairedBytes the bytes they cut.
	Repairs       int64 `json:"repairs,omitempty"`
	RepairedBytes int64 `json:"repaired_bytes,omitempty"`
	// Lost counts samples removed by a repair or a quarantine before a consumer delivered them, by
	// consumer then reason (torn_tail, corruption, segment_gap, not_a_file). A lower bound: what
	// no longer decodes is not counted.
	Lost map[string]map[string]int64 `json:"lost,omitempty"`
	// Quarantined counts entries moved to corrupt/ whole (segments across a wide gap, directories
	// under a segment's name); MissingSegments lists the segments found missing and bridged.
	Quarantined     int64 `json:"quarantined,omitempty"`
	MissingSegments []int `json:"missing_segments,omitempty"`
	// Consumers are the consumers the writer registered when it last opened the WAL (one per
	// endpoint), so that status lists an endpoint before its first commit.
	Consumers []string `json:"consumers,omitempty"`
}

func (s *Stats) addSkipped(reason string, n int64) {
	if n == 0 {
		return
	}
	if s.Skipped == nil {
		s.Skipped = map[string]int64{}
	}
	s.Skipped[reason] += n
}

func (s *Stats) addEvicted(consumer, reason string, n int64) {
	if s.Evicted == nil {
		s.Evicted = map[string]map[string]int64{}
	}
	if s.Evicted[consumer] == nil {
		s.Evicted[consumer] = map[string]int64{}
	}
	s.Evicted[consumer][reason] += n
}

func (s *Stats) addLost(consumer, reason string, n int64) {
	if s.Lost == nil {
		s.Lost = map[string]map[string]int64{}
	}
	if s.Lost[consumer] == nil {
		s.Lost[consumer] = map[string]int64{}
	}
	s.Lost[consumer][reason] += n
}

func readStats(dir string) (Stats, error) {
	var st Stats
	data, err := os.ReadFile(filepath.Join(dir, statsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return Stats{}, fmt.Errorf("decode %s: %w", statsFile, err)
	}
	return st, nil
}

func writeStats(dir string, st Stats) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode %s: %w", statsFile, err)
	}
	return writeFileDurable(filepath.Join(dir, statsFile), append(data, '\n'))
}
