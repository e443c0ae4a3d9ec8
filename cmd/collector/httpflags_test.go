package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/common/config"
	"go.yaml.in/yaml/v3"
)

// TestHTTPFlagMapping: the seed's connection flags map onto Prometheus' http_config of the
// flags' source and of every --to-upload endpoint, and a literal --from-token is a config.Secret
// that never prints.
func TestHTTPFlagMapping(t *testing.T) {
	t.Parallel()
	const token = "literal-t0ken-value"
	s := fileSettings(t, nil,
		"--id", "c1", "--from", "https://prometheus:9091",
		"--from-token", token, "--from-ca-file", "/s/ca.crt", "--from-cert-file", "/s/tls.crt",
		"--from-key-file", "/s/tls.key", "--from-insecure-skip-verify",
		"--to-upload", "https://hub-a/api/v1/receive", "--to-upload", "https://hub-b/api/v1/receive",
		"--to-upload-ca", "/h/ca.crt", "--to-upload-cert", "/h/tls.crt", "--to-upload-key", "/h/tls.key",
		"--to-upload-token-file", "/h/token")
	src, err := sourceFromFlags(s, "c1")
	if err != nil {
		t.Fatal(err)
	}
	wantSrc := config.HTTPClientConfig{
		TLSConfig:     config.TLSConfig{CAFile: "/s/ca.crt", CertFile: "/s/tls.crt", KeyFile: "/s/tls.key", InsecureSkipVerify: true},
		Authorization: &config.Authorization{Type: "Bearer", Credentials: token},
	}
	if !reflect.DeepEqual(src.HTTPClientConfig, wantSrc) {
		t.Errorf("source http config %+v, want %+v", src.HTTPClientConfig, wantSrc)
	}
	y, err := yaml.Marshal(src)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprintf("%v", src), fmt.Sprintf("%+v", src), string(y), string(j)} {
		if strings.Contains(out, token) {
			t.Errorf("--from-token printed: %s", out)
		}
	}

	eps, err := endpointsFromFlags(s, "to-upload")
	if err != nil {
		t.Fatal(err)
	}
	wantEp := config.HTTPClientConfig{
		TLSConfig:     config.TLSConfig{CAFile: "/h/ca.crt", CertFile: "/h/tls.crt", KeyFile: "/h/tls.key"},
		Authorization: &config.Authorization{Type: "Bearer", CredentialsFile: "/h/token"},
		ProxyConfig:   config.ProxyConfig{ProxyFromEnvironment: true},
	}
	if len(eps) != 2 {
		t.Fatalf("%d endpoints, want 2", len(eps))
	}
	for _, e := range eps {
		if !reflect.DeepEqual(e.HTTPClientConfig, wantEp) {
			t.Errorf("endpoint %s http config %+v, want %+v", e.Name, e.HTTPClientConfig, wantEp)
		}
		if e.SigV4Config != nil || e.AzureADConfig != nil {
			t.Errorf("endpoint %s: sigv4 or azuread set from flags", e.Name)
		}
	}

	// Without the flags: no authorization, verification on, no proxy for the source.
	bare, err := sourceFromFlags(fileSettings(t, nil, "--id", "c1"), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(bare.HTTPClientConfig, config.HTTPClientConfig{}) {
		t.Errorf("source http config without flags %+v, want the zero value", bare.HTTPClientConfig)
	}
}
