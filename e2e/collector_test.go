package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/collector-dev/collector/wal"
)

// collector is the collector binary run as `collector run` with fixed arguments: it can be
// started, killed and stopped any number of times on the same WAL directory and listen port.
type collector struct {
	t      testing.TB
	tails  *logTails
	name   string
	id     string
	walDir string
	port   int
	args   []string
	proc   *process
	starts int
	// perStart, when set, returns flags added to the start'th start (1, 2, ...).
	perStart func(start int) []string
}

// newCollector prepares a collector for cluster id with the given flags; --id, --wal-dir and
// --listen are added. It does not start it.
func newCollector(t testing.TB, tails *logTails, name, id string, args ...string) *collector {
	t.Helper()
	c := &collector{t: t, tails: tails, name: name, id: id, walDir: testDir(t, name+"-wal"), port: freePort(t)}
	c.args = append([]string{"run",
		"--id", id,
		"--wal-dir", c.walDir,
		"--listen", c.addr(),
		"--log-level", "info",
	}, args...)
	return c
}

func (c *collector) addr() string { return fmt.Sprintf("127.0.0.1:%d", c.port) }

// dir is the WAL directory of the cluster.
func (c *collector) dir() string { return filepath.Join(c.walDir, c.id) }

// start starts the process and waits for /healthz.
func (c *collector) start() {
	c.t.Helper()
	c.starts++
	args := c.args
	if c.perStart != nil {
		args = append(append([]string(nil), args...), c.perStart(c.starts)...)
	}
	c.proc = startProcess(c.t, c.tails, c.name, c.logPath(), collectorBin, args...)
	waitHTTP(c.t, c.proc, "http://"+c.addr()+"/healthz", readyTimeout)
}

// logPath is the log file of every run, each run after a line starting with "=== ".
func (c *collector) logPath() string { return filepath.Join(filepath.Dir(c.walDir), c.name+".log") }

// kill ends the process with SIGKILL: no flush, no final commit.
func (c *collector) kill() {
	c.t.Helper()
	c.proc.kill()
}

// stop ends the process with SIGTERM; it must exit cleanly (code 0) within timeout.
func (c *collector) stop(timeout time.Duration) {
	c.t.Helper()
	ok, err := c.proc.stop(timeout)
	if !ok {
		c.t.Fatalf("%s did not exit within %v of SIGTERM", c.name, timeout)
	}
	if err != nil {
		c.t.Fatalf("%s exited with %v after SIGTERM", c.name, err)
	}
}

// metrics returns the collector's /metrics as name{labels} → value (samples of every family).
func (c *collector) metrics() (map[string]float64, error) {
	resp, err := httpClient.Get("http://" + c.addr() + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// sumMetric adds the values of every series of the family name in m.
func sumMetric(m map[string]float64, name string) float64 {
	s := 0.0
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// walStatus is the part of `collector wal status -o json` the tests read.
type walStatus struct {
	Clusters []struct {
		ClusterID string `json:"cluster_id"`
		Samples   int64  `json:"samples"`
		Consumers []struct {
			Name               string           `json:"name"`
			UndeliveredSamples int64            `json:"undelivered_samples"`
			Delivered          int64            `json:"delivered_samples"`
			Dropped            map[string]int64 `json:"dropped"`
			Evicted            map[string]int64 `json:"evicted"`
			Deferred           int64            `json:"deferred_samples"`
			DeadLetter         *struct {
				Samples  int64 `json:"samples"`
				Backfill struct {
					Backfilled int64  `json:"backfilled_samples"`
					Blocks     int64  `json:"blocks_uploaded"`
					LastError  string `json:"last_error"`
				} `json:"backfill"`
			} `json:"dead_letter"`
		} `json:"consumers"`
		Corruption []string `json:"corruption"`
	} `json:"clusters"`
}

// status runs `collector wal status -o json` on the collector's WAL directory.
func (c *collector) status() (walStatus, error) {
	var st walStatus
	out, err := runCollector(30*time.Second, "wal", "status", "--wal-dir", c.walDir, "--id", c.id, "-o", "json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("decode wal status: %w\n%s", err, out)
	}
	if len(st.Clusters) != 1 {
		return st, fmt.Errorf("wal status: %d clusters, want 1:\n%s", len(st.Clusters), out)
	}
	return st, nil
}

// runCollector runs the collector binary with args and returns its standard output; an exit code
// other than 0 is an error carrying standard error.
func runCollector(timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, collectorBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("collector %s: %w\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.Bytes(), tailString(stderr.String(), 30))
	}
	return stdout.Bytes(), nil
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// walContents is everything a WAL holds, read back with package wal.
type walContents struct {
	series  seriesSet
	samples int64
	records int
	// times are the distinct sample timestamps (ms) with the number of samples at each.
	times map[int64]int
}

// readWAL reads every retained sample of the WAL in dir (a cluster's directory), from the oldest
// segment to the end of the data. The agent may be running: its torn last record is not read.
func readWAL(dir string) (walContents, error) {
	series := seriesSet{}
	wc, err := scanWAL(dir, func(key string, s sample) error {
		series[key] = append(series[key], s)
		return nil
	})
	wc.series = series
	return wc, err
}

// scanWAL reads the WAL like readWAL, but hands each sample to fn (with its series as
// labels.Labels.String()) instead of keeping it; the result has no series.
func scanWAL(dir string, fn func(key string, s sample) error) (walContents, error) {
	wc := walContents{times: map[int64]int{}}
	r, err := wal.NewReader(dir, wal.Position{}, wal.ReaderOptions{})
	if err != nil {
		return wc, err
	}
	defer r.Close()
	keys := map[wal.SeriesRef]string{}
	for {
		b, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return wc, nil
		}
		if err != nil {
			return wc, fmt.Errorf("read wal %s at %v: %w", dir, r.Position(), err)
		}
		wc.records++
		for _, s := range b.Samples {
			ref := wal.SeriesRef(s.Ref)
			k, ok := keys[ref]
			if !ok {
				lset, ok := r.Labels(ref)
				if !ok {
					return wc, fmt.Errorf("read wal %s: sample of unknown series ref %d in the record at %v", dir, ref, b.Start)
				}
				k = lset.String()
				keys[ref] = k
			}
			if err := fn(k, sample{T: s.T, V: s.V}); err != nil {
				return wc, fmt.Errorf("read wal %s: record at %v: %w", dir, b.Start, err)
			}
			wc.samples++
			wc.times[s.T]++
		}
	}
}
