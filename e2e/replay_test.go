package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestReplay: `collector replay --all` of a WAL into a second, empty receiver reproduces every
// sample the WAL holds, exactly (nothing missing, nothing extra), reports what it sent, and leaves
// the agent's position alone.
func TestReplay(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, "e2e-replay", pipelineOptions{})
	p.col.start()
	p.waitFlowing(3)
	p.waitAppended(time.Now().Add(10*time.Second), 40*time.Second)
	wc := p.finish(books{})

	positions := filepath.Join(p.col.dir(), "positions")
	before := readDir(t, positions)

	second := startPrometheus(t, p.tails, "second-receiver", promConfig{Config: receiverConfig, Receiver: true})
	out, err := runCollector(2*time.Minute, "replay", "--all",
		"--wal-dir", p.col.walDir, "--id", p.id, "--to-upload", second.WriteURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replay: %s", bytes.TrimSpace(out))
	m := regexp.MustCompile(`sent (\d+) samples, dropped (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("replay output without a summary: %q", out)
	}
	if sent, _ := strconv.ParseInt(string(m[1]), 10, 64); sent != wc.samples {
		t.Errorf("replay sent %d samples, the wal holds %d", sent, wc.samples)
	}
	if string(m[2]) != "0" {
		t.Errorf("replay dropped %s samples", m[2])
	}

	// Exactly the WAL: every sample arrived, and nothing else did.
	got, err := rawSamples(second.URL(), p.selector(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if n, ex := missingSamples(wc.series, got, 5); n > 0 {
		t.Errorf("%d of the wal's %d samples are not at the second receiver:\n  %s", n, wc.samples, joinLines(ex))
	}
	if n, ex := missingSamples(got, wc.series, 5); n > 0 {
		t.Errorf("%d samples at the second receiver are not in the wal:\n  %s", n, joinLines(ex))
	}

	// The agent's position file is untouched; the replay's own (its lease on the WAL) was
	// removed when it finished.
	after := readDir(t, positions)
	for name, data := range before {
		if !bytes.Equal(after[name], data) {
			t.Errorf("replay changed the agent's position file %s:\nbefore %s\nafter  %s", name, data, after[name])
		}
	}
	if len(after) != len(before) {
		t.Errorf("position files before the replay %v, after %v: want the replay's own removed at its end", keys(before), keys(after))
	}
}

func readDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
