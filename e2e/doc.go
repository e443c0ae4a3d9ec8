// Package e2e holds the end-to-end tests of collector: the real collector binary,
// built once by TestMain, between real Prometheus processes (Debian's prometheus package: `make
// deps`) and servers of the test's own (a deterministic /federate source, a fault-injecting
// proxy in front of the receiver).
//
// What the tests hold the program to is the delivery guarantee of docs/design.md: every sample the
// source served is at the receiver after hub outages, crashes (SIGKILL) and restarts (SIGTERM),
// flaky receivers and replays, or is accounted for with a named reason. The oracle is not the
// collector's WAL: the generated /federate source logs every request it answered (the second,
// the run of the collector that asked, by its bearer token, the status, whether the whole body
// was written, the series and values it held), and oracle_test.go compares that log with the
// raw samples the receiver returns through its query API, series by series and second by
// second, both ways. It says precisely which served scrapes may be missing: one the collector
// counted as a failed scrape, or a run's last scrape that a SIGKILL may have cut off before it
// was appended (nothing was acknowledged then; the next run scrapes the current second again).
// The WAL is read back (package wal; the agent runs with --wal-retention) only for the books
// (appended = delivered + dropped) and for TestReplay, whose subject it is.
//
// The tests, all parallel (TestMain raises -test.parallel: they wait far more than they compute),
// about four minutes together on two cores (six on a loaded machine), TestAccountingAtScale and
// TestCrashLoopSoak the longest:
//
//   - TestFlow: match[], clusterID, --label, --rename, elided and anonymized labels at the receiver
//     (the one test with a real Prometheus as the source).
//   - TestCollectRule: a collect rule against a real source Prometheus fires after its for; its
//     dynamic metrics arrive every evaluate interval (1s) and keep arriving after a restart whose
//     rule has for: 1h (the firing state is saved next to the WAL).
//   - TestHubOutage: the receiver down for 30 s; everything served meanwhile arrives.
//   - TestCrashDuringOutage: SIGKILL and SIGTERM with restarts while the receiver is down.
//   - TestFlakyHub: 503, 429 with Retry-After, connection resets, lost answers; per-series order
//     of the acknowledged samples checked on the wire; also against a plain Prometheus receiver.
//   - TestRemoteWrite2: --to-upload-protocol auto against Prometheus 3 (built from tools/prometheus3
//     by make prometheus3: 2.0 on the wire, read back through its query API), Prometheus 3 taking
//     only 1.0 (415: fallback) and Debian's Prometheus 2.42 (204 without written counts:
//     fallback); a recorder in front of each receiver shows what went on the wire.
//   - TestRemoteWrite2Thanos: the same against thanos receive v0.42.0, which does not speak 2.0
//     (200 without written counts): auto falls back, nothing is lost.
//   - TestReplay: collector replay --all into an empty receiver reproduces the WAL exactly.
//   - TestAccountingAtScale: 50k series every 2 s, seeded SIGKILLs, receiver outages, about 120 s.
//   - TestCrashLoopSoak: SIGKILL every 1 to 5 s for about 100 s while the hub flaps (down, 503,
//     401, slow) and series churn; `collector wal status` after every kill. Longer runs and other
//     seeds: COLLECTOR_E2E_SOAK=10m, COLLECTOR_E2E_SOAK_SEED=n, COLLECTOR_E2E_SOAK_FAULTS=down,503.
//   - TestThanosReceiveOutage: one `thanos receive` is the hub (tenant from --to-upload-tenant);
//     SIGKILL and SIGTERM of collector while it is down; read back through `thanos query`.
//   - TestThanosHashringReplication: three ingestors behind a router, replication factor 3: one
//     ingestor SIGKILLed while collector writes, then two (quorum lost, 5xx); read back through
//     `thanos query` deduplicating over the replicas.
//
// The Thanos tests run the binary tools/thanos/go.mod pins (`make thanos` builds it into
// .cache/bin; a test that finds none builds it the same way, once): thanos_helpers_test.go starts
// receivers, routers with a hashring, `thanos query` and `thanos store` over a filesystem bucket.
//
// The receivers run with an out-of-order window (receiverConfig says why): a re-sent request is
// then accepted whole, as Thanos receive accepts its valid part, instead of being rolled back with
// 400 as a plain Prometheus does.
//
// The package has no non-test code; it imports wal only to read WALs back for the books. Run it with
// `make test-e2e` or `go test -race -count=1 ./e2e/`. Without a prometheus binary on $PATH the
// tests fail (they never skip): run `make deps`. Repeated runs (-count) of the long tests outlast
// go test's default -timeout of 10 minutes: pass -timeout 0. The processes a test starts are
// killed by the kernel when the test binary ends before its cleanups ran (a timeout, a panic).
package e2e
