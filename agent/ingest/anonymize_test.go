package ingest

import "testing"

// TestAnonymizeFixedVectors pins the seed's algorithm: base64url(sha256(salt+value)[:9]),
// unpadded. The expected strings were computed independently with
//
//	printf '%s' "$salt$value" | sha256sum | cut -c1-18 | xxd -r -p | base64 | tr '+/' '-_'
func TestAnonymizeFixedVectors(t *testing.T) {
	for _, tc := range []struct{ name, salt, value, want string }{
		{"plain", "salt", "value", "1DCh2jCv4anQ"},
		{"empty salt", "", "openshift-monitoring", "nMMaB9HQd060"},
		{"uuid", "s3cr3t", "0d2f8ad8-4a6c-4b34-9b1c-ff1ea2d8a0b7", "PjzI6tKwRzqd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := anonymize(tc.salt, tc.value)
			if got != tc.want {
				t.Fatalf("anonymize(%q, %q) = %q, want %q", tc.salt, tc.value, got, tc.want)
			}
			if len(got) != anonymizedLen {
				t.Fatalf("len %d, want %d", len(got), anonymizedLen)
			}
		})
	}
}
