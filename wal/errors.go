package wal

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidID is returned by ValidateID and Open for a cluster ID that cannot name a directory.
	ErrInvalidID = errors.New("invalid cluster id")
	// ErrLocked is returned by Open when another writer holds the WAL directory.
	ErrLocked = errors.New("wal directory is locked by another writer")
	// ErrClosed is returned by operations on a closed WAL or Reader.
	ErrClosed = errors.New("wal is closed")
	// ErrNoPosition is returned by ReadPosition when a consumer has no position file yet.
	ErrNoPosition = errors.New("no position file")
	// ErrNotWAL is returned by Status for a directory that holds no WAL.
	ErrNotWAL = errors.New("not a wal directory")
	// ErrDiskFull is returned (wrapped) by Commit when the file system has no room for the scrape
	// and Options.ReserveBytes, or when writing it failed with ENOSPC. Nothing of the scrape is kept.
	ErrDiskFull = errors.New("wal disk full")
)

// CorruptionError reports unreadable bytes in a segment or checkpoint. Everything before Offset in
// Segment is intact.
type CorruptionError struct {
	Dir     string // directory holding the segment (the WAL or a checkpoint)
	Segment int
	Offset  int64
	Err     error
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("corruption in segment %d at offset %d in %s: %v", e.Segment, e.Offset, e.Dir, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }

// PositionError reports a position file that exists but cannot be used (torn, garbled, failed
// checksum). The consumer restarts from the oldest retained segment.
type PositionError struct {
	Path string
	Err  error
}

func (e *PositionError) Error() string {
	return fmt.Sprintf("position file %s: %v", e.Path, e.Err)
}

func (e *PositionError) Unwrap() error { return e.Err }
