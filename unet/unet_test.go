package unet

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/nn"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func loadTiny(t *testing.T, weights string) (*Model, []*tensors.Tensor) {
	t.Helper()
	dir := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	cfg, err := LoadConfig(filepath.Join(dir, "unet", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var f *checkpoint.File
	if filepath.Ext(weights) == ".bin" {
		f, err = checkpoint.ReadTorch(filepath.Join(dir, "unet", weights))
	} else {
		f, err = checkpoint.ReadSafetensors(filepath.Join(dir, "unet", weights))
	}
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.Weights(f)
	if err != nil {
		t.Fatal(err)
	}
	return m, w
}

func maxAbsDiff(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

func TestForwardMatchesDiffusers(t *testing.T) {
	ref, err := checkpoint.ReadSafetensors(shared.Path(t, "diffusers/tiny-ddpm-cifar10/reference_io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) *tensors.Tensor {
		x := ref.Tensors[name]
		if x.DType == checkpoint.I64 {
			v, _ := x.Int64s()
			i32 := make([]int32, len(v))
			for i := range v {
				i32[i] = int32(v[i])
			}
			return tensors.FromFlatDataAndDimensions(i32, x.Shape...)
		}
		v, _ := x.Float32()
		return tensors.FromFlatDataAndDimensions(v, x.Shape...)
	}
	b, _, err := backend.New("go")
	if err != nil {
		t.Fatal(err)
	}
	for _, weights := range []string{"diffusion_pytorch_model.safetensors", "legacy_attention_names.safetensors", "diffusion_pytorch_model.bin"} {
		m, w := loadTiny(t, weights)
		exec, err := graph.NewExec(b, func(in []*graph.Node) *graph.Node {
			n := len(m.Specs())
			return m.Forward(nn.NewWeights(m.Specs(), in[:n]).Scope(), in[n], in[n+1], nil)
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name, want string
			t          *tensors.Tensor
		}{
			{"timesteps [3 777]", "expected", get("timesteps")},
			{"scalar 42", "expected_t42", tensors.FromScalar(int32(42))},
		} {
			t.Run(weights+"/"+c.name, func(t *testing.T) {
				args := make([]any, 0, len(w)+2)
				for _, x := range w {
					args = append(args, x)
				}
				args = append(args, get("sample"), c.t)
				out, err := exec.Exec(args...)
				if err != nil {
					t.Fatal(err)
				}
				got := tensors.MustCopyFlatData[float32](out[0])
				want := tensors.MustCopyFlatData[float32](get(c.want))
				d := maxAbsDiff(got, want)
				t.Logf("max abs error %.3g", d)
				// diffusers ran in float32; our sums run in another order, and the timestep phase
				// t*f at t = 777 carries float32 rounding of ~1e-4 rad.
				if d > 2e-5 {
					t.Errorf("forward(%s) differs from diffusers by %.3g, want <= 2e-5", c.name, d)
				}
			})
		}
	}
}
