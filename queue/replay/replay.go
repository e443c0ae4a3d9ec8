package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/sirupsen/logrus"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/wal"
)

// Options configure a Replay. Start from DefaultOptions.
type Options struct {
	// Name is the replay's own position (consumer) name: its lease on the WAL and where Resume
	// continues. It starts with Prefix, so that a replay never moves an endpoint's position.
	Name string
	// Prefix starts the position names of replays (collector sets agent.ReplayPrefix, "replay-"),
	// which no endpoint of an agent may use. Name must start with it; the other positions of a
	// WAL are endpoints'. Required.
	Prefix string
	// MinTime and MaxTime, when not zero, limit the replay to samples in [MinTime, MaxTime]
	// (milliseconds).
	MinTime, MaxTime int64
	// Undelivered starts a fresh replay at the position of the agent's endpoint Endpoint (the only
	// endpoint position of the WAL when Endpoint is empty) instead of the oldest retained data.
	Undelivered bool
	Endpoint    string
	// Resume continues from the replay's own position, and its counters, when the WAL has one
	// (else it starts at the oldest retained data, with a warning).
	Resume bool
	// DryRun counts what would be sent and sends nothing; the sender may be nil.
	DryRun bool
	// FlushDeadline is how long an interrupted replay keeps sending what is in flight. Default 30s.
	FlushDeadline time.Duration
	// MaxShards and MaxSamplesPerSend are the queue's (queue.Options). Defaults the queue's.
	MaxShards, MaxSamplesPerSend int
	// KeepAlive renews the lease (the position file) at least this often, also while the endpoint
	// is down. collector sets agent.ReplayKeepAlive. Default 1m.
	KeepAlive time.Duration
	// Out receives the summary of each cluster (or a dry run's count). Default io.Discard.
	Out io.Writer
	// Progress receives the progress: a line redrawn in place when it is a terminal, else a log
	// line every 10 seconds. Default io.Discard.
	Progress io.Writer
	// Now is the clock of the lease's timestamp and of the progress. Default time.Now.
	Now func() time.Time
}

// DefaultOptions returns the defaults documented on Options. Name is left empty.
func DefaultOptions() Options {
	q := queue.DefaultOptions()
	return Options{
		FlushDeadline:     30 * time.Second,
		MaxShards:         q.MaxShards,
		MaxSamplesPerSend: q.MaxSamplesPerSend,
		KeepAlive:         time.Minute,
		Out:               io.Discard,
		Progress:          io.Discard,
		Now:               time.Now,
	}
}

// Target is the WAL of one cluster: its ID and directory.
type Target struct{ ID, Dir string }

// ConsumerError is returned by Run when Options.Undelivered names no Endpoint and the WAL
// does not hold exactly one endpoint position to start from.
type ConsumerError struct {
	// Found are the endpoint positions of the WAL (replays' excluded).
	Found []string
}

func (e *ConsumerError) Error() string {
	return fmt.Sprintf("--undelivered: name the endpoint with --consumer (positions found: %s)", strings.Join(e.Found, ", "))
}

// IncompleteError is returned by Run when the replay ran to its end but not every sample in
// range reached the endpoint.
type IncompleteError struct {
	// Dropped counts the samples the receiver refused, over every cluster.
	Dropped int64
	// Missing counts the segments deleted before the replay read them (their samples were not
	// sent), over every cluster.
	Missing int
}

func (e *IncompleteError) Error() string {
	switch {
	case e.Missing > 0 && e.Dropped > 0:
		return fmt.Sprintf("replay dropped %d samples and skipped %d missing segments (see the summary above)", e.Dropped, e.Missing)
	case e.Missing > 0:
		return fmt.Sprintf("replay skipped %d missing segments: deleted before it could read them, their samples were not sent (see the summary above)", e.Missing)
	}
	return fmt.Sprintf("replay dropped %d samples (see the summary above)", e.Dropped)
}

// InterruptedError is returned by Run when an interrupt stopped the replay. Its position file
// stays for Options.Resume.
type InterruptedError struct {
	// Position is the delivered position the replay stopped at.
	Position wal.Position
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("replay interrupted at %v; continue with --resume", e.Position)
}

// Replay ships WALs to one endpoint under one position name. Runs must not overlap: they would
// share the position file.
type Replay struct {
	logger logrus.FieldLogger
	sender queue.Sender
	opts   Options
}

