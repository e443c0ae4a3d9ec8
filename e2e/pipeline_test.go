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

// pipeline is a source Prometheus, a receiver Prometheus (possibly behind a proxy) and a
// collector between them.
type pipeline struct {
	t     testing.TB
	tails *logTails
	id    string
	src   *promServer
	rcv   *promServer
	col   *collector
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
}

// newPipeline starts a source and a receiver and prepares (does not start) a collector of
// cluster id federating {job="prometheus"} from the source to the receiver.
func newPipeline(t testing.TB, id string, o pipelineOptions) *pipeline {
	t.Helper()
	p := &pipeline{t: t, tails: &logTails{}, id: id}
	p.src = startPrometheus(t, p.tails, "source", promConfig{Config: sourceConfig})
	rc := receiverConfig
	if o.receiverConfig != "" {
		rc = o.receiverConfig
	}
	p.rcv = startPrometheus(t, p.tails, "receiver", promConfig{Config: rc, Receiver: true})
	writeURL := p.rcv.WriteURL()
	if o.front != nil {
		writeURL = o.front(p.rcv)
	}
	args := append([]string{"--from", p.src.URL(), "--match", `{job="prometheus"}`, "--to-upload", writeURL}, fastFlags()...)
	p.col = newCollector(t, p.tails, "collector", id, append(args, o.flags...)...)
	return p
}

// selector is the range selector of every sample of the pipeline's cluster at a receiver.
func (p *pipeline) selector() string { return fmt.Sprintf(`{clusterID=%q}[1h]`, p.id) }

// waitFlowing waits until the receiver holds samples of the cluster from at least n scrapes.
func (p *pipeline) waitFlowing(n int) {
	p.t.Helper()
	eventually(p.t, 60*time.Second, "samples at the receiver", func() error {
		ss, err := rawSamples(p.rcv.URL(), fmt.Sprintf(`up{clusterID=%q}[1h]`, p.id), time.Time{})
		if err != nil {
			return err
		}
		if got := len(first(ss)); got < n {
			return fmt.Errorf("%d samples of up, want %d", got, n)
		}
		return nil
	})
}

// waitAppended waits until the WAL holds a sample with a timestamp at or after t.
func (p *pipeline) waitAppended(after time.Time, timeout time.Duration) {
	p.t.Helper()
	eventually(p.t, timeout, fmt.Sprintf("a sample after %s in the wal", after.Format(time.RFC3339Nano)), func() error {
		wc, err := readWAL(p.col.dir())
		if err != nil {
			return err
		}
		if newest := wc.newest(); newest < after.UnixMilli() {
			return fmt.Errorf("newest sample at %s", time.UnixMilli(newest).Format(time.RFC3339Nano))
		}
		return nil
	})
}

// newest returns the newest timestamp in the WAL (ms), 0 when empty.
func (wc walContents) newest() int64 {
	var n int64
	for ts := range wc.times {
		n = max(n, ts)
	}
	return n
}

// samplesBetween counts the WAL's samples with a timestamp in [from, to].
func (wc walContents) samplesBetween(from, to time.Time) int {
	n := 0
	for ts, c := range wc.times {
		if ts >= from.UnixMilli() && ts <= to.UnixMilli() {
			n += c
		}
	}
	return n
}

// assertAllDelivered waits until every sample of the WAL is at the receiver base and returns the
// WAL's contents. The WAL is read once: samples appended later are not waited for.
func assertAllDelivered(t testing.TB, dir, base, selector string, timeout time.Duration) walContents {
	t.Helper()
	wc, err := readWAL(dir)
	if err != nil {
		t.Fatal(err)
	}
	if wc.samples == 0 {
		t.Fatalf("the wal in %s holds no sample", dir)
	}
	var (
		missing  int
		examples []string
	)
	err = pollEvery(timeout, 500*time.Millisecond, func() error {
		got, err := rawSamples(base, selector, time.Time{})
		if err != nil {
			return err
		}
		missing, examples = missingSamples(wc.series, got, 5)
		if missing > 0 {
			return fmt.Errorf("%d of the wal's %d samples (%d series) are not at the receiver", missing, wc.samples, len(wc.series))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v; for example:\n  %s", err, joinLines(examples))
	}
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
	if sum := cs.Delivered + dropped; sum != wc.samples {
		t.Errorf("consumer %s: delivered %d + dropped %d = %d, the wal holds %d: appended = delivered + dropped does not hold", cs.Name, cs.Delivered, dropped, sum, wc.samples)
	}
}
