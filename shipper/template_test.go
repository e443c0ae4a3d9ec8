package shipper

import (
	"bytes"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/prompb"
)

// templateBatch returns n one-sample series over shared label strings (the identity templates
// key on), in body order, with the timestamps of a few targets.
func templateBatch(n int) []Series {
	series := make([]prompb.TimeSeries, n)
	for i, ls := range benchLabels(n) {
		series[i] = prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: float64(i) * 1.25, Timestamp: 1764324000000 + int64(i%7)*1000}}}
	}
	sort.SliceStable(series, func(i, j int) bool { return series[i].Labels[0].Value < series[j].Labels[0].Value })
	return toSeries(series)
}

// nextScrape returns series with new values and timestamps of the same encoded sizes: each
// target's timestamp moves by the interval, each value by a step (0 stays 0).
func nextScrape(series []Series, step int) []Series {
	out := make([]Series, len(series))
	for i, ts := range series {
		s := ts.Samples[0]
		if s.Value != 0 {
			s.Value += float64(step) * 0.5
		}
		if s.Timestamp != 0 {
			s.Timestamp += int64(step) * 15000
		}
		out[i] = Series{Labels: ts.Labels, Samples: []Sample{s}}
	}
	return out
}

// compressed returns the s2 block of series and their message.
func compressed(t testing.TB, series []Series) (msg, block []byte) {
	e := &encoder{}
	b, err := e.encode(series)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(e.proto), bytes.Clone(b)
}

// checkRender renders series from tpl and checks that the block decodes, with golang/snappy, to
// the message appendWriteRequest writes for them.
func checkRender(t *testing.T, tpl *reqTemplate, series []Series) []byte {
	t.Helper()
	if !tpl.fits(series) {
		t.Fatal("template does not fit the series it should")
	}
	block := tpl.render([]byte("prefix"), series)
	if string(block[:6]) != "prefix" {
		t.Fatal("render overwrote what dst held")
	}
	got, err := snappy.Decode(nil, block[6:])
	if err != nil {
		t.Fatalf("rendered block does not decode: %v", err)
	}
	if want := appendWriteRequest(nil, series); !bytes.Equal(got, want) {
		t.Fatalf("rendered block decodes to %d bytes that differ from the %d-byte message", len(got), len(want))
	}
	return block[6:]
}

func TestTemplateRendersNewSamples(t *testing.T) {
	for _, n := range []int{1, 2, 17, 2000} {
		series := templateBatch(n)
		msg, block := compressed(t, series)
		tpl, err := buildTemplate(series, msg, block, 0)
		if err != nil {
			t.Fatalf("%d series: %v", n, err)
		}
		for step := 0; step < 3; step++ {
			checkRender(t, tpl, nextScrape(series, step))
		}
		if n == 2000 {
			// The template costs some compression: it must stay close to s2's.
			t.Logf("%d series: s2 %d bytes, template %d bytes, %d patches, %d timestamp copies",
				n, len(block), len(tpl.comp), len(tpl.frags), countDeps(tpl))
			if len(tpl.comp) > len(block)*5/4 {
				t.Errorf("template block %d bytes, more than 5/4 of s2's %d", len(tpl.comp), len(block))
			}
			if countDeps(tpl) == 0 {
				t.Error("no timestamp is copied from an earlier sample's: 7 targets share 2000 timestamps")
			}
		}
	}
}

func countDeps(tpl *reqTemplate) int {
	n := 0
	for _, d := range tpl.deps {
		if d >= 0 {
			n++
		}
	}
	return n
}

func TestTemplateFits(t *testing.T) {
	series := templateBatch(100)
	msg, block := compressed(t, series)
	tpl, err := buildTemplate(series, msg, block, 0)
	if err != nil {
		t.Fatal(err)
	}
	if countDeps(tpl) == 0 {
		t.Fatal("the batch has no timestamp copies to test")
	}
	dep := -1
	for j, d := range tpl.deps {
		if d >= 0 {
			dep = j
			break
		}
	}
	mutate := map[string]func(s []Series) []Series{
		"fewer series": func(s []Series) []Series { return s[:len(s)-1] },
		"other labels, same bytes": func(s []Series) []Series {
			s[3].Labels = string([]byte(s[3].Labels)) // equal content, another string
			return s
		},
		"two samples": func(s []Series) []Series {
			s[5].Samples = append(s[5].Samples, Sample{Timestamp: s[5].Samples[0].Timestamp + 1, Value: 1})
			return s
		},
		"value becomes 0": func(s []Series) []Series { s[7].Samples[0].Value = 0; return s },
		"longer timestamp": func(s []Series) []Series {
			s[9].Samples[0].Timestamp = math.MaxInt64
			return s
		},
		"a copied timestamp differs": func(s []Series) []Series {
			s[dep].Samples[0].Timestamp++
			return s
		},
	}
	for name, m := range mutate {
		s := m(nextScrape(series, 1))
		if tpl.fits(s) {
			t.Errorf("%s: the template fits", name)
		}
	}
	// A timestamp no copy depends on may change.
	free := -1
	for j, d := range tpl.deps {
		if d < 0 && j > 0 {
			free = j
			break
		}
	}
	isSource := func(j int) bool {
		for _, d := range tpl.deps {
			if int(d) == j {
				return true
			}
		}
		return false
	}
	for j, d := range tpl.deps {
		if d < 0 && !isSource(j) {
			free = j
			break
		}
	}
	if free >= 0 {
		s := nextScrape(series, 1)
		s[free].Samples[0].Timestamp += 3
		checkRender(t, tpl, s)
	}
}

