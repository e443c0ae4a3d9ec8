package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The oracle of the tests that run the generated source: what the source served (its log of
// answered requests, federateSource.scrapes and .body) against what the receiver holds, series
// by series and timestamp by timestamp, after the collector's transforms (clusterID added, the
// external label prometheus elided: expectedLabels). The collector's WAL plays no part in it.
//
// The accounting, per run of the collector (a run is one process; the source tells them apart by
// the bearer token --from-token runToken(n) of the n'th start):
//
//   - The collector scrapes with one worker, one request per cycle, and starts a cycle only after
//     the previous one ended: when the source answers a run's request, that run's previous
//     request has been appended (committed to the WAL) or counted as a failed scrape. So every
//     whole 200 response (servedScrape.ok) that is not the last request of its run is required:
//     its samples must all be at the receiver, unless the run logged a failed scrape for it
//     ("scrape failed", with a reason) — such a scrape appends nothing and is lost by design, so
//     it must be missing whole, and the number of such scrapes is bounded by the failures the
//     runs logged, less those the source caused itself (non-200 or broken responses that were
//     not a run's last request).
//   - The last request of a run is at risk: the run may have been SIGKILLed (or stopped) before it
//     appended it, and then nobody was told it was appended: nothing was acknowledged. It must be
//     at the receiver whole or not at all; the next run scrapes the then current second again.
//   - Nothing else is at the receiver: every sample there was served whole, with that value.
//   - A second served twice (two runs in the same second) holds the same samples both times.

// runToken is the source bearer token of the n'th start of a collector: the source logs it.
func runToken(n int) string { return fmt.Sprintf("run-%d", n) }

// runLog is what one run of the collector logged.
type runLog struct {
	// failures are the failed scrapes it counted and logged ("scrape failed"), by reason.
	failures  map[string]int
	nFailures int
	// tornTails and corruptions are the WAL repairs it made at open, by kind.
	tornTails, corruptions int
	// fatal are lines at level fatal or panic.
	fatal []string
}

var (
	reReason = regexp.MustCompile(`\breason=("[^"]*"|\S+)`)
	reKind   = regexp.MustCompile(`\bkind=(\S+)`)
)

// readRunLogs splits the collector's log at the "=== " line startProcess writes before each
// start: one runLog per start, in order.
func readRunLogs(path string) ([]runLog, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read the collector's log: %w", err)
	}
	defer f.Close()
	var runs []runLog
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "=== ") {
			runs = append(runs, runLog{failures: map[string]int{}})
			continue
		}
		if len(runs) == 0 {
			continue
		}
		r := &runs[len(runs)-1]
		switch {
		case strings.Contains(line, "level=fatal"), strings.Contains(line, "level=panic"), strings.HasPrefix(line, "panic:"):
			r.fatal = append(r.fatal, line)
		case strings.Contains(line, "msg=\"scrape failed"):
			reason := "unknown"
			if m := reReason.FindStringSubmatch(line); m != nil {
				reason = strings.Trim(m[1], `"`)
			}
			r.failures[reason]++
			r.nFailures++
		case strings.Contains(line, "msg=\"wal repaired"):
			if m := reKind.FindStringSubmatch(line); m != nil && m[1] == "torn_tail" {
				r.tornTails++
			} else {
				r.corruptions++
			}
		}
	}
	return runs, sc.Err()
}

// deliveryReport is what checkDelivered found.
type deliveryReport struct {
	requests      int // requests the source answered
	required      int // whole 200 responses that had to arrive (or be counted failed)
	requiredTimes int // their distinct seconds
	samples       int // samples of those seconds
	atRisk        int // seconds served only as a run's last request
	atRiskArrived int // of those, the seconds at the receiver (whole)
	failedLost    int // required seconds missing whole, covered by counted failed scrapes
	allowance     int // failed scrapes the runs counted, less those the source caused
	received      int // samples at the receiver
}

func (d deliveryReport) String() string {
	return fmt.Sprintf("%d requests answered; %d whole responses required (%d seconds, %d samples), %d missing whole and covered by %d counted failed scrapes; %d seconds at risk of a kill, %d of them arrived; %d samples at the receiver",
		d.requests, d.required, d.requiredTimes, d.samples, d.failedLost, d.allowance, d.atRisk, d.atRiskArrived, d.received)
}

