// Package replay is `collector replay`: it ships what a WAL retains (everything, a time range, or
// what an agent's endpoint has not delivered yet) to one remote-write endpoint, beside a running
// agent or from a copied directory, without moving any position of the agent.
//
// A replay of one cluster's WAL is a queue.Queue run once over the directory (queue.DirSource,
// Options.StopAtEnd) under a position of its own, Options.Name. That position file is the
// replay's lease on the WAL: written before the first sample is read and renewed every
// Options.KeepAlive (also while the endpoint is down), it keeps a running agent from truncating
// what the replay has not read while it is fresh, and it is removed when the replay finishes. An
// interrupted or killed replay leaves it behind, and Options.Resume continues from it with the
// counters it holds.
//
// Run plans each WAL (where to start), counts the samples it will send (the progress' total, and
// all of a dry run's output), ships it, and prints one summary line per cluster to Options.Out.
// It returns nil only when every sample in range was delivered: an *IncompleteError when samples
// were dropped (the receiver refused them) or segments were deleted before the replay read them
// (evicted by a cap, or truncated after its lease expired), an *InterruptedError when an
// interrupt stopped it. A *ConsumerError is a mistake of the caller's options.
//
// Interrupts: the first flushes what is in flight for up to Options.FlushDeadline and stops; the
// second aborts at once. Either way the position stays committed for Resume.
//
// It imports queue and wal and nothing else internal; the sender is any queue.Sender (a
// *shipper.Client in collector). Messages name the flags of `collector replay`, whose engine it
// is. cmd/collector is its only importer.
package replay
