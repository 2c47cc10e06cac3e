package sampler

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Guidance is classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance",
// arXiv:2207.12598v1, Eq. 6), in diffusers' guidance_scale convention S = 1 + w:
//
//	m = m(x_t, t, null) + S (m(x_t, t, y) - m(x_t, t, null))
//
// S = 1 is the plain conditional model, S = 0 the unconditional one, S > 1 trades diversity for
// fidelity to the class. m is whatever the model predicts (eps, x0 or v): each is linear in eps at a given
// x_t, so guiding it is guiding eps. The model must have been trained with label dropout to the null
// label (train.Config.ClassDropout), so that m(x_t, t, null) is the unconditional model.
//
// Guidance wraps a denoiser and is itself one, so it works with every sampler. Both branches run in one
// doubled batch [2N, ...]: the N conditional rows, then the N null rows. For S = 1 and S = 0 only the
// branch that counts is evaluated (one batch of N).
type Guidance struct {
	// Scale is S (diffusers' guidance_scale).
	Scale float64
	// Null is the null label, num_class_embeds - 1 by our convention (unet.Config.NullLabel).
	Null int32
}

// Validate reports a scale that is not a finite number or a negative null label.
func (g Guidance) Validate() error {
	if math.IsNaN(g.Scale) || math.IsInf(g.Scale, 0) {
		return fmt.Errorf("sampler: guidance scale %g: want a finite number (1: the conditional model, 0: unconditional)", g.Scale)
	}
	if g.Null < 0 {
		return fmt.Errorf("sampler: null label %d: want >= 0 (num_class_embeds - 1 for our models)", g.Null)
	}
	return nil
}

// Denoiser returns the guided denoiser of d. Labels y < 0 ("no label") are given the null label, and
// y = nil is an error: guidance needs class labels.
func (g Guidance) Denoiser(d Denoiser) Denoiser { return g.denoiser(d, nil) }

// doubled is whether both branches run (S not 0 or 1).
func (g Guidance) doubled() bool { return g.Scale != 0 && g.Scale != 1 }

// denoiser is Denoiser with the scale S taken from the float32 scalar node scale when it is not nil
// (one compiled graph for every S), else a constant.
func (g Guidance) denoiser(d Denoiser, scale *graph.Node) Denoiser {
	return func(xt, t, y *graph.Node) *graph.Node {
		if y == nil {
			panic(fmt.Errorf("sampler: classifier-free guidance needs class labels (Options.Labels)"))
		}
		gr := y.Graph()
		null := graph.Scalar(gr, y.DType(), g.Null)
		nulls := graph.BroadcastToShape(null, y.Shape())
		y = graph.Where(graph.LessThan(y, graph.ScalarZero(gr, y.DType())), nulls, y)
		if !g.doubled() {
			if g.Scale == 1 {
				return d(xt, t, y)
			}
			return d(xt, t, nulls)
		}
		n := xt.Shape().Dimensions[0]
		if t.IsScalar() {
			t = graph.BroadcastToDims(t, n)
		}
		m := d(graph.Concatenate([]*graph.Node{xt, xt}, 0), graph.Concatenate([]*graph.Node{t, t}, 0),
			graph.Concatenate([]*graph.Node{y, nulls}, 0))
		cond := graph.Slice(m, graph.AxisRange(0, n))
		uncond := graph.Slice(m, graph.AxisRange(n, 2*n))
		s := graph.Scalar(gr, m.DType(), g.Scale)
		if scale != nil {
			s = graph.ConvertDType(scale, m.DType())
		}
		return graph.Add(uncond, graph.Mul(s, graph.Sub(cond, uncond)))
	}
}

