package ingest

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/sirupsen/logrus"

	"github.com/collector-dev/collector/wal"
)

// FederateAccept is the Accept header of federate requests: the text format, with metric and
// label names unescaped (UTF-8 names arrive quoted instead of with underscores, as the seeds'
// protobuf did). The text format is parsed at several times the speed of the protobuf format
// (see doc.go for the numbers) and is what every Prometheus version serves.
const FederateAccept = "text/plain;version=0.0.4;escaping=allow-utf-8"

// Reasons of an IngestError, the values the scrape loop counts failed scrapes by.
const (
	// ReasonParse: the body is not valid exposition text (or protobuf); the line says where.
	ReasonParse = "parse"
	// ReasonRead: reading the body failed (connection reset, truncated transfer, timeout).
	ReasonRead = "read"
	// ReasonTooLarge: the body reader reported ErrTooLarge or an *http.MaxBytesError.
	ReasonTooLarge = "too_large"
	// ReasonContentType: the Content-Type is neither the text format nor delimited protobuf.
	ReasonContentType = "content_type"
	// ReasonWAL: the WAL failed to commit the scrape.
	ReasonWAL = "wal"
	// ReasonDiskFull: the WAL's file system has no room for the scrape (wal.ErrDiskFull).
	ReasonDiskFull = "disk_full"
)

// ErrTooLarge is what a size-limiting body reader returns (wrapped or not) when the body exceeds
// the limit; Ingest then fails with ReasonTooLarge. *http.MaxBytesError is recognised too.
var ErrTooLarge = errors.New("federate response exceeds the size limit")

// IngestError is why a scrape was not appended. Nothing of the scrape reached the WAL.
type IngestError struct {
	Reason string // ReasonParse, ReasonRead, ReasonTooLarge, ReasonContentType, ReasonWAL, ReasonDiskFull
	Line   int    // 1-based line of the body where it happened; 0 if not about a line
	Err    error
}

func (e *IngestError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("ingest federate response: %s error at line %d: %v", e.Reason, e.Line, e.Err)
	}
	return fmt.Sprintf("ingest federate response: %s error: %v", e.Reason, e.Err)
}

func (e *IngestError) Unwrap() error { return e.Err }

// RuleSample is one result of a recording rule: the labels of the series (with or without
// __name__), the rule name as the metric name, the evaluation time in milliseconds and the value.
type RuleSample struct {
	Name   string
	Labels labels.Labels
	T      int64
	V      float64
}

// IngestResult says what one Ingest or IngestSamples did. Read = Appended + the sum of Dropped.
type IngestResult struct {
	Read      int            // samples in the body, before transforms (federate_samples)
	Appended  int            // samples written to the WAL
	Filtered  int            // samples dropped by the transforms (federate_filtered_samples)
	Dropped   map[string]int // samples not appended, by reason (Drop* constants)
	Clamped   int            // future timestamps clamped to now
	Stripped  int            // labels removed for being longer than 255 bytes
	NewSeries int            // series the cache did not know
	Bytes     int64          // bytes of the body
}

func (r *IngestResult) drop(reason string, n int) {
	if n > 0 {
		r.Dropped[reason] += n
	}
}

// IngestOptions tunes an Ingester. Start from DefaultIngestOptions.
type IngestOptions struct {
	// MaxLineBytes is the longest accepted line of a text body, and the size of the read buffer of
	// each concurrent Ingest. Default 1 MiB.
	MaxLineBytes int
	// CacheTTL drops a series from the cache when no scrape has seen it for this long. It must be
	// longer than the scrape interval; an evicted series costs one slow path. Default 15m.
	CacheTTL time.Duration
	// SampleLimit rejects a scrape (reason too_large) with more samples than this: a scrape is
	// buffered whole until its commit (about 24 bytes a known sample; a new series also costs its
	// labels in the WAL's memory, a few hundred bytes, until truncation frees an unused one), so
	// the byte limit alone lets a hostile body of tiny lines take gigabytes. Default 10 M,
	// three times the largest real scrapes (1 GiB of ~350-byte lines).
	SampleLimit int
	// Now is the clock for the age limit, clamping and the cache. Default time.Now.
	Now func() time.Time
}

