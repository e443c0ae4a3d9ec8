package agent

import (
	"net/url"
	"strings"

	"github.com/collector-dev/collector/shipper"
)

// redactedURLPart replaces credentials in text the agent prints.
const redactedURLPart = "xxxxx"

// redactURL returns u as it may be printed: every URL the agent prints (sources, query API,
// endpoints) goes through it. It is the shipper's redaction, so that a URL reads the same in the
// agent's and in the shipper's lines.
func redactURL(u *url.URL) string { return shipper.RedactURL(u) }

// redactRawURL is redactURL of a string.
func redactRawURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	return redactURL(u)
}

// urlSecrets returns the parts of u that must not appear in text the agent prints (see
// shipper.URLSecrets).
func urlSecrets(u *url.URL) []string { return shipper.URLSecrets(u) }

// redactSecrets replaces every secret in s by xxxxx.
func redactSecrets(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, redactedURLPart)
		}
	}
	return s
}
