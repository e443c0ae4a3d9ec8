package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// TestDockerfile checks what the manifests rely on: a static binary built from this module's Go
// version, at the path of the ENTRYPOINT, running as the user the StatefulSet names.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	var froms []string
	for _, l := range strings.Split(df, "\n") {
		if f, ok := strings.CutPrefix(strings.TrimSpace(l), "FROM "); ok {
			froms = append(froms, f)
		}
	}
	if len(froms) < 2 || !strings.Contains(froms[0], "golang:") {
		t.Fatalf("want a golang builder stage and a runtime stage, have %q", froms)
	}
	runtime := froms[len(froms)-1]
	if !strings.HasPrefix(runtime, "gcr.io/distroless/static") && runtime != "scratch" {
		t.Errorf("runtime stage %q: want distroless static or scratch", runtime)
	}
	final := df[strings.LastIndex(df, "\nFROM "):]
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/collector", "-X main.version="} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile does not contain %q", want)
		}
	}
	main, err := os.ReadFile("../cmd/collector/main.go")
	if err != nil || !regexp.MustCompile(`(?m)^var version = `).Match(main) {
		t.Errorf("-X main.version needs var version in cmd/collector/main.go (%v)", err)
	}
	if !strings.Contains(final, `ENTRYPOINT ["/usr/bin/collector"]`) || !strings.Contains(final, "COPY --from=build /out/collector /usr/bin/collector") {
		t.Error(`the final stage must copy the binary to /usr/bin/collector and run it as ENTRYPOINT ["/usr/bin/collector"]`)
	}
	m := regexp.MustCompile(`(?m)^USER (\d+)(:\d+)?$`).FindStringSubmatch(final)
	if m == nil {
		t.Fatal("the final stage needs a numeric USER (runAsNonRoot checks it)")
	}
	uid, _ := strconv.Atoi(m[1])
	sts := one[appsv1.StatefulSet](t, mustRender(t, "kubernetes"))
	if u := sts.Spec.Template.Spec.SecurityContext.RunAsUser; uid == 0 || u == nil || *u != int64(uid) {
		t.Errorf("USER %d, StatefulSet runAsUser %v: want the same non-root user", uid, u)
	}
	goMod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(goMod)
	if goVer == nil || !strings.Contains(df, "ARG GO_VERSION="+string(goVer[1])+"\n") {
		t.Errorf("ARG GO_VERSION must be go.mod's go version %s", goVer[1])
	}
}

// TestDockerignoreKeepsTheBuild checks that no file the build needs is left out of the context.
func TestDockerignoreKeepsTheBuild(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			if strings.HasPrefix(l, "!") {
				t.Fatalf("exception pattern %q: teach this test about them", l)
			}
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "../cmd/collector").Output()
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("..")
	needed := []string{"go.mod", "go.sum"}
	for _, dir := range strings.Fields(string(out)) {
		rel, _ := filepath.Rel(root, dir)
		needed = append(needed, rel)
	}
	for _, p := range needed {
		for _, pat := range patterns {
			if ignored(pat, p) {
				t.Errorf(".dockerignore pattern %q leaves %s out of the build context", pat, p)
			}
		}
	}
}

// ignored reports whether a .dockerignore pattern excludes path or one of its parents.
func ignored(pattern, path string) bool {
	parts := strings.Split(path, "/")
	for i := 1; i <= len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pattern, p); ok {
			return true
		}
		if rest, found := strings.CutPrefix(pattern, "**/"); found {
			for j := range i {
				if ok, _ := filepath.Match(rest, strings.Join(parts[j:i], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}

func TestMakeImage(t *testing.T) {
	t.Run("dry run", func(t *testing.T) {
		out, err := exec.Command("make", "-s", "-C", "..", "-n", "image", "CONTAINER_ENGINE=podman", "IMAGE=collector:test").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "podman build --build-arg VERSION=") || !strings.Contains(string(out), "-t collector:test .") {
			t.Errorf("make -n image: %v\n%s", err, out)
		}
	})
	t.Run("no engine", func(t *testing.T) {
		out, err := exec.Command("make", "-s", "-C", "..", "image", "CONTAINER_ENGINE=").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no container engine found: install docker or podman") {
			t.Errorf("make image without an engine: %v\n%s", err, out)
		}
	})
}
