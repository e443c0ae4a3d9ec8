package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUsageErrors: every command refuses a bad command line with exit code 2 and one line on
// standard error that names the flag, without the help.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	run := []string{"run", "--id", "c1", "--to-upload", "http://127.0.0.1:1/w", "--wal-dir", filepath.Join(dir, "wal"), "--listen", ""}
	with := func(extra ...string) []string { return append(append([]string(nil), run...), extra...) }
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown command", nil, []string{"bogus"}, `unknown command "bogus"`},
		{"unknown wal subcommand", nil, []string{"wal", "bogus"}, `unknown command "bogus"`},
		{"run unknown flag", nil, with("--bogus"), "flag provided but not defined: --bogus"},
		{"run bad duration", nil, with("--interval", "abc"), `invalid value "abc" for flag --interval`},
		{"run short interval", nil, with("--interval", "10ms"), "--interval 10ms: want at least 1s"},
		{"run bad int", nil, with("--max-shards", "many"), `invalid value "many" for flag --max-shards`},
		{"run shards out of range", nil, with("--min-shards", "5", "--max-shards", "2"), "--max-shards 2: want at least --min-shards"},
		{"run bad wal-fsync", nil, with("--wal-fsync", "sometimes"), `--wal-fsync "sometimes": want scrape, interval or segment`},
		{"run bad wal-compression", nil, with("--wal-compression", "lz4"), `--wal-compression "lz4": want none, snappy or zstd`},
		{"run bad segment size", nil, with("--wal-segment-size", "1000"), "--wal-segment-size 1000: want a positive multiple of 32768"},
		{"run bad log level", nil, with("--log-level", "loud"), `--log-level "loud": want debug, info, warn or error`},
		{"run bad log format", nil, with("--log-format", "xml"), `--log-format "xml": want text or json`},
		{"run missing to-upload", nil, []string{"run", "--id", "c1", "--listen", ""}, "--to-upload is required"},
		{"run missing id", nil, []string{"run", "--to-upload", "http://127.0.0.1:1/w", "--listen", ""}, "--id is required"},
		{"run bad to-upload", nil, with("--to-upload", "ftp://hub/w"), `--to-upload: endpoint "hub": url "ftp://hub/w" is not an http(s) URL`},
		{"run bad matcher", nil, with("--match", "up{"), `--match "up{"`},
		{"run bad label", nil, with("--label", "novalue"), `--label "novalue"`},
		{"run bad recording rule", nil, with("--recordingrule", "{}"), "--recordingrule"},
		{"run bad collect rule", nil, with("--collectrule", `{"name":"r","expr":"up >","names":["up"]}`), `--collectrule: collect rule "r": parse expr`},
		{"run collect rule unknown key", nil, with("--collectrule", `{"name":"r","expr":"up","names":["up"],"bogus":1}`), `unknown field "bogus"`},
		{"run short evaluate interval", nil, with("--evaluate-interval", "10ms"), "--evaluate-interval 10ms: want at least 1s"},
		{"run bad env collect rule", []string{`COLLECTOR_COLLECTRULE={"name":"r","expr":"up","for":"soon","names":["up"]}`}, run, `for "soon"`},
		{"run cert without key", nil, with("--to-upload-cert", "c.pem"), "--to-upload-cert and --to-upload-key go together"},
		{"run retry on 400", nil, with("--to-upload-retry-on-status", "401,400"), "--to-upload-retry-on-status: invalid retry status 400: a 400 refuses the samples"},
		{"run retry on 409", nil, with("--to-upload-retry-on-status", "409"), "--to-upload-retry-on-status: invalid retry status 409"},
		{"run retry on 413", nil, with("--to-upload-retry-on-status", "413"), "413: a 413 is split"},
		{"run retry on 4xx", nil, with("--to-upload-retry-on-status", "4xx"), `"4xx": the class would hold 400, 409 and 413`},
		{"run retry on garbage", nil, with("--to-upload-retry-on-status", "401,abc"), `"abc": want a status code between 400 and 599 or the class 5xx`},
		{"run retry on nothing", nil, with("--to-upload-retry-on-status", ""), "--to-upload-retry-on-status: invalid retry status: the list is empty"},
		{"run bad env retry status", []string{"COLLECTOR_TO_UPLOAD_RETRY_ON_STATUS=200"}, run, `--to-upload-retry-on-status: invalid retry status "200"`},
		{"replay retry on 400", nil, []string{"replay", "--to-upload", "http://a/w", "--to-upload-retry-on-status", "400"}, "--to-upload-retry-on-status: invalid retry status 400"},
		{"run argument", nil, with("extra"), `unexpected argument "extra"`},
		{"run listen port out of range", nil, with("--listen", ":99999"), `--listen ":99999": port "99999": want a number from 0 to 65535`},
		{"run listen without port", nil, with("--listen", "localhost"), `--listen "localhost": want host:port`},
		{"run listen bad host", nil, with("--listen", "a b:9002"), `--listen "a b:9002": host "a b"`},
		{"run id with bidi override", nil, []string{"run", "--id", "prod\u202egro", "--to-upload", "http://127.0.0.1:1/w", "--listen", ""}, `contains a control, format or invalid character`},
		{"run userinfo and token file", nil, with("--to-upload", "http://u:secret@hub:1/w", "--to-upload-token-file", "t"), `has userinfo (basic auth) and another authorization is set`},
		{"run bad env duration", []string{"COLLECTOR_INTERVAL=soon"}, run, `"soon" as duration value from environment variable "COLLECTOR_INTERVAL" for flag interval`},
		{"run bad env bool", []string{"COLLECTOR_ENABLE_PPROF=perhaps"}, run, `COLLECTOR_ENABLE_PPROF`},
		{"wal status unknown flag", nil, []string{"wal", "status", "--bogus"}, "flag provided but not defined: --bogus"},
		{"wal status bad output", nil, []string{"wal", "status", "-o", "yaml"}, `--output "yaml": want table or json`},
		{"wal status bad id", nil, []string{"wal", "status", "--id", "../x"}, "--id: invalid"},
		{"replay missing to-upload", nil, []string{"replay", "--wal-dir", dir}, "--to-upload is required"},
		{"replay two endpoints", nil, []string{"replay", "--to-upload", "http://a/w", "--to-upload", "http://b/w"}, "--to-upload: give exactly one endpoint"},
		{"replay bad since", nil, []string{"replay", "--to-upload", "http://a/w", "--since", "yesterday"}, `--since "yesterday": want an RFC 3339 time or a duration`},
		{"replay until before since", nil, []string{"replay", "--to-upload", "http://a/w", "--since", "1h", "--until", "2h"}, "--until is before --since"},
		{"replay all and undelivered", nil, []string{"replay", "--to-upload", "http://a/w", "--all", "--undelivered"}, "--all and --undelivered are exclusive"},
		{"replay bad name", nil, []string{"replay", "--to-upload", "http://a/w", "--name", "hub"}, `--name "hub": must start with "replay-"`},
		{"replay bad duration", nil, []string{"replay", "--to-upload", "http://a/w", "--flush-deadline", "x"}, `invalid value "x" for flag --flush-deadline`},
		{"version unknown flag", nil, []string{"version", "--x"}, "flag provided but not defined: -x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCmd(t, tc.env, tc.args...)
			if r.code != 2 {
				t.Errorf("exit code %d, want 2; stderr %q", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "collector: ") {
				t.Errorf("stderr is not one line: %q", r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, "secret") {
				t.Error("a credential reached standard error")
			}
			if strings.Contains(r.stdout+r.stderr, "USAGE") {
				t.Error("the help was printed")
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	r := runCmd(t, nil, "version")
	if r.code != 0 || r.stdout != "collector v0.0.0-test\n" {
		t.Errorf("version: %d %q %q", r.code, r.stdout, r.stderr)
	}
	for _, cmd := range [][]string{{"replay", "--help"}, {"wal", "status", "--help"}} {
		r := runCmd(t, nil, cmd...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d", cmd, r.code)
		}
		for _, l := range strings.Split(r.stdout, "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "--") && !strings.HasPrefix(l, "--help") && !strings.Contains(l, "(default: ") {
				t.Errorf("%v: no default in %q", cmd, l)
			}
		}
	}
	r = runCmd(t, nil, "run", "--help")
	if r.code != 0 {
		t.Fatalf("run --help: %d", r.code)
	}
	// Every flag is listed with its environment variable, and those with a default show it.
	for _, f := range runFlags() {
		name := f.Names()[0]
		line := ""
		for _, l := range strings.Split(r.stdout, "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "--"+name+" ") || strings.HasPrefix(l, "--"+name+",") {
				line = l
				break
			}
		}
		if line == "" {
			t.Errorf("--%s missing from the help", name)
			continue
		}
		if !strings.Contains(line, "[$"+env(name)[0]+"]") && !strings.Contains(line, "[$"+env(name)[0]+", $") {
			t.Errorf("--%s: no environment variable in %q", name, line)
		}
		if !strings.Contains(line, "(default: ") {
			t.Errorf("--%s: no default in %q", name, line)
		}
	}
	for _, want := range []string{
		`(default: {__name__="up"})`, "(default: 90% of --interval)", "(default: 5m0s)", `(default: "data/wal")`,
		"(default: prometheus, prometheus_replica, managed_cluster)", "(default: 1m0s)", "(default: 50)",
		"Precedence: command line, then environment, then the", "COLLECTOR_WAL_DIR",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("run --help lacks %q", want)
		}
	}
}

// startedSettings starts `collector run` against nothing, waits for the settings log line, and
// stops it.
func startedSettings(t *testing.T, env []string, args ...string) map[string]any {
	t.Helper()
	dir := t.TempDir()
	base := []string{"run", "--listen", "", "--log-level", "debug", "--log-format", "json", "--wal-dir", filepath.Join(dir, "wal"),
		"--from", "http://127.0.0.1:1", "--to-upload", "http://127.0.0.1:1/api/v1/write", "--flush-deadline", "0s"}
	p := start(t, env, append(base, args...)...)
	l := p.waitLog("settings", 20*time.Second, nil)
	starting := p.waitLog("collector starting", 5*time.Second, nil)
	l["from_config_file"] = starting["from_config_file"]
	l["sources"] = starting["sources"]
	l["endpoints"] = starting["endpoints"]
	src := p.waitLog("source configured", 5*time.Second, nil)
	l["source_interval"] = src["interval"]
	l["matchers"] = src["matchers"]
	p.signal(syscall.SIGTERM)
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	return l
}

// TestPrecedence: flag > environment > config file > default, for scalars and lists.
func TestPrecedence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "collector.yaml")
	writeFile(t, cfg, `
flags:
  id: from-file
  interval: 3s
  max-shards: 7
  batch-send-deadline: 300ms
  match: ['{__name__="a"}', '{__name__="b"}', '{__name__="c"}']
`)
	for _, tc := range []struct {
		name         string
		env          []string
		args         []string
		wantInterval string
		wantDeadline string
		wantShards   float64
		wantMatchers float64
	}{
		{"default", nil, []string{"--id", "c1"}, "5m0s", "5s", 50, 1},
		{"env", []string{"COLLECTOR_INTERVAL=2s", "COLLECTOR_MAX_SHARDS=3"}, []string{"--id", "c1"}, "2s", "5s", 3, 1},
		{"file", nil, []string{"--config", cfg}, "3s", "300ms", 7, 3},
		{"env over file", []string{"COLLECTOR_INTERVAL=2s", `COLLECTOR_MATCH={__name__="x"}`}, []string{"--config", cfg}, "2s", "300ms", 7, 1},
		{"flag over env and file", []string{"COLLECTOR_INTERVAL=2s", "COLLECTOR_CONFIG=" + cfg}, []string{"--interval", "1s", "--max-shards", "9", "--match", `{__name__="y"}`}, "1s", "300ms", 9, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startedSettings(t, tc.env, tc.args...)
			if l["interval"] != tc.wantInterval || l["source_interval"] != tc.wantInterval {
				t.Errorf("interval %v (source %v), want %s", l["interval"], l["source_interval"], tc.wantInterval)
			}
			if l["batch_send_deadline"] != tc.wantDeadline {
				t.Errorf("batch_send_deadline %v, want %s", l["batch_send_deadline"], tc.wantDeadline)
			}
			if l["max_shards"] != tc.wantShards {
				t.Errorf("max_shards %v, want %v", l["max_shards"], tc.wantShards)
			}
			if l["matchers"] != tc.wantMatchers {
				t.Errorf("matchers %v, want %v", l["matchers"], tc.wantMatchers)
			}
		})
	}
}

