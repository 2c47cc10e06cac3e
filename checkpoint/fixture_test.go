package checkpoint

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sharedTestdata returns the path of a fixture under the shared test data directory,
// $DDPM_SHARED_TESTDATA or ../../shared/testdata (the shared/ directory beside the repository).
// A missing fixture fails the test under CI and skips it elsewhere.
func sharedTestdata(t testing.TB, rel string) string {
	t.Helper()
	dir := os.Getenv("DDPM_SHARED_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "testdata")
	}
	path := filepath.Join(dir, rel)
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("fixture %s: %v (set DDPM_SHARED_TESTDATA to the shared/testdata directory)", path, err)
		}
		t.Skipf("fixture %s not found (set DDPM_SHARED_TESTDATA): %v", path, err)
	}
	return path
}

// wantError fails unless err is an error whose message contains fragment.
func wantError(t *testing.T, err error, fragment string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", fragment)
	}
	if !strings.Contains(err.Error(), fragment) {
		t.Fatalf("error %q does not contain %q", err, fragment)
	}
}

// tensorDiff reports how a and b differ, or "" when they have the same dtype, shape and bytes.
func tensorDiff(a, b *Tensor) string {
	switch {
	case a.DType != b.DType:
		return "dtype " + string(a.DType) + " vs " + string(b.DType)
	case len(a.Shape) != len(b.Shape):
		return "rank differs: " + a.String() + " vs " + b.String()
	case string(a.Data) != string(b.Data):
		return "data differs"
	}
	for i := range a.Shape {
		if a.Shape[i] != b.Shape[i] {
			return "shape " + a.String() + " vs " + b.String()
		}
	}
	return ""
}
