package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolveBadRef: a refs/main that holds a path instead of a commit hash is reported as such, and
// never joined into the paths the error prints (before, the message listed files under
// snapshots/../../../etc).
func TestResolveBadRef(t *testing.T) {
	cleanEnv(t)
	cache := t.TempDir()
	t.Setenv("HF_HUB_CACHE", cache)
	t.Setenv("HF_HUB_OFFLINE", "1")
	repoDir := filepath.Join(cache, "models--google--ddpm-cifar10-32")
	if err := os.MkdirAll(filepath.Join(repoDir, "refs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repoDir, "refs", "main"), []byte("../../../etc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Resolve(context.Background(), "google/ddpm-cifar10-32", Options{})
	checkErr(t, err, `it now holds "../../../etc", which is not a commit hash`, "snapshots/<commit>/model_index.json")
	if strings.Contains(err.Error(), "etc/model_index.json") || strings.Contains(err.Error(), "snapshots/..") {
		t.Fatalf("error %q prints a path built from the bad ref", err)
	}
}
