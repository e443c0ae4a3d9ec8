package e2e

import (
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Parameters of TestCrashLoopSoak. The environment makes it longer or replays another draw:
//
//	COLLECTOR_E2E_SOAK=10m          the fault phase (default soakDefault), in whole seconds
//	COLLECTOR_E2E_SOAK_SEED=42      the seed of the schedule (default soakSeed)
//	COLLECTOR_E2E_SOAK_FAULTS=down,503,slow   the hub faults drawn (default all: down,503,401,slow)
const (
	soakSeries  = 1000
	soakID      = "e2e-soak"
	soakSeed    = 11
	soakDefault = 100 * time.Second
)

// soakFaults are the hub phases: the receiver stopped (the proxy answers 502), 503, 401 (must
// cost time, never data), and a hub slower than --to-upload-timeout.
var soakFaults = []string{"down", "503", "401", "slow"}

// soakEvent is one step of the soak, due once the source has served `at` whole scrapes.
type soakEvent struct {
	at   int
	kind string // kill, or hub:<phase> (pass, mixed, or one of soakFaults)
}

// soakSchedule draws the soak from seed: a SIGKILL after every 1 to 5 scrapes (a scrape a second),
// and hub phases of 3 to 8 scrapes, each healthy, one fault, or every fault and success mixed.
func soakSchedule(seed int64, scrapes int, faults []string) []soakEvent {
	rnd := rand.New(rand.NewSource(seed))
	var ev []soakEvent
	for at := 1 + rnd.Intn(5); at < scrapes; at += 1 + rnd.Intn(5) {
		ev = append(ev, soakEvent{at, "kill"})
	}
	phases := append([]string{"pass", "mixed"}, faults...)
	for at := 3; at < scrapes; at += 3 + rnd.Intn(6) {
		ev = append(ev, soakEvent{at, "hub:" + phases[rnd.Intn(len(phases))]})
	}
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].at < ev[j].at })
	return ev
}

// soakParams reads the environment (see the constants).
func soakParams(t testing.TB) (scrapes int, seed int64, faults []string) {
	t.Helper()
	d, seed, faults := soakDefault, int64(soakSeed), soakFaults
	if v := os.Getenv("COLLECTOR_E2E_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < 10*time.Second {
			t.Fatalf("COLLECTOR_E2E_SOAK=%q: want a duration of 10s or more (%v)", v, err)
		}
	}
	if v := os.Getenv("COLLECTOR_E2E_SOAK_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("COLLECTOR_E2E_SOAK_SEED=%q: %v", v, err)
		}
	}
	if v := os.Getenv("COLLECTOR_E2E_SOAK_FAULTS"); v != "" {
		faults = nil
		for _, f := range strings.Split(v, ",") {
			if !strings.Contains(","+strings.Join(soakFaults, ",")+",", ","+f+",") {
				t.Fatalf("COLLECTOR_E2E_SOAK_FAULTS=%q: %q is not one of %v", v, f, soakFaults)
			}
			faults = append(faults, f)
		}
	}
	return int(d / time.Second), seed, faults
}

