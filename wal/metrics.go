package wal

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics of one WAL. Register per cluster ID with prometheus.WrapRegistererWith.
type metrics struct {
	samplesAppended prometheus.Counter
	seriesCreated   prometheus.Counter
	samplesSkipped  *prometheus.CounterVec
	bytesWritten    prometheus.Counter
	commitsFailed   prometheus.Counter
	fsyncDuration   prometheus.Histogram
	fsyncFailures   prometheus.Counter
	segments        prometheus.Gauge
	sizeBytes       prometheus.Gauge
	series          prometheus.Gauge
	truncations     prometheus.Counter
	samplesEvicted  *prometheus.CounterVec
	repairs         *prometheus.CounterVec
	repairedBytes   prometheus.Counter
	samplesLost     *prometheus.CounterVec
	quarantined     *prometheus.CounterVec
	segmentsMissing prometheus.Counter
	positionErrors  *prometheus.CounterVec
	maxSizeBytes    prometheus.Gauge
	undelivered     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		samplesAppended: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_wal_samples_appended_total",
			Help: "Samples written to the WAL.",
		}),
		seriesCreated: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_wal_series_created_total",
			Help: "Series records written to the WAL for series it did not know.",
		}),
		samplesSkipped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_wal_samples_skipped_total",
			Help: "Samples not appended, by reason: duplicate (same timestamp as the last one of the series), out_of_order (older), unknown_series.",
		}, []string{"reason"}),
		bytesWritten: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_wal_bytes_written_total",
			Help: "Bytes of records (before wlog framing and compression) written to the WAL.",
		}),
		commitsFailed: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_wal_commits_failed_total",
			Help: "Scrapes whose append failed; nothing of them was kept.",
		}),
		fsyncDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "collector_wal_fsync_duration_seconds",
			Help:    "Duration of WAL fsyncs.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		fsyncFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_wal_fsync_failures_total",
			Help: "Failed fsyncs of WAL segments. Under the scrape policy the scrape fails and is cut; either way the writer starts a new segment.",
		}),
		segments: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_wal_segments",
			Help: "Segments retained in the WAL.",
		}),
		sizeBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_wal_size_bytes",
			Help: "Bytes on disk of the WAL's segments, the open one included (the checkpoint is not counted, as by the size cap).",
		}),
		series: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_wal_series",
			Help: "Series the WAL knows (referenced by a retained segment).",
		}),
		truncations: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_wal_truncations_total",
			Help: "Truncations that deleted segments.",
		}),
		samplesEvicted: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_wal_samples_evicted_total",
			Help: "Undelivered samples deleted by the size or age cap, per consumer and reason (max_size, max_age).",
		}, []string{"consumer", "reason"}),
		repairs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_wal_repairs_total",
			Help: "Repairs made on open, by kind: torn_tail (a record cut at the end of the newest segment) or corruption (bad bytes anywhere else).",
		}, []string{"kind"}),
		repairedBytes: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_wal_repaired_bytes_total",
			Help: "Bytes cut from segments by repairs (kept under corrupt/ for inspection).",
		}),
		samplesLost: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_wal_samples_lost_total",
			Help: "Samples removed from the WAL before the consumer delivered them, by reason: torn_tail, corruption (cut by a repair), segment_gap, not_a_file (moved to corrupt/). A lower bound: bytes that no longer decode are not counted.",
		}, []string{"consumer", "reason"}),
		quarantined: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_wal_quarantined_total",
			Help: "Entries moved whole from the WAL directory to corrupt/ on open, by reason: segment_gap (a segment across a gap too wide to bridge), not_a_file (a directory or other entry under a segment's name).",
		}, []string{"reason"}),
		segmentsMissing: f.NewCounter(prometheus.CounterOpts{
			Name: "collector_wal_segments_missing_total",
			Help: "Segments found missing in the sequence on open and bridged with empty segments; their samples are lost and cannot be counted.",
		}),
		positionErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "collector_wal_position_errors_total",
			Help: "Consumer positions found unusable on open, by reason: unreadable (torn, garbled, bad checksum: restart at the oldest segment), past_end (restart at the oldest segment), mid_record (back to the record boundary before it).",
		}, []string{"consumer", "reason"}),
		maxSizeBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "collector_wal_max_size_bytes",
			Help: "The WAL's size cap (--wal-max-size); 0 when there is none.",
		}),
		undelivered: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "collector_wal_undelivered_bytes",
			Help: "Bytes of segments after each registered consumer's durable position, as of the last truncation.",
		}, []string{"consumer"}),
	}
}
