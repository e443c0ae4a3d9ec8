package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/sirupsen/logrus"
)

// Reasons of collector_wal_samples_lost_total: samples removed from the WAL before every consumer
// delivered them, for a reason about the files rather than the samples.
const (
	// lostTornTail: the last record of the newest segment was cut by a crash.
	lostTornTail = "torn_tail"
	// lostCorruption: unreadable bytes before the end; the rest of their segment is cut.
	lostCorruption = "corruption"
	// lostSegmentGap: a segment far from the others (a gap too wide to bridge) was moved out.
	lostSegmentGap = "segment_gap"
	// lostNotAFile: something that is not a regular file sits under a segment's name.
	lostNotAFile = "not_a_file"
)

// maxGapFill is the widest gap in the segment sequence that is bridged with empty segments. A
// missing segment or a few (deleted by hand, lost to a file system error) cost only their own
// data; a segment copied to a far number is moved out instead.
const maxGapFill = 1024

// lostRecord is a Samples record removed from the WAL.
type lostRecord struct {
	pos Position
	n   int64
}

// decodeLost returns the Samples records that still decode in segment k of dir from offset off:
// it reads on from off, and after each unreadable place resumes at the next page boundary (wlog
// starts a record at every page boundary that is not inside a record). What cannot be read is not
// counted, so the total is a lower bound.
func decodeLost(dir string, k int, off int64) []lostRecord {
	size, err := statSegment(dir, k)
	if err != nil {
		return nil
	}
	var (
		dec     record.Decoder
		samples []record.RefSample
		out     []lostRecord
	)
	for off < size {
		sr, err := openSegmentReader(dir, k, off)
		if err != nil {
			return out
		}
		for {
			at := sr.offset()
			rec, err := sr.next()
			if err != nil {
				break
			}
			if t := dec.Type(rec); t != record.Samples && t != record.SamplesV2 {
				continue
			}
			if samples, err = dec.Samples(rec, samples[:0]); err == nil {
				out = append(out, lostRecord{pos: Position{Segment: k, Offset: at}, n: int64(len(samples))})
			}
		}
		off = skipContinuation(sr.f, (sr.offset()/pageSize+1)*pageSize)
		sr.Close()
	}
	return out
}

// skipContinuation returns the offset of the first fragment at or after the page boundary off
// that can start a record: the fragments that end a record begun on an earlier page are skipped.
func skipContinuation(f *os.File, off int64) int64 {
	var hdr [recordHeaderSize]byte
	for off%pageSize+recordHeaderSize <= pageSize {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return off
		}
		if typ := hdr[0] & recTypeMask; typ != recMiddle && typ != recLast {
			return off
		}
		off += recordHeaderSize + int64(binary.BigEndian.Uint16(hdr[1:]))
	}
	return off
}

// countLost counts, per registered consumer, the samples of recs that it had not delivered, under
// reason, and returns the most any consumer lost. A consumer without a usable position had
// delivered nothing.
func (w *WAL) countLost(reason string, recs []lostRecord) int64 {
	var most int64
	for _, c := range w.opts.Consumers {
		var p Position
		if cs, err := ReadPosition(w.dir, c); err == nil {
			p = cs.Position
		}
		var n int64
		for _, r := range recs {
			if !r.pos.Before(p) {
				n += r.n
			}
		}
		if n > 0 {
			w.stats.addLost(c, reason, n)
			w.metrics.samplesLost.WithLabelValues(c, reason).Add(float64(n))
		}
		most = max(most, n)
	}
	return most
}

