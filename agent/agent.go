package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/shipper"
	"github.com/collector-dev/collector/wal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/sirupsen/logrus"
)

// ErrFinalCommit is returned by Run (wrapped, with the source and endpoint) when a queue could not
// commit its position at shutdown: the next start resends from the last committed position.
var ErrFinalCommit = errors.New("final position commit failed")

// ReplayLeaseTTL is how long a `collector replay` position (ReplayPrefix) holds back the WAL's
// truncation after its last commit: a running replay renews it every ReplayKeepAlive; a killed
// one stops pinning the WAL this long after it died.
const (
	ReplayLeaseTTL  = 10 * time.Minute
	ReplayKeepAlive = time.Minute
)

// Options are the agent's settings besides its sources.
type Options struct {
	// Version is reported by collector_build_info and sent as the User-Agent.
	Version string
	// WALDir holds one WAL directory per source id.
	WALDir string
	// WAL configures every WAL; Consumers is set by the agent (one per endpoint).
	WAL wal.Options
	// Queue is the template of every queue; Consumer is set by the agent (the endpoint name).
	Queue queue.Options
	// Source configures the sources' ingestion.
	Source SourceOptions
	// TruncateInterval is how often the WALs are truncated behind the slowest endpoint and their
	// caps applied. Default 1m.
	TruncateInterval time.Duration
	// Listen is the address of the HTTP server (/metrics, /healthz, /readyz, /-/reload). Empty:
	// no server.
	Listen string
	// EnablePprof serves /debug/pprof on the HTTP server.
	EnablePprof bool
	// EnableLifecycle lets POST/PUT /-/reload call Reload; without it they answer 403 (as
	// Prometheus' --web.enable-lifecycle). SIGHUP is not affected.
	EnableLifecycle bool
	// Gatherer serves /metrics. Default: the registerer if it is a Gatherer.
	Gatherer prometheus.Gatherer
	// Reload is called by POST /-/reload; the cmd package re-reads flags and files and calls
	// Agent.Reload. Nil: the endpoint answers 501.
	Reload func() error
}

// DefaultOptions returns the defaults of the agent, its WALs and its queues.
func DefaultOptions() Options {
	return Options{
		WAL:              wal.DefaultOptions(),
		Queue:            queue.DefaultOptions(),
		Source:           DefaultSourceOptions(),
		TruncateInterval: time.Minute,
	}
}

// Agent is the composition root: per source a WAL, a scraper appending to it and a queue per
// endpoint shipping it; the truncation schedule; the HTTP endpoints.
type Agent struct {
	logger logrus.FieldLogger
	opts   Options

	clusters  []*cluster       // sorted by id; fixed after New
	endpoints []EndpointConfig // defaults applied; fixed after New
	clients   []*shipper.Client

	// stopping is set when Run begins its shutdown: /readyz answers 503 from then on.
	stopping atomic.Bool

	// ln is the HTTP listener, bound by New before anything touches the disk; Run serves it.
	ln net.Listener

	reloadMtx sync.Mutex // serialises Reload

	truncations *prometheus.CounterVec
}

type cluster struct {
	id     string
	wal    *wal.WAL
	source *Source
	queues []*endpointQueue
}

type endpointQueue struct {
	name   string
	queue  *queue.Queue
	sender *trackingSender
}

