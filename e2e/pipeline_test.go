package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// fastFlags are the collector flags of every pipeline: a scrape a second, quick batches and
// retries, small segments (rotation and truncation happen within a test), and delivered segments
// retained for an hour so that the WAL can be read back and compared with the receiver.
func fastFlags() []string {
	return []string{
		"--interval", "1s",
		"--batch-send-deadline", "200ms",
		"--min-backoff", "50ms",
		"--max-backoff", "2s",
		"--flush-deadline", "5s",
		"--wal-segment-size", "131072",
		"--wal-truncate-interval", "5s",
		"--wal-retention", "1h",
	}
}

// pipelineSeries is the size of a pipeline's generated source (with a churn window of 20 more).
const pipelineSeries = 200

// pipeline is a generated /federate source, a receiver Prometheus (possibly behind a proxy) and
// a collector between them; the source's log of what it served is the oracle (finish).
type pipeline struct {
	t     testing.TB
	tails *logTails
	id    string
	src   *federateSource
	rcv   *promServer
	col   *collector
	// hub, when set, reads the cluster's samples in [from, to] (ms) at the hub instead of rcv (a
	// Thanos query: thanos_helpers_test.go); report is what finish's oracle found.
	hub    func(from, to int64) (seriesSet, error)
	report deliveryReport
}

// pipelineOptions vary a pipeline.
type pipelineOptions struct {
	// front, when set, returns the URL the collector sends to instead of the receiver's (a proxy
	// in front of it).
	front func(*promServer) string
	// receiverConfig replaces receiverConfig.
	receiverConfig string
	// flags are added to fastFlags (a later flag wins).
	flags []string
	// receiverBin and receiverArgs: another prometheus binary as the receiver (Debian's when
	// empty), with more flags.
	receiverBin  string
	receiverArgs []string
}

// newPipeline starts a source and a receiver and prepares (does not start) a collector of
// cluster id federating everything from the source to the receiver; each start of the collector
// asks the source with its own token (runToken).
func newPipeline(t testing.TB, id string, o pipelineOptions) *pipeline {
	t.Helper()
	p := &pipeline{t: t, tails: &logTails{}, id: id}
	p.src = newChurningSource(t, pipelineSeries, id, churnOptions{Width: 20, Step: 5, Period: 5})
	rc := receiverConfig
	if o.receiverConfig != "" {
		rc = o.receiverConfig
	}
	p.rcv = startPrometheus(t, p.tails, "receiver", promConfig{Config: rc, Receiver: true, Bin: o.receiverBin, Args: o.receiverArgs})
	writeURL := p.rcv.WriteURL()
	if o.front != nil {
		writeURL = o.front(p.rcv)
	}
	args := append([]string{"--from", p.src.URL(), "--match", `{__name__=~".+"}`, "--to-upload", writeURL}, fastFlags()...)
	p.col = newCollector(t, p.tails, "collector", id, append(args, o.flags...)...)
	p.col.perStart = func(n int) []string { return []string{"--from-token", runToken(n)} }
	return p
}

// selector is the range selector of every sample of the pipeline's cluster at a receiver.
func (p *pipeline) selector() string { return fmt.Sprintf(`{clusterID=%q}[1h]`, p.id) }

// waitFlowing waits until the receiver holds samples of the source's first series from at least
// n scrapes.
func (p *pipeline) waitFlowing(n int) {
	p.t.Helper()
	eventually(p.t, 60*time.Second, "samples at the receiver", func() error {
		ss, err := rawSamples(p.rcv.URL(), exactSelector(&p.src.series[0])+"[1h]", time.Time{})
		if err != nil {
			return err
		}
		if got := len(first(ss)); got < n {
			return fmt.Errorf("%d samples of %s, want %d", got, p.src.series[0].lset, n)
		}
		return nil
	})
}

// waitAppended waits until the running collector has taken a scrape of a second at or after t:
// the source answered it a whole response of such a second, and then a later request, so the
// collector appended it or counted it as failed (see oracle_test.go).
func (p *pipeline) waitAppended(after time.Time, timeout time.Duration) {
	p.t.Helper()
	eventually(p.t, timeout, fmt.Sprintf("a scrape after %s taken", after.Format(time.RFC3339Nano)), func() error {
		if p.col.proc.exited() {
			return errExited{p.col.name, p.col.proc.err}
		}
		tok := runToken(p.col.starts)
		taken := false
		for _, s := range p.src.scrapes() {
			if s.Token != tok {
				continue
			}
			if taken {
				return nil // a later request
			}
			taken = s.ok() && s.T >= after.UnixMilli()
		}
		return errNotYet
	})
}

// servedBetween counts the samples the source served whole at seconds in [from, to].
func (p *pipeline) servedBetween(from, to time.Time) int {
	seen, n := map[int64]bool{}, 0
	for _, s := range p.src.scrapes() {
		if s.ok() && !seen[s.T] && s.T >= from.UnixMilli() && s.T <= to.UnixMilli() {
			seen[s.T] = true
			n += len(p.src.body(s.T).values)
		}
	}
	return n
}

