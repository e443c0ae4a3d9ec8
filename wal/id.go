package wal

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxIDLength bounds cluster IDs and consumer names: they name directories and files.
const MaxIDLength = 200

// ValidateID reports whether id can name a WAL directory (or a consumer's position file): not
// empty, at most MaxIDLength bytes, not "." or "..", no path separators, no leading dot, and only
// printable runes: no control or format characters (bidirectional overrides such as U+202E would
// make a log line or a directory listing read differently from what it is), no invalid UTF-8.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case len(id) > MaxIDLength:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidID, len(id), MaxIDLength)
	case id == "." || id == "..":
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	case strings.HasPrefix(id, "."):
		return fmt.Errorf("%w: %q starts with a dot", ErrInvalidID, id)
	case strings.ContainsAny(id, `/\`):
		return fmt.Errorf("%w: %q contains a path separator", ErrInvalidID, id)
	}
	for _, r := range id {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %+q contains a control, format or invalid character", ErrInvalidID, id)
		}
	}
	return nil
}
