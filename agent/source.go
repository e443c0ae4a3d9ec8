package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/collector-dev/collector/agent/ingest"
	"github.com/collector-dev/collector/wal"
)

// Clock is the time seam of a Source: the scrape schedule, durations and query timestamps. Tests
// drive a fake one by hand; request timeouts use real time.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// SourceOptions are the settings of a Source that are not part of its configuration.
type SourceOptions struct {
	// Ingest configures the source's Ingester. Default ingest.DefaultIngestOptions().
	Ingest ingest.IngestOptions
	// Clock is the time source. Default the system clock.
	Clock Clock
	// UserAgent is sent with every request to the source. Default "collector".
	UserAgent string
}

// DefaultSourceOptions returns the defaults documented on SourceOptions.
func DefaultSourceOptions() SourceOptions {
	return SourceOptions{Ingest: ingest.DefaultIngestOptions(), Clock: systemClock{}, UserAgent: defaultUserAgent}
}

// SourceStatus is what /readyz and the logs need to know about a source.
type SourceStatus struct {
	ID string
	// Attempted is true once the first scrape cycle has ended, successful or not.
	Attempted bool
	// LastScrape is the end of the last scrape cycle; LastSuccess that of the last cycle in which
	// every worker's scrape succeeded.
	LastScrape, LastSuccess time.Time
	// LastError is the error of the last cycle's scrapes (joined, one per failed worker), nil
	// when it succeeded. Recording-rule failures are not in it: they are counted per rule.
	LastError error
}

// ingester is what a Source needs of an ingest.Ingester: the seam of the tests.
type ingester interface {
	Ingest(body io.Reader, contentType string) (ingest.IngestResult, error)
	IngestSamples(samples []ingest.RuleSample) (ingest.IngestResult, error)
	SetConfig(cfg ingest.TransformConfig) error
}

var _ ingester = (*ingest.Ingester)(nil)

// Source federates one Prometheus into one WAL: every interval (the first at once) the matchers
// are spread over the workers, each worker's response is one all-or-nothing WAL commit, and the
// recording rules are evaluated alongside, each rule's result its own commit. A cycle longer than
// the interval delays the next one to the next tick (counted as an overrun); ticks never queue.
//
// Run, Reload and Status are safe for concurrent use. The Source does not own the WAL: the
// caller closes it after Run returned.
type Source struct {
	id      string
	logger  logrus.FieldLogger
	metrics *scrapeMetrics
	ing     ingester
	clock   Clock
	agent   string // User-Agent
	running atomic.Bool
	// reloaded wakes Run's wait when Reload changed the state (the interval may have changed).
	reloaded chan struct{}
	// reloadMtx serialises Reload.
	reloadMtx sync.Mutex

	mtx sync.Mutex
	// state is the resolved configuration, replaced whole by Reload; guarded by mtx. A cycle uses
	// the state it started with.
	state *sourceState
	// status is guarded by mtx.
	status SourceStatus

	// collectWake wakes runCollect when a reload may have brought collect rules.
	collectWake chan struct{}
	cmetrics    *collectMetrics
	store       sidecarStore // nil: the collect-rule state is not persisted
	collectMtx  sync.Mutex
	// cstate, savedState (its last saved form) and collectRules (the rules with metrics) are
	// guarded by collectMtx.
	cstate       *collectState
	savedState   []byte
	collectRules map[string]bool
}

// sourceState is a SourceConfig resolved: defaults applied, files read, URLs and client built.
// It is immutable.
type sourceState struct {
	cfg      SourceConfig // with defaults
	federate *url.URL
	query    *url.URL
	matchers []string
	groups   [][]string // matchers per worker, round-robin
	// requests are the groups cut into requests whose URL stays short (chunkMatchers): per
	// worker, the matchers of each of its requests, sent one after the other.
	requests [][][]string
	rules    []RecordingRule
	// collect are the collect rules: the config's, then those of the allowlist's groups that
	// select the cluster's type (the clusterType label).
	collect   []CollectRule
	client    *sourceClient
	transform ingest.TransformConfig
	warnings  []string // logged once when the state is installed
}

