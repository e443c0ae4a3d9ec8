package replay

import (
	"bytes"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"
)

// TestProgress: rate, percentage and ETA from the clock; off a terminal, a log line every 10
// seconds and nothing written to the writer.
func TestProgress(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	logger, hook := logtest.NewNullLogger()
	var w bytes.Buffer
	p := newProgress(&w, logger, 1000, clock)
	for _, tc := range []struct {
		after time.Duration
		done  int64
		line  string
		logs  int
	}{
		{5 * time.Second, 250, "250/1000 samples (25.0%), 50 samples/s, ETA 15s", 0},
		{10 * time.Second, 500, "500/1000 samples (50.0%), 50 samples/s, ETA 10s", 1},
		{15 * time.Second, 600, "600/1000 samples (60.0%), 40 samples/s, ETA 10s", 1},
		{20 * time.Second, 1000, "1000/1000 samples (100.0%), 50 samples/s, ETA -", 2},
	} {
		now = time.Unix(1_700_000_000, 0).Add(tc.after)
		if got := p.line(tc.done); got != tc.line {
			t.Errorf("after %v: %q, want %q", tc.after, got, tc.line)
		}
		p.update(tc.done)
		if n := len(hook.AllEntries()); n != tc.logs {
			t.Errorf("after %v: %d progress log lines, want %d", tc.after, n, tc.logs)
		}
	}
	p.finish(1000)
	if w.Len() != 0 {
		t.Errorf("progress off a terminal wrote %q", w.String())
	}
	if got := newProgress(&w, logger, 0, clock).line(0); got != "0/0 samples (100.0%), 0 samples/s, ETA -" {
		t.Errorf("empty replay: %q", got)
	}
}
