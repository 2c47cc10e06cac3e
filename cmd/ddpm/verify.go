package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/models"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Tolerances of `ddpm verify`, against diffusers' float32 outputs. The UNet forward pass differs by
// float32 rounding in another order of sums (3e-6 seen). DDPM's 20 steps keep that size (4e-6 seen).
// DDIM's first steps divide the noise estimate by sqrt(alphaBar_t) ~ 1/100 to get x0, and this
// random-weight UNet clips 99% of x0 at t = 900, so DDIM 10 amplifies the forward pass's rounding:
// perturbing the UNet output by 3e-6 (in PyTorch, the same model) moves the DDIM-10 result by
// 0.8e-3 to 1.2e-3, and our result is 3.2e-4 from diffusers'. 2e-3 is that noise floor, with room.
const (
	verifyForwardTol = 2e-5
	verifyDDPMTol    = 1e-4
	verifyDDIMTol    = 2e-3
)

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", "[--fixture DIR] [--backend B]", stderr)
	fixture := fs.String("fixture", "",
		"a diffusers pipeline directory with reference_io.safetensors, such as ../shared/testdata/diffusers/tiny-ddpm-cifar10 (default: the copy of it bundled in the binary, safetensors weights only)")
	exact := fs.Bool("exact", true, "float32-exact products and convolutions on GPUs (3 TF32 passes); false shows what TF32 gives, without pass/fail")
	bk := backendFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	b, info, err := openBackend(*bk, stderr)
	if err != nil {
		return err
	}
	if *exact {
		nn.SetPrecision(nn.Highest)
		defer nn.SetPrecision(nn.Default)
	}
	if *fixture == "" {
		if *fixture, err = models.Dir("tiny-ddpm-cifar10"); err != nil {
			return fmt.Errorf("verify: the bundled reference: %w (or pass --fixture DIR, the tiny-ddpm-cifar10 directory of ../shared/testdata/diffusers)", err)
		}
	}
	results, err := verify(b, *fixture)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "diffusers reference %s on %s (exact float32: %v):\n", *fixture, info, *exact)
	fmt.Fprintf(stdout, "%-34s %-40s %12s %10s\n", "check", "weights", "max |err|", "tolerance")
	failed := 0
	for _, r := range results {
		mark := "ok"
		switch {
		case !*exact && info.Kind != backend.Go:
			mark = "(TF32, not checked)"
		case !(r.err <= r.tol):
			mark, failed = "FAIL", failed+1
		}
		fmt.Fprintf(stdout, "%-34s %-40s %12.3g %10.0e %s\n", r.check, r.weights, r.err, r.tol, mark)
	}
	if failed > 0 {
		return fmt.Errorf("verify: %d of %d checks failed", failed, len(results))
	}
	return nil
}

type verifyResult struct {
	check, weights string
	err, tol       float64
}