// NewSource builds the source of cfg appending to w. It reads the match file, the allowlist and
// the salt file, and loads the TLS files and the token, so that every mistake is an error here.
func NewSource(logger logrus.FieldLogger, reg prometheus.Registerer, cfg SourceConfig, w *wal.WAL, opts SourceOptions) (*Source, error) {
	if w == nil {
		return nil, errors.New("new source: nil WAL")
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if opts.UserAgent == "" {
		opts.UserAgent = defaultUserAgent
	}
	st, err := buildState(cfg, opts.Clock.Now)
	if err != nil {
		return nil, err
	}
	ing, err := ingest.NewIngester(logger, reg, w, st.transform, opts.Ingest)
	if err != nil {
		st.client.Close()
		return nil, fmt.Errorf("source %s: %w", cfg.ID, err)
	}
	s := newSource(logger, reg, st, ing, opts)
	s.store = w
	s.loadCollectState()
	return s, nil
}

func newSource(logger logrus.FieldLogger, reg prometheus.Registerer, st *sourceState, ing ingester, opts SourceOptions) *Source {
	if logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		logger = l
	}
	s := &Source{
		id:       st.cfg.ID,
		logger:   logger.WithFields(logrus.Fields{"component": "scrape", "cluster_id": st.cfg.ID}),
		metrics:  newScrapeMetrics(reg),
		ing:      ing,
		clock:    opts.Clock,
		agent:    opts.UserAgent,
		reloaded: make(chan struct{}, 1),
		state:    st,
		status:   SourceStatus{ID: st.cfg.ID},

		collectWake: make(chan struct{}, 1),
		cmetrics:    newCollectMetrics(reg),
		cstate:      newCollectState(),
	}
	s.installed(nil, st)
	return s
}

// Run scrapes until ctx is done: the first cycle at once, then one per interval. It returns nil
// after ctx is done and every request it started has ended. It may be called once.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("source %s: Run called twice", s.id)
	}
	defer func() { s.getState().client.Close() }()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.runCollect(ctx)
	}()
	defer wg.Wait()
	for {
		start := s.clock.Now()
		s.cycle(ctx, start)
		if ctx.Err() != nil {
			return nil
		}
		next, overrun := nextTick(start, s.clock.Now(), s.getState().cfg.Interval)
		if overrun {
			s.metrics.overruns.Inc()
			s.logger.WithFields(logrus.Fields{"took": s.clock.Now().Sub(start).String(), "interval": s.getState().cfg.Interval.String()}).
				Warn("scrape cycle took longer than the interval; skipping to the next tick")
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-s.clock.After(next.Sub(s.clock.Now())):
				break wait
			case <-s.reloaded:
				// The interval may have changed: recompute the tick from the same start.
				next, _ = nextTick(start, s.clock.Now(), s.getState().cfg.Interval)
			}
		}
	}
}

// nextTick returns the first tick start+k*interval (k ≥ 1) after now, and whether ticks were
// missed (the cycle ended after start+interval).
func nextTick(start, now time.Time, interval time.Duration) (time.Time, bool) {
	next := start.Add(interval)
	if now.Before(next) {
		return next, false
	}
	missed := now.Sub(start) / interval
	return start.Add((missed + 1) * interval), true
}

