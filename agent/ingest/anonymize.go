package ingest

import (
	"crypto/sha256"
	"encoding/base64"
)

// anonymizedLen is the length of an anonymized label value: 9 bytes of SHA-256 in unpadded
// base64url (9 bytes are exactly 12 characters, so padding never occurs).
const anonymizedLen = 12

// anonymize returns the value the seeds (telemeter pkg/metricfamily/anonymize.go) put in place of
// value: base64.RawURLEncoding(sha256(salt + value)[:9]). It is byte-compatible with them, so the
// hub sees the same pseudonym whether a cluster runs a seed or collector. Empty values are not
// anonymized: the caller skips them.
func anonymize(salt, value string) string {
	h := sha256.New()
	h.Write([]byte(salt))
	h.Write([]byte(value))
	var sum [sha256.Size]byte
	var out [anonymizedLen]byte
	base64.RawURLEncoding.Encode(out[:], h.Sum(sum[:0])[:9])
	return string(out[:])
}
