package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collector-dev/collector/shipper"
	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpointRetryOnStatus(t *testing.T) {
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "", want: shipper.DefaultRetryOnStatus},
		{in: "401,403,5xx", want: "401,403,5xx"},
		{in: "401,409", wantErr: `endpoint "hub": retry_on_status: invalid retry status 409`},
		{in: "4xx", wantErr: "the class would hold 400, 409 and 413"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			e := EndpointConfig{Name: "hub", URL: "https://hub/api/v1/receive", RetryOnStatus: tc.in}
			err := e.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.ShipperOptions("v").RetryOnStatus.String(); got != tc.want {
				t.Fatalf("shipper retries %q, want %q", got, tc.want)
			}
		})
	}
}

// TestEndpointProtocol: protocol (--to-upload-protocol) and Prometheus' protobuf_message map to
// the shipper's protocol; contradictions and unknown values are refused by Validate.
func TestEndpointProtocol(t *testing.T) {
	for _, tc := range []struct {
		protocol, message string
		want              shipper.Protocol
		wantErr           string
	}{
		{want: shipper.ProtocolV1},
		{protocol: "auto", want: shipper.ProtocolAuto},
		{protocol: "v2", want: shipper.ProtocolV2},
		{message: "io.prometheus.write.v2.Request", want: shipper.ProtocolV2},
		{message: "prometheus.WriteRequest", want: shipper.ProtocolV1},
		{protocol: "v2", message: "io.prometheus.write.v2.Request", want: shipper.ProtocolV2},
		{protocol: "auto", message: "prometheus.WriteRequest", wantErr: `protocol "auto" and protobuf_message "prometheus.WriteRequest" disagree`},
		{message: "v2", wantErr: `protobuf_message "v2": want prometheus.WriteRequest or io.prometheus.write.v2.Request`},
		{protocol: "rw2", wantErr: `endpoint "hub": protocol: invalid remote-write protocol "rw2"`},
	} {
		t.Run(tc.protocol+"/"+tc.message, func(t *testing.T) {
			e := EndpointConfig{Name: "hub", URL: "https://hub/api/v1/receive", Protocol: tc.protocol, ProtobufMessage: tc.message}
			err := e.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.ShipperOptions("v").Protocol; got != tc.want {
				t.Fatalf("shipper protocol %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRefusedEndpointRetried: an endpoint that answers 401 (a revoked credential) is listed as
// failing in /readyz and counted in collector_queue_failing_shards while its requests are
// retried; once it accepts, everything is delivered and nothing was dropped.
func TestRefusedEndpointRetried(t *testing.T) {
	src := newFederateServer(t)
	var refuse atomic.Bool
	refuse.Store(true)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if refuse.Load() {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)
	cfg := testConfig(src.URL)
	cfg.Endpoints = []EndpointConfig{{Name: "refused", URL: rcv.URL + "/w"}}
	a, err := New(discardLogger(), prometheus.NewRegistry(), cfg, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	h := a.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	failing := regexp.MustCompile(`collector_queue_failing_shards\{cluster_id="c1",endpoint="refused",reason="http_401"\} [1-9]`)
	waitFor(t, "the refused endpoint listed and counted", 10*time.Second, func() bool {
		_, ready := get(t, h, http.MethodGet, "/readyz")
		_, metrics := get(t, h, http.MethodGet, "/metrics")
		return strings.Contains(ready, "endpoint refused (source c1)") && failing.MatchString(metrics)
	})
	refuse.Store(false)
	waitFor(t, "delivery after the credential is fixed", 10*time.Second, func() bool {
		_, ready := get(t, h, http.MethodGet, "/readyz")
		_, metrics := get(t, h, http.MethodGet, "/metrics")
		return !strings.Contains(ready, "endpoint refused") && !failing.MatchString(metrics) &&
			regexp.MustCompile(`collector_queue_samples_sent_total\{cluster_id="c1",endpoint="refused"\} [1-9]`).MatchString(metrics)
	})
	if _, metrics := get(t, h, http.MethodGet, "/metrics"); strings.Contains(metrics, "collector_queue_samples_dropped_total{") {
		t.Fatalf("samples dropped:\n%s", metrics)
	}
}
