// Package shared holds what tests share: the reference fixtures of ../shared/testdata and the
// backend they run on.
package shared

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ddpm/ddpm/backend"
	"github.com/gomlx/gomlx/backends"
)

// EnvVar names the directory of the shared reference fixtures; .ci/run sets it.
const EnvVar = "DDPM_SHARED_TESTDATA"

// Dir returns the shared testdata directory: $DDPM_SHARED_TESTDATA, else ../shared/testdata beside the
// repository.
func Dir() string {
	if d := os.Getenv(EnvVar); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "testdata")
}

// Path returns the path of a fixture under Dir. When it does not exist the test fails if $CI is set
// (CI must run every check) and is skipped otherwise.
func Path(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(Dir(), rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("fixture %s missing (set %s): %v", p, EnvVar, err)
		}
		t.Skipf("fixture %s missing (set %s to ../shared/testdata)", p, EnvVar)
	}
	return p
}

// GoBackend returns GoMLX's pure-Go backend, the one tests run on.
func GoBackend(t testing.TB) backends.Backend {
	t.Helper()
	b, _, err := backend.New("go")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
