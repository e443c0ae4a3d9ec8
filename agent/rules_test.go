package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// queryServer is a Prometheus with an empty /federate and an /api/v1/query that answers each
// query from a table.
type queryServer struct {
	mtx     sync.Mutex
	queries []string
	answers map[string]func(w http.ResponseWriter, ts string)
}

func (q *queryServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/federate":
		w.Header().Set("Content-Type", promTextType)
	case "/api/v1/query":
		query := r.URL.Query().Get("query")
		q.mtx.Lock()
		q.queries = append(q.queries, query)
		q.mtx.Unlock()
		a, ok := q.answers[query]
		if !ok {
			http.Error(w, "unknown query", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		a(w, r.URL.Query().Get("time"))
	default:
		http.NotFound(w, r)
	}
}

func jsonAnswer(code int, body string) func(http.ResponseWriter, string) {
	return func(w http.ResponseWriter, ts string) {
		w.WriteHeader(code)
		io.WriteString(w, strings.ReplaceAll(body, "TS", ts))
	}
}

func TestRecordingRules(t *testing.T) {
	qs := &queryServer{answers: map[string]func(http.ResponseWriter, string){
		`sum(rate(x[5m])) by (code)`: jsonAnswer(200, `{"status":"success","data":{"resultType":"vector","result":[
			{"metric":{"code":"200","empty":""},"value":[TS,"1.5"]},
			{"metric":{"__name__":"ignored","code":"500"},"value":[TS,"NaN"]}]}}`),
		`scalar(sum(up))`: jsonAnswer(200, `{"status":"success","data":{"resultType":"scalar","result":[TS,"42"]}}`),
		`sum(nothing)`:    jsonAnswer(200, `{"status":"success","data":{"resultType":"vector","result":[]}}`),
		`sum(bad)`:        jsonAnswer(400, `{"status":"error","errorType":"bad_data","error":"parse error at char 4"}`),
		`x[5m]`:           jsonAnswer(200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`),
		`sum(garbage)`:    jsonAnswer(200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[TS]}]}}`),
		`sum(html)`: func(w http.ResponseWriter, _ string) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html>oops</html>")
		},
	}}
	srv := httptest.NewServer(qs)
	defer srv.Close()
	rules := []RecordingRule{
		{Name: "code:x:rate5m", Query: `sum(rate(x[5m])) by (code)`},
		{Name: "cluster:up:sum", Query: `scalar(sum(up))`},
		{Name: "none", Query: `sum(nothing)`},
		{Name: "bad", Query: `sum(bad)`},
		{Name: "matrix", Query: `x[5m]`},
		{Name: "garbage", Query: `sum(garbage)`},
		{Name: "html", Query: `sum(html)`},
		{Name: "down", Query: `sum(unknown)`},
	}
	ts := newTestSource(t, SourceConfig{From: srv.URL, RecordingRules: rules})
	ts.runCycle(t)

	got, batches := readSourceWAL(t, ts.w)
	var series []string
	for _, s := range got {
		series = append(series, s.Series+" "+strconv.FormatFloat(s.V, 'g', -1, 64))
		if s.T != ts.clock.Now().UnixMilli() {
			t.Errorf("sample time %d, want the evaluation time %d", s.T, ts.clock.Now().UnixMilli())
		}
	}
	sort.Strings(series)
	want := []string{
		`{__name__="cluster:up:sum", clusterID="c1"} 42`,
		`{__name__="code:x:rate5m", clusterID="c1", code="200"} 1.5`,
		`{__name__="code:x:rate5m", clusterID="c1", code="500"} NaN`,
	}
	if strings.Join(series, "\n") != strings.Join(want, "\n") {
		t.Fatalf("series\n%s\nwant\n%s", strings.Join(series, "\n"), strings.Join(want, "\n"))
	}
	// The federate scrape (empty), and one commit per rule that returned something.
	if batches != 2 {
		t.Errorf("%d commits, want 2 (one per rule with results; an empty scrape writes no record)", batches)
	}
	for _, tc := range []struct {
		rule string
		want float64
	}{{"code:x:rate5m", 0}, {"cluster:up:sum", 0}, {"none", 0}, {"bad", 1}, {"matrix", 1}, {"garbage", 1}, {"html", 1}, {"down", 1}} {
		if n := testutil.ToFloat64(ts.metrics.ruleFailures.WithLabelValues(tc.rule)); n != tc.want {
			t.Errorf("rule failures{rule=%q} = %v, want %v", tc.rule, n, tc.want)
		}
	}
	if n := testutil.ToFloat64(ts.metrics.requests.WithLabelValues("recording", "200")); n != 6 {
		t.Errorf("federate_requests_total{recording,200} = %v, want 6", n)
	}
	warns := ts.warnings()
	if len(warns) != 5 {
		t.Fatalf("%d warnings, want one per failed rule: %v", len(warns), warns)
	}
	msgs := map[string]string{}
	for _, w := range warns {
		msgs[fmt.Sprint(w.Data["rule"])] = fmt.Sprint(w.Data["err"])
	}
	for rule, part := range map[string]string{
		"bad":     `status 400: "bad_data: parse error at char 4"`,
		"matrix":  `result type "matrix" is not supported`,
		"garbage": "point has 1 elements",
		"down":    "status 500",
	} {
		if !strings.Contains(msgs[rule], part) {
			t.Errorf("rule %s logged %q, want %q", rule, msgs[rule], part)
		}
	}
	if st := ts.Status(); st.LastError != nil {
		t.Errorf("rule failures leaked into the scrape status: %v", st.LastError)
	}
}