// TestCrashLoopSoak: the collector is SIGKILLed after every 1 to 5 scrapes for the whole fault
// phase (about 100 s) while the hub flaps (the receiver stopped, 503, 401, slower than the
// request timeout, all of them mixed with successes) and the source's series churn (a window of
// short-lived series slides by 50 every 10 s). After every kill `collector wal status` opens the
// WAL (exit 0, no corruption); every run logs no WAL corruption repair and nothing fatal. At the
// end the hub is healthy and the source closed (503: nothing new to append); the collector
// drains (wal status: nothing undelivered) and stops on SIGTERM with exit 0, nothing dropped or
// evicted. Then the oracle (oracle_test.go): every sample the source served is at the receiver
// or accounted for (a failed scrape the collector counted, or a run's last scrape that a kill
// cut off before it was appended), and the receiver holds nothing the source did not serve.
//
// The schedule is seeded (the seed is logged; COLLECTOR_E2E_SOAK_SEED replays it); when the
// events happen is paced by the source's scrapes, not by the clock.
func TestCrashLoopSoak(t *testing.T) {
	t.Parallel()
	scrapes, seed, faults := soakParams(t)
	t.Logf("soak: %d scrapes, seed %d, hub faults %v", scrapes, seed, faults)
	tails := &logTails{}
	src := newChurningSource(t, soakSeries, soakID, churnOptions{Width: 200, Step: 50, Period: 10})
	rcv := startPrometheus(t, tails, "receiver", promConfig{Config: receiverConfig, Receiver: true})
	fp := newFaultProxy(t, rcv.URL(), seed)
	fp.checkOrder(false) // a killed collector sends again what it had not committed
	fp.setSlowDelay(3 * time.Second)
	col := newCollector(t, tails, "collector", soakID,
		"--from", src.URL(),
		"--match", `{__name__=~".+"}`,
		"--to-upload", fp.WriteURL(),
		"--interval", "1s",
		"--batch-send-deadline", "200ms",
		"--min-backoff", "50ms",
		"--max-backoff", "1s",
		"--to-upload-timeout", "2s",
		"--flush-deadline", "3s",
		"--wal-segment-size", "131072",
		"--wal-truncate-interval", "2s",
	)
	col.perStart = func(n int) []string { return []string{"--from-token", runToken(n)} }
	col.start()

	rcvDown := false
	hub := func(phase string) {
		if phase == "down" {
			if !rcvDown {
				rcv.stop()
				rcvDown = true
			}
			return
		}
		if rcvDown {
			rcv.restart()
			rcvDown = false
		}
		switch phase {
		case "pass":
			fp.set(faultNone)
		case "503":
			fp.set(fault503)
		case "401":
			fp.set(fault401)
		case "slow":
			fp.set(faultSlow)
		case "mixed":
			mix := []fault{faultNone, faultNone, faultReset, faultLostAnswer}
			for _, f := range faults {
				switch f {
				case "503":
					mix = append(mix, fault503)
				case "401":
					mix = append(mix, fault401)
				case "slow":
					mix = append(mix, faultSlow)
				}
			}
			fp.set(mix...)
		}
	}

	began := time.Now()
	kills, phases := 0, map[string]int{}
	for _, ev := range soakSchedule(seed, scrapes, faults) {
		eventually(t, 60*time.Second, fmt.Sprintf("scrape %d of the source", ev.at), func() error {
			if col.proc.exited() {
				return errExited{col.name, col.proc.err}
			}
			if n := src.completeCount(); n < ev.at {
				return fmt.Errorf("%d complete scrapes", n)
			}
			return nil
		})
		if phase, ok := strings.CutPrefix(ev.kind, "hub:"); ok {
			hub(phase)
			phases[phase]++
			continue
		}
		col.kill()
		kills++
		// The WAL opens cleanly after every kill.
		st, err := col.status()
		if err != nil {
			t.Fatalf("wal status after kill %d: %v", kills, err)
		}
		if c := st.Clusters[0].Corruption; len(c) > 0 {
			t.Errorf("wal status after kill %d: corruption %v", kills, c)
		}
		col.start()
	}
	t.Logf("fault phase: %v, %d kills, hub phases %v, %d whole scrapes served", time.Since(began).Round(time.Second), kills, phases, src.completeCount())

	// The end: a healthy hub, and a source with nothing new (503) so that the backlog can reach
	// zero; the running collector has had a 503 (its last 200 was appended or counted).
	hub("pass")
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
		if col.proc.exited() {
			return errExited{col.name, col.proc.err}
		}
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

	st, err := col.status()
	if err != nil {
		t.Fatal(err)
	}
	cl := st.Clusters[0]
	if len(cl.Corruption) > 0 {
		t.Errorf("wal status at the end: corruption %v", cl.Corruption)
	}
	for _, cs := range cl.Consumers {
		if cs.UndeliveredSamples != 0 || len(cs.Dropped) > 0 || len(cs.Evicted) > 0 {
			t.Errorf("consumer %s at the end: %d undelivered, dropped %v, evicted %v; want nothing", cs.Name, cs.UndeliveredSamples, cs.Dropped, cs.Evicted)
		}
	}

	runs, err := readRunLogs(col.logPath())
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != col.starts {
		t.Fatalf("the collector's log has %d runs, it was started %d times", len(runs), col.starts)
	}
	torn, failures := 0, map[string]int{}
	for i, r := range runs {
		if r.corruptions > 0 || len(r.fatal) > 0 {
			t.Errorf("run %d: %d wal corruption repairs, fatal lines %q", i+1, r.corruptions, r.fatal)
		}
		torn += r.tornTails
		for k, v := range r.failures {
			failures[k] += v
		}
	}
	rep := checkDelivered(t, src, rcv.URL(), soakID, runs)
	t.Logf("%d runs, %d torn WAL tails repaired at open, failed scrapes counted %v", len(runs), torn, failures)
	t.Logf("oracle: %s", rep)
	t.Logf("proxy: %s", fp.summary())
}
