package shipper

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/sirupsen/logrus"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"
)

// TestTimingAgainstPrometheus sends to Prometheus' own remote-write handler over a real TSDB the
// requests a re-send after a crash produces, and checks that each refusal is recognised as
// Timing, while a request the receiver accepts, and a 400 it answers for another reason, is not.
func TestTimingAgainstPrometheus(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	db, err := tsdb.Open(t.TempDir(), logger, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	srv := httptest.NewServer(remote.NewWriteHandler(logger, nil, db, remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, false, false))
	t.Cleanup(srv.Close)
	c := newTestClient(t, srv.URL+"/api/v1/write", DefaultOptions())

	now := time.Now().Truncate(time.Second).UnixMilli()
	one := func(name string, ts int64, v float64) []prompb.TimeSeries {
		return []prompb.TimeSeries{{Labels: lbls("__name__", name, "job", "test"), Samples: []prompb.Sample{{Value: v, Timestamp: ts}}}}
	}
	if err := c.Send(context.Background(), toSeries(one("a", now, 1))); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(context.Background(), toSeries(one("a", now, 1))); err != nil {
		t.Fatalf("an exact duplicate of the newest sample: %v, want accepted", err)
	}
	for _, tc := range []struct {
		name   string
		series []prompb.TimeSeries
	}{
		{"out of order", one("a", now-1000, 1)},
		{"duplicate sample for timestamp", one("a", now, 2)},
		{"out of bounds", one("b", now-2*time.Hour.Milliseconds(), 1)},
		{"too far in the future", one("c", now+time.Hour.Milliseconds(), 1)},
		{"out of order beside a new sample", append(one("d", now, 1), one("a", now-1000, 1)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Send(context.Background(), toSeries(tc.series))
			var e *Error
			if !errors.As(err, &e) || e.StatusCode() != 400 || !e.Timing() || e.Recoverable() || e.TooLarge() || e.Reason() != "http_400" {
				t.Fatalf("Send = %v, want a permanent timing 400", err)
			}
		})
	}
}

// TestTemplatesAgainstPrometheus sends four scrapes of the same 2000 series (the first builds the
// template, the others are rendered from it) to Prometheus' own remote-write handler over a real
// TSDB, and reads every sample back.
func TestTemplatesAgainstPrometheus(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	db, err := tsdb.Open(t.TempDir(), logger, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	srv := httptest.NewServer(remote.NewWriteHandler(logger, nil, db, remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, false, false))
	t.Cleanup(srv.Close)
	reg := prometheus.NewRegistry()
	c, err := New(logrus.New(), reg, srv.URL+"/api/v1/write", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}

	base := templateBatch(2000)
	start := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	want := map[string][]Sample{} // by labels.Labels.String
	for scrape := range 4 {
		series := make([]Series, len(base))
		for i, s := range base {
			v := float64(i%50) * float64(scrape+1) // zeros (left out) and round values
			ts := start + int64(scrape)*15000 + int64(i%7)*100
			series[i] = Series{Labels: s.Labels, Samples: []Sample{{Timestamp: ts, Value: v}}}
			key := seriesKey(t, s.Labels)
			want[key] = append(want[key], series[i].Samples[0])
		}
		if err := c.Send(context.Background(), series); err != nil {
			t.Fatalf("scrape %d: %v", scrape, err)
		}
	}
	for result, n := range map[string]float64{"built": 1, "hit": 3} {
		if got := testutil.ToFloat64(c.metrics.templates.WithLabelValues(result)); got != n {
			t.Errorf("%s requests: %v, want %v", result, got, n)
		}
	}

	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+"))
	got := 0
	for ss.Next() {
		lset := ss.At().Labels()
		exp, ok := want[lset.String()]
		if !ok {
			t.Fatalf("unexpected series %s", lset)
		}
		it := ss.At().Iterator(nil)
		var samples []Sample
		for it.Next() != chunkenc.ValNone {
			ts, v := it.At()
			samples = append(samples, Sample{Timestamp: ts, Value: v})
		}
		if !reflect.DeepEqual(samples, exp) {
			t.Fatalf("series %s: samples %v, want %v", lset, samples, exp)
		}
		got++
	}
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	if got != len(want) {
		t.Fatalf("%d series in the TSDB, want %d", got, len(want))
	}
}

// seriesKey returns the labels of enc, a Series.Labels, as labels.Labels.String writes them.
func seriesKey(t *testing.T, enc string) string {
	var ts prompb.TimeSeries
	if err := ts.Unmarshal([]byte(enc)); err != nil {
		t.Fatal(err)
	}
	b := labels.NewScratchBuilder(len(ts.Labels))
	for _, l := range ts.Labels {
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	return b.Labels().String()
}