func TestRecordingRuleMetricsFollowReload(t *testing.T) {
	qs := &queryServer{answers: map[string]func(http.ResponseWriter, string){}}
	srv := httptest.NewServer(qs)
	defer srv.Close()
	cfg := SourceConfig{ID: "c1", From: srv.URL, Elide: []string{}, RecordingRules: []RecordingRule{{Name: "a", Query: "up"}, {Name: "b", Query: "up"}}}
	ts := newTestSource(t, cfg)
	if n := testutil.CollectAndCount(ts.metrics.ruleFailures); n != 2 {
		t.Fatalf("%d rule series, want 2", n)
	}
	cfg.RecordingRules = cfg.RecordingRules[1:]
	if err := ts.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(ts.metrics.ruleFailures); n != 1 {
		t.Fatalf("%d rule series after dropping a rule, want 1", n)
	}
}

func TestAllowlistRulesQueryUnescaped(t *testing.T) {
	qs := &queryServer{answers: map[string]func(http.ResponseWriter, string){}}
	srv := httptest.NewServer(qs)
	defer srv.Close()
	ts := newTestSource(t, SourceConfig{From: srv.URL, Allowlist: "testdata/allowlist/rhacm-metrics-allowlist.yaml", AllowlistKey: UWLAllowlistKey})
	ts.runCycle(t)
	qs.mtx.Lock()
	defer qs.mtx.Unlock()
	if len(qs.queries) != 6 {
		t.Fatalf("%d queries, want 6", len(qs.queries))
	}
	for _, q := range qs.queries {
		if strings.Contains(q, `\"`) {
			t.Errorf("query sent with RHACM's escapes: %s", q)
		}
	}
}

// FuzzRuleSamples feeds arbitrary query responses to the decoder: errors, never panics, and a
// result always carries the rule name.
func FuzzRuleSamples(f *testing.F) {
	for _, s := range []string{
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1.5,"2"]}]}}`,
		`{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{}]}]}}`,
		`{"status":"error","errorType":"bad_data","error":"x"}`,
		`{"status":"success","data":{"resultType":"string","result":[1,"s"]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"":"x"},"value":["1","2"]}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var qr queryResponse
		if json.Unmarshal(b, &qr) != nil {
			return
		}
		samples, err := ruleSamples("r", &qr)
		if err != nil {
			return
		}
		for _, s := range samples {
			if s.Name != "r" || s.Labels.Has("__name__") || s.Labels.Has("") {
				t.Fatalf("bad sample %+v", s)
			}
		}
	})
}

// TestRuleQueryBounds: a pathological query (nesting the parser handles in quadratic time, or
// merely huge) is refused with a clear error before the parser sees it; brackets inside string
// literals and comments do not count.
func TestRuleQueryBounds(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("(", n) + "up" + strings.Repeat(")", n) }
	for _, tc := range []struct {
		name, query, want string
	}{
		{"depth at the limit", nest(MaxRuleQueryDepth), ""},
		{"pathological nesting", nest(8000), "deeper than 64"},
		{"depth one over", nest(MaxRuleQueryDepth + 1), "deeper than 64"},
		{"too long", "up + " + strings.Repeat("1 + ", MaxRuleQueryBytes/4) + "1", "bytes, at most 16384"},
		{"brackets in strings", `up{job="` + strings.Repeat("(", 100) + `", instance='[\'` + strings.Repeat("{", 100) + `'}`, ""},
		{"brackets in a comment", "up # " + strings.Repeat("(", 100) + "\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := RecordingRule{Name: "r", Query: tc.query}.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `recording rule "r"`)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
