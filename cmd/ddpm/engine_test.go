package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/cpu"
	"github.com/ddpm/ddpm/internal/shared"
)

// `sample --backend onednn` runs the CPU engine and reproduces diffusers' DDPM-20 from the recorded
// x_T and noise, to the tolerance of the pure-Go path (TestSampleReproducesDiffusersDDPM).
func TestSampleOnEngine(t *testing.T) {
	if err := cpu.Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	src := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	ref := filepath.Join(src, "reference_io.safetensors")
	outPath := filepath.Join(t.TempDir(), "x0.safetensors")
	_, stderr, err := ddpm(t, "sample", "--backend", "onednn", "--model", src, "--scheduler", "ddpm", "--steps", "20",
		"--init", ref+"#ddpm20_x_T", "--noise", ref+"#ddpm20_noise", "--out", outPath)
	if err != nil {
		t.Fatalf("sample: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "backend: onednn") {
		t.Errorf("stderr does not name the engine:\n%s", stderr)
	}
	got, err := checkpoint.ReadSafetensors(outPath)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := checkpoint.ReadSafetensors(ref)
	a, _ := got.Tensors["sample"].Float32()
	b, _ := r.Tensors["ddpm20_x_0"].Float32()
	if len(a) != len(b) {
		t.Fatalf("sample has %d values, want %d", len(a), len(b))
	}
	for i := range a {
		if d := a[i] - b[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("sample[%d] = %g, diffusers %g", i, a[i], b[i])
		}
	}
}