// cycle runs one scrape per worker and the recording rules, in parallel, and waits for all.
func (s *Source) cycle(ctx context.Context, start time.Time) {
	st := s.getState()
	var wg sync.WaitGroup
	errs := make([][]error, len(st.requests))
	for i, reqs := range st.requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ms := range reqs {
				if ctx.Err() != nil {
					return
				}
				if err := s.scrape(ctx, st, ms); err != nil {
					errs[i] = append(errs[i], err)
					if r := reasonOf(err); r == reasonTransport || r == reasonTimeout || r == reasonAuth {
						return // the source is unreachable: the worker's next requests would fail alike
					}
				}
			}
		}()
	}
	if len(st.rules) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.evalRules(ctx, st, start)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: what failed now failed because of it
	}
	end := s.clock.Now()
	var failed []error
	for i, werrs := range errs {
		for _, err := range werrs {
			reason := reasonOf(err)
			s.metrics.failures.WithLabelValues(reason).Inc()
			s.logger.WithFields(logrus.Fields{"worker": i, "reason": reason, "err": err}).Warn("scrape failed; nothing appended, retrying at the next interval")
			failed = append(failed, err)
		}
	}
	s.mtx.Lock()
	defer s.mtx.Unlock()
	s.status.Attempted = true
	s.status.LastScrape = end
	s.status.LastError = errors.Join(failed...)
	if len(failed) == 0 {
		s.status.LastSuccess = end
		s.metrics.lastSuccess.Set(float64(end.UnixMilli()) / 1000)
	}
}

// Reload applies cfg without touching the WAL: matchers, files, rules, transforms, credentials
// and schedule. The id must not change. On error the running configuration is kept.
func (s *Source) Reload(cfg SourceConfig) error {
	s.reloadMtx.Lock()
	defer s.reloadMtx.Unlock()
	if cfg.ID != s.id {
		return fmt.Errorf("reload source %s: id changed to %q (a new id is a new source)", s.id, cfg.ID)
	}
	st, err := buildState(cfg, s.clock.Now)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if err := s.ing.SetConfig(st.transform); err != nil {
		st.client.Close()
		return fmt.Errorf("reload source %s: %w", s.id, err)
	}
	s.mtx.Lock()
	old := s.state
	s.state = st
	s.mtx.Unlock()
	old.client.Close() // idle connections only; requests in flight finish
	s.installed(old, st)
	select {
	case s.reloaded <- struct{}{}:
	default:
	}
	select {
	case s.collectWake <- struct{}{}:
	default:
	}
	return nil
}

// ID returns the source's id (its cluster ID).
func (s *Source) ID() string { return s.id }

// Status returns the outcome of the last scrape cycle.
func (s *Source) Status() SourceStatus {
	s.mtx.Lock()
	defer s.mtx.Unlock()
	return s.status
}

func (s *Source) getState() *sourceState {
	s.mtx.Lock()
	defer s.mtx.Unlock()
	return s.state
}

// installed logs the warnings of a new state and updates the per-rule series.
func (s *Source) installed(old, st *sourceState) {
	for _, w := range st.warnings {
		s.logger.Warn(w)
	}
	keep := map[string]bool{}
	for _, r := range st.rules {
		keep[r.Name] = true
		s.metrics.ruleFailures.WithLabelValues(r.Name)
	}
	if old != nil {
		for _, r := range old.rules {
			if !keep[r.Name] {
				s.metrics.ruleFailures.DeleteLabelValues(r.Name)
			}
		}
	}
	s.logger.WithFields(logrus.Fields{
		"from": redactURL(st.federate), "matchers": len(st.matchers), "workers": len(st.groups), "requests": st.requestCount(),
		"rules": len(st.rules), "collect_rules": len(st.collect), "interval": st.cfg.Interval.String(),
	}).Info("source configured")
}

// secrets returns what must not appear in an error string made of a source's answer: the
// credentials of the URLs and the bearer token.
func (st *sourceState) secrets() []string {
	return append(append(urlSecrets(st.federate), urlSecrets(st.query)...), st.client.secrets()...)
}

