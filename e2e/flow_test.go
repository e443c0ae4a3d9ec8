package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"testing"
	"time"
)

// anonymized is the seeds' pseudonym of value (telemeter pkg/metricfamily/anonymize.go), computed
// here independently of package agent.
func anonymized(salt, value string) string {
	sum := sha256.Sum256([]byte(salt + value))
	return base64.RawURLEncoding.EncodeToString(sum[:9])
}

// TestFlow: the series selected by match[] arrive at the receiver with the transforms applied:
// clusterID from --id, --label, --rename, the source's external label prometheus elided by
// default, --anonymize-labels with a salt; series outside match[] do not arrive, and the samples'
// timestamps and values are the source's.
func TestFlow(t *testing.T) {
	t.Parallel()
	tails := &logTails{}
	src := startPrometheus(t, tails, "source", promConfig{Config: sourceConfig})
	rcv := startPrometheus(t, tails, "receiver", promConfig{Config: receiverConfig, Receiver: true})
	const (
		id   = "e2e-flow"
		salt = "e2e-salt"
	)
	col := newCollector(t, tails, "collector", id,
		"--from", src.URL(),
		"--match", `{job="prometheus"}`,
		"--to-upload", rcv.WriteURL(),
		"--interval", "1s",
		"--batch-send-deadline", "200ms",
		"--label", "environment=e2e,team=observability",
		"--rename", "prometheus_build_info=e2e_build_info",
		"--anonymize-labels", "instance",
		"--anonymize-salt", salt,
	)
	col.start()

	instance := src.addr() // the source scrapes itself: instance="127.0.0.1:<port>"
	cluster := fmt.Sprintf(`clusterID=%q`, id)
	// Data flows: the renamed series and the source's own series are there, up with a few samples.
	eventually(t, 60*time.Second, "renamed and plain series at the receiver", func() error {
		for _, q := range []string{
			fmt.Sprintf(`count(e2e_build_info{%s})`, cluster),
			fmt.Sprintf(`count(up{%s})`, cluster),
			fmt.Sprintf(`count(prometheus_tsdb_head_series{%s})`, cluster),
		} {
			n, err := scalarQuery(rcv.URL(), q, time.Time{})
			if err != nil {
				return err
			}
			if n != 1 {
				return fmt.Errorf("%s = %v, want 1", q, n)
			}
		}
		ss, err := rawSamples(rcv.URL(), fmt.Sprintf(`up{%s}[10m]`, cluster), time.Time{})
		if err != nil {
			return err
		}
		if n := len(first(ss)); n < 3 {
			return fmt.Errorf("%d samples of up, want 3 or more", n)
		}
		return nil
	})

	series, err := vectorLabels(rcv.URL(), fmt.Sprintf(`{%s}`, cluster))
	if err != nil {
		t.Fatal(err)
	}
	if len(series) < 50 {
		t.Fatalf("%d series of cluster %s at the receiver, want the source's own metrics (hundreds)", len(series), id)
	}
	wantInstance := anonymized(salt, instance)
	for _, ls := range series {
		name := ls["__name__"]
		checks := []struct {
			label, want string
		}{
			{"clusterID", id},
			{"environment", "e2e"},
			{"team", "observability"},
			{"job", "prometheus"},      // match[] selected only this job
			{"prometheus", ""},         // the source's external label, elided by default
			{"instance", wantInstance}, // anonymized with the salt
		}
		for _, c := range checks {
			if got := ls[c.label]; got != c.want {
				t.Errorf("series %v: label %s = %q, want %q", ls, c.label, got, c.want)
			}
		}
		if name == "prometheus_build_info" {
			t.Errorf("series %v: --rename prometheus_build_info=e2e_build_info not applied", ls)
		}
		if t.Failed() {
			t.FailNow() // one series says enough
		}
	}

	// Timestamps and values are the source's: every sample of up at the receiver is a raw sample
	// of up{job="prometheus"} at the source.
	now := time.Now()
	got, err := rawSamples(rcv.URL(), fmt.Sprintf(`up{%s}[10m]`, cluster), now)
	if err != nil {
		t.Fatal(err)
	}
	want, err := rawSamples(src.URL(), `up{job="prometheus"}[10m]`, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(want) != 1 {
		t.Fatalf("up: %d series at the receiver, %d at the source; want 1 and 1", len(got), len(want))
	}
	srcUp := seriesSet{"up": first(want)}
	rcvUp := seriesSet{"up": first(got)}
	if n, ex := missingSamples(rcvUp, srcUp, 5); n > 0 {
		t.Errorf("%d samples of up at the receiver are not the source's: %v", n, ex)
	}
	col.stop(stopTimeout)
}

func first(s seriesSet) []sample {
	for _, v := range s {
		return v
	}
	return nil
}
