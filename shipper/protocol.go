package shipper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
)

// Protocol selects the remote-write message sent to an endpoint.
type Protocol string

const (
	// ProtocolV1 sends prometheus.WriteRequest (remote-write 1.0). The zero Protocol means it.
	ProtocolV1 Protocol = "v1"
	// ProtocolV2 sends io.prometheus.write.v2.Request (remote-write 2.0) and nothing else.
	ProtocolV2 Protocol = "v2"
	// ProtocolAuto sends 2.0 until the endpoint shows it does not take it (415, or a 2xx without
	// the written-count headers), then 1.0 for the rest of the process.
	ProtocolAuto Protocol = "auto"
)

// The names of Prometheus' remote_write protobuf_message setting.
const (
	messageV1 = "prometheus.WriteRequest"
	messageV2 = "io.prometheus.write.v2.Request"
)

// Header names and values of remote-write 2.0.
const (
	contentTypeV2          = "application/x-protobuf;proto=" + messageV2
	versionHeaderV2        = "2.0.0"
	headerSamplesWritten   = "X-Prometheus-Remote-Write-Samples-Written"
	headerHistogramsWrite  = "X-Prometheus-Remote-Write-Histograms-Written"
	headerExemplarsWritten = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// ParseProtocol reads a protocol: "auto", "v1", "v2", or the message names of Prometheus'
// protobuf_message ("prometheus.WriteRequest" is v1, "io.prometheus.write.v2.Request" is v2).
// The empty string is v1. Errors wrap ErrInvalidProtocol.
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "", string(ProtocolV1), messageV1:
		return ProtocolV1, nil
	case string(ProtocolV2), messageV2:
		return ProtocolV2, nil
	case string(ProtocolAuto):
		return ProtocolAuto, nil
	}
	return "", fmt.Errorf("%w %q: want auto, v1 (%s) or v2 (%s)", ErrInvalidProtocol, s, messageV1, messageV2)
}

// negotiator holds the message an endpoint is sent. Under ProtocolAuto it starts at 2.0 and
// falls back to 1.0 once, for the life of the Client; the others never change.
type negotiator struct {
	mode Protocol
	v2   atomic.Bool // 2.0 is sent
}

func newNegotiator(p Protocol) *negotiator {
	n := &negotiator{mode: p}
	n.v2.Store(p == ProtocolV2 || p == ProtocolAuto)
	return n
}

// Protocol returns the message the endpoint is sent now: ProtocolV1 or ProtocolV2.
func (c *Client) Protocol() Protocol {
	if c.proto.v2.Load() {
		return ProtocolV2
	}
	return ProtocolV1
}

// setProtocolMetric sets collector_shipper_protocol{version} to 1 for the version in use.
func (c *Client) setProtocolMetric() {
	v1, v2 := 1.0, 0.0
	if c.proto.v2.Load() {
		v1, v2 = 0, 1
	}
	c.metrics.protocol.WithLabelValues("1.0").Set(v1)
	c.metrics.protocol.WithLabelValues("2.0").Set(v2)
}

// Send delivers series as one remote-write request: 1.0 or 2.0 as negotiated (Options.Protocol).
// It does not modify series nor keep them after it returns. It returns nil on 2xx (for 2.0: a
// 2xx whose written counts cover every sample),
// the wrapped ctx.Err() if ctx ended first, and an *Error otherwise. Under ProtocolAuto, a 2.0
// request that the endpoint shows it does not understand (415, or 2xx without written counts) is
// sent again at once as 1.0, and 1.0 is kept from then on: the batch is never dropped for it.
// Safe for concurrent use.
func (c *Client) Send(ctx context.Context, series []Series) error {
	if !c.proto.v2.Load() {
		return c.send(ctx, series, false)
	}
	err := c.send(ctx, series, true)
	if c.proto.mode != ProtocolAuto || !notV2Receiver(err) {
		return err
	}
	if c.proto.v2.CompareAndSwap(true, false) {
		c.setProtocolMetric()
		c.log.WithField("err", err).Warn("endpoint does not take remote-write 2.0: sending 1.0 from now on (the batch is sent again as 1.0)")
	}
	return c.send(ctx, series, false)
}

// notV2Receiver reports whether err shows a receiver that does not take remote-write 2.0: a 415,
// or a 2xx without written counts (a 1.x receiver that ignored the Content-Type: it decoded the
// 2.0 message as an empty 1.0 one, since their fields do not overlap, and wrote nothing).
func notV2Receiver(err error) bool {
	if errors.Is(err, ErrNotConfirmed) {
		return true
	}
	var e *Error
	return errors.As(err, &e) && e.statusCode == http.StatusUnsupportedMediaType
}

// setV2Headers makes h the headers of a remote-write 2.0 request.
func setV2Headers(h http.Header) {
	h.Set("Content-Type", contentTypeV2)
	h.Set("X-Prometheus-Remote-Write-Version", versionHeaderV2)
}

// writtenStats are the written counts of a remote-write 2.0 response.
type writtenStats struct {
	samples, histograms, exemplars int64
	confirmed                      bool // at least one of the headers was present
}

// parseWritten reads the X-Prometheus-Remote-Write-*-Written headers. A missing header means 0
// (the specification's rule for 2.0 responses); an unreadable one is an error.
func parseWritten(h http.Header) (writtenStats, error) {
	var s writtenStats
	for _, f := range []struct {
		name string
		dst  *int64
	}{{headerSamplesWritten, &s.samples}, {headerHistogramsWrite, &s.histograms}, {headerExemplarsWritten, &s.exemplars}} {
		v := h.Get(f.name)
		if v == "" {
			continue
		}
		s.confirmed = true
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return s, fmt.Errorf("header %s: %q is not a count", f.name, v)
		}
		*f.dst = n
	}
	return s, nil
}

// checkWritten compares the written counts of a 2xx answer to a 2.0 request with what the
// request held. The specification says a 2xx means every sample was written, and that a partial
// write gets a non-2xx status; a 2xx that says otherwise leaves the batch in the queue (a
// Recoverable *Error wrapping ErrPartialWrite) rather than let samples go unconfirmed. Exemplars
// are not compared: receivers drop out-of-order exemplars silently by design.
func (c *Client) checkWritten(resp *http.Response, series []Series) error {
	stats, err := parseWritten(resp.Header)
	if err != nil {
		return localError(c.endpoint, "partial_write", true, false, fmt.Errorf("%w: %w", ErrPartialWrite, err))
	}
	samples, histograms := countSamples(series), 0 // the WAL holds no histograms
	if samples+histograms == 0 {
		return nil
	}
	if !stats.confirmed {
		return localError(c.endpoint, "not_confirmed", true, false, fmt.Errorf("%w: HTTP %d to a request of %d samples and %d histograms", ErrNotConfirmed, resp.StatusCode, samples, histograms))
	}
	if stats.samples < int64(samples) || stats.histograms < int64(histograms) {
		return localError(c.endpoint, "partial_write", true, false, fmt.Errorf("%w: HTTP %d but %d of %d samples and %d of %d histograms written", ErrPartialWrite, resp.StatusCode, stats.samples, samples, stats.histograms, histograms))
	}
	return nil
}
