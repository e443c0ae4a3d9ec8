package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/collector-dev/collector/agent"
)

// TestDocsExample: the example of docs/configuration.md decodes strictly, and its flags: names
// are flags of collector run.
func TestDocsExample(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml example in docs/configuration.md")
	}
	path := filepath.Join(t.TempDir(), "collector.yaml")
	writeFile(t, path, example)
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		t.Fatalf("the documented example does not load: %v", err)
	}
	if len(cfg.Sources) == 0 || len(cfg.Endpoints) == 0 || len(cfg.Flags) == 0 {
		t.Errorf("the example lacks a section: %+v", cfg)
	}
	names := map[string]bool{}
	for _, f := range runFlags() {
		for _, n := range f.Names() {
			names[n] = true
		}
	}
	for n := range cfg.Flags {
		if !names[n] {
			t.Errorf("the example sets flags.%s, which collector run does not have", n)
		}
	}
}
