package sampler

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// A HostDenoiser is a denoiser computed outside GoMLX (a CPU engine, say): for x_t, flat [N,C,H,W]
// float32, at timesteps t [N] and with class labels y [N] (-1: no label; y may be nil), it returns the
// model output (eps, x0 or v, per its Prediction), flat, of x_t's length. It must not keep or modify
// its arguments past the call; RunHost does not modify the slice it returns.
type HostDenoiser func(xt []float32, t []int32, y []int32) ([]float32, error)

// RunHost samples as Run does, with a denoiser computed on the host: the same plan, the same options
// and the same step arithmetic (the host Step, in float64), returning x_0 [N,C,H,W] float32 in model
// space, not clamped. StepsPerCall is ignored.
//
// x_T is opts.Init, or standard normal from a host generator seeded with opts.Seed (math/rand/v2's PCG,
// NormFloat64); the step noise is opts.Noise or, after x_T, the next draws of the same generator, one
// [N,C,H,W] draw for each step whose Sigma is not 0, in step order. So a seed gives the same samples on
// every machine, but not the samples of Run (whose numbers come from the device RNG): to compare the two,
// give both Init and Noise.
//
// RunHost calls opts.OnStep for the steps in opts.Record, opts.Progress after every step, and stops
// before the next step once opts.Context is done.
func RunHost(den HostDenoiser, plan Plan, opts Options) (*tensors.Tensor, error) {
	if den == nil {
		return nil, fmt.Errorf("sampler: RunHost needs a denoiser")
	}
	if len(plan) == 0 {
		return nil, fmt.Errorf("sampler: empty plan; build one with DDPM.Plan or DDIM.Plan")
	}
	if err := opts.validate(plan); err != nil {
		return nil, err
	}
	dims := append([]int{opts.N}, opts.Shape...)
	size := 1
	for _, d := range dims {
		size *= d
	}
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x6464706d)) // "ddpm"
	normal := func() []float32 {
		z := make([]float32, size)
		for i := range z {
			z[i] = float32(rng.NormFloat64())
		}
		return z
	}

	var xt []float32
	if opts.Init != nil {
		init, err := tensors.CopyFlatData[float32](opts.Init)
		if err != nil {
			return nil, fmt.Errorf("sampler: run: Options.Init: %w", err)
		}
		xt = init
	} else {
		xt = normal()
	}
	var noise []float32
	if opts.Noise != nil {
		flat, err := opts.stepNoise(plan)
		if err != nil {
			return nil, err
		}
		noise = flat
	}
	labels := slices.Clone(opts.Labels)
	record := make(map[int]bool, len(opts.Record))
	for _, i := range opts.Record {
		record[i] = true
	}

	var h [2][]float32 // the saved buffers (nil: zero)
	ts := make([]int32, opts.N)
	for i, st := range plan {
		if err := opts.stopped(i, len(plan)); err != nil {
			return nil, err
		}
		for j := range ts {
			ts[j] = int32(st.T)
		}
		m, err := den(st.Coef.ModelInput(xt), ts, labels)
		if err != nil {
			return nil, fmt.Errorf("sampler: run: step %d (t=%d): %w", i, st.T, err)
		}
		if len(m) != size {
			return nil, fmt.Errorf("sampler: run: step %d (t=%d): the denoiser returned %d values for x_t of shape %v; want %d",
				i, st.T, len(m), dims, size)
		}
		var z []float32
		switch {
		case noise != nil:
			z = noise[i*size : (i+1)*size]
		case st.Coef.Sigma != 0:
			z = normal()
		}
		prev, x0Hat, next := Advance(st.Coef, xt, m, z, h)
		h = next
		if record[i] {
			opts.OnStep(i, st.T, tensors.FromFlatDataAndDimensions(xt, dims...), tensors.FromFlatDataAndDimensions(x0Hat, dims...))
		}
		xt = prev
		if opts.Progress != nil {
			opts.Progress(i+1, len(plan))
		}
	}
	return tensors.FromFlatDataAndDimensions(xt, dims...), nil
}
