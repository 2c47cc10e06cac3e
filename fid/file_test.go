package fid

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
)

var testExtractor = Extractor{Name: "pytorch-fid-inception-v3/pool3", WeightsHash: "sha256:6726825d"}

func testStats(t *testing.T) *Stats {
	t.Helper()
	s := statsOf(t, 31, 40, 5)
	s.Extractor = testExtractor
	s.Source = "random features, seed 31"
	return s
}

func TestSaveLoadRoundTrip(t *testing.T) {
	s := testStats(t)
	path := filepath.Join(t.TempDir(), "ref.safetensors")
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want Extractor
	}{
		{"exact", testExtractor},
		{"nameOnly", Extractor{Name: testExtractor.Name}},
		{"inspect", Extractor{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Load(path, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			// float64 stored bit for bit.
			if e := maxAbsDiff(got.Mu, s.Mu); e != 0 || len(got.Mu) != len(s.Mu) {
				t.Errorf("Mu differs after Save/Load by %g", e)
			}
			if e := maxAbsDiff(got.Sigma, s.Sigma); e != 0 || len(got.Sigma) != len(s.Sigma) {
				t.Errorf("Sigma differs after Save/Load by %g", e)
			}
			if got.N != s.N || got.Extractor != s.Extractor || got.Source != s.Source {
				t.Errorf("Load = N %d, %v, %q; want N %d, %v, %q", got.N, got.Extractor, got.Source, s.N, s.Extractor, s.Source)
			}
		})
	}
	// Saving over an existing file replaces it and leaves no temporary file behind.
	s.N++
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after two saves, want 1", len(entries))
	}
	if got, err := Load(path, testExtractor); err != nil || got.N != s.N {
		t.Errorf("Load after overwrite: N = %v, err = %v; want N = %d", got, err, s.N)
	}
}

func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.safetensors")
	if err := testStats(t).Save(good); err != nil {
		t.Fatal(err)
	}
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// withTensors writes a file with the given tensors and metadata through the package encoder.
	withTensors := func(name string, tensors map[string]*checkpoint.Tensor, meta map[string]string) string {
		p := filepath.Join(dir, name)
		if err := checkpoint.WriteSafetensors(p, &checkpoint.File{Tensors: tensors, Metadata: meta}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f64 := checkpoint.NewF64
	meta := map[string]string{"format": statsFormat, "n": "10", "extractor": testExtractor.Name, "weights_hash": testExtractor.WeightsHash}
	for _, tc := range []struct {
		name   string
		path   string
		want   Extractor
		substr string
	}{
		{"otherExtractor", good, Extractor{Name: "clip-vit-b32"}, `made by extractor "pytorch-fid-inception-v3/pool3", want "clip-vit-b32"`},
		{"otherWeights", good, Extractor{Name: testExtractor.Name, WeightsHash: "sha256:0000"}, `made with weights "sha256:6726825d", want "sha256:0000"`},
		{"missing", filepath.Join(dir, "nope.safetensors"), testExtractor, "no such file"},
		{"truncated", write("truncated.safetensors", goodBytes[:len(goodBytes)-8]), testExtractor, "truncated.safetensors"},
		{"tooShort", write("short.safetensors", goodBytes[:5]), testExtractor, "short.safetensors"},
		{"hugeHeader", write("huge.safetensors", binary.LittleEndian.AppendUint64(nil, 1<<40)), testExtractor, "huge.safetensors"},
		{"notStats", withTensors("weights.safetensors", map[string]*checkpoint.Tensor{"mu": f64([]int{2}, []float64{0, 0})}, nil), testExtractor, "not a statistics file"},
		{"sigmaShape", withTensors("shape.safetensors", map[string]*checkpoint.Tensor{
			"mu": f64([]int{2}, []float64{0, 0}), "sigma": f64([]int{4}, []float64{1, 0, 0, 1})}, meta), testExtractor, "want [D] and [D D]"},
		{"float32", withTensors("f32.safetensors", map[string]*checkpoint.Tensor{
			"mu":    checkpoint.NewF32([]int{1}, []float32{0}),
			"sigma": checkpoint.NewF32([]int{1, 1}, []float32{1})}, meta), testExtractor, "want F64"},
		{"extraTensor", withTensors("extra.safetensors", map[string]*checkpoint.Tensor{
			"mu": f64([]int{1}, []float64{0}), "sigma": f64([]int{1, 1}, []float64{1}),
			"features": f64([]int{1}, []float64{0})}, meta), testExtractor, "exactly the tensors mu and sigma"},
		{"badN", withTensors("n.safetensors", map[string]*checkpoint.Tensor{
			"mu": f64([]int{1}, []float64{0}), "sigma": f64([]int{1, 1}, []float64{1})},
			map[string]string{"format": statsFormat, "n": "many"}), Extractor{}, "sample count"},
		{"negativeVariance", withTensors("neg.safetensors", map[string]*checkpoint.Tensor{
			"mu": f64([]int{1}, []float64{0}), "sigma": f64([]int{1, 1}, []float64{-1})}, meta), testExtractor, "negative variance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path, tc.want)
			if err == nil || !strings.Contains(err.Error(), tc.substr) || !strings.HasPrefix(err.Error(), "fid: ") {
				t.Errorf("Load error = %v; want one starting with \"fid: \" and containing %q", err, tc.substr)
			}
		})
	}
}

func TestSaveRefusesInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	err := (&Stats{Mu: []float64{0, 0}, Sigma: []float64{1}, N: 3}).Save(path)
	if err == nil || !strings.Contains(err.Error(), "not saving") {
		t.Errorf("Save of invalid statistics: error = %v, want one saying it is not saving", err)
	}
	if _, statErr := os.Stat(path); !os.IsNotExist(statErr) {
		t.Errorf("Save of invalid statistics left a file: %v", statErr)
	}
}
