package queue

import (
	"fmt"

	"github.com/prometheus/prometheus/prompb"

	"github.com/collector-dev/collector/wal"
)

// decodeLabels returns the labels of an encoding written by wal.AppendLabels (Series.Labels) as
// prompb labels, for the rare paths that need them (the dead-letter log). The strings share
// enc's memory.
func decodeLabels(enc string) ([]prompb.Label, error) {
	var out []prompb.Label
	err := wal.RangeLabels(enc, func(name, value string) {
		out = append(out, prompb.Label{Name: name, Value: value})
	})
	return out, err
}

// toPrompb returns series as prompb time series (labels decoded, samples copied).
func toPrompb(series []Series) ([]prompb.TimeSeries, error) {
	out := make([]prompb.TimeSeries, len(series))
	for i, s := range series {
		ls, err := decodeLabels(s.Labels)
		if err != nil {
			return nil, fmt.Errorf("series %d: %w", i, err)
		}
		samples := make([]prompb.Sample, len(s.Samples))
		for j, smp := range s.Samples {
			samples[j] = prompb.Sample{Timestamp: smp.Timestamp, Value: smp.Value}
		}
		out[i] = prompb.TimeSeries{Labels: ls, Samples: samples}
	}
	return out, nil
}
