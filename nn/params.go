// Package nn holds the layers our models are made of (convolution, linear, group norm, attention
// pieces, timestep embeddings) as functions of graph nodes, written so that they train on every GoMLX
// backend, the pure-Go one included, and the bookkeeping of named weights.
//
// Layers take their weights as arguments in PyTorch's layouts (conv [O,C,kh,kw], linear [out,in]),
// activations are [N,C,H,W]. Models name their weights as PyTorch state dicts do
// ("down_blocks.0.resnets.1.conv1.weight"), so checkpoints are interchangeable with diffusers.
package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Init says how a weight starts before training.
type Init int

const (
	// Zeros: all 0 (biases of norms, zero-initialized output layers).
	Zeros Init = iota
	// Ones: all 1 (scales of norms).
	Ones
	// FanIn: uniform in [-1/sqrt(fanIn), 1/sqrt(fanIn)], PyTorch's default for the weights
	// (kaiming_uniform_ with a = sqrt(5)) and biases of nn.Linear and nn.Conv2d.
	FanIn
	// Normal: standard normal, PyTorch's default for nn.Embedding.
	Normal
)

// A Spec is one weight of a model: its state-dict name, shape and initialization.
type Spec struct {
	Name  string
	Shape []int
	Init  Init
	FanIn int // for Init == FanIn
}

// Size is the number of elements.
func (s Spec) Size() int {
	n := 1
	for _, d := range s.Shape {
		n *= d
	}
	return n
}

// Count returns the number of parameters of specs.
func Count(specs []Spec) int {
	n := 0
	for _, s := range specs {
		n += s.Size()
	}
	return n
}

// InitTensors creates the weights of specs on the host, seeded.
func InitTensors(specs []Spec, seed uint64) []*tensors.Tensor {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	out := make([]*tensors.Tensor, len(specs))
	for i, s := range specs {
		data := make([]float32, s.Size())
		switch s.Init {
		case Ones:
			for j := range data {
				data[j] = 1
			}
		case FanIn:
			bound := 1 / math.Sqrt(float64(s.FanIn))
			for j := range data {
				data[j] = float32((2*rng.Float64() - 1) * bound)
			}
		case Normal:
			for j := range data {
				data[j] = float32(rng.NormFloat64())
			}
		}
		out[i] = tensors.FromFlatDataAndDimensions(data, s.Shape...)
	}
	return out
}

// Weights are a model's weights as nodes of the graph being built, by state-dict name.
type Weights struct {
	byName map[string]*graph.Node
}

// NewWeights pairs specs with the graph nodes holding their values (same order).
func NewWeights(specs []Spec, nodes []*graph.Node) *Weights {
	if len(specs) != len(nodes) {
		panic(fmt.Errorf("nn.NewWeights: %d specs, %d nodes", len(specs), len(nodes)))
	}
	w := &Weights{byName: make(map[string]*graph.Node, len(specs))}
	for i, s := range specs {
		if !slices.Equal(nodes[i].Shape().Dimensions, s.Shape) {
			panic(fmt.Errorf("nn: weight %q has shape %v, want %v", s.Name, nodes[i].Shape().Dimensions, s.Shape))
		}
		w.byName[s.Name] = nodes[i]
	}
	return w
}

// Scope returns the root scope of w.
func (w *Weights) Scope() Scope { return Scope{w: w} }

// A Scope resolves weight names under a prefix, as a PyTorch submodule does.
type Scope struct {
	w      *Weights
	prefix string
}

// Sub returns the scope of a submodule: Sub("resnets").Sub("0") names "resnets.0.*".
func (s Scope) Sub(names ...string) Scope {
	p := s.prefix
	for _, n := range names {
		p += n + "."
	}
	return Scope{w: s.w, prefix: p}
}

// Name is the full name of a weight in this scope.
func (s Scope) Name(name string) string { return s.prefix + name }

// Get returns the weight named name in this scope; a missing weight is a bug in the model code.
func (s Scope) Get(name string) *graph.Node {
	full := s.prefix + name
	n, ok := s.w.byName[full]
	if !ok {
		panic(fmt.Errorf("nn: no weight %q (have %d weights under %q)", full, s.w.countPrefix(s.prefix), strings.TrimSuffix(s.prefix, ".")))
	}
	return n
}

// Has reports whether the scope has a weight of that name.
func (s Scope) Has(name string) bool {
	_, ok := s.w.byName[s.prefix+name]
	return ok
}

func (w *Weights) countPrefix(p string) int {
	n := 0
	for k := range w.byName {
		if strings.HasPrefix(k, p) {
			n++
		}
	}
	return n
}

// SpecList accumulates specs under name prefixes, mirroring Scope.
type SpecList struct {
	prefix string
	list   *[]Spec
}

