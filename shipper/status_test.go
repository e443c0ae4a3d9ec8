package shipper

import (
	"errors"
	"strings"
	"testing"
)

func TestParseStatusSet(t *testing.T) {
	for _, tc := range []struct {
		in      string
		has     []int
		hasNot  []int
		str     string
		wantErr string
	}{
		{in: DefaultRetryOnStatus, has: []int{401, 403, 404, 405, 407, 408, 411, 415, 421, 425, 429, 431, 500, 503, 599},
			hasNot: []int{400, 409, 413, 418, 422, 200, 302, 600}, str: DefaultRetryOnStatus},
		{in: " 429 , 5XX,401,401", has: []int{401, 429, 500}, hasNot: []int{404}, str: "401,429,5xx"},
		{in: "503", has: []int{503}, hasNot: []int{500}, str: "503"},
		{in: "", wantErr: "the list is empty"},
		{in: " , ", wantErr: "the list is empty"},
		{in: "400", wantErr: "remote-write specification forbids"},
		{in: "401,409", wantErr: "409: a 409 refuses the samples"},
		{in: "413", wantErr: "413: a 413 is split"},
		{in: "4xx", wantErr: `"4xx": the class would hold 400, 409 and 413`},
		{in: "302", wantErr: `"302": want a status code between 400 and 599`},
		{in: "abc", wantErr: `"abc": want a status code`},
		{in: "600", wantErr: `"600"`},
		{in: "3xx", wantErr: `"3xx"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			s, err := ParseStatusSet(tc.in)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalidRetryStatus) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseStatusSet(%q) = %v, want an ErrInvalidRetryStatus containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.has {
				if !s.Has(c) {
					t.Errorf("%d missing", c)
				}
			}
			for _, c := range tc.hasNot {
				if s.Has(c) {
					t.Errorf("%d present", c)
				}
			}
			if got := s.String(); got != tc.str {
				t.Errorf("String() = %q, want %q", got, tc.str)
			}
		})
	}
}

func TestDefaultRetryStatuses(t *testing.T) {
	s, err := ParseStatusSet(DefaultRetryOnStatus)
	if err != nil || s != DefaultRetryStatuses() || s != DefaultOptions().RetryOnStatus {
		t.Fatalf("DefaultRetryOnStatus does not parse to the default set: %v", err)
	}
	// The zero value means the default.
	if (Options{}).withDefaults().RetryOnStatus != s {
		t.Fatal("zero RetryOnStatus not defaulted")
	}
}
