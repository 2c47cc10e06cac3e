package data

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLocateSecondSet checks the second known-good checksum set: files on disk with its MD5s are
// accepted, a mix of its images with canonical images is refused, and downloads are still checked
// against the canonical MD5s alone.
func TestLocateSecondSet(t *testing.T) {
	canon := newTinySet(t, 4, 2)
	other := newTinySet(t, 4, 2)
	// other's images differ from canon's; its labels are the same files.
	for _, name := range []string{trainImages, testImages} {
		other.files[name] = append([]byte(nil), canon.files[name]...)
		other.files[name][len(other.files[name])-1] ^= 0xff // a different gzip trailer: another MD5
		other.src.md5[name] = md5Hex(other.files[name])
	}
	src := canon.src
	src.alt = &checksums{name: "the rebuild", md5: other.src.md5}
	all := []string{trainImages, trainLabels, testImages, testLabels}

	t.Run("second set accepted", func(t *testing.T) {
		dir := t.TempDir()
		other.put(t, dir, all...)
		paths, err := locate(context.Background(), src, all, Options{Dir: dir, CacheDir: t.TempDir(), Offline: true})
		if err != nil {
			t.Fatalf("locate: %v", err)
		}
		if paths[0] != filepath.Join(dir, trainImages) {
			t.Errorf("paths[0] = %s; want the file in the data directory", paths[0])
		}
	})
	t.Run("canonical accepted", func(t *testing.T) {
		dir := t.TempDir()
		canon.put(t, dir, all...)
		if _, err := locate(context.Background(), src, all, Options{Dir: dir, CacheDir: t.TempDir(), Offline: true}); err != nil {
			t.Fatalf("locate: %v", err)
		}
	})
	t.Run("mixed sets refused", func(t *testing.T) {
		dir := t.TempDir()
		canon.put(t, dir, trainImages, trainLabels, testLabels)
		other.put(t, dir, testImages)
		_, err := locate(context.Background(), src, all, Options{Dir: dir, CacheDir: t.TempDir(), Offline: true})
		if err == nil || !strings.Contains(err.Error(), "the rebuild") || !strings.Contains(err.Error(), "one set") {
			t.Fatalf("locate error = %v; want one naming both sets", err)
		}
	})
	t.Run("wrong file names both sets", func(t *testing.T) {
		dir := t.TempDir()
		canon.put(t, dir, all...)
		writeFile(t, dir, testImages, []byte("not the file"))
		_, err := locate(context.Background(), src, all, Options{Dir: dir, CacheDir: t.TempDir(), Offline: true})
		if err == nil || !strings.Contains(err.Error(), src.md5[testImages]) || !strings.Contains(err.Error(), other.src.md5[testImages]) {
			t.Fatalf("locate error = %v; want both known MD5s", err)
		}
	})
}

// TestFashionMNISTOfflineCopy loads the offline copy of Fashion-MNIST in ../shared/data.
func TestFashionMNISTOfflineCopy(t *testing.T) {
	dir := filepath.Join(sharedDataDir(t), "fashion-mnist")
	paths, err := Locate(context.Background(), "fashion-mnist", Options{Dir: dir, CacheDir: t.TempDir(), Offline: true})
	if err != nil {
		t.Fatalf("Locate: %v", err)
	}
	if len(paths) != 4 {
		t.Fatalf("Locate gave %d paths; want 4", len(paths))
	}
}

// sharedDataDir is ../shared/data: beside $DDPM_SHARED_TESTDATA, or beside the repository.
func sharedDataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "data")
	if d := os.Getenv("DDPM_SHARED_TESTDATA"); d != "" {
		dir = filepath.Join(d, "..", "data")
	}
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("shared data %s missing: %v", dir, err)
		}
		t.Skipf("shared data %s missing", dir)
	}
	return dir
}
