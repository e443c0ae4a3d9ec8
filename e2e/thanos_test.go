package e2e

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// thanosTenant is the tenant the Thanos tests write into (--to-upload-tenant, THANOS-TENANT).
const thanosTenant = "e2e-tenant"

// TestThanosReceiveOutage: one `thanos receive` (router and ingestor in one) is the hub. While
// it is down the collector is killed (SIGKILL) and started again, then stopped (SIGTERM) and
// started again; once the hub is back every sample the source served is queryable through
// `thanos query`, of the collector's tenant, and the collector's books show nothing dropped.
func TestThanosReceiveOutage(t *testing.T) {
	t.Parallel()
	tails := &logTails{}
	rcv := startReceive(t, tails, "receive", receiveOptions{})
	q := startThanosQuery(t, tails, "query", rcv)
	p := newThanosPipeline(t, tails, "e2e-thanos-outage", thanosTenant, rcv.WriteURL(), q, "--flush-deadline", "2s")
	p.col.start()
	waitHubFlowing(p, q, 3)

	rcv.stop()
	down := time.Now()
	p.waitAppended(down.Add(5*time.Second), 30*time.Second)
	p.col.kill()
	p.col.start()
	p.waitAppended(time.Now().Add(5*time.Second), 30*time.Second)
	// --flush-deadline 2s: the drain gives up on the unreachable hub and exits 0.
	p.col.stop(2*time.Second + 10*time.Second)
	p.col.start()
	p.waitAppended(time.Now().Add(5*time.Second), 30*time.Second)

	rcv.restart()
	up := time.Now()
	q.waitStores()
	drain := waitDrained(p, up)
	during := p.servedBetween(down, up)
	p.finish(books{})
	logThanosNumbers(t, "single receive, outage with SIGKILL and SIGTERM of collector", p, q, up.Sub(down), drain, during)
}

// TestThanosHashringReplication: three ingestors behind a router, replication factor 3 (write
// quorum 2). One ingestor is killed (SIGKILL) while the collector writes and the writes go on;
// it comes back on its TSDB. Then two are killed: the router answers 5xx (quorum lost) and the
// collector retries until they are back. Every sample the source served is queryable through a
// `thanos query` deduplicating over the replicas, and nothing was dropped.
func TestThanosHashringReplication(t *testing.T) {
	t.Parallel()
	tails := &logTails{}
	ins := []*thanosProc{
		startReceive(t, tails, "ingestor-0", receiveOptions{}),
		startReceive(t, tails, "ingestor-1", receiveOptions{}),
		startReceive(t, tails, "ingestor-2", receiveOptions{}),
	}
	router := startReceive(t, tails, "router", receiveOptions{hashring: ins, replicationFactor: 3})
	q := startThanosQuery(t, tails, "query", ins...)
	p := newThanosPipeline(t, tails, "e2e-thanos-hashring", thanosTenant, router.WriteURL(), q)
	p.col.start()
	waitHubFlowing(p, q, 3)

	// One ingestor down: the other two make the quorum, the collector's writes keep succeeding.
	ins[2].kill()
	oneDown := time.Now()
	waitDelivering(p, oneDown.Add(5*time.Second), 60*time.Second)
	p.waitAppended(time.Now().Add(3*time.Second), 30*time.Second)
	ins[2].restart()
	q.waitStores()

	// Two down: the quorum is lost, the router answers 5xx and the collector retries.
	ins[0].kill()
	ins[1].kill()
	twoDown := time.Now()
	waitFailing(p, `http_5\d\d`, 60*time.Second)
	p.waitAppended(time.Now().Add(10*time.Second), 30*time.Second)
	ins[0].restart()
	ins[1].restart()
	up := time.Now()
	q.waitStores()
	drain := waitDrained(p, up)
	during := p.servedBetween(twoDown, up)
	p.finish(books{})
	logThanosNumbers(t, "hashring of 3, RF 3: one ingestor SIGKILLed, then two (quorum lost)", p, q, up.Sub(twoDown), drain, during)
}