// verify runs the UNet and both samplers of the pipeline in dir against its reference_io.safetensors,
// once per weights file present: the current safetensors names, the legacy attention names, torch .bin.
func verify(b backends.Backend, dir string) ([]verifyResult, error) {
	p, err := pipeline.Load(dir)
	if err != nil {
		return nil, err
	}
	ref, err := checkpoint.ReadSafetensors(filepath.Join(dir, "reference_io.safetensors"))
	if err != nil {
		return nil, err
	}
	get := func(name string) (*tensors.Tensor, error) {
		t, ok := ref.Tensors[name]
		if !ok {
			return nil, fmt.Errorf("verify: %s has no %q", dir, name)
		}
		if t.DType == checkpoint.I64 {
			v, _ := t.Int64s()
			out := make([]int32, len(v))
			for i := range v {
				out[i] = int32(v[i])
			}
			return tensors.FromFlatDataAndDimensions(out, t.Shape...), nil
		}
		v, err := t.Float32()
		if err != nil {
			return nil, err
		}
		return tensors.FromFlatDataAndDimensions(v, t.Shape...), nil
	}
	sched, err := schedule.New(p.Schedule)
	if err != nil {
		return nil, err
	}
	var results []verifyResult
	for _, wf := range []string{"diffusion_pytorch_model.safetensors", "legacy_attention_names.safetensors", "diffusion_pytorch_model.bin"} {
		path := filepath.Join(dir, "unet", wf)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		var f *checkpoint.File
		if filepath.Ext(wf) == ".bin" {
			f, err = checkpoint.ReadTorch(path)
		} else {
			f, err = checkpoint.ReadSafetensors(path)
		}
		if err != nil {
			return nil, err
		}
		w, err := p.UNet.Weights(f)
		if err != nil {
			return nil, err
		}
		model, err := newUNetModel(p.UNet, w)
		if err != nil {
			return nil, err
		}

		// The UNet alone.
		exec, err := graph.NewExec(b, func(in []*graph.Node) *graph.Node {
			n := len(w)
			return p.UNet.Forward(nn.NewWeights(p.UNet.Specs(), in[:n]).Scope(), in[n], in[n+1], nil)
		})
		if err != nil {
			return nil, err
		}
		sample, err := get("sample")
		if err != nil {
			return nil, err
		}
		for _, c := range []struct{ name, t, want string }{
			{"unet(sample, timesteps [3 777])", "timesteps", "expected"},
			{"unet(sample, 42)", "", "expected_t42"},
		} {
			t := tensors.FromScalar(int32(42))
			if c.t != "" {
				if t, err = get(c.t); err != nil {
					return nil, err
				}
			}
			args := make([]any, 0, len(w)+2)
			for _, x := range w {
				args = append(args, x)
			}
			out, err := exec.Exec(append(args, sample, t)...)
			if err != nil {
				return nil, err
			}
			want, err := get(c.want)
			if err != nil {
				return nil, err
			}
			results = append(results, verifyResult{c.name, wf, maxAbsErr(out[0], want), verifyForwardTol})
		}

		// DDIM, 10 steps, eta 0, from the recorded x_T; and DDPM, 20 steps, with the recorded noise.
		for _, c := range []struct {
			name, kind, init, noise, want, ts string
			steps                             int
		}{
			{"DDIM 10 steps, eta 0", "ddim", "ddim10_x_T", "", "ddim10_x_0", "ddim10_timesteps", 10},
			{"DDPM 20 steps, recorded noise", "ddpm", "ddpm20_x_T", "ddpm20_noise", "ddpm20_x_0", "ddpm20_timesteps", 20},
		} {
			var plan sampler.Plan
			if c.kind == "ddim" {
				plan, err = p.DDIM.Plan(sched, c.steps)
			} else {
				plan, err = p.DDPM.Plan(sched, c.steps)
			}
			if err != nil {
				return nil, err
			}
			wantTs, err := get(c.ts)
			if err != nil {
				return nil, err
			}
			var ts []int32
			for _, s := range plan {
				ts = append(ts, int32(s.T))
			}
			if !slices.Equal(ts, tensors.MustCopyFlatData[int32](wantTs)) {
				return nil, fmt.Errorf("verify: %s: timesteps %v, diffusers %v", c.name, ts, tensors.MustCopyFlatData[int32](wantTs))
			}
			init, err := get(c.init)
			if err != nil {
				return nil, err
			}
			d := init.Shape().Dimensions
			opts := sampler.Options{N: d[0], Shape: d[1:], Init: init}
			if c.noise != "" {
				if opts.Noise, err = get(c.noise); err != nil {
					return nil, err
				}
			}
			x, err := sampler.Run(b, model, plan, opts)
			if err != nil {
				return nil, err
			}
			want, err := get(c.want)
			if err != nil {
				return nil, err
			}
			tol := verifyDDPMTol
			if c.kind == "ddim" {
				tol = verifyDDIMTol
			}
			results = append(results, verifyResult{c.name, wf, maxAbsErr(x, want), tol})
		}
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("verify: no weights file in %s", filepath.Join(dir, "unet"))
	}
	return results, nil
}

func maxAbsErr(a, b *tensors.Tensor) float64 {
	x, y := tensors.MustCopyFlatData[float32](a), tensors.MustCopyFlatData[float32](b)
	if len(x) != len(y) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range x {
		m = max(m, math.Abs(float64(x[i])-float64(y[i])))
	}
	return m
}
