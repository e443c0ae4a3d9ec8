package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/util/compression"
)

// The wlog page and record framing (tsdb/docs/format/wal.md). Writing goes through tsdb/wlog; reading
// is ours, because we must start at an arbitrary record boundary, report exact offsets, and tell a
// record still being written from a torn one.
const (
	pageSize         = 32 * 1024
	recordHeaderSize = 7

	recPageTerm = 0 // rest of the page is zero padding
	recFull     = 1
	recFirst    = 2
	recMiddle   = 3
	recLast     = 4

	snappyMask  = 1 << 3
	zstdMask    = 1 << 4
	recTypeMask = snappyMask - 1

	readChunk = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errIncomplete means the available bytes end inside a record: either the writer has not finished
// it yet (a live segment) or it was torn by a crash (a sealed segment).
var errIncomplete = errors.New("incomplete record")

// segmentName returns the file name of segment i, as tsdb/wlog names it.
func segmentName(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("%08d", i))
}

// listSegments returns the indexes of the segments in dir, ascending. Non-segment entries are
// ignored.
func listSegments(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []int
	for _, e := range entries {
		if !e.Type().IsRegular() || len(e.Name()) != 8 {
			continue
		}
		k, err := strconv.Atoi(e.Name())
		if err != nil || k < 0 {
			continue
		}
		segs = append(segs, k)
	}
	sort.Ints(segs)
	return segs, nil
}

// checkpointPrefix names checkpoint directories: checkpoint.%08d holds the series of every segment
// up to and including that index.
const checkpointPrefix = "checkpoint."

// lastCheckpoint returns the directory and index of the newest complete checkpoint in dir, or
// ("", -1) when there is none.
func lastCheckpoint(dir string) (string, int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", -1, err
	}
	best, idx := "", -1
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, checkpointPrefix) || strings.HasSuffix(name, ".tmp") {
			continue
		}
		k, err := strconv.Atoi(strings.TrimPrefix(name, checkpointPrefix))
		if err != nil || k < 0 {
			continue
		}
		if k > idx {
			best, idx = filepath.Join(dir, name), k
		}
	}
	return best, idx, nil
}

// segmentReader reads the records of one segment file, starting at a record boundary. It never
// blocks: when the bytes on disk end, it says whether they ended between records (io.EOF) or
// inside one (errIncomplete), and can be called again after the writer appended more.
//
// A segmentReader is not safe for concurrent use.
type segmentReader struct {
	f     *os.File
	dir   string
	index int

	off    int64  // offset of the next record to read
	buf    []byte // bytes of the file from bufOff
	bufOff int64
	frag   []byte // fragments of the record being assembled
	dec    compression.DecodeBuffer
}

func openSegmentReader(dir string, index int, off int64) (*segmentReader, error) {
	return openSegmentReaderAfter(dir, index, off, nil)
}

// openSegmentReaderAfter opens a segment reader that takes over the buffers of prev, a reader of
// an earlier segment that is no longer used (nil: new buffers). A reader that goes from segment
// to segment then allocates its buffers once, not once per segment.
func openSegmentReaderAfter(dir string, index int, off int64, prev *segmentReader) (*segmentReader, error) {
	f, err := os.Open(segmentName(dir, index))
	if err != nil {
		return nil, err
	}
	s := &segmentReader{f: f, dir: dir, index: index, off: off, bufOff: off}
	if prev != nil {
		s.buf, s.frag, s.dec = prev.buf[:0], prev.frag[:0], prev.dec
		prev.buf, prev.frag, prev.dec = nil, nil, nil
	} else {
		s.buf, s.dec = make([]byte, 0, readChunk), compression.NewSyncDecodeBuffer()
	}
	return s, nil
}

func (s *segmentReader) Close() error { return s.f.Close() }

// dropBuffer discards what is buffered past the next record, so that the next read sees the file
// as it is now (a writer may have cut a torn tail since it was read).
func (s *segmentReader) dropBuffer() { s.bufOff, s.buf = s.off, s.buf[:0] }

// offset returns the offset of the next record: the end of the last record returned.
func (s *segmentReader) offset() int64 { return s.off }

// avail makes the n bytes at file offset at available in s.buf, reading more of the file if needed.
// It returns false when the file is shorter.
func (s *segmentReader) avail(at int64, n int) (bool, error) {
	end := at + int64(n)
	if end <= s.bufOff+int64(len(s.buf)) {
		return true, nil
	}
	// Drop what precedes at, then read to fill the buffer.
	if at > s.bufOff {
		drop := int(at - s.bufOff)
		if drop > len(s.buf) {
			drop = len(s.buf)
		}
		s.buf = s.buf[:copy(s.buf, s.buf[drop:])]
		s.bufOff += int64(drop)
	}
	if need := int(end - s.bufOff); need > cap(s.buf) {
		nb := make([]byte, len(s.buf), need+readChunk)
		copy(nb, s.buf)
		s.buf = nb
	}
	for end > s.bufOff+int64(len(s.buf)) {
		k, err := s.f.ReadAt(s.buf[len(s.buf):cap(s.buf)], s.bufOff+int64(len(s.buf)))
		s.buf = s.buf[:len(s.buf)+k]
		if err == io.EOF || (err == nil && k == 0) {
			return end <= s.bufOff+int64(len(s.buf)), nil
		}
		if err != nil {
			return false, fmt.Errorf("read segment %d in %s: %w", s.index, s.dir, err)
		}
	}
	return true, nil
}

