package shipper

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// DefaultRetryOnStatus is the set of statuses retried by default: every status that refers to the
// request, the credentials or the endpoint rather than to the samples. A wrong or revoked
// credential (401, 403, 407), a wrong tenant or path (403, 404, 405, 421), a receiver that needs
// something else of the request (411, 415, 431), a throttle or a timeout (408, 425, 429) and any
// 5xx must cost time, never data.
const DefaultRetryOnStatus = "401,403,404,405,407,408,411,415,421,425,429,431,5xx"

// StatusSet is a set of HTTP status codes between 100 and 599. The zero value is empty. It is a
// comparable value; build one with ParseStatusSet.
type StatusSet struct {
	bits [10]uint64 // bit c%64 of word c/64 is code c
}

// Has reports whether code is in the set.
func (s StatusSet) Has(code int) bool {
	if code < 100 || code > 599 {
		return false
	}
	return s.bits[code/64]&(1<<(code%64)) != 0
}

func (s *StatusSet) add(code int) { s.bits[code/64] |= 1 << (code % 64) }

// String lists the set as ParseStatusSet reads it: codes in order, a whole class as "5xx".
func (s StatusSet) String() string {
	var parts []string
	for class := 1; class <= 5; class++ {
		whole := true
		var codes []string
		for c := class * 100; c < class*100+100; c++ {
			if s.Has(c) {
				codes = append(codes, strconv.Itoa(c))
			} else {
				whole = false
			}
		}
		if whole {
			parts = append(parts, strconv.Itoa(class)+"xx")
		} else {
			parts = append(parts, codes...)
		}
	}
	return strings.Join(parts, ",")
}

// neverRetried are the 4xx statuses that a retry set cannot hold, with the reason: they refer to
// the samples (or to the request's size), and the queue acts on them otherwise.
var neverRetried = map[int]string{
	400: "a 400 refuses the samples, and the remote-write specification forbids sending them again (a 400 about timestamps is bisected anyway)",
	409: "a 409 refuses the samples (Thanos receive wrote the rest of the request); sending them again is refused again",
	413: "a 413 is split into smaller requests, not retried",
}

// ParseStatusSet reads a comma-separated list of 4xx codes and 5xx codes or the class "5xx"
// (e.g. "401,403,429,5xx"). 400, 409 and 413 are refused (see neverRetried), as are the class
// "4xx" (it would hold them), codes outside 400-599 and an empty list. Errors wrap
// ErrInvalidRetryStatus.
func ParseStatusSet(list string) (StatusSet, error) {
	var s StatusSet
	for _, f := range strings.Split(list, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch {
		case f == "":
			continue
		case f == "5xx":
			for c := 500; c < 600; c++ {
				s.add(c)
			}
			continue
		case f == "4xx":
			return StatusSet{}, fmt.Errorf("%w %q: the class would hold 400, 409 and 413, which are never retried; list the 4xx codes one by one", ErrInvalidRetryStatus, f)
		}
		code, err := strconv.Atoi(f)
		if err != nil || code < 400 || code > 599 {
			return StatusSet{}, fmt.Errorf("%w %q: want a status code between 400 and 599 or the class 5xx", ErrInvalidRetryStatus, f)
		}
		if why, ok := neverRetried[code]; ok {
			return StatusSet{}, fmt.Errorf("%w %d: %s", ErrInvalidRetryStatus, code, why)
		}
		s.add(code)
	}
	if s == (StatusSet{}) {
		return StatusSet{}, fmt.Errorf("%w: the list is empty", ErrInvalidRetryStatus)
	}
	return s, nil
}

// DefaultRetryStatuses returns DefaultRetryOnStatus as a set.
func DefaultRetryStatuses() StatusSet {
	s, _ := ParseStatusSet(DefaultRetryOnStatus) // a valid constant: TestDefaultRetryStatuses
	return s
}

// timingMessages are the texts with which receivers refuse samples for their timestamps alone:
// Prometheus' remote-write handler answers 400 with the error of the TSDB append as the body
// (storage.ErrOutOfOrderSample "out of order sample", ErrOutOfBounds "out of bounds", also as
// "out of bounds: timestamp is too far in the future", ErrDuplicateSampleForTimestamp
// "duplicate sample for timestamp ...", ErrTooOldSample "too old sample"; remote-write 2.0 adds
// " for series ..."), and rolls the whole request back. Thanos receive wraps the same errors
// ("add 3 samples: out of order sample") but answers 409, and 400 only for malformed requests.
var timingMessages = [][]byte{
	[]byte("out of order sample"),
	[]byte("out of bounds"),
	[]byte("duplicate sample for timestamp"),
	[]byte("too old sample"),
}

// tooOldMessages name refusals of samples older than the receiver's head accepts; futureMessage
// is the out-of-bounds refusal of a sample too far in the future, which is not one.
var (
	tooOldMessages = [][]byte{[]byte("out of bounds"), []byte("too old sample")}
	futureMessage  = []byte("too far in the future")
)

// isTooOldRefusal reports whether an error body names samples too old for the receiver's head.
func isTooOldRefusal(body []byte) bool {
	if bytes.Contains(body, futureMessage) {
		return false
	}
	for _, m := range tooOldMessages {
		if bytes.Contains(body, m) {
			return true
		}
	}
	return false
}

// isTimingRefusal reports whether an error body names a refusal for timestamps.
func isTimingRefusal(body []byte) bool {
	for _, m := range timingMessages {
		if bytes.Contains(body, m) {
			return true
		}
	}
	return false
}
