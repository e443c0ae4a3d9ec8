package ingest

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/value"
)

// Defaults of TransformConfig (see DefaultTransformConfig).
const (
	// DefaultMaxAge is the seeds' age limit (DropInvalidFederateSamples(now-24h)): Thanos receive
	// and the telemeter server reject older samples anyway.
	DefaultMaxAge = 24 * time.Hour
	// DefaultFutureTolerance is how far ahead of the collector's clock a timestamp may be before it
	// is clamped to now. The seeds clamp every future timestamp; collector tolerates the skew of
	// two clocks in one cluster because clamping rewrites a timestamp to the scrape time: the same
	// source sample federated twice (a Prometheus scrape interval longer than the federate
	// interval) would then become two different samples, and the WAL's duplicate check could not
	// see that they are one. Five minutes is the federate lookback: a clock further off than that
	// is broken and the seeds' clamping applies.
	DefaultFutureTolerance = 5 * time.Minute
	// maxLabelLen is the seeds' limit on a metric name, label name or label value, in bytes.
	maxLabelLen = 255
)

// Reasons for dropped samples, the values of the reason label of
// collector_scrape_samples_dropped_total and the keys of IngestResult.Dropped.
const (
	// DropInvalidName: the metric name is empty or longer than 255 bytes (after renaming).
	DropInvalidName = "invalid_name"
	// DropNoTimestamp: the sample has no timestamp (the seeds drop these; /federate always sets one).
	DropNoTimestamp = "no_timestamp"
	// DropTooOld: the timestamp is older than now - TransformConfig.MaxAge.
	DropTooOld = "too_old"
	// DropStaleMarker: the value is a Prometheus stale marker. /federate never emits one, and the
	// text format cannot express one; only the protobuf format and recording rules could.
	DropStaleMarker = "stale_marker"
	// DropDuplicate: the WAL already holds a sample of the series with this timestamp (the same
	// sample federated again, or two series that became one after eliding labels).
	DropDuplicate = "duplicate"
	// DropOutOfOrder: the WAL holds a newer sample of the series.
	DropOutOfOrder = "out_of_order"
	// DropNativeHistogram: a native histogram sample (only in the protobuf format); the WAL holds
	// float samples.
	DropNativeHistogram = "native_histogram"
	// DropUnknownSeries: the WAL did not know a ref of the series cache. The cache holds its refs,
	// so this does not happen (wal/FORMAT.md); if it did, the cache is purged and the next scrape
	// resolves the series again.
	DropUnknownSeries = "unknown_series"
)

// LabelPair is one --label flag: a label set on every series.
type LabelPair struct{ Name, Value string }

// TransformConfig is the seeds' transforms of a source.
// The zero value transforms nothing and has no age limit; start from DefaultTransformConfig.
type TransformConfig struct {
	// Labels are the --label flags, in flag order (a later pair of the same name wins). They
	// override an existing label of the same name.
	Labels []LabelPair
	// Renames maps exact metric names to new names (--rename OLD=NEW).
	Renames map[string]string
	// Elide lists label names removed from every series (--elide-label). The config layer fills
	// in DefaultElideLabels when the flag is not given; nil here means no eliding.
	Elide []string
	// Anonymize lists label names whose values are replaced by a salted hash (--anonymize-labels).
	Anonymize []string
	// Salt is --anonymize-salt, or the contents of --anonymize-salt-file with surrounding
	// whitespace trimmed by the caller. Required when Anonymize is set.
	Salt string
	// ClusterID is --id. When set, it is added as the label clusterID unless Labels sets clusterID.
	ClusterID string
	// MaxAge drops (and counts) samples older than now-MaxAge. 0 means no limit. Default 24h.
	MaxAge time.Duration
	// FutureTolerance: timestamps later than now+FutureTolerance are clamped to now and counted.
	// 0 clamps every future timestamp, as the seeds do. Default DefaultFutureTolerance.
	FutureTolerance time.Duration
	// RelabelConfigs are applied to a series' labels as read, before the transforms, and
	// MetricRelabelConfigs after them (SourceConfig). Validated rules only.
	RelabelConfigs, MetricRelabelConfigs []*relabel.Config
}

