package cpu

import (
	"fmt"
	"math/rand/v2"

	"github.com/ddpm/ddpm/sampler"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Sample follows plan from x_T with the network on the engine and returns x_0 [N,C,H,W] (model space,
// not clamped), as sampler.Run does on a GoMLX backend: each step evaluates the network once and applies
// sampler.Step on the host. opts.Seed seeds a host RNG (math/rand/v2's PCG) for x_T and the step noise
// unless opts.Init and opts.Noise are given, so the same seed gives the same samples here, and other
// samples than on a GoMLX backend. opts.StepsPerCall is ignored (there is nothing to compile).
//
// It is the smallest host loop over sampler's plan; it goes away when package sampler has its own loop
// over a host denoiser.
func Sample(net *Net, plan sampler.Plan, opts sampler.Options) ([]float32, error) {
	if len(plan) == 0 {
		return nil, fmt.Errorf("cpu: empty plan; build one with DDPM.Plan or DDIM.Plan")
	}
	if len(opts.Shape) != 3 {
		return nil, fmt.Errorf("cpu: sample shape %v, want [C, H, W]", opts.Shape)
	}
	n, c, h, w := opts.N, opts.Shape[0], opts.Shape[1], opts.Shape[2]
	if c != net.Config.InChannels || n < 1 {
		return nil, fmt.Errorf("cpu: %d samples of %d channels, want at least one of %d", n, c, net.Config.InChannels)
	}
	size := n * c * h * w
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed))
	normal := func() []float32 {
		z := make([]float32, size)
		for i := range z {
			z[i] = float32(rng.NormFloat64())
		}
		return z
	}
	var xt []float32
	if opts.Init != nil {
		v, err := tensors.CopyFlatData[float32](opts.Init)
		if err != nil || len(v) != size {
			return nil, fmt.Errorf("cpu: Options.Init has shape %s, want float32 [%d %d %d %d]", opts.Init.Shape(), n, c, h, w)
		}
		xt = v
	} else {
		xt = normal()
	}
	var noise []float32
	if opts.Noise != nil {
		v, err := tensors.CopyFlatData[float32](opts.Noise)
		if err != nil || len(v) != len(plan)*size {
			return nil, fmt.Errorf("cpu: Options.Noise has shape %s, want float32 [%d %d %d %d %d]", opts.Noise.Shape(), len(plan), n, c, h, w)
		}
		noise = v
	}
	record := map[int]bool{}
	for _, i := range opts.Record {
		record[i] = true
	}
	if len(record) > 0 && opts.OnStep == nil {
		return nil, fmt.Errorf("cpu: Options.Record is set but OnStep is nil")
	}
	if opts.Labels != nil && len(opts.Labels) != n {
		return nil, fmt.Errorf("cpu: %d labels for %d samples", len(opts.Labels), n)
	}
	t := make([]int32, n)
	for i, st := range plan {
		for j := range t {
			t[j] = int32(st.T)
		}
		m, err := net.Forward(xt, n, h, w, t, opts.Labels)
		if err != nil {
			return nil, fmt.Errorf("cpu: step %d (t=%d): %w", i, st.T, err)
		}
		var z []float32
		switch {
		case st.Coef.Sigma == 0:
		case noise != nil:
			z = noise[i*size : (i+1)*size]
		default:
			z = normal()
		}
		prev, x0Hat := sampler.Step(st.Coef, xt, m, z)
		if record[i] {
			dims := []int{n, c, h, w}
			opts.OnStep(i, st.T, tensors.FromFlatDataAndDimensions(xt, dims...), tensors.FromFlatDataAndDimensions(x0Hat, dims...))
		}
		xt = prev
	}
	return xt, nil
}
