package main

import (
	"runtime"
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

// TestDefaultGOMAXPROCS: without GOMAXPROCS in the environment the collector runs procs Ps; with
// it, the runtime's setting (the environment's) stays.
func TestDefaultGOMAXPROCS(t *testing.T) {
	prev := runtime.GOMAXPROCS(3)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })

	if !defaultGOMAXPROCS(func(string) string { return "" }) {
		t.Fatal("defaultGOMAXPROCS without GOMAXPROCS: not applied")
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS without the variable = %d, want %d", got, procs)
	}

	runtime.GOMAXPROCS(3)
	env := map[string]string{"GOMAXPROCS": "3"}
	if defaultGOMAXPROCS(func(k string) string { return env[k] }) {
		t.Fatal("defaultGOMAXPROCS with GOMAXPROCS=3: applied")
	}
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS with the variable set = %d, want it untouched (3)", got)
	}
}
