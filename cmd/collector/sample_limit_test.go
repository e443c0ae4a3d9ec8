package main

import (
	"testing"

	"github.com/collector-dev/collector/agent/ingest"
	"github.com/urfave/cli/v2"
)

// TestSampleLimitFlag: --sample-limit reaches the ingest options, and a reload that changes it is
// reported as needing a restart (it is not a source setting).
func TestSampleLimitFlag(t *testing.T) {
	set := func(v string) settings {
		t.Helper()
		s := newTestSettings(t, "--id", "c1", "--to-upload", "http://127.0.0.1:1/api/v1/write", "--sample-limit", v)
		return s
	}
	a, b := set("5"), set("7")
	o, err := buildOptions(a)
	if err != nil {
		t.Fatal(err)
	}
	if o.Source.Ingest.SampleLimit != 5 {
		t.Fatalf("sample limit %d, want 5", o.Source.Ingest.SampleLimit)
	}
	if got := restartOnly(a, b); len(got) != 1 || got[0] != "--sample-limit" {
		t.Fatalf("restartOnly = %v, want [--sample-limit]", got)
	}
	if d := ingest.DefaultIngestOptions().SampleLimit; d <= 0 {
		t.Fatalf("default sample limit %d", d)
	}
}

// newTestSettings resolves the run flags of args as the run command does.
func newTestSettings(t *testing.T, args ...string) settings {
	t.Helper()
	var got settings
	app := &cli.App{
		Name: "collector-test", Flags: runFlags(), DisableSliceFlagSeparator: true,
		Action: func(c *cli.Context) error {
			s, err := newSettings(c, nil)
			got = s
			return err
		},
	}
	if err := app.Run(append([]string{"collector-test"}, args...)); err != nil {
		t.Fatal(err)
	}
	return got
}