// finish ends a pipeline whose collector runs: the source closes (503: nothing new to append),
// the collector delivers its backlog (wal status: nothing undelivered) and stops on SIGTERM with
// exit 0. Then the oracle compares what the source served with the receiver (checkDelivered),
// no run of the collector logged a WAL corruption or anything fatal, and the books balance
// (assertAccounted). It returns what the WAL holds.
func (p *pipeline) finish(b books) walContents {
	p.t.Helper()
	p.src.close()
	tok := runToken(p.col.starts)
	eventually(p.t, 30*time.Second, "a 503 from the closed source", func() error {
		if p.col.proc.exited() {
			return errExited{p.col.name, p.col.proc.err}
		}
		ss := p.src.scrapes()
		if last := ss[len(ss)-1]; last.Token != tok || last.Status == 200 {
			return errNotYet
		}
		return nil
	})
	eventuallyEvery(p.t, 60*time.Second, time.Second, "the backlog delivered", func() error {
		st, err := p.col.status()
		if err != nil {
			return err
		}
		if u := st.Clusters[0].Consumers[0].UndeliveredSamples; u > 0 {
			return fmt.Errorf("%d samples undelivered", u)
		}
		return nil
	})
	p.col.stop(stopTimeout)
	runs, err := readRunLogs(p.col.logPath())
	if err != nil {
		p.t.Fatal(err)
	}
	if len(runs) != p.col.starts {
		p.t.Fatalf("the collector's log has %d runs, it was started %d times", len(runs), p.col.starts)
	}
	for i, r := range runs {
		if r.corruptions > 0 || len(r.fatal) > 0 {
			p.t.Errorf("run %d: %d wal corruption repairs, fatal lines %q", i+1, r.corruptions, r.fatal)
		}
	}
	read := p.hub
	if read == nil {
		read = func(from, to int64) (seriesSet, error) { return receiverSamples(p.rcv.URL(), p.id, p.src, from, to) }
	}
	rep := checkDeliveredFrom(p.t, p.src, runs, read)
	p.report = rep
	p.t.Logf("oracle: %s", rep)
	wc, err := readWAL(p.col.dir())
	if err != nil {
		p.t.Fatal(err)
	}
	assertAccounted(p.t, p.col, wc, b)
	return wc
}

func joinLines(s []string) string {
	out := ""
	for i, l := range s {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}

// books says what assertAccounted allows.
type books struct {
	// dropReasons are the drop reasons allowed (none by default).
	dropReasons []string
	// deferred allows samples deferred for backfill (refused as too old by the receiver).
	deferred bool
}

// assertAccounted checks the WAL's books after the collector stopped: no corruption, nothing
// undelivered, nothing evicted, nothing dropped but for the allowed reasons, and appended =
// delivered + dropped, where appended is what the WAL reads back (the collector runs with
// --wal-retention) and delivered and dropped are the position file's cumulative counters. The
// counters cover exactly the records before the committed position, so this holds across
// SIGKILLs too: a record re-sent after a kill is counted once.
func assertAccounted(t testing.TB, c *collector, wc walContents, b books) {
	t.Helper()
	st, err := c.status()
	if err != nil {
		t.Fatal(err)
	}
	cl := st.Clusters[0]
	if len(cl.Consumers) != 1 {
		t.Fatalf("wal status: %d consumers, want 1: %+v", len(cl.Consumers), cl.Consumers)
	}
	if cl.Samples != wc.samples {
		t.Errorf("wal status: %d samples retained, the wal reads back %d", cl.Samples, wc.samples)
	}
	if len(cl.Corruption) > 0 {
		t.Errorf("wal status: corruption %v", cl.Corruption)
	}
	cs := cl.Consumers[0]
	if cs.UndeliveredSamples != 0 {
		t.Errorf("consumer %s: %d samples undelivered after the drain", cs.Name, cs.UndeliveredSamples)
	}
	if len(cs.Evicted) > 0 {
		t.Errorf("consumer %s: evicted %v; want none", cs.Name, cs.Evicted)
	}
	var dropped int64
	for reason, n := range cs.Dropped {
		dropped += n
		if !slices.Contains(b.dropReasons, reason) {
			t.Errorf("consumer %s: %d samples dropped as %s; want none", cs.Name, n, reason)
		}
	}
	if cs.Deferred > 0 && !b.deferred {
		t.Errorf("consumer %s: %d samples deferred for backfill; want none", cs.Name, cs.Deferred)
	}
	if sum := cs.Delivered + cs.Deferred + dropped; sum != wc.samples {
		t.Errorf("consumer %s: delivered %d + deferred %d + dropped %d = %d, the wal holds %d: appended = delivered + deferred + dropped does not hold", cs.Name, cs.Delivered, cs.Deferred, dropped, sum, wc.samples)
	}
}
