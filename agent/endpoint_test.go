package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collector-dev/collector/shipper"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"go.yaml.in/yaml/v3"
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

// TestRemoteWriteEntryProtocol: a remote_write entry's protocol and protobuf_message reach the
// shipper.
func TestRemoteWriteEntryProtocol(t *testing.T) {
	for _, tc := range []struct {
		protocol, message string
		want              shipper.Protocol
	}{
		{"auto", "", shipper.ProtocolAuto},
		{"", ProtobufMessageV2, shipper.ProtocolV2},
		{"", "", shipper.ProtocolV1},
	} {
		e := RemoteWriteConfig{URL: "https://hub/api/v1/receive", Protocol: tc.protocol, ProtobufMessage: tc.message}.Endpoint()
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := e.ShipperOptions("v").Protocol; got != tc.want {
			t.Errorf("protocol %q, protobuf_message %q: shipper protocol %q, want %q", tc.protocol, tc.message, got, tc.want)
		}
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

// TestEndpointHTTPConfig: an endpoint takes Prometheus' http_config keys inline, sigv4 and
// azuread, with Prometheus' rule of at most one authorization, and hands them to the shipper.
func TestEndpointHTTPConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
		check               func(t *testing.T, e EndpointConfig)
	}{
		{name: "tls and credentials file", yaml: `
url: https://hub/api/v1/receive
tls_config: {ca_file: ca.crt, cert_file: tls.crt, key_file: tls.key, server_name: hub.example, min_version: TLS13}
authorization: {credentials_file: token}
`, check: func(t *testing.T, e EndpointConfig) {
			o := e.ShipperOptions("v").HTTPClientConfig
			if o.TLSConfig.CAFile != "/etc/c/ca.crt" || o.TLSConfig.ServerName != "hub.example" || o.Authorization.CredentialsFile != "/etc/c/token" {
				t.Fatalf("shipper http config %+v", o)
			}
		}},
		{name: "sigv4", yaml: `
url: https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write
sigv4: {region: eu-west-1}
`, check: func(t *testing.T, e EndpointConfig) {
			if o := e.ShipperOptions("v"); o.SigV4Config == nil || o.SigV4Config.Region != "eu-west-1" {
				t.Fatalf("sigv4 not handed over: %+v", o.SigV4Config)
			}
		}},
		{name: "azuread", yaml: `
url: https://monitor.azure.example/dataCollectionRules/x/streams/y
azuread: {cloud: AzurePublic, managed_identity: {client_id: 00000000-0000-0000-0000-000000000000}}
`, check: func(t *testing.T, e EndpointConfig) {
			if o := e.ShipperOptions("v"); o.AzureADConfig == nil || o.AzureADConfig.ManagedIdentity == nil {
				t.Fatalf("azuread not handed over: %+v", o.AzureADConfig)
			}
		}},
		{name: "sigv4 and basic auth", yaml: `
url: https://hub/api/v1/receive
sigv4: {region: eu-west-1}
basic_auth: {username: u, password: p}
`, wantErr: "at most one of basic_auth, authorization, oauth2, sigv4 and azuread may be set, got basic_auth, sigv4"},
		{name: "azuread without a method", yaml: `
url: https://hub/api/v1/receive
azuread: {cloud: AzurePublic}
`, wantErr: "must provide an Azure Managed Identity"},
		{name: "userinfo and bearer token", yaml: `
url: https://u:pw@hub/api/v1/receive
bearer_token: t
`, wantErr: "has userinfo (basic auth) and another authorization is set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e EndpointConfig
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			err := dec.Decode(&e) // azuread and tls_config check themselves when decoded
			if err == nil {
				e = e.WithDefaults()
				e.resolvePaths("/etc/c")
				err = e.Validate()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "pw@") {
					t.Fatalf("error leaks the URL password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, e)
		})
	}
}

// TestReloadSeesCredentialChange: a reload that changes only an endpoint's inline credentials
// (which marshal as <secret>) is a change, refused like any other, not silently ignored.
func TestReloadSeesCredentialChange(t *testing.T) {
	ep := func(cred string) EndpointConfig {
		return EndpointConfig{Name: "hub", URL: "https://hub/api/v1/receive",
			HTTPClientConfig: config.HTTPClientConfig{Authorization: &config.Authorization{Credentials: config.Secret(cred)}}}
	}
	a := &Agent{endpoints: []EndpointConfig{ep("one")}}
	if err := a.sameEndpoints([]EndpointConfig{ep("one")}); err != nil {
		t.Fatalf("same endpoints refused: %v", err)
	}
	err := a.sameEndpoints([]EndpointConfig{ep("two")})
	if err == nil || !strings.Contains(err.Error(), "changes hub") {
		t.Fatalf("changed credentials: %v, want the change refused", err)
	}
	if strings.Contains(err.Error(), "one") || strings.Contains(err.Error(), "two") {
		t.Fatalf("error leaks the credentials: %v", err)
	}
}

// TestDefaultNames: unnamed endpoints are named after their host, those on one host told apart in
// order; named ones keep their names.
func TestDefaultNames(t *testing.T) {
	eps := DefaultNames([]EndpointConfig{
		{URL: "https://hub.example.com/api/v1/receive"},
		{URL: "http://10.0.0.1:19291/api/v1/receive"},
		{URL: "https://hub.example.com/other"},
		{Name: "mine", URL: "https://hub.example.com/x"},
		{URL: "https://hub.example.com/third"},
		{URL: "http://[::1]:9090/w"},
	})
	var got []string
	for _, e := range eps {
		got = append(got, e.Name)
	}
	want := []string{"hub.example.com", "10.0.0.1_19291", "hub.example.com-2", "mine", "hub.example.com-3", "__1_9090"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("names %q, want %q", got, want)
	}
}
