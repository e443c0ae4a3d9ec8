// Package agent is collector's composition root: it builds, runs and stops everything between the
// sources (Prometheus /federate and the query API for recording rules) and the WALs. It owns
//
//   - the lifecycle of the sources, their WALs, queues and shippers (Run(ctx) returns when every
//     goroutine it started has exited);
//   - federate scraping: the HTTP client, the size limit, the scrape loop and its metrics;
//   - the configuration file (LoadConfig, CheckConfig): sources, Prometheus remote_write entries
//     (RemoteWriteConfig, turned into EndpointConfig and per-endpoint queue options), flags;
//   - the configuration of each source's ingest path (ingest.TransformConfig from SourceConfig);
//     parsing, transforms and the append of one scrape are package agent/ingest's;
//   - recording rules, appended through the same transforms (ingest.Ingester.IngestSamples);
//   - collect rules: evaluated every evaluate interval, their state saved next to the WAL, their
//     dynamic metrics federated as scrapes of their own while they fire (collecteval.go);
//   - the HTTP endpoints /metrics, /healthz, /readyz (also as /healthz/ready), /-/reload and,
//     with EnablePprof, /debug/pprof;
//   - the truncation schedule of the WALs.
//
// It imports agent/ingest, wal, queue and shipper and nothing else internal; cmd/collector is its
// only importer.
package agent
