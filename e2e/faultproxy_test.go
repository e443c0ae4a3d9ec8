package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// fault is what the proxy does with one remote-write request.
type fault string

const (
	// faultNone forwards the request and its answer.
	faultNone fault = "pass"
	// fault503 answers 503 without forwarding.
	fault503 fault = "503"
	// fault429 answers 429 with Retry-After: 1 without forwarding.
	fault429 fault = "429"
	// faultReset resets the connection (RST) without forwarding.
	faultReset fault = "reset"
	// fault401 answers 401 without forwarding, as a hub that does not take the credentials (a
	// token being rotated): it must cost time, never data.
	fault401 fault = "401"
	// faultSlow waits slowDelay and then forwards: a hub slower than --to-upload-timeout makes
	// the collector give up on a request the receiver may then write all the same.
	faultSlow fault = "slow"
	// faultLostAnswer forwards the request (the receiver writes it) and then resets the
	// connection: the collector never hears that it was written and must send it again.
	faultLostAnswer fault = "lost_answer"
)

// faultProxy is a reverse proxy in front of a receiver that misbehaves on command. It also checks
// invariant 5 on the wire: the samples of a series that the collector saw acknowledged (2xx)
// arrive in strictly increasing time order, request after request.
type faultProxy struct {
	t   testing.TB
	srv *httptest.Server
	rp  *httputil.ReverseProxy

	mu sync.Mutex
	// faults is the current mix: each request gets one of them at random. Guarded by mu.
	faults []fault
	rnd    *rand.Rand        // guarded by mu
	order  bool              // check the order of acknowledged samples; guarded by mu
	total  int               // requests; guarded by mu
	served map[fault]int     // requests per fault; guarded by mu
	acked  map[string]int64  // newest acknowledged timestamp per series; guarded by mu
	errs   []string          // order violations (the first few); guarded by mu
	nerrs  int               // guarded by mu
	status map[int]int       // upstream status codes of forwarded requests; guarded by mu
	last   map[string]string // a description of the last acknowledged request per series; guarded by mu
	// slowDelay is how long faultSlow holds a request; guarded by mu.
	slowDelay time.Duration
}

// newFaultProxy starts a proxy to target (a base URL) that passes everything until told
// otherwise. seed makes the choice among a mix of faults reproducible (up to the order in which
// concurrent requests arrive).
func newFaultProxy(t testing.TB, target string, seed int64) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	fp := &faultProxy{
		t:         t,
		rp:        httputil.NewSingleHostReverseProxy(u),
		faults:    []fault{faultNone},
		order:     true,
		rnd:       rand.New(rand.NewSource(seed)),
		served:    map[fault]int{},
		acked:     map[string]int64{},
		status:    map[int]int{},
		last:      map[string]string{},
		slowDelay: 2 * time.Second,
	}
	fp.rp.Transport = &http.Transport{DisableKeepAlives: true, Proxy: nil}
	fp.rp.ErrorLog = log.New(io.Discard, "", 0) // an unreachable receiver is part of the test: 502
	fp.srv = httptest.NewServer(http.HandlerFunc(fp.serve))
	t.Cleanup(fp.srv.Close)
	return fp
}

// WriteURL is the remote-write URL the collector sends to.
func (fp *faultProxy) WriteURL() string { return fp.srv.URL + "/api/v1/write" }

// set makes every following request get one of faults at random.
func (fp *faultProxy) set(faults ...fault) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.faults = faults
}

// setSlowDelay sets how long faultSlow holds a request.
func (fp *faultProxy) setSlowDelay(d time.Duration) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.slowDelay = d
}

// checkOrder turns the check of the acknowledged samples' order on or off. A collector that is
// killed sends the records after its last committed position again: their samples repeat.
func (fp *faultProxy) checkOrder(on bool) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.order = on
}

// requests returns how many requests arrived.
func (fp *faultProxy) requests() int {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.total
}

// count returns how many requests got f.
func (fp *faultProxy) count(f fault) int {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.served[f]
}

// summary describes the requests served so far.
func (fp *faultProxy) summary() string {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fs := make([]string, 0, len(fp.served))
	for f, n := range fp.served {
		fs = append(fs, fmt.Sprintf("%s=%d", f, n))
	}
	sort.Strings(fs)
	return fmt.Sprintf("faults %v, upstream statuses %v", fs, fp.status)
}

// orderErrors returns the order violations seen and their number.
func (fp *faultProxy) orderErrors() ([]string, int) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return append([]string(nil), fp.errs...), fp.nerrs
}

func (fp *faultProxy) pick() fault {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	f := fp.faults[fp.rnd.Intn(len(fp.faults))]
	fp.served[f]++
	fp.total++
	return f
}

func (fp *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	f := fp.pick()
	fp.mu.Lock()
	order, delay := fp.order, fp.slowDelay
	fp.mu.Unlock()
	if f == faultSlow {
		// A hub that takes its time, then answers as usual; a client that gave up is gone.
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
		// Forwarded even when the collector gave up: the hub writes what it was slow to answer.
		r = r.WithContext(context.WithoutCancel(r.Context()))
		f = faultNone
	}
	switch f {
	case fault503:
		http.Error(w, "e2e: fault injected", http.StatusServiceUnavailable)
	case fault429:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "e2e: fault injected", http.StatusTooManyRequests)
	case fault401:
		http.Error(w, "e2e: fault injected: unauthorized", http.StatusUnauthorized)
	case faultReset:
		reset(w)
	case faultLostAnswer:
		rec := httptest.NewRecorder()
		fp.rp.ServeHTTP(rec, r)
		fp.noteStatus(rec.Code)
		reset(w)
	default:
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		fp.rp.ServeHTTP(rec, r)
		fp.noteStatus(rec.code)
		if order && rec.code/100 == 2 {
			fp.verifyOrder(body)
		}
	}
}

func (fp *faultProxy) noteStatus(code int) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.status[code]++
}

// verifyOrder decodes an acknowledged request and checks that each of its series' samples are
// newer than every acknowledged one before.
func (fp *faultProxy) verifyOrder(body []byte) {
	fail := func(format string, args ...any) {
		fp.mu.Lock()
		defer fp.mu.Unlock()
		fp.nerrs++
		if len(fp.errs) < 5 {
			fp.errs = append(fp.errs, fmt.Sprintf(format, args...))
		}
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		fail("acknowledged request is not snappy: %v", err)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		fail("acknowledged request is not a WriteRequest: %v", err)
		return
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	desc := fmt.Sprintf("request of %d series", len(req.Timeseries))
	for _, ts := range req.Timeseries {
		b := labels.NewScratchBuilder(len(ts.Labels))
		for _, l := range ts.Labels {
			b.Add(l.Name, l.Value)
		}
		b.Sort()
		key := b.Labels().String()
		for _, s := range ts.Samples {
			if prev, ok := fp.acked[key]; ok && s.Timestamp <= prev {
				fp.nerrs++
				if len(fp.errs) < 5 {
					fp.errs = append(fp.errs, fmt.Sprintf("%s: sample at %d acknowledged after one at %d (%s after %s)", key, s.Timestamp, prev, desc, fp.last[key]))
				}
			}
			fp.acked[key] = s.Timestamp
			fp.last[key] = desc
		}
	}
}

// reset closes the client's connection with an RST (SO_LINGER 0) instead of an answer.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("e2e: the proxy's ResponseWriter cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}