// errSampleLimit is returned (as too_large) for a body over IngestOptions.SampleLimit.
var errSampleLimit = errors.New("federate response exceeds the sample limit")

// DefaultIngestOptions returns the defaults documented on IngestOptions.
func DefaultIngestOptions() IngestOptions {
	return IngestOptions{MaxLineBytes: 1 << 20, CacheTTL: 15 * time.Minute, SampleLimit: 10_000_000, Now: time.Now}
}

// Ingester turns a federate response (or recording-rule results) into one WAL scrape: it parses
// the body as it streams, applies the transforms, and appends all of it in one Commit, or
// nothing. Safe for concurrent use: several workers of one source may share it (and its cache).
type Ingester struct {
	logger  logrus.FieldLogger
	w       *wal.WAL
	opts    IngestOptions
	metrics *ingestMetrics
	seed1   maphash.Seed // the two hashes of a raw series, see seriesCache
	seed2   maphash.Seed
	start   time.Time
	cache   *seriesCache
	tr      atomic.Pointer[transformer]
	sweep   atomic.Int64 // cache clock (s) of the last eviction sweep

	mtx  sync.Mutex     // guards free
	free []*ingestState // idle per-call state, kept so buffers survive between scrapes
}

// ingestState is the state of one Ingest call.
type ingestState struct {
	parser  *textParser
	app     *wal.Appender
	builder labels.ScratchBuilder
	lset    labels.Labels // the labels of the last new series, overwritten by the next (builder)
	puts    []cachePut    // the new series, for the cache once the body parsed
	pairs   []rawLabel
}

// NewIngester returns an Ingester appending to w with the transforms of cfg.
func NewIngester(logger logrus.FieldLogger, reg prometheus.Registerer, w *wal.WAL, cfg TransformConfig, opts IngestOptions) (*Ingester, error) {
	if w == nil {
		return nil, errors.New("new ingester: nil wal")
	}
	if logger == nil {
		logger = logrus.New()
	}
	def := DefaultIngestOptions()
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = def.MaxLineBytes
	}
	if opts.SampleLimit <= 0 {
		opts.SampleLimit = def.SampleLimit
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = def.CacheTTL
	}
	if opts.Now == nil {
		opts.Now = def.Now
	}
	tr, err := newTransformer(cfg)
	if err != nil {
		return nil, fmt.Errorf("new ingester: transforms: %w", err)
	}
	i := &Ingester{
		logger:  logger.WithField("component", "ingest"),
		w:       w,
		opts:    opts,
		metrics: newIngestMetrics(reg),
		seed1:   maphash.MakeSeed(),
		seed2:   maphash.MakeSeed(),
		start:   opts.Now(),
		cache:   newSeriesCache(w),
	}
	i.tr.Store(tr)
	return i, nil
}

// SetConfig replaces the transforms (a configuration reload). The series cache is purged: every
// series is transformed again on its next scrape. An Ingest running meanwhile finishes with
// the configuration it started with.
func (i *Ingester) SetConfig(cfg TransformConfig) error {
	tr, err := newTransformer(cfg)
	if err != nil {
		return fmt.Errorf("set ingest config: %w", err)
	}
	// Store, then purge: an Ingest that read the cache generation before the purge cannot insert
	// afterwards, and one that read it after sees the new transformer.
	i.tr.Store(tr)
	i.cache.purge()
	i.metrics.cacheSize.Set(0)
	return nil
}

// Ingest parses one federate response body of the given Content-Type and appends it to the WAL
// as one scrape. It returns an *IngestError, and appends nothing, if the body is not wholly
// valid (truncated, malformed, over a limit of the reader) or the WAL fails; errors of the body
// reader are wrapped in it (errors.Is works).
func (i *Ingester) Ingest(body io.Reader, contentType string) (IngestResult, error) {
	text, err := federateFormat(contentType)
	if err != nil {
		return IngestResult{}, &IngestError{Reason: ReasonContentType, Err: err}
	}
	st := i.getState()
	defer i.putState(st)
	// Open the scrape before the first cache lookup (see seriesCache).
	st.app.Begin()
	gen := i.cache.gen.Load() // before the transformer: see SetConfig
	tr := i.tr.Load()
	now := i.opts.Now()
	res := IngestResult{Dropped: map[string]int{}}
	if text {
		err = i.parseText(st, tr, body, now, &res)
	} else {
		err = i.parseOther(st, tr, body, contentType, now.UnixMilli(), &res)
	}
	if err != nil {
		st.app.Rollback()
		return IngestResult{}, classify(err)
	}
	return i.commit(st, gen, now, res)
}

