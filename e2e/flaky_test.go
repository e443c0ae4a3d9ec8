package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestFlakyHub: a proxy in front of the receiver answers 503, 429 with Retry-After, resets
// connections before forwarding, and resets them after the receiver wrote the request (the answer
// is lost), first one fault at a time, then all of them mixed with successes. Afterwards no
// sample is missing, nothing was dropped, and the acknowledged samples of each series went over
// the wire in time order.
func TestFlakyHub(t *testing.T) {
	t.Parallel()
	var fp *faultProxy
	p := newPipeline(t, "e2e-flaky", func(rcv *promServer) string {
		fp = newFaultProxy(t, rcv.URL(), 6)
		return fp.WriteURL()
	})
	p.col.start()
	p.waitFlowing(3)

	phases := []struct {
		name   string
		faults []fault
		// hits is how many requests must get each fault of the phase; the phase also lasts at
		// least minTime so that a backlog builds up.
		hits    int
		minTime time.Duration
	}{
		{"503", []fault{fault503}, 3, 3 * time.Second},
		{"429", []fault{fault429}, 2, 3 * time.Second},
		{"reset", []fault{faultReset}, 3, 3 * time.Second},
		{"lost answer", []fault{faultLostAnswer}, 3, 3 * time.Second},
		{"mixed", []fault{faultNone, fault503, fault429, faultReset, faultLostAnswer}, 2, 8 * time.Second},
	}
	for _, ph := range phases {
		start := time.Now()
		base := map[fault]int{}
		for _, f := range ph.faults {
			base[f] = fp.count(f)
		}
		fp.set(ph.faults...)
		eventually(t, 60*time.Second, "phase "+ph.name, func() error {
			for _, f := range ph.faults {
				if n := fp.count(f) - base[f]; n < ph.hits {
					return fmt.Errorf("%d requests got %s, want %d", n, f, ph.hits)
				}
			}
			if time.Since(start) < ph.minTime {
				return errNotYet
			}
			return nil
		})
		t.Logf("phase %s: %v", ph.name, time.Since(start).Round(100*time.Millisecond))
	}
	fp.set(faultNone)

	p.waitAppended(time.Now().Add(2*time.Second), 30*time.Second)
	wc := assertAllDelivered(t, p.col.dir(), p.rcv.URL(), p.selector(), 60*time.Second)
	p.col.stop(stopTimeout)
	wc = assertAllDelivered(t, p.col.dir(), p.rcv.URL(), p.selector(), 30*time.Second)
	// A lost answer makes the collector send a written request again; it counts it once.
	assertAccounted(t, p.col, wc, true)
	if errs, n := fp.orderErrors(); n > 0 {
		t.Errorf("%d samples acknowledged out of time order, for example:\n  %s", n, joinLines(errs))
	}
	t.Logf("%s; %d samples in the wal, all at the receiver", fp.summary(), wc.samples)
}
