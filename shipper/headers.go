package shipper

import (
	"fmt"
	"net/http"
	"strings"
)

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
