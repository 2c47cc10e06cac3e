// Package atomicfile writes files so that a reader never sees a partial one and a failed write leaves
// the old file as it was: the bytes go to a temporary file beside the target (mode 0644, synced to disk)
// that is then renamed over it.
package atomicfile

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Delay, when set, is slept before each write's sync and before its rename: kill tests set it to widen
// the moments in which a process can die half-way through a write. Zero in production.
var Delay time.Duration

// Write writes path through write. On any error the temporary file is removed and path is untouched.
// The directory must exist.
func Write(path string, write func(io.Writer) error) error {
	tmp, err := Temp(path, write)
	if err != nil {
		return err
	}
	time.Sleep(Delay)
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%w (is there a directory of that name?)", err)
	}
	SyncDir(filepath.Dir(path))
	return nil
}

// WriteFile writes data to path, as Write does.
func WriteFile(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Temp writes a new temporary file beside target through write, syncs it and returns its name, for a
// caller that renames several files into place together. On any error nothing is left behind.
func Temp(target string, write func(io.Writer) error) (name string, err error) {
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("%w (does the directory exist and is it writable?)", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := write(w); err != nil {
		return "", err
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	if err := f.Chmod(0o644); err != nil { // CreateTemp makes it 0600
		return "", err
	}
	time.Sleep(Delay)
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// Rename is os.Rename after Delay, for writers that rename several files into place themselves.
func Rename(from, to string) error {
	time.Sleep(Delay)
	return os.Rename(from, to)
}

// SyncDir makes renames in dir durable. Not every platform can sync a directory, so failures are
// ignored.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
