// Package shipper is the client of one Prometheus remote-write endpoint (Thanos receive on the
// hub). It owns everything between a batch of series and the HTTP response: the request encoding,
// the headers, authorization, TLS, proxies, connection reuse, and the classification of every
// failure. It makes one attempt per Send (two when ProtocolAuto falls back to 1.0); retrying,
// splitting and dropping are the queue's, which decides from the methods of *Error.
//
// It imports nothing internal to collector (in particular not queue: *Client satisfies
// queue.Sender structurally, since Series and queue.Series are aliases of one unnamed struct
// type; the agent checks it at compile time).
//
// # Wire format
//
// Remote-write 1.0 by default (Options.Protocol ProtocolV1): a prompb.WriteRequest in protobuf,
// compressed as one snappy block, with Content-Encoding: snappy, Content-Type:
// application/x-protobuf, X-Prometheus-Remote-Write-Version: 0.1.0 and User-Agent:
// collector/<version>.
//
// Remote-write 2.0 (ProtocolV2, or ProtocolAuto until the endpoint shows it does not take it): an
// io.prometheus.write.v2.Request, snappy as well, with Content-Type:
// application/x-protobuf;proto=io.prometheus.write.v2.Request and
// X-Prometheus-Remote-Write-Version: 2.0.0. Each request has its own symbol table (symbols[0] is
// ""; labels are pairs of references into it). It carries no metadata (the WAL holds none: the
// receiver sees METRIC_TYPE_UNSPECIFIED) and no created timestamps (Sample.start_timestamp stays 0,
// "unknown": federation does not give them). The WAL holds float samples only, so requests carry
// no histograms and no exemplars.
//
//   - Written counts. A 2xx to a 2.0 request is a success only when its
//     X-Prometheus-Remote-Write-Samples-Written and -Histograms-Written headers (a missing one
//     counts 0, as the specification says) cover every sample and histogram sent. The
//     specification requires a partial write to get a non-2xx status, so a 2xx with lower counts
//     is a receiver that says it did not write what it acknowledged: Send returns a Recoverable
//     *Error wrapping ErrPartialWrite (reason "partial_write"), the batch stays queued and is
//     sent again (exact duplicates are accepted by receivers), instead of counting unconfirmed
//     samples as delivered. Exemplar counts are not compared: receivers drop out-of-order
//     exemplars silently by design. The counts of a 1.0 request are not looked at.
//   - A 2xx without any of those headers is a 1.x receiver that ignored the Content-Type: it
//     decoded the 2.0 message as an empty 1.0 one (their fields do not overlap) and wrote nothing.
//     The specification says to treat it as a 415: ErrNotConfirmed, Recoverable.
//   - Negotiation (ProtocolAuto). One Client is one endpoint: it sends 2.0 until a 2.0 request is
//     answered 415 or 2xx without written counts, then sends that batch again at once as 1.0
//     (so the fallback never drops or delays it) and 1.0 for the rest of the process; the switch
//     is logged once and shown by collector_shipper_protocol. The batches in flight on other
//     shards at that moment fall back the same way. A ProtocolV2 Client never falls back: 415 and
//     ErrNotConfirmed stay Recoverable and cost time until the endpoint is fixed.
//   - A 400 to a 2.0 request may come after a partial write (Prometheus commits the valid samples
//     of a 2.0 request and refuses the rest): the queue bisects a timing 400 as for 1.0, and the
//     samples already written come back as exact duplicates, or as out-of-order refusals when a
//     newer sample of their series was written too. Such a refusal is counted as dropped although
//     the receiver holds the sample: a miscount, never a loss.
//
// 1.0 stays the default: Thanos receive v0.42.0, the hub, does not speak 2.0 (it answers a 2.0
// request 200 without written counts, having decoded it as an empty 1.0 one: ProtocolAuto falls
// back, e2e's TestRemoteWrite2Thanos), and on OpenShift-like series 2.0 saves a few percent of
// the bytes on the wire and costs more CPU to encode (the symbol table), as the README's
// Performance table shows (BenchmarkEncode).
//
// Send takes []Series: each series' labels arrive already encoded, once per series for the
// life of the series (the WAL keeps the labels of its series in memory in this form), as the repeated
// TimeSeries.labels field of 1.0. The 1.0 encoder copies those bytes into the request as they
// are (one copy per series and request) and writes the samples; its output is exactly the bytes
// of gogo's generated Marshal of the same series as prompb.TimeSeries (a test and FuzzEncode
// compare them). The 2.0 encoder reads the names and values out of the same bytes and interns
// them as substrings, without copies. It compares each label with the previous series' label at
// the same position first (in body order consecutive series share the metric name, the label
// names and most values) and hashes only the names and values that differ, into an
// open-addressing table of its own; its output decodes to what Prometheus' own symbol table
// and gogo's Marshal build (TestEncodeV2MatchesPrometheusSymbolTable, FuzzEncodeV2), and labels
// that are not the 1.0 encoding are a permanent "encode" error, never a panic. Both write into
// buffers pooled per Client, so a Send allocates no payload memory in steady state. The encoder
// goes back to its pool as soon as the request is compressed; the round trip holds a copy of
// the compressed bytes from a second pool, so that a request in flight costs its size on the wire
// (about 0.25 MiB for 5000 OpenShift-like samples) rather than the encoder's 4.4 MiB
// (BenchmarkHeapInFlight, TestHeapInFlight).
//
// The block is compressed with klauspost/compress/s2.EncodeSnappy, whose output is the standard
// snappy block format (golang/snappy.Decode and every receiver read it; a test
// decodes it that way). On amd64 it is as fast as golang/snappy.Encode (both have assembly) and
// about 6% smaller on OpenShift-like requests, because its match table spans the whole block
// instead of 64 KiB chunks. BenchmarkEncode measures the path from WAL records to request bytes.
//
// A 1.0 request over the same series as an earlier one, in the same order, one sample each, is
// not compressed again: the Client keeps a template of each such request, s2's block rewritten so
// that every sample's value and timestamp is a literal that the next request's samples overwrite
// in place (template.go). Rendering a request from its template costs about 11-16 ns per sample
// (BenchmarkTemplate), against about 150 for building and compressing it with its labels in
// cache and more than 250 in the process, where they are not. A template is used only while
// its conditions hold: the same label strings (by address), the same encoded sizes (a value of
// 0 is left out, a timestamp's varint grows), equal timestamps where it repeats one from an
// earlier sample, and zero bytes where it copies the zero bytes that end round values. Its block
// is decoded once when it is built and compared with the message, and it is dropped when no
// request has used it for a while. A template that never served is rebuilt with fewer of those
// conditions (no pinned zero bytes, then no repeated timestamps); at the last level, series
// whose samples keep changing size wait longer and longer between builds (up to 64 requests), so
// that they cost about what they did without templates. The rewriting costs about
// 10 % more bytes on the wire at the first level, up to about 27 % at the last (s2 copies parts of
// values and timestamps that can no longer be copied). collector_shipper_request_templates_total
// counts requests by hit, miss and built. 2.0 requests are always built and compressed.
//
// A structure-aware snappy encoder was tried for issue 14 and dropped (the code, its fuzz
// target and BenchmarkSnappy are in the history of shipper/snappy.go). Variant "proto" cut the
// request into its protobuf fields and emitted copies of the fields equal to the same field of
// the previous series or found in a per-request hash table, literals around the common prefix
// and suffix otherwise; variant "diff" compared each series with the previous one word by word,
// aligned on their starts and on their ends. The bar was 1.7x the speed of s2.EncodeSnappy with
// at most 15% more bytes. On requests of e2e/benche2e-like and agent/ingest-like series (2000
// series x 1 sample and 500 x 4, RW 1.0 and 2.0), same run: "proto" 1.4-6x slower and 50-80%
// larger, "diff" 1.3-3.5x slower and 55-130% larger; for example 2000 x 1 benche2e series in
// RW 1.0, s2 190 ns and 39.6 B per sample, "proto" 1200 ns and 71 B, "diff" 500 ns and 73 B.
// Cutting the request into fields alone cost 0.6-0.9 of what s2 takes for the whole block, and
// the bytes are lost because a series shares many of its values not with the previous series
// but with series further back, at other places, where s2's hash table finds them.
//
// # Guarantees
//
//   - Send returns nil only for a 2xx response (for 2.0: one whose written counts cover the
//     request). A cancellation or deadline of the caller's context is returned as the wrapped
//     ctx.Err(), never as *Error; a per-attempt timeout is an *Error wrapping ErrTimeout, not
//     context.DeadlineExceeded. Everything else is an *Error:
//     Recoverable for network errors, timeouts (Options.Timeout per attempt), TLS failures,
//     unreadable credential files, the statuses of Options.RetryOnStatus (by default every one
//     that refers to the request, the credentials or the endpoint: DefaultRetryOnStatus) and
//     unexpected 1xx/3xx (redirects are not followed); TooLarge for 413; permanent for 400, 409
//     and the 4xx and 5xx left out of the retry set. A 400 whose body names a refusal for
//     timestamps (out of order, out of bounds, duplicate sample for timestamp, too old: the
//     texts of Prometheus' TSDB errors) is Timing. Retry-After (seconds or HTTP-date) is
//     reported for recoverable errors only.
//   - Response bodies are drained (up to 64 KiB beyond what was read) and closed, so keep-alive
//     connections are reused. At most 1 KiB of an error body is quoted, on one line; up to 16 KiB
//     are read first so that a secret cut by the 1 KiB limit is still recognised and redacted.
//   - Credentials never appear in logs, metrics or error strings: URLs are printed without
//     userinfo (Client.Endpoint) and known secrets are redacted from quoted bodies.
//   - The HTTP settings are Prometheus' own: Options.HTTPClientConfig is a remote_write entry's
//     http_config, and the transport is built by prometheus/common/config
//     (NewRoundTripperFromConfig), with SigV4 or Azure AD on top as Prometheus' remote-write
//     client does; at most one of basic_auth, authorization, oauth2, sigv4 and azuread
//     (ValidateAuth). The library re-reads credentials files at every request and compares the
//     CA, certificate and key files at every request, building a new transport when one changed,
//     so rotations need no restart. A file that is missing or unreadable then is a Recoverable
//     *Error wrapping ErrCredentials (reason credentials); a half-rotated certificate and key
//     fail the handshake, also recoverably: both cost time, never data. Server certificates are
//     verified unless tls_config.insecure_skip_verify is set. HTTP/1.1 unless enable_http2, no
//     proxy unless proxy_url or proxy_from_environment; redirects are never followed. On Linux
//     the TCP connections read and write with raw system calls, so that the runtime's sysmon
//     thread is not woken at every request (quietconn.go).
//
// # Metrics
//
// collector_shipper_requests_total{status_code} and its alias forward_write_requests_total
// (status_code "error" when no response arrived; cancellations by the caller are not counted),
// collector_shipper_request_duration_seconds, collector_shipper_sent_bytes_total (compressed
// bytes of requests that got a response), collector_shipper_sent_samples_total (2xx only, and for
// 2.0 only with written counts covering the request),
// collector_shipper_last_success_timestamp_seconds and collector_shipper_protocol{version} (1 for
// the version sent, "1.0" or "2.0", 0 for the other).
package shipper
