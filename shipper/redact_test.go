package shipper

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
)

// TestErrorsRedactURLCredentials: a receiver that echoes the request line and headers in its
// error body. Neither the URL's password nor its query values nor the bearer token appear in
// the error string, the endpoint or the log.
func TestErrorsRedactURLCredentials(t *testing.T) {
	const (
		password = "hunter2-pw"
		apikey   = "k3y+v4lue/x"
		token    = "tok-abcdef-123456"
	)
	for _, status := range []int{http.StatusBadRequest, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				fmt.Fprintf(w, "refused %s %s\n", r.Method, r.URL.RequestURI())
				_ = r.Header.Write(w)
			}))
			t.Cleanup(srv.Close)
			tokenFile := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			withUser, _ := url.Parse(srv.URL + "/api/v1/receive?apikey=" + url.QueryEscape(apikey) + "&x=1")
			withUser.User = url.UserPassword("alice", password)
			for _, tc := range []struct {
				name string
				url  string
				opts func(*Options)
			}{
				{"userinfo and query", withUser.String(), nil},
				{"bearer token file", srv.URL + "/api/v1/receive?apikey=" + url.QueryEscape(apikey), func(o *Options) { o.HTTPClientConfig.BearerTokenFile = tokenFile }},
				{"bearer token", srv.URL + "/api/v1/receive", func(o *Options) {
					o.HTTPClientConfig.Authorization = &config.Authorization{Credentials: config.Secret(token)}
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					opts := DefaultOptions()
					if tc.opts != nil {
						tc.opts(&opts)
					}
					log, hook := testLogger()
					c, err := New(log, prometheus.NewRegistry(), tc.url, opts)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					err = c.Send(context.Background(), toSeries(testSeries()))
					var se *Error
					if !errors.As(err, &se) || se.StatusCode() != status {
						t.Fatalf("Send = %v, want a %d", err, status)
					}
					if !strings.Contains(err.Error(), "refused POST /api/v1/receive") {
						t.Fatalf("the body is not quoted, the test proves nothing: %v", err)
					}
					texts := []string{err.Error(), c.Endpoint()}
					for _, e := range hook.AllEntries() {
						s, _ := e.String()
						texts = append(texts, s)
					}
					secrets := []string{password, apikey, url.QueryEscape(apikey), token,
						base64.StdEncoding.EncodeToString([]byte("alice:" + password))}
					for _, text := range texts {
						for _, sec := range secrets {
							if strings.Contains(text, sec) {
								t.Errorf("%q leaks %q", text, sec)
							}
						}
					}
				})
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://h/api/v1/receive", "https://h/api/v1/receive"},
		{"https://u:p@h:8443/w?apikey=abc&x=1&flag#frag", "https://h:8443/w?apikey=xxxxx&x=xxxxx&flag"},
		{"http://u@h/w?", "http://h/w"},
	} {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := RedactURL(u); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
