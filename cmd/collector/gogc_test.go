package main

import (
	"runtime/debug"
	"testing"
)

// TestDefaultGOGC: without GOGC in the environment the collector lowers the GC target to
// gcPercent; with it, the runtime's setting (the environment's) stays.
func TestDefaultGOGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	if !defaultGOGC(func(string) string { return "" }) {
		t.Fatal("defaultGOGC without GOGC: not applied")
	}
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent without GOGC = %d, want %d", got, gcPercent)
	}

	env := map[string]string{"GOGC": "200"}
	if defaultGOGC(func(k string) string { return env[k] }) {
		t.Fatal("defaultGOGC with GOGC=200: applied")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GC percent with GOGC set = %d, want it untouched (100)", got)
	}
}