// NewSpecList starts an empty list.
func NewSpecList() SpecList { return SpecList{list: new([]Spec)} }

// Sub returns the list for a submodule.
func (l SpecList) Sub(names ...string) SpecList {
	p := l.prefix
	for _, n := range names {
		p += n + "."
	}
	return SpecList{prefix: p, list: l.list}
}

// Add appends a weight.
func (l SpecList) Add(name string, init Init, fanIn int, shape ...int) {
	*l.list = append(*l.list, Spec{Name: l.prefix + name, Shape: shape, Init: init, FanIn: fanIn})
}

// Conv adds the weight [out, in, k, k] and bias [out] of a convolution named name.
func (l SpecList) Conv(name string, in, out, k int) {
	l.Add(name+".weight", FanIn, in*k*k, out, in, k, k)
	l.Add(name+".bias", FanIn, in*k*k, out)
}

// Linear adds the weight [out, in] and bias [out] of a linear layer named name.
func (l SpecList) Linear(name string, in, out int) {
	l.Add(name+".weight", FanIn, in, out, in)
	l.Add(name+".bias", FanIn, in, out)
}

// Norm adds the scale (ones) and shift (zeros) [c] of a normalization layer named name.
func (l SpecList) Norm(name string, c int) {
	l.Add(name+".weight", Ones, 0, c)
	l.Add(name+".bias", Zeros, 0, c)
}

// Specs returns the accumulated specs.
func (l SpecList) Specs() []Spec { return *l.list }

// Offsets returns where each weight of specs starts in the flat vector that Flatten makes, and the
// total size.
func Offsets(specs []Spec) (offsets []int, total int) {
	offsets = make([]int, len(specs))
	for i, s := range specs {
		offsets[i] = total
		total += s.Size()
	}
	return offsets, total
}

// Flatten concatenates weights (in specs order) into one float32 vector [total]: one device buffer
// instead of hundreds, so that a compiled call has few inputs and the optimizer runs as one fused
// update.
func Flatten(specs []Spec, weights []*tensors.Tensor) (*tensors.Tensor, error) {
	if len(weights) != len(specs) {
		return nil, fmt.Errorf("nn.Flatten: %d weights for %d specs", len(weights), len(specs))
	}
	_, total := Offsets(specs)
	flat := make([]float32, 0, total)
	for i, s := range specs {
		v, err := tensors.CopyFlatData[float32](weights[i])
		if err != nil {
			return nil, fmt.Errorf("nn.Flatten: %s: %w", s.Name, err)
		}
		if len(v) != s.Size() {
			return nil, fmt.Errorf("nn.Flatten: %s has %d values, want %d (shape %v)", s.Name, len(v), s.Size(), s.Shape)
		}
		flat = append(flat, v...)
	}
	return tensors.FromFlatDataAndDimensions(flat, total), nil
}

// Unflatten splits a flat vector made by Flatten back into weights of specs' shapes, on the host.
func Unflatten(specs []Spec, flat *tensors.Tensor) ([]*tensors.Tensor, error) {
	v, err := tensors.CopyFlatData[float32](flat)
	if err != nil {
		return nil, fmt.Errorf("nn.Unflatten: %w", err)
	}
	offsets, total := Offsets(specs)
	if len(v) != total {
		return nil, fmt.Errorf("nn.Unflatten: %d values for %d parameters", len(v), total)
	}
	out := make([]*tensors.Tensor, len(specs))
	for i, s := range specs {
		out[i] = tensors.FromFlatDataAndDimensions(slices.Clone(v[offsets[i]:offsets[i]+s.Size()]), s.Shape...)
	}
	return out, nil
}

// SplitFlat is Unflatten inside a graph: views of flat [total] as the weights of specs (slices and
// reshapes, free in XLA).
func SplitFlat(specs []Spec, flat *graph.Node) []*graph.Node {
	offsets, total := Offsets(specs)
	if flat.Rank() != 1 || flat.Shape().Dimensions[0] != total {
		panic(fmt.Errorf("nn.SplitFlat: flat weights have shape %v, want [%d]", flat.Shape().Dimensions, total))
	}
	out := make([]*graph.Node, len(specs))
	for i, s := range specs {
		out[i] = graph.Reshape(slice(flat, []int{offsets[i]}, []int{offsets[i] + s.Size()}), s.Shape...)
	}
	return out
}

// JoinFlat is the inverse of SplitFlat: nodes of specs' shapes concatenated into one [total] vector.
func JoinFlat(specs []Spec, nodes []*graph.Node) *graph.Node {
	parts := make([]*graph.Node, len(nodes))
	for i, n := range nodes {
		parts[i] = graph.Reshape(n, specs[i].Size())
	}
	return graph.Concatenate(parts, 0)
}
