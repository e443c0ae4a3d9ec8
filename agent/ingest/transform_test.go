package ingest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/collector-dev/collector/wal"
)

// testNowMs is the clock of the transform and ingest tests: 2025-11-28T08:53:20Z.
const testNowMs = 1764320000000

// formatSample writes a sample as an exposition line: name{labels} value timestamp.
func formatSample(lset labels.Labels, t int64, v float64) string {
	var b strings.Builder
	b.WriteString(lset.Get(labels.MetricName))
	b.WriteByte('{')
	n := 0
	lset.Range(func(l labels.Label) {
		if l.Name == labels.MetricName {
			return
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		b.WriteString(l.Name)
		b.WriteString(`="`)
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(l.Value))
		b.WriteByte('"')
	})
	b.WriteString("} ")
	b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(t, 10))
	return b.String()
}

// readWAL returns every sample of the WAL in dir as formatted lines in WAL order, and the number
// of scrapes (Samples records).
func readWAL(t testing.TB, dir string) ([]string, int) {
	t.Helper()
	r, err := wal.NewReader(dir, wal.Position{}, wal.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []string
	scrapes := 0
	for {
		b, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out, scrapes
		}
		if err != nil {
			t.Fatal(err)
		}
		scrapes++
		for _, s := range b.Samples {
			lset, ok := r.Labels(s.Ref)
			if !ok {
				t.Fatalf("ref %d does not resolve", s.Ref)
			}
			out = append(out, formatSample(lset, s.T, s.V))
		}
	}
}

// openTestWAL opens a WAL in a temporary directory.
func openTestWAL(t testing.TB) *wal.WAL {
	t.Helper()
	opts := wal.DefaultOptions()
	opts.Fsync = wal.FsyncSegment
	w, err := wal.Open(nil, nil, t.TempDir(), "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func testIngestOptions(now *time.Time) IngestOptions {
	o := DefaultIngestOptions()
	o.Now = func() time.Time { return *now }
	return o
}

// parseTestConfig reads the "# config:" lines at the top of a golden input: space-separated
// label=K=V, rename=OLD=NEW, elide=NAME (elide= for none), anonymize=NAME, salt=S, id=ID,
// maxage=DURATION, tolerance=DURATION. Unset fields keep DefaultTransformConfig.
func parseTestConfig(t *testing.T, in []byte) TransformConfig {
	cfg := DefaultTransformConfig()
	elideSet := false
	sc := bufio.NewScanner(bytes.NewReader(in))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "# config:")
		if !ok {
			break
		}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			var err error
			switch k {
			case "label":
				var l LabelPair
				l, err = ParseLabelPair(v)
				cfg.Labels = append(cfg.Labels, l)
			case "rename":
				var o, n string
				o, n, err = ParseRename(v)
				if cfg.Renames == nil {
					cfg.Renames = map[string]string{}
				}
				cfg.Renames[o] = n
			case "elide":
				if !elideSet {
					cfg.Elide, elideSet = nil, true
				}
				if v != "" {
					cfg.Elide = append(cfg.Elide, v)
				}
			case "anonymize":
				cfg.Anonymize = append(cfg.Anonymize, v)
			case "salt":
				cfg.Salt = v
			case "id":
				cfg.ClusterID = v
			case "maxage":
				cfg.MaxAge, err = time.ParseDuration(v)
			case "tolerance":
				cfg.FutureTolerance, err = time.ParseDuration(v)
			default:
				err = fmt.Errorf("unknown key %q", k)
			}
			if err != nil {
				t.Fatalf("config %q: %v", f, err)
			}
		}
	}
	return cfg
}

