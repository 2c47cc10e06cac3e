package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplacesWholeFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.txt")
	if err := WriteFile(path, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("second")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "second" || fi.Mode().Perm() != 0o644 {
		t.Errorf("file holds %q with mode %v; want \"second\", 0644", b, fi.Mode().Perm())
	}
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Errorf("directory holds %d files; want the file alone, no temporary ones", len(files))
	}
}

func TestFailedWriteLeavesTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.txt")
	WriteFile(path, []byte("good"))
	boom := errors.New("encoder failed")
	err := Write(path, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write = %v; want the writer's error", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "good" {
		t.Errorf("after a failed write the file holds %q; want the old \"good\"", b)
	}
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Errorf("directory holds %d files after a failed write; want no temporary file left", len(files))
	}
}

func TestErrorsSayWhatToCheck(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "missing", "a.txt"), nil); err == nil || !strings.Contains(err.Error(), "does the directory exist") {
		t.Errorf("writing into a missing directory: %v; want a hint about the directory", err)
	}
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "d", "x"), nil, 0o644)
	if err := WriteFile(filepath.Join(dir, "d"), []byte("x")); err == nil || !strings.Contains(err.Error(), "directory of that name") {
		t.Errorf("writing over a directory: %v; want a hint about the directory", err)
	}
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Errorf("directory holds %d entries; want no temporary file left", len(files))
	}
}