// buildState resolves cfg: defaults, validation, match file, allowlist, salt file, URLs, client
// and transforms.
func buildState(cfg SourceConfig, now func() time.Time) (*sourceState, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	st := &sourceState{cfg: cfg}
	fail := func(err error) (*sourceState, error) { return nil, fmt.Errorf("source %q: %w", cfg.ID, err) }
	var err error
	if st.federate, err = federateURL(cfg.From); err != nil {
		return fail(fmt.Errorf("from: %w", err))
	}
	if st.query, err = queryURL(cfg.FromQuery, cfg.From); err != nil {
		return fail(fmt.Errorf("from_query: %w", err))
	}
	matchers := append([]string(nil), cfg.Matchers...)
	if cfg.MatchFile != "" {
		fm, err := ReadMatchFile(cfg.MatchFile)
		if err != nil {
			return fail(err)
		}
		matchers = append(matchers, fm...)
	}
	rules := append([]RecordingRule(nil), cfg.RecordingRules...)
	var collect []CollectRule
	for _, r := range cfg.CollectRules {
		collect = append(collect, r.normalized())
	}
	renames := map[string]string{}
	a, hasAllowlist, err := cfg.LoadAllowlists()
	if err != nil {
		return fail(err)
	}
	if hasAllowlist {
		static, err := a.StaticMatchers(cfg.Labels[clusterTypeKey])
		if err != nil {
			return fail(fmt.Errorf("allowlist %s: %w", cfg.Allowlist, err))
		}
		matchers = append(matchers, static...)
		cr, err := a.SelectedCollectRules(cfg.Labels[clusterTypeKey])
		if err != nil {
			return fail(fmt.Errorf("allowlist %s: %w", cfg.Allowlist, err))
		}
		collect = append(collect, cr...)
		ar, err := a.RecordingRuleList()
		if err != nil {
			return fail(fmt.Errorf("allowlist %s: %w", cfg.Allowlist, err))
		}
		rules = append(rules, ar...)
		for k, v := range a.Renames {
			renames[k] = v
		}
		for _, u := range a.Unsupported() {
			st.warnings = append(st.warnings, fmt.Sprintf("allowlist %s: %s; ignored", cfg.Allowlist, u))
		}
	}
	st.matchers = dedup(matchers)
	if len(st.matchers) == 0 {
		st.matchers = []string{DefaultMatcher}
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.Name] {
			return fail(fmt.Errorf("recording rule %q is defined twice (config and allowlist?)", r.Name))
		}
		seen[r.Name] = true
	}
	st.rules = rules
	seen = map[string]bool{}
	for _, r := range collect {
		if seen[r.Name] {
			return fail(fmt.Errorf("collect rule %q is defined twice (config and allowlist?)", r.Name))
		}
		seen[r.Name] = true
	}
	st.collect = collect
	n := cfg.WorkerNumber
	if n > len(st.matchers) {
		st.warnings = append(st.warnings, fmt.Sprintf("worker_number %d is more than the %d matchers; using %d workers", n, len(st.matchers), len(st.matchers)))
		n = len(st.matchers)
	}
	st.groups = make([][]string, n)
	for i, m := range st.matchers {
		st.groups[i%n] = append(st.groups[i%n], m)
	}
	st.cutRequests()
	for k, v := range cfg.Renames {
		renames[k] = v
	}
	salt := string(cfg.AnonymizeSalt)
	if cfg.AnonymizeSaltFile != "" {
		b, err := os.ReadFile(cfg.AnonymizeSaltFile)
		if err != nil {
			return fail(fmt.Errorf("read anonymize salt file %s: %w", cfg.AnonymizeSaltFile, err))
		}
		if salt = strings.TrimSpace(string(b)); salt == "" {
			return fail(fmt.Errorf("anonymize salt file %s is empty", cfg.AnonymizeSaltFile))
		}
	}
	tc := ingest.DefaultTransformConfig()
	names := make([]string, 0, len(cfg.Labels))
	for k := range cfg.Labels {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		tc.Labels = append(tc.Labels, ingest.LabelPair{Name: k, Value: cfg.Labels[k]})
	}
	tc.Renames = renames
	tc.Elide = cfg.Elide
	tc.Anonymize = cfg.Anonymize
	tc.Salt = salt
	tc.ClusterID = cfg.ID
	tc.RelabelConfigs, tc.MetricRelabelConfigs = cfg.RelabelConfigs, cfg.MetricRelabelConfigs
	if err := tc.Validate(); err != nil {
		return fail(fmt.Errorf("transforms: %w", err))
	}
	st.transform = tc
	if st.client, err = newSourceClient(cfg.HTTPClientConfig); err != nil {
		return fail(err)
	}
	return st, nil
}
