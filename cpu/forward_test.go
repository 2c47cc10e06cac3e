package cpu

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// requireEngine skips the test where oneDNN is missing, except in CI ($CI set), where .ci/run
// installs it and a missing library is a failure.
func requireEngine(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

// load reads a config and its weights as the flat vector.
func load(t *testing.T, cfgPath, weightsPath string) (*unet.Model, []float32) {
	t.Helper()
	cfg, err := unet.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := unet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var f *checkpoint.File
	if filepath.Ext(weightsPath) == ".bin" {
		f, err = checkpoint.ReadTorch(weightsPath)
	} else {
		f, err = checkpoint.ReadSafetensors(weightsPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.Weights(f)
	if err != nil {
		t.Fatal(err)
	}
	flat, err := nn.Flatten(m.Specs(), w)
	if err != nil {
		t.Fatal(err)
	}
	return m, tensors.MustCopyFlatData[float32](flat)
}

func f32(t *testing.T, f *checkpoint.File, name string) ([]float32, []int) {
	t.Helper()
	x, ok := f.Tensors[name]
	if !ok {
		t.Fatalf("no tensor %q in the fixture", name)
	}
	v, err := x.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v, x.Shape
}

func i32(t *testing.T, f *checkpoint.File, name string) []int32 {
	t.Helper()
	v, err := f.Tensors[name].Int64s()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int32, len(v))
	for i := range v {
		out[i] = int32(v[i])
	}
	return out
}

func TestForwardMatchesDiffusers(t *testing.T) {
	requireEngine(t)
	dir := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	ref, err := checkpoint.ReadSafetensors(filepath.Join(dir, "reference_io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	x, shape := f32(t, ref, "sample")
	n, h, w := shape[0], shape[2], shape[3]
	for _, weights := range []string{"diffusion_pytorch_model.safetensors", "legacy_attention_names.safetensors", "diffusion_pytorch_model.bin"} {
		m, flat := load(t, filepath.Join(dir, "unet", "config.json"), filepath.Join(dir, "unet", weights))
		net, err := New(m.Config)
		if err != nil {
			t.Fatal(err)
		}
		if err := net.SetWeights(flat); err != nil {
			t.Fatal(err)
		}
		t42 := make([]int32, n)
		for i := range t42 {
			t42[i] = 42
		}
		for _, c := range []struct {
			name, want string
			t          []int32
		}{
			{"timesteps", "expected", i32(t, ref, "timesteps")},
			{"t=42", "expected_t42", t42},
		} {
			got, err := net.Forward(x, n, h, w, c.t, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := f32(t, ref, c.want)
			// The GoMLX path's tolerance (unet.TestForwardMatchesDiffusers): float32 sums in another
			// order, and the timestep phase t*f at t = 777 carries ~1e-4 rad of float32 rounding.
			d := maxAbsDiff(got, want)
			t.Logf("%s %s: max abs error %.3g", weights, c.name, d)
			if d > 2e-5 {
				t.Errorf("%s: Forward(%s) differs from diffusers by %.3g, want <= 2e-5", weights, c.name, d)
			}
		}
		net.Close()
	}
}

// TestConfigFamily runs every config of unet/testdata/configs against its reference output, the
// fixtures the GoMLX path is checked against, with the same tolerance (class_embed_type "identity",
// which takes float embeddings for labels, is the one the engine declines).
func TestConfigFamily(t *testing.T) {
	requireEngine(t)
	dirs, err := filepath.Glob("../unet/testdata/configs/*/config.json")
	if err != nil || len(dirs) < 8 {
		t.Fatalf("want the config fixtures in unet/testdata/configs, found %d (%v)", len(dirs), err)
	}
	for _, cfgPath := range dirs {
		dir := filepath.Dir(cfgPath)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m, flat := load(t, cfgPath, filepath.Join(dir, "diffusion_pytorch_model.safetensors"))
			if m.Config.ClassEmbedding() == unet.Identity {
				// Float class embeddings do not fit the engine's int32 labels: it must say so (the
				// callers then use the GoMLX path).
				if err := Supports(m.Config); err == nil {
					t.Errorf("Supports(class_embed_type identity) = nil, want an error")
				}
				return
			}
			io, err := checkpoint.ReadSafetensors(filepath.Join(dir, "io.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			net, err := New(m.Config)
			if err != nil {
				t.Fatal(err)
			}
			defer net.Close()
			if err := net.SetWeights(flat); err != nil {
				t.Fatal(err)
			}
			x, shape := f32(t, io, "sample")
			var y []int32
			if _, ok := io.Tensors["class_labels"]; ok {
				y = i32(t, io, "class_labels")
			}
			got, err := net.Forward(x, shape[0], shape[2], shape[3], i32(t, io, "timesteps"), y)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := f32(t, io, "expected")
			// The GoMLX path's tolerance (unet.TestConfigFamily): float32, sums in other orders.
			if d := maxAbsDiff(got, want); d > 2e-5 {
				t.Errorf("Forward differs from the reference by %.3g, want <= 2e-5", d)
			}
		})
	}
}

// TestMatchesGoMLX compares the engine with the GoMLX path on the same random weights and inputs,
// for the bundled MNIST config (at 12x12) at batch 3 (two forward calls: the second reuses the plan).
func TestMatchesGoMLX(t *testing.T) {
	requireEngine(t)
	cfg, err := unet.LoadConfig("../models/mnist/unet/config.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := unet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ws := nn.InitTensors(m.Specs(), 7)
	flatT, err := nn.Flatten(m.Specs(), ws)
	if err != nil {
		t.Fatal(err)
	}
	flat := tensors.MustCopyFlatData[float32](flatT)
	// Non-trivial norms and biases: the default init has gamma 1, beta 0.
	for i := range flat {
		flat[i] += 0.01 * float32(math.Sin(float64(i)))
	}
	const n, h, w = 3, 12, 12
	x := make([]float32, n*h*w)
	for i := range x {
		x[i] = float32(math.Sin(0.37 * float64(i)))
	}
	ts := []int32{0, 500, 999}
	exec, err := graph.NewExec(shared.GoBackend(t), func(flat, x, t *graph.Node) *graph.Node {
		return m.Forward(nn.NewWeights(m.Specs(), nn.SplitFlat(m.Specs(), flat)).Scope(), x, t, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Exec(tensors.FromFlatDataAndDimensions(flat, len(flat)), tensors.FromFlatDataAndDimensions(x, n, 1, h, w),
		tensors.FromFlatDataAndDimensions(ts, n))
	if err != nil {
		t.Fatal(err)
	}
	want := tensors.MustCopyFlatData[float32](out[0])
	net, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	if err := net.SetWeights(flat); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		got, err := net.Forward(x, n, h, w, ts, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := maxAbsDiff(got, want)
		t.Logf("call %d: max abs difference %.3g", i, d)
		if d > 2e-5 {
			t.Errorf("call %d: Forward differs from the GoMLX path by %.3g, want <= 2e-5", i, d)
		}
	}
}
