package shipper

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics of one Client. The agent wraps the registerer with the endpoint's labels; a registerer
// must not be shared by two Clients unwrapped (registration would panic on the duplicates).
type metrics struct {
	requests        *prometheus.CounterVec
	forwardRequests *prometheus.CounterVec // the seed's name, kept for existing alerts
	duration        prometheus.Histogram
	sentBytes       prometheus.Counter
	sentSamples     prometheus.Counter
	lastSuccess     prometheus.Gauge
	protocol        *prometheus.GaugeVec
	templates       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_shipper_requests_total",
			Help: "Remote-write requests by HTTP status code; status_code is \"error\" when no response was received.",
		}, []string{"status_code"}),
		forwardRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "forward_write_requests_total",
			Help: "Remote-write requests by HTTP status code (the metrics-collector name, same values as collector_shipper_requests_total).",
		}, []string{"status_code"}),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "collector_shipper_request_duration_seconds",
			Help:    "Duration of remote-write requests, from sending the request to reading the end of the response.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10), // 5ms .. ~19s
		}),
		sentBytes: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_shipper_sent_bytes_total",
			Help: "Compressed request body bytes of the remote-write requests that got a response.",
		}),
		sentSamples: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_shipper_sent_samples_total",
			Help: "Samples in remote-write requests answered with 2xx.",
		}),
		lastSuccess: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_shipper_last_success_timestamp_seconds",
			Help: "Unix time of the last remote-write request answered with 2xx.",
		}),
		protocol: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collector_shipper_protocol",
			Help: "1 for the remote-write version the endpoint is sent (1.0 or 2.0), 0 for the other.",
		}, []string{"version"}),
		templates: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_shipper_request_templates_total",
			Help: "Remote-write 1.0 requests by how they were compressed: \"hit\" rendered from the template of an earlier request over the same series, \"miss\" compressed, \"built\" compressed and kept as a template.",
		}, []string{"result"}),
	}
}

// request counts one attempt under statusCode ("200", "503", "error").
func (m *metrics) request(statusCode string, seconds float64) {
	m.requests.WithLabelValues(statusCode).Inc()
	m.forwardRequests.WithLabelValues(statusCode).Inc()
	m.duration.Observe(seconds)
}
