package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// TestRuntimeDefaults: without GOGC or GOMAXPROCS in the environment the collector sets
// gcPercent and procs; a variable that is set leaves the runtime's setting (the environment's)
// as it was.
func TestRuntimeDefaults(t *testing.T) {
	prevGC, prevProcs := debug.SetGCPercent(100), runtime.GOMAXPROCS(3)
	t.Cleanup(func() { debug.SetGCPercent(prevGC); runtime.GOMAXPROCS(prevProcs) })

	for _, tc := range []struct {
		env       map[string]string
		gc, procs int
	}{
		{env: nil, gc: gcPercent, procs: procs},
		{env: map[string]string{"GOGC": "200"}, gc: 100, procs: procs},
		{env: map[string]string{"GOMAXPROCS": "3"}, gc: gcPercent, procs: 3},
		{env: map[string]string{"GOGC": "200", "GOMAXPROCS": "3"}, gc: 100, procs: 3},
	} {
		debug.SetGCPercent(100) // what the runtime took from the environment, in this test
		runtime.GOMAXPROCS(3)
		runtimeDefaults(func(k string) string { return tc.env[k] })
		if got := debug.SetGCPercent(100); got != tc.gc {
			t.Errorf("env %v: GC percent %d, want %d", tc.env, got, tc.gc)
		}
		if got := runtime.GOMAXPROCS(0); got != tc.procs {
			t.Errorf("env %v: GOMAXPROCS %d, want %d", tc.env, got, tc.procs)
		}
	}
}
