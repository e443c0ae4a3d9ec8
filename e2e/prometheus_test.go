package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// promServer is a real prometheus process with its own configuration, TSDB directory and port. A
// restart keeps the port and the TSDB (the receiver's data survives its outage).
type promServer struct {
	t     testing.TB
	tails *logTails
	name  string
	bin   string
	dir   string
	port  int
	args  []string
	proc  *process
}

// promConfig describes a prometheus process to start.
type promConfig struct {
	// Config is the YAML configuration; the string "{{PORT}}" is replaced by the server's port.
	Config string
	// Receiver enables the remote-write receiver (--web.enable-remote-write-receiver).
	Receiver bool
	// Bin is the prometheus binary; empty means Debian's (requirePrometheus).
	Bin string
	// Args are added to the command line.
	Args []string
}

// sourceConfig is the configuration of a source Prometheus: it scrapes itself every second as
// job "prometheus" (the series the collectors federate) and once more as job "other" (series that
// match[] must leave out), and it has the external label prometheus that collector elides by
// default.
const sourceConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  external_labels:
    prometheus: e2e/source
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:{{PORT}}"]}]
  - job_name: other
    scrape_interval: 5s
    static_configs: [{targets: ["127.0.0.1:{{PORT}}"]}]
`

// receiverConfig is the configuration of a receiver Prometheus: it scrapes nothing, and its
// out-of-order window makes it accept what Thanos receive keeps of a re-sent request. A collector
// sends a request again when the answer was lost (a reset after the receiver wrote it) and, after a
// crash, every record after its last committed position: some of the samples are then older than
// the series' newest one at the receiver. Thanos receive writes the valid samples of such a request
// and answers 409 for the rest; a plain Prometheus rolls the whole request back and answers 400
// (TestFlakyHub/plain_prometheus_receiver shows it). With the window the
// receiver keeps one copy of each sample (queries merge exact duplicates), so "every sample
// arrived" and "nothing dropped" stay checkable sample by sample.
const receiverConfig = `global: {}
storage:
  tsdb:
    out_of_order_time_window: 30m
