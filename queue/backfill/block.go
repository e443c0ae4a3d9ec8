package backfill

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/collector-dev/collector/wal"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	"github.com/prometheus/prometheus/tsdb/index"
)

// Source is the value of thanos.source in the blocks' meta.json.
const Source = "collector-backfill"

// thanosMeta is the "thanos" section of a block's meta.json as Thanos (v0.42) reads it
// (pkg/block/metadata): written here so that collector does not import Thanos.
type thanosMeta struct {
	Version    int               `json:"version"`
	Labels     map[string]string `json:"labels"`
	Downsample struct {
		Resolution int64 `json:"resolution"`
	} `json:"downsample"`
	Source string       `json:"source"`
	Files  []thanosFile `json:"files,omitempty"`
}

type thanosFile struct {
	RelPath   string `json:"rel_path"`
	SizeBytes int64  `json:"size_bytes,omitempty"`
}

// Meta is a block's meta.json: Prometheus' block meta (ulid, minTime, maxTime, stats,
// compaction level 1, version 1, the fields and JSON names of tsdb.BlockMeta) and the Thanos
// section.
type Meta struct {
	ULID       ulid.ULID      `json:"ulid"`
	MinTime    int64          `json:"minTime"`
	MaxTime    int64          `json:"maxTime"`
	Stats      blockStats     `json:"stats,omitempty"`
	Compaction metaCompaction `json:"compaction"`
	Version    int            `json:"version"`
	Thanos     thanosMeta     `json:"thanos"`
}

type blockStats struct {
	NumSamples      uint64 `json:"numSamples,omitempty"`
	NumFloatSamples uint64 `json:"numFloatSamples,omitempty"`
	NumSeries       uint64 `json:"numSeries,omitempty"`
	NumChunks       uint64 `json:"numChunks,omitempty"`
}

type metaCompaction struct {
	Level   int         `json:"level"`
	Sources []ulid.ULID `json:"sources,omitempty"`
}

// samplesPerChunk is where a series' chunk is cut, as Prometheus' head cuts them.
const samplesPerChunk = 120

// series is one series' samples of a window.
type series struct {
	lset labels.Labels
	ts   []int64
	vs   []float64
}

// buildBlock writes the samples of [mint, maxt) from the segments of the dead-letter directory
// dir as one TSDB block under out, with the Thanos meta.json, and returns its meta. Samples of a
// series are sorted by time; duplicates of a timestamp keep the first value. It returns a zero
// ULID when the window holds no sample.
func buildBlock(ctx context.Context, dir string, segs []int, mint, maxt int64, out string, ext labels.Labels, replicaLabel string) (Meta, error) {
	bySeries := map[uint64]*series{}
	_, err := wal.ReadDeferred(dir, segs, func(s wal.DeferredSample) error {
		if s.T < mint || s.T >= maxt {
			return nil
		}
		h := s.Labels.Hash()
		sr, ok := bySeries[h]
		for ok && !labels.Equal(sr.lset, s.Labels) {
			h++ // a hash collision: probe
			sr, ok = bySeries[h]
		}
		if !ok {
			sr = &series{lset: s.Labels}
			bySeries[h] = sr
		}
		sr.ts = append(sr.ts, s.T)
		sr.vs = append(sr.vs, s.V)
		return nil
	})
	if err != nil {
		return Meta{}, err
	}
	if len(bySeries) == 0 {
		return Meta{}, nil
	}
	all := make([]*series, 0, len(bySeries))
	for _, sr := range bySeries {
		sortSamples(sr)
		all = append(all, sr)
	}
	slices.SortFunc(all, func(a, b *series) int { return labels.Compare(a.lset, b.lset) })
	id := ulid.Make()
	m, err := writeBlock(ctx, out, id, all)
	if err != nil {
		return Meta{}, err
	}
	if replicaLabel != "" {
		b := labels.NewBuilder(ext)
		b.Set(replicaLabel, Source+"-"+id.String())
		ext = b.Labels()
	}
	return writeThanosMeta(filepath.Join(out, id.String()), m, ext)
}

// sortSamples sorts the samples of sr by time and drops the later duplicates of a timestamp.
func sortSamples(sr *series) {
	idx := make([]int, len(sr.ts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(sr.ts[a], sr.ts[b]) })
	ts, vs := make([]int64, 0, len(idx)), make([]float64, 0, len(idx))
	for k, i := range idx {
		if k > 0 && sr.ts[i] == ts[len(ts)-1] {
			continue
		}
		ts, vs = append(ts, sr.ts[i]), append(vs, sr.vs[i])
	}
	sr.ts, sr.vs = ts, vs
}

