package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The checks that run before any model is loaded: every flag in range, every output writable.

// checkOutput checks that an output file can be written: its extension is one of exts (if any), it
// is not a folder, and its nearest existing parent is a writable folder (missing folders are made
// later).
func checkOutput(cmd, flag, path string, exts ...string) error {
	if path == "" {
		return usagef("%s: --%s is empty: want a file name", cmd, flag)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return usagef("%s: --%s %s is a folder: want a file name", cmd, flag, path)
	}
	if ext := strings.ToLower(filepath.Ext(path)); len(exts) > 0 && !slices.Contains(exts, ext) {
		return usagef("%s: --%s %s: want a %s file", cmd, flag, path, strings.Join(exts, " or "))
	}
	return checkWritableDir(cmd, flag, filepath.Dir(path))
}

// checkOutputDir checks that a folder can be made or written into.
func checkOutputDir(cmd, flag, dir string) error {
	if dir == "" {
		return usagef("%s: --%s is empty: want a folder", cmd, flag)
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return usagef("%s: --%s %s is a file: want a folder", cmd, flag, dir)
	}
	return checkWritableDir(cmd, flag, dir)
}

// checkWritableDir checks the nearest existing ancestor of dir (dir itself if it exists): a folder in
// which this process can create a file.
func checkWritableDir(cmd, flag, dir string) error {
	d := dir
	for {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return usagef("%s: --%s: %s is a file, so no folder can be made under it", cmd, flag, d)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: --%s: %w", cmd, flag, err)
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	f, err := os.CreateTemp(d, ".ddpm-write-check-*")
	if err != nil {
		return fmt.Errorf("%s: --%s: cannot write in %s: %w", cmd, flag, d, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// checkInt checks lo <= v <= hi (hi < lo: no upper bound), naming the flag.
func checkInt(cmd, flag string, v, lo, hi int, note string) error {
	if v < lo || hi >= lo && v > hi {
		want := fmt.Sprintf(">= %d", lo)
		if hi >= lo {
			want = fmt.Sprintf("between %d and %d", lo, hi)
		}
		if note != "" {
			want += " " + note
		}
		return usagef("%s: --%s %d: want %s", cmd, flag, v, want)
	}
	return nil
}

// checkChoice checks that v is one of choices.
func checkChoice(cmd, flag, v string, choices ...string) error {
	if !slices.Contains(choices, v) {
		return usagef("%s: --%s %q: want %s", cmd, flag, v, orList(choices))
	}
	return nil
}

// orList is "a", "a or b", "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