// scrapeAccount sorts the seconds the source served whole (see the accounting above).
type scrapeAccount struct {
	requests  int            // requests the source answered
	responses int            // whole 200 responses required
	required  map[int64]bool // seconds that must be at the receiver (or missing whole, covered)
	atRisk    map[int64]bool // seconds served only as a run's last request
	allowance int            // failed scrapes the runs counted, less those the source caused
}

// accountScrapes sorts what src served to the runs of a collector (runs: their logs, in the
// order of the starts).
func accountScrapes(t testing.TB, src *federateSource, runs []runLog) scrapeAccount {
	t.Helper()
	served := src.scrapes()
	acc := scrapeAccount{requests: len(served), required: map[int64]bool{}, atRisk: map[int64]bool{}}
	byRun := map[int][]servedScrape{}
	for _, s := range served {
		n, err := strconv.Atoi(strings.TrimPrefix(s.Token, "run-"))
		if err != nil || n < 1 || n > len(runs) || runToken(n) != s.Token {
			t.Fatalf("the source answered a request with token %q, which no run of the collector (%d) had", s.Token, len(runs))
		}
		byRun[n] = append(byRun[n], s)
	}
	for n, ss := range byRun {
		caused := 0
		for i, s := range ss {
			last := i == len(ss)-1
			switch {
			case !s.ok():
				if !last {
					caused++ // the collector saw a failure and counted it
				}
			case last:
				acc.atRisk[s.T] = true
			default:
				acc.required[s.T] = true
				acc.responses++
			}
		}
		acc.allowance += max(0, runs[n-1].nFailures-caused)
	}
	for ts := range acc.required {
		delete(acc.atRisk, ts)
	}
	if len(acc.required) == 0 {
		t.Fatal("the source served no required scrape")
	}
	return acc
}

// checkDelivered compares what src served to the runs of a collector (runs: their logs, in the
// order of the starts) with what the receiver at rcvURL holds for cluster clusterID, and fails t
// for every sample that breaks the accounting above. Call it after the collector stopped and
// its WAL was drained.
func checkDelivered(t testing.TB, src *federateSource, rcvURL, clusterID string, runs []runLog) deliveryReport {
	t.Helper()
	return checkDeliveredFrom(t, src, runs, func(from, to int64) (seriesSet, error) {
		return receiverSamples(rcvURL, clusterID, src, from, to)
	})
}