`

// plainReceiverConfig is a receiver without an out-of-order window: it accepts a re-sent sample
// only when it is an exact duplicate of the series' newest one.
const plainReceiverConfig = "global: {}\n"

// startPrometheus starts a prometheus named name and waits until it is ready.
func startPrometheus(t testing.TB, tails *logTails, name string, cfg promConfig) *promServer {
	t.Helper()
	dir := testDir(t, name)
	bin := cfg.Bin
	if bin == "" {
		bin = requirePrometheus(t)
	}
	s := &promServer{t: t, tails: tails, name: name, bin: bin, dir: dir}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.port = freePort(t)
		conf := filepath.Join(dir, "prometheus.yml")
		if err := os.WriteFile(conf, []byte(strings.ReplaceAll(cfg.Config, "{{PORT}}", strconv.Itoa(s.port))), 0o644); err != nil {
			t.Fatal(err)
		}
		s.args = []string{
			"--config.file=" + conf,
			"--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + s.addr(),
			"--log.level=warn",
		}
		if cfg.Receiver {
			s.args = append(s.args, "--web.enable-remote-write-receiver")
		}
		s.args = append(s.args, cfg.Args...)
		if lastErr = s.tryStart(); lastErr == nil {
			return s
		}
		// Someone took the port between freePort and the bind: another port.
	}
	t.Fatalf("start %s: %v", name, lastErr)
	return nil
}

func (s *promServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// URL is the server's base URL.
func (s *promServer) URL() string { return "http://" + s.addr() }

// WriteURL is the remote-write URL of a receiver.
func (s *promServer) WriteURL() string { return s.URL() + "/api/v1/write" }

// tryStart starts the process and waits until it is ready; it returns an error when the process
// exits first.
func (s *promServer) tryStart() error {
	s.proc = startProcess(s.t, s.tails, s.name, filepath.Join(s.dir, "prometheus.log"), s.bin, s.args...)
	err := poll(readyTimeout, func() error {
		if s.proc.exited() {
			return errExited{s.name, s.proc.err}
		}
		resp, err := httpClient.Get(s.URL() + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		s.proc.kill()
	}
	return err
}

// stop ends the process with SIGTERM (it must exit within stopTimeout).
func (s *promServer) stop() {
	s.t.Helper()
	if ok, _ := s.proc.stop(stopTimeout); !ok {
		s.t.Errorf("%s did not exit within %v of SIGTERM", s.name, stopTimeout)
	}
}

// restart starts the stopped process again on the same port and TSDB.
func (s *promServer) restart() {
	s.t.Helper()
	var err error
	// The port was ours a moment ago; a failed bind is retried until the deadline.
	deadline := time.Now().Add(readyTimeout)
	for {
		if err = s.tryStart(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("restart %s: %v", s.name, err)
		}
	}
}

// sample is one raw sample: timestamp in milliseconds and value.
type sample struct {
	T int64
	V float64
}

func (s sample) String() string { return fmt.Sprintf("%g@%d", s.V, s.T) }

// sameSample compares timestamps and values bit for bit (NaN equals NaN).
func sameSample(a, b sample) bool {
	return a.T == b.T && (a.V == b.V || (math.IsNaN(a.V) && math.IsNaN(b.V)))
}

// seriesSet maps a series (labels.Labels.String()) to its samples in time order.
type seriesSet map[string][]sample

// total is the number of samples in the set.
func (s seriesSet) total() int {
	n := 0
	for _, ss := range s {
		n += len(ss)
	}
	return n
}

// queryResponse is the envelope of the HTTP API.
type queryResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

// query runs an instant query at time at (zero: now) and returns the raw result.
func query(base, q string, at time.Time) (queryResponse, error) {
	v := url.Values{"query": {q}}
	if !at.IsZero() {
		v.Set("time", formatTime(at))
	}
	resp, err := httpClient.PostForm(base+"/api/v1/query", v)
	if err != nil {
		return queryResponse{}, fmt.Errorf("query %s: %w", q, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return queryResponse{}, fmt.Errorf("query %s: read: %w", q, err)
	}
	var qr queryResponse
	if err := json.Unmarshal(body, &qr); err != nil {
		return queryResponse{}, fmt.Errorf("query %s: status %s: decode: %w", q, resp.Status, err)
	}
	if qr.Status != "success" {
		return qr, fmt.Errorf("query %s: %s: %s", q, qr.ErrorType, qr.Error)
	}
	return qr, nil
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// rawSamples returns the raw samples of the series a range selector (like {clusterID="x"}[1h])
// selects at time at (zero: now).
func rawSamples(base, rangeSelector string, at time.Time) (seriesSet, error) {
	qr, err := query(base, rangeSelector, at)
	if err != nil {
		return nil, err
	}
	if qr.Data.ResultType != "matrix" {
		return nil, fmt.Errorf("query %s: result type %q, want matrix", rangeSelector, qr.Data.ResultType)
	}
	var res []struct {
		Metric map[string]string `json:"metric"`
		Values []apiPoint        `json:"values"`
	}
	if err := json.Unmarshal(qr.Data.Result, &res); err != nil {
		return nil, fmt.Errorf("query %s: decode matrix: %w", rangeSelector, err)
	}
	out := make(seriesSet, len(res))
	for _, r := range res {
		key := labels.FromMap(r.Metric).String()
		ss := make([]sample, 0, len(r.Values))
		for _, v := range r.Values {
			ss = append(ss, sample(v))
		}
		out[key] = ss
	}
	return out, nil
}

// vectorValues returns the series and values of an instant vector query.
func vectorValues(base, q string, at time.Time) (map[string]float64, error) {
	qr, err := query(base, q, at)
	if err != nil {
		return nil, err
	}
	if qr.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %q, want vector", q, qr.Data.ResultType)
	}
	var res []struct {
		Metric map[string]string `json:"metric"`
		Value  apiPoint          `json:"value"`
	}
	if err := json.Unmarshal(qr.Data.Result, &res); err != nil {
		return nil, fmt.Errorf("query %s: decode vector: %w", q, err)
	}
	out := make(map[string]float64, len(res))
	for _, r := range res {
		out[labels.FromMap(r.Metric).String()] = r.Value.V
	}
	return out, nil
}

// vectorLabels returns the label sets of an instant vector query.
func vectorLabels(base, q string) ([]map[string]string, error) {
	qr, err := query(base, q, time.Time{})
	if err != nil {
		return nil, err
	}
	var res []struct {
		Metric map[string]string `json:"metric"`
	}
	if err := json.Unmarshal(qr.Data.Result, &res); err != nil {
		return nil, fmt.Errorf("query %s: decode: %w", q, err)
	}
	out := make([]map[string]string, 0, len(res))
	for _, r := range res {
		out = append(out, r.Metric)
	}
	return out, nil
}

// scalarQuery returns the single value of a query whose result is one sample (count(...) etc.),
// or 0 when the result is empty (count of nothing).
func scalarQuery(base, q string, at time.Time) (float64, error) {
	vs, err := vectorValues(base, q, at)
	if err != nil {
		return 0, err
	}
	switch len(vs) {
	case 0:
		return 0, nil
	case 1:
		for _, v := range vs {
			return v, nil
		}
	}
	return 0, fmt.Errorf("query %s: %d series, want one", q, len(vs))
}

// apiPoint is the API's [<seconds>, "<value>"]: a number and a string ("NaN", "+Inf" included).
type apiPoint sample

func (p *apiPoint) UnmarshalJSON(b []byte) error {
	var raw [2]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("point %s: %w", b, err)
	}
	ts, err := parseMillis(string(raw[0]))
	if err != nil {
		return err
	}
	var vs string
	if err := json.Unmarshal(raw[1], &vs); err != nil {
		return fmt.Errorf("point %s: value: %w", b, err)
	}
	v, err := strconv.ParseFloat(vs, 64)
	if err != nil {
		return fmt.Errorf("point %s: value: %w", b, err)
	}
	*p = apiPoint{T: ts, V: v}
	return nil
}

// rangeCounts runs q (whose result is one series, like count(...)) as a range query at every
// second from..to (ms, whole seconds) and returns its value per evaluation time; times without a
// value (count of nothing) are absent.
func rangeCounts(base, q string, from, to int64) (map[int64]int, error) {
	v := url.Values{
		"query": {q},
		"start": {formatTime(time.UnixMilli(from))},
		"end":   {formatTime(time.UnixMilli(to))},
		"step":  {"1"},
	}
	resp, err := httpClient.PostForm(base+"/api/v1/query_range", v)
	if err != nil {
		return nil, fmt.Errorf("query_range %s: %w", q, err)
	}
	defer resp.Body.Close()
	var qr queryResponse
	if err := json.NewDecoder(resp.Body).Decode(&qr); err != nil {
		return nil, fmt.Errorf("query_range %s: status %s: decode: %w", q, resp.Status, err)
	}
	if qr.Status != "success" {
		return nil, fmt.Errorf("query_range %s: %s: %s", q, qr.ErrorType, qr.Error)
	}
	var res []struct {
		Values []apiPoint `json:"values"`
	}
	if err := json.Unmarshal(qr.Data.Result, &res); err != nil {
		return nil, fmt.Errorf("query_range %s: decode matrix: %w", q, err)
	}
	if len(res) > 1 {
		return nil, fmt.Errorf("query_range %s: %d series, want at most one", q, len(res))
	}
	out := map[int64]int{}
	for _, r := range res {
		for _, p := range r.Values {
			out[p.T] = int(p.V)
		}
	}
	return out, nil
}

// parseMillis turns the API's "1700000000.123" into milliseconds without float rounding.
func parseMillis(s string) (int64, error) {
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q: %w", s, err)
	}
	frac = (frac + "000")[:3]
	m, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("timestamp %q: %w", s, err)
	}
	return n*1000 + m, nil
}

// missingSamples returns how many samples of want are not in got, and up to max descriptions.
func missingSamples(want, got seriesSet, max int) (int, []string) {
	n := 0
	var examples []string
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := got[k]
		for _, w := range want[k] {
			i := sort.Search(len(g), func(i int) bool { return g[i].T >= w.T })
			if i < len(g) && sameSample(g[i], w) {
				continue
			}
			n++
			if len(examples) < max {
				have := "nothing"
				if i < len(g) && g[i].T == w.T {
					have = g[i].String()
				}
				examples = append(examples, fmt.Sprintf("%s %s (receiver has %s at that time, %d samples of the series)", k, w, have, len(g)))
			}
		}
	}
	return n, examples
}
