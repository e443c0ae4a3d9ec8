package e2e

import (
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// Parameters of TestAccountingAtScale.
const (
	scaleSeries = 50000
	// scaleScrapes is how many complete scrapes the schedule of faults spans, one every
	// scaleInterval: the fault phase lasts about two minutes, the test with its drain and checks
	// about 3 minutes.
	scaleScrapes = 60
	// scaleInterval is the collector's scrape interval and timeout. A scrape of 50k series from a
	// source in a test binary built with -race must fit in it on a loaded machine: at 1 s, every
	// scrape timed out for a minute when two test suites shared two cores.
	scaleInterval = "2s"
	scaleSeed     = 66
	scaleID       = "e2e-scale"
)

// scaleEvent is one step of the fault schedule, due once the source has served `at` complete
// scrapes.
type scaleEvent struct {
	at   int
	kind string // kill, kill-sending, receiver-stop, receiver-start, proxy-down, proxy-up
}

// scaleSchedule draws the kills of the test from seed: after 3 to 7 scrapes each, half of them
// right after a response (the collector is appending it), half once the proxy has forwarded a
// request after it (the collector is sending); plus a real receiver outage and a proxy outage.
func scaleSchedule(seed int64) []scaleEvent {
	rnd := rand.New(rand.NewSource(seed))
	ev := []scaleEvent{
		{12, "receiver-stop"}, {18, "receiver-start"},
		{27, "proxy-down"}, {32, "proxy-up"},
		{42, "receiver-stop"}, {47, "receiver-start"},
	}
	for at := 3 + rnd.Intn(5); at < scaleScrapes; at += 3 + rnd.Intn(5) {
		kind := "kill"
		if rnd.Intn(2) == 1 {
			kind = "kill-sending"
		}
		ev = append(ev, scaleEvent{at, kind})
	}
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].at < ev[j].at })
	return ev
}

