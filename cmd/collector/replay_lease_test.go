package main

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/util/compression"
	"github.com/sirupsen/logrus"

	"github.com/collector-dev/collector/agent"
	"github.com/collector-dev/collector/wal"
)

var segmentFile = regexp.MustCompile(`^\d{8}$`)

// segments returns the segment files of a WAL directory.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if segmentFile.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// agentWAL builds a WAL of several segments whose only endpoint ("hub") delivered everything,
// and returns it open as the agent opens it: replay leases honoured.
func agentWAL(t *testing.T) (*testWAL, *wal.WAL) {
	t.Helper()
	base := filepath.Join(t.TempDir(), "wal")
	tw := buildWAL(t, base, "c1", 200, 60)
	tw.w.Close()
	logger := logrus.New()
	logger.SetOutput(discard{})
	opts := wal.DefaultOptions()
	opts.SegmentSize = 32 << 10
	opts.Compression = compression.None
	opts.Consumers = []string{"hub"}
	opts.LeasePrefix, opts.LeaseTTL = agent.ReplayPrefix, agent.ReplayLeaseTTL
	w := reopenWAL(t, logger, base, "c1", opts)
	t.Cleanup(func() { w.Close() })
	tw.commitAgent(t, "hub", 60, nil)
	if n := len(segments(t, tw.dir)); n < 3 {
		t.Fatalf("%d segments, want several", n)
	}
	return tw, w
}

// TestReplayBesideTruncation: a replay registers its position as a lease on the WAL, so the
// agent's truncation does not delete what it has not read; it releases it at the end. A replay
// that finds segments missing (its lease expired: it was killed long ago) says so and exits 1.
func TestReplayBesideTruncation(t *testing.T) {
	t.Parallel()
	t.Run("the lease holds the segments", func(t *testing.T) {
		tw, w := agentWAL(t)
		rcv := newReceiver(t, false)
		var allowed, blocked atomic.Int64
		allowed.Store(2)
		gate := make(chan struct{})
		rcv.setBehaviour(func(rw http.ResponseWriter, r *http.Request, next http.Handler) {
			if allowed.Add(-1) < 0 {
				blocked.Add(1)
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
			next.ServeHTTP(rw, r)
		})
		p := start(t, nil, "replay", "--wal-dir", tw.base, "--log-format", "json", "--max-samples-per-send", "200",
			"--max-shards", "1", "--to-upload", rcv.url)
		waitFor(t, "a blocked request", 20*time.Second, func() bool { return blocked.Load() > 0 })
		// The agent truncates while the replay is in its first segment: nothing may go.
		if st, err := w.Truncate(); err != nil || st.Deleted != 0 || st.Evicted != 0 {
			t.Fatalf("truncation beside the replay: %+v %v", st, err)
		}
		close(gate)
		if code := p.wait(time.Minute); code != 0 {
			t.Fatalf("replay exit %d", code)
		}
		sameSet(t, tw.want(0, 60), rcv.set())
		p.mu.Lock()
		out := p.stdout.String()
		p.mu.Unlock()
		if !strings.Contains(out, "missing segments 0") {
			t.Errorf("summary %q", out)
		}
		// Released: the next truncation deletes what the agent delivered.
		if st, err := w.Truncate(); err != nil || st.Deleted == 0 {
			t.Fatalf("truncation after the replay: %+v %v", st, err)
		}
	})

	t.Run("expired lease: missing segments reported", func(t *testing.T) {
		tw, w := agentWAL(t)
		rcv := newReceiver(t, false)
		// A replay killed 11 minutes ago in the first segment.
		name := agent.ReplayPrefix + endpointName(t, rcv.url)
		old := wal.ConsumerState{Position: tw.ends[0], Delivered: 200, Updated: time.Now().Add(-agent.ReplayLeaseTTL - time.Minute)}
		if err := wal.CommitPosition(tw.dir, name, old); err != nil {
			t.Fatal(err)
		}
		st, err := w.Truncate()
		if err != nil || st.Deleted == 0 {
			t.Fatalf("an expired lease held the truncation back: %+v %v", st, err)
		}
		r := runCmd(t, nil, "replay", "--wal-dir", tw.base, "--log-format", "json", "--to-upload", rcv.url, "--resume")
		if r.code != 1 || !strings.Contains(r.stderr, "missing segments") || !strings.Contains(r.stdout, "missing segments ") ||
			strings.Contains(r.stdout, "missing segments 0") {
			t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}
