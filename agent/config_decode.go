package agent

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// PositionError is an error about one place of a configuration file: Line and Column (1-based;
// Column 0 when unknown) of the YAML node it is about.
type PositionError struct {
	Line, Column int
	Err          error
}

func (e *PositionError) Error() string {
	if e.Column > 0 {
		return fmt.Sprintf("line %d, column %d: %v", e.Line, e.Column, e.Err)
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

func (e *PositionError) Unwrap() error { return e.Err }

// atNode returns err positioned at n.
func atNode(n *yaml.Node, err error) error {
	return &PositionError{Line: n.Line, Column: n.Column, Err: err}
}

// decodeStrict decodes n into out (a pointer) and returns every error found, each with its
// position: keys that name no field of out's type, anywhere in n (yaml's Node.Decode has no
// strict mode), and decoding errors, each at the innermost node that does not decode alone.
func decodeStrict(n *yaml.Node, out any) []error {
	t := reflect.TypeOf(out).Elem()
	errs := unknownKeys(n, t)
	if err := n.Decode(out); err != nil {
		errs = append(errs, failures(n, t, err)...)
	}
	return errs
}

// failures returns the errors of the innermost nodes below n (of type t, failing with err) that
// do not decode alone; err at n when every child decodes (a rule across keys).
func failures(n *yaml.Node, t reflect.Type, err error) []error {
	n, t = deref(n, t)
	var errs []error
	for _, c := range children(n, t) {
		if cerr := c.node.Decode(reflect.New(c.typ).Interface()); cerr != nil {
			errs = append(errs, failures(c.node, c.typ, cerr)...)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, e := range te.Errors {
			errs = append(errs, errors.New(e)) // "line N: ..." already
		}
		return errs
	}
	return []error{atNode(n, err)}
}

type child struct {
	node *yaml.Node
	typ  reflect.Type
}

// children are the value nodes of n with the types they decode into.
func children(n *yaml.Node, t reflect.Type) []child {
	var out []child
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if ft, ok := fields[n.Content[i].Value]; ok {
				out = append(out, child{n.Content[i+1], ft})
			}
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, child{n.Content[i+1], t.Elem()})
		}
	case n.Kind == yaml.SequenceNode && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for _, e := range n.Content {
			out = append(out, child{e, t.Elem()})
		}
	}
	return out
}

func deref(n *yaml.Node, t reflect.Type) (*yaml.Node, reflect.Type) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return n, t
}

// unknownKeys reports every mapping key below n that names no field of the struct type it
// decodes into (fields inlined with ",inline" included).
func unknownKeys(n *yaml.Node, t reflect.Type) []error {
	n, t = deref(n, t)
	if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		return nil // decodes itself from the node (FlagValue), and says what it does not take
	}
	var errs []error
	if n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct {
		fields := yamlFields(t)
		if fields == nil {
			return nil // an inlined map takes any key
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if _, ok := fields[k.Value]; !ok && k.Value != "<<" {
				errs = append(errs, atNode(k, fmt.Errorf("field %s not found in %s", k.Value, typeName(t))))
			}
		}
	}
	for _, c := range children(n, t) {
		errs = append(errs, unknownKeys(c.node, c.typ)...)
	}
	return errs
}

// typeName names t for messages: the YAML section rather than the Go package.
func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Config]():
		return "the configuration file"
	case reflect.TypeFor[SourceConfig]():
		return "a source"
	case reflect.TypeFor[RemoteWriteConfig]():
		return "a remote_write entry"
	}
	return t.String()
}

// yamlFields maps the YAML keys of struct type t to their field types, as yaml.v3 decodes them;
// nil when t inlines a map (any key goes).
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.PkgPath != "" && !f.Anonymous {
			continue // unexported
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Map {
				return nil
			}
			inner := yamlFields(ft)
			if inner == nil {
				return nil
			}
			for k, v := range inner {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}
