package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// TestThanosBackfillCutOff (issue 10, sections 1 and 2): two collectors of two clusters write
// into one tenant of a `thanos receive` whose head window is small (hidden
// --tsdb.min-block-duration/--tsdb.max-block-duration 2m: the head accepts samples about a
// minute older than its newest). One collector is cut off by a fault proxy (connections reset)
// for two and a half minutes while the other drives the tenant's head forward; when the cut-off
// one comes back, the receiver refuses the older part of its backlog with 409 (out of bounds).
// Those samples are deferred, not dropped, and the collector's own backfill
// (--backfill.objstore-config-file) uploads them as blocks into a filesystem bucket, served by a
// `thanos store`. Through a `thanos query` over the receiver and the store, every sample either
// source served is queryable; appended = delivered + deferred (all backfilled) + dropped, with
// nothing dropped.
func TestThanosBackfillCutOff(t *testing.T) {
	t.Parallel()
	tails := &logTails{}
	rcv := startReceive(t, tails, "receive", receiveOptions{args: []string{"--tsdb.min-block-duration=2m", "--tsdb.max-block-duration=2m"}})
	bucketDir := testDir(t, "bucket")
	store := startThanosStore(t, tails, "store", bucketDir)
	q := startThanosQuery(t, tails, "query", rcv, store)

	conf := filepath.Join(testDir(t, "backfill"), "objstore.yml")
	if err := os.WriteFile(conf, []byte(filesystemBucketConfig(bucketDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	fp := newFaultProxy(t, "http://"+rcv.addr("write"), 10)
	cut := newThanosPipeline(t, tails, "e2e-thanos-cutoff", thanosTenant, fp.srv.URL+"/api/v1/receive", q,
		"--backfill.objstore-config-file", conf,
		"--backfill.label", thanosTenantLabel+"="+thanosTenant,
		"--backfill.replica-label", thanosReplicaLabel,
		"--backfill.interval", "5s")
	other := newThanosPipeline(t, tails, "e2e-thanos-other", thanosTenant, rcv.WriteURL(), q)
	other.col.name = "collector-other" // its own log beside the first one's
	cut.col.start()
	other.col.start()
	waitHubFlowing(cut, q, 3)
	waitHubFlowing(other, q, 3)

	fp.set(faultReset)
	down := time.Now()
	// The other collector keeps writing: the tenant's head moves past the cut-off backlog.
	other.waitAppended(down.Add(150*time.Second), 200*time.Second)
	fp.set(faultNone)
	up := time.Now()

	drain := waitDrained(cut, up)
	var deferred, backfilled int64
	eventuallyEvery(t, 90*time.Second, time.Second, "the deferred samples backfilled", func() error {
		st, err := cut.col.status()
		if err != nil {
			return err
		}
		cs := st.Clusters[0].Consumers[0]
		if cs.DeadLetter == nil {
			return fmt.Errorf("nothing deferred yet (deferred %d)", cs.Deferred)
		}
		if cs.DeadLetter.Backfill.LastError != "" {
			t.Logf("backfill: last error %s", cs.DeadLetter.Backfill.LastError)
		}
		deferred, backfilled = cs.Deferred, cs.DeadLetter.Backfill.Backfilled
		if cs.DeadLetter.Samples > 0 || backfilled < deferred || deferred == 0 {
			return fmt.Errorf("deferred %d, waiting in the dead-letter log %d, backfilled %d", deferred, cs.DeadLetter.Samples, backfilled)
		}
		return nil
	})
	backfillDone := time.Since(up)
	during := cut.servedBetween(down, up)
	// The store gateway syncs the bucket every second and the query refreshes what its stores
	// cover: wait until the outage's samples are queryable, then let the oracle compare all.
	eventuallyEvery(t, 60*time.Second, time.Second, "the outage's samples queryable", func() error {
		ss, err := q.samples(cut.src, cut.id, thanosTenant, down.UnixMilli(), up.UnixMilli())
		if err != nil {
			return err
		}
		n := 0
		for _, s := range ss {
			for _, x := range s {
				if x.T >= down.UnixMilli() && x.T <= up.UnixMilli() {
					n++
				}
			}
		}
		if n < during {
			return fmt.Errorf("%d of the %d samples served during the outage queryable", n, during)
		}
		return nil
	})

	cut.finish(books{deferred: true})
	other.finish(books{})
	st, err := cut.col.status()
	if err != nil {
		t.Fatal(err)
	}
	cs := st.Clusters[0].Consumers[0]
	if cs.Deferred == 0 || cs.DeadLetter == nil || cs.DeadLetter.Backfill.Backfilled != cs.Deferred {
		t.Fatalf("deferred %d, dead letter %+v: every deferred sample must be backfilled once", cs.Deferred, cs.DeadLetter)
	}
	dropped := make([]string, 0, len(cs.Dropped))
	for r, n := range cs.Dropped {
		dropped = append(dropped, fmt.Sprintf("%s=%d", r, n))
	}
	sort.Strings(dropped)
	rep := cut.report
	t.Logf("numbers: scenario %q: outage %v (%d samples served during it); samples served (required) %d, queryable at the end %d; delivered %d, deferred %d, backfilled %d in %d blocks, dropped %v, duplicates at the query 0; time to drain %v, to backfill %v; fault proxy %s",
		"two collectors, one tenant, one cut off past the head window (409 → deferred → backfill)",
		up.Sub(down).Round(time.Second), during, rep.samples, rep.received, cs.Delivered, cs.Deferred, cs.DeadLetter.Backfill.Backfilled,
		cs.DeadLetter.Backfill.Blocks, dropped, drain.Round(100*time.Millisecond), backfillDone.Round(100*time.Millisecond), fp.summary())
	logThanosNumbers(t, "the collector that was not cut off, same tenant", other, q, 0, 0, 0)
}
