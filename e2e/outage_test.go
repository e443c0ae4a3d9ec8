package e2e

import (
	"testing"
	"time"
)

// outage is how long the receiver is down in TestHubOutage: /federate only ever returns the latest
// sample, so without the WAL every second of it would be a gap at the hub.
const outage = 30 * time.Second

// TestHubOutage: the receiver is stopped for 30 s and started again on the same port and TSDB;
// afterwards every sample the source served, before, during and after the outage, is at the
// receiver (pipeline.finish), and the books balance (delivered = appended, nothing dropped).
func TestHubOutage(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, "e2e-outage", pipelineOptions{})
	p.col.start()
	p.waitFlowing(3)

	p.rcv.stop()
	down := time.Now()
	// The outage lasts until the collector has appended 30 s of scrapes the receiver did not get.
	p.waitAppended(down.Add(outage), outage+30*time.Second)
	st, err := p.col.status()
	if err != nil {
		t.Fatal(err)
	}
	if u := st.Clusters[0].Consumers[0].UndeliveredSamples; u == 0 {
		t.Fatalf("wal status shows no undelivered sample after %v of outage", time.Since(down).Round(time.Second))
	}
	p.rcv.restart()
	up := time.Now()
	t.Logf("receiver down for %v; %d samples undelivered at the restart", up.Sub(down).Round(time.Second), st.Clusters[0].Consumers[0].UndeliveredSamples)

	p.waitAppended(time.Now().Add(2*time.Second), 30*time.Second) // and a little after
	n := p.servedBetween(down, up)
	if n == 0 {
		t.Fatalf("the source served nothing during the outage (%v .. %v)", down, up)
	}
	wc := p.finish(books{})
	t.Logf("%d samples served during the outage, all at the receiver (%d in the wal)", n, wc.samples)
}

// TestCrashDuringOutage: while the receiver is down the collector is killed (SIGKILL) and
// restarted, then stopped (SIGTERM, which must not wait for the unreachable receiver beyond
// --flush-deadline) and restarted; once the receiver is back no sample the source served is missing (pipeline.finish).
func TestCrashDuringOutage(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, "e2e-crash", pipelineOptions{flags: []string{"--flush-deadline", "2s"}})
	p.col.start()
	p.waitFlowing(3)

	p.rcv.stop()
	down := time.Now()
	p.waitAppended(down.Add(5*time.Second), 30*time.Second)
	p.col.kill()
	killed := time.Now()
	p.col.start()
	p.waitAppended(time.Now().Add(5*time.Second), 30*time.Second)

	// --flush-deadline 2s: the drain gives up on the unreachable receiver and exits 0; what was
	// not acknowledged stays in the WAL.
	stopped := time.Now()
	p.col.stop(2*time.Second + 10*time.Second)
	t.Logf("SIGTERM during the outage: exited after %v", time.Since(stopped).Round(10*time.Millisecond))
	p.col.start()
	p.waitAppended(time.Now().Add(5*time.Second), 30*time.Second)

	p.rcv.restart()
	up := time.Now()
	// The records after the last committed position were sent again after the kill; the
	// counters committed with the position count them once.
	wc := p.finish(books{})
	t.Logf("receiver down for %v (SIGKILL at +%v, SIGTERM at +%v); %d samples served during the outage, all at the receiver (%d in the wal)",
		up.Sub(down).Round(time.Second), killed.Sub(down).Round(time.Second), stopped.Sub(down).Round(time.Second), p.servedBetween(down, up), wc.samples)
}
