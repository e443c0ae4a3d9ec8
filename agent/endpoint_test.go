package agent

import (
	"strings"
	"testing"

	"github.com/collector-dev/collector/shipper"
)

func TestEndpointRetryOnStatus(t *testing.T) {
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		{in: "", want: shipper.DefaultRetryOnStatus},
		{in: "401,403,5xx", want: "401,403,5xx"},
		{in: "401,409", wantErr: `endpoint "hub": retry_on_status: invalid retry status 409`},
		{in: "4xx", wantErr: "the class would hold 400, 409 and 413"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			e := EndpointConfig{Name: "hub", URL: "https://hub/api/v1/receive", RetryOnStatus: tc.in}
			err := e.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.ShipperOptions("v").RetryOnStatus.String(); got != tc.want {
				t.Fatalf("shipper retries %q, want %q", got, tc.want)
			}
		})
	}
}
