package train

import (
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/sampler"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// SamplerModel adapts a Model and its weights, one flat vector (nn.Flatten), to sampler.Model: one
// device buffer per call instead of one per weight. It is the one adapter between the two interfaces
// (the UNet of cmd/ddpm and the toy's MLP both use it).
func SamplerModel(m Model, flat *tensors.Tensor) sampler.Model { return flatModel{m, flat} }

type flatModel struct {
	m    Model
	flat *tensors.Tensor
}

func (a flatModel) Weights() []*tensors.Tensor { return []*tensors.Tensor{a.flat} }

func (a flatModel) Denoiser(nodes []*graph.Node) sampler.Denoiser {
	w := nn.NewWeights(a.m.Specs(), nn.SplitFlat(a.m.Specs(), nodes[0])).Scope()
	return func(xt, t, y *graph.Node) *graph.Node { return a.m.Forward(w, xt, t, y) }
}
