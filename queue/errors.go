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

// RecoverableError is an error that says whether the same request may succeed later (network
// errors, 5xx, 429, 408). A failure that is neither recoverable nor TooLarge is permanent: the
// batch is dropped and counted with the error's Reason.
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
)

type verdict int

const (
	retry verdict = iota
	split
	drop
)

// classify decides what to do with a failed Send, and the drop reason of what is still refused.
// A 413 and a 400 are split: the first for size, the second because it refuses the whole
// request for one bad sample (Prometheus' receiver does so for a sample older than the series'
// newest, which is what a re-send after a crash holds), so that only what the receiver refuses
// on its own is dropped.
func classify(err error) (verdict, string) {
	var tl TooLargeError
	if errors.As(err, &tl) && tl.TooLarge() {
		return split, ReasonTooLarge
	}
	var rec RecoverableError
	if !errors.As(err, &rec) || rec.Recoverable() {
		return retry, ""
	}
	var sc StatusCodeError
	if errors.As(err, &sc) && sc.StatusCode() == 400 {
		return split, "http_400"
	}
	var re ReasonError
	if errors.As(err, &re) && re.Reason() != "" {
		return drop, re.Reason()
	}
	if sc != nil && sc.StatusCode() != 0 {
		return drop, "http_" + strconv.Itoa(sc.StatusCode())
	}
	return drop, ReasonPermanent
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
