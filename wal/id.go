package wal

import (
	"fmt"
	"strings"
)

// MaxIDLength bounds cluster IDs and consumer names: they name directories and files.
const MaxIDLength = 200

// ValidateID reports whether id can name a WAL directory (or a consumer's position file): not
// empty, at most MaxIDLength bytes, not "." or "..", no path separators, no control characters
// and no leading dot.
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
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q contains a control character", ErrInvalidID, id)
		}
	}
	return nil
}
