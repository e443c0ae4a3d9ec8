package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

type recoverableOnly bool

func (r recoverableOnly) Error() string     { return "recoverable only" }
func (r recoverableOnly) Recoverable() bool { return bool(r) }

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		want   verdict
		reason string
	}{
		{"503 retries", httpErr(503), retry, ""},
		{"429 retries", httpErr(429), retry, ""},
		{"408 retries", httpErr(408), retry, ""},
		{"413 splits", httpErr(413), split, ReasonTooLarge},
		{"409 drops with its reason", httpErr(409), drop, "http_409"},
		{"a timing 400 splits, then drops what is still refused", timingErr(), split, "http_400"},
		{"a plain 400 drops", httpErr(400), drop, "http_400"},
		{"401 retries", httpErr(401), retry, ""},
		{"403 retries", httpErr(403), retry, ""},
		{"404 retries", httpErr(404), retry, ""},
		{"timing on a recoverable error retries", &testErr{code: 503, recoverable: true, timing: true}, retry, ""},
		{"timing without reason or status splits as permanent", &testErr{timing: true}, split, ReasonPermanent},
		{"wrapped 409 drops", fmt.Errorf("send: %w", httpErr(409)), drop, "http_409"},
		{"permanent without reason uses the status", &testErr{code: 418}, drop, "http_418"},
		{"permanent without reason or status", recoverableOnly(false), drop, ReasonPermanent},
		{"recoverable only", recoverableOnly(true), retry, ""},
		{"unknown error retries", errors.New("connection reset"), retry, ""},
		{"a deadline of the sender retries", context.DeadlineExceeded, retry, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, reason := classify(tc.err)
			if v != tc.want || reason != tc.reason {
				t.Fatalf("classify = %v %q, want %v %q", v, reason, tc.want, tc.reason)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
		ok   bool
	}{
		{"none", httpErr(503), 0, false},
		{"plain error", errors.New("x"), 0, false},
		{"within cap", &testErr{retryAfter: 3 * time.Second}, 3 * time.Second, true},
		{"capped", &testErr{retryAfter: time.Hour}, time.Minute, true},
		{"wrapped", fmt.Errorf("w: %w", &testErr{retryAfter: time.Second}), time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := retryAfter(tc.err, time.Minute)
			if d != tc.want || ok != tc.ok {
				t.Fatalf("retryAfter = %v %v, want %v %v", d, ok, tc.want, tc.ok)
			}
		})
	}
}
