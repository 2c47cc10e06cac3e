package cpu

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// TestSampleMatchesDiffusers runs diffusers' DDIM-10 (from the recorded x_T) and DDPM-20 (with the
// recorded noise) pipelines of the tiny fixture on the engine, to the tolerances of `ddpm verify`
// (cmd/ddpm/verify.go explains them: DDIM-10 of this random-weight UNet amplifies the forward pass's
// float32 rounding to ~1e-3).
func TestSampleMatchesDiffusers(t *testing.T) {
	requireEngine(t)
	dir := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	p, err := pipeline.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := checkpoint.ReadSafetensors(filepath.Join(dir, "reference_io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	sched, err := schedule.New(p.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	flat, err := nn.Flatten(p.UNet.Specs(), p.Weights)
	if err != nil {
		t.Fatal(err)
	}
	net, err := New(p.UNet.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	if err := net.SetWeights(tensors.MustCopyFlatData[float32](flat)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, init, noise, want, ts string
		steps                       int
		tol                         float64
	}{
		{"DDIM-10", "ddim10_x_T", "", "ddim10_x_0", "ddim10_timesteps", 10, 2e-3},
		{"DDPM-20", "ddpm20_x_T", "ddpm20_noise", "ddpm20_x_0", "ddpm20_timesteps", 20, 1e-4},
	} {
		t.Run(c.name, func(t *testing.T) {
			var plan sampler.Plan
			if c.noise == "" {
				plan, err = p.DDIM.Plan(sched, c.steps)
			} else {
				plan, err = p.DDPM.Plan(sched, c.steps)
			}
			if err != nil {
				t.Fatal(err)
			}
			var ts []int32
			for _, s := range plan {
				ts = append(ts, int32(s.T))
			}
			if want := i32(t, ref, c.ts); !slices.Equal(ts, want) {
				t.Fatalf("timesteps %v, diffusers %v", ts, want)
			}
			x0, shape := f32(t, ref, c.init)
			opts := sampler.Options{N: shape[0], Shape: shape[1:], Init: tensors.FromFlatDataAndDimensions(x0, shape...)}
			if c.noise != "" {
				z, zs := f32(t, ref, c.noise)
				opts.Noise = tensors.FromFlatDataAndDimensions(z, zs...)
			}
			got, err := Sample(net, plan, opts)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := f32(t, ref, c.want)
			d := maxAbsDiff(got, want)
			t.Logf("max abs error %.3g", d)
			if d > c.tol {
				t.Errorf("%s differs from diffusers by %.3g, want <= %g", c.name, d, c.tol)
			}
		})
	}
}
