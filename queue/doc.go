// Package queue ships one WAL to one remote-write endpoint: it tails the WAL from the endpoint's
// durable position with a wal.Reader, routes samples to shards by series ref, batches them into
// requests for a Sender (package shipper implements it; queue never imports shipper), retries,
// splits or drops by the behaviour of the Sender's errors, and makes the delivered position
// durable. It imports only the internal package wal.
//
// Labels travel encoded, never per sample: the WAL keeps the labels of each series in memory as
// remote-write 1.0's labels field (wal.AppendLabels), and a reader in the writer's process
// shares the writer's string (wal.WAL.ShareLabels). Without write relabeling that string is
// what the queue sends (Series.Labels, through wal.Reader.Encoded): a queue keeps no label data
// of its own. With it, the tailer relabels a series at its first sample and the reader keeps the
// encoded outcome beside the series (wal.Reader.Derived; the reader's string itself when the rules
// change nothing) until the series is redefined with other labels or forgotten.
// Items, batches and requests carry the string; the Sender copies it into the request as it is
// (1.0) or reads the names and values from it (2.0). The dead-letter log decodes it back to
// labels.
//
// # Delivery guarantee
//
// Acknowledgement. A WAL record (one scrape) is delivered when each of its samples was either
// acknowledged by the receiver (Send returned nil, a 2xx) or dropped with a reason. The samples
// of one record go to many shards; the queue counts the outstanding samples of every record in
// read order, and the delivered position is the end of the longest prefix of delivered records.
//
// Position. The delivered position, with the cumulative Delivered and Dropped-by-reason
// counters, is committed with wal.CommitPosition (tmp, fsync, rename, fsync dir) every
// CommitInterval (1s) and when Run returns. After a crash the queue resumes from the last
// commit: samples acknowledged after it are sent again (receivers accept exact duplicates of a
// series' newest sample), none is skipped. A missing position file starts at the oldest
// retained segment (logged); a torn or garbled one too, with the counters at zero (warning).
// The granularity is the record: a record partly acknowledged before a crash is sent again
// whole. Re-sent samples that the receiver already holds are accepted by Thanos receive (an
// exact duplicate of a series' newest sample is silent; an older one gets a 409 while the rest
// of the request is written). A plain Prometheus receiver without an out-of-order window instead
// refuses the whole request with 400 when it holds newer samples of one of its series; the shard
// then bisects the request down to single samples, so that only the re-sent samples the receiver
// already holds are refused (and counted as "http_400"), never an undelivered one beside them.
//
// Deferral. A sample the receiver refuses because it is too old for its head is deferred, not
// dropped: the error's TooOld() (shipper: a 409 unless its body names only out-of-order or
// duplicate samples, a 400 naming out-of-bounds or too-old samples) makes the shard bisect the
// request like a timing 400 (Thanos wrote the valid samples of a 409'd request: sending them again
// is harmless), and a single sample still refused so is stored in the consumer's dead-letter log
// (wal.DeferredLog, <wal>/deferred/<consumer>/, fsynced) and only then settled as deferred: the
// position never passes a refused sample before it is durable (a failed store is retried with
// backoff, the samples unsettled). Samples at or before the newest timestamp refused so are
// deferred without a request (the head's lower bound only moves forward). A single sample a 409
// refuses only as out of order or duplicate (AlreadyHeld) is held by the receiver already, written
// by an earlier request, and counts as delivered (collector_queue_samples_already_held_total).
// Deferred samples are counted in Stats.Deferred, the position file and
// collector_queue_samples_deferred_total; package queue/backfill delivers them as TSDB blocks into
// the hub's bucket (SealDeferred seals the segment being written for it). A replay keeps them
// too, in the dead-letter log under its own name (replay-<endpoint>), and says so in its
// summary; `collector backfill` delivers them like the agent's. Only a queue with NoCommit (no
// position file, used by tests and benchmarks) has no dead-letter log and drops them with the
// error's reason.
// appended = Delivered + Deferred + Dropped + what lies after the position.
//
// Order. Each series is routed to one shard (ref modulo the shard count). A shard has one
// bounded channel and at most one request in flight, and it retries a failed request (or the
// halves of a split one, left first) before it sends anything else, so the samples of a series
// reach the receiver in WAL order, strictly increasing in time (the WAL refuses older samples).
// The shard count changes only at a drained boundary: the tailer stops, every shard sends all it
// holds until acknowledged or dropped, and only then start the shards of the new count.
//
// Back-pressure. The tailer routes the samples of one record from the reader straight into
// per-shard chunks (one copy, 40 bytes per sample) and waits for room in the shards' channels
// (Capacity samples each, in chunks of MaxSamplesPerSend). Memory is therefore bounded by
// MaxShards × (Capacity + MaxSamplesPerSend) samples plus one record and the series labels the
// reader keeps (none of its own in the agent: the reader shares the writer's label data through
// wal.WAL.ShareLabels, and only relabeled series have a string of the queue's), whatever the
// backlog on disk (BenchmarkHeapBacklog: the same heap within 10% for 100 k and 10 M samples of
// backlog). Since all shards are fed from one reader in WAL order, no shard runs ahead of
// another by more than its buffer: a
// backlog is replayed oldest first across all series, which keeps it inside Thanos' out-of-bounds
// window as long as possible.
//
// Retries. A recoverable failure (the error's Recoverable() is true, or it implements none of
// the classification interfaces) is retried forever with a per-shard exponential backoff
// (MinBackoff 30ms doubling to MaxBackoff 30s, ±20% jitter); a Retry-After takes precedence,
// capped at MaxRetryAfter (5m). The shipper reports as recoverable every failure about the
// request, the credentials or the endpoint: network errors, and by default 401, 403, 404, 405,
// 407, 408, 411, 415, 421, 425, 429, 431 and 5xx (a revoked certificate, a wrong tenant or path
// costs time, never data). Resharding is held back while requests fail. While a shard retries,
// collector_queue_failing_shards{reason} counts it; the endpoint is logged as failing once per
// new reason and as recovered once, when no shard fails any longer.
//
// Drops. Nothing leaves the queue unaccounted. A sample is dropped, and counted in
// collector_queue_samples_dropped_total{reason} and in the position file, only when:
//   - the receiver refused its request with a 400 about the request (Timing() false): the
//     batch is dropped without being sent again, as the remote-write specification asks:
//     "http_400";
//   - the receiver refused it alone with a 400 about timing that is not about its age (Timing()
//     true, TooOld() false: out of order, duplicate sample for timestamp). Such a 400 (Prometheus'
//     receiver, which rolls the whole request back, against samples re-sent after a crash) is
//     bisected down to single samples, so that only the samples it refuses themselves are
//     dropped: "http_400";
//   - the receiver refused its request with another 4xx or 5xx left out of the shipper's retry
//     set (--to-upload-retry-on-status): the error's Reason(), "http_<status>", else
//     "permanent";
//   - the receiver refused it for size (413) alone in a request after splitting down to one
//     sample: "too_large";
//   - it is older than SampleAgeLimit when it is sent (0, the default, disables this): "too_old";
//   - its series ref has no labels in the WAL: "unknown_series" (only after corruption cut its
//     Series record or the checkpoint: wal/FORMAT.md).
//   - the endpoint's write_relabel_configs (Options.WriteRelabelConfigs) drop its series, or remove
//     its metric name: "write_relabel". This is the user's configuration, not a loss; it is
//     decided once per series (cached by ref) and never sent.
//
// Samples outside MinTime/MaxTime (replay) are skipped and counted as filtered, not dropped. A
// corrupted WAL segment is skipped from the corruption on (the reader's CorruptionError); this
// loss is counted in collector_queue_wal_segments_skipped_total, since the samples it held cannot
// be counted.
//
// Shutdown. Run's context starts it: no further record is read, the record in hand is handed to
// the shards, and they keep sending what they hold while requests succeed, for up to
// FlushDeadline (15s) or until Abort. The flush ends early when the endpoint fails: at once when
// its last request failed recoverably, else at the first recoverable failure during the flush
// (a dead hub would only hold the restart back; everything is in the WAL). Then requests in
// flight are cancelled, the position is committed and Run returns nil (an error when the commit
// fails). A graceful stop that finishes within the deadline leaves nothing to send twice; what
// was not acknowledged stays in the WAL and is sent after the restart. With StopAtEnd, Run
// returns nil once everything up to the end of the WAL is settled.
//
// Several endpoints are several Queues over the same WAL, each with its own Consumer name and
// so its own position; they do not wait for each other.
package queue