// checkSegments makes the WAL directory openable before it is read: wlog refuses a sequence of
// segments with a gap, and a directory under a segment's name would otherwise be ignored. Entries
// named like a segment that are not regular files are moved to corrupt/; gaps of up to maxGapFill
// segments are bridged with empty segments; across a wider gap the run of segments with the most
// bytes is kept and the others are moved to corrupt/. Each step is logged, and the samples moved
// out are counted per consumer.
func (w *WAL) checkSegments(after int) error {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return fmt.Errorf("read wal directory %s: %w", w.dir, err)
	}
	for _, e := range entries {
		k, err := strconv.Atoi(e.Name())
		if err != nil || (len(e.Name()) == 8 && e.Type().IsRegular()) {
			continue
		}
		// wlog counts it as a segment; we cannot read it as one.
		if err := w.quarantine(e.Name(), k, lostNotAFile); err != nil {
			return err
		}
	}
	segs, err := listSegments(w.dir)
	if err != nil {
		return fmt.Errorf("list segments in %s: %w", w.dir, err)
	}
	var live []int
	for _, k := range segs {
		if k > after {
			live = append(live, k)
		}
	}
	// Split into runs at the gaps too wide to bridge.
	var runs [][]int
	for i, k := range live {
		if i == 0 || k-live[i-1]-1 > maxGapFill {
			runs = append(runs, nil)
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], k)
	}
	if len(runs) > 1 {
		keep, best := 0, int64(-1)
		for i, run := range runs {
			var b int64
			for _, k := range run {
				if size, err := statSegment(w.dir, k); err == nil {
					b += size
				}
			}
			if b >= best {
				keep, best = i, b
			}
		}
		for i, run := range runs {
			if i == keep {
				continue
			}
			for _, k := range run {
				if err := w.quarantine(fmt.Sprintf("%08d", k), k, lostSegmentGap); err != nil {
					return err
				}
			}
		}
		live = runs[keep]
	}
	for i := 1; i < len(live); i++ {
		for k := live[i-1] + 1; k < live[i]; k++ {
			if err := os.WriteFile(segmentName(w.dir, k), nil, 0o640); err != nil {
				return fmt.Errorf("bridge segment gap in %s: %w", w.dir, err)
			}
			w.stats.MissingSegments = append(w.stats.MissingSegments, k)
			w.metrics.segmentsMissing.Inc()
			w.logger.WithField("segment", k).Error("wal segment missing; bridged with an empty segment so that the wal opens; its samples are lost and cannot be counted")
		}
		if live[i]-live[i-1] > 1 {
			if err := syncDir(w.dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// quarantine moves the entry name (a segment, or something in a segment's place) of the WAL
// directory to corrupt/<name>-<reason>, counting the samples it held that were not delivered.
func (w *WAL) quarantine(name string, k int, reason string) error {
	src := filepath.Join(w.dir, name)
	var recs []lostRecord
	if fi, err := os.Lstat(src); err == nil && fi.Mode().IsRegular() && len(name) == 8 {
		recs = decodeLost(w.dir, k, 0)
	}
	if err := os.MkdirAll(filepath.Join(w.dir, corruptDir), 0o750); err != nil {
		return fmt.Errorf("create %s: %w", corruptDir, err)
	}
	dst := filepath.Join(w.dir, corruptDir, name+"-"+reason)
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = filepath.Join(w.dir, corruptDir, fmt.Sprintf("%s-%s.%d", name, reason, i))
	}
	if err := os.Rename(src, dst); err != nil {
		return fmt.Errorf("move %s out of wal %s: %w", name, w.dir, err)
	}
	if err := syncDir(w.dir); err != nil {
		return err
	}
	var all int64
	for _, r := range recs {
		all += r.n
	}
	lost := w.countLost(reason, recs)
	w.stats.Quarantined++
	w.metrics.quarantined.WithLabelValues(reason).Inc()
	w.logger.WithFields(logrus.Fields{
		"segment": name, "reason": reason, "moved_to": dst, "samples": all, "undelivered_samples": lost,
	}).Error("wal entry cannot be used as a segment; moved under corrupt/, its undelivered samples counted as lost")
	return writeStats(w.dir, w.stats)
}

// repairKind names a repair of segment k after the read error cause: torn_tail for a record cut at
// the end of the newest segment (only empty segments after it), corruption for anything else, ""
// for an error that is not about the bytes (the read itself failed).
func repairKind(dir string, k int, cause error) string {
	if ce := (*CorruptionError)(nil); !errors.Is(cause, errIncomplete) && !errors.As(cause, &ce) {
		return ""
	}
	if !errors.Is(cause, errIncomplete) {
		return lostCorruption
	}
	segs, _ := listSegments(dir)
	for _, j := range segs {
		if size, err := statSegment(dir, j); j > k && (err != nil || size > 0) {
			return lostCorruption
		}
	}
	return lostTornTail
}
