package wal

import (
	"fmt"
	"time"

	"github.com/prometheus/prometheus/util/compression"
)

// FsyncPolicy says when appended records are made durable with fsync.
type FsyncPolicy string

const (
	// FsyncScrape fsyncs the segment after every Commit: an acknowledged scrape survives a power
	// loss. The default; at one scrape per interval per source it costs nothing measurable.
	FsyncScrape FsyncPolicy = "scrape"
	// FsyncInterval fsyncs at most every Options.FsyncInterval, from a background goroutine. A crash
	// of the machine (not of the process) loses at most that much.
	FsyncInterval FsyncPolicy = "interval"
	// FsyncSegment fsyncs only when a segment is closed, as Prometheus does. Process crashes lose
	// nothing (the page cache survives them); a machine crash can lose the open segment's tail.
	FsyncSegment FsyncPolicy = "segment"
)

// Options configures a WAL. The zero value is not valid; start from DefaultOptions.
type Options struct {
	// SegmentSize is the size at which segments are cut, a multiple of 32 KiB. A record never
	// spans segments; one larger than a segment gets a segment of its own. Default 64 MiB.
	SegmentSize int
	// Compression of records: "none", "snappy" or "zstd". Default "snappy" (see FORMAT.md for
	// the measured bytes per sample).
	Compression compression.Type
	// Fsync is the durability policy. Default FsyncScrape.
	Fsync FsyncPolicy
	// FsyncInterval is the period of FsyncInterval. Default 1s.
	FsyncInterval time.Duration
	// Consumers are the registered consumers: truncation waits for each of them. A consumer with
	// no position file yet holds back everything.
	Consumers []string
	// LeasePrefix and LeaseTTL register temporary consumers (collector replay): a position file
	// whose name starts with LeasePrefix and that was committed less than LeaseTTL ago holds back
	// truncation like a registered consumer, without being one (the caps still evict under it).
	// A lease that is not renewed (a killed replay) stops holding anything after LeaseTTL. Empty
	// prefix or LeaseTTL 0: no leases.
	LeasePrefix string
	LeaseTTL    time.Duration
	// Retention keeps segments that every consumer has passed for this long after their last
	// write, for replay. Default 0: delete as soon as delivered.
	Retention time.Duration
	// MaxSize caps the bytes of the segments, the open one included (the checkpoint, positions and
	// stats.json are not counted). When exceeded, the oldest segments are evicted even if
	// undelivered, and every evicted sample is counted. 0 means no cap.
	MaxSize int64
	// MaxAge evicts segments whose newest sample is older than this, even if undelivered. 0 means
	// no cap.
	MaxAge time.Duration
	// ReserveBytes is free space a Commit leaves on the WAL's file system: a scrape that would
	// leave less fails with ErrDiskFull before anything is written. The reserve keeps room for
	// what frees space: position files, stats.json and the checkpoint that truncation writes
	// before it deletes delivered segments (about 100 bytes per series). Default 16 MiB; 0 turns
	// the check off (the write then fails with ENOSPC, and is cut as cleanly).
	ReserveBytes int64
	// Now is the clock. Default time.Now.
	Now func() time.Time

	// syncHook, set by tests, runs after each fsync of a segment; its error counts as the
	// fsync's (EIO from fsync cannot be produced on demand on a real file system).
	syncHook func(segment int) error
}

// DefaultOptions returns the defaults documented on each field of Options.
func DefaultOptions() Options {
	return Options{
		SegmentSize:   64 << 20,
		Compression:   compression.Snappy,
		Fsync:         FsyncScrape,
		FsyncInterval: time.Second,
		ReserveBytes:  16 << 20,
		Now:           time.Now,
	}
}

func (o *Options) validate() error {
	if o.SegmentSize <= 0 || o.SegmentSize%pageSize != 0 {
		return fmt.Errorf("segment size %d is not a positive multiple of %d", o.SegmentSize, pageSize)
	}
	switch o.Compression {
	case compression.None, compression.Snappy, compression.Zstd:
	case "":
		o.Compression = compression.None
	default:
		return fmt.Errorf("unknown compression %q (none, snappy, zstd)", o.Compression)
	}
	switch o.Fsync {
	case FsyncScrape, FsyncSegment:
	case FsyncInterval:
		if o.FsyncInterval <= 0 {
			return fmt.Errorf("fsync interval %v must be positive", o.FsyncInterval)
		}
	default:
		return fmt.Errorf("unknown fsync policy %q (scrape, interval, segment)", o.Fsync)
	}
	if o.MaxSize < 0 || o.MaxAge < 0 || o.Retention < 0 || o.ReserveBytes < 0 {
		return fmt.Errorf("max size, max age, retention and reserve must not be negative")
	}
	for _, c := range o.Consumers {
		if err := ValidateID(c); err != nil {
			return fmt.Errorf("consumer %q: %w", c, err)
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}
