package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// updateFlagRef rewrites docs/flags.md from the command definitions instead of comparing.
var updateFlagRef = flag.Bool("update", false, "rewrite docs/flags.md from the command definitions")

// flagRefPath is docs/flags.md seen from this package's directory, where go test runs.
var flagRefPath = filepath.Join("..", "..", "docs", "flags.md")

// flagRefCommand is the command that regenerates docs/flags.md.
const flagRefCommand = "go test ./cmd/collector -run TestFlagReference -update"

// TestFlagReference fails when docs/flags.md is not what the command definitions generate.
func TestFlagReference(t *testing.T) {
	got := flagReference(newApp(io.Discard, io.Discard))
	if *updateFlagRef {
		if err := os.WriteFile(flagRefPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(flagRefPath)
	if err != nil {
		t.Fatalf("read the flag reference: %v; run `%s`", err, flagRefCommand)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/flags.md is stale (first difference at line %d): run `%s` and commit the result",
			firstDiffLine(got, want), flagRefCommand)
	}
}

// TestFlagReferenceDeterministic checks that the reference does not depend on the environment a
// flag reads, nor on a second construction of the commands.
func TestFlagReferenceDeterministic(t *testing.T) {
	first := flagReference(newApp(io.Discard, io.Discard))
	t.Setenv("COLLECTOR_WAL_DIR", "/elsewhere")
	t.Setenv("COLLECTOR_INTERVAL", "7m")
	t.Setenv("FROM", "http://other:9090")
	second := flagReference(newApp(io.Discard, io.Discard))
	if !bytes.Equal(first, second) {
		t.Fatalf("the reference changes with the environment (line %d)", firstDiffLine(first, second))
	}
	for _, machine := range []string{os.TempDir(), mustHostname(t), mustWd(t)} {
		if machine != "" && machine != "/" && bytes.Contains(first, []byte(machine)) {
			t.Errorf("the reference holds the machine-specific %q", machine)
		}
	}
}

func mustHostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustWd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func firstDiffLine(a, b []byte) int {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// flagReference renders every command's flags as Markdown, in the order the code defines them:
// commands as listed, flags grouped by category in the order the categories first appear.
func flagReference(app *cli.App) []byte {
	var b bytes.Buffer
	b.WriteString("# Flag reference\n\n")
	fmt.Fprintf(&b, "Generated from the command definitions in `cmd/collector`: do not edit, run\n`%s`\n", flagRefCommand)
	b.WriteString("after changing a flag (the test fails while this file is stale).\n\n")
	b.WriteString("Without a command, `collector --flag ...` runs `run`. Every command takes `--help` (`-h`);\n")
	b.WriteString("`collector --version` (`-v`) prints the version. How flags, the environment and the `--config`\n")
	b.WriteString("file combine: [configuration.md](configuration.md).\n")
	var walk func(prefix string, cmds []*cli.Command)
	walk = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := prefix + " " + c.Name
			if len(c.Subcommands) > 0 {
				walk(name, c.Subcommands)
				continue
			}
			fmt.Fprintf(&b, "\n## `%s`\n\n%s.\n", strings.TrimSpace(name), upperFirst(c.Usage))
			if c.Description != "" {
				fmt.Fprintf(&b, "\n```\n%s\n```\n", strings.TrimSpace(c.Description)) // as --help shows it
			}
			writeFlags(&b, c.Flags)
		}
	}
	walk(app.Name, app.Commands)
	return b.Bytes()
}

func writeFlags(b *bytes.Buffer, flags []cli.Flag) {
	if len(flags) == 0 {
		b.WriteString("\nNo flags.\n")
		return
	}
	var order []string
	byCat := map[string][]cli.Flag{}
	categorised := false
	for _, f := range flags {
		cat := ""
		if cf, ok := f.(cli.CategorizableFlag); ok {
			cat = cf.GetCategory()
		}
		if cat != "" {
			categorised = true
		} else {
			cat = catGeneral // the shared log flags
		}
		if _, seen := byCat[cat]; !seen {
			order = append(order, cat)
		}
		byCat[cat] = append(byCat[cat], f)
	}
	for _, cat := range order {
		if categorised {
			fmt.Fprintf(b, "\n### %s\n", cat)
		}
		b.WriteString("\n| flag | environment | default | meaning |\n|---|---|---|---|\n")
		for _, f := range byCat[cat] {
			writeFlag(b, f)
		}
	}
}

func writeFlag(b *bytes.Buffer, f cli.Flag) {
	names := f.Names()
	name := "`--" + names[0] + "`"
	if len(names) > 1 {
		var aliases []string
		for _, a := range names[1:] {
			dash := "--"
			if len(a) == 1 {
				dash = "-"
			}
			aliases = append(aliases, "`"+dash+a+"`")
		}
		name += " (" + strings.Join(aliases, ", ") + ")"
	}
	df, ok := f.(cli.DocGenerationFlag)
	if !ok {
		fmt.Fprintf(b, "| %s | | | |\n", name)
		return
	}
	var envs []string
	for _, e := range df.GetEnvVars() {
		envs = append(envs, "`"+e+"`")
	}
	def := df.GetDefaultText()
	quoted := false
	if u, err := strconv.Unquote(def); err == nil {
		def, quoted = u, true // a string flag's value, quoted by cli: "none" is then a value
	}
	switch {
	case def == "", def == "none" && !quoted:
		def = "none"
	default:
		def = "`" + strings.ReplaceAll(def, "|", `\|`) + "`"
	}
	fmt.Fprintf(b, "| %s | %s | %s | %s |\n", name, strings.Join(envs, ", "), def, cell(df.GetUsage()))
}

// cell escapes text for a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