// DefaultElideLabels returns the labels dropped from every series when a source does not say:
// RHACM metrics-collector's default.
func DefaultElideLabels() []string {
	return []string{"prometheus", "prometheus_replica", "managed_cluster"}
}

// DefaultTransformConfig returns the seeds' defaults: the RHACM elide list, a 24h age limit, and
// DefaultFutureTolerance.
func DefaultTransformConfig() TransformConfig {
	return TransformConfig{
		Elide:           DefaultElideLabels(),
		MaxAge:          DefaultMaxAge,
		FutureTolerance: DefaultFutureTolerance,
	}
}

// ParseLabelPair parses a --label flag "name=value". The name must be a valid Prometheus label
// name not starting with "__"; the value must be non-empty, valid UTF-8 and at most 255 bytes.
func ParseLabelPair(s string) (LabelPair, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok {
		return LabelPair{}, fmt.Errorf("label %q: want name=value", s)
	}
	if err := validateLabelPair(name, val); err != nil {
		return LabelPair{}, fmt.Errorf("label %q: %w", s, err)
	}
	return LabelPair{Name: name, Value: val}, nil
}

func validateLabelPair(name, val string) error {
	switch {
	case !model.LabelName(name).IsValidLegacy():
		return fmt.Errorf("invalid label name %q (want [a-zA-Z_][a-zA-Z0-9_]*)", name)
	case strings.HasPrefix(name, "__"):
		return fmt.Errorf("label name %q is reserved (starts with __)", name)
	case val == "":
		return errors.New("empty value (an empty label value is an absent label)")
	case len(val) > maxLabelLen:
		return fmt.Errorf("value of %d bytes is longer than %d", len(val), maxLabelLen)
	case !utf8.ValidString(val):
		return errors.New("value is not valid UTF-8")
	}
	return nil
}

// ParseRename parses a --rename flag "OLD=NEW" (exact metric names). NEW must be a valid legacy
// metric name; OLD any non-empty name of at most 255 bytes.
func ParseRename(s string) (old, new string, err error) {
	old, new, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("rename %q: want OLD=NEW", s)
	}
	if err := validateRename(old, new); err != nil {
		return "", "", fmt.Errorf("rename %q: %w", s, err)
	}
	return old, new, nil
}

func validateRename(old, new string) error {
	switch {
	case old == "" || len(old) > maxLabelLen || !utf8.ValidString(old):
		return fmt.Errorf("invalid metric name %q", old)
	case !model.IsValidLegacyMetricName(new) || len(new) > maxLabelLen:
		return fmt.Errorf("invalid metric name %q (want [a-zA-Z_:][a-zA-Z0-9_:]*)", new)
	}
	return nil
}

// Validate checks every field as the parsers do.
func (c TransformConfig) Validate() error {
	for _, l := range c.Labels {
		if err := validateLabelPair(l.Name, l.Value); err != nil {
			return fmt.Errorf("label %s: %w", l.Name, err)
		}
	}
	for old, new := range c.Renames {
		if err := validateRename(old, new); err != nil {
			return fmt.Errorf("rename %s: %w", old, err)
		}
	}
	if c.ClusterID != "" {
		if err := validateLabelPair("clusterID", c.ClusterID); err != nil {
			return fmt.Errorf("cluster id: %w", err)
		}
	}
	if len(c.Anonymize) > 0 && c.Salt == "" {
		return errors.New("anonymize labels need a salt")
	}
	if c.MaxAge < 0 || c.FutureTolerance < 0 {
		return errors.New("max age and future tolerance must not be negative")
	}
	return errors.Join(ValidateRelabelConfigs("relabel_configs", c.RelabelConfigs),
		ValidateRelabelConfigs("metric_relabel_configs", c.MetricRelabelConfigs))
}

