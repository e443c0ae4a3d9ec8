package e2e

import (
	"fmt"
	"testing"
	"time"
)

// flakyPhase is a stretch of time in which the proxy serves a mix of faults.
type flakyPhase struct {
	name   string
	faults []fault
	// hits is how many requests must get each fault of the phase; the phase also lasts at least
	// minTime so that a backlog builds up.
	hits    int
	minTime time.Duration
}

// TestFlakyHub: a proxy in front of the receiver answers 503, 429 with Retry-After, resets
// connections before forwarding, and resets them after the receiver wrote the request (the answer
// is lost), first one fault at a time, then all of them mixed with successes. Afterwards no sample
// is missing, the books balance (appended = delivered + dropped), and the acknowledged samples of
// each series went over the wire in time order.
//
// Against a receiver with an out-of-order window (as Thanos receive keeps the valid part of a
// re-sent request) nothing is dropped. Against a plain Prometheus a lost answer can make the
// re-sent request a 400 ("out of order sample": it holds samples older than the newest one the
// receiver wrote the first time): that request is dropped and counted as http_400, and its samples
// are at the receiver all the same (they are the ones written the first time).
func TestFlakyHub(t *testing.T) {
	t.Parallel()
	all := []fault{faultNone, fault503, fault429, faultReset, faultLostAnswer}
	cases := []struct {
		name           string
		receiverConfig string
		phases         []flakyPhase
		books          books
	}{
		{
			name:           "receiver with out-of-order window",
			receiverConfig: receiverConfig,
			phases: []flakyPhase{
				{"503", []fault{fault503}, 3, 3 * time.Second},
				{"429", []fault{fault429}, 2, 3 * time.Second},
				{"reset", []fault{faultReset}, 3, 3 * time.Second},
				{"lost answer", []fault{faultLostAnswer}, 3, 3 * time.Second},
				{"mixed", all, 2, 8 * time.Second},
			},
		},
		{
			name:           "plain prometheus receiver",
			receiverConfig: plainReceiverConfig,
			phases: []flakyPhase{
				{"lost answer", []fault{faultLostAnswer}, 3, 3 * time.Second},
				{"mixed", all, 2, 8 * time.Second},
			},
			books: books{dropReasons: []string{"http_400"}},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var fp *faultProxy
			p := newPipeline(t, fmt.Sprintf("e2e-flaky-%d", i), pipelineOptions{
				receiverConfig: tc.receiverConfig,
				front: func(rcv *promServer) string {
					fp = newFaultProxy(t, rcv.URL(), int64(6+i))
					return fp.WriteURL()
				},
			})
			p.col.start()
			p.waitFlowing(3)
			for _, ph := range tc.phases {
				runPhase(t, fp, ph)
			}
			fp.set(faultNone)

			p.waitAppended(time.Now().Add(2*time.Second), 30*time.Second)
			wc := p.finish(tc.books)
			if errs, n := fp.orderErrors(); n > 0 {
				t.Errorf("%d samples acknowledged out of time order, for example:\n  %s", n, joinLines(errs))
			}
			t.Logf("%s; %d samples in the wal, all at the receiver", fp.summary(), wc.samples)
		})
	}
}

// runPhase serves the phase's faults until each was served ph.hits times and ph.minTime passed.
func runPhase(t testing.TB, fp *faultProxy, ph flakyPhase) {
	t.Helper()
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
