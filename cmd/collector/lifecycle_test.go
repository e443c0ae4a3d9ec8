package main

import (
	"path/filepath"
	"testing"

	"github.com/collector-dev/collector/agent"
	"github.com/urfave/cli/v2"
)

// TestLifecycleFlag: --web.enable-lifecycle is off by default and is set by the flag, its
// environment variable and the config file.
func TestLifecycleFlag(t *testing.T) {
	base := []string{"--id", "c1", "--to-upload", "http://127.0.0.1:1/api/v1/write"}
	cfg := filepath.Join(t.TempDir(), "collector.yaml")
	writeFile(t, cfg, "flags:\n  web.enable-lifecycle: true\n")
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want bool
	}{
		{"default", "", nil, false},
		{"flag", "", []string{"--web.enable-lifecycle"}, true},
		{"env", "true", nil, true},
		{"config file", "", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv(env("web.enable-lifecycle")[0], tc.env)
			}
			var fileFlags map[string]agent.FlagValue
			if tc.name == "config file" {
				c, err := agent.LoadConfig(cfg)
				if err != nil {
					t.Fatal(err)
				}
				fileFlags = c.Flags
			}
			o, err := buildOptions(fileSettings(t, fileFlags, append(append([]string(nil), base...), tc.args...)...))
			if err != nil {
				t.Fatal(err)
			}
			if o.EnableLifecycle != tc.want {
				t.Errorf("EnableLifecycle %v, want %v", o.EnableLifecycle, tc.want)
			}
		})
	}
	if got := env("web.enable-lifecycle")[0]; got != "COLLECTOR_WEB_ENABLE_LIFECYCLE" {
		t.Errorf("environment variable %s", got)
	}
}

// fileSettings resolves the run flags of args and the flags: section of a config file as the run
// command does.
func fileSettings(t *testing.T, fileFlags map[string]agent.FlagValue, args ...string) settings {
	t.Helper()
	var got settings
	app := &cli.App{
		Name: "collector-test", Flags: runFlags(), DisableSliceFlagSeparator: true,
		Action: func(c *cli.Context) error {
			s, err := newSettings(c, fileFlags)
			got = s
			return err
		},
	}
	if err := app.Run(append([]string{"collector-test"}, args...)); err != nil {
		t.Fatal(err)
	}
	return got
}
