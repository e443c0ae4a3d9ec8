package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestReadGoMemory reads the go_memstats series of a real client_golang Go collector, as the
// agents expose them, and refuses an exposition without them.
func TestReadGoMemory(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	m, err := readGoMemory(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if m.HeapInuse <= 0 || m.Sys < m.HeapInuse || m.NextGC <= 0 || m.Stack <= 0 {
		t.Fatalf("implausible memory %+v", m)
	}
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("up 1\n"))
	}))
	defer empty.Close()
	if _, err := readGoMemory(empty.URL); err == nil {
		t.Fatal("an exposition without go_memstats was read")
	}
}
