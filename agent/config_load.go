package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LoadConfig reads a YAML configuration file. Decoding is strict: an unknown field is an error
// naming its line. Relative file paths in sources and remote_write entries are relative to the
// file's directory. Every source and endpoint is checked as by Validate, except that the file may
// list no source and no endpoint (flags may describe them; see MergeFlagSource and
// MergeFlagEndpoints). Endpoints (from remote_write) get their default names; the defaults of
// sources are not applied: use SourceConfig.WithDefaults. The flags: section is decoded, not
// checked. The error lists every problem found, each with its line.
func LoadConfig(path string) (Config, error) {
	c, errs := loadConfig(path)
	if len(errs) > 0 {
		return c, fmt.Errorf("config %s: %w", path, errors.Join(errs...))
	}
	return c, nil
}

// loadConfig is LoadConfig returning its errors one by one.
func loadConfig(path string) (Config, []error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, []error{fmt.Errorf("read config %s: %w", path, err)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil // An empty file lists no sources.
		}
		return c, []error{err}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return c, []error{err}
		}
		return c, []error{atNode(&extra, errors.New("more than one YAML document"))}
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return c, nil
	}
	if root.Kind != yaml.MappingNode {
		return c, []error{atNode(root, errors.New("the configuration file is a mapping (sources:, remote_write:, flags:)"))}
	}
	var errs []error
	seen := map[string]int{}
	var srcNodes, rwNodes []*yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if line, ok := seen[k.Value]; ok {
			errs = append(errs, atNode(k, fmt.Errorf("%s is already defined at line %d", k.Value, line)))
			continue
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "sources":
			srcNodes, errs = sequence(k, v, errs)
		case "remote_write":
			rwNodes, errs = sequence(k, v, errs)
		case "flags":
			errs = append(errs, decodeStrict(v, &c.Flags)...)
			for name, fv := range c.Flags {
				if fv.Values == nil { // null: yaml does not call UnmarshalYAML
					errs = append(errs, atNode(v, fmt.Errorf("flags.%s has no value", name)))
				}
			}
		case "endpoints":
			errs = append(errs, atNode(k, errors.New("endpoints: was replaced by remote_write:, a list of Prometheus remote_write entries (tls_config, authorization, queue_config, ...): see docs/configuration.md")))
		default:
			errs = append(errs, atNode(k, fmt.Errorf("field %s not found in the configuration file", k.Value)))
		}
	}
	dir := filepath.Dir(path)
	ids := map[string]int{}
	for i, n := range srcNodes {
		var s SourceConfig
		if e := decodeStrict(n, &s); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		if err := s.Validate(); err != nil {
			errs = append(errs, linesAt(n, fmt.Sprintf("sources[%d]", i), err)...)
			continue
		}
		if line, ok := ids[s.ID]; ok {
			errs = append(errs, atNode(n, fmt.Errorf("sources[%d]: id %q is already used by the source at line %d", i, s.ID, line)))
			continue
		}
		ids[s.ID] = n.Line
		s.resolvePaths(dir)
		c.Sources = append(c.Sources, s)
		c.srcLines = append(c.srcLines, n.Line)
	}
	names := map[string]int{}
	for i, n := range rwNodes {
		r := defaultRemoteWriteConfig()
		if e := decodeStrict(n, &r); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		what := fmt.Sprintf("remote_write[%d]", i)
		if r.Name != "" {
			what += " (" + r.Name + ")"
		}
		r.HTTPClientConfig.SetDirectory(dir)
		e := r.Endpoint()
		ev := e
		ev.WriteRelabelConfigs = nil // r.validate checks them, and every one of them
		if err := errors.Join(r.validate(), ev.Validate()); err != nil {
			errs = append(errs, linesAt(n, what, err)...)
			continue
		}
		if line, ok := names[e.Name]; ok {
			errs = append(errs, atNode(n, fmt.Errorf("%s: name %q is already used by the entry at line %d (two URLs on one host need names)", what, e.Name, line)))
			continue
		}
		names[e.Name] = n.Line
		what = fmt.Sprintf("remote_write[%d] (%s)", i, e.Name)
		for _, w := range r.Warnings() {
			c.Warnings = append(c.Warnings, fmt.Sprintf("line %d: %s: %s", n.Line, what, w))
		}
		c.RemoteWrite = append(c.RemoteWrite, r)
		c.rwLines, c.rwWhat = append(c.rwLines, n.Line), append(c.rwWhat, what)
		c.Endpoints = append(c.Endpoints, e)
	}
	return c, errs
}

// sequence returns the elements of v, the list under key k; null is an empty list.
func sequence(k, v *yaml.Node, errs []error) ([]*yaml.Node, []error) {
	switch {
	case v.Kind == yaml.SequenceNode:
		return v.Content, errs
	case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		return nil, errs
	}
	return nil, append(errs, atNode(v, fmt.Errorf("%s is a list", k.Value)))
}

// linesAt splits err (possibly joined) into one error per line, each at n and prefixed by what.
func linesAt(n *yaml.Node, what string, err error) []error {
	var out []error
	for _, l := range strings.Split(err.Error(), "\n") {
		out = append(out, &PositionError{Line: n.Line, Column: n.Column, Err: fmt.Errorf("%s: %s", what, l)})
	}
	return out
}