// New returns a Replay sending to sender (nil for a dry run).
func New(logger logrus.FieldLogger, sender queue.Sender, opts Options) (*Replay, error) {
	if logger == nil {
		logger = logrus.New()
	}
	def := DefaultOptions()
	if opts.Out == nil {
		opts.Out = def.Out
	}
	if opts.Progress == nil {
		opts.Progress = def.Progress
	}
	if opts.Now == nil {
		opts.Now = def.Now
	}
	switch {
	case opts.Prefix == "":
		return nil, errors.New("new replay: no prefix")
	case !strings.HasPrefix(opts.Name, opts.Prefix):
		return nil, fmt.Errorf("new replay: name %q does not start with %q: it could move an endpoint's position", opts.Name, opts.Prefix)
	case sender == nil && !opts.DryRun:
		return nil, errors.New("new replay: no sender")
	case opts.Resume && opts.Undelivered:
		return nil, errors.New("new replay: resume and undelivered are exclusive")
	}
	return &Replay{logger: logger, sender: sender, opts: opts}, nil
}

// plan is where and what one cluster's replay reads.
type plan struct {
	id    string
	dir   string
	start wal.Position
	// resumed is the replay's own state when it resumes: the baseline of its counters.
	resumed wal.ConsumerState
}

// Run replays each target in turn, stopping at the first error. Each value received from
// interrupt is one interrupt (see the package documentation).
func (r *Replay) Run(ctx context.Context, targets []Target, interrupt <-chan os.Signal) error {
	var dropped int64
	var missing int
	for _, t := range targets {
		p := plan{id: t.ID, dir: t.Dir}
		if !r.opts.Resume {
			var err error
			if p.start, err = r.start(t.Dir); err != nil {
				return err
			}
		} else if st, err := wal.ReadPosition(t.Dir, r.opts.Name); err == nil {
			p.start = st.Position
			p.resumed = st
		} else {
			r.logger.WithError(err).WithField("cluster_id", t.ID).Warn("no usable replay position to resume from; starting at the oldest retained data")
		}
		if !r.opts.DryRun {
			// Register: the position file is the replay's lease on the WAL; a running agent does
			// not truncate what it has not read (see agent.ReplayLeaseTTL). A fresh replay's
			// counters start at zero.
			st := p.resumed
			st.Position, st.Updated = p.start, r.opts.Now()
			if err := wal.CommitPosition(t.Dir, r.opts.Name, st); err != nil {
				return fmt.Errorf("cluster %s: register replay: %w", t.ID, err)
			}
		}
		total, err := r.count(ctx, p)
		if err != nil {
			return fmt.Errorf("cluster %s: %w", t.ID, err)
		}
		if r.opts.DryRun {
			fmt.Fprintf(r.opts.Out, "cluster %s: would send %d samples from position %v%s\n", t.ID, total, p.start, rangeText(r.opts.MinTime, r.opts.MaxTime))
			continue
		}
		n, m, err := r.ship(ctx, p, total, interrupt)
		dropped += n
		missing += m
		if err != nil {
			return err
		}
	}
	if dropped > 0 || missing > 0 {
		return &IncompleteError{Dropped: dropped, Missing: missing}
	}
	return nil
}

// start is where a fresh replay starts: the oldest retained data, or an endpoint's position
// (Options.Undelivered).
func (r *Replay) start(dir string) (wal.Position, error) {
	if !r.opts.Undelivered {
		return wal.Position{}, nil
	}
	consumer := r.opts.Endpoint
	if consumer == "" {
		names, err := wal.Consumers(dir)
		if err != nil {
			return wal.Position{}, err
		}
		var agents []string
		for _, n := range names {
			if !strings.HasPrefix(n, r.opts.Prefix) {
				agents = append(agents, n)
			}
		}
		if len(agents) != 1 {
			return wal.Position{}, &ConsumerError{Found: agents}
		}
		consumer = agents[0]
	}
	st, err := wal.ReadPosition(dir, consumer)
	if err != nil {
		return wal.Position{}, fmt.Errorf("--undelivered: %w", err)
	}
	return st.Position, nil
}

// count counts the samples a replay of p would send.
func (r *Replay) count(ctx context.Context, p plan) (int64, error) {
	rd, err := wal.NewReader(p.dir, p.start, wal.ReaderOptions{})
	if err != nil {
		return 0, err
	}
	defer rd.Close()
	var n int64
	for {
		b, err := rd.Next(ctx)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		var ce *wal.CorruptionError
		if errors.As(err, &ce) {
			if err := rd.SkipSegment(); err != nil {
				return n, err
			}
			continue
		}
		if err != nil {
			return n, err
		}
		n += inRange(b.Samples, r.opts.MinTime, r.opts.MaxTime)
	}
}

