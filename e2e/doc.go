// Package e2e holds the end-to-end tests of collector (issue #6): the real collector binary,
// built once by TestMain, between real Prometheus processes (Debian's prometheus package: `make
// deps`) and servers of the test's own (a deterministic /federate source, a fault-injecting
// proxy in front of the receiver).
//
// What the tests hold the program to is the delivery guarantee of DESIGN.md: every sample the
// collector appended to its WAL is at the receiver after hub outages, crashes (SIGKILL) and
// restarts (SIGTERM), flaky receivers and replays, and the collector's own counters account for
// every sample. The tests compare what the WAL holds (read back with package wal, the agent runs
// with --wal-retention so that delivered segments stay readable) with the raw samples the
// receiver returns through its query API.
//
// The tests, all parallel (TestMain raises -test.parallel: they wait far more than they compute),
// about three minutes together on two cores, TestAccountingAtScale the longest:
//
//   - TestFlow: match[], clusterID, --label, --rename, elided and anonymized labels at the receiver.
//   - TestHubOutage: the receiver down for 30 s; everything appended meanwhile arrives.
//   - TestCrashDuringOutage: SIGKILL and SIGTERM with restarts while the receiver is down.
//   - TestFlakyHub: 503, 429 with Retry-After, connection resets, lost answers; per-series order
//     of the acknowledged samples checked on the wire; also against a plain Prometheus receiver.
//   - TestReplay: collector replay --all into an empty receiver reproduces the WAL exactly.
//   - TestAccountingAtScale: 50k series a second from a deterministic source, seeded SIGKILLs,
//     receiver outages, about 100 s; every scrape served while the collector was up arrives whole.
//
// The receivers run with an out-of-order window (receiverConfig says why): a re-sent request is
// then accepted whole, as Thanos receive accepts its valid part, instead of being rolled back with
// 400 as a plain Prometheus does.
//
// The package has no non-test code; it imports wal only to read WALs back. Run it with
// `make test-e2e` or `go test -race -count=1 ./e2e/`. Without a prometheus binary on $PATH the
// tests fail (they never skip): run `make deps`.
package e2e
