package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"
)

// receiver is a remote-write endpoint that counts what arrives and keeps nothing: requests,
// samples (and native histograms) and the bytes of the request bodies as they were on the wire
// (snappy-compressed protobuf). It decodes enough of each request to count the samples, for
// remote-write 1.0 (prometheus.WriteRequest) and 2.0 (io.prometheus.write.v2.Request, told by
// the Content-Type), and answers 204. While down it answers 503 and counts nothing.
type receiver struct {
	samples   atomic.Int64
	wireBytes atomic.Int64
	requests  atomic.Int64
	v2        atomic.Int64 // requests in remote-write 2.0
	errors    atomic.Int64 // requests that did not decode (answered 400)
	down      atomic.Bool

	pool sync.Pool // of *[]byte, decode buffers
}

// counts is a snapshot of a receiver's counters.
type counts struct {
	Samples, WireBytes, Requests, V2, Errors int64
}

func (r *receiver) snapshot() counts {
	return counts{Samples: r.samples.Load(), WireBytes: r.wireBytes.Load(), Requests: r.requests.Load(), V2: r.v2.Load(), Errors: r.errors.Load()}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/api/v1/write" {
		http.NotFound(w, req)
		return
	}
	if r.down.Load() {
		io.Copy(io.Discard, req.Body)
		http.Error(w, "benche2e: receiver down", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	v2 := strings.Contains(req.Header.Get("Content-Type"), "io.prometheus.write.v2.Request")
	bp, _ := r.pool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer r.pool.Put(bp)
	n, err := snappy.DecodedLen(body)
	if err == nil {
		if cap(*bp) < n {
			*bp = make([]byte, n)
		}
		*bp, err = snappy.Decode((*bp)[:cap(*bp)], body)
	}
	var samples, histograms int64
	if err == nil {
		samples, histograms, err = countSamples(*bp, v2)
	}
	if err != nil {
		r.errors.Add(1)
		http.Error(w, fmt.Sprintf("decode: %v", err), http.StatusBadRequest)
		return
	}
	r.requests.Add(1)
	if v2 {
		r.v2.Add(1)
		w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", strconv.FormatInt(samples, 10))
		w.Header().Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.FormatInt(histograms, 10))
		w.Header().Set("X-Prometheus-Remote-Write-Exemplars-Written", "0")
	}
	r.wireBytes.Add(int64(len(body)))
	r.samples.Add(samples + histograms)
	w.WriteHeader(http.StatusNoContent)
}

// countSamples counts the samples and histograms of a decoded request body. In 1.0 the time
// series are field 1 of the request, samples field 2 and histograms field 4 of a series; in 2.0
// the series are field 5, samples field 2, histograms field 3.
func countSamples(b []byte, v2 bool) (samples, histograms int64, err error) {
	seriesField, histField := protowire.Number(1), protowire.Number(4)
	if v2 {
		seriesField, histField = 5, 3
	}
	err = eachField(b, func(num protowire.Number, ts []byte) error {
		if num != seriesField {
			return nil
		}
		return eachField(ts, func(num protowire.Number, _ []byte) error {
			switch num {
			case 2:
				samples++
			case histField:
				histograms++
			}
			return nil
		})
	})
	return samples, histograms, err
}

// eachField calls fn with every length-delimited field of the message b; other fields are
// skipped.
func eachField(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if err := fn(num, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
