package main

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/collector-dev/collector/wal"
)

// agentPositions returns the bytes and modification times of the position files that are not
// a replay's.
func agentPositions(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "positions"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "replay-") {
			continue
		}
		p := filepath.Join(dir, "positions", e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.ModTime().String() + "\n" + string(b)
	}
	return out
}

var sentRe = regexp.MustCompile(`cluster c1: sent (\d+) samples, dropped (\d+)`)

// sent parses the summary of a replay.
func sent(t *testing.T, stdout string) (int, int) {
	t.Helper()
	m := sentRe.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no summary in %q", stdout)
	}
	s, _ := strconv.Atoi(m[1])
	d, _ := strconv.Atoi(m[2])
	return s, d
}

func sameSet(t *testing.T, want, got map[string]bool) {
	t.Helper()
	if m := missing(want, got); len(m) > 0 {
		t.Errorf("%d of %d samples missing at the receiver: %v", len(want)-len(got), len(want), m)
	}
	if m := missing(got, want); len(m) > 0 {
		t.Errorf("the receiver holds samples it should not: %v", m)
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	base := filepath.Join(t.TempDir(), "wal")
	tw := buildWAL(t, base, "c1", 20, 50) // 1000 samples, the WAL open as by a running agent
	tw.commitAgent(t, "hub", 20, nil)     // the agent delivered the first 400
	before := agentPositions(t, tw.dir)
	defer func() {
		if after := agentPositions(t, tw.dir); len(after) != 1 || after["hub.json"] != before["hub.json"] {
			t.Errorf("the agent's position files changed:\nbefore %q\nafter  %q", before, after)
		}
	}()
	common := []string{"replay", "--wal-dir", base, "--log-format", "json", "--max-samples-per-send", "100"}
	rfc := func(k int) string { return time.UnixMilli(tw.ts(k)).UTC().Format(time.RFC3339) }

	t.Run("dry run", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"all", nil, "cluster c1: would send 1000 samples from position 0:0\n"},
			{"undelivered", []string{"--undelivered"}, "cluster c1: would send 600 samples from position " + tw.ends[19].String() + "\n"},
			{"range", []string{"--since", rfc(10), "--until", rfc(19)}, "cluster c1: would send 200 samples from position 0:0 (range " + rfc(10) + " .. " + rfc(19) + ")\n"},
			{"undelivered since", []string{"--undelivered", "--since", rfc(40)}, "would send 200 samples"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rcv := newReceiver(t, false)
				r := runCmd(t, nil, append(append(common, "--dry-run", "--to-upload", rcv.url), tc.args...)...)
				if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
					t.Errorf("exit %d stdout %q stderr %q, want %q", r.code, r.stdout, r.stderr, tc.want)
				}
				if rcv.requests.Load() != 0 {
					t.Error("a dry run sent requests")
				}
			})
		}
	})

	for _, tc := range []struct {
		name     string
		args     []string
		from, to int // scrapes expected at the receiver
	}{
		{"all", nil, 0, 50},
		{"undelivered", []string{"--undelivered", "--consumer", "hub"}, 20, 50},
		{"range", []string{"--since", rfc(10), "--until", rfc(19)}, 10, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newReceiver(t, false)
			r := runCmd(t, nil, append(append(common, "--to-upload", rcv.url), tc.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			want := tw.want(tc.from, tc.to)
			sameSet(t, want, rcv.set())
			if s, d := sent(t, r.stdout); s != len(want) || d != 0 {
				t.Errorf("summary says sent %d dropped %d, want %d and 0", s, d, len(want))
			}
			if strings.Contains(r.stderr, "\r") {
				t.Error("terminal progress written to a pipe")
			}
			// A finished replay released its registration (its position file).
			if _, err := wal.ReadPosition(tw.dir, "replay-"+endpointName(t, rcv.url)); !errors.Is(err, wal.ErrNoPosition) {
				t.Errorf("replay position left behind: %v", err)
			}
		})
	}

	t.Run("too old: deferred for backfill, exit 0", func(t *testing.T) {
		rcv := newReceiver(t, false)
		rcv.setBehaviour(func(w http.ResponseWriter, _ *http.Request, _ http.Handler) {
			http.Error(w, "out of bounds", http.StatusBadRequest)
		})
		r := runCmd(t, nil, append(common, "--to-upload", rcv.url)...)
		if r.code != 0 || !strings.Contains(r.stderr, "run collector backfill") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
		if s, d := sent(t, r.stdout); s != 0 || d != 0 || !strings.Contains(r.stdout, "deferred for backfill 1000,") {
			t.Errorf("summary %q", r.stdout)
		}
		consumers, err := wal.DeferredConsumers(tw.dir)
		if err != nil || len(consumers) != 1 || consumers[0] != "replay-"+endpointName(t, rcv.url) {
			t.Errorf("dead-letter logs %q (%v), want the replay's", consumers, err)
		}
	})

	t.Run("drops exit 1", func(t *testing.T) {
		rcv := newReceiver(t, false)
		rcv.setBehaviour(func(w http.ResponseWriter, _ *http.Request, _ http.Handler) {
			http.Error(w, "invalid labels", http.StatusBadRequest)
		})
		r := runCmd(t, nil, append(common, "--to-upload", rcv.url)...)
		if r.code != 1 || !strings.Contains(r.stderr, "replay dropped 1000 samples") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
		if s, d := sent(t, r.stdout); s != 0 || d != 1000 || !strings.Contains(r.stdout, "http_400=1000") {
			t.Errorf("summary %q", r.stdout)
		}
	})

	t.Run("killed and resumed", func(t *testing.T) {
		rcv := newReceiver(t, true) // accepts the samples sent again after the kill
		var allowed atomic.Int64
		allowed.Store(3)
		gate := make(chan struct{})
		var blocked atomic.Int64
		rcv.setBehaviour(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			if allowed.Add(-1) < 0 {
				blocked.Add(1)
				select { // a slow receiver: holds the request until the test opens the gate
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
			next.ServeHTTP(w, r)
		})
		name := "replay-" + endpointName(t, rcv.url)
		p := start(t, nil, append(common, "--to-upload", rcv.url)...)
		waitFor(t, "a committed replay position and a blocked request", 20*time.Second, func() bool {
			st, err := wal.ReadPosition(tw.dir, name)
			return err == nil && st.Delivered >= 300 && blocked.Load() > 0
		})
		p.signal(syscall.SIGKILL)
		if code := p.wait(10 * time.Second); code != -int(syscall.SIGKILL) {
			t.Fatalf("exit %d, want killed", code)
		}
		if n := len(rcv.set()); n == 0 || n >= 1000 {
			t.Fatalf("the receiver holds %d samples after the kill, want some but not all", n)
		}
		close(gate)
		r := runCmd(t, nil, append(common, "--to-upload", rcv.url, "--resume")...)
		if r.code != 0 {
			t.Fatalf("resume: exit %d: %s", r.code, r.stderr)
		}
		sameSet(t, tw.want(0, 50), rcv.set())
		if s, _ := sent(t, r.stdout); s >= 1000 || s == 0 {
			t.Errorf("the resumed replay sent %d samples: it did not resume", s)
		}
	})

	t.Run("resume without a position", func(t *testing.T) {
		rcv := newReceiver(t, false)
		r := runCmd(t, nil, append(common, "--to-upload", rcv.url, "--resume")...)
		if r.code != 0 || !strings.Contains(r.stderr, "no usable replay position to resume from") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		sameSet(t, tw.want(0, 50), rcv.set())
	})

	t.Run("not a WAL", func(t *testing.T) {
		r := runCmd(t, nil, "replay", "--wal-dir", t.TempDir(), "--to-upload", "http://127.0.0.1:1/w")
		if r.code != 1 || !strings.Contains(r.stderr, "is not a WAL directory") || bytes.Count([]byte(r.stderr), []byte("\n")) != 1 {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
}

// TestReplayUndeliveredNeedsConsumer: --undelivered without --consumer in a WAL of two endpoints
// is a usage error (exit 2) naming them.
func TestReplayUndeliveredNeedsConsumer(t *testing.T) {
	t.Parallel()
	base := filepath.Join(t.TempDir(), "wal")
	tw := buildWAL(t, base, "c1", 2, 5)
	tw.commitAgent(t, "hub", 2, nil)
	tw.commitAgent(t, "other", 3, nil)
	r := runCmd(t, nil, "replay", "--wal-dir", base, "--undelivered", "--dry-run")
	if want := "collector: --undelivered: name the endpoint with --consumer (positions found: hub, other)\n"; r.code != 2 || r.stderr != want {
		t.Errorf("exit %d stderr %q, want 2 and %q", r.code, r.stderr, want)
	}
}
