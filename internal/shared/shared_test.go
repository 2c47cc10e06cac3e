package shared

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPathFailsWhenNamed checks that a missing fixture fails the test, rather than skipping it, when
// $DDPM_SHARED_TESTDATA names a directory or $CI is set; and skips it only when neither is set.
func TestPathFailsWhenNamed(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nowhere")
	for _, c := range []struct {
		env, ci string
		want    string // "" for a skip
	}{
		{missing, "", "DDPM_SHARED_TESTDATA=" + missing + " does not hold it"},
		{missing, "true", "DDPM_SHARED_TESTDATA=" + missing + " does not hold it"},
		{"", "true", "CI must run every check"},
		{"", "", ""},
	} {
		t.Setenv(EnvVar, c.env)
		t.Setenv("CI", c.ci)
		p := filepath.Join(missing, "diffusers", "x.json")
		if c.env == "" {
			p = filepath.Join(t.TempDir(), "x.json") // the default directory may exist on this machine
		}
		err := check(p)
		if c.want == "" {
			if err != nil {
				t.Errorf("env %q, CI %q: %v; want a skip", c.env, c.ci, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("env %q, CI %q: %v; want an error containing %q", c.env, c.ci, err, c.want)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvVar, dir)
	if err := check(filepath.Join(dir, "x.json")); err != nil {
		t.Errorf("a fixture that exists: %v", err)
	}
}

// TestBinaryLinksNoTesting checks that the ddpm binary imports neither testing nor this package (whose
// Dir finds the fixtures from the source tree), so that `ddpm verify` and the rest work anywhere.
func TestBinaryLinksNoTesting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/ddpm/ddpm/cmd/ddpm").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, bad := range []string{"testing", "github.com/ddpm/ddpm/internal/shared", "github.com/ddpm/ddpm/internal/memcap"} {
		if slices.Contains(deps, bad) {
			t.Errorf("cmd/ddpm depends on %s", bad)
		}
	}
}
