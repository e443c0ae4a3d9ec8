package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCSVValues(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{"plain", []string{"a=b"}, []string{"a=b"}, ""},
		{"comma separated", []string{"a=b,c=d"}, []string{"a=b", "c=d"}, ""},
		{"quotes stripped", []string{`"cluster=spoke"`, `"clusterID=1f2e"`}, []string{"cluster=spoke", "clusterID=1f2e"}, ""},
		{"quoted comma kept", []string{`"a=b,c",d=e`}, []string{"a=b,c", "d=e"}, ""},
		{"doubled quote", []string{`"a=say ""hi"""`}, []string{`a=say "hi"`}, ""},
		{"spaces trimmed, empties dropped", []string{" a=b , ,c=d", ""}, []string{"a=b", "c=d"}, ""},
		{"space before a quote", []string{`a=b, "c=d"`}, []string{"a=b", "c=d"}, ""},
		{"bare quote", []string{`a="b"`}, nil, `--label "a=\"b\"": not a comma-separated list: bare " in non-quoted-field`},
		{"unterminated quote", []string{`"a=b`}, nil, `extraneous or missing " in quoted-field`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := csvValues("label", tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestImpliedRun(t *testing.T) {
	cmds := []string{"run", "wal", "replay", "version"}
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"no arguments", []string{"collector"}, []string{"collector"}},
		{"a command", []string{"collector", "run", "--id=a"}, []string{"collector", "run", "--id=a"}},
		{"another command", []string{"collector", "wal", "status"}, []string{"collector", "wal", "status"}},
		{"flags", []string{"collector", "--id=a"}, []string{"collector", "run", "--id=a"}},
		{"help", []string{"collector", "--help"}, []string{"collector", "--help"}},
		{"short help", []string{"collector", "-h"}, []string{"collector", "-h"}},
		{"version", []string{"collector", "--version"}, []string{"collector", "--version"}},
		{"unknown command", []string{"collector", "bogus"}, []string{"collector", "bogus"}},
		{"seed name", []string{"/usr/bin/metrics-collector", "--listen=:8080"}, []string{"/usr/bin/metrics-collector", "run", "--listen=:8080"}},
		{"seed name without arguments", []string{"metrics-collector"}, []string{"metrics-collector", "run"}},
		{"seed name with help", []string{"metrics-collector", "--help"}, []string{"metrics-collector", "run", "--help"}},
		{"seed name with a command", []string{"metrics-collector", "wal", "status"}, []string{"metrics-collector", "wal", "status"}},
		{"telemeter-client", []string{"./telemeter-client", "--id", "x"}, []string{"./telemeter-client", "run", "--id", "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := impliedRun(tc.in, cmds); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// seedBinary links the collector binary as name (a seed's binary name) in a temporary
// directory.
func seedBinary(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(binary, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSeedCommandLine: collector invoked as metrics-collector with flags written the way RHACM's
// operator renders them (quotes inside --label and --rename, no command, no --id: the cluster ID
// in --label clusterID) runs: the WAL is named after the clusterID label, the series carry the
// labels without quotes and the renamed name, and SIGTERM ends it with 0.
func TestSeedCommandLine(t *testing.T) {
	t.Parallel()
	fed := newFederate(t)
	recv := newReceiver(t, false)
	dir := t.TempDir()
	bin := seedBinary(t, "metrics-collector")
	p := startBin(t, bin, nil,
		"--listen=",
		"--from="+fed.URL,
		"--to-upload="+recv.url,
		"--interval=1s",
		"--wal-dir="+filepath.Join(dir, "wal"),
		`--label="cluster=spoke-1"`,
		`--label="clusterID=0f1e2d3c"`,
		`--match={__name__="up"}`,
		`--match={__name__="kept"}`,
		`--rename="up=renamed_up"`,
	)
	want := []string{
		`{__name__="renamed_up", cluster="spoke-1", clusterID="0f1e2d3c", instance="i1"}`,
		`{__name__="kept", cluster="spoke-1", clusterID="0f1e2d3c", instance="i2"}`,
	}
	waitFor(t, "the renamed, labelled series at the receiver", 30*time.Second, func() bool {
		got := recv.set()
		for _, w := range want {
			found := false
			for k := range got {
				found = found || strings.HasPrefix(k, w+"@")
			}
			if !found {
				return false
			}
		}
		return true
	})
	for k := range recv.set() {
		if strings.Contains(k, `\"`) || strings.Contains(k, `__name__="up"`) {
			t.Errorf("series %s: a quote kept or the rename not applied", k)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "wal", "0f1e2d3c")); err != nil {
		t.Errorf("the WAL is not named after the clusterID label: %v", err)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// TestSeedUsageErrors: the seed-compatible command lines that cannot run say why, in one line,
// with exit code 2.
func TestSeedUsageErrors(t *testing.T) {
	t.Parallel()
	bin := seedBinary(t, "metrics-collector")
	base := []string{"--listen=", "--to-upload=http://127.0.0.1:1/w", "--wal-dir=" + filepath.Join(t.TempDir(), "wal")}
	for _, tc := range []struct {
		name string
		bin  string
		args []string
		want string
	}{
		{"no id and no clusterID label", bin, []string{`--label="cluster=a"`}, "--id is required (or --label clusterID=<id>, or --config with sources)"},
		{"bad csv", bin, []string{`--label=clusterID="a"`}, `--label "clusterID=\"a\"": not a comma-separated list`},
		{"bad csv rename", bin, []string{"--id=a", `--rename="a=b`}, `--rename "\"a=b": not a comma-separated list`},
		{"quoted label name refused as a name", binary, []string{"--id=a", `--label=""cluster"=a"`}, `--label`},
		{"flags without a command", binary, []string{"--id=a", "--interval=abc"}, `invalid value "abc" for flag --interval`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, tc.bin, nil, append(append([]string(nil), base...), tc.args...)...)
			if r.code != 2 {
				t.Errorf("exit code %d, want 2; stderr %q", r.code, r.stderr)
			}
			if lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n"); len(lines) != 1 {
				t.Errorf("stderr is not one line: %q", r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tc.want)
			}
		})
	}
}

// TestSeedEnv: FROM and TO, the variables RHACM's deployment sets, stand for --from and
// --to-upload; COLLECTOR_FROM overrides FROM, and the flag overrides both.
func TestSeedEnv(t *testing.T) {
	t.Parallel()
	fed := newFederate(t)
	recv := newReceiver(t, false)
	bin := seedBinary(t, "metrics-collector")
	common := []string{"--listen=", "--log-format=json", "--interval=1s", "--flush-deadline=0s", `--label="clusterID=c1"`}

	t.Run("FROM and TO", func(t *testing.T) {
		p := startBin(t, bin, []string{"FROM=" + fed.URL, "TO=" + recv.url, "FROM_QUERY=" + fed.URL},
			append(common, "--wal-dir="+filepath.Join(t.TempDir(), "wal"))...)
		waitFor(t, "series at the receiver", 30*time.Second, func() bool { return len(recv.set()) > 0 })
		p.signal(syscall.SIGTERM)
		if code := p.wait(30 * time.Second); code != 0 {
			t.Fatalf("exit code %d after SIGTERM", code)
		}
	})
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"COLLECTOR_FROM over FROM", []string{"FROM=http://from-seed:1", "COLLECTOR_FROM=http://from-collector:1"}, nil, "http://from-collector:1/federate"},
		{"the flag over both", []string{"FROM=http://from-seed:1", "COLLECTOR_FROM=http://from-collector:1"}, []string{"--from=http://from-flag:1"}, "http://from-flag:1/federate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string(nil), common...), "--to-upload=http://127.0.0.1:1/w", "--wal-dir="+filepath.Join(t.TempDir(), "wal"))
			p := startBin(t, bin, tc.env, append(args, tc.args...)...)
			l := p.waitLog("source configured", 20*time.Second, nil)
			if l["from"] != tc.want {
				t.Errorf("from %v, want %s", l["from"], tc.want)
			}
			p.signal(syscall.SIGTERM)
			if code := p.wait(30 * time.Second); code != 0 {
				t.Fatalf("exit code %d after SIGTERM", code)
			}
		})
	}
}
