package toy

import (
	"fmt"
	"math"
	"strconv"

	"github.com/ddpm/ddpm/nn"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// Activation is the nonlinearity between the MLP's layers. The zero value is SiLU.
type Activation int

const (
	// SiLU is x * sigmoid(x) (torch.nn.SiLU): smooth, so the predicted noise, and with it the
	// sampler's drift, is a smooth function of x_t.
	SiLU Activation = iota
	// ReLU is max(x, 0) (torch.nn.ReLU): the predicted noise is piecewise linear in x_t.
	ReLU
)

var activationNames = [...]string{SiLU: "silu", ReLU: "relu"}

// String returns the activation's name, "silu" or "relu".
func (a Activation) String() string {
	if a >= 0 && int(a) < len(activationNames) {
		return activationNames[a]
	}
	return fmt.Sprintf("Activation(%d)", int(a))
}

// MarshalText encodes the activation as its name.
func (a Activation) MarshalText() ([]byte, error) {
	if a < 0 || int(a) >= len(activationNames) {
		return nil, fmt.Errorf("toy: invalid activation %d (valid: %s)", int(a), quoted(activationNames[:]))
	}
	return []byte(activationNames[a]), nil
}

// UnmarshalText decodes an activation's name.
func (a *Activation) UnmarshalText(text []byte) error {
	for i, n := range activationNames {
		if string(text) == n {
			*a = Activation(i)
			return nil
		}
	}
	return fmt.Errorf("toy: unknown activation %q (valid: %s)", text, quoted(activationNames[:]))
}

// MLP is the lesson's noise predictor for 2-D points: x_t [N,2], times InputScale, concatenated with
// the sinusoidal embedding of t [N,EmbedDim], goes through Layers hidden layers (Linear -> act) of
// width Hidden and a last Linear to eps [N,2]. Its weights are named as the state dict of the
// PyTorch module (Layers = 2: the lesson's network)
//
//	net = nn.Sequential(nn.Linear(2+EmbedDim, Hidden), act, nn.Linear(Hidden, Hidden), act, nn.Linear(Hidden, 2))
//	forward(x_t, t) = net(torch.cat([InputScale * x_t, emb(t)], 1))
//
// net.0.weight [Hidden, 2+EmbedDim], net.0.bias, net.2.weight, net.2.bias, ..., net.{2 Layers}.weight
// [2, Hidden], net.{2 Layers}.bias, all with PyTorch's default nn.Linear initialization. The zero
// value is not usable: use DefaultMLP.
//
// InputScale = 1 is the lesson's network as written. With PyTorch's initialization the first layer
// then starts with features that vary on a scale of about 10 in x, while the swiss roll's arms are
// 0.63 apart and 0.05 thick: the network needs tens of thousands of steps to sharpen them (measured:
// see the package documentation). Scaling x_t by 20 starts the features at the scale of the arms;
// it is the same as initializing the two x columns of net.0.weight 20 times larger and training them
// with a 20 times larger learning rate.
type MLP struct {
	Layers     int        `json:"layers"`      // hidden layers (the lesson's network has 2)
	Hidden     int        `json:"hidden"`      // width of the hidden layers
	EmbedDim   int        `json:"embed_dim"`   // size of the timestep embedding (even)
	Activation Activation `json:"activation"`  // between the linear layers
	InputScale float64    `json:"input_scale"` // x_t is multiplied by this before the first layer
}

// DefaultMLP is the lesson's network with one more hidden layer: a 16-D time embedding and three hidden layers of 128, with SiLU
// and x_t scaled by 20 (see MLP).
func DefaultMLP() MLP {
	return MLP{Layers: 3, Hidden: 128, EmbedDim: 16, Activation: SiLU, InputScale: 20}
}

// Validate names the first field out of range.
func (m MLP) Validate() error {
	switch {
	case m.Layers < 1:
		return fmt.Errorf("toy: mlp layers = %d: want >= 1 (the lesson uses 2)", m.Layers)
	case m.Hidden < 1:
		return fmt.Errorf("toy: mlp hidden = %d: want >= 1 (the lesson uses 128)", m.Hidden)
	case m.EmbedDim < 2 || m.EmbedDim%2 != 0:
		return fmt.Errorf("toy: mlp embed_dim = %d: want an even number >= 2 (the lesson uses 16)", m.EmbedDim)
	case !(m.InputScale > 0) || math.IsInf(m.InputScale, 0):
		return fmt.Errorf("toy: mlp input_scale = %g: want > 0 (1: the lesson's network)", m.InputScale)
	case m.Activation < 0 || int(m.Activation) >= len(activationNames):
		return fmt.Errorf("toy: mlp activation = %d: want one of %s", int(m.Activation), quoted(activationNames[:]))
	}
	return nil
}

// Specs lists the weights, in the order of the state dict.
func (m MLP) Specs() []nn.Spec {
	l := nn.NewSpecList().Sub("net")
	l.Linear("0", 2+m.EmbedDim, m.Hidden)
	for i := 1; i < m.Layers; i++ {
		l.Linear(strconv.Itoa(2*i), m.Hidden, m.Hidden)
	}
	l.Linear(strconv.Itoa(2*m.Layers), m.Hidden, 2)
	return l.Specs()
}

// Forward predicts eps [N,2] for x_t [N,2] float32 at timesteps t [N] int32 (0-based, as the
// sampler and the trainer pass them). The labels y are ignored: the toy model is unconditional.
//
// The embedding is nn.TimestepEmbedding(t, EmbedDim, flipSinToCos=true, shift=0), diffusers'
// Timesteps of UNet2DModel: [cos(t f_i), sin(t f_i)], f_i = 10000^(-i/(EmbedDim/2)).
func (m MLP) Forward(w nn.Scope, xt, t, y *graph.Node) *graph.Node {
	net := w.Sub("net")
	emb := nn.TimestepEmbedding(t, m.EmbedDim, true, 0)
	h := graph.Concatenate([]*graph.Node{graph.MulScalar(xt, m.InputScale), emb}, 1)
	for i := 0; i < m.Layers; i++ {
		h = m.act(linear(net, 2*i, h))
	}
	return linear(net, 2*m.Layers, h)
}

// linear applies the nn.Linear at index i of the Sequential net.
func linear(net nn.Scope, i int, x *graph.Node) *graph.Node {
	k := strconv.Itoa(i)
	return nn.Linear(x, net.Get(k+".weight"), net.Get(k+".bias"))
}

func (m MLP) act(x *graph.Node) *graph.Node {
	if m.Activation == ReLU {
		return graph.Max(x, graph.ZerosLike(x))
	}
	return nn.SiLU(x)
}
