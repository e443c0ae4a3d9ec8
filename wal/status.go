package wal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/tsdb/record"
)

// Status describes one WAL from its files alone.
type Status struct {
	ClusterID    string    `json:"cluster_id"`
	Dir          string    `json:"dir"`
	Segments     int       `json:"segments"`
	FirstSegment int       `json:"first_segment"`
	LastSegment  int       `json:"last_segment"`
	Checkpoint   int       `json:"checkpoint"` // -1 when there is none
	Bytes        int64     `json:"bytes"`      // segments and checkpoint
	Samples      int64     `json:"samples"`    // retained
	OldestSample time.Time `json:"oldest_sample,omitzero"`
	NewestSample time.Time `json:"newest_sample,omitzero"`
	// Consumers are the consumers with a position file.
	Consumers []ConsumerStatus `json:"consumers"`
	// Stats are the WAL's persisted counters (skipped appends, evictions, repairs).
	Stats Stats `json:"stats"`
	// Corruption lists unreadable places met while scanning; counts stop at each.
	Corruption []string `json:"corruption,omitempty"`
	// Warnings lists what the writer repairs or moved out at open: gaps in the segment sequence,
	// entries in a segment's place that are not segments, segments found missing.
	Warnings []string `json:"warnings,omitempty"`
}

// ConsumerStatus is one consumer's view: what it has delivered and what is still ahead of it.
type ConsumerStatus struct {
	Name          string   `json:"name"`
	Position      Position `json:"position"`
	PositionError string   `json:"position_error,omitempty"`
	// NoPosition is true for a registered consumer that has not committed yet: it starts at the
	// oldest retained segment.
	NoPosition bool `json:"no_position,omitempty"`
	// PositionAdjusted says why the consumer does not start at Position (past_end, mid_record)
	// and Start where it starts instead; UndeliveredSamples counts from Start.
	PositionAdjusted string    `json:"position_adjusted,omitempty"`
	Start            *Position `json:"start,omitempty"`
	Updated          time.Time `json:"updated,omitzero"`
	// UndeliveredSamples and UndeliveredBytes are what lies after the position. Samples are
	// counted exactly by decoding every record after it; bytes are segment bytes.
	UndeliveredSamples int64     `json:"undelivered_samples"`
	UndeliveredBytes   int64     `json:"undelivered_bytes"`
	Exact              bool      `json:"exact"`
	OldestUndelivered  time.Time `json:"oldest_undelivered,omitzero"`
	// Delivered and Dropped are the consumer's cumulative counters as of its last commit;
	// Evicted is what the caps dropped before this consumer delivered it.
	Delivered int64            `json:"delivered_samples"`
	Dropped   map[string]int64 `json:"dropped,omitempty"`
	Evicted   map[string]int64 `json:"evicted,omitempty"`
	// Lost is what repairs and quarantines removed before this consumer delivered it, by reason.
	Lost map[string]int64 `json:"lost,omitempty"`
	// Deferred counts the samples refused as too old and kept for backfill (cumulative, as of
	// the last commit); DeadLetter is the dead-letter log and its backfill progress, nil when the
	// consumer never deferred a sample.
	Deferred   int64           `json:"deferred_samples"`
	DeadLetter *DeferredStatus `json:"dead_letter,omitempty"`
}

