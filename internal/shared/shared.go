// Package shared holds what tests share: the reference fixtures of ../shared/testdata and the
// backend they run on. Only _test files import it (it imports testing and finds the fixtures from its
// own source path); TestBinaryLinksNoTesting checks that the ddpm binary does not.
package shared

import (
	"fmt"
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

// Path returns the path of a fixture under Dir. When it does not exist the test fails if $CI or
// $DDPM_SHARED_TESTDATA is set (CI must run every check; a directory given by name must hold the
// fixtures), and is skipped only when neither is set and ../shared is not beside the repository.
func Path(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(Dir(), rel)
	if err := check(p); err != nil {
		t.Fatal(err)
	} else if _, err := os.Stat(p); err != nil {
		t.Skipf("fixture %s missing (set %s to ../shared/testdata)", p, EnvVar)
	}
	return p
}

// check returns the error a test must fail with when the fixture p is missing and $CI or
// $DDPM_SHARED_TESTDATA is set; nil when p exists, or when neither is set (a skip).
func check(p string) error {
	_, err := os.Stat(p)
	if err == nil {
		return nil
	}
	switch {
	case os.Getenv(EnvVar) != "":
		return fmt.Errorf("fixture %s missing: %s=%s does not hold it (%v)", p, EnvVar, os.Getenv(EnvVar), err)
	case os.Getenv("CI") != "":
		return fmt.Errorf("fixture %s missing, and CI must run every check: set %s (%v)", p, EnvVar, err)
	}
	return nil
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