func inRange(samples []record.RefSample, minT, maxT int64) int64 {
	if minT == 0 && maxT == 0 {
		return int64(len(samples))
	}
	var n int64
	for _, s := range samples {
		if (minT == 0 || s.T >= minT) && (maxT == 0 || s.T <= maxT) {
			n++
		}
	}
	return n
}

// ship sends one cluster's WAL and returns the samples dropped and the segments found missing
// (deleted before the replay read them).
func (r *Replay) ship(ctx context.Context, p plan, total int64, interrupt <-chan os.Signal) (int64, int, error) {
	log := r.logger.WithFields(logrus.Fields{"cluster_id": p.id, "consumer": r.opts.Name})
	opts := queue.DefaultOptions()
	opts.Consumer = r.opts.Name
	opts.StopAtEnd = true
	opts.MinTime, opts.MaxTime = r.opts.MinTime, r.opts.MaxTime
	opts.FlushDeadline = r.opts.FlushDeadline
	opts.MaxShards = r.opts.MaxShards
	opts.MaxSamplesPerSend = r.opts.MaxSamplesPerSend
	opts.Capacity = max(opts.Capacity, 2*opts.MaxSamplesPerSend)
	opts.KeepAlive = r.opts.KeepAlive // renews the lease while the endpoint is down
	q, err := queue.New(log, prometheus.NewRegistry(), queue.DirSource(p.dir), r.sender, opts)
	if err != nil {
		return 0, 0, err
	}
	// The queue's counters are cumulative over the runs of one replay (they live in its position
	// file); this run's are the difference.
	start := queue.Stats{Delivered: p.resumed.Delivered, Dropped: p.resumed.Dropped, Deferred: p.resumed.Deferred}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- q.Run(runCtx) }()
	prog := newProgress(r.opts.Progress, log, total, r.opts.Now)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	interrupted := false
	for {
		select {
		case err := <-done:
			st := q.Stats()
			sent := st.Delivered - start.Delivered
			prog.finish(sent)
			var dropped int64
			drops := map[string]int64{}
			for reason, n := range st.Dropped {
				if d := n - start.Dropped[reason]; d > 0 {
					drops[reason] = d
					dropped += d
				}
			}
			// Samples the receiver refused as too old for its head are kept in the WAL's
			// dead-letter log under this replay's name, for `collector backfill`: not dropped.
			deferredText := ""
			if deferred := st.Deferred - start.Deferred; deferred > 0 {
				deferredText = fmt.Sprintf(", deferred for backfill %d", deferred)
				log.WithField("samples", deferred).Warn("the receiver refused samples as too old for its head: they are kept in the dead-letter log; run collector backfill to deliver them")
			}
			fmt.Fprintf(r.opts.Out, "cluster %s: sent %d samples, dropped %d (%s)%s, skipped outside the range %d, missing segments %d%s\n",
				p.id, sent, dropped, FormatReasons(drops), deferredText, st.Filtered, st.MissingSegments, rangeText(r.opts.MinTime, r.opts.MaxTime))
			if st.MissingSegments > 0 {
				log.WithField("segments", st.MissingSegments).Error("wal segments were deleted before the replay read them (evicted by a cap, or truncated after the replay's lease expired): their samples were not sent")
			}
			if interrupted {
				return dropped, st.MissingSegments, &InterruptedError{Position: st.Position}
			}
			if err == nil {
				// Done: release the lease; nothing is left to resume.
				err = wal.RemovePosition(p.dir, r.opts.Name)
			}
			return dropped, st.MissingSegments, err
		case <-tick.C:
			prog.update(q.Stats().Delivered - start.Delivered)
		case <-interrupt:
			if !interrupted {
				interrupted = true
				log.Warn("interrupted: flushing what is in flight, then stopping; continue with --resume")
				stop()
			} else {
				q.Abort()
			}
		}
	}
}

func rangeText(minT, maxT int64) string {
	if minT == 0 && maxT == 0 {
		return ""
	}
	f := func(t int64) string {
		if t == 0 {
			return "-"
		}
		return time.UnixMilli(t).UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf(" (range %s .. %s)", f(minT), f(maxT))
}

// FormatReasons formats counts by reason as reason=n, sorted by reason and joined by commas
// ("deadline=2,refused=5"); "0" when there are none. The replay's summary and `collector wal
// status` print their drops with it.
func FormatReasons(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ",")
}
