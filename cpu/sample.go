package cpu

import (
	"fmt"

	"github.com/ddpm/ddpm/sampler"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Denoiser is the network as sampler's host denoiser for samples of h x w pixels: the batch size is
// that of each call's timesteps.
func (n *Net) Denoiser(h, w int) sampler.HostDenoiser {
	return func(xt []float32, t []int32, y []int32) ([]float32, error) {
		return n.Forward(xt, len(t), h, w, t, y)
	}
}

// Sample follows plan with the network on the engine (sampler.RunHost: the host step, a host RNG seeded
// by opts.Seed unless opts.Init and opts.Noise are given) and returns x_0 [N,C,H,W], flat, in model
// space, not clamped.
func Sample(net *Net, plan sampler.Plan, opts sampler.Options) ([]float32, error) {
	if len(opts.Shape) != 3 {
		return nil, fmt.Errorf("cpu: sample shape %v, want [C, H, W]", opts.Shape)
	}
	x, err := sampler.RunHost(net.Denoiser(opts.Shape[1], opts.Shape[2]), plan, opts)
	if err != nil {
		return nil, err
	}
	return tensors.MustCopyFlatData[float32](x), nil
}
