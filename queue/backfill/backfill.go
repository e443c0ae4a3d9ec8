package backfill

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/collector-dev/collector/wal"
	kitlog "github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/sirupsen/logrus"
	"github.com/thanos-io/objstore"
)

var (
	// ErrInvalidOptions is returned by New for a missing bucket or an invalid label.
	ErrInvalidOptions = errors.New("invalid backfill options")
	// ErrBucketConfig is returned (wrapped) by NewBucket for an objstore configuration it cannot
	// use.
	ErrBucketConfig = errors.New("invalid objstore configuration")
)

// Bucket is the object storage the blocks are uploaded to.
type Bucket = objstore.Bucket

// stagingDir is where a pass builds its blocks, inside the dead-letter directory.
const stagingDir = "blocks"

// Options configures a Backfiller. Start from DefaultOptions.
type Options struct {
	// ExternalLabels are the Thanos external labels of every block (meta.json thanos.labels):
	// the receiver's, such as its tenant label, so that the blocks answer the same queries.
	ExternalLabels labels.Labels
	// ReplicaLabel, when not empty, is added to ExternalLabels with the value
	// "collector-backfill-<block ULID>": each block is then its own compaction group (the
	// compactor never sees it overlap the receiver's blocks or another backfill's) and Thanos
	// query merges it with the receiver's series when this label is one of its
	// --query.replica-label. Default "replica".
	ReplicaLabel string
	// BlockDuration is the time range of one block, aligned to multiples of it (Prometheus' and
	// Thanos' level-1 blocks are 2h). Default 2h.
	BlockDuration time.Duration
	// Now is the clock (for the state file). Default time.Now.
	Now func() time.Time
}

// DefaultOptions returns the defaults documented on Options.
func DefaultOptions() Options {
	return Options{ReplicaLabel: "replica", BlockDuration: 2 * time.Hour, Now: time.Now}
}

// Backfiller writes the samples of dead-letter logs (wal.DeferredLog) as TSDB blocks and uploads
// them to a bucket. Passes over one dead-letter directory exclude each other (wal.LockBackfill);
// a Backfiller may serve several directories.
type Backfiller struct {
	logger  logrus.FieldLogger
	metrics *metrics
	bkt     objstore.Bucket
	opts    Options
}

type metrics struct {
	samples    prometheus.Counter
	blocks     prometheus.Counter
	errors     *prometheus.CounterVec
	pending    prometheus.Gauge
	lastPassOK prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		samples: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_backfill_samples_total",
			Help: "Deferred samples written into blocks that were uploaded to the bucket and removed from the dead-letter log.",
		}),
		blocks: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_backfill_blocks_uploaded_total",
			Help: "Blocks uploaded to the bucket by backfill.",
		}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_backfill_errors_total",
			Help: "Backfill passes that stopped on an error, by reason (read, build, upload, state, remove); the deferred samples stay and the next pass tries again.",
		}, []string{"reason"}),
		pending: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_backfill_pending_samples",
			Help: "Deferred samples in the dead-letter log waiting for backfill, as of the last pass.",
		}),
		lastPassOK: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_backfill_last_success_timestamp_seconds",
			Help: "When the last backfill pass finished without error.",
		}),
	}
}

// RegisterMetrics registers the backfill metrics at zero without a Backfiller: an agent that does
// not backfill on its own exports them all the same, so that alerts comparing deferred with
// backfilled samples see its zero.
func RegisterMetrics(reg prometheus.Registerer) { newMetrics(reg) }

