package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// CollectResolveAfter is how long a firing series must be gone from its rule's result before it
// resolves and its dynamic metrics stop being federated (the seed's 15 minutes).
const CollectResolveAfter = 15 * time.Minute

// collectStateVersion is the version of the persisted collect-rule state.
const collectStateVersion = 1

// collectSeries is the state of one series of a collect rule's result.
type collectSeries struct {
	Labels map[string]string `json:"labels"`
	// ActiveAt is when the series (re)appeared; it fires once it has been there For.
	ActiveAt time.Time `json:"active_at"`
	// FiredAt is when it started firing; zero while pending.
	FiredAt time.Time `json:"fired_at,omitzero"`
	// LastSeen is the last evaluation that returned it.
	LastSeen time.Time `json:"last_seen"`
}

func (c *collectSeries) firing() bool { return !c.FiredAt.IsZero() }

// collectState is the state of every collect rule of a source: per rule, per series (keyed by
// its labels), pending or firing. It is what is persisted next to the WAL. Not safe for
// concurrent use.
type collectState struct {
	Version int                                  `json:"version"`
	Rules   map[string]map[string]*collectSeries `json:"rules"`
}

func newCollectState() *collectState {
	return &collectState{Version: collectStateVersion, Rules: map[string]map[string]*collectSeries{}}
}

// seriesKey identifies a series by its sorted labels.
func seriesKey(ls map[string]string) string {
	names := make([]string, 0, len(ls))
	for k := range ls {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%s=%q,", k, ls[k])
	}
	return b.String()
}

// observe applies one successful evaluation of rule at now that returned result:
//
//   - a new series is pending from now (firing at once when forDur is 0);
//   - a pending series fires once it has been returned for forDur; a pending series gone from
//     the result is forgotten; a pending series not seen for more than maxGap (a failed query,
//     a restart) starts its for again;
//   - a firing series stays firing while it is returned, and resolves (is forgotten) once it has
//     been gone CollectResolveAfter.
func (c *collectState) observe(rule string, forDur, maxGap time.Duration, result []map[string]string, now time.Time) {
	series := c.Rules[rule]
	if series == nil {
		series = map[string]*collectSeries{}
		c.Rules[rule] = series
	}
	seen := make(map[string]bool, len(result))
	for _, ls := range result {
		k := seriesKey(ls)
		seen[k] = true
		s := series[k]
		if s == nil {
			s = &collectSeries{Labels: ls, ActiveAt: now}
			series[k] = s
		} else if !s.firing() && now.Sub(s.LastSeen) > maxGap {
			s.ActiveAt = now
		}
		s.LastSeen = now
		if !s.firing() && now.Sub(s.ActiveAt) >= forDur {
			s.FiredAt = now
		}
	}
	for k, s := range series {
		if seen[k] {
			continue
		}
		if !s.firing() || now.Sub(s.LastSeen) >= CollectResolveAfter {
			delete(series, k)
		}
	}
}

// keep forgets the rules not in names (removed by a reload).
func (c *collectState) keep(names map[string]bool) {
	for r := range c.Rules {
		if !names[r] {
			delete(c.Rules, r)
		}
	}
}

// counts returns the pending and firing series of rule.
func (c *collectState) counts(rule string) (pending, firing int) {
	for _, s := range c.Rules[rule] {
		if s.firing() {
			firing++
		} else {
			pending++
		}
	}
	return pending, firing
}

// activeMatchers returns the matchers rule federates: for every firing series, its names as
// {__name__="..."} and its matches rendered with the series' labels, wrapped in braces;
// duplicates removed, sorted. A match that does not render is skipped and returned in errs.
func (c *collectState) activeMatchers(r CollectRule) (out []string, errs []error) {
	firing := make([]*collectSeries, 0, len(c.Rules[r.Name]))
	for _, s := range c.Rules[r.Name] {
		if s.firing() {
			firing = append(firing, s)
		}
	}
	if len(firing) == 0 {
		return nil, nil
	}
	for _, n := range r.Names {
		out = append(out, fmt.Sprintf("{__name__=%q}", n))
	}
	for _, s := range firing {
		for _, m := range r.Matches {
			rendered, err := renderMatch(m, s.Labels)
			if err != nil {
				errs = append(errs, fmt.Errorf("collect rule %q: match %q: %w", r.Name, m, err))
				continue
			}
			out = append(out, rendered)
		}
	}
	sort.Strings(out)
	return dedup(out), errs
}

// renderMatch fills a match's {{ $labels.x }} from ls and wraps it in braces; the result must
// be a valid selector.
func renderMatch(m string, ls map[string]string) (string, error) {
	t, err := parseMatchTemplate(m)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, struct{ Labels map[string]string }{ls}); err != nil {
		return "", fmt.Errorf("render: %w", err)
	}
	sel := strings.TrimSpace(b.String())
	if !strings.HasPrefix(sel, "{") {
		sel = "{" + sel + "}"
	}
	if err := ValidateMatcher(sel); err != nil {
		return "", err
	}
	return sel, nil
}

// marshal encodes the state for persistence.
func (c *collectState) marshal() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode collect-rule state: %w", err)
	}
	return b, nil
}

// unmarshalCollectState decodes a persisted state.
func unmarshalCollectState(b []byte) (*collectState, error) {
	c := newCollectState()
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("decode collect-rule state: %w", err)
	}
	if c.Version != collectStateVersion {
		return nil, fmt.Errorf("collect-rule state version %d, want %d", c.Version, collectStateVersion)
	}
	if c.Rules == nil {
		c.Rules = map[string]map[string]*collectSeries{}
	}
	for r, series := range c.Rules {
		if series == nil {
			delete(c.Rules, r)
			continue
		}
		for k, s := range series {
			if s == nil || s.ActiveAt.IsZero() || s.LastSeen.IsZero() {
				delete(series, k)
				continue
			}
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
		}
	}
	return c, nil
}
