package checkpoint

import (
	"github.com/ddpm/ddpm/internal/shared"
	"strings"
	"testing"
)

// sharedTestdata is shared.Path: the fixture under ../shared/testdata ($DDPM_SHARED_TESTDATA).
func sharedTestdata(t testing.TB, rel string) string { return shared.Path(t, rel) }

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
