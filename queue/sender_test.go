package queue_test

// A minimal remote-write sender for these tests only: protobuf + snappy over HTTP, classifying
// failures with the behaviour methods the queue acts on. The real one is package shipper.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/collector-dev/collector/queue"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

type httpSender struct {
	url    string
	client *http.Client
}

// newSender returns the Sender the integration tests use for url, with a request timeout.
func newSender(url string, timeout time.Duration) queue.Sender {
	return &httpSender{url: url, client: &http.Client{Timeout: timeout}}
}

var _ queue.Sender = (*httpSender)(nil)

// sendError has the shipper's behaviour methods.
type sendError struct {
	code       int
	retryAfter time.Duration
	err        error
}

func (e *sendError) Error() string {
	if e.err != nil {
		return "send: " + e.err.Error()
	}
	return "send: HTTP " + strconv.Itoa(e.code)
}
func (e *sendError) Unwrap() error { return e.err }
func (e *sendError) Recoverable() bool {
	return e.code == 0 || e.code == 429 || e.code == 408 || e.code >= 500
}
func (e *sendError) TooLarge() bool                    { return e.code == 413 }
func (e *sendError) RetryAfter() (time.Duration, bool) { return e.retryAfter, e.retryAfter > 0 }
func (e *sendError) Reason() string {
	if e.code == 0 {
		return "network"
	}
	return "http_" + strconv.Itoa(e.code)
}
func (e *sendError) StatusCode() int { return e.code }

func (s *httpSender) Send(ctx context.Context, series []prompb.TimeSeries) error {
	req := prompb.WriteRequest{Timeseries: series}
	raw, err := req.Marshal()
	if err != nil {
		return fmt.Errorf("marshal: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	hreq.Header.Set("User-Agent", "collector-queue-test")
	resp, err := s.client.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &sendError{err: err}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 == 2 {
		return nil
	}
	e := &sendError{code: resp.StatusCode}
	if v := resp.Header.Get("Retry-After"); v != "" {
		if secs, err := strconv.Atoi(v); err == nil {
			e.retryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(v); err == nil {
			e.retryAfter = time.Until(t)
		}
	}
	return e
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
