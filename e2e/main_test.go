package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// collectorBin is the collector binary TestMain builds once for every test. It is written only
// before m.Run.
var collectorBin string

// TestMain builds the collector binary from the module root into a temporary directory with the
// go command on $PATH (go test puts its own toolchain first). It is built without the race detector: the processes run at full speed, the test binary (servers,
// proxy, checks) runs with -race.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if !flagSet("test.parallel") {
		// The tests wait on processes and the clock far more than they compute: run them all at
		// once rather than GOMAXPROCS at a time (2 on CI), which would add up their durations.
		_ = flag.Set("test.parallel", "8")
	}
	dir, err := os.MkdirTemp("", "collector-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: create build directory: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	collectorBin = filepath.Join(dir, "collector")
	cmd := exec.Command("go", "build", "-o", collectorBin, "./cmd/collector")
	cmd.Dir = ".." // the module root: this package is <root>/e2e
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/collector: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
