package main

import (
	"os"
	"testing"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat        string
		wantUser, wantSys float64
	}{
		{"plain", "4242 (collector) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 100 0 0", 2.5, 0.75},
		{"parens and spaces in the name", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 0 0 0", 0.01, 0.02},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, sys, err := parseStatCPU([]byte(tc.stat))
			if err != nil {
				t.Fatal(err)
			}
			if user != tc.wantUser || sys != tc.wantSys {
				t.Errorf("got user %v, system %v; want %v, %v", user, sys, tc.wantUser, tc.wantSys)
			}
		})
	}
	if _, _, err := parseStatCPU([]byte("7 (x) S 1")); err == nil {
		t.Error("a short line parsed")
	}
}

func TestParseStatusMemory(t *testing.T) {
	status := "Name:\tcollector\nVmPeak:\t 2000000 kB\nVmHWM:\t  409600 kB\nVmRSS:\t  204800 kB\nThreads:\t12\n"
	hwm, rss, err := parseStatusMemory([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if hwm != 400<<20 || rss != 200<<20 {
		t.Errorf("VmHWM %d, VmRSS %d; want %d, %d", hwm, rss, 400<<20, 200<<20)
	}
	if _, _, err := parseStatusMemory([]byte("Name:\tx\n")); err == nil {
		t.Error("a status without memory lines parsed")
	}
}

// TestReadUsageSelf reads this process' own usage: the /proc files have the layout the parsers
// expect.
func TestReadUsageSelf(t *testing.T) {
	u, err := readUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.PeakRSS <= 0 || u.RSS <= 0 || u.PeakRSS < u.RSS || u.SysSeconds < 0 || u.SysSeconds > u.CPUSeconds {
		t.Errorf("implausible usage %+v", u)
	}
}

func TestCountSamples(t *testing.T) {
	v1 := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			{Labels: []prompb.Label{{Name: "__name__", Value: "a"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: 1}, {Value: 2, Timestamp: 2}}},
			{Labels: []prompb.Label{{Name: "__name__", Value: "b"}}, Samples: []prompb.Sample{{Value: 0, Timestamp: 0}}, Histograms: []prompb.Histogram{{Timestamp: 3}}},
		},
		Metadata: []prompb.MetricMetadata{{MetricFamilyName: "a", Help: "h"}},
	}
	b, err := v1.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, h, err := countSamples(b, false)
	if err != nil || s != 3 || h != 1 {
		t.Errorf("1.0: %d samples, %d histograms, %v; want 3, 1, nil", s, h, err)
	}
	v2 := &writev2.Request{
		Symbols: []string{"", "__name__", "a"},
		Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Value: 1, Timestamp: 1}, {Value: 0, Timestamp: 0}}, Histograms: []writev2.Histogram{{Timestamp: 3}}},
		},
	}
	if b, err = v2.Marshal(); err != nil {
		t.Fatal(err)
	}
	s, h, err = countSamples(b, true)
	if err != nil || s != 2 || h != 1 {
		t.Errorf("2.0: %d samples, %d histograms, %v; want 2, 1, nil", s, h, err)
	}
	if _, _, err := countSamples([]byte{0x0a, 0x05, 0x01}, false); err == nil {
		t.Error("a truncated request counted")
	}
}
