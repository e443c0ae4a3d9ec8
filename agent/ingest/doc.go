// Package ingest is the hot path from a federate response (or recording-rule results) to one
// WAL scrape: it parses the body as it streams, applies the seeds' label transforms
// (TransformConfig), and appends the whole body in one wal.Appender.Commit, or nothing
// (Ingester). It owns the text parser, the protobuf path, a source's relabeling, the series cache
// and the anonymization.
//
// It imports wal and nothing else internal. It must not import agent: the agent builds its
// TransformConfig from a source's configuration and maps IngestError reasons onto the scrape
// loop's failure reasons. cmd/collector uses it only to parse flags (ParseLabelPair, ParseRename)
// and for a default (DefaultIngestOptions).
//
// # Ingest: from a federate body to one WAL scrape
//
// Ingester.Ingest reads the body line by line from a bounded buffer (IngestOptions.MaxLineBytes,
// 1 MiB by default: a longer line is a parse error), never holding the whole body. Each sample
// line is split into its series (`name{l="v",...}`) and its value and timestamp. The series
// bytes are looked up in a per-source cache (128-bit hash of the raw bytes → WAL ref); a known
// series costs two hashes and, since /federate repeats its order, usually a sequential guess
// instead of a map probe: no label parsing, no transforms, no label hashing. An unknown series
// is parsed, transformed and resolved in the WAL at once (wal.Appender.Ref creates it in the
// WAL's memory, so its labels are kept once, in the WAL's form); at the end of a body that parsed
// completely the new series go into the cache and the scrape is committed in one
// wal.Appender.Commit. The cache holds the WAL refs it stores (wal.WAL.HoldSeries, released on
// eviction and purge) and a parse opens its scrape (wal.Appender.Begin) before the first lookup,
// so a cached ref always resolves: if truncation deleted the series' definition meanwhile, the WAL
// declares it again with the sample (wal/FORMAT.md, "Series across truncation").
//
// Invariant 1 (a scrape is appended whole or not at all): any error (a read error of the body,
// including the caller's size limit, IngestOptions.SampleLimit, a parse error anywhere, a
// truncated last line, a failed commit) rolls the appender back and returns an *IngestError with
// a Reason (parse, read, too_large, content_type, wal, disk_full) and the line. Nothing of the
// body reaches the WAL's files. The series it created in the WAL's memory are not written; the
// next truncation that finds them unused forgets them (wal: orphan series), and a later scrape
// that has them finds them there. A read, parse or size error adds no series to the cache; a failed wal.Appender.Commit (reasons wal, disk_full) comes after the
// cache took the scrape's new series, and they stay there: their refs are held in the WAL, which
// writes their Series records with the first commit that succeeds (a failed Commit leaves them
// undeclared). [TestIngestFailedCommitKeepsCachedSeriesUsable]
//
// # Transforms
//
// In the seeds' order, per series:
//
//  1. --label: label pairs with an empty name or value are skipped (an empty value is an absent
//     label); each --label overrides a label of the same name or is added. TransformConfig
//     .ClusterID (--id) is added as the label clusterID, unless a --label sets clusterID.
//  2. --rename: exact metric name.
//  3. elide: the named labels are removed (RHACM's default: prometheus, prometheus_replica,
//     managed_cluster). Series that become equal are not merged: the WAL keeps the first sample
//     per timestamp and counts the others as duplicate.
//  4. drop invalid: a metric name that is empty or longer than 255 bytes drops the sample
//     (invalid_name); a label whose name or value is longer than 255 bytes is stripped and the
//     sample kept, as the seeds do (counted in collector_scrape_labels_stripped_total).
//  5. per sample: no timestamp drops it (no_timestamp; /federate always writes one); older than
//     now-MaxAge (24h) drops it (too_old); later than now+FutureTolerance is clamped to now
//     (collector_scrape_timestamps_clamped_total). The seeds clamp every future timestamp; the
//     5m tolerance keeps a sample federated twice one sample instead of two with made-up
//     timestamps (see DefaultFutureTolerance).
//  6. label set: duplicate names keep the first, __name__ is reserved, labels are sorted.
//  7. anonymize: the values of the named labels (never __name__, also values set by --label)
//     become base64url(sha256(salt+value)[:9]) unpadded, 12 characters, byte-compatible with the
//     seeds; empty values stay absent.
//
// NaN is a value like any other and is kept. A stale marker (a specific NaN) cannot be written
// in the text format, and /federate never emits one; if one arrives through the protobuf format
// or a recording rule it is dropped and counted (stale_marker): collector forwards samples, and
// ending a series at the hub is the receiver's own staleness handling. Native histograms (only
// in the protobuf format) are dropped and counted (native_histogram): the WAL holds floats.
//
// Relabeling. TransformConfig.RelabelConfigs (a source's relabel_configs) run on a series as read,
// before the transforms, and MetricRelabelConfigs after them, with Prometheus' model/relabel.
// Both run on the slow path only, once per series: the cache keeps the outcome, a drop included,
// so a series they drop is counted (relabel, metric_relabel) at every scrape without being
// relabeled again.
//
// Metrics (registered on the registerer given to NewIngester, which the agent wraps with
// cluster_id and source): the seeds' gauges federate_samples (samples in the last body, before
// transforms) and federate_filtered_samples (dropped by the transforms), and
// collector_scrape_samples_appended_total, collector_scrape_samples_dropped_total{reason},
// collector_scrape_timestamps_clamped_total, collector_scrape_labels_stripped_total and
// collector_scrape_series_cache_size.
//
// # The text format, and why not protobuf
//
// The parser (textParser) accepts what Prometheus' textparse accepts and yields the same samples
// (FuzzParseDifferential), but rejects a few things textparse lets through and no encoder
// writes: a body not ending in a newline (a truncated body), NUL bytes, raw newlines in quoted
// strings, duplicate label names, invalid UTF-8 in quoted names, whitespace before a sample.
//
// FederateAccept asks for the text format with UTF-8 names unescaped. Measured on one core
// (BenchmarkIngest: 200k OpenShift-like series in memory, 357 bytes per line in text, 343 in
// protobuf: the protobuf body is only 4% smaller, label strings dominate both; on a shared
// 2-vCPU machine, so absolute rates are lower bounds; the steady-state rate is quoted in one place,
// the README's Performance table, and the other paths are several times slower):
//
//	text, Ingest, warm cache        see README        0.0001 allocs/sample (into the WAL)
//	text, Ingest, cold cache        0.32 M samples/s  2 allocs/sample (new labels, WAL refs)
//	text, textparse alone           0.59 M samples/s  2 allocs/sample (parse only)
//	protobuf, Ingest via textparse  0.33 M samples/s  2.2 allocs/sample (no cache)
//	protobuf, expfmt decode alone   0.43 M samples/s  65 allocs/sample (the seeds' decoder)
//
// Prometheus answers /federate in the format the Accept header asks for, so the protobuf path
// serves only a server (or proxy) that ignores it. It is as safe as the text path: it streams one
// delimited message (metric family) at a time, each at most 64 MiB (too_large beyond) and read as
// its bytes arrive, through the same limit on the decompressed body, so a gzip bomb costs the
// memory of what the limit lets through, never what a length prefix claims.
//
// Gzip on the wire costs more than the whole ingest: BenchmarkIngest/steady-gzip (the body
// gzipped at level 6, inflated by klauspost/compress as the scrape does) takes about 1,230
// ns/sample against 420 for the plain body, so the scrape asks for an uncompressed body by
// default (--from-compression none; the numbers that chose it are in docs/configuration.md).
//
// Values are read by fastFloat, which takes the forms strconv.FormatFloat(v, 'g', -1, 64)
// writes (what /federate writes), exponents included, and returns what strconv.ParseFloat
// returns, bit for bit (FuzzFastFloat, TestDivPow10): every value of at most 15 significant
// digits between 1e-7 and 1e15 and every shortest form between 1e-3 and 1e16; the others (NaN,
// Inf, very large or small values with many digits) take strconv.ParseFloat. Timestamps are
// read in the same pass, 8 digits at a time. The series hash is hash/maphash (AES-based, seeded),
// the cheapest keyed hash at hand: about 25 ns for a 350-byte series, against 40 for wyhash
// written in Go and 140 for AES-GCM's GHASH (a one-pass 128-bit hash in Go measured no cheaper
// than two maphash calls). A known series in body order takes one call, verified by its position
// and length; a series out of order or new takes two (seriesCache says why that is safe).
//
// Protobuf decoding must build every label of every sample before anything can be looked up, so
// it cannot use the raw-bytes cache; the text format at steady state costs one pass over bytes
// that are read anyway. Protobuf bodies are still ingested (via textparse, one metric family at a
// time, as above), for a server that ignores the Accept header.
//
// Memory (BenchmarkIngestMemory; the heap per known series is quoted in the README's Performance
// table): the cache's share is about 70 bytes per known series (cache-bytes/series), the rest is
// the WAL's series state, labels included, and the reused per-call buffers (the appender's
// samples, the 1 MiB line buffer). A steady-state scrape allocates almost nothing: 17
// allocations and about 1 KiB for 200k samples.
package ingest
