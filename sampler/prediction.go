package sampler

import (
	"fmt"
	"math"
	"strings"

	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Prediction says what a model's output m stands for. The zero value is Epsilon.
type Prediction int

const (
	// Epsilon: m predicts the noise eps (Ho et al. 2020). diffusers "epsilon".
	Epsilon Prediction = iota
	// Sample: m predicts x0. diffusers "sample".
	Sample
	// V: m predicts v = sqrt(alphaBar) eps - sqrt(1 - alphaBar) x0 (Salimans & Ho 2022). diffusers "v_prediction".
	V
)

var predictionNames = [...]string{Epsilon: "epsilon", Sample: "sample", V: "v_prediction"}

// String returns diffusers' name of the prediction type.
func (p Prediction) String() string {
	if p >= 0 && int(p) < len(predictionNames) {
		return predictionNames[p]
	}
	return fmt.Sprintf("Prediction(%d)", int(p))
}

// MarshalText encodes the prediction type as diffusers' name.
func (p Prediction) MarshalText() ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return []byte(predictionNames[p]), nil
}

// UnmarshalText decodes diffusers' name of a prediction type.
func (p *Prediction) UnmarshalText(text []byte) error {
	for i, name := range predictionNames {
		if string(text) == name {
			*p = Prediction(i)
			return nil
		}
	}
	return fmt.Errorf("sampler: unknown prediction type %q (valid: %s)", text, quoted(predictionNames[:]))
}

func (p Prediction) validate() error {
	if p < 0 || int(p) >= len(predictionNames) {
		return fmt.Errorf("sampler: invalid prediction type %d (valid: %s)", int(p), quoted(predictionNames[:]))
	}
	return nil
}

func quoted(names []string) string { return `"` + strings.Join(names, `", "`) + `"` }

// Conversion holds the weights of every conversion at one alphaBar_t: the model output m to the predicted
// x0 and eps, and the clean pair (x0, eps) to the training target (the output a perfect model gives).
//
//	x0Hat  = X0Xt  x_t + X0M  m
//	epsHat = EpsXt x_t + EpsM m
//	target = TgtX0 x0  + TgtEps eps
type Conversion struct {
	X0Xt, X0M     float64
	EpsXt, EpsM   float64
	TgtX0, TgtEps float64
}

// Convert returns the conversion weights of p at alphaBar (0 < alphaBar < 1). With a = sqrt(alphaBar) and
// b = sqrt(1 - alphaBar), x_t = a x0 + b eps (Ho et al. 2020, Eq. 4):
//
//	epsilon: x0Hat = (x_t - b m)/a,  epsHat = m,                target = eps
//	sample:  x0Hat = m,              epsHat = (x_t - a m)/b,    target = x0
//	v:       x0Hat = a x_t - b m,    epsHat = b x_t + a m,      target = a eps - b x0
//
// (epsilon: Ho et al. 2020, Eq. 15 and the loss of Eq. 14; v: Salimans & Ho 2022, arXiv:2202.00512v2,
// Appendix D). This is the one place these formulas live. A p outside the three constants converts as
// Epsilon; the DDPM and DDIM configurations reject it in Validate.
func (p Prediction) Convert(alphaBar float64) Conversion {
	a, b := math.Sqrt(alphaBar), math.Sqrt(1-alphaBar)
	switch p {
	case Sample:
		return Conversion{X0Xt: 0, X0M: 1, EpsXt: 1 / b, EpsM: -a / b, TgtX0: 1, TgtEps: 0}
	case V:
		return Conversion{X0Xt: a, X0M: -b, EpsXt: b, EpsM: a, TgtX0: -b, TgtEps: a}
	default: // Epsilon
		return Conversion{X0Xt: 1 / a, X0M: -b / a, EpsXt: 0, EpsM: 1, TgtX0: 0, TgtEps: 1}
	}
}

// Split returns the predicted x0 and eps for x_t and the model output m at alphaBar (Convert), on the host
// with arithmetic in float64. No clipping.
func (p Prediction) Split(xt, m []float32, alphaBar float64) (x0Hat, epsHat []float32) {
	mustSameLen("Prediction.Split", "x_t", "m", len(xt), len(m))
	c := p.Convert(alphaBar)
	x0Hat, epsHat = make([]float32, len(xt)), make([]float32, len(xt))
	for i := range xt {
		x, y := float64(xt[i]), float64(m[i])
		x0Hat[i] = float32(c.X0Xt*x + c.X0M*y)
		epsHat[i] = float32(c.EpsXt*x + c.EpsM*y)
	}
	return x0Hat, epsHat
}

