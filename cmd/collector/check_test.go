package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfig: `collector check config FILE...` (the built binary) prints "Checking FILE" and
// SUCCESS or FAILED with every error of the file, each with its line, checks the files the
// configuration names, checks every file given, and exits 0 only when all are valid.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, body)
		return p
	}
	write("match.txt", "up\n")
	write("ca.crt", "not checked here: the client loads it\n")
	good := write("good.yaml", `sources:
  - id: c1
    from: http://prometheus:9090
    match_file: match.txt
    metric_relabel_configs:
      - {regex: pod_template_hash, action: labeldrop}
remote_write:
  - url: https://hub.example.com/api/v1/receive
    tls_config: {ca_file: ca.crt}
    send_exemplars: true
    write_relabel_configs:
      - {source_labels: [__name__], regex: "go_.*", action: drop}
flags:
  interval: 1m
`)
	bad := write("bad.yaml", `sources:
  - id: c1
    from: http://prometheus:9090
    match_file: missing-match.txt
    intervall: 1m
remote_write:
  - url: https://hub.example.com/api/v1/receive
    tls_config: {ca_file: missing-ca.crt}
    write_relabel_configs:
      - {action: explode}
  - url: https://other.example.com/api/v1/receive
    authorization: {credentials_file: missing-token}
flags:
  intervall: 1m
`)
	badFlags := write("bad-flags.yaml", "flags:\n  intervall: 1m\n")

	r := runCmd(t, nil, "check", "config", good)
	if r.code != 0 || !strings.Contains(r.stdout, "Checking "+good) || !strings.Contains(r.stdout, "SUCCESS: "+good) {
		t.Fatalf("good file: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "WARNING: line 8: remote_write[0] (hub.example.com): send_exemplars is ignored") {
		t.Errorf("good file: no warning for send_exemplars:\n%s", r.stdout)
	}

	r = runCmd(t, nil, "check", "config", bad, good, badFlags)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	for _, f := range []string{bad, good, badFlags} {
		if !strings.Contains(r.stdout, "Checking "+f) {
			t.Errorf("%s not checked:\n%s", f, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "SUCCESS: "+good) {
		t.Errorf("the good file among bad ones is not a success:\n%s", r.stdout)
	}
	// The bad file's syntax errors are all reported; the files it names are checked once the
	// syntax is valid (see the second file below).
	for _, want := range []string{
		"FAILED: " + bad,
		"line 5, column 5: field intervall not found in a source",
		`line 10, column 18: unknown relabel action "explode"`,
		"FAILED: " + badFlags,
		"flags.intervall (line 2): collector run has no flag --intervall",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}

	missing := write("missing.yaml", `sources:
  - id: c1
    from: http://prometheus:9090
    match_file: missing-match.txt
remote_write:
  - url: https://hub.example.com/api/v1/receive
    tls_config: {ca_file: missing-ca.crt}
  - url: https://other.example.com/api/v1/receive
    authorization: {credentials_file: missing-token}
`)
	r = runCmd(t, nil, "check", "config", missing)
	if r.code != 1 {
		t.Fatalf("missing files: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"line 2: source \"c1\": read match file " + filepath.Join(dir, "missing-match.txt"),
		"line 6: remote_write[0] (hub.example.com): tls_config.ca_file: open " + filepath.Join(dir, "missing-ca.crt"),
		"line 8: remote_write[1] (other.example.com): authorization.credentials_file: open " + filepath.Join(dir, "missing-token"),
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}

	if r := runCmd(t, nil, "check", "config"); r.code != 2 {
		t.Errorf("no file: exit %d, want 2 (usage)", r.code)
	}
}
