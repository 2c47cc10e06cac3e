package fid

import (
	"github.com/ddpm/ddpm/internal/shared"
	"slices"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
)

// sharedTestdata is shared.Path: the fixture under ../shared/testdata ($DDPM_SHARED_TESTDATA).
func sharedTestdata(t *testing.T, rel string) string { return shared.Path(t, rel) }

// readFixture reads a safetensors fixture.
func readFixture(t *testing.T, path string) *checkpoint.File {
	t.Helper()
	f, err := checkpoint.ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// fixtureFloat32 returns the elements of the named tensor of a fixture, checking its shape.
func fixtureFloat32(t *testing.T, f *checkpoint.File, name string, shape ...int) []float32 {
	t.Helper()
	x := fixtureTensor(t, f, name, shape...)
	v, err := x.Float32()
	if err != nil {
		t.Fatalf("fixture tensor %q: %v", name, err)
	}
	return v
}

// fixtureFloat64 returns the elements of the named tensor of a fixture, checking its shape.
func fixtureFloat64(t *testing.T, f *checkpoint.File, name string, shape ...int) []float64 {
	t.Helper()
	x := fixtureTensor(t, f, name, shape...)
	v, err := x.Float64()
	if err != nil {
		t.Fatalf("fixture tensor %q: %v", name, err)
	}
	return v
}

func fixtureTensor(t *testing.T, f *checkpoint.File, name string, shape ...int) *checkpoint.Tensor {
	t.Helper()
	x, ok := f.Tensors[name]
	if !ok {
		t.Fatalf("fixture has no tensor %q (has %v)", name, f.Names())
	}
	if !slices.Equal(x.Shape, shape) {
		t.Fatalf("fixture tensor %q has shape %v, want %v", name, x.Shape, shape)
	}
	return x
}
