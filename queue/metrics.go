package queue

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics of one Queue. The agent wraps the registerer with cluster_id and endpoint labels.
type metrics struct {
	samplesRead      prometheus.Counter
	recordsRead      prometheus.Counter
	samplesSent      prometheus.Counter
	samplesRetried   prometheus.Counter
	samplesDropped   *prometheus.CounterVec
	samplesDeferred  prometheus.Counter
	deferErrors      prometheus.Counter
	samplesHeld      prometheus.Counter
	samplesFiltered  prometheus.Counter
	recordsDelivered prometheus.Counter
	requestDuration  prometheus.Histogram
	requestsFailed   *prometheus.CounterVec
	failingShards    *prometheus.GaugeVec
	shards           prometheus.Gauge
	shardsDesired    prometheus.Gauge
	shardsMin        prometheus.Gauge
	shardsMax        prometheus.Gauge
	reshards         prometheus.Counter
	highestRead      prometheus.Gauge
	highestSent      prometheus.Gauge
	pending          prometheus.Gauge
	positionSegment  prometheus.Gauge
	positionOffset   prometheus.Gauge
	lastSend         prometheus.Gauge
	commitErrors     prometheus.Counter
	settleErrors     prometheus.Counter
	segmentsSkipped  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		samplesRead: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_samples_read_total",
			Help: "Samples read from the WAL (a sample read twice after a restart counts twice).",
		}),
		recordsRead: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_records_read_total",
			Help: "Samples records (scrapes) read from the WAL.",
		}),
		samplesSent: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_samples_sent_total",
			Help: "Samples acknowledged by the receiver with a 2xx.",
		}),
		samplesRetried: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_samples_retried_total",
			Help: "Samples in requests that failed recoverably and were sent again.",
		}),
		samplesDropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_queue_samples_dropped_total",
			Help: "Samples deliberately dropped, by reason: the receiver's reason for a permanent refusal (http_400, http_409 ...), too_large, too_old, unknown_series.",
		}, []string{"reason"}),
		samplesDeferred: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_samples_deferred_total",
			Help: "Samples the receiver refused as too old for its head (409, out of bounds), stored in the dead-letter log for backfill; not dropped.",
		}),
		deferErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_defer_errors_total",
			Help: "Failed attempts to store samples refused as too old in the dead-letter log; they stay unsettled and are stored again.",
		}),
		samplesHeld: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_samples_already_held_total",
			Help: "Re-sent samples the receiver refused alone with 409 as out of order or duplicate: it holds them from an earlier request; counted as delivered.",
		}),
		samplesFiltered: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_samples_filtered_total",
			Help: "Samples skipped because they are outside the configured time range (replay).",
		}),
		recordsDelivered: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_records_delivered_total",
			Help: "WAL records whose every sample was acknowledged or dropped.",
		}),
		requestDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "collector_queue_request_duration_seconds",
			Help:    "Duration of Send calls, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}),
		requestsFailed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_queue_requests_failed_total",
			Help: "Failed Send calls, by what the queue did next: retry, split or drop.",
		}, []string{"action"}),
		failingShards: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collector_queue_failing_shards",
			Help: "Shards whose request failed and is being retried, by the failure's reason (http_401, http_503, network ...); 0 when the endpoint accepts requests.",
		}, []string{"reason"}),
		shards: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_queue_shards",
			Help: "Shards running (concurrent requests at most).",
		}),
		shardsDesired: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_queue_shards_desired",
			Help: "Shards the throughput model asks for, before tolerance and clamping.",
		}),
		shardsMin: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_queue_shards_min",
			Help: "Configured minimum of shards.",
		}),
		shardsMax: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_queue_shards_max",
			Help: "Configured maximum of shards.",
		}),
		reshards: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_reshards_total",
			Help: "Changes of the number of shards.",
		}),
		highestRead: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_queue_highest_read_timestamp_seconds",
			Help: "Newest sample timestamp read from the WAL.",
		}),
		highestSent: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_queue_highest_sent_timestamp_seconds",
			Help: "Newest sample timestamp acknowledged by the receiver.",
		}),
		pending: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_queue_samples_pending",
			Help: "Samples read from the WAL and neither acknowledged nor dropped yet.",
		}),
		positionSegment: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_queue_position_segment",
			Help: "Segment of the delivered position (everything before it is acknowledged or dropped).",
		}),
		positionOffset: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_queue_position_offset_bytes",
			Help: "Offset in its segment of the delivered position.",
		}),
		lastSend: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_queue_last_send_timestamp_seconds",
			Help: "When a request last succeeded.",
		}),
		commitErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_position_commit_errors_total",
			Help: "Failed writes of the position file (retried at the next interval).",
		}),
		settleErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_settle_errors_total",
			Help: "Acknowledgements or drops the tracker could not match to a record it holds (a bug): the position stays behind that record and the queue stops its run with an error.",
		}),
		segmentsSkipped: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_queue_wal_segments_skipped_total",
			Help: "WAL segments whose rest was skipped after corruption; their samples are lost.",
		}),
	}
}
