//go:build tools

// Package prometheus3 pins the Prometheus 3 server that the end-to-end tests use as a remote-write
// 2.0 receiver. Its dependencies stay in this module, out of collector's go.mod; `make prometheus3`
// builds cmd/prometheus from it into .cache/bin/prometheus-<version>.
package prometheus3

import _ "github.com/prometheus/prometheus/cmd/prometheus"
