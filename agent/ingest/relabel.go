package ingest

import (
	"errors"
	"fmt"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

// Reasons for series dropped by a source's relabeling: values of the reason label of
// collector_scrape_samples_dropped_total. They are the user's configuration, not a loss.
const (
	// DropRelabel: the source's relabel_configs dropped the series (or removed its name).
	DropRelabel = "relabel"
	// DropMetricRelabel: the source's metric_relabel_configs dropped the series (or removed its
	// name).
	DropMetricRelabel = "metric_relabel"
)

// ValidateRelabelConfigs checks rules as Prometheus 3 does (UTF-8 label names, its default) and
// sets their validation scheme, which relabeling needs. key names the list in errors.
func ValidateRelabelConfigs(key string, cfgs []*relabel.Config) error {
	var errs []error
	for i, c := range cfgs {
		if c == nil {
			errs = append(errs, fmt.Errorf("%s[%d]: empty rule", key, i))
			continue
		}
		if err := c.Validate(model.UTF8Validation); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", key, i, err))
		}
	}
	return errors.Join(errs...)
}

// relabelSeries applies cfgs to lset with lb (scratch). It returns false when a rule drops the
// series or the result has no metric name.
func relabelSeries(lb *labels.Builder, lset labels.Labels, cfgs []*relabel.Config) (labels.Labels, bool) {
	lb.Reset(lset)
	if !relabel.ProcessBuilder(lb, cfgs...) {
		return labels.EmptyLabels(), false
	}
	out := lb.Labels()
	if out.Get(labels.MetricName) == "" {
		return labels.EmptyLabels(), false
	}
	return out, true
}