// IngestSamples appends recording-rule results as one scrape, with the same transforms (and
// the rule name as metric name, replacing a __name__ in the labels).
func (i *Ingester) IngestSamples(samples []RuleSample) (IngestResult, error) {
	st := i.getState()
	defer i.putState(st)
	gen := i.cache.gen.Load() // before the transformer: see SetConfig
	tr := i.tr.Load()
	now := i.opts.Now()
	res := IngestResult{Dropped: map[string]int{}}
	for _, s := range samples {
		res.Read++
		name, pairs := splitLabels(s.Labels, st.pairs[:0])
		st.pairs = pairs
		if s.Name != "" {
			name = s.Name
		}
		i.slowPath(st, tr, name, pairs, false, cacheKey{}, s.T, true, s.V, now.UnixMilli(), &res)
	}
	return i.commit(st, gen, now, res)
}

// parseText streams a text body: known series take the cache, the others the slow path.
func (i *Ingester) parseText(st *ingestState, tr *transformer, body io.Reader, now time.Time, res *IngestResult) error {
	cache := i.cache
	cache.mu.RLock()
	defer cache.mu.RUnlock()
	p := st.parser
	p.reset(&unlockedReader{r: body, mu: &cache.mu})
	defer p.release()
	nowMs, nowS := now.UnixMilli(), i.cacheClock(now)
	app := st.app
	cursor := uint32(0)
	for {
		line, err := p.next()
		res.Bytes = p.bytes
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		res.Read++
		if res.Read > i.opts.SampleLimit {
			return fmt.Errorf("%w of %d samples", errSampleLimit, i.opts.SampleLimit)
		}
		cacheable := p.cacheable()
		if cacheable {
			// The series the last body had next, taken on its length and first hash without
			// splitting the line (see seriesCache); a rest that does not parse goes the general
			// way below, which says what is wrong as it always did.
			if e, k := cache.predict(cursor); e != nil {
				if n := int(e.slen); n > 0 && n < len(line) && line[n-1] == '}' && maphash.Bytes(i.seed1, line[:n]) == e.h1 {
					if v, t, hasT, err := parseValue(line[n:]); err == nil {
						cache.touch(&cursor, e, k, nowS)
						known(app, tr, e.hit(), v, t, hasT, nowMs, res)
						continue
					}
				}
			}
		}
		series, rest := splitSeries(line)
		var key cacheKey
		if cacheable {
			key = cacheKey{h1: maphash.Bytes(i.seed1, series), h2: maphash.Bytes(i.seed2, series), slen: seriesLen(series)}
			if e, ok := cache.get(&cursor, key.h1, key.h2, nowS); ok {
				v, t, hasT, err := p.value(rest)
				if err != nil {
					return err
				}
				known(app, tr, e, v, t, hasT, nowMs, res)
				continue
			}
		}
		if err := p.parseSeries(series); err != nil {
			return err
		}
		v, t, hasT, err := p.value(rest)
		if err != nil {
			return err
		}
		if !cacheable {
			p.normalize()
		}
		i.slowPath(st, tr, p.name, p.pairs, cacheable, key, t, hasT, v, nowMs, res)
	}
}

// known appends the sample of a series the cache knows, or counts why it is dropped.
func known(app *wal.Appender, tr *transformer, e cacheHit, v float64, t int64, hasT bool, nowMs int64, res *IngestResult) {
	res.Stripped += int(e.stripped)
	if e.drop != dropNone {
		res.drop(dropReason(e.drop), 1)
		res.Filtered++
		return
	}
	t, clamped, reason := tr.sampleTime(t, hasT, nowMs)
	if reason != "" {
		res.drop(reason, 1)
		res.Filtered++
		return
	}
	if clamped {
		res.Clamped++
	}
	app.Append(e.ref, t, v)
}