// TestAccountingAtScale: a deterministic /federate source of 50k series, a sample of each at
// every scrape (every 2 s), and a collector killed (SIGKILL) at seeded moments through receiver
// outages (the real receiver stopped and started, and the proxy in front of it answering 503).
// At the end the
// source closes (503: nothing new), the collector drains and stops. Afterwards, against the
// source's log of what it served (oracle_test.go has the accounting):
//   - every second served whole, but for a run's last scrape, is at the receiver whole (all 50k
//     series, each with the served value: checked for every 500th series second by second, for
//     all of them by counts per second), or missing whole and covered by a failed scrape the
//     collector counted; a run's last scrape, which its kill may have cut off, is there whole or
//     not at all; the receiver holds no other second, no other series;
//   - the books: nothing dropped, evicted or left undelivered, and appended = delivered +
//     dropped exactly across the kills (a re-sent record is counted once), where appended is what
//     the WAL reads back (the collector runs with --wal-retention).
//
// The collector runs with --wal-fsync scrape (the default): a SIGKILL loses no page cache, so
// --wal-fsync segment would pass as well, but the default is what runs in production.
func TestAccountingAtScale(t *testing.T) {
	t.Parallel()
	tails := &logTails{}
	src := newFederateSource(t, scaleSeries, scaleID)
	rcv := startPrometheus(t, tails, "receiver", promConfig{Config: receiverConfig, Receiver: true})
	fp := newFaultProxy(t, rcv.URL(), scaleSeed)
	fp.checkOrder(false) // re-sends after a kill repeat samples
	col := newCollector(t, tails, "collector", scaleID,
		"--from", src.URL(),
		"--match", `{__name__=~".+"}`,
		"--to-upload", fp.WriteURL(),
		"--interval", scaleInterval,
		"--scrape-timeout", scaleInterval,
		"--batch-send-deadline", "200ms",
		"--min-backoff", "50ms",
		"--max-backoff", "2s",
		"--flush-deadline", "10s",
		"--wal-segment-size", strconv.Itoa(4<<20),
		"--wal-truncate-interval", "5s",
		"--wal-retention", "1h",
	)
	col.perStart = func(n int) []string { return []string{"--from-token", runToken(n)} }
	col.start()

	kills := 0
	schedule := scaleSchedule(scaleSeed)
	began := time.Now()
	for _, ev := range schedule {
		eventually(t, 60*time.Second, fmt.Sprintf("scrape %d of the source", ev.at), func() error {
			if n := src.completeCount(); n < ev.at {
				return fmt.Errorf("%d complete scrapes", n)
			}
			return nil
		})
		switch ev.kind {
		case "kill", "kill-sending":
			if ev.kind == "kill-sending" {
				// Wait for the proxy to see a request after this scrape: the collector is sending.
				base := fp.requests()
				eventually(t, 30*time.Second, "a remote-write request", func() error {
					if fp.requests() <= base {
						return errNotYet
					}
					return nil
				})
			}
			col.kill()
			kills++
			col.start()
		case "receiver-stop":
			rcv.stop()
		case "receiver-start":
			rcv.restart()
		case "proxy-down":
			fp.set(fault503)
		case "proxy-up":
			fp.set(faultNone)
		}
	}
	eventually(t, 60*time.Second, fmt.Sprintf("scrape %d of the source", scaleScrapes), func() error {
		if n := src.completeCount(); n < scaleScrapes {
			return fmt.Errorf("%d complete scrapes", n)
		}
		return nil
	})
	t.Logf("fault phase: %v, %d kills, %d complete scrapes served", time.Since(began).Round(time.Second), kills, src.completeCount())

	// The source closes (the running collector's last 200 is then appended or counted), the
	// collector catches up (its own view, cheap to poll: the receiver's queries over 50k series
	// are not) and stops gracefully.
	src.close()
	closedRun := runToken(col.starts)
	eventually(t, 30*time.Second, "a 503 from the closed source", func() error {
		ss := src.scrapes()
		if last := ss[len(ss)-1]; last.Token != closedRun || last.Status == 200 {
			return errNotYet
		}
		return nil
	})
	drain := time.Now()
	eventuallyEvery(t, 120*time.Second, time.Second, "the backlog delivered", func() error {
		st, err := col.status()
		if err != nil {
			return err
		}
		if u := st.Clusters[0].Consumers[0].UndeliveredSamples; u > 0 {
			return fmt.Errorf("%d samples undelivered", u)
		}
		return nil
	})
	t.Logf("backlog delivered %v after the fault phase", time.Since(drain).Round(time.Second))
	col.stop(30 * time.Second)

	runs, err := readRunLogs(col.logPath())
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != col.starts {
		t.Fatalf("the collector's log has %d runs, it was started %d times", len(runs), col.starts)
	}
	failures := map[string]int{}
	for i, r := range runs {
		if r.corruptions > 0 || len(r.fatal) > 0 {
			t.Errorf("run %d: %d wal corruption repairs, fatal lines %q", i+1, r.corruptions, r.fatal)
		}
		for k, v := range r.failures {
			failures[k] += v
		}
	}
	acc := accountScrapes(t, src, runs)
	checkScaleDelivered(t, src, rcv, acc)
	t.Logf("failed scrapes counted: %v", failures)

	// The books: nothing dropped, evicted or left undelivered, and appended = delivered +
	// dropped exactly, across the kills (a re-sent record is counted once).
	wc, err := scanWAL(col.dir(), func(string, sample) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	assertAccounted(t, col, wc, books{})
	t.Logf("appended = delivered = %d after %d kills", wc.samples, kills)
	t.Logf("proxy: %s", fp.summary())
}

// checkScaleDelivered is checkDelivered for a source too large to read back sample by sample:
// for every second the source served whole, the number of its series at the receiver with a
// sample at exactly that second (family by family) is all of them or none (none only when the
// accounting allows); no other second is there; the receiver holds exactly the source's series;
// and for every 500th series the samples at the receiver are the served ones, second by second.
func checkScaleDelivered(t testing.TB, src *federateSource, rcv *promServer, acc scrapeAccount) {
	t.Helper()
	times := make([]int64, 0, len(acc.required)+len(acc.atRisk))
	for ts := range acc.required {
		times = append(times, ts)
	}
	for ts := range acc.atRisk {
		times = append(times, ts)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	from, to := times[0], times[len(times)-1]

	names, err := labelValues(rcv.URL(), "__name__", fmt.Sprintf(`{clusterID=%q}`, scaleID), from-60_000, to+60_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != len(src.families) {
		t.Errorf("the receiver holds the metrics %v of the cluster, want the source's %d families", names, len(src.families))
	}
	// Exactly the generated series: the test is younger than the lookback (5m), so every series
	// the receiver got for the cluster has a sample in it.
	n, err := scalarQuery(rcv.URL(), fmt.Sprintf(`count({clusterID=%q})`, scaleID), time.UnixMilli(to))
	if err != nil {
		t.Fatal(err)
	}
	if int(n) != len(src.series) {
		t.Errorf("%v series at the receiver, want %d", n, len(src.series))
	}
	// Per second, per family (timestamp() drops the metric name): the series whose sample at the
	// evaluation time has exactly that timestamp.
	// A minute per query, each retried for a while: on a loaded machine a query over minutes of
	// 5k series can outlast the client's timeout.
	counts := map[int64]int{}
	for _, f := range src.families {
		q := fmt.Sprintf(`count(timestamp(%s{clusterID=%q}) == time())`, f.name, scaleID)
		for lo := from - 10_000; lo <= to+10_000; lo += 60_000 {
			hi := min(lo+59_000, to+10_000)
			var fc map[int64]int
			err := pollEvery(2*time.Minute, 2*time.Second, func() error {
				var err error
				fc, err = rangeCounts(rcv.URL(), q, lo, hi)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			for ts, c := range fc {
				counts[ts] += c
			}
		}
	}
	full := len(src.series)
	var lost, partial []string
	arrived := map[int64]bool{}
	for _, ts := range times {
		at := time.UnixMilli(ts).UTC().Format(time.TimeOnly)
		switch c := counts[ts]; {
		case c == full:
			arrived[ts] = true
		case c > 0:
			partial = append(partial, fmt.Sprintf("%s: %d of %d series", at, c, full))
		case acc.required[ts]:
			lost = append(lost, at)
		}
	}
	var extra []string
	for ts, c := range counts {
		if c > 0 && !acc.required[ts] && !acc.atRisk[ts] {
			extra = append(extra, fmt.Sprintf("%s: %d series", time.UnixMilli(ts).UTC().Format(time.TimeOnly), c))
		}
	}
	if len(partial) > 0 {
		t.Errorf("%d served seconds are at the receiver in part: %v", len(partial), partial)
	}
	if len(extra) > 0 {
		t.Errorf("%d seconds at the receiver were not served whole: %v", len(extra), extra)
	}
	if len(lost) > acc.allowance {
		t.Errorf("%d seconds served whole (not as a run's last request) are missing at the receiver, and the collector counted %d failed scrapes: %v", len(lost), acc.allowance, lost)
	}
	t.Logf("oracle: %d requests answered, %d whole responses required (%d seconds), %d seconds at risk of a kill; %d seconds at the receiver, %d missing and covered by %d counted failed scrapes",
		acc.requests, acc.responses, len(acc.required), len(acc.atRisk), len(arrived), len(lost), acc.allowance)

	// The values of every 500th series (100 of them), second by second, both ways.
	for i := 0; i < len(src.series); i += 500 {
		s := &src.series[i]
		key := s.lset.String()
		got, err := rawSamples(rcv.URL(), fmt.Sprintf("%s[%ds]", exactSelector(s), (to-from)/1000+60), time.UnixMilli(to+30_000))
		if err != nil {
			t.Fatal(err)
		}
		want := seriesSet{}
		for _, ts := range times {
			if arrived[ts] {
				want[key] = append(want[key], sample{T: ts, V: src.body(ts).values[i]})
			}
		}
		if n, ex := missingSamples(want, got, 3); n > 0 {
			t.Errorf("%d served samples of %s missing or different at the receiver:\n  %s", n, key, joinLines(ex))
		}
		if n, ex := missingSamples(got, want, 3); n > 0 {
			t.Errorf("%d samples of %s at the receiver were not served:\n  %s", n, key, joinLines(ex))
		}
		if t.Failed() {
			return
		}
	}
}

// exactSelector is a selector of exactly the series s.
func exactSelector(s *genSeries) string {
	b := []byte{'{'}
	s.lset.Range(func(l labels.Label) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, l.Name...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, l.Value)
	})
	return string(append(b, '}'))
}