// TestTransformGolden runs each testdata/transform/*.txt body (and the federate fixture) through
// an Ingester into a real WAL and compares the WAL's content, sorted, and the result counters
// with the .golden file. Regenerate with -update.
func TestTransformGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "transform", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	inputs = append(inputs, filepath.Join("..", "..", "testdata", "federate", "openshift-sample.txt"))
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".txt")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			cfg := parseTestConfig(t, body)
			now := time.UnixMilli(testNowMs)
			w := openTestWAL(t)
			ing, err := NewIngester(nil, nil, w, cfg, testIngestOptions(&now))
			if err != nil {
				t.Fatal(err)
			}
			res, err := ing.Ingest(bytes.NewReader(body), "text/plain; version=0.0.4")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := readWAL(t, w.Dir())
			slices.Sort(got)
			var out bytes.Buffer
			fmt.Fprintf(&out, "# read=%d appended=%d filtered=%d clamped=%d stripped=%d", res.Read, res.Appended, res.Filtered, res.Clamped, res.Stripped)
			reasons := make([]string, 0, len(res.Dropped))
			for r := range res.Dropped {
				reasons = append(reasons, r)
			}
			slices.Sort(reasons)
			for _, r := range reasons {
				fmt.Fprintf(&out, " %s=%d", r, res.Dropped[r])
			}
			out.WriteByte('\n')
			for _, l := range got {
				out.WriteString(l)
				out.WriteByte('\n')
			}
			golden := filepath.Join("testdata", "transform", name+".golden")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("output differs from %s (run with -update to accept):\n%s", golden, out.Bytes())
			}
		})
	}
}

func TestParseLabelPair(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    LabelPair
		wantErr string
	}{
		{in: "cluster=prod-1", want: LabelPair{"cluster", "prod-1"}},
		{in: "clusterID=a=b", want: LabelPair{"clusterID", "a=b"}},
		{in: "nolabel", wantErr: "want name=value"},
		{in: "=v", wantErr: "invalid label name"},
		{in: "1a=v", wantErr: "invalid label name"},
		{in: "__name__=v", wantErr: "reserved"},
		{in: "a=", wantErr: "empty value"},
		{in: "a=" + strings.Repeat("x", 256), wantErr: "longer than 255"},
		{in: "a=\xff", wantErr: "UTF-8"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLabelPair(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v %v, want %v", got, err, tc.want)
			}
		})
	}
}

func TestParseRename(t *testing.T) {
	for _, tc := range []struct {
		in, old, new, wantErr string
	}{
		{in: "ALERTS=alerts", old: "ALERTS", new: "alerts"},
		{in: "a", wantErr: "want OLD=NEW"},
		{in: "=b", wantErr: "invalid metric name"},
		{in: "a=b-c", wantErr: "invalid metric name"},
		{in: "a=", wantErr: "invalid metric name"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			o, n, err := ParseRename(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || o != tc.old || n != tc.new {
				t.Fatalf("got %q %q %v", o, n, err)
			}
		})
	}
}

func TestTransformConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  TransformConfig
		ok   bool
	}{
		{"default", DefaultTransformConfig(), true},
		{"anonymize without salt", TransformConfig{Anonymize: []string{"pod"}}, false},
		{"bad label", TransformConfig{Labels: []LabelPair{{"a-b", "v"}}}, false},
		{"bad rename", TransformConfig{Renames: map[string]string{"a": "b c"}}, false},
		{"negative age", TransformConfig{MaxAge: -1}, false},
		{"long cluster id", TransformConfig{ClusterID: strings.Repeat("x", 300)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestSampleTime(t *testing.T) {
	tr, err := newTransformer(TransformConfig{MaxAge: time.Hour, FutureTolerance: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := int64(10 * time.Hour / time.Millisecond)
	for _, tc := range []struct {
		name    string
		t       int64
		hasT    bool
		want    int64
		clamped bool
		drop    string
	}{
		{"now", now, true, now, false, ""},
		{"no timestamp", 0, false, 0, false, DropNoTimestamp},
		{"age limit", now - 3600000, true, now - 3600000, false, ""},
		{"too old", now - 3600001, true, 0, false, DropTooOld},
		{"within tolerance", now + 60000, true, now + 60000, false, ""},
		{"clamped", now + 60001, true, now, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, clamped, drop := tr.sampleTime(tc.t, tc.hasT, now)
			if got != tc.want || clamped != tc.clamped || drop != tc.drop {
				t.Fatalf("got %d %v %q, want %d %v %q", got, clamped, drop, tc.want, tc.clamped, tc.drop)
			}
		})
	}
	if !isStale(math.Float64frombits(0x7ff0000000000002)) || isStale(math.NaN()) {
		t.Fatal("isStale")
	}
}
