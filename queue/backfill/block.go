package backfill

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/collector-dev/collector/wal"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
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
// compaction level 1, version 1) and the Thanos section.
type Meta struct {
	tsdb.BlockMeta
	Thanos thanosMeta `json:"thanos"`
}

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
	// The head of the block writer refuses samples older than half its chunk range behind its
	// newest: a range of four windows accepts every sample of this one in any order of series.
	w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), out, 4*(maxt-mint))
	if err != nil {
		return Meta{}, fmt.Errorf("open block writer in %s: %w", out, err)
	}
	defer w.Close()
	app := w.Appender(ctx)
	for _, sr := range bySeries {
		idx := make([]int, len(sr.ts))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(sr.ts[a], sr.ts[b]) })
		var ref storage.SeriesRef
		last := int64(0)
		for k, i := range idx {
			if k > 0 && sr.ts[i] == last {
				continue
			}
			last = sr.ts[i]
			r, err := app.Append(ref, sr.lset, sr.ts[i], sr.vs[i])
			if err != nil {
				_ = app.Rollback()
				return Meta{}, fmt.Errorf("append sample of %s at %d to block: %w", sr.lset, sr.ts[i], err)
			}
			ref = r
		}
	}
	if err := app.Commit(); err != nil {
		return Meta{}, fmt.Errorf("commit block samples: %w", err)
	}
	id, err := w.Flush(ctx)
	if err != nil {
		return Meta{}, fmt.Errorf("write block in %s: %w", out, err)
	}
	if id.Compare(zeroULID) == 0 {
		return Meta{}, nil
	}
	if replicaLabel != "" {
		b := labels.NewBuilder(ext)
		b.Set(replicaLabel, Source+"-"+id.String())
		ext = b.Labels()
	}
	return writeThanosMeta(filepath.Join(out, id.String()), ext)
}

// zeroULID is the ULID of no block.
var zeroULID ulid.ULID

// writeThanosMeta adds the Thanos section to the meta.json of the block in bdir: external labels
// ext, resolution 0, source, and the files with their sizes (index and chunks).
func writeThanosMeta(bdir string, ext labels.Labels) (Meta, error) {
	path := filepath.Join(bdir, "meta.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return Meta{}, fmt.Errorf("read block meta: %w", err)
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return Meta{}, fmt.Errorf("decode block meta %s: %w", path, err)
	}
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
	out, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return Meta{}, fmt.Errorf("encode block meta: %w", err)
	}
	if err := os.WriteFile(path, out, 0o640); err != nil {
		return Meta{}, fmt.Errorf("write block meta %s: %w", path, err)
	}
	return m, nil
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