// New returns a Backfiller uploading to bkt.
func New(logger logrus.FieldLogger, reg prometheus.Registerer, bkt objstore.Bucket, opts Options) (*Backfiller, error) {
	if bkt == nil {
		return nil, fmt.Errorf("%w: a bucket is required", ErrInvalidOptions)
	}
	if opts.BlockDuration <= 0 {
		opts.BlockDuration = 2 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReplicaLabel != "" && opts.ExternalLabels.Has(opts.ReplicaLabel) {
		return nil, fmt.Errorf("%w: external labels set the replica label %q", ErrInvalidOptions, opts.ReplicaLabel)
	}
	if logger == nil {
		logger = logrus.New()
	}
	return &Backfiller{logger: logger.WithField("component", "backfill"), metrics: newMetrics(reg), bkt: bkt, opts: opts}, nil
}

// Window is one block's time range [MinTime, MaxTime) (ms) and the samples in it.
type Window struct {
	MinTime, MaxTime int64
	Samples          int64
}

// Plan is what a pass over a dead-letter directory would do.
type Plan struct {
	Dir string
	// Segments are the sealed dead-letter segments the pass takes.
	Segments []int
	// Samples counts their samples (duplicates from re-sends included); MinTime and MaxTime are
	// the oldest and newest (ms).
	Samples          int64
	MinTime, MaxTime int64
	Windows          []Window
	// State is the durable progress; a pass in progress (State.Segments not empty) is resumed
	// before anything new is planned.
	State wal.BackfillState
	// Torn reports unreadable tails of segments (a crash during a store that was retried).
	Torn []error
}

// Inspect returns what a pass over the dead-letter directory dir would do, reading the files
// only.
func Inspect(dir string, window time.Duration) (Plan, error) {
	if window <= 0 {
		window = 2 * time.Hour
	}
	p := Plan{Dir: dir, MinTime: math.MaxInt64, MaxTime: math.MinInt64}
	st, err := wal.ReadBackfillState(dir)
	if err != nil {
		return p, err
	}
	p.State = st
	segs, err := wal.DeferredSegments(dir)
	if err != nil {
		return p, err
	}
	p.Segments = segs
	w := window.Milliseconds()
	counts := map[int64]int64{}
	p.Torn, err = wal.ReadDeferred(dir, segs, func(s wal.DeferredSample) error {
		p.Samples++
		p.MinTime, p.MaxTime = min(p.MinTime, s.T), max(p.MaxTime, s.T)
		counts[floorDiv(s.T, w)*w]++
		return nil
	})
	if err != nil {
		return p, err
	}
	for _, start := range slices.Sorted(mapsKeys(counts)) {
		p.Windows = append(p.Windows, Window{MinTime: start, MaxTime: start + w, Samples: counts[start]})
	}
	return p, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func mapsKeys(m map[int64]int64) func(func(int64) bool) {
	return func(yield func(int64) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Result is what a pass did.
type Result struct {
	// Blocks were uploaded by this pass; Skipped were found uploaded by an interrupted one.
	Blocks, Skipped int
	// Samples were backfilled (unique per series and timestamp) and removed from the
	// dead-letter log.
	Samples int64
	// Segments were removed from the dead-letter log.
	Segments int
}

// Progress is told the samples done and the total of a pass after each block.
type Progress func(done, total int64)

// Run makes one pass over the dead-letter directory dir: it resumes a pass in progress (blocks
// already uploaded are skipped) or plans the sealed segments into blocks of BlockDuration, builds
// them under dir/blocks, uploads each (index and chunks, meta.json last), records each upload in
// backfill.json, and removes the segments only after every block of the pass is uploaded. On an
// error the deferred samples stay and a later pass resumes.
func (b *Backfiller) Run(ctx context.Context, dir string, progress Progress) (Result, error) {
	res, err := b.run(ctx, dir, progress)
	if err != nil {
		if st, rerr := wal.ReadBackfillState(dir); rerr == nil {
			st.LastError = err.Error()
			_ = wal.CommitBackfillState(dir, st) // best effort: for wal status only
		}
		return res, err
	}
	b.metrics.lastPassOK.Set(float64(b.opts.Now().UnixNano()) / 1e9)
	return res, nil
}

// passError is a failed step of a pass, counted by reason.
func (b *Backfiller) fail(reason string, err error) error {
	b.metrics.errors.WithLabelValues(reason).Inc()
	return err
}

func (b *Backfiller) run(ctx context.Context, dir string, progress Progress) (Result, error) {
	var res Result
	lock, err := wal.LockBackfill(dir)
	if err != nil {
		return res, err
	}
	defer lock.Close()
	st, err := wal.ReadBackfillState(dir)
	if err != nil {
		return res, b.fail("state", err)
	}
	staging := filepath.Join(dir, stagingDir)
	if len(st.Segments) > 0 {
		for _, blk := range st.Blocks {
			if _, err := os.Stat(filepath.Join(staging, blk.ULID, "meta.json")); !blk.Uploaded && err != nil {
				b.logger.WithError(err).WithField("block", blk.ULID).Warn("block of the interrupted pass is gone; planning its segments again (samples of its uploaded blocks will be uploaded twice, which queries deduplicate)")
				st.Segments, st.Blocks = nil, nil
				break
			}
		}
	}
	if len(st.Segments) == 0 {
		if err := b.plan(ctx, dir, staging, &st); err != nil {
			return res, err
		}
		if len(st.Segments) == 0 {
			b.metrics.pending.Set(0)
			return res, nil
		}
	}
	total, _ := st.Pending()
	b.metrics.pending.Set(float64(total))
	var done int64
	for i := range st.Blocks {
		blk := &st.Blocks[i]
		if blk.Uploaded {
			res.Skipped++
			continue
		}
		if err := b.upload(ctx, filepath.Join(staging, blk.ULID), blk.ULID); err != nil {
			return res, b.fail("upload", fmt.Errorf("upload block %s: %w", blk.ULID, err))
		}
		blk.Uploaded = true
		if err := wal.CommitBackfillState(dir, st); err != nil {
			return res, b.fail("state", err)
		}
		res.Blocks++
		b.metrics.blocks.Inc()
		done += blk.Samples
		b.metrics.pending.Set(float64(total - done))
		b.logger.WithFields(logrus.Fields{"block": blk.ULID, "samples": blk.Samples, "min_time": time.UnixMilli(blk.MinTime).UTC(), "max_time": time.UnixMilli(blk.MaxTime).UTC()}).Info("backfill block uploaded")
		if progress != nil {
			progress(done, total)
		}
	}
	if err := wal.RemoveDeferred(dir, st.Segments); err != nil {
		return res, b.fail("remove", err)
	}
	for _, blk := range st.Blocks {
		res.Samples += blk.Samples
	}
	res.Segments = len(st.Segments)
	st.Backfilled += res.Samples
	st.BlocksUploaded += int64(len(st.Blocks))
	st.Segments, st.Blocks = nil, nil
	st.LastPass, st.LastError = b.opts.Now().UTC(), ""
	if err := wal.CommitBackfillState(dir, st); err != nil {
		return res, b.fail("state", err)
	}
	b.metrics.samples.Add(float64(res.Samples))
	if err := os.RemoveAll(staging); err != nil {
		b.logger.WithError(err).Warn("remove backfill staging directory; the next pass removes it")
	}
	return res, nil
}

// plan builds the blocks of the sealed segments and records the pass in st (durably).
func (b *Backfiller) plan(ctx context.Context, dir, staging string, st *wal.BackfillState) error {
	p, err := Inspect(dir, b.opts.BlockDuration)
	if err != nil {
		return b.fail("read", err)
	}
	for _, t := range p.Torn {
		b.logger.WithError(t).Warn("dead-letter segment torn; read up to the tear (a store interrupted by a crash, sent again)")
	}
	if len(p.Segments) == 0 {
		return nil
	}
	if err := os.RemoveAll(staging); err != nil {
		return b.fail("build", fmt.Errorf("clear backfill staging directory: %w", err))
	}
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return b.fail("build", fmt.Errorf("create backfill staging directory: %w", err))
	}
	var blocks []wal.BackfillBlock
	for _, w := range p.Windows {
		m, err := buildBlock(ctx, dir, p.Segments, w.MinTime, w.MaxTime, staging, b.opts.ExternalLabels, b.opts.ReplicaLabel)
		if err != nil {
			return b.fail("build", err)
		}
		if m.ULID.Compare(zeroULID) == 0 {
			continue
		}
		blocks = append(blocks, wal.BackfillBlock{ULID: m.ULID.String(), MinTime: m.MinTime, MaxTime: m.MaxTime, Samples: int64(m.Stats.NumSamples)})
	}
	st.Segments, st.Blocks = p.Segments, blocks
	if err := wal.CommitBackfillState(dir, *st); err != nil {
		return b.fail("state", err)
	}
	b.logger.WithFields(logrus.Fields{"segments": len(p.Segments), "blocks": len(blocks), "samples": p.Samples}).Info("backfill pass planned")
	return nil
}

// upload copies the block in bdir to the bucket under id/: the chunks and the index first,
// meta.json last (a block without meta.json is ignored by Thanos until it is complete).
func (b *Backfiller) upload(ctx context.Context, bdir, id string) error {
	files, err := blockFiles(bdir)
	if err != nil {
		return err
	}
	for _, f := range append(files, "meta.json") {
		if err := objstore.UploadFile(ctx, kitlog.NewNopLogger(), b.bkt, filepath.Join(bdir, filepath.FromSlash(f)), id+"/"+f); err != nil {
			return err
		}
	}
	return nil
}
