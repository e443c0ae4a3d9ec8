package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// benchFigure matches a benchmark figure as the Performance table writes them: a rate in
// M samples/s or a size in bytes/sample.
var benchFigure = regexp.MustCompile(`\d+(\.\d+)?\s?M samples/s|\d+(\.\d+)?\s(disk-)?bytes/sample`)

// TestBenchmarkFiguresQuotedOnce keeps the benchmark figures in one place, the README's
// Performance table, which the other documents link to (#performance): a figure repeated
// elsewhere drifts when the table is updated. agent/ingest/doc.go is exempt: its table compares the
// ingest paths of one run, with the headline rate left to the README.
func TestBenchmarkFiguresQuotedOnce(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "\n## Performance\n") || !benchFigure.Match(readme) {
		t.Fatal("README.md has no ## Performance section with the benchmark figures, which other documents link to")
	}
	files := []string{"wal/FORMAT.md", "queue/doc.go", "queue/replay/doc.go", "wal/doc.go", "shipper/doc.go", "agent/doc.go"}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		files = append(files, filepath.Join("docs", filepath.Base(d)))
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range benchFigure.FindAll(b, -1) {
			t.Errorf("%s quotes the benchmark figure %q: refer to the README's Performance table instead", f, m)
		}
	}
}
