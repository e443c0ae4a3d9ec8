package agent

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newServer returns the HTTP server with timeouts set: slow or idle clients cannot hold it.
func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      2 * time.Minute, // pprof profiles take 30 s by default
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Handler serves /metrics, /healthz, /readyz (also as /healthz/ready, the seeds' path), POST /-/reload (403 unless EnableLifecycle) and,
// when enabled, /debug/pprof/.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	if a.opts.Gatherer != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(a.opts.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", a.serveReady)
	// The seeds' readiness path, probed by deployments made for them; it answers as /readyz.
	mux.HandleFunc("/healthz/ready", a.serveReady)
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		if !a.opts.EnableLifecycle {
			// Prometheus' answer: anyone who reaches --listen must not be able to make the agent
			// re-read its files (a reload of a large match file costs CPU seconds).
			http.Error(w, "Lifecycle API is not enabled.", http.StatusForbidden)
			return
		}
		if a.opts.Reload == nil {
			http.Error(w, "reload is not configured", http.StatusNotImplemented)
			return
		}
		if err := a.opts.Reload(); err != nil {
			http.Error(w, "reload refused, the running configuration is kept: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "reloaded")
	})
	if a.opts.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Ready reports whether every WAL is open (always, once New returned) and every source has
// attempted its first scrape, and lists what is failing: sources whose last scrape failed and
// endpoints whose last request failed. Once Run has begun its shutdown it is not ready.
func (a *Agent) Ready() (bool, []string) {
	ready := true
	var problems []string
	if a.stopping.Load() {
		ready = false
		problems = append(problems, "shutting down")
	}
	for _, c := range a.clusters {
		st := c.source.Status()
		if !st.Attempted {
			ready = false
			problems = append(problems, fmt.Sprintf("source %s: first scrape not attempted yet", c.id))
		} else if st.LastError != nil {
			problems = append(problems, fmt.Sprintf("source %s: last scrape failed: %s", c.id, scrapeKinds(st.LastError)))
		}
		for _, eq := range c.queues {
			if err := eq.sender.lastError(); err != nil {
				problems = append(problems, fmt.Sprintf("endpoint %s (source %s): last request failed: %s", eq.name, c.id, sendKind(err)))
			}
		}
	}
	return ready, problems
}

func (a *Agent) serveReady(w http.ResponseWriter, _ *http.Request) {
	ready, problems := a.Ready()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready")
	} else {
		fmt.Fprintln(w, "ready")
	}
	for _, p := range problems {
		fmt.Fprintln(w, p)
	}
}

// scrapeKinds describes the failed scrapes of a cycle for /readyz, which anyone reaching
// --listen may read: the reason and the status code of each, never an error string (it may
// quote the source's answer). The log line of the failure has the details.
func scrapeKinds(err error) string {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var kinds []string
	count := map[string]int{}
	for _, e := range errs {
		k := reasonOf(e)
		var se *scrapeError
		if errors.As(e, &se) && se.Code != 0 {
			k += fmt.Sprintf(" (HTTP %d)", se.Code)
		}
		if count[k]++; count[k] == 1 {
			kinds = append(kinds, k)
		}
	}
	for i, k := range kinds {
		if n := count[k]; n > 1 {
			kinds[i] = fmt.Sprintf("%s x%d", k, n)
		}
	}
	return strings.Join(kinds, ", ") + "; see the log"
}

// sendKind describes the error of a remote-write request for /readyz: its kind and status code
// (shipper.Error), never the error string, which quotes the receiver's answer.
func sendKind(err error) string {
	var se interface {
		Reason() string
		StatusCode() int
	}
	if !errors.As(err, &se) {
		return "error; see the log"
	}
	if code := se.StatusCode(); code != 0 {
		return fmt.Sprintf("HTTP %d (%s); see the log", code, se.Reason())
	}
	return se.Reason() + "; see the log"
}
