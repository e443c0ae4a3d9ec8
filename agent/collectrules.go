package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// DefaultEvaluateInterval is the collect-rule evaluation period when a source does not set one
// (the seed's --evaluate-interval default). It is shortened to the source's interval when that
// is shorter, as RHACM's operator renders min(30s, interval).
const DefaultEvaluateInterval = 30 * time.Second

// CollectRule is one RHACM collect rule: while Expr, an instant query, returns a series that has
// been returned for at least For, the rule fires and its dynamic metrics (Names, and Matches with
// {{ $labels.x }} filled in from the firing series) are federated every evaluate interval. The
// flag form is the operator's JSON:
// {"name":"...","expr":"...","for":"2m","names":["..."],"matches":["__name__=\"...\",..."]}.
type CollectRule struct {
	Name string `yaml:"name" json:"name"`
	Expr string `yaml:"expr" json:"expr"`
	// For is a Prometheus duration ("2m", "0s"); empty means 0.
	For     string   `yaml:"for" json:"for"`
	Names   []string `yaml:"names" json:"names"`
	Matches []string `yaml:"matches" json:"matches"`
}

// ParseCollectRule parses the --collectrule flag: a JSON object with the keys name, expr, for,
// names and matches, validated (see CollectRule.Validate). Empty names, which the operator renders
// for a rule without names (["" ]), are dropped.
func ParseCollectRule(s string) (CollectRule, error) {
	var r CollectRule
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("parse collect rule %q: want {\"name\",\"expr\",\"for\",\"names\",\"matches\"}: %w", s, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return r, fmt.Errorf("parse collect rule %q: trailing data after the JSON object", s)
	}
	r = r.normalized()
	if err := r.Validate(); err != nil {
		return r, err
	}
	return r, nil
}

// normalized trims the names and matches and drops the empty ones.
func (r CollectRule) normalized() CollectRule {
	trim := func(in []string) []string {
		var out []string
		for _, s := range in {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	r.Name = strings.TrimSpace(r.Name)
	r.Names = trim(r.Names)
	r.Matches = trim(r.Matches)
	return r
}

// ForDuration returns For parsed; 0 when empty.
func (r CollectRule) ForDuration() (time.Duration, error) {
	if strings.TrimSpace(r.For) == "" {
		return 0, nil
	}
	d, err := model.ParseDuration(strings.TrimSpace(r.For))
	if err != nil {
		return 0, fmt.Errorf("collect rule %q: for %q: %w", r.Name, r.For, err)
	}
	return time.Duration(d), nil
}

// Validate checks the name, the expression (valid PromQL, bounded as a recording rule's query),
// the for duration, that there is at least one name or match, that names are metric names and
// that matches are valid templates.
func (r CollectRule) Validate() error {
	if r.Name == "" {
		return errors.New("collect rule: name is empty")
	}
	if strings.TrimSpace(r.Expr) == "" {
		return fmt.Errorf("collect rule %q: expr is empty", r.Name)
	}
	if err := checkRuleQuery(r.Expr); err != nil {
		return fmt.Errorf("collect rule %q: %w", r.Name, err)
	}
	p := parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
	if _, err := p.ParseExpr(r.Expr); err != nil {
		return fmt.Errorf("collect rule %q: parse expr: %w", r.Name, err)
	}
	if _, err := r.ForDuration(); err != nil {
		return err
	}
	if len(r.Names) == 0 && len(r.Matches) == 0 {
		return fmt.Errorf("collect rule %q: no names and no matches", r.Name)
	}
	for _, n := range r.Names {
		if !model.LegacyValidation.IsValidMetricName(n) {
			return fmt.Errorf("collect rule %q: name %q is not a valid metric name", r.Name, n)
		}
	}
	for _, m := range r.Matches {
		if _, err := parseMatchTemplate(m); err != nil {
			return fmt.Errorf("collect rule %q: match %q: %w", r.Name, m, err)
		}
	}
	return nil
}

// parseMatchTemplate parses a match as a text/template in which $labels is the firing series'
// labels, as the seed and Prometheus alert templates do. No function is added to the builtins.
func parseMatchTemplate(m string) (*template.Template, error) {
	t, err := template.New("match").Option("missingkey=zero").Parse("{{$labels := .Labels}}" + m)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	return t, nil
}