// TestConfigFile: sources and endpoints from the file, merged with the flags; errors name the key.
func TestConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, body)
		return p
	}
	good := write("good.yaml", `
sources:
  - {id: file-a, from: "http://127.0.0.1:1", interval: 2s}
  - {id: file-b, from: "http://127.0.0.1:1", interval: 2s}
remote_write:
  - {name: backup, url: "http://127.0.0.1:2/api/v1/write"}
flags:
  wal-fsync: segment
  label: [env=test, team=x]
`)
	t.Run("sources and endpoints", func(t *testing.T) {
		l := startedSettings(t, nil, "--config", good, "--id", "c1")
		if l["sources"] != float64(3) || l["endpoints"] != float64(2) || l["wal_fsync"] != "segment" {
			t.Errorf("settings %v", l)
		}
		if l["from_config_file"] != "label,wal-fsync" {
			t.Errorf("flags from the file: %v", l["from_config_file"])
		}
	})
	t.Run("file sources only", func(t *testing.T) {
		// Without --id the flags describe no source.
		l := startedSettings(t, nil, "--config", good)
		if l["sources"] != float64(2) {
			t.Errorf("sources %v, want 2", l["sources"])
		}
	})

	for _, tc := range []struct {
		name, body string
		args       []string
		want       string
	}{
		{"unknown flag", "flags:\n  intervall: 1s\n", nil, "flags.intervall (line 2): collector run has no flag --intervall"},
		{"bad flag value", "flags:\n  interval: soon\n", nil, `flags.interval (line 2): invalid value "soon" for --interval`},
		{"list for a scalar", "flags:\n  interval: [1s, 2s]\n", nil, "flags.interval (line 2): --interval takes one value, not a list"},
		{"config in the file", "flags:\n  config: other.yaml\n", nil, "flags.config (line 2)"},
		{"unknown key", "sources:\n  - id: a\n    from: http://x\n    intervall: 1s\n", nil, "line 4, column 5: field intervall not found in a source"},
		{"unknown top-level key", "endpoint:\n  - url: http://x/w\n", nil, "field endpoint not found"},
		{"duplicate endpoint with --to-upload", "remote_write:\n  - {name: '127.0.0.1_1', url: 'http://10.0.0.1/w'}\n", nil, `name "127.0.0.1_1" is already used by endpoint 1`},
		{"duplicate source with --id", "sources:\n  - {id: c1, from: 'http://x'}\n", nil, `id "c1" is already used`},
		{"bad endpoint", "remote_write:\n  - {url: 'x'}\n", nil, "line 2, column 5: remote_write[0]"},
		{"missing file", "", []string{"--config", filepath.Join(dir, "nope.yaml")}, "read config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"run", "--id", "c1", "--to-upload", "http://127.0.0.1:1/w", "--listen", "", "--wal-dir", filepath.Join(dir, "wal")}
			if tc.args != nil {
				args = append(args, tc.args...)
			} else {
				args = append(args, "--config", write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.body))
			}
			r := runCmd(t, nil, args...)
			if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and one line containing %q", r.code, r.stderr, tc.want)
			}
		})
	}
	// The WAL directory was never created by a refused start.
	if _, err := os.Stat(filepath.Join(dir, "wal")); err == nil {
		t.Error("a refused start created the WAL directory")
	}
}
