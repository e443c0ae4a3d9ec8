package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestSidecar: a sidecar file is written durably into the WAL's directory, survives a reopen,
// truncation and a checkpoint untouched, and names that are not plain <x>.sidecar.json are
// refused.
func TestSidecar(t *testing.T) {
	base := t.TempDir()
	w := openTest(t, base, testOptions())
	if _, err := w.ReadSidecar("state.sidecar.json"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read before write: %v, want not exist", err)
	}
	for _, bad := range []string{"state.json", ".sidecar.json", "../x.sidecar.json", "a/b.sidecar.json", "stats.json"} {
		if err := w.WriteSidecar(bad, []byte("x")); !errors.Is(err, errSidecarName) {
			t.Errorf("write %q: %v, want errSidecarName", bad, err)
		}
	}
	if err := w.WriteSidecar("state.sidecar.json", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteSidecar("state.sidecar.json", []byte(`{"a":2}`)); err != nil {
		t.Fatal(err)
	}
	appendScrape(t, w, 3, 1000)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = openTest(t, base, testOptions())
	defer w.Close()
	b, err := w.ReadSidecar("state.sidecar.json")
	if err != nil || string(b) != `{"a":2}` {
		t.Fatalf("after reopen: %q, %v", b, err)
	}
	entries, err := os.ReadDir(w.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".tmp" {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}
