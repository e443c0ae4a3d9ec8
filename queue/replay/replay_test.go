package replay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/util/compression"
	"github.com/sirupsen/logrus"

	"github.com/collector-dev/collector/queue"
	"github.com/collector-dev/collector/wal"
)

// testWAL is a WAL of one cluster written by a test: scrapes records of series samples each, the
// k-th at t0+k*step.
type testWAL struct {
	dir      string
	t0, step int64
	series   int
	// ends[k] is the position after the k-th record.
	ends []wal.Position
}

func quietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// buildWAL writes the WAL of cluster c1 in a temporary directory, in several segments, and
// leaves it open (as a running agent would) until the test ends.
func buildWAL(t *testing.T, series, scrapes int) *testWAL {
	t.Helper()
	opts := wal.DefaultOptions()
	opts.SegmentSize = 32 << 10
	opts.Compression = compression.None
	base := t.TempDir()
	w, err := wal.Open(quietLogger(), prometheus.NewRegistry(), base, "c1", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	tw := &testWAL{dir: filepath.Join(base, "c1"), t0: time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli(), step: 10_000, series: series}
	refs := make([]wal.SeriesRef, series)
	for k := range scrapes {
		app := w.Appender()
		for i := range series {
			if k == 0 {
				refs[i] = app.Ref(labels.FromStrings("__name__", "m", "i", fmt.Sprint(i)))
			}
			app.Append(refs[i], tw.ts(k), float64(k))
		}
		if _, err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	r, err := wal.NewReader(tw.dir, wal.Position{}, wal.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range scrapes {
		b, err := r.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tw.ends = append(tw.ends, b.End)
	}
	return tw
}

func (tw *testWAL) ts(k int) int64 { return tw.t0 + int64(k)*tw.step }

// want returns the samples of scrapes [from, to) as receiver keys.
func (tw *testWAL) want(from, to int) map[string]bool {
	out := map[string]bool{}
	for k := from; k < to; k++ {
		for i := range tw.series {
			out[fmt.Sprintf(`{__name__="m", i="%d"}@%d`, i, tw.ts(k))] = true
		}
	}
	return out
}

func (tw *testWAL) commit(t *testing.T, name string, k int) {
	t.Helper()
	st := wal.ConsumerState{Position: tw.ends[k-1], Delivered: int64(k * tw.series), Updated: time.Now()}
	if err := wal.CommitPosition(tw.dir, name, st); err != nil {
		t.Fatal(err)
	}
}

// refused is a receiver's permanent refusal of a request (a 400 not about timing).
type refused struct{}

func (refused) Error() string                     { return "http 400: bad request" }
func (refused) Recoverable() bool                 { return false }
func (refused) Reason() string                    { return "http_400" }
func (refused) StatusCode() int                   { return 400 }
func (refused) TooLarge() bool                    { return false }
func (refused) Timing() bool                      { return false }
func (refused) RetryAfter() (time.Duration, bool) { return 0, false }

// sender is the endpoint: it keeps what it accepts; behave, when set, decides each request.
type sender struct {
	mu       sync.Mutex
	got      map[string]bool
	requests int
	behave   func(ctx context.Context, n int) error // n counts requests from 1
}

func (s *sender) Send(ctx context.Context, series []queue.Series) error {
	s.mu.Lock()
	s.requests++
	n, behave := s.requests, s.behave
	s.mu.Unlock()
	if behave != nil {
		if err := behave(ctx, n); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		s.got = map[string]bool{}
	}
	for _, in := range series {
		// Series.Labels is field 1 of prompb.TimeSeries as it is.
		var ts prompb.TimeSeries
		if err := ts.Unmarshal([]byte(in.Labels)); err != nil {
			return fmt.Errorf("decode labels: %w", err)
		}
		b := labels.NewScratchBuilder(len(ts.Labels))
		for _, l := range ts.Labels {
			b.Add(l.Name, l.Value)
		}
		for _, smp := range in.Samples {
			s.got[fmt.Sprintf("%s@%d", b.Labels().String(), smp.Timestamp)] = true
		}
	}
	return nil
}

func (s *sender) set() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.got)
}

var _ queue.Sender = (*sender)(nil)

func testOptions(out io.Writer) Options {
	o := DefaultOptions()
	o.Name, o.Prefix = "replay-hub", "replay-"
	o.MaxSamplesPerSend = 100
	o.Out = out
	return o
}

func run(t *testing.T, s queue.Sender, opts Options, tw *testWAL, interrupt <-chan os.Signal) error {
	t.Helper()
	r, err := New(quietLogger(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r.Run(context.Background(), []Target{{ID: "c1", Dir: tw.dir}}, interrupt)
}

// TestStart: where a fresh replay starts, and which endpoint --undelivered means.
func TestStart(t *testing.T) {
	tw := buildWAL(t, 10, 20)
	tw.commit(t, "hub", 5)
	tw.commit(t, "replay-old", 2) // another replay's position is not an endpoint's
	for _, tc := range []struct {
		name        string
		undelivered bool
		from        string
		extra       string // a second endpoint's position
		want        wal.Position
		wantErr     string
	}{
		{name: "everything retained", want: wal.Position{}},
		{name: "the only endpoint", undelivered: true, want: tw.ends[4]},
		{name: "named endpoint", undelivered: true, from: "hub", extra: "other", want: tw.ends[4]},
		{name: "two endpoints", undelivered: true, extra: "other", wantErr: "--undelivered: name the endpoint with --consumer (positions found: hub, other)"},
		{name: "unknown endpoint", undelivered: true, from: "nope", wantErr: "--undelivered: "},
		// Only the replay prefix is reserved: an endpoint may be called "replayer".
		{name: "endpoint named like a replay", undelivered: true, from: "", extra: "replayer", wantErr: "positions found: hub, replayer)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.extra != "" {
				tw.commit(t, tc.extra, 10)
				defer func() {
					if err := wal.RemovePosition(tw.dir, tc.extra); err != nil {
						t.Fatal(err)
					}
				}()
			}
			opts := testOptions(nil)
			opts.Undelivered, opts.Endpoint, opts.DryRun = tc.undelivered, tc.from, true
			r, err := New(quietLogger(), nil, opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.start(tw.dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("start = %v, %v; want error %q", got, err, tc.wantErr)
				}
				var ce *ConsumerError
				if strings.Contains(tc.wantErr, "positions found") != errors.As(err, &ce) {
					t.Fatalf("error %T: a *ConsumerError only when no endpoint is named", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("start = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestDryRun: a dry run counts the samples in range from the start and sends nothing, registers
// nothing.
func TestDryRun(t *testing.T) {
	tw := buildWAL(t, 10, 20)
	tw.commit(t, "hub", 5)
	rfc := func(k int) string { return time.UnixMilli(tw.ts(k)).UTC().Format(time.RFC3339) }
	for _, tc := range []struct {
		name        string
		undelivered bool
		minK, maxK  int // scrapes; -1 for no limit
		want        string
	}{
		{"all", false, -1, -1, "cluster c1: would send 200 samples from position 0:0\n"},
		{"undelivered", true, -1, -1, "cluster c1: would send 150 samples from position " + tw.ends[4].String() + "\n"},
		{"range", false, 3, 7, "cluster c1: would send 50 samples from position 0:0 (range " + rfc(3) + " .. " + rfc(7) + ")\n"},
		{"since", false, 12, -1, "cluster c1: would send 80 samples from position 0:0 (range " + rfc(12) + " .. -)\n"},
		{"undelivered until", true, -1, 9, "cluster c1: would send 50 samples from position " + tw.ends[4].String() + " (range - .. " + rfc(9) + ")\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			opts := testOptions(&out)
			opts.DryRun, opts.Undelivered = true, tc.undelivered
			if tc.minK >= 0 {
				opts.MinTime = tw.ts(tc.minK)
			}
			if tc.maxK >= 0 {
				opts.MaxTime = tw.ts(tc.maxK)
			}
			if err := run(t, nil, opts, tw, nil); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("output %q, want %q", out.String(), tc.want)
			}
			if _, err := wal.ReadPosition(tw.dir, opts.Name); !errors.Is(err, wal.ErrNoPosition) {
				t.Errorf("a dry run registered: %v", err)
			}
		})
	}
}

func sameSet(t *testing.T, want, got map[string]bool) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		t.Errorf("the receiver holds %d samples, want %d", len(got), len(want))
	}
}

// TestRunOutcome: what a replay that ran to its end returns, prints and leaves behind.
func TestRunOutcome(t *testing.T) {
	t.Run("delivered", func(t *testing.T) {
		tw := buildWAL(t, 10, 20)
		var out bytes.Buffer
		s := &sender{}
		if err := run(t, s, testOptions(&out), tw, nil); err != nil {
			t.Fatal(err)
		}
		sameSet(t, tw.want(0, 20), s.set())
		if want := "cluster c1: sent 200 samples, dropped 0 (0), skipped outside the range 0, missing segments 0\n"; out.String() != want {
			t.Errorf("summary %q, want %q", out.String(), want)
		}
		if _, err := wal.ReadPosition(tw.dir, "replay-hub"); !errors.Is(err, wal.ErrNoPosition) {
			t.Errorf("a finished replay kept its lease: %v", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		tw := buildWAL(t, 10, 20)
		var out bytes.Buffer
		s := &sender{behave: func(context.Context, int) error { return refused{} }}
		err := run(t, s, testOptions(&out), tw, nil)
		var ie *IncompleteError
		if !errors.As(err, &ie) || ie.Dropped != 200 || ie.Missing != 0 || err.Error() != "replay dropped 200 samples (see the summary above)" {
			t.Fatalf("Run = %v, want 200 dropped", err)
		}
		if want := "cluster c1: sent 0 samples, dropped 200 (http_400=200), skipped outside the range 0, missing segments 0\n"; out.String() != want {
			t.Errorf("summary %q, want %q", out.String(), want)
		}
	})
	t.Run("range", func(t *testing.T) {
		tw := buildWAL(t, 10, 20)
		var out bytes.Buffer
		s := &sender{}
		opts := testOptions(&out)
		opts.MinTime, opts.MaxTime = tw.ts(5), tw.ts(9)
		if err := run(t, s, opts, tw, nil); err != nil {
			t.Fatal(err)
		}
		sameSet(t, tw.want(5, 10), s.set())
		if !strings.HasPrefix(out.String(), "cluster c1: sent 50 samples, dropped 0 (0), skipped outside the range 150, missing segments 0 (range ") {
			t.Errorf("summary %q", out.String())
		}
	})
}

// TestIncompleteErrorMessages: the exit message names what was lost.
func TestIncompleteErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		err  IncompleteError
		want string
	}{
		{IncompleteError{Dropped: 3}, "replay dropped 3 samples (see the summary above)"},
		{IncompleteError{Missing: 2}, "replay skipped 2 missing segments: deleted before it could read them, their samples were not sent (see the summary above)"},
		{IncompleteError{Dropped: 3, Missing: 2}, "replay dropped 3 samples and skipped 2 missing segments (see the summary above)"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestFormatReasons: counts by reason print as reason=n sorted by reason, "0" when there are none.
func TestFormatReasons(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    map[string]int64
		want string
	}{
		{"nil", nil, "0"},
		{"empty", map[string]int64{}, "0"},
		{"one", map[string]int64{"too_old": 4}, "too_old=4"},
		{"sorted", map[string]int64{"refused": 5, "evicted_disk_cap": 1, "deadline": 2}, "deadline=2,evicted_disk_cap=1,refused=5"},
		{"zero kept", map[string]int64{"b": 0, "a": 3}, "a=3,b=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FormatReasons(tc.m); got != tc.want {
				t.Errorf("FormatReasons(%v) = %q, want %q", tc.m, got, tc.want)
			}
		})
	}
}

// TestInterruptAndResume: an interrupt stops the replay with its position kept; a resumed replay
// sends the rest, counting only its own run.
func TestInterruptAndResume(t *testing.T) {
	tw := buildWAL(t, 10, 60)
	blocked := make(chan struct{}, 1)
	s := &sender{behave: func(ctx context.Context, n int) error {
		if n <= 3 {
			return nil
		}
		select { // a slow endpoint: holds the request until the replay gives up on it
		case blocked <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}}
	opts := testOptions(io.Discard)
	opts.MaxShards = 1
	opts.FlushDeadline = 0
	interrupt := make(chan os.Signal, 1)
	r, err := New(quietLogger(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background(), []Target{{ID: "c1", Dir: tw.dir}}, interrupt) }()
	select {
	case <-blocked:
	case err := <-done:
		t.Fatalf("Run returned before the endpoint blocked: %v", err)
	}
	interrupt <- syscall.SIGTERM
	err = <-done
	var ie *InterruptedError
	if !errors.As(err, &ie) || !strings.HasSuffix(err.Error(), "; continue with --resume") {
		t.Fatalf("Run = %v, want an interruption", err)
	}
	st, err := wal.ReadPosition(tw.dir, opts.Name)
	if accepted := int64(len(s.set())); err != nil || st.Position != ie.Position || st.Delivered == 0 || st.Delivered > accepted {
		t.Fatalf("position after the interruption %+v, %v; want %v with some of the %d accepted samples delivered", st, err, ie.Position, accepted)
	}

	var out bytes.Buffer
	s.behave = nil
	opts.Resume, opts.Out = true, &out
	if err := run(t, s, opts, tw, nil); err != nil {
		t.Fatal(err)
	}
	sameSet(t, tw.want(0, 60), s.set())
	if want := fmt.Sprintf("cluster c1: sent %d samples, dropped 0 (0)", 600-st.Delivered); !strings.HasPrefix(out.String(), want) {
		t.Errorf("summary %q, want %q...", out.String(), want)
	}
}

// TestNewRefuses: a replay that could move an endpoint's position, or has nowhere to send, is
// not made.
func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
		sender queue.Sender
		want   string
	}{
		{"endpoint's name", func(o *Options) { o.Name = "hub" }, &sender{}, `name "hub" does not start with "replay-"`},
		{"no prefix", func(o *Options) { o.Prefix = "" }, &sender{}, "no prefix"},
		{"no sender", func(*Options) {}, nil, "no sender"},
		{"resume and undelivered", func(o *Options) { o.Resume, o.Undelivered = true, true }, &sender{}, "exclusive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(nil)
			tc.change(&opts)
			if _, err := New(quietLogger(), tc.sender, opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want %q", err, tc.want)
			}
		})
	}
}