// Target returns the training target of p for the clean sample x0 and the noise eps at alphaBar (Convert),
// on the host with arithmetic in float64.
func (p Prediction) Target(x0, eps []float32, alphaBar float64) []float32 {
	mustSameLen("Prediction.Target", "x0", "eps", len(x0), len(eps))
	c := p.Convert(alphaBar)
	out := make([]float32, len(x0))
	for i := range x0 {
		out[i] = float32(c.TgtX0*float64(x0[i]) + c.TgtEps*float64(eps[i]))
	}
	return out
}

func mustSameLen(fn, a, b string, na, nb int) {
	if na != nb {
		panic(fmt.Sprintf("sampler.%s: %s has %d values and %s %d; they must have the same length", fn, a, na, b, nb))
	}
}

// Table returns the per-timestep weights that AddNoise and Target gather on the device, as a float32 [T,4]
// tensor: for t = 0..T-1 the row (sqrt(alphaBar_t), sqrt(1 - alphaBar_t), TgtX0, TgtEps), the last two from
// p.Convert. Everything is computed in float64 and stored as float32 (1 - alphaBar_t taken in float32 would
// lose ~3e-4 relative precision near t = 0).
func Table(p Prediction, s *schedule.Schedule) *tensors.Tensor {
	flat := make([]float32, 0, 4*s.T())
	for _, ab := range s.AlphaBar {
		c := p.Convert(ab)
		flat = append(flat, float32(math.Sqrt(ab)), float32(math.Sqrt(1-ab)), float32(c.TgtX0), float32(c.TgtEps))
	}
	return tensors.FromFlatDataAndDimensions(flat, s.T(), 4)
}

// gather returns columns cols of table [T,4] at each t [N] int32, each shaped [N,1,...,1] (rank dims) to
// broadcast against a [N,...] tensor.
func gather(table, t *graph.Node, rank int, cols ...int) []*graph.Node {
	if table.Rank() != 2 || table.Shape().Dimensions[1] != 4 {
		panic(fmt.Errorf("sampler: table has shape %s; want [T,4] from sampler.Table", table.Shape()))
	}
	rows := graph.Gather(table, graph.ExpandAxes(graph.ConvertDType(t, dtypes.Int32), -1)) // [N,4]
	dims := make([]int, rank)
	for i := range dims {
		dims[i] = 1
	}
	dims[0] = -1
	out := make([]*graph.Node, len(cols))
	for i, c := range cols {
		out[i] = graph.Reshape(graph.Slice(rows, graph.AxisRange(), graph.AxisElem(c)), dims...)
	}
	return out
}

func checkPair(x0, eps, t *graph.Node) {
	if !x0.Shape().Equal(eps.Shape()) {
		panic(fmt.Errorf("sampler: x0 has shape %s and eps %s; they must be equal", x0.Shape(), eps.Shape()))
	}
	if x0.Rank() < 1 || t.Rank() != 1 || !t.DType().IsInt() || t.Shape().Dimensions[0] != x0.Shape().Dimensions[0] {
		panic(fmt.Errorf("sampler: timesteps of shape %s for x0 of shape %s; want one int32 timestep per sample, [N]",
			t.Shape(), x0.Shape()))
	}
}

// AddNoise is schedule.AddNoise inside a graph, each sample at its own timestep:
// x_t = sqrt(alphaBar_t) x0 + sqrt(1 - alphaBar_t) eps (Ho et al. 2020, Eq. 4), for x0, eps [N,...] float32,
// t [N] int32 and table the Table as a node. Like GoMLX ops it panics on bad shapes.
func AddNoise(table, x0, eps, t *graph.Node) *graph.Node {
	checkPair(x0, eps, t)
	w := gather(table, t, x0.Rank(), 0, 1)
	return graph.Add(graph.Mul(w[0], x0), graph.Mul(w[1], eps))
}

// Target is Prediction.Target inside a graph, each sample at its own timestep: target = TgtX0 x0 + TgtEps eps
// with the weights of the Prediction the table was built for (eps, x0 or
// v = sqrt(alphaBar_t) eps - sqrt(1 - alphaBar_t) x0), for x0, eps [N,...] float32, t [N] int32 and table
// the Table as a node. Like GoMLX ops it panics on bad shapes.
func Target(table, x0, eps, t *graph.Node) *graph.Node {
	checkPair(x0, eps, t)
	w := gather(table, t, x0.Rank(), 2, 3)
	return graph.Add(graph.Mul(w[0], x0), graph.Mul(w[1], eps))
}
