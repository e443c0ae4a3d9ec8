package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/collector-dev/collector/agent"
	"github.com/urfave/cli/v2"
)

// flagGetter reads flag values; *cli.Context is one, settings another.
type flagGetter interface {
	String(name string) string
	StringSlice(name string) []string
	Bool(name string) bool
	Int(name string) int
	Int64(name string) int64
	Duration(name string) time.Duration
	IsSet(name string) bool
}

var (
	_ flagGetter = (*cli.Context)(nil)
	_ flagGetter = settings{}
)

// settings resolves each flag of `collector run` by precedence: the command line, then the
// environment (urfave/cli applies both, and c.IsSet reports either), then the flags: section of
// the --config file, then the flag's default. It never modifies the cli.Context, so that a
// reload can resolve the file again against the same command line.
type settings struct {
	c *cli.Context
	// file holds the values of the flags: section, parsed by the flags' own parsers; fromFile
	// names the flags it decides (set in the file, not on the command line or in the
	// environment).
	file     *cli.Context
	fromFile map[string]bool
}

// newSettings parses the flags: section of a config file against the definitions of
// `collector run`. An unknown name, a list for a scalar flag and an unparsable value are errors
// naming the key and its line.
func newSettings(c *cli.Context, fileFlags map[string]agent.FlagValue) (settings, error) {
	s := settings{c: c, fromFile: map[string]bool{}}
	if len(fileFlags) == 0 {
		return s, nil
	}
	defs := runFlags()
	byName := map[string]cli.Flag{}
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range defs {
		for _, n := range f.Names() {
			byName[n] = f
		}
		if err := f.Apply(fs); err != nil {
			return s, err
		}
	}
	names := make([]string, 0, len(fileFlags))
	for n := range fileFlags {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		v := fileFlags[name]
		f, ok := byName[name]
		if !ok {
			return s, usagef("flags.%s (line %d): collector run has no flag --%s", name, v.Line, name)
		}
		if name == "config" {
			return s, usagef("flags.config (line %d): the config file cannot name another one", v.Line)
		}
		primary := f.Names()[0]
		if c.IsSet(primary) {
			continue // the command line or the environment wins
		}
		if _, list := f.(*cli.StringSliceFlag); !list && len(v.Values) != 1 {
			return s, usagef("flags.%s (line %d): --%s takes one value, not a list", name, v.Line, primary)
		}
		if _, list := f.(*cli.StringSliceFlag); list {
			// One Set of the serialized list: a value is never split on commas (a
			// --collectrule's JSON has them); the CSV flags are split by csv() as on the
			// command line.
			if err := fs.Set(primary, cli.NewStringSlice(v.Values...).Serialize()); err != nil {
				return s, usagef("flags.%s (line %d): invalid value for --%s: %v", name, v.Line, primary, err)
			}
			s.fromFile[primary] = true
			continue
		}
		for _, x := range v.Values {
			if err := fs.Set(primary, x); err != nil {
				return s, usagef("flags.%s (line %d): invalid value %q for --%s: %v", name, v.Line, x, primary, err)
			}
		}
		s.fromFile[primary] = true
	}
	s.file = cli.NewContext(c.App, fs, nil)
	return s, nil
}

func (s settings) ctx(name string) *cli.Context {
	if s.fromFile[name] {
		return s.file
	}
	return s.c
}

func (s settings) String(name string) string          { return s.ctx(name).String(name) }
func (s settings) StringSlice(name string) []string   { return s.ctx(name).StringSlice(name) }
func (s settings) Bool(name string) bool              { return s.ctx(name).Bool(name) }
func (s settings) Int(name string) int                { return s.ctx(name).Int(name) }
func (s settings) Int64(name string) int64            { return s.ctx(name).Int64(name) }
func (s settings) Duration(name string) time.Duration { return s.ctx(name).Duration(name) }
func (s settings) IsSet(name string) bool             { return s.fromFile[name] || s.c.IsSet(name) }
func (s settings) value(name string) string           { return fmt.Sprint(s.ctx(name).Value(name)) }

// validateListen checks a host:port address without binding it: a port in 0..65535 (0 picks a
// free one) and a host that is empty, an IP address or a DNS name. Empty means no server.
func validateListen(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port, e.g. :9002 or localhost:9002")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	if host == "" || net.ParseIP(host) != nil {
		return nil
	}
	if len(host) > 253 {
		return fmt.Errorf("host %q: too long", host)
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return fmt.Errorf("host %q: want an IP address or a DNS name", host)
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return fmt.Errorf("host %q: want an IP address or a DNS name", host)
			}
		}
	}
	return nil
}