// TestTemplateValueShapes covers values and timestamps of every encoded size, zeros included
// (left out of the message), NaN and negative timestamps.
func TestTemplateValueShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	values := []float64{0, 1, -1, math.NaN(), math.Inf(1), 1e300, 0.25}
	stamps := []int64{0, 1, -1, 127, 128, 1764324000000, math.MaxInt64, math.MinInt64}
	base := templateBatch(300)
	for round := 0; round < 50; round++ {
		series := make([]Series, len(base))
		for i := range base {
			s := Sample{Value: values[rng.IntN(len(values))], Timestamp: stamps[rng.IntN(len(stamps))]}
			if rng.IntN(2) == 0 {
				s.Timestamp = stamps[5] // most series share one
			}
			series[i] = Series{Labels: base[i].Labels, Samples: []Sample{s}}
		}
		msg, block := compressed(t, series)
		tpl, err := buildTemplate(series, msg, block, uint8(round%(maxTemplateLevel+1)))
		if err != nil {
			t.Fatal(err)
		}
		checkRender(t, tpl, series)
		// New samples of the same sizes wherever the template allows.
		next := make([]Series, len(series))
		for i, ts := range series {
			s := ts.Samples[0]
			if s.Value != 0 && !math.IsNaN(s.Value) {
				s.Value = -s.Value
			}
			next[i] = Series{Labels: ts.Labels, Samples: []Sample{s}}
		}
		checkRender(t, tpl, next)
	}
}

func TestTemplateCacheLearns(t *testing.T) {
	c := newTemplateCache()
	series := templateBatch(500)
	key, ok := templateKey(series)
	if !ok {
		t.Fatal("one-sample series are not cacheable")
	}
	// miss runs a request that find cannot serve and returns whether learn built a template.
	miss := func(s []Series) bool {
		t.Helper()
		if c.find(key, s) != nil {
			t.Fatal("a template served a request it should not")
		}
		msg, block := compressed(t, s)
		return c.learn(key, s, msg, block)
	}
	hit := func(s []Series) {
		t.Helper()
		tpl := c.find(key, s)
		if tpl == nil {
			t.Fatal("no template")
		}
		checkRender(t, tpl, s)
	}
	if !miss(series) {
		t.Fatal("the first request over the series built no template")
	}
	hit(nextScrape(series, 1))
	hit(nextScrape(series, 2))

	// A sample that changes size: no template; a template that served is rebuilt at its level.
	s := nextScrape(series, 3)
	s[0].Samples[0].Value = 0
	if !miss(s) {
		t.Fatal("a template that served requests is not replaced")
	}
	if l := c.byKey[key].level; l != 0 {
		t.Fatalf("level %d after a template that served, want 0", l)
	}
	// The size changes back: the new template never served. Its successors are less strict,
	// until the last level, which goes without a build; the next request builds again.
	for level := uint8(1); level <= maxTemplateLevel; level++ {
		next := s
		if level%2 == 1 {
			next = nextScrape(series, 4)
		}
		if !miss(next) {
			t.Fatalf("no build of level %d", level)
		}
		if l := c.byKey[key].level; l != level {
			t.Fatalf("level %d, want %d", l, level)
		}
	}
	// other returns a request of the other shape than the template's.
	other := func(step int) []Series {
		if c.byKey[key] != nil && c.byKey[key].sizes[0] == uint8(sampleSize(&s[0].Samples[0])) {
			return nextScrape(series, step)
		}
		z := nextScrape(series, step)
		z[0].Samples[0].Value = 0
		return z
	}
	// A template of the last level that never served goes, and the series wait: one request,
	// then two, each time its successor never serves either.
	for wait := 1; wait <= 2; wait++ {
		if miss(other(10 * wait)) {
			t.Fatal("a build right after a template of the last level that never served")
		}
		for i := range wait {
			if miss(other(10*wait + 1 + i)) {
				t.Fatalf("a build %d requests into a wait of %d", i+1, wait)
			}
		}
		if !miss(other(10*wait + 5)) {
			t.Fatalf("no build after a wait of %d", wait)
		}
		if l := c.byKey[key].level; l != maxTemplateLevel {
			t.Fatalf("level %d after a wait, want %d", l, maxTemplateLevel)
		}
	}
	// This one serves: the wait is over, and a later failure rebuilds at once.
	same := other(30)
	same[0].Samples[0].Value = s[0].Samples[0].Value // the template's shape: s's
	hit(same)
	if !miss(other(31)) {
		t.Fatal("no build after a template that served")
	}
	if len(c.waits) != 0 {
		t.Fatalf("%d waits after a template served", len(c.waits))
	}

	if _, ok := templateKey([]Series{{Labels: "x", Samples: make([]Sample, 2)}}); ok {
		t.Error("a series with two samples is cacheable")
	}
	if _, ok := templateKey(nil); ok {
		t.Error("an empty request is cacheable")
	}
}

