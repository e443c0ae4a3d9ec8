// Package backfill delivers the samples a receiver refused as too old for its head (deferred by
// package queue into a dead-letter log, wal.DeferredLog) by writing them as Prometheus TSDB
// blocks and uploading them to the hub's object storage, where a Thanos store gateway serves
// them. It imports only the internal package wal.
//
// # Blocks
//
// A pass reads the sealed segments of one dead-letter directory (wal.DeferredSegments), cuts
// their samples into windows of Options.BlockDuration (2h, aligned like Prometheus' and Thanos'
// level-1 blocks) and writes one block per window as Prometheus' compactor writes a level-1
// block: series sorted by labels, samples of a series sorted by time, one sample per timestamp,
// XOR chunks of at most 120 samples (tsdb/chunks), an index in format 2 (tsdb/index), built in
// a staging directory and renamed into place. It does not use the tsdb package's block writer,
// whose head would cost memory per series and whose package links Prometheus' configuration and
// Google's clients (gRPC) into the binary. Its meta.json is Prometheus' (ulid, minTime,
// maxTime exclusive, stats, compaction level 1, version 1) plus the section Thanos reads: version 1,
// labels (Options.ExternalLabels and, with Options.ReplicaLabel, a value unique to the block),
// downsample resolution 0, source "collector-backfill", and the files with their sizes.
//
// # What is relied on
//
// Thanos' compactor groups blocks by their external labels and resolution and halts on
// overlapping blocks in one group unless vertical compaction is on. A block whose replica label
// value is its own ULID is a group of its own: it never overlaps the receiver's blocks (whose
// labels carry the receiver's replica) nor another backfill's, whatever their time ranges.
// Queries see it beside the receiver's data as one series when the query's
// --query.replica-label names the replica label, and the external labels are otherwise the
// receiver's (its tenant label, e.g. tenant_id). Use --deduplication.func=chain on the query so
// that every sample of each replica is kept (the default penalty algorithm may skip samples next
// to where it switches replicas).
//
// # Resumability and crash safety
//
// The pass is recorded in <dead-letter dir>/backfill.json (wal.BackfillState, written durably):
// first the segments and the blocks built under <dead-letter dir>/blocks, then each upload. The
// segments are removed only after every block of the pass was uploaded (index and chunks first,
// meta.json last), and the samples then count as backfilled. A pass stopped anywhere resumes:
// uploaded blocks are skipped, the rest uploaded again (overwriting a partial upload). If a
// block built but not uploaded is gone, the pass is planned again from the segments (blocks
// already uploaded are uploaded again under new ULIDs: duplicates, which queries merge). Passes
// over one directory exclude each other (wal.LockBackfill); a running agent keeps appending to a
// segment of its own, which a pass leaves for the next one until the agent seals it
// (queue.Queue.SealDeferred, or its stop).
package backfill
