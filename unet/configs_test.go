package unet

import (
	"path/filepath"
	"testing"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/nn"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Other members of the UNet2DModel family (more levels, several heads, flip_sin_to_cos, padding 1,
// one channel, scale_shift, class labels of the three embedding types, no mid block, ...), against outputs of our PyTorch
// re-implementation (bench/unet_torch.py), which itself matches diffusers' fixture to 5e-6
// (testdata/configs/README.md).
func TestConfigFamily(t *testing.T) {
	b, _, err := backend.New("go")
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := filepath.Glob("testdata/configs/*/config.json")
	if err != nil || len(dirs) < 8 {
		t.Fatalf("want the config fixtures in testdata/configs, found %d (%v)", len(dirs), err)
	}
	for _, cfgPath := range dirs {
		dir := filepath.Dir(cfgPath)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			cfg, err := LoadConfig(cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			wf, err := checkpoint.ReadSafetensors(filepath.Join(dir, "diffusion_pytorch_model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			w, err := m.Weights(wf)
			if err != nil {
				t.Fatal(err)
			}
			io, err := checkpoint.ReadSafetensors(filepath.Join(dir, "io.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			f32 := func(name string) *tensors.Tensor {
				v, err := io.Tensors[name].Float32()
				if err != nil {
					t.Fatal(err)
				}
				return tensors.FromFlatDataAndDimensions(v, io.Tensors[name].Shape...)
			}
			i32 := func(name string) *tensors.Tensor {
				v, err := io.Tensors[name].Int64s()
				if err != nil {
					t.Fatal(err)
				}
				out := make([]int32, len(v))
				for i := range v {
					out[i] = int32(v[i])
				}
				return tensors.FromFlatDataAndDimensions(out, len(out))
			}
			_, hasLabels := io.Tensors["class_labels"]
			exec, err := graph.NewExec(b, func(in []*graph.Node) *graph.Node {
				n := len(m.Specs())
				var y *graph.Node
				if hasLabels {
					y = in[n+2]
				}
				return m.Forward(nn.NewWeights(m.Specs(), in[:n]).Scope(), in[n], in[n+1], y)
			})
			if err != nil {
				t.Fatal(err)
			}
			args := []any{}
			for _, x := range w {
				args = append(args, x)
			}
			args = append(args, f32("sample"), i32("timesteps"))
			if hasLabels {
				if io.Tensors["class_labels"].DType == checkpoint.F32 {
					args = append(args, f32("class_labels")) // class_embed_type identity: embeddings [N, E]
				} else {
					args = append(args, i32("class_labels"))
				}
			}
			out, err := exec.Exec(args...)
			if err != nil {
				t.Fatal(err)
			}
			got := tensors.MustCopyFlatData[float32](out[0])
			want := tensors.MustCopyFlatData[float32](f32("expected"))
			// float32 on both sides, sums in other orders: a few 1e-6 (the worst seen is 1.4e-6).
			d := maxAbsDiff(got, want)
			t.Logf("max abs error %.3g", d)
			if d > 2e-5 {
				t.Errorf("forward differs from the reference by %.3g, want <= 2e-5", d)
			}
		})
	}
}