// slowPath transforms a series the cache does not know, resolves its ref and appends its sample.
// The series is created in the WAL's memory at once (Appender.Ref), not at the end of the body:
// its labels are then kept once, in the form the WAL keeps them, instead of a second time until
// the commit (a first scrape of 200k series held 50 MB more that way). Nothing reaches the disk
// before Commit; the series of a body that fails later are not written, and are forgotten by the
// next truncation that finds them unused (wal: orphan series). The cache learns the new series
// only when the body parsed (commit).
func (i *Ingester) slowPath(st *ingestState, tr *transformer, name string, pairs []rawLabel, cache bool, key cacheKey, t int64, hasT bool, v float64, nowMs int64, res *IngestResult) {
	r := tr.series(name, pairs, &st.builder, &st.lset)
	res.Stripped += r.stripped
	res.NewSeries++
	put := cachePut{h1: key.h1, h2: key.h2, slen: key.slen, stripped: uint8(min(r.stripped, 255))}
	switch {
	case r.drop != "":
		put.drop = dropCode(r.drop)
		res.drop(r.drop, 1)
		res.Filtered++
	case isStale(v):
		res.drop(DropStaleMarker, 1)
		res.Filtered++
		return // neither appended nor cached
	default:
		t2, clamped, reason := tr.sampleTime(t, hasT, nowMs)
		if reason != "" {
			res.drop(reason, 1)
			res.Filtered++
			return // neither appended nor cached
		}
		if clamped {
			res.Clamped++
		}
		put.ref = st.app.Ref(r.lset)
		st.app.Append(put.ref, t2, v)
	}
	if cache {
		st.puts = append(st.puts, put)
	}
}

// commit puts the new series in the cache and commits the scrape.
func (i *Ingester) commit(st *ingestState, gen uint64, now time.Time, res IngestResult) (IngestResult, error) {
	nowS := i.cacheClock(now)
	i.cache.put(gen, st.puts, nowS)
	st.puts = st.puts[:0]
	stats, err := st.app.Commit()
	if err != nil {
		reason := ReasonWAL
		if errors.Is(err, wal.ErrDiskFull) {
			reason = ReasonDiskFull
		}
		return IngestResult{}, &IngestError{Reason: reason, Err: err}
	}
	res.Appended = stats.Samples
	res.drop(DropDuplicate, stats.Duplicate)
	res.drop(DropOutOfOrder, stats.OutOfOrder)
	res.drop(DropUnknownSeries, stats.UnknownSeries)
	if stats.UnknownSeries > 0 {
		// Cannot happen while the cache holds its refs (seriesCache); kept as a safety net: forget
		// every cached ref, the next scrape resolves every series again.
		i.cache.purge()
		i.logger.WithField("samples", stats.UnknownSeries).Error("wal did not know refs of the series cache; samples skipped and counted, cache purged so the next scrape resolves them again")
	}
	i.maybeEvict(nowS)
	i.metrics.observe(res, i.cache.len())
	return res, nil
}

// maybeEvict sweeps the cache of unseen series at most once per quarter TTL.
func (i *Ingester) maybeEvict(nowS uint32) {
	ttl := uint32(max(i.opts.CacheTTL/time.Second, 1))
	last := i.sweep.Load()
	if int64(nowS)-last < int64(max(ttl/4, 1)) || !i.sweep.CompareAndSwap(last, int64(nowS)) {
		return
	}
	if nowS > ttl {
		i.cache.evict(nowS - ttl)
	}
}

// cacheClock is the cache's clock: seconds since the Ingester was made.
func (i *Ingester) cacheClock(now time.Time) uint32 {
	return uint32(max(now.Sub(i.start)/time.Second, 0))
}