// New opens a WAL per source of cfg, builds the sources, and a shipper client and a queue per
// endpoint of cfg. Nothing runs until Run. On error everything opened is closed.
func New(logger logrus.FieldLogger, reg prometheus.Registerer, cfg Config, opts Options) (a *Agent, err error) {
	if opts.TruncateInterval <= 0 {
		opts.TruncateInterval = time.Minute
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("no remote-write endpoint configured: give --to-upload, or endpoints in the config file")
	}
	if opts.WALDir == "" {
		return nil, errors.New("wal directory is required")
	}
	endpoints := make([]EndpointConfig, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		endpoints[i] = e.WithDefaults()
	}
	if opts.Gatherer == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			opts.Gatherer = g
		}
	}
	a = &Agent{
		logger:    logger.WithField("component", "agent"),
		opts:      opts,
		endpoints: endpoints,
		truncations: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "collector_wal_truncation_failures_total",
			Help: "Scheduled WAL truncations that failed; the WAL grows until one succeeds.",
		}, []string{"cluster_id"}),
	}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if opts.Listen != "" {
		// Bound first: a port clash ends the start-up before a WAL directory is created.
		if a.ln, err = net.Listen("tcp", opts.Listen); err != nil {
			return a, fmt.Errorf("listen on %s: %w", opts.Listen, err)
		}
	}
	promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name:        "collector_build_info",
		Help:        "A metric with a constant 1 value labelled by the version of collector.",
		ConstLabels: prometheus.Labels{"version": opts.Version, "goversion": runtime.Version()},
	}).Set(1)

	senders := make([]queue.Sender, len(endpoints))
	for i, e := range endpoints {
		c, err := shipper.New(logger.WithField("endpoint", e.Name), prometheus.WrapRegistererWith(prometheus.Labels{"endpoint": e.Name}, reg), e.URL, e.ShipperOptions(opts.Version))
		if err != nil {
			return a, fmt.Errorf("endpoint %s: %w", e.Name, err)
		}
		a.clients = append(a.clients, c)
		senders[i] = c
	}
	walOpts := opts.WAL
	walOpts.Consumers = nil
	walOpts.LeasePrefix, walOpts.LeaseTTL = ReplayPrefix, ReplayLeaseTTL
	for _, e := range endpoints {
		walOpts.Consumers = append(walOpts.Consumers, e.Name)
	}
	srcs := append([]SourceConfig(nil), cfg.Sources...)
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].ID < srcs[j].ID })
	for _, sc := range srcs {
		creg := prometheus.WrapRegistererWith(prometheus.Labels{"cluster_id": sc.ID}, reg)
		clog := logger.WithField("cluster_id", sc.ID)
		w, err := wal.Open(clog.WithField("component", "wal"), creg, opts.WALDir, sc.ID, walOpts)
		if err != nil {
			return a, fmt.Errorf("source %s: %w", sc.ID, err)
		}
		c := &cluster{id: sc.ID, wal: w}
		a.clusters = append(a.clusters, c)
		if c.source, err = NewSource(clog.WithField("component", "scrape"), creg, sc, w, opts.Source); err != nil {
			return a, err // names the source already
		}
		for i, e := range endpoints {
			qo := e.QueueOptions(opts.Queue)
			qo.Consumer = e.Name
			ts := &trackingSender{Sender: senders[i]}
			q, err := queue.New(clog.WithFields(logrus.Fields{"component": "queue", "endpoint": e.Name}),
				prometheus.WrapRegistererWith(prometheus.Labels{"endpoint": e.Name}, creg), w, ts, qo)
			if err != nil {
				return a, fmt.Errorf("queue of source %s to endpoint %s: %w", sc.ID, e.Name, err)
			}
			c.queues = append(c.queues, &endpointQueue{name: e.Name, queue: q, sender: ts})
		}
	}
	return a, nil
}

// Run runs every scraper, queue and the truncation schedule (and the HTTP server when Listen is
// set) until ctx is cancelled, then shuts down in order: scraping stops first, the queues flush
// what they hold until their flush deadline and commit their positions, the WALs are closed.
// What was not acknowledged stays in the WAL and is sent after the restart. Run returns early,
// after the same shutdown, when a part fails for good. Call it once.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	var (
		fatalOnce sync.Once
		fatalErr  error
		// stopErrs are the queues' errors during the shutdown (a failed final commit).
		stopMtx  sync.Mutex
		stopErrs []error
	)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	fatal := func(err error) {
		fatalOnce.Do(func() { fatalErr = err })
		stop()
	}

	var srv *http.Server
	srvDone := make(chan error, 1)
	if a.ln != nil {
		ln := a.ln
		a.ln = nil // srv closes it from now on
		srv = newServer(a.Handler())
		go func() { srvDone <- srv.Serve(ln) }()
		a.logger.WithField("listen", ln.Addr().String()).Info("http server listening")
	}

	scrapeCtx, stopScrapes := context.WithCancel(context.Background())
	queueCtx, stopQueues := context.WithCancel(context.Background())
	defer stopScrapes()
	defer stopQueues()
	var scrapers, queues sync.WaitGroup
	for _, c := range a.clusters {
		scrapers.Add(1)
		go func(c *cluster) {
			defer scrapers.Done()
			if err := c.source.Run(scrapeCtx); err != nil && scrapeCtx.Err() == nil {
				fatal(fmt.Errorf("source %s: %w", c.id, err))
			}
		}(c)
		for _, eq := range c.queues {
			queues.Add(1)
			go func(c *cluster, eq *endpointQueue) {
				defer queues.Done()
				err := eq.queue.Run(queueCtx)
				switch {
				case err == nil:
				case queueCtx.Err() == nil:
					fatal(fmt.Errorf("queue of source %s to endpoint %s: %w", c.id, eq.name, err))
				default:
					// The final commit failed: the next start resends from the last committed
					// position (duplicates, no loss). Logged here, once, and Run fails.
					a.logger.WithFields(logrus.Fields{"cluster_id": c.id, "endpoint": eq.name, "err": err}).
						Error("final position commit failed; the next start resends from the last committed position")
					stopMtx.Lock()
					stopErrs = append(stopErrs, fmt.Errorf("%w: source %s, endpoint %s: %w", ErrFinalCommit, c.id, eq.name, err))
					stopMtx.Unlock()
				}
			}(c, eq)
		}
	}
	scrapers.Add(1)
	go func() {
		defer scrapers.Done()
		a.truncateLoop(scrapeCtx)
	}()

	select {
	case <-runCtx.Done():
	case err := <-srvDone:
		fatal(fmt.Errorf("http server: %w", err))
	}
	a.stopping.Store(true)
	a.logger.WithField("flush_deadline", a.opts.Queue.FlushDeadline.String()).Info("shutting down: scraping stops, queues flush what they hold")
	stopScrapes()
	scrapers.Wait()
	stopQueues()
	queues.Wait()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	if len(stopErrs) > 0 {
		return errors.Join(append([]error{fatalErr}, stopErrs...)...)
	}
	a.logger.Info("stopped: positions committed")
	return fatalErr
}

