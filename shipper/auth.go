package shipper

// HTTP settings of an endpoint: Prometheus' http_config (github.com/prometheus/common/config),
// plus SigV4 and Azure AD as Prometheus' remote_write offers them. TLS (CA, client certificate
// and key re-read when they change, server name, minimum version), bearer tokens and credential
// files, basic auth, OAuth2, proxies and http_headers are the library's: this file only checks
// the combination, builds the round tripper and lists the secrets to redact.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/storage/remote/azuread"
	"github.com/prometheus/sigv4"
)

// ValidateAuth checks HTTP settings as Prometheus checks a remote_write entry: hc on its own
// (config.HTTPClientConfig.Validate, which also turns bearer_token and bearer_token_file into
// authorization and fills authorization's default type, and its tls_config), s and a on their
// own, and at most one of basic_auth, authorization, oauth2, sigv4 and azuread. It reads no file.
// s and a may be nil (a source has neither). New wraps its error in ErrInvalidOptions.
func ValidateAuth(hc *config.HTTPClientConfig, s *sigv4.SigV4Config, a *azuread.AzureADConfig) error {
	if err := hc.Validate(); err != nil {
		return err
	}
	if err := hc.TLSConfig.Validate(); err != nil {
		return fmt.Errorf("tls_config: %w", err)
	}
	if s != nil {
		if err := s.Validate(); err != nil {
			return fmt.Errorf("sigv4: %w", err)
		}
	}
	if a != nil {
		if err := a.Validate(); err != nil {
			return fmt.Errorf("azuread: %w", err)
		}
	}
	var kinds []string
	for _, k := range []struct {
		name string
		set  bool
	}{
		{"basic_auth", hc.BasicAuth != nil},
		{"authorization", hc.Authorization != nil},
		{"oauth2", hc.OAuth2 != nil},
		{"sigv4", s != nil},
		{"azuread", a != nil},
	} {
		if k.set {
			kinds = append(kinds, k.name)
		}
	}
	if len(kinds) > 1 {
		return fmt.Errorf("at most one of basic_auth, authorization, oauth2, sigv4 and azuread may be set, got %s", strings.Join(kinds, ", "))
	}
	return nil
}

// hasAuth reports whether hc, s or a set an Authorization header (hc validated).
func hasAuth(hc *config.HTTPClientConfig, s *sigv4.SigV4Config, a *azuread.AzureADConfig) bool {
	return hc.BasicAuth != nil || hc.Authorization != nil || hc.OAuth2 != nil || s != nil || a != nil
}

// CheckCredentialFiles reads the credential files of hc (authorization, basic_auth and oauth2
// files) once, so that a missing or unreadable file is an error when a client is built rather
// than a failing request: prometheus/common/config reads them only at requests. The TLS files are
// read by config.NewRoundTripperFromConfig itself. The error wraps ErrCredentials and the
// *fs.PathError of each file; it names the files, never their content.
func CheckCredentialFiles(hc *config.HTTPClientConfig) error {
	var files []string
	if a := hc.Authorization; a != nil {
		files = append(files, a.CredentialsFile)
	}
	if b := hc.BasicAuth; b != nil {
		files = append(files, b.UsernameFile, b.PasswordFile)
	}
	if o := hc.OAuth2; o != nil {
		files = append(files, o.ClientSecretFile, o.ClientCertificateKeyFile)
	}
	var errs []error
	for _, f := range files {
		if f == "" {
			continue
		}
		if _, err := os.ReadFile(f); err != nil {
			errs = append(errs, err) // *fs.PathError: names the file, never its content
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	return nil
}

// newRoundTripper builds the transport of an endpoint from validated settings, as Prometheus'
// remote-write client does: config.NewRoundTripperFromConfig, then SigV4 or Azure AD on top.
// base is the round tripper of the library, which owns the connections.
func newRoundTripper(name string, hc config.HTTPClientConfig, s *sigv4.SigV4Config, a *azuread.AzureADConfig) (rt, base http.RoundTripper, err error) {
	base, err = config.NewRoundTripperFromConfig(hc, name, config.WithDialContextFunc(dialQuiet))
	if err != nil {
		return nil, nil, err
	}
	rt = base
	if s != nil {
		if rt, err = sigv4.NewSigV4RoundTripper(s, rt); err != nil {
			return nil, nil, fmt.Errorf("sigv4: %w", err)
		}
	}
	if a != nil {
		if rt, err = azuread.NewAzureADRoundTripper(a, rt); err != nil {
			return nil, nil, fmt.Errorf("azuread: %w", err)
		}
	}
	return rt, base, nil
}

// Secrets returns the credentials of hc as they are now (inline values, and the content of
// their files read at the call; unreadable files are skipped) together with the encoded form a
// server may echo (basic auth's base64). Callers redact them from quoted response bodies; it
// reads files, so it is meant for error paths, not for every request.
func Secrets(hc *config.HTTPClientConfig) []string {
	var out []string
	add := func(inline config.Secret, file string) string {
		v := string(inline)
		if file != "" {
			if b, err := os.ReadFile(file); err == nil {
				v = strings.TrimSpace(string(b))
			}
		}
		if v != "" {
			out = append(out, v)
		}
		return v
	}
	add(hc.BearerToken, hc.BearerTokenFile)
	if a := hc.Authorization; a != nil {
		add(a.Credentials, a.CredentialsFile)
	}
	if b := hc.BasicAuth; b != nil {
		user := b.Username
		if b.UsernameFile != "" {
			if raw, err := os.ReadFile(b.UsernameFile); err == nil {
				user = strings.TrimSpace(string(raw))
			}
		}
		if pw := add(b.Password, b.PasswordFile); pw != "" {
			out = append(out, base64.StdEncoding.EncodeToString([]byte(user+":"+pw)))
		}
	}
	if o := hc.OAuth2; o != nil {
		add(o.ClientSecret, o.ClientSecretFile)
	}
	if h := hc.HTTPHeaders; h != nil {
		for _, v := range h.Headers {
			for _, s := range v.Secrets {
				add(s, "")
			}
		}
	}
	return out
}
