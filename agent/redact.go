package agent

import (
	"net/url"
	"strings"
)

// redacted replaces credentials in URLs printed by the agent.
const redactedURLPart = "xxxxx"

// redactURL returns u as it may be printed in a log line, an error string, a metric label or
// /readyz: userinfo removed, every query value replaced by xxxxx (the keys are kept,
// so that `?apikey=xxxxx` still says what was configured), no fragment. Every URL the agent
// prints goes through it: a query string may carry an API key as well as userinfo a password.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = redactQuery(c.RawQuery)
	c.ForceQuery = false
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// redactRawURL is redactURL of a string.
func redactRawURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	return redactURL(u)
}

// redactQuery replaces the value of every key=value pair of a raw query with xxxxx.
func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if k, _, ok := strings.Cut(p, "="); ok {
			parts[i] = k + "=" + redactedURLPart
		}
	}
	return strings.Join(parts, "&")
}

// urlSecrets returns the parts of u that must not appear in text the agent prints: the
// password of the userinfo (and the userinfo itself), and each query value of at least 4 bytes,
// raw and unescaped (shorter values are too common in any text to replace).
func urlSecrets(u *url.URL) []string {
	var out []string
	if u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			out = append(out, pw)
		}
		out = append(out, u.User.String())
	}
	for _, p := range strings.Split(u.RawQuery, "&") {
		_, v, ok := strings.Cut(p, "=")
		if !ok || len(v) < 4 {
			continue
		}
		out = append(out, v)
		if uv, err := url.QueryUnescape(v); err == nil && uv != v {
			out = append(out, uv)
		}
	}
	return out
}

// redactSecrets replaces every secret in s by xxxxx.
func redactSecrets(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, redactedURLPart)
		}
	}
	return s
}