func (i *Ingester) getState() *ingestState {
	i.mtx.Lock()
	defer i.mtx.Unlock()
	if n := len(i.free); n > 0 {
		st := i.free[n-1]
		i.free = i.free[:n-1]
		return st
	}
	return &ingestState{
		parser:  newTextParser(i.opts.MaxLineBytes),
		app:     i.w.Appender(),
		builder: labels.NewScratchBuilder(32),
	}
}

func (i *Ingester) putState(st *ingestState) {
	st.app.Rollback()
	st.puts = st.puts[:0]
	if cap(st.puts) > 4096 {
		st.puts = nil // a cold scrape's worth; steady scrapes need few
	}
	i.mtx.Lock()
	defer i.mtx.Unlock()
	i.free = append(i.free, st)
}

// federateFormat tells the text format (true) from the others textparse reads (false).
func federateFormat(contentType string) (bool, error) {
	if contentType == "" {
		return true, nil // the text format is the exposition default
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false, fmt.Errorf("content type %q: %w", contentType, err)
	}
	switch {
	case mt == "text/plain":
		if v := params["version"]; v != "" && v != "0.0.4" {
			return false, fmt.Errorf("unsupported text format version %q", v)
		}
		return true, nil
	case mt == "application/vnd.google.protobuf" && params["encoding"] == "delimited" &&
		params["proto"] == "io.prometheus.client.MetricFamily":
		return false, nil
	}
	return false, fmt.Errorf("unsupported content type %q", contentType)
}

// classify sets the reason of a read error: too_large for a size limit.
func classify(err error) error {
	var ie *IngestError
	if !errors.As(err, &ie) {
		ie = &IngestError{Reason: ReasonRead, Err: err}
	}
	var mbe *http.MaxBytesError
	if ie.Reason == ReasonRead && (errors.Is(ie.Err, ErrTooLarge) || errors.Is(ie.Err, errSampleLimit) || errors.As(ie.Err, &mbe)) {
		ie.Reason = ReasonTooLarge
	}
	return ie
}

// ingestMetrics are the Ingester's metrics. The agent registers them per source.
type ingestMetrics struct {
	samples   prometheus.Gauge
	filtered  prometheus.Gauge
	appended  prometheus.Counter
	dropped   *prometheus.CounterVec
	clamped   prometheus.Counter
	stripped  prometheus.Counter
	cacheSize prometheus.Gauge
}

func newIngestMetrics(reg prometheus.Registerer) *ingestMetrics {
	f := promauto.With(reg)
	return &ingestMetrics{
		samples: f.NewGauge(prometheus.GaugeOpts{
			Name: "federate_samples",
			Help: "Samples read in the last scrape, before transforms (the seeds' gauge).",
		}),
		filtered: f.NewGauge(prometheus.GaugeOpts{
			Name: "federate_filtered_samples",
			Help: "Samples of the last scrape dropped by the transforms (the seeds' gauge).",
		}),
		appended: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_scrape_samples_appended_total",
			Help: "Samples of scrapes and recording rules appended to the WAL.",
		}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_scrape_samples_dropped_total",
			Help: "Samples read but not appended, by reason: invalid_name, no_timestamp, too_old, stale_marker, duplicate, out_of_order, unknown_series, native_histogram, relabel, metric_relabel.",
		}, []string{"reason"}),
		clamped: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_scrape_timestamps_clamped_total",
			Help: "Sample timestamps further in the future than the tolerance, clamped to now.",
		}),
		stripped: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_scrape_labels_stripped_total",
			Help: "Labels removed from samples because their name or value is longer than 255 bytes (the seeds' rule).",
		}),
		cacheSize: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_scrape_series_cache_size",
			Help: "Series in the ingest cache (known series skip parsing and transforms).",
		}),
	}
}

func (m *ingestMetrics) observe(res IngestResult, cacheSize int) {
	m.samples.Set(float64(res.Read))
	m.filtered.Set(float64(res.Filtered))
	m.appended.Add(float64(res.Appended))
	for reason, n := range res.Dropped {
		m.dropped.WithLabelValues(reason).Add(float64(n))
	}
	m.clamped.Add(float64(res.Clamped))
	m.stripped.Add(float64(res.Stripped))
	m.cacheSize.Set(float64(cacheSize))
}