func TestTemplateCacheSweeps(t *testing.T) {
	c := newTemplateCache()
	batches := make([][]Series, 3)
	for i := range batches {
		batches[i] = templateBatch(10 + i)
	}
	learn := func(s []Series) {
		key, _ := templateKey(s)
		if c.find(key, s) == nil {
			msg, block := compressed(t, s)
			c.learn(key, s, msg, block)
		}
	}
	for range 2 {
		for _, b := range batches {
			learn(b)
		}
	}
	if len(c.byKey) != 3 {
		t.Fatalf("%d templates, want 3", len(c.byKey))
	}
	// Only the first batch goes on: the others' templates go once enough requests passed.
	for range 200 {
		learn(batches[0])
	}
	learn(batches[0])
	if len(c.byKey) != 1 {
		t.Fatalf("%d templates after 200 requests over one batch, want 1", len(c.byKey))
	}
}

func TestBuildTemplateRejectsMismatch(t *testing.T) {
	series := templateBatch(50)
	msg, block := compressed(t, series)
	other := nextScrape(series, 1)
	other[0].Samples[0].Value = 0
	if _, err := buildTemplate(other, msg, block, 0); err == nil {
		t.Error("a template of a message of other series was built")
	}
	for _, bad := range [][]byte{nil, {0x80}, block[:len(block)/2], append(bytes.Clone(block), 0)} {
		if _, err := buildTemplate(series, msg, bad, 0); err == nil {
			t.Errorf("a template of a %d-byte corrupt block was built", len(bad))
		}
	}
}

// FuzzTemplate builds templates of fuzzed requests (fuzzSeries, one sample per series) and checks
// that they decode to their message and render a second scrape exactly.
func FuzzTemplate(f *testing.F) {
	fuzzEncoding(f, func(t testing.TB, e *encoder, series []prompb.TimeSeries) {
		in := toSeries(series)
		one := in[:0]
		for _, s := range in {
			if len(s.Samples) > 0 {
				one = append(one, Series{Labels: s.Labels, Samples: s.Samples[:1]})
			}
		}
		if len(one) == 0 {
			return
		}
		block, err := e.encode(one)
		if err != nil {
			t.Fatal(err)
		}
		tpl, err := buildTemplate(one, e.proto, block, uint8(len(one)%(maxTemplateLevel+1)))
		if err != nil {
			t.Fatalf("build: %v", err)
		}
		next := nextScrape(one, 1)
		for i := range next {
			if sampleSize(&next[i].Samples[0]) != sampleSize(&one[i].Samples[0]) {
				next[i].Samples[0] = one[i].Samples[0]
			}
		}
		if !tpl.fits(next) {
			return // a copied timestamp of two series that nextScrape moved apart: not a fault
		}
		got, err := s2.Decode(nil, tpl.render(nil, next))
		if err != nil {
			t.Fatal(err)
		}
		if want := appendWriteRequest(nil, next); !bytes.Equal(got, want) {
			t.Fatal("rendered block differs from the message")
		}
	})
}

// BenchmarkTemplate measures a request of 5000 one-sample series in body order, harness-like
// (one timestamp, values of about 30 significant bits): "encode" is the message and s2 (a request
// without a template), "build" what making its template adds, "render" a request from the
// template (find's check included). It reports ns and wire bytes per sample.
func BenchmarkTemplate(b *testing.B) {
	const n = 5000
	series := make([]prompb.TimeSeries, n)
	for i, ls := range benchLabels(n) {
		v := float64((i*7919)%100000) + 117600000*float64(i%17+1)*0.25
		series[i] = prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: v, Timestamp: 1764324000000}}}
	}
	sort.SliceStable(series, func(i, j int) bool { return series[i].Labels[0].Value < series[j].Labels[0].Value })
	batch := toSeries(series)
	msg, block := compressed(b, batch)
	next := nextScrape(batch, 0)
	for i := range next {
		next[i].Samples[0].Value = -next[i].Samples[0].Value // the same bytes but the sign's
		next[i].Samples[0].Timestamp += 15000
	}
	b.Run("encode", func(b *testing.B) {
		e := &encoder{}
		for b.Loop() {
			if _, err := e.encode(next); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
		b.ReportMetric(float64(len(block))/n, "B/sample")
	})
	b.Run("build", func(b *testing.B) {
		var tpl *reqTemplate
		for b.Loop() {
			var err error
			if tpl, err = buildTemplate(batch, msg, block, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
		b.ReportMetric(float64(len(tpl.comp))/n, "B/sample")
	})
	b.Run("render", func(b *testing.B) {
		tpl, err := buildTemplate(batch, msg, block, 0)
		if err != nil {
			b.Fatal(err)
		}
		var out []byte
		for b.Loop() {
			if !tpl.fits(next) {
				b.Fatal("no fit")
			}
			out = tpl.render(out[:0], next)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
	})
}
