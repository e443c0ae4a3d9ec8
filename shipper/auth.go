package shipper

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// BasicAuth configures HTTP basic authorization. Set Password or PasswordFile, not both.
type BasicAuth struct {
	Username     string
	Password     string
	PasswordFile string // re-read when it changes; surrounding white space is trimmed
}

// watchedFile caches the content of a file that may be replaced at any time (a rotated secret
// mounted from Kubernetes) and re-reads it at most once per interval. Safe for concurrent use.
type watchedFile struct {
	path     string
	interval time.Duration // 0: re-read on every use
	now      func() time.Time

	mu      sync.Mutex
	content []byte    // guarded by mu; last successful read
	checked time.Time // guarded by mu; when the file was last read
	loaded  bool      // guarded by mu; content holds a successful read
}

func newWatchedFile(path string, interval time.Duration, now func() time.Time) *watchedFile {
	return &watchedFile{path: path, interval: interval, now: now}
}

// read returns the file content, re-reading it if the interval has passed. On a read error it
// returns the previous content (nil if there never was one) together with the error.
func (w *watchedFile) read() ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if w.loaded && now.Sub(w.checked) < w.interval {
		return w.content, nil
	}
	w.checked = now
	data, err := os.ReadFile(w.path)
	if err != nil {
		return w.content, fmt.Errorf("read %s: %w", w.path, err)
	}
	if !w.loaded || !bytes.Equal(data, w.content) {
		w.content = data
		w.loaded = true
	}
	return w.content, nil
}

// secret is a credential given inline or in a file. The file is re-read when it changes; while
// it cannot be read (or is empty), the last good value is kept and a warning logged.
type secret struct {
	log  logrus.FieldLogger
	file *watchedFile // nil for an inline secret

	mu    sync.Mutex
	value string // guarded by mu; trimmed content of the last good read
	raw   []byte // guarded by mu; the bytes value was derived from
}

func newSecret(log logrus.FieldLogger, value, path string, interval time.Duration, now func() time.Time) (*secret, error) {
	s := &secret{log: log, value: value}
	if path == "" {
		return s, nil
	}
	s.file = newWatchedFile(path, interval, now)
	if _, err := s.get(); err != nil {
		return nil, err
	}
	return s, nil
}

// get returns the current value, or ErrCredentials (wrapped with the file name) if none was ever
// read successfully.
func (s *secret) get() (string, error) {
	if s.file == nil {
		return s.value, nil
	}
	raw, err := s.file.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && !bytes.Equal(raw, s.raw) {
		v := strings.TrimSpace(string(raw))
		if v == "" {
			err = fmt.Errorf("%s is empty", s.file.path)
		} else {
			s.value, s.raw = v, raw
		}
	}
	if err != nil {
		if s.value == "" {
			return "", fmt.Errorf("%w: %w", ErrCredentials, err)
		}
		s.log.WithField("err", err).Warn("cannot reload credential file, keeping the previous value")
	}
	return s.value, nil
}

// current returns the last value without touching the file (for redaction).
func (s *secret) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.value
}

// authenticator sets the Authorization header of each request.
type authenticator struct {
	bearer   *secret // nil unless bearer authorization is configured
	username string
	password *secret // nil unless basic authorization is configured
}

