package queue

import (
	"errors"
	"strconv"
	"time"
)

var (
	// ErrRunning is returned by Run when the queue is already running or has run: a Queue runs
	// once.
	ErrRunning = errors.New("queue already ran")
	// errSettle is returned by Run (joined) when samples were settled for records the tracker
	// does not hold: a bug; the queue stops so that a restart resends from the position.
	errSettle = errors.New("settle samples of an unknown record")
)

// The Sender's errors are classified by behaviour, through these interfaces, with errors.As. The
// shipper's error type implements all of them; an error implementing none of them is treated as
// recoverable: unknown failures are retried, never dropped.

// RecoverableError is an error that says whether the same request may succeed later: network
// errors and every status about the request, the credentials or the endpoint (401, 403, 404, 429,
// 5xx ...). A failure that is neither recoverable nor TooLarge nor Timing is permanent: the batch
// is dropped and counted with the error's Reason, and never sent again.
type RecoverableError interface {
	error
	Recoverable() bool
}

// RetryAfterError carries the delay the receiver asked for (Retry-After). It takes precedence
// over the backoff, capped by Options.MaxRetryAfter.
type RetryAfterError interface {
	error
	RetryAfter() (time.Duration, bool)
}

// TooLargeError says whether the receiver refused the request for its size (413): the batch is
// split in halves and retried, down to one sample.
type TooLargeError interface {
	error
	TooLarge() bool
}

// TimingError says whether a permanent refusal is about the timestamps of some samples of the
// request (out of order, out of bounds, duplicate sample for a timestamp: what a re-send after a
// crash meets at a Prometheus receiver, which then refuses the whole request). The batch is split
// in halves down to single samples, so that only the samples the receiver refuses themselves are
// dropped; the halves it accepts were never written before.
type TimingError interface {
	error
	Timing() bool
}

// TooOldError says whether a permanent refusal is about samples too old for the receiver's head
// (Thanos receive's 409, Prometheus' 400 "out of bounds" or "too old sample"). Such a refusal is
// bisected like a TimingError; a single sample still refused this way is deferred: stored in the
// consumer's dead-letter log for backfill and counted as deferred, not dropped.
type TooOldError interface {
	error
	TooOld() bool
}

// HeldError says whether a permanent refusal names only samples the receiver already holds: out
// of order or duplicate for a series it holds at or past their timestamps (Thanos receive's 409,
// which wrote the rest of the request). Such a refusal is bisected; a single sample still refused
// this way was written by an earlier request (a re-send after a 5xx, a crash, or the bisection of
// an earlier 409: Thanos writes the valid samples of a refused request) and is counted as
// delivered, and in collector_queue_samples_already_held_total.
type HeldError interface {
	error
	AlreadyHeld() bool
}

// ReasonError gives the label a permanent failure is counted under ("http_409", ...).
type ReasonError interface {
	error
	Reason() string
}

// StatusCodeError gives the HTTP status of a failure; used for the reason when Reason is absent.
type StatusCodeError interface {
	error
	StatusCode() int
}

// Drop reasons set by the queue itself. Permanent refusals by the receiver use the error's Reason.
const (
	ReasonTooLarge      = "too_large"      // a single sample still refused with 413
	ReasonTooOld        = "too_old"        // older than Options.SampleAgeLimit at send time
	ReasonUnknownSeries = "unknown_series" // series ref without labels in the WAL
	ReasonPermanent     = "permanent"      // a permanent failure without Reason or StatusCode

	// ReasonDeferred settles a sample stored in the dead-letter log for backfill. It is not a
	// drop: it is counted in Stats.Deferred and collector_queue_samples_deferred_total.
	ReasonDeferred = "deferred"
)

type verdict int

const (
	retry verdict = iota
	split
	drop
	deferral // a single sample refused as too old: store it for backfill
	held     // a single sample refused as already held: count it delivered
)

// classify decides what to do with a failed Send, and the drop reason of what is still refused.
// A 413 is split for size. A permanent refusal is split only when it is about timing (a 400
// naming out-of-order, out-of-bounds or duplicate samples): the receiver refused the whole
// request for some of its samples, and the others may be accepted alone. Any other permanent
// refusal drops the batch without sending it again, as the remote-write specification asks. A
// refusal as too old (TooOldError) is bisected too; what is still refused alone is deferred.
func classify(err error) (verdict, string) {
	var tl TooLargeError
	if errors.As(err, &tl) && tl.TooLarge() {
		return split, ReasonTooLarge
	}
	var rec RecoverableError
	if !errors.As(err, &rec) || rec.Recoverable() {
		return retry, ""
	}
	reason := failureReason(err)
	if reason == "" {
		reason = ReasonPermanent
	}
	var to TooOldError
	if errors.As(err, &to) && to.TooOld() {
		return deferral, reason
	}
	var he HeldError
	if errors.As(err, &he) && he.AlreadyHeld() {
		return held, reason
	}
	var te TimingError
	if errors.As(err, &te) && te.Timing() {
		return split, reason
	}
	return drop, reason
}

// failureReason is the label of a failure: the error's Reason, else http_<status>, else "".
func failureReason(err error) string {
	var re ReasonError
	if errors.As(err, &re) && re.Reason() != "" {
		return re.Reason()
	}
	var sc StatusCodeError
	if errors.As(err, &sc) && sc.StatusCode() != 0 {
		return "http_" + strconv.Itoa(sc.StatusCode())
	}
	return ""
}

// retryAfter returns the delay asked for by err, if any, capped at limit.
func retryAfter(err error, limit time.Duration) (time.Duration, bool) {
	var ra RetryAfterError
	if !errors.As(err, &ra) {
		return 0, false
	}
	d, ok := ra.RetryAfter()
	if !ok || d <= 0 {
		return 0, false
	}
	return min(d, limit), true
}
