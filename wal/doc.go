// Package wal is the on-disk log of one cluster ID: Prometheus tsdb/wlog segments holding
// tsdb/record Series and Samples records, a lock, a durable position per consumer, a checkpoint of
// series definitions, truncation behind the slowest consumer, and size and age caps.
//
// It owns everything below <wal-dir>/<cluster-id>/ and imports nothing internal to collector.
//
// Guarantees (each one tested; the format and the crash-safety assumptions are in FORMAT.md):
//
//   - A scrape (one Appender.Commit) is one Samples record, preceded by at most a few Series
//     records for the series it introduces. A wlog record is checksummed per fragment and never
//     crosses a segment, so after a crash a scrape is either wholly readable or wholly absent.
//   - A sample whose timestamp is not newer than the last one appended for its series is skipped
//     and counted, also right after a restart: the per-series state is rebuilt on Open.
//   - Series refs are stable across restarts and always resolve from any retained position:
//     truncation first writes a checkpoint of the series still referenced.
//   - Segments are deleted only behind every registered consumer's durable position (and after the
//     retention for delivered data), except by the size and age caps, which count every sample they
//     evict per consumer.
//   - Corrupted or torn files never panic: reads stop with a *CorruptionError carrying the segment
//     and the offset, and Open repairs by cutting at the corruption, keeping every segment after it.
package wal
