package shipper

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

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