// writeBlock writes all (sorted by labels, each with samples sorted by time and unique) as the
// block id in out/<id>: its chunks, index (format 2) and Prometheus meta.json, as Prometheus'
// compactor writes a level-1 block. The block is built in a temporary directory and renamed
// into place once complete and synced. It returns the meta.
func writeBlock(ctx context.Context, out string, id ulid.ULID, all []*series) (m Meta, err error) {
	final := filepath.Join(out, id.String())
	tmp := final + ".tmp-for-creation"
	if err := os.RemoveAll(tmp); err != nil {
		return Meta{}, fmt.Errorf("remove block staging %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return Meta{}, fmt.Errorf("create block staging: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	cw, err := chunks.NewWriter(filepath.Join(tmp, "chunks"))
	if err != nil {
		return Meta{}, fmt.Errorf("open block chunks: %w", err)
	}
	defer func() {
		if cw != nil {
			cw.Close()
		}
	}()
	iw, err := index.NewWriter(ctx, filepath.Join(tmp, "index"))
	if err != nil {
		return Meta{}, fmt.Errorf("open block index: %w", err)
	}
	defer func() {
		if iw != nil {
			iw.Close()
		}
	}()

	syms := map[string]struct{}{}
	for _, sr := range all {
		sr.lset.Range(func(l labels.Label) {
			syms[l.Name] = struct{}{}
			syms[l.Value] = struct{}{}
		})
	}
	for _, s := range slices.Sorted(maps.Keys(syms)) {
		if err := iw.AddSymbol(s); err != nil {
			return Meta{}, fmt.Errorf("add block symbol: %w", err)
		}
	}

	m = Meta{ULID: id, MinTime: math.MaxInt64, MaxTime: math.MinInt64, Version: 1,
		Compaction: metaCompaction{Level: 1, Sources: []ulid.ULID{id}}}
	var metas []chunks.Meta
	for i, sr := range all {
		metas = metas[:0]
		for lo := 0; lo < len(sr.ts); lo += samplesPerChunk {
			hi := min(lo+samplesPerChunk, len(sr.ts))
			c := chunkenc.NewXORChunk()
			app, err := c.Appender()
			if err != nil {
				return Meta{}, fmt.Errorf("chunk appender: %w", err)
			}
			for k := lo; k < hi; k++ {
				app.Append(0, sr.ts[k], sr.vs[k])
			}
			metas = append(metas, chunks.Meta{Chunk: c, MinTime: sr.ts[lo], MaxTime: sr.ts[hi-1]})
		}
		if err := cw.WriteChunks(metas...); err != nil {
			return Meta{}, fmt.Errorf("write chunks of %s: %w", sr.lset, err)
		}
		if err := iw.AddSeries(storage.SeriesRef(i), sr.lset, metas...); err != nil {
			return Meta{}, fmt.Errorf("add series %s to block index: %w", sr.lset, err)
		}
		m.MinTime = min(m.MinTime, sr.ts[0])
		m.MaxTime = max(m.MaxTime, sr.ts[len(sr.ts)-1])
		m.Stats.NumSeries++
		m.Stats.NumChunks += uint64(len(metas))
		m.Stats.NumSamples += uint64(len(sr.ts))
	}
	m.Stats.NumFloatSamples = m.Stats.NumSamples
	m.MaxTime++ // exclusive, as in every Prometheus block
	err = cw.Close()
	cw = nil
	if err != nil {
		return Meta{}, fmt.Errorf("close block chunks: %w", err)
	}
	err = iw.Close()
	iw = nil
	if err != nil {
		return Meta{}, fmt.Errorf("close block index: %w", err)
	}
	if err := writeMeta(tmp, m); err != nil {
		return Meta{}, err
	}
	if err := fileutil.Replace(tmp, final); err != nil {
		return Meta{}, fmt.Errorf("rename block into place: %w", err)
	}
	return m, nil
}

// zeroULID is the ULID of no block.
var zeroULID ulid.ULID

// writeThanosMeta adds the Thanos section to m, the meta of the block in bdir, and rewrites its
// meta.json: external labels ext, resolution 0, source, and the files with their sizes (index
// and chunks).
func writeThanosMeta(bdir string, m Meta, ext labels.Labels) (Meta, error) {
	m.Thanos = thanosMeta{Version: 1, Labels: ext.Map(), Source: Source}
	files, err := blockFiles(bdir)
	if err != nil {
		return Meta{}, err
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(bdir, f))
		if err != nil {
			return Meta{}, fmt.Errorf("stat block file: %w", err)
		}
		m.Thanos.Files = append(m.Thanos.Files, thanosFile{RelPath: f, SizeBytes: fi.Size()})
	}
	m.Thanos.Files = append(m.Thanos.Files, thanosFile{RelPath: "meta.json"})
	if err := writeMeta(bdir, m); err != nil {
		return Meta{}, err
	}
	return m, nil
}

// writeMeta writes m as the meta.json of the block in bdir, through a synced temporary file and
// a rename.
func writeMeta(bdir string, m Meta) error {
	out, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return fmt.Errorf("encode block meta: %w", err)
	}
	path := filepath.Join(bdir, "meta.json")
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("write block meta: %w", err)
	}
	_, err = f.Write(out)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fileutil.Replace(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write block meta %s: %w", path, err)
	}
	return nil
}

// blockFiles returns the files of a block to upload before meta.json, relative to bdir: the
// chunk segments (sorted) and the index. The tombstones file is not uploaded (Thanos does not).
func blockFiles(bdir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(bdir, "chunks"))
	if err != nil {
		return nil, fmt.Errorf("list block chunks in %s: %w", bdir, err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			out = append(out, "chunks/"+e.Name())
		}
	}
	slices.Sort(out)
	return append(out, "index"), nil
}
