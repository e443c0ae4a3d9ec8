package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSourcePaced checks that a paced source serves its slot's body whole and chunked (no
// Content-Length, as Prometheus serves /federate), and an unpaced one with a Content-Length.
func TestSourcePaced(t *testing.T) {
	for _, rate := range []float64{0, 1e9} {
		src := newSource(1000, time.Hour, false, 6, rate)
		srv := httptest.NewServer(src)
		resp, err := http.Get(srv.URL + "/federate")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		src.mu.Lock()
		var want []byte
		for ts := range src.served {
			want = src.bodies[ts].plain
		}
		src.mu.Unlock()
		if len(want) < 4*pieceBytes || !bytes.Equal(body, want) {
			t.Fatalf("rate %g: body of %d bytes differs from the slot's %d", rate, len(body), len(want))
		}
		chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
		if rate > 0 && (resp.ContentLength != -1 || !chunked) {
			t.Errorf("rate %g: Content-Length %d, Transfer-Encoding %v; want chunked", rate, resp.ContentLength, resp.TransferEncoding)
		}
		if rate == 0 && resp.ContentLength != int64(len(want)) {
			t.Errorf("unpaced: Content-Length %d, want %d", resp.ContentLength, len(want))
		}
	}
}