func newAuthenticator(log logrus.FieldLogger, opts *Options) (*authenticator, error) {
	a := &authenticator{}
	kinds := 0
	var err error
	if opts.BearerToken != "" || opts.BearerTokenFile != "" {
		kinds++
		if opts.BearerToken != "" && opts.BearerTokenFile != "" {
			return nil, fmt.Errorf("%w: both BearerToken and BearerTokenFile are set", ErrInvalidOptions)
		}
		if a.bearer, err = newSecret(log, opts.BearerToken, opts.BearerTokenFile, opts.ReloadInterval, opts.Now); err != nil {
			return nil, fmt.Errorf("load bearer token: %w", err)
		}
	}
	if ba := opts.BasicAuth; ba != nil {
		kinds++
		if ba.Password != "" && ba.PasswordFile != "" {
			return nil, fmt.Errorf("%w: both BasicAuth.Password and BasicAuth.PasswordFile are set", ErrInvalidOptions)
		}
		if strings.Contains(ba.Username, ":") {
			return nil, fmt.Errorf("%w: BasicAuth.Username contains ':'", ErrInvalidOptions)
		}
		a.username = ba.Username
		if a.password, err = newSecret(log, ba.Password, ba.PasswordFile, opts.ReloadInterval, opts.Now); err != nil {
			return nil, fmt.Errorf("load basic auth password: %w", err)
		}
	}
	if kinds > 1 {
		return nil, fmt.Errorf("%w: bearer token and basic auth are both set", ErrInvalidOptions)
	}
	return a, nil
}

// authorize sets the Authorization header, if any is configured.
func (a *authenticator) authorize(h http.Header) error {
	switch {
	case a.bearer != nil:
		tok, err := a.bearer.get()
		if err != nil {
			return err
		}
		h["Authorization"] = []string{"Bearer " + tok}
	case a.password != nil:
		pw, err := a.password.get()
		if err != nil {
			return err
		}
		h["Authorization"] = []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(a.username+":"+pw))}
	}
	return nil
}

// secrets lists the values that must never appear in an error string: the credentials and their
// encoded header forms.
func (a *authenticator) secrets() []string {
	var out []string
	if a.bearer != nil {
		if v := a.bearer.current(); v != "" {
			out = append(out, v)
		}
	}
	if a.password != nil {
		if v := a.password.current(); v != "" {
			out = append(out, base64.StdEncoding.EncodeToString([]byte(a.username+":"+v)), v)
		}
	}
	return out
}

// reservedHeaders are set by the client and cannot be overridden by Options.Headers.
var reservedHeaders = []string{
	"Authorization", "Content-Encoding", "Content-Length", "Content-Type", "Host",
	"Retry-Attempt", "Transfer-Encoding", "User-Agent", "X-Prometheus-Remote-Write-Version",
}

// buildHeaders validates Options.Headers and returns the header set common to all requests.
func buildHeaders(opts *Options) (http.Header, error) {
	h := make(http.Header, len(opts.Headers)+6)
	tenant := http.CanonicalHeaderKey(opts.TenantHeader)
	for name, value := range opts.Headers {
		if !validHeaderName(name) {
			return nil, fmt.Errorf("%w: header name %q", ErrInvalidOptions, name)
		}
		if !validHeaderValue(value) {
			return nil, fmt.Errorf("%w: value of header %q contains control characters", ErrInvalidOptions, name)
		}
		canon := http.CanonicalHeaderKey(name)
		for _, r := range reservedHeaders {
			if canon == r {
				return nil, fmt.Errorf("header %q: %w", name, ErrReservedHeader)
			}
		}
		if opts.Tenant != "" && canon == tenant {
			return nil, fmt.Errorf("header %q (set by Options.Tenant): %w", name, ErrReservedHeader)
		}
		h.Set(canon, value)
	}
	if opts.Tenant != "" {
		if !validHeaderName(opts.TenantHeader) {
			return nil, fmt.Errorf("%w: tenant header name %q", ErrInvalidOptions, opts.TenantHeader)
		}
		if !validHeaderValue(opts.Tenant) {
			return nil, fmt.Errorf("%w: tenant %q contains control characters", ErrInvalidOptions, opts.Tenant)
		}
		h.Set(tenant, opts.Tenant)
	}
	// Reserved headers last: nothing above can override them.
	h.Set("Content-Encoding", "snappy")
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	h.Set("User-Agent", "collector/"+opts.Version)
	return h, nil
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validHeaderValue rejects control characters other than horizontal tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
