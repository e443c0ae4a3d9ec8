package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/collector-dev/collector/agent"
	"github.com/collector-dev/collector/shipper"
	"github.com/urfave/cli/v2"
)

// TestRetryOnStatusFlag: --to-upload-retry-on-status reaches the shipper of the --to-upload
// endpoints from the command line, the environment and the config file's flags:, and a file
// endpoint has its own retry_on_status; the default is shipper.DefaultRetryOnStatus.
func TestRetryOnStatusFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "collector.yaml")
	writeFile(t, file, "flags:\n  to-upload-retry-on-status: 403,429\nremote_write:\n  - name: backup\n    url: http://backup/w\n    retry_on_status: 401, 5xx\n")
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want map[string]string // endpoint name -> retry set
	}{
		{name: "default", want: map[string]string{"hub": shipper.DefaultRetryOnStatus}},
		{name: "flag", args: []string{"--to-upload-retry-on-status", "5xx, 401"}, want: map[string]string{"hub": "401,5xx"}},
		{name: "environment", env: "429,503", want: map[string]string{"hub": "429,503"}},
		{name: "flag over environment", env: "429", args: []string{"--to-upload-retry-on-status", "404"}, want: map[string]string{"hub": "404"}},
		{name: "config file", args: []string{"--config", file}, want: map[string]string{"hub": "403,429", "backup": "401,5xx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("COLLECTOR_TO_UPLOAD_RETRY_ON_STATUS", tc.env) // restored after the test
			if tc.env == "" {
				_ = os.Unsetenv("COLLECTOR_TO_UPLOAD_RETRY_ON_STATUS")
			}
			var cfg agent.Config
			app := &cli.App{Commands: []*cli.Command{{Name: "run", Flags: runFlags(), Action: func(c *cli.Context) error {
				var err error
				cfg, _, err = buildConfig(c)
				return err
			}}}}
			args := append([]string{"collector", "run", "--id", "c1", "--to-upload", "http://hub/w"}, tc.args...)
			if err := app.Run(args); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, e := range cfg.Endpoints {
				got[e.Name] = e.ShipperOptions("test").RetryOnStatus.String()
			}
			if len(got) != len(tc.want) {
				t.Fatalf("endpoints %v, want %v", got, tc.want)
			}
			for n, w := range tc.want {
				if got[n] != w {
					t.Errorf("endpoint %s retries %q, want %q", n, got[n], w)
				}
			}
		})
	}
}
