package agent

import (
	"fmt"
	"os"
	"time"

	"github.com/prometheus/common/config"
)

// CheckConfig checks a configuration file as `collector check config` does: everything
// LoadConfig checks, then the files the sources and remote_write entries name (match files,
// allowlists, salt files, tokens, certificates), read as the agent reads them when it starts. It
// returns the configuration (warnings included) and every error found, each with its line.
func CheckConfig(path string) (Config, []error) {
	c, errs := loadConfig(path)
	for i, s := range c.Sources {
		st, err := buildState(s, time.Now)
		if err != nil {
			errs = append(errs, &PositionError{Line: c.srcLines[i], Err: err})
			continue
		}
		for _, w := range st.warnings {
			c.Warnings = append(c.Warnings, fmt.Sprintf("line %d: source %q: %s", c.srcLines[i], s.ID, w))
		}
	}
	for i, r := range c.RemoteWrite {
		what := c.rwWhat[i]
		for _, f := range httpClientFiles(r.HTTPClientConfig) {
			if err := readable(f.path); err != nil {
				errs = append(errs, &PositionError{Line: c.rwLines[i], Err: fmt.Errorf("%s: %s: %w", what, f.key, err)})
			}
		}
	}
	return c, errs
}

type namedFile struct{ key, path string }

// httpClientFiles lists the files an http_config names, by key.
func httpClientFiles(h config.HTTPClientConfig) []namedFile {
	var out []namedFile
	add := func(key, path string) {
		if path != "" {
			out = append(out, namedFile{key, path})
		}
	}
	tlsFiles := func(prefix string, t config.TLSConfig) {
		add(prefix+"tls_config.ca_file", t.CAFile)
		add(prefix+"tls_config.cert_file", t.CertFile)
		add(prefix+"tls_config.key_file", t.KeyFile)
	}
	tlsFiles("", h.TLSConfig)
	add("bearer_token_file", h.BearerTokenFile)
	if a := h.Authorization; a != nil {
		add("authorization.credentials_file", a.CredentialsFile)
	}
	if b := h.BasicAuth; b != nil {
		add("basic_auth.username_file", b.UsernameFile)
		add("basic_auth.password_file", b.PasswordFile)
	}
	if o := h.OAuth2; o != nil {
		add("oauth2.client_secret_file", o.ClientSecretFile)
		add("oauth2.client_certificate_key_file", o.ClientCertificateKeyFile)
		tlsFiles("oauth2.", o.TLSConfig)
	}
	return out
}

// readable checks that path is a regular file that can be opened for reading.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}
