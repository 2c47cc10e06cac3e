package sampler

import (
	"fmt"
	"slices"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// A Denoiser predicts the model output (eps, x0 or v, per its Prediction) for x_t [N,C,H,W] float32 at
// timesteps t [N] int32, with class labels y [N] int32 (-1: no label, the null class of classifier-free
// guidance); y may be nil. It returns a float32 node of x_t's shape.
type Denoiser func(xt, t, y *graph.Node) *graph.Node

// A Model is a denoiser whose weights are graph inputs.
type Model interface {
	// Weights returns the weight tensors, in a fixed order.
	Weights() []*tensors.Tensor
	// Denoiser builds the denoiser inside a graph from weight nodes in the order of Weights.
	Denoiser(weights []*graph.Node) Denoiser
}

// Options configure Run.
type Options struct {
	// N is the number of samples, Shape the shape [C,H,W] of one sample.
	N     int
	Shape []int
	// Seed seeds the device RNG that draws x_T (unless Init is given) and the step noise (unless Noise is
	// given).
	Seed int64
	// Init, if not nil, is x_T [N,C,H,W] float32. Run does not modify it.
	Init *tensors.Tensor
	// Noise, if not nil, is the step noise z [steps,N,C,H,W] float32, in step order, replacing the device RNG
	// (to compare with a run of diffusers). The noise of steps with Sigma = 0 is unused.
	Noise *tensors.Tensor
	// Labels, if not nil, are the class labels [N] given to the denoiser (-1: no label).
	Labels []int32
	// Record lists the step indices (0 = the first step, at x_T) for which OnStep is called. The other steps
	// make no host transfers.
	Record []int
	// OnStep receives, for each recorded step i at timestep t, host copies of the step's input x_t and its
	// prediction x0Hat, both [N,C,H,W] float32, in step order.
	OnStep func(i, t int, xt, x0Hat *tensors.Tensor)
	// StepsPerCall is how many steps one compiled call runs (0 or 1: one). Each call ends with the
	// device synchronizing with the host, so on a GPU several steps per call (10, say) remove most of
	// the per-step overhead, at the price of a larger graph to compile. It is rounded down to a divisor
	// of the number of steps, so one graph serves every call, and ignored when Record is set.
	StepsPerCall int
}

func (o *Options) validate(steps int) error {
	if o.N < 1 {
		return fmt.Errorf("sampler: Options.N is %d; want at least one sample", o.N)
	}
	if len(o.Shape) == 0 || slices.ContainsFunc(o.Shape, func(d int) bool { return d < 1 }) {
		return fmt.Errorf("sampler: Options.Shape is %v; want the positive shape of one sample, e.g. [C,H,W]", o.Shape)
	}
	dims := append([]int{o.N}, o.Shape...)
	if o.Init != nil {
		if err := o.Init.Shape().Check(dtypes.Float32, dims...); err != nil {
			return fmt.Errorf("sampler: Options.Init has shape %s; want float32 %v ([N] + Shape)", o.Init.Shape(), dims)
		}
	}
	if o.Noise != nil {
		want := append([]int{steps}, dims...)
		if err := o.Noise.Shape().Check(dtypes.Float32, want...); err != nil {
			return fmt.Errorf("sampler: Options.Noise has shape %s; want float32 %v ([steps,N] + Shape)", o.Noise.Shape(), want)
		}
	}
	if o.Labels != nil && len(o.Labels) != o.N {
		return fmt.Errorf("sampler: %d labels for %d samples; give one label per sample (-1: none)", len(o.Labels), o.N)
	}
	for _, i := range o.Record {
		if i < 0 || i >= steps {
			return fmt.Errorf("sampler: Options.Record has step %d; the plan has steps 0..%d", i, steps-1)
		}
	}
	if len(o.Record) > 0 && o.OnStep == nil {
		return fmt.Errorf("sampler: Options.Record is set but OnStep is nil; give OnStep to receive the recorded steps")
	}
	return nil
}

// Run samples from m by following plan on backend b and returns x_0 [N,C,H,W] float32 as the last step
// returns it: in model space, not clamped.
//
// x_T is standard normal from opts.Seed on the device (graph.RNGStateFromSeed, graph.RandomNormal) unless
// opts.Init is given; the step noise comes from the same device RNG unless opts.Noise is given. The same
// seed on the same backend gives the same samples; other backends draw other numbers.
//
// One graph is compiled for a step, (weights, x_t, coefficient row, t, labels, rng state) ->
// (x_prev, x0Hat, rng state), and reused for every step: the coefficients and timesteps of all steps are
// put on the device before the loop, and the buffers of x_t and the rng state are donated, so the loop
// stays on the device and reads back only the result (and the steps of opts.Record).
func Run(b backends.Backend, m Model, plan Plan, opts Options) (result *tensors.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			result = nil
			if e, ok := r.(error); ok {
				err = fmt.Errorf("sampler: run: %w", e)
			} else {
				err = fmt.Errorf("sampler: run: %v", r)
			}
		}
	}()
	if b == nil || m == nil {
		return nil, fmt.Errorf("sampler: Run needs a backend and a model")
	}
	if len(plan) == 0 {
		return nil, fmt.Errorf("sampler: empty plan; build one with DDPM.Plan or DDIM.Plan")
	}
	if err := opts.validate(len(plan)); err != nil {
		return nil, err
	}
	dims := append([]int{opts.N}, opts.Shape...)
	sampleShape := shapes.Make(dtypes.Float32, dims...)
	weights := m.Weights()
	deviceNoise := opts.Noise == nil
	hasLabels := opts.Labels != nil

	var labels *tensors.Tensor
	if hasLabels {
		labels = tensors.FromFlatDataAndDimensions(slices.Clone(opts.Labels), opts.N)
	}

	rng, err := graph.RNGStateFromSeed(opts.Seed)
	if err != nil {
		return nil, fmt.Errorf("sampler: run: %w", err)
	}
	xt := opts.Init
	ownXt := false // whether Run owns xt and may donate its buffer
	if xt == nil {
		draw, err := graph.NewExec(b, func(rng *graph.Node) (*graph.Node, *graph.Node) {
			return graph.RandomNormal(rng, sampleShape)
		})
		if err != nil {
			return nil, fmt.Errorf("sampler: run: %w", err)
		}
		defer draw.Finalize()
		out, err := draw.Exec(donate(b, rng))
		if err != nil {
			return nil, fmt.Errorf("sampler: run: drawing x_T: %w", err)
		}
		rng, xt, ownXt = out[0], out[1], true
	}

	k := stepsPerCall(opts, len(plan))
	nw := len(weights)
	step, err := graph.NewExec(b, func(in []*graph.Node) []*graph.Node {
		w, x, rows, ts := in[:nw], in[nw], in[nw+1], in[nw+2] // rows [k, RowSize], ts [k, N]
		next := nw + 3
		var y *graph.Node
		if hasLabels {
			y, next = in[next], next+1
		}
		rng := in[next] // the rng state, or the host noise [k, N, ...]
		denoise := m.Denoiser(w)
		var x0Hat *graph.Node
		for j := 0; j < k; j++ {
			t := graph.Reshape(graph.Slice(ts, graph.AxisElem(j), graph.AxisRange()), opts.N)
			row := graph.Reshape(graph.Slice(rows, graph.AxisElem(j), graph.AxisRange()), RowSize)
			out := denoise(x, t, y)
			if out == nil || !out.Shape().Equal(x.Shape()) {
				panic(fmt.Errorf("the denoiser returned %v for x_t of shape %s; want float32 of the same shape", shapeOf(out), x.Shape()))
			}
			var z *graph.Node
			if deviceNoise {
				rng, z = graph.RandomNormal(rng, x.Shape())
			} else {
				z = graph.Reshape(graph.Slice(rng, graph.AxisElem(j)), x.Shape().Dimensions...)
			}
			x, x0Hat = GraphStep(row, x, out, z)
		}
		if deviceNoise {
			return []*graph.Node{x, x0Hat, rng}
		}
		return []*graph.Node{x, x0Hat}
	})
	if err != nil {
		return nil, fmt.Errorf("sampler: run: %w", err)
	}
	defer step.Finalize()
	step.SetMaxCache(1) // every call has the same shapes: one compiled graph

	// Per-call inputs, put on the device once: the coefficient rows and timesteps of each call's steps.
	calls := len(plan) / k
	rows, ts := make([]*tensors.Tensor, calls), make([]*tensors.Tensor, calls)
	for c := range rows {
		r := make([]float32, 0, k*RowSize)
		tv := make([]int32, 0, k*opts.N)
		for _, st := range plan[c*k : (c+1)*k] {
			r = append(r, st.Coef.Row()...)
			for range opts.N {
				tv = append(tv, int32(st.T))
			}
		}
		rows[c] = tensors.FromFlatDataAndDimensions(r, k, RowSize)
		ts[c] = tensors.FromFlatDataAndDimensions(tv, k, opts.N)
		for _, x := range []*tensors.Tensor{rows[c], ts[c]} {
			if err := x.MaterializeOnDevice(b, false, 0); err != nil {
				return nil, fmt.Errorf("sampler: run: %w", err)
			}
		}
	}
	var noise []*tensors.Tensor // host-supplied step noise, one [k,N,C,H,W] tensor per call
	if !deviceNoise {
		flat, err := tensors.CopyFlatData[float32](opts.Noise)
		if err != nil {
			return nil, fmt.Errorf("sampler: run: Options.Noise: %w", err)
		}
		size := k * sampleShape.Size()
		for c := 0; c < calls; c++ {
			noise = append(noise, tensors.FromFlatDataAndDimensions(flat[c*size:(c+1)*size], append([]int{k}, dims...)...))
		}
	}

	record := make(map[int]bool, len(opts.Record))
	for _, i := range opts.Record {
		record[i] = true
	}
	args := make([]any, 0, nw+5)
	for c := 0; c < calls; c++ {
		i, st := c*k, plan[c*k] // with Record set, k = 1 and call c is step i
		var xtHost *tensors.Tensor
		if record[i] {
			if xtHost, err = xt.LocalClone(); err != nil {
				return nil, fmt.Errorf("sampler: run: step %d: reading x_t: %w", i, err)
			}
		}
		args = args[:0]
		for _, w := range weights {
			args = append(args, w)
		}
		if ownXt {
			args = append(args, donate(b, xt))
		} else {
			args = append(args, xt)
		}
		args = append(args, rows[c], ts[c])
		if hasLabels {
			args = append(args, labels)
		}
		if deviceNoise {
			args = append(args, donate(b, rng))
		} else {
			args = append(args, noise[c])
		}
		out, err := step.Exec(args...)
		if err != nil {
			return nil, fmt.Errorf("sampler: run: step %d (t=%d): %w", i, st.T, err)
		}
		xt, ownXt = out[0], true
		if deviceNoise {
			rng = out[2]
		}
		if record[i] {
			x0Host, err := out[1].LocalClone()
			if err != nil {
				return nil, fmt.Errorf("sampler: run: step %d: reading x0Hat: %w", i, err)
			}
			opts.OnStep(i, st.T, xtHost, x0Host)
		}
		if err := out[1].FinalizeAll(); err != nil {
			return nil, fmt.Errorf("sampler: run: step %d: %w", i, err)
		}
	}
	if err := xt.ToLocal(); err != nil {
		return nil, fmt.Errorf("sampler: run: reading x_0: %w", err)
	}
	return xt, nil
}

// donate marks a tensor's device buffer as given to the next execution. Errors panic and are turned
// into Run's error.
func donate(b backends.Backend, t *tensors.Tensor) any {
	d, err := graph.DonateTensorBuffer(t, b, 0)
	if err != nil {
		panic(err)
	}
	return d
}

func shapeOf(n *graph.Node) any {
	if n == nil {
		return "nil"
	}
	return n.Shape()
}

// stepsPerCall is opts.StepsPerCall rounded down to a divisor of steps (1 when recording).
func stepsPerCall(opts Options, steps int) int {
	k := max(opts.StepsPerCall, 1)
	if len(opts.Record) > 0 {
		return 1
	}
	for steps%k != 0 {
		k--
	}
	return k
}