// Abort cancels the requests the queues have in flight, for a second signal during the flush.
// What they held stays in the WAL.
func (a *Agent) Abort() {
	for _, c := range a.clusters {
		for _, eq := range c.queues {
			eq.queue.Abort()
		}
	}
}

func (a *Agent) truncateLoop(ctx context.Context) {
	t := time.NewTicker(a.opts.TruncateInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.TruncateNow()
		}
	}
}

// TruncateNow truncates every WAL behind its slowest endpoint and applies the caps.
func (a *Agent) TruncateNow() {
	for _, c := range a.clusters {
		st, err := c.wal.Truncate()
		if err != nil {
			a.truncations.WithLabelValues(c.id).Inc()
			a.logger.WithError(err).WithField("cluster_id", c.id).Error("wal truncation failed; retrying at the next interval")
			continue
		}
		if st.Deleted > 0 || st.Evicted > 0 {
			a.logger.WithFields(logrus.Fields{"cluster_id": c.id, "deleted": st.Deleted, "evicted": st.Evicted, "checkpoint": st.Checkpoint}).Debug("wal truncated")
		}
	}
}

// Reload applies cfg to the running sources without touching the WALs: matchers (and match
// files), allowlists, labels, renames, rules, the schedule, tokens and certificates of the
// sources. The endpoints re-read their credential and certificate files by themselves (see
// shipper.Options.HTTPClientConfig); adding, removing or changing sources or endpoints needs a
// restart and is refused. Every source's new configuration is resolved (files read) before any
// is applied: on error nothing changes and the error says why.
func (a *Agent) Reload(cfg Config) error {
	a.reloadMtx.Lock()
	defer a.reloadMtx.Unlock()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := a.sameEndpoints(cfg.Endpoints); err != nil {
		return err
	}
	byID := map[string]SourceConfig{}
	for _, s := range cfg.Sources {
		byID[s.ID] = s
	}
	if len(byID) != len(a.clusters) {
		return fmt.Errorf("reload changes the set of sources (%d configured, %d running): restart to add or remove sources", len(byID), len(a.clusters))
	}
	for _, c := range a.clusters {
		if _, ok := byID[c.id]; !ok {
			return fmt.Errorf("reload removes source %s: restart to add or remove sources", c.id)
		}
	}
	// Resolve every source's configuration (files included) before applying any. Should a file
	// change between this check and Source.Reload, that source keeps its old configuration and
	// the others apply; the error names it.
	for _, c := range a.clusters {
		st, err := buildState(byID[c.id], time.Now)
		if err != nil {
			return err // names the source
		}
		st.client.Close()
	}
	var errs []error
	for _, c := range a.clusters {
		if err := c.source.Reload(byID[c.id]); err != nil {
			errs = append(errs, fmt.Errorf("source %s: %w", c.id, err))
		}
	}
	return errors.Join(errs...)
}

// sameEndpoints refuses a reload that changes the endpoints. They are compared by value, not by
// a marshalled form, in which inline credentials would all read <secret>.
func (a *Agent) sameEndpoints(eps []EndpointConfig) error {
	running := map[string]EndpointConfig{}
	for _, e := range a.endpoints {
		running[e.Name] = e.WithDefaults()
	}
	var changed []string
	seen := map[string]bool{}
	for _, e := range eps {
		e = e.WithDefaults()
		seen[e.Name] = true
		switch r, ok := running[e.Name]; {
		case !ok:
			changed = append(changed, "adds "+e.Name)
		case !reflect.DeepEqual(r, e):
			changed = append(changed, "changes "+e.Name)
		}
	}
	for _, e := range a.endpoints {
		if !seen[e.Name] {
			changed = append(changed, "removes "+e.Name)
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("reload %s: restart to add, remove or change endpoints", strings.Join(changed, ", "))
	}
	return nil
}

func (a *Agent) close() {
	if a.ln != nil {
		_ = a.ln.Close()
		a.ln = nil
	}
	for _, c := range a.clusters {
		if c.wal != nil {
			if err := c.wal.Close(); err != nil && !errors.Is(err, wal.ErrClosed) {
				a.logger.WithError(err).WithField("cluster_id", c.id).Error("close wal")
			}
		}
	}
	for _, c := range a.clients {
		_ = c.Close()
	}
}