// rawLabel is one label of a parsed series, before transforms. Its strings may alias the
// parser's buffers: they are valid until the next line is read.
type rawLabel struct{ name, value string }

// transformer is a compiled TransformConfig. It is immutable and safe for concurrent use.
type transformer struct {
	labels    []LabelPair // Labels deduplicated (last wins), then clusterID
	renames   map[string]string
	elide     map[string]struct{}
	anonymize map[string]struct{}
	salt      string
	maxAge    int64 // ms; 0: no limit
	// relabel and metricRelabel: TransformConfig's RelabelConfigs and MetricRelabelConfigs.
	relabel, metricRelabel []*relabel.Config
	tolerance              int64 // ms
}

func newTransformer(c TransformConfig) (*transformer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	tr := &transformer{
		renames:   maps.Clone(c.Renames),
		elide:     map[string]struct{}{},
		anonymize: map[string]struct{}{},
		salt:      c.Salt,
		maxAge:    c.MaxAge.Milliseconds(),
		tolerance: c.FutureTolerance.Milliseconds(),
		relabel:   c.RelabelConfigs,

		metricRelabel: c.MetricRelabelConfigs,
	}
	hasClusterID := false
	for _, l := range c.Labels {
		hasClusterID = hasClusterID || l.Name == "clusterID"
		tr.labels = setLabelPair(tr.labels, l)
	}
	if c.ClusterID != "" && !hasClusterID {
		tr.labels = append(tr.labels, LabelPair{Name: "clusterID", Value: c.ClusterID})
	}
	for _, n := range c.Elide {
		tr.elide[n] = struct{}{}
	}
	for _, n := range c.Anonymize {
		tr.anonymize[n] = struct{}{}
	}
	return tr, nil
}

func setLabelPair(ls []LabelPair, l LabelPair) []LabelPair {
	for i := range ls {
		if ls[i].Name == l.Name {
			ls[i].Value = l.Value
			return ls
		}
	}
	return append(ls, l)
}

// seriesResult is what the label transforms made of one series.
type seriesResult struct {
	lset     labels.Labels
	drop     string // reason the series is dropped, "" if kept
	stripped int    // labels removed for being longer than 255 bytes
}

// series applies the label transforms to one series, in the seeds' order: --label (overrides),
// --rename, elide, drop invalid (empty or over-long metric name drops the series; over-long
// label names and values are stripped), then the conversion to a label set (empty names and
// values skipped, duplicate names: the first wins, __name__ reserved; sorted), then anonymize.
// pairs is the label set in input order without __name__; it is modified. b is scratch. The
// result's lset is into, overwritten (labels.ScratchBuilder.Overwrite): valid until the next call
// with the same into, and the caller must keep nothing of it.
func (tr *transformer) series(name string, pairs []rawLabel, b *labels.ScratchBuilder, into *labels.Labels) seriesResult {
	var res seriesResult
	if len(tr.relabel) > 0 {
		var keep bool
		if name, pairs, keep = tr.relabelRaw(name, pairs, b); !keep {
			res.drop = DropRelabel
			return res
		}
	}
	// --label: empty pairs go first (the seeds' Label transformer drops them), then override or add.
	n := 0
	for _, p := range pairs {
		if p.name != "" && p.value != "" {
			pairs[n] = p
			n++
		}
	}
	pairs = pairs[:n]
	for _, l := range tr.labels {
		found := false
		for i := range pairs {
			if pairs[i].name == l.Name {
				pairs[i].value = l.Value
				found = true
			}
		}
		if !found {
			pairs = append(pairs, rawLabel{l.Name, l.Value})
		}
	}
	if nn, ok := tr.renames[name]; ok {
		name = nn
	}
	// Elide, then strip invalid labels.
	n = 0
	for _, p := range pairs {
		if _, ok := tr.elide[p.name]; ok {
			continue
		}
		if len(p.name) > maxLabelLen || len(p.value) > maxLabelLen {
			res.stripped++
			continue
		}
		pairs[n] = p
		n++
	}
	pairs = pairs[:n]
	if name == "" || len(name) > maxLabelLen {
		res.drop = DropInvalidName
		return res
	}
	b.Reset()
	b.Add(labels.MetricName, name)
	var seen map[string]struct{} // for long label sets: keeps the duplicate check linear
	if len(pairs) > smallLabelSet {
		seen = make(map[string]struct{}, len(pairs))
	}
	for i, p := range pairs {
		if p.name == labels.MetricName || seenBefore(pairs[:i], p.name, seen) {
			continue // duplicate: the first wins; __name__ is reserved
		}
		v := p.value
		if _, ok := tr.anonymize[p.name]; ok {
			v = anonymize(tr.salt, v)
		}
		b.Add(p.name, v)
	}
	b.Sort()
	b.Overwrite(into)
	res.lset = *into
	if len(tr.metricRelabel) > 0 {
		var keep bool
		if res.lset, keep = relabelSeries(labels.NewBuilder(res.lset), res.lset, tr.metricRelabel); !keep {
			res.drop = DropMetricRelabel
		}
	}
	return res
}

