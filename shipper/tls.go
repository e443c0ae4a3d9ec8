package shipper

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// TLSOptions configures the connection to an https endpoint. The files are re-read when they
// change (checked at most once per Options.ReloadInterval, on new handshakes), so rotated
// certificates are picked up without a restart; established keep-alive connections stay as they
// are.
type TLSOptions struct {
	// CAFile holds the PEM certificates that may sign the server certificate. Empty: the system
	// roots.
	CAFile string
	// CertFile and KeyFile hold the PEM client certificate (with intermediates) and its key for
	// mutual TLS. Both or neither.
	CertFile string
	KeyFile  string
	// ServerName overrides the name the server certificate is verified against (and sent as SNI).
	// Empty: the URL's host.
	ServerName string
	// InsecureSkipVerify disables server certificate verification. Never use it in production.
	InsecureSkipVerify bool
}

// tlsReloader serves the client certificate and the CA pool of a tls.Config from files that may
// change. Safe for concurrent use (handshakes of several connections run in parallel).
//
// Reloading the CA pool of a client is not supported by crypto/tls directly, so when CAFile is
// set the standard verification is switched off (InsecureSkipVerify) and verifyConnection does
// the same full verification (chain to the current pool, server name, key usage) itself.
type tlsReloader struct {
	log        logrus.FieldLogger
	serverName string // the name to verify when the handshake sent no SNI (IP endpoints)

	caFile, certFile, keyFile *watchedFile // nil when not configured

	mu      sync.Mutex
	pool    *x509.CertPool   // guarded by mu
	poolPEM []byte           // guarded by mu; the bytes pool was built from
	cert    *tls.Certificate // guarded by mu
	certPEM []byte           // guarded by mu; the bytes cert was built from
	keyPEM  []byte           // guarded by mu
}

// newTLSConfig builds the client TLS configuration for host (the URL's host name).
func newTLSConfig(log logrus.FieldLogger, o TLSOptions, host string, interval time.Duration, now func() time.Time) (*tls.Config, error) {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("%w: TLS.CertFile and TLS.KeyFile must be set together", ErrInvalidOptions)
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.InsecureSkipVerify, //nolint:gosec // opt-in, documented
	}
	r := &tlsReloader{log: log, serverName: o.ServerName}
	if r.serverName == "" {
		r.serverName = host
	}
	if o.CertFile != "" {
		r.certFile = newWatchedFile(o.CertFile, interval, now)
		r.keyFile = newWatchedFile(o.KeyFile, interval, now)
		if err := r.reloadCert(); err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.GetClientCertificate = r.clientCertificate
	}
	if o.CAFile != "" && !o.InsecureSkipVerify {
		r.caFile = newWatchedFile(o.CAFile, interval, now)
		if err := r.reloadCA(); err != nil {
			return nil, fmt.Errorf("load CA: %w", err)
		}
		// Verification is not skipped: verifyConnection does it against the reloadable pool.
		cfg.InsecureSkipVerify = true //nolint:gosec // see verifyConnection
		cfg.VerifyConnection = r.verifyConnection
	}
	return cfg, nil
}

// reloadCert re-reads the certificate and key files and replaces the pair if either changed and
// the new pair is valid. While a rotation is half done (new certificate, old key) the previous
// pair stays in use.
func (r *tlsReloader) reloadCert() error {
	certPEM, cerr := r.certFile.read()
	keyPEM, kerr := r.keyFile.read()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := errors.Join(cerr, kerr); err != nil {
		return err
	}
	if r.cert != nil && bytes.Equal(certPEM, r.certPEM) && bytes.Equal(keyPEM, r.keyPEM) {
		return nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The message of X509KeyPair never contains key material.
		return fmt.Errorf("parse %s and %s: %w", r.certFile.path, r.keyFile.path, err)
	}
	r.cert, r.certPEM, r.keyPEM = &pair, certPEM, keyPEM
	return nil
}

// clientCertificate is tls.Config.GetClientCertificate.
func (r *tlsReloader) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if err := r.reloadCert(); err != nil {
		r.log.WithField("err", err).Warn("cannot reload client certificate, keeping the previous one")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, nil
}

// reloadCA re-reads the CA file and replaces the pool if it changed and holds certificates.
func (r *tlsReloader) reloadCA() error {
	data, err := r.caFile.read()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		return err
	}
	if r.pool != nil && bytes.Equal(data, r.poolPEM) {
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("parse %s: %w", r.caFile.path, errNoCertificates)
	}
	r.pool, r.poolPEM = pool, data
	return nil
}

func (r *tlsReloader) currentPool() *x509.CertPool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pool
}

// verifyConnection is tls.Config.VerifyConnection: the verification crypto/tls would do with
// RootCAs, done against the current pool.
func (r *tlsReloader) verifyConnection(cs tls.ConnectionState) error {
	if err := r.reloadCA(); err != nil {
		r.log.WithField("err", err).Warn("cannot reload CA file, keeping the previous pool")
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: server presented no certificate")
	}
	name := cs.ServerName // the SNI sent: the endpoint's (or an https proxy's) host name
	if name == "" {
		name = r.serverName // an IP address, which is not sent as SNI
	}
	opts := x509.VerifyOptions{
		Roots:         r.currentPool(),
		DNSName:       name,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}