// ListClusters returns the cluster IDs that have a WAL below baseDir.
func ListClusters(baseDir string) ([]string, error) {
	entries, err := os.ReadDir(baseDir)
	if err != nil {
		return nil, fmt.Errorf("read wal directory %s: %w", baseDir, err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && isWAL(filepath.Join(baseDir, e.Name())) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

func isWAL(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, lockFile)); err == nil {
		return true
	}
	segs, err := listSegments(dir)
	return err == nil && len(segs) > 0
}

type recordInfo struct {
	seg        int
	off, end   int64
	n          int64
	minT, maxT int64
}

// ReadStatus reports on the WAL in walDir without taking its lock: it works while a writer runs
// (what it reports is a snapshot) and on a copied directory.
func ReadStatus(walDir string) (Status, error) {
	st := Status{ClusterID: filepath.Base(walDir), Dir: walDir, Checkpoint: -1}
	if fi, err := os.Stat(walDir); err != nil {
		return st, fmt.Errorf("wal %s: %w", walDir, err)
	} else if !fi.IsDir() || !isWAL(walDir) {
		return st, fmt.Errorf("%s: %w", walDir, ErrNotWAL)
	}
	var err error
	if st.Stats, err = readStats(walDir); err != nil {
		st.Corruption = append(st.Corruption, err.Error())
	}
	ckDir, ckIdx, err := lastCheckpoint(walDir)
	if err != nil {
		return st, fmt.Errorf("find checkpoint in %s: %w", walDir, err)
	}
	st.Checkpoint = ckIdx
	if ckDir != "" {
		st.Bytes += dirSize(ckDir)
	}
	segs, err := listSegments(walDir)
	if err != nil {
		return st, fmt.Errorf("list segments in %s: %w", walDir, err)
	}
	st.Segments = len(segs)
	st.Warnings = segmentWarnings(walDir, segs, ckIdx, st.Stats)
	st.FirstSegment, st.LastSegment = -1, -1
	if len(segs) > 0 {
		st.FirstSegment, st.LastSegment = segs[0], segs[len(segs)-1]
	}
	segBytes := map[int]int64{}
	var recs []recordInfo
	var dec record.Decoder
	var samples []record.RefSample
	oldest, newest := int64(math.MaxInt64), int64(math.MinInt64)
	for _, k := range segs {
		sr, err := openSegmentReader(walDir, k, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue // truncated while we looked
		}
		if err != nil {
			return st, fmt.Errorf("open segment %d in %s: %w", k, walDir, err)
		}
		for {
			off := sr.offset()
			rec, err := sr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, errIncomplete) {
					st.Corruption = append(st.Corruption, err.Error())
				}
				break
			}
			if t := dec.Type(rec); t != record.Samples && t != record.SamplesV2 {
				continue
			}
			samples, err = dec.Samples(rec, samples[:0])
			if err != nil {
				st.Corruption = append(st.Corruption, (&CorruptionError{Dir: walDir, Segment: k, Offset: off, Err: err}).Error())
				continue
			}
			ri := recordInfo{seg: k, off: off, end: sr.offset(), n: int64(len(samples)), minT: math.MaxInt64, maxT: math.MinInt64}
			for _, s := range samples {
				ri.minT = min(ri.minT, s.T)
				ri.maxT = max(ri.maxT, s.T)
			}
			oldest, newest = min(oldest, ri.minT), max(newest, ri.maxT)
			st.Samples += ri.n
			recs = append(recs, ri)
		}
		sr.Close()
		if fi, err := os.Stat(segmentName(walDir, k)); err == nil {
			segBytes[k] = fi.Size()
			st.Bytes += fi.Size()
		}
	}
	if st.Samples > 0 {
		st.OldestSample, st.NewestSample = time.UnixMilli(oldest).UTC(), time.UnixMilli(newest).UTC()
	}

	names, err := Consumers(walDir)
	if err != nil {
		return st, fmt.Errorf("list consumers in %s: %w", walDir, err)
	}
	// Registered consumers without a position file yet have everything ahead of them.
	for _, c := range st.Stats.Consumers {
		if !slices.Contains(names, c) {
			names = append(names, c)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		cs := ConsumerStatus{Name: name, Exact: true, Evicted: st.Stats.Evicted[name], Lost: st.Stats.Lost[name]}
		state, err := ReadPosition(walDir, name)
		if errors.Is(err, ErrNoPosition) {
			cs.NoPosition = true
		} else if err != nil {
			// The consumer restarts from the oldest retained segment.
			cs.PositionError = err.Error()
		} else {
			cs.Position, cs.Updated = state.Position, state.Updated
			cs.Delivered, cs.Dropped, cs.Deferred = state.Delivered, state.Dropped, state.Deferred
		}
		if dl, ok, err := ReadDeferredStatus(walDir, name); err != nil {
			st.Warnings = append(st.Warnings, fmt.Sprintf("dead-letter log of %s: %v", name, err))
		} else if ok {
			cs.DeadLetter = &dl
		}
		// Where the consumer's reader starts: the same function decides it.
		pos := cs.Position
		if len(segs) > 0 {
			start, reason, err := resolvePosition(segs, cs.Position, boundaryScan(walDir))
			if err != nil {
				return st, err
			}
			pos = start
			if reason != "" && reason != positionEvicted {
				cs.Start, cs.PositionAdjusted = &start, reason
			}
		}
		oldestU := int64(math.MaxInt64)
		for _, ri := range recs {
			if ri.off < pos.Offset && ri.seg == pos.Segment || ri.seg < pos.Segment {
				continue
			}
			cs.UndeliveredSamples += ri.n
			oldestU = min(oldestU, ri.minT)
		}
		for k, b := range segBytes {
			switch {
			case k > pos.Segment:
				cs.UndeliveredBytes += b
			case k == pos.Segment:
				cs.UndeliveredBytes += max(0, b-pos.Offset)
			}
		}
		if cs.UndeliveredSamples > 0 {
			cs.OldestUndelivered = time.UnixMilli(oldestU).UTC()
		}
		st.Consumers = append(st.Consumers, cs)
	}
	return st, nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// segmentWarnings says what the writer will find wrong with the segments at its next open (and
// what it found at earlier ones, from the stats).
func segmentWarnings(walDir string, segs []int, ckIdx int, stats Stats) []string {
	var out []string
	if entries, err := os.ReadDir(walDir); err == nil {
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err != nil || (len(e.Name()) == 8 && e.Type().IsRegular()) {
				continue
			}
			out = append(out, fmt.Sprintf("%s is not a regular file in a segment's place: the writer moves it to %s/ at its next start (not_a_file)", e.Name(), corruptDir))
		}
	}
	prev := -1
	for _, k := range segs {
		if k <= ckIdx {
			continue
		}
		switch gap := k - prev - 1; {
		case prev < 0 || gap == 0:
		case gap <= maxGapFill:
			out = append(out, fmt.Sprintf("segments %d to %d are missing: their samples are lost; the writer bridges the gap at its next start", prev+1, k-1))
		default:
			out = append(out, fmt.Sprintf("gap of %d segments between segments %d and %d: the writer keeps the side with more bytes and moves the other to %s/ at its next start (segment_gap)", gap, prev, k, corruptDir))
		}
		prev = k
	}
	if len(stats.MissingSegments) > 0 {
		out = append(out, fmt.Sprintf("segments %v were found missing and bridged with empty segments; their samples are lost and not counted", stats.MissingSegments))
	}
	if stats.Quarantined > 0 {
		out = append(out, fmt.Sprintf("%d entries were moved whole to %s/; the samples lost are counted per endpoint", stats.Quarantined, corruptDir))
	}
	return out
}