// checkDeliveredFrom is checkDelivered with the hub read by read: every sample of the cluster
// with timestamps in [from, to] (ms), keyed like the source's series (a Thanos query: thanos_helpers_test.go).
func checkDeliveredFrom(t testing.TB, src *federateSource, runs []runLog, read func(from, to int64) (seriesSet, error)) deliveryReport {
	t.Helper()
	acc := accountScrapes(t, src, runs)
	required, atRisk := acc.required, acc.atRisk
	rep := deliveryReport{requests: acc.requests, required: acc.responses, allowance: acc.allowance,
		requiredTimes: len(required), atRisk: len(atRisk)}

	// want: every sample served whole, by series and second.
	want := map[string]map[int64]float64{}
	var minT, maxT int64 = 1<<62 - 1, 0
	for _, set := range []map[int64]bool{required, atRisk} {
		for ts := range set {
			minT, maxT = min(minT, ts), max(maxT, ts)
			b := src.body(ts)
			for j, v := range b.values {
				id := j
				if b.ids != nil {
					id = b.ids[j]
				}
				key := src.byID(id).lset.String()
				if want[key] == nil {
					want[key] = map[int64]float64{}
				}
				want[key][ts] = v
			}
		}
	}

	got, err := read(minT, maxT)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing but served samples.
	extra, examples := 0, []string{}
	for key, ss := range got {
		rep.received += len(ss)
		for _, s := range ss {
			v, ok := want[key][s.T]
			if ok && sameSample(s, sample{T: s.T, V: v}) {
				continue
			}
			extra++
			if len(examples) < 5 {
				what := "was not served whole at that second"
				if ok {
					what = fmt.Sprintf("the source served %g", v)
				}
				examples = append(examples, fmt.Sprintf("%s %s: %s", key, s, what))
			}
		}
	}
	if extra > 0 {
		t.Errorf("%d samples at the receiver are not what the source served, for example:\n  %s", extra, joinLines(examples))
	}
	have := make(map[string]map[int64]bool, len(got))
	for key, ss := range got {
		m := make(map[int64]bool, len(ss))
		for _, s := range ss {
			m[s.T] = true
		}
		have[key] = m
	}

	// Every required second whole (or missing whole and covered), every second at risk whole or
	// missing whole.
	times := make([]int64, 0, len(required)+len(atRisk))
	for ts := range required {
		times = append(times, ts)
	}
	for ts := range atRisk {
		times = append(times, ts)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	var lost, partial []string
	for _, ts := range times {
		b := src.body(ts)
		present := 0
		var absent string
		for j := range b.values {
			id := j
			if b.ids != nil {
				id = b.ids[j]
			}
			key := src.byID(id).lset.String()
			if have[key][ts] {
				present++
			} else if absent == "" {
				absent = key
			}
		}
		at := time.UnixMilli(ts).UTC().Format(time.TimeOnly)
		switch {
		case present == len(b.values):
			if atRisk[ts] {
				rep.atRiskArrived++
			} else {
				rep.samples += len(b.values)
			}
		case present > 0:
			partial = append(partial, fmt.Sprintf("%s: %d of %d samples, %s missing", at, present, len(b.values), absent))
		case required[ts]:
			rep.samples += len(b.values)
			lost = append(lost, at)
		}
	}
	if len(partial) > 0 {
		t.Errorf("%d served seconds are at the receiver in part (a scrape is appended whole or not at all, and what is appended arrives): %v", len(partial), partial)
	}
	rep.failedLost = len(lost)
	if len(lost) > rep.allowance {
		t.Errorf("%d seconds served whole (not as a run's last request) are missing at the receiver, and the collector counted %d failed scrapes: %v", len(lost), rep.allowance, lost)
	}
	return rep
}

// receiverSamples reads back every raw sample of cluster clusterID at the receiver with
// timestamps in [from, to] (ms), family by family; a metric name of the cluster that is not one
// of src's families is an error.
func receiverSamples(base, clusterID string, src *federateSource, from, to int64) (seriesSet, error) {
	names, err := labelValues(base, "__name__", fmt.Sprintf(`{clusterID=%q}`, clusterID), from-60_000, to+60_000)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, f := range src.families {
		known[f.name] = true
	}
	for _, n := range names {
		if !known[n] {
			return nil, fmt.Errorf("the receiver holds metric %s of cluster %s, which the source never served", n, clusterID)
		}
	}
	// A range selector at `to` reaches back its range: a minute more than needed on both sides.
	rng := (to-from)/1000 + 60
	at := time.UnixMilli(to + 30_000)
	out := seriesSet{}
	for _, f := range src.families {
		ss, err := rawSamples(base, fmt.Sprintf(`%s{clusterID=%q}[%ds]`, f.name, clusterID, rng), at)
		if err != nil {
			return nil, err
		}
		for k, v := range ss {
			out[k] = v
		}
	}
	return out, nil
}

// labelValues returns the values of label name among the series matching match in [from, to]
// (ms).
func labelValues(base, name, match string, from, to int64) ([]string, error) {
	v := url.Values{
		"match[]": {match},
		"start":   {formatTime(time.UnixMilli(from))},
		"end":     {formatTime(time.UnixMilli(to))},
	}
	resp, err := httpClient.Get(base + "/api/v1/label/" + name + "/values?" + v.Encode())
	if err != nil {
		return nil, fmt.Errorf("label values of %s: %w", name, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string   `json:"status"`
		Error  string   `json:"error"`
		Data   []string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("label values of %s: status %s: decode: %w", name, resp.Status, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("label values of %s: %s", name, r.Error)
	}
	return r.Data, nil
}