func (s *segmentReader) bytesAt(at int64, n int) []byte {
	i := int(at - s.bufOff)
	return s.buf[i : i+n]
}

func (s *segmentReader) corrupt(at int64, format string, args ...any) error {
	return &CorruptionError{Dir: s.dir, Segment: s.index, Offset: at, Err: fmt.Errorf(format, args...)}
}

// next returns the next record, decompressed. The slice is valid until the next call. At the end of
// the available bytes it returns io.EOF (between records) or errIncomplete (inside a record); the
// reader stays at the start of that record. A *CorruptionError is final for this reader.
func (s *segmentReader) next() ([]byte, error) {
	start := s.off
	at := start
	s.frag = s.frag[:0]
	nfrag := 0
	for {
		ok, err := s.avail(at, 1)
		if err != nil {
			return nil, err
		}
		if !ok {
			if at == start {
				return nil, io.EOF
			}
			return nil, errIncomplete
		}
		hdr0 := s.bytesAt(at, 1)[0]
		typ := hdr0 & recTypeMask
		if typ == recPageTerm {
			if hdr0 != 0 {
				return nil, s.corrupt(start, "invalid record header byte %#x at offset %d", hdr0, at)
			}
			// Zero padding up to the next page boundary.
			rest := int(pageSize - at%pageSize)
			ok, err := s.avail(at, rest)
			if err != nil {
				return nil, err
			}
			if !ok {
				// Padding is written with its page; a short tail of zeros is a torn page.
				tail := s.buf[at-s.bufOff:]
				for _, c := range tail {
					if c != 0 {
						return nil, s.corrupt(start, "non-zero byte in page padding at offset %d", at)
					}
				}
				if at == start {
					return nil, io.EOF
				}
				return nil, errIncomplete
			}
			for _, c := range s.bytesAt(at, rest) {
				if c != 0 {
					return nil, s.corrupt(start, "non-zero byte in page padding at offset %d", at)
				}
			}
			at += int64(rest)
			if nfrag == 0 {
				// Padding between records belongs to no record: skip it for good.
				start = at
				s.off = at
			}
			continue
		}
		ok, err = s.avail(at, recordHeaderSize)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errIncomplete
		}
		hdr := s.bytesAt(at, recordHeaderSize)
		length := int(binary.BigEndian.Uint16(hdr[1:]))
		crc := binary.BigEndian.Uint32(hdr[3:])
		if length > pageSize-recordHeaderSize {
			return nil, s.corrupt(start, "record fragment length %d at offset %d exceeds a page", length, at)
		}
		if typ > recLast {
			return nil, s.corrupt(start, "unknown record fragment type %d at offset %d", typ, at)
		}
		if (nfrag == 0) != (typ == recFull || typ == recFirst) {
			return nil, s.corrupt(start, "unexpected record fragment type %d at offset %d", typ, at)
		}
		ok, err = s.avail(at, recordHeaderSize+length)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errIncomplete
		}
		data := s.bytesAt(at+recordHeaderSize, length)
		if c := crc32.Checksum(data, castagnoli); c != crc {
			return nil, s.corrupt(start, "checksum mismatch at offset %d: %08x, expected %08x", at, c, crc)
		}
		at += int64(recordHeaderSize + length)
		nfrag++
		var rec []byte
		switch typ {
		case recFull:
			rec = data
		case recFirst, recMiddle:
			s.frag = appendFragment(s.frag, data)
			continue
		case recLast:
			s.frag = appendFragment(s.frag, data)
			rec = s.frag
		}
		compr := compression.None
		switch {
		case hdr0&snappyMask != 0:
			compr = compression.Snappy
		case hdr0&zstdMask != 0:
			compr = compression.Zstd
		}
		out, err := compression.Decode(compr, rec, s.dec)
		if err != nil {
			return nil, s.corrupt(start, "decompress %s record: %v", compr, err)
		}
		s.off = at
		return out, nil
	}
}

// appendFragment appends a record fragment to frag, doubling its capacity when it is full. A
// record of several MiB arrives in pages of 32 KiB, and append's growth of large slices (1.25x)
// would allocate about five times its size on the way.
func appendFragment(frag, data []byte) []byte {
	if need := len(frag) + len(data); need > cap(frag) {
		grown := make([]byte, len(frag), max(2*cap(frag), need, pageSize))
		copy(grown, frag)
		frag = grown
	}
	return append(frag, data...)
}
