package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

const (
	ruleFile      = "monitoring/collector-alerts.yaml"
	dashboardFile = "monitoring/collector-dashboard.json"
	operationsDoc = "../docs/operations.md"
	runbookPrefix = "https://github.com/collector-dev/collector/blob/main/docs/operations.md#"
)

func parseInt(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

func loadRuleFile(t *testing.T) []ruleGroup {
	t.Helper()
	data, err := os.ReadFile(ruleFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []ruleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatalf("%s: %v", ruleFile, err)
	}
	return f.Groups
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID          int     `json:"id"`
	Type        string  `json:"type"`
	Title       string  `json:"title"`
	Description string  `json:"description"`
	Panels      []panel `json:"panels"`
	Datasource  *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

type dashboardVar struct {
	Name, Type, Query string
}

// vars returns the template variables with their query as a string (Grafana writes it as a
// string or as {"query": ...}).
func (d dashboard) vars() []dashboardVar {
	var out []dashboardVar
	for _, v := range d.Templating.List {
		q := string(v.Query)
		var s string
		var obj struct {
			Query string `json:"query"`
		}
		switch {
		case json.Unmarshal(v.Query, &s) == nil:
			q = s
		case json.Unmarshal(v.Query, &obj) == nil:
			q = obj.Query
		}
		out = append(out, dashboardVar{Name: v.Name, Type: v.Type, Query: q})
	}
	return out
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// panelsOf flattens rows.
func panelsOf(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, panelsOf(p.Panels)...)
	}
	return out
}

var (
	grafanaInterval = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b`)
	grafanaVar      = regexp.MustCompile(`\$\{?(\w+)\}?`)
	labelValues     = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)
)

// promQL turns a Grafana expression into PromQL: intervals become 5m, other variables 1 (inside
// a string that is only a different matcher; as a number, a number).
func promQL(expr string) string {
	return grafanaVar.ReplaceAllString(grafanaInterval.ReplaceAllString(expr, "5m"), "1")
}

// targetLabels are added by the scrape (a ServiceMonitor's target labels), not by collector.
var targetLabels = map[string]bool{"namespace": true, "pod": true, "job": true, "instance": true, "service": true, "container": true}

// query is what the expressions ask of the metrics.
type query struct {
	// where maps a metric name to the expressions that select it.
	where map[string][]string
	// labels maps a metric name to the labels (other than target labels) that a selector of it
	// matches on or that an aggregation above it groups by.
	labels map[string]map[string][]string
}

// queriedMetrics returns every metric name the expressions select and the labels they rely on.
func queriedMetrics(t *testing.T, exprs map[string]string) query {
	t.Helper()
	q := query{where: map[string][]string{}, labels: map[string]map[string][]string{}}
	use := func(metric, label, where string) {
		if targetLabels[label] || label == "__name__" {
			return
		}
		if q.labels[metric] == nil {
			q.labels[metric] = map[string][]string{}
		}
		if !slices.Contains(q.labels[metric][label], where) {
			q.labels[metric][label] = append(q.labels[metric][label], where)
		}
	}
	for where, e := range exprs {
		expr, err := parser.NewParser(parser.Options{EnableExperimentalFunctions: true}).ParseExpr(e)
		if err != nil {
			t.Errorf("%s: parse %q: %v", where, e, err)
			continue
		}
		n := 0
		parser.Inspect(expr, func(node parser.Node, path []parser.Node) error {
			vs, ok := node.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			n++
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" {
					name = m.Value
				}
			}
			if name == "" {
				t.Errorf("%s: selector %s has no metric name", where, vs)
				return nil
			}
			q.where[name] = append(q.where[name], where)
			for _, m := range vs.LabelMatchers {
				use(name, m.Name, where)
			}
			// Grouping labels of the aggregations directly above the selector (up to a binary
			// operation, whose other side may bring the label).
			for i := len(path) - 1; i >= 0; i-- {
				if _, ok := path[i].(*parser.BinaryExpr); ok {
					break
				}
				if agg, ok := path[i].(*parser.AggregateExpr); ok && !agg.Without {
					for _, l := range agg.Grouping {
						if !strings.HasSuffix(name, "_bucket") || l != "le" {
							use(name, l, where)
						}
					}
					break
				}
			}
			return nil
		})
		if n == 0 && !strings.HasPrefix(where, "dashboard: WAL size against its cap") {
			t.Errorf("%s: %q selects no metric", where, e)
		}
	}
	return q
}

// monitoringExprs returns every PromQL expression of the rules, the dashboard (panels and
// variables) and the rule unit tests' input series, by where it is used.
func monitoringExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	for _, g := range loadRuleFile(t) {
		for _, r := range g.Rules {
			exprs["rule "+r.Alert+r.Record] = r.Expr
		}
	}
	d := loadDashboard(t)
	for _, p := range panelsOf(d.Panels) {
		for i, tg := range p.Targets {
			exprs["dashboard: "+p.Title+" #"+strconv.Itoa(i)] = promQL(tg.Expr)
		}
	}
	for _, v := range d.vars() {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Query)
		if m == nil {
			t.Errorf("dashboard variable %s: query %q is not label_values(<selector>, <label>)", v.Name, v.Query)
			continue
		}
		exprs["dashboard variable "+v.Name] = promQL(m[1])
	}
	for i, s := range ruleTestSeries(t) {
		exprs["rule unit test series "+strconv.Itoa(i)] = s
	}
	return exprs
}

type ruleTests struct {
	RuleFiles          []string `json:"rule_files"`
	EvaluationInterval string   `json:"evaluation_interval"`
	Tests              []struct {
		Name        string `json:"name"`
		Interval    string `json:"interval"`
		InputSeries []struct {
			Series string `json:"series"`
			Values string `json:"values"`
		} `json:"input_series"`
		AlertRuleTests []struct {
			AlertName string `json:"alertname"`
			EvalTime  string `json:"eval_time"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `json:"exp_labels"`
				ExpAnnotations map[string]string `json:"exp_annotations"`
			} `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func ruleTestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("monitoring/*_test.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no monitoring/*_test.yaml (%v)", err)
	}
	return files
}

func loadRuleTests(t *testing.T, path string) ruleTests {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rt ruleTests
	if err := yaml.UnmarshalStrict(data, &rt); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rt
}

func ruleTestSeries(t *testing.T) []string {
	var out []string
	for _, f := range ruleTestFiles(t) {
		for _, tc := range loadRuleTests(t, f).Tests {
			for _, s := range tc.InputSeries {
				out = append(out, s.Series)
			}
		}
	}
	return out
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run make deps (Debian's prometheus package)")
	}
	return p
}

func TestAlertRulesPromtool(t *testing.T) {
	pt := promtool(t)
	t.Run("check", func(t *testing.T) {
		out, err := exec.Command(pt, "check", "rules", ruleFile).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool check rules: %v\n%s", err, out)
		}
	})
	for _, f := range ruleTestFiles(t) {
		t.Run("test "+filepath.Base(f), func(t *testing.T) {
			cmd := exec.Command(pt, "test", "rules", filepath.Base(f))
			cmd.Dir = filepath.Dir(f)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("promtool test rules %s: %v\n%s", f, err, out)
			}
		})
	}
}

// TestAlertRulesContent: every alert is tested firing, has a severity, says what is wrong and
// links an existing runbook section.
func TestAlertRulesContent(t *testing.T) {
	anchors := docAnchors(t)
	fired := map[string]bool{}
	for _, f := range ruleTestFiles(t) {
		for _, tc := range loadRuleTests(t, f).Tests {
			for _, a := range tc.AlertRuleTests {
				if len(a.ExpAlerts) > 0 {
					fired[a.AlertName] = true
				}
			}
		}
	}
	n := 0
	for _, g := range loadRuleFile(t) {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			t.Run(r.Alert, func(t *testing.T) {
				if !fired[r.Alert] {
					t.Error("no unit test makes it fire")
				}
				if s := r.Labels["severity"]; s != "warning" && s != "critical" {
					t.Errorf("severity %q", s)
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("annotation %s is missing", a)
					}
				}
				anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookPrefix)
				if !ok || !anchors[anchor] {
					t.Errorf("runbook_url %q: want %s<a heading of docs/operations.md>", r.Annotations["runbook_url"], runbookPrefix)
				}
			})
		}
	}
	if n < 6 {
		t.Errorf("%d alerts: want backlog age, drops, evictions, sending, WAL cap, scrape, WAL append", n)
	}
}

// docAnchors returns the GitHub anchors of the headings of docs/operations.md.
func docAnchors(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^\p{L}\p{N}\- ]`)
	sc := bufio.NewScanner(f)
	inCode := false
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		a := strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")
		anchors[a] = true
	}
	return anchors
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("uid and title are required")
	}
	vars := map[string]bool{}
	for _, v := range d.vars() {
		vars[v.Name] = true
	}
	ids := map[int]bool{}
	for _, p := range panelsOf(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Description == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q: a description and a query are needed", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource must be the ${datasource} variable", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range grafanaVar.FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[m[1]] && !strings.HasPrefix(m[1], "__") {
					t.Errorf("panel %q uses undefined variable $%s", p.Title, m[1])
				}
			}
		}
	}
	// What the issue asks the dashboard to show.
	var all strings.Builder
	for _, p := range panelsOf(d.Panels) {
		for _, tg := range p.Targets {
			all.WriteString(tg.Expr + "\n")
		}
	}
	for _, want := range []string{
		"collector_queue_highest_sent_timestamp_seconds",  // backlog age
		"collector_queue_samples_pending",                 // backlog in flight
		"collector_wal_samples_appended_total",            // append rate
		"collector_queue_samples_sent_total",              // send rate
		"collector_queue_samples_dropped_total",           // drops by reason
		"collector_wal_samples_evicted_total",             // drops by the cap
		"collector_queue_samples_retried_total",           // retries
		"collector_queue_shards",                          // shards
		"collector_wal_size_bytes",                        // WAL size ...
		"$wal_max_size",                                   // ... against its cap
		"collector_scrape_last_success_timestamp_seconds", // scrape health per source
		"collector_scrape_failures_total",
	} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("no panel queries %s", want)
		}
	}
	if len(queriedMetrics(t, monitoringExprs(t)).where) == 0 {
		t.Error("no metric queried")
	}
}
