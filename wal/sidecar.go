package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Sidecar files are small files the WAL's owner keeps in the WAL's directory, next to the
// segments, so that they live and die with it (the agent's collect-rule state,
// collectrules.json). The WAL never reads, truncates or moves them. A name is a plain file name
// ending in .sidecar.json; it cannot collide with the WAL's own files.
const sidecarSuffix = ".sidecar.json"

// errSidecarName: a sidecar name that is not <name>.sidecar.json or has a path separator.
var errSidecarName = errors.New("sidecar name must be a plain file name ending in " + sidecarSuffix)

func (w *WAL) sidecarPath(name string) (string, error) {
	if !strings.HasSuffix(name, sidecarSuffix) || len(name) == len(sidecarSuffix) || name != filepath.Base(name) || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("sidecar %q: %w", name, errSidecarName)
	}
	return filepath.Join(w.dir, name), nil
}

// WriteSidecar replaces the sidecar file name with data durably: temporary file, fsync, rename,
// fsync of the directory. A crash leaves the old content or the new one.
func (w *WAL) WriteSidecar(name string, data []byte) error {
	p, err := w.sidecarPath(name)
	if err != nil {
		return err
	}
	return writeFileDurable(p, data)
}

// ReadSidecar returns the content of the sidecar file name; an error satisfying
// errors.Is(err, os.ErrNotExist) when there is none.
func (w *WAL) ReadSidecar(name string) ([]byte, error) {
	p, err := w.sidecarPath(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read sidecar: %w", err)
	}
	return b, nil
}