// relabelRaw applies the relabel_configs to a series as read (empty names and values skipped,
// the first of duplicate names kept) and returns it split again, or false when dropped.
func (tr *transformer) relabelRaw(name string, pairs []rawLabel, b *labels.ScratchBuilder) (string, []rawLabel, bool) {
	b.Reset()
	b.Add(labels.MetricName, name)
	var seen map[string]struct{}
	if len(pairs) > smallLabelSet {
		seen = make(map[string]struct{}, len(pairs))
	}
	for i, p := range pairs {
		if p.name == "" || p.value == "" || p.name == labels.MetricName || seenBefore(pairs[:i], p.name, seen) {
			continue
		}
		b.Add(p.name, p.value)
	}
	b.Sort()
	lset := b.Labels()
	out, keep := relabelSeries(labels.NewBuilder(lset), lset, tr.relabel)
	if !keep {
		return "", pairs, false
	}
	name, pairs = splitLabels(out, pairs[:0])
	return name, pairs, true
}

// smallLabelSet is the size up to which label names are compared pairwise; larger sets (a
// hostile or broken exporter can put 100k labels on one line) use a map.
const smallLabelSet = 32

// seenBefore reports whether name occurs in before (the labels preceding it). With seen non-nil
// it uses and updates seen instead of scanning before.
func seenBefore(before []rawLabel, name string, seen map[string]struct{}) bool {
	if seen != nil {
		if _, ok := seen[name]; ok {
			return true
		}
		seen[name] = struct{}{}
		return false
	}
	for _, p := range before {
		if p.name == name {
			return true
		}
	}
	return false
}

// sampleTime applies the per-sample rules to timestamp t (ms) at now (ms): the age limit and the
// clamping of future timestamps. It returns the timestamp to append, whether it was clamped, and
// the drop reason ("" if kept).
func (tr *transformer) sampleTime(t int64, hasT bool, now int64) (int64, bool, string) {
	switch {
	case !hasT:
		return 0, false, DropNoTimestamp
	case tr.maxAge > 0 && t < now-tr.maxAge:
		return 0, false, DropTooOld
	case t > now+tr.tolerance:
		return now, true, ""
	}
	return t, false, ""
}

// isStale reports whether v is a Prometheus stale marker.
func isStale(v float64) bool { return math.Float64bits(v) == value.StaleNaN }

// splitLabels turns a label set into its metric name and the other labels, appended to pairs.
// The strings alias lset.
func splitLabels(lset labels.Labels, pairs []rawLabel) (string, []rawLabel) {
	name := ""
	lset.Range(func(l labels.Label) {
		if l.Name == labels.MetricName && name == "" {
			name = l.Value
			return
		}
		pairs = append(pairs, rawLabel{l.Name, l.Value})
	})
	return name, pairs
}