// waitDelivering waits until the collector has had a request acknowledged after t (its
// collector_shipper_last_success_timestamp_seconds).
func waitDelivering(p *pipeline, after time.Time, timeout time.Duration) {
	p.t.Helper()
	eventually(p.t, timeout, "a request acknowledged after "+after.Format(time.TimeOnly), func() error {
		if p.col.proc.exited() {
			return errExited{p.col.name, p.col.proc.err}
		}
		m, err := p.col.metrics()
		if err != nil {
			return err
		}
		last := sumMetric(m, "collector_shipper_last_success_timestamp_seconds")
		if last < float64(after.UnixMilli())/1000 {
			return fmt.Errorf("last success at %v", time.UnixMilli(int64(last*1000)).Format(time.TimeOnly))
		}
		return nil
	})
}

// waitFailing waits until a shard of the collector retries a request that failed for a reason
// matching reason (collector_queue_failing_shards{reason}).
func waitFailing(p *pipeline, reason string, timeout time.Duration) {
	p.t.Helper()
	re := regexp.MustCompile(`reason="` + reason + `"`)
	eventually(p.t, timeout, "a shard failing with "+reason, func() error {
		if p.col.proc.exited() {
			return errExited{p.col.name, p.col.proc.err}
		}
		m, err := p.col.metrics()
		if err != nil {
			return err
		}
		var seen []string
		for k, v := range m {
			if strings.HasPrefix(k, "collector_queue_failing_shards{") && v > 0 {
				if re.MatchString(k) {
					return nil
				}
				seen = append(seen, k)
			}
		}
		return fmt.Errorf("failing shards: %v", seen)
	})
}

// drainSlack is how many samples may stay undelivered when the backlog counts as drained while
// the collector keeps scraping: two scrapes of the pipeline's source (series and churn).
const drainSlack = 2 * (pipelineSeries + 20)

// waitDrained waits until the collector's backlog is down to what it scrapes in two seconds
// (wal status) and returns how long that took since the hub came back (up): the time to drain.
func waitDrained(p *pipeline, up time.Time) time.Duration {
	p.t.Helper()
	eventuallyEvery(p.t, 60*time.Second, time.Second, "the backlog drained", func() error {
		st, err := p.col.status()
		if err != nil {
			return err
		}
		if u := st.Clusters[0].Consumers[0].UndeliveredSamples; u > drainSlack {
			return fmt.Errorf("%d samples undelivered", u)
		}
		return nil
	})
	return time.Since(up)
}

// logThanosNumbers logs the numbers of a scenario (issue 10, section 3) after finish: samples
// served and queryable, the collector's delivered and dropped counters, duplicates at the query
// (none: thanosQuery.samples refuses a series with a timestamp twice) and the time to drain.
func logThanosNumbers(t *testing.T, scenario string, p *pipeline, q *thanosQuery, outage, drain time.Duration, duringOutage int) {
	t.Helper()
	st, err := p.col.status()
	if err != nil {
		t.Fatal(err)
	}
	cs := st.Clusters[0].Consumers[0]
	dropped := make([]string, 0, len(cs.Dropped))
	for r, n := range cs.Dropped {
		dropped = append(dropped, fmt.Sprintf("%s=%d", r, n))
	}
	sort.Strings(dropped)
	rep := p.report
	replicas := "n/a"
	if minT, maxT, ok := servedRange(p.src); ok {
		if rs, err := q.replicaSamples(p.id, minT, maxT); err == nil {
			replicas = fmt.Sprint(rs)
		} else {
			replicas = err.Error()
		}
	}
	t.Logf("numbers: scenario %q: outage %v (%d samples served during it); samples served (required) %d, queryable at the end %d, at risk of a kill %d seconds (%d arrived); delivered %d, dropped %v, missing whole as counted failed scrapes %d, duplicates at the query 0; held per replica (no dedup) %s; time to drain %v",
		scenario, outage.Round(time.Second), duringOutage, rep.samples, rep.received, rep.atRisk, rep.atRiskArrived,
		cs.Delivered, dropped, rep.failedLost, replicas, drain.Round(100*time.Millisecond))
}

// servedRange returns the first and last second (ms) the source served whole.
func servedRange(src *federateSource) (minT, maxT int64, ok bool) {
	for _, s := range src.scrapes() {
		if !s.ok() {
			continue
		}
		if !ok || s.T < minT {
			minT = s.T
		}
		if !ok || s.T > maxT {
			maxT = s.T
		}
		ok = true
	}
	return minT, maxT, ok
}