// Host returns the guided denoiser of a denoiser computed on the host, with the same rules as Denoiser.
// The combination runs in float64 and is stored as float32.
func (g Guidance) Host(d HostDenoiser) HostDenoiser {
	return func(xt []float32, t []int32, y []int32) ([]float32, error) {
		if y == nil {
			return nil, fmt.Errorf("sampler: classifier-free guidance needs class labels (Options.Labels)")
		}
		n := len(y)
		labels := make([]int32, 2*n)
		for i, v := range y {
			if v < 0 {
				v = g.Null
			}
			labels[i], labels[n+i] = v, g.Null
		}
		if !g.doubled() {
			if g.Scale == 1 {
				return d(xt, t, labels[:n])
			}
			return d(xt, t, labels[n:])
		}
		x2 := append(append(make([]float32, 0, 2*len(xt)), xt...), xt...)
		t2 := append(append(make([]int32, 0, 2*len(t)), t...), t...)
		m, err := d(x2, t2, labels)
		if err != nil {
			return nil, err
		}
		if len(m) != len(x2) {
			return nil, fmt.Errorf("sampler: guidance: the denoiser returned %d values for a doubled batch of %d", len(m), len(x2))
		}
		out := make([]float32, len(xt))
		for i := range out {
			c, u := float64(m[i]), float64(m[len(xt)+i])
			out[i] = float32(u + g.Scale*(c-u))
		}
		return out, nil
	}
}

// Model returns m with its denoiser guided: a Model for Run and Runner. When both branches run, the scale
// is one more weight (a float32 scalar after m's), so that every such scale runs the same compiled graph.
func (g Guidance) Model(m Model) Model { return guidedModel{m, g} }

type guidedModel struct {
	m Model
	g Guidance
}

func (gm guidedModel) Weights() []*tensors.Tensor {
	w := gm.m.Weights()
	if gm.g.doubled() {
		w = append(slices.Clone(w), tensors.FromScalar(float32(gm.g.Scale)))
	}
	return w
}

func (gm guidedModel) Denoiser(weights []*graph.Node) Denoiser {
	if !gm.g.doubled() {
		return gm.g.Denoiser(gm.m.Denoiser(weights))
	}
	n := len(weights) - 1
	return gm.g.denoiser(gm.m.Denoiser(weights[:n]), weights[n])
}

// Classes are the class labels of a sampling run: one per sample, and how a grid of them is laid out.
type Classes struct {
	Labels []int32
	// Cols is the grid's width when the run draws one row per class (--class all), else 0.
	Cols int
}

// ParseClasses reads a class argument (ddpm sample --class) for a model of `classes` classes
// (labels 0..classes-1, where our convention puts the null label at `classes`):
//
//	"7"      n samples of class 7
//	"1,3,5"  one sample per label (n must be 0 or the list's length)
//	"all"    perClass samples of every class, class by class: one grid row per class
//
// A label may be the null label itself (an unconditional sample).
func ParseClasses(spec string, classes, n, perClass int) (Classes, error) {
	spec = strings.TrimSpace(spec)
	if classes < 1 {
		return Classes{}, fmt.Errorf("sampler: --class %s: the model's number of classes is unknown (give the null label)", spec)
	}
	if spec == "all" {
		if perClass < 1 {
			return Classes{}, fmt.Errorf("sampler: --class all: %d samples per class; want at least 1", perClass)
		}
		out := Classes{Cols: perClass}
		for c := 0; c < classes; c++ {
			for range perClass {
				out.Labels = append(out.Labels, int32(c))
			}
		}
		return out, nil
	}
	parts := strings.Split(spec, ",")
	labels := make([]int32, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 0 || v > classes {
			return Classes{}, fmt.Errorf("sampler: --class %s: %q is not a class; want 0..%d (%d: the null class), a comma-separated list, or all",
				spec, p, classes-1, classes)
		}
		labels[i] = int32(v)
	}
	if len(labels) == 1 {
		if n < 1 {
			return Classes{}, fmt.Errorf("sampler: --class %s: %d samples; want at least 1", spec, n)
		}
		out := make([]int32, n)
		for i := range out {
			out[i] = labels[0]
		}
		return Classes{Labels: out}, nil
	}
	if n != 0 && n != len(labels) {
		return Classes{}, fmt.Errorf("sampler: --class %s gives %d labels, one per sample, but %d samples were asked for", spec, len(labels), n)
	}
	return Classes{Labels: labels}, nil
}
