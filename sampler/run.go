package sampler

import (
	"context"
	"fmt"
	"slices"
	"time"

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
	// (to compare with a run of diffusers). The noise of steps with Sigma = 0 is unused. It may also hold
	// only the draws of the steps with Sigma != 0, [k,N,C,H,W] with k their number (diffusers' DDPM draws
	// no noise at t = 0).
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
	// Progress, if not nil, is called after each step call with the steps done so far and the plan's
	// length (with StepsPerCall k, every k steps). On an asynchronous backend a call may return before
	// the device has finished it, so the count can run ahead of the device by a few calls.
	Progress func(done, total int)
	// Context, if not nil, stops the run before the next step call once it is done (Ctrl-C): Run then
	// returns its error (context.Canceled or DeadlineExceeded, wrapped). nil means never stop.
	Context context.Context
}

// stepNoise returns Options.Noise flat, one draw per step: a compact Noise (draws of the noisy steps only)
// is spread out, zeros for the silent steps.
func (o *Options) stepNoise(plan Plan) ([]float32, error) {
	flat, err := tensors.CopyFlatData[float32](o.Noise)
	if err != nil {
		return nil, fmt.Errorf("sampler: run: Options.Noise: %w", err)
	}
	draws := o.Noise.Shape().Dimensions[0]
	if draws == len(plan) {
		return flat, nil
	}
	size := len(flat) / max(draws, 1)
	full := make([]float32, len(plan)*size)
	j := 0
	for i, st := range plan {
		if st.Coef.Sigma != 0 {
			copy(full[i*size:(i+1)*size], flat[j*size:(j+1)*size])
			j++
		}
	}
	return full, nil
}

// stopped returns the context's error, if any, wrapped with the step at which the run stopped.
func (o *Options) stopped(i, steps int) error {
	if o.Context == nil {
		return nil
	}
	if err := o.Context.Err(); err != nil {
		return fmt.Errorf("sampler: run stopped before step %d of %d: %w", i, steps, err)
	}
	return nil
}

func (o *Options) validate(plan Plan) error {
	steps := len(plan)
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
		compact := append([]int{plan.noisy()}, dims...)
		if o.Noise.Shape().Check(dtypes.Float32, want...) != nil && o.Noise.Shape().Check(dtypes.Float32, compact...) != nil {
			return fmt.Errorf("sampler: Options.Noise has shape %s; want float32 %v ([steps,N] + Shape) or %v (one draw per step with noise)",
				o.Noise.Shape(), want, compact)
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
// returns it: in model space, not clamped. It compiles its graphs for this one run: to sample several
// times from the same model (batches of the same shape, say), use a Runner, which keeps them.
//
// x_T is standard normal from opts.Seed on the device (graph.RNGStateFromSeed, graph.RandomNormal) unless
// opts.Init is given; the step noise comes from the same device RNG unless opts.Noise is given. The same
// seed on the same backend gives the same samples; other backends draw other numbers.
//
// One graph is compiled for a step, (weights, x_t, coefficient row, t, [h1, h2], labels, rng state) ->
// (x_prev, x0Hat, [h1, h2], rng state), and reused for every step: the coefficients and timesteps of all
// steps are put on the device before the loop, and the buffers of x_t, of the saved h1 and h2 (multistep
// and Heun plans only) and of the rng state are donated, so the loop stays on the device and reads back
// only the result (and the steps of opts.Record). opts.Progress is called after every call and
// opts.Context stops the run before the next one.
func Run(b backends.Backend, m Model, plan Plan, opts Options) (*tensors.Tensor, error) {
	r, err := NewRunner(b, m)
	if err != nil {
		return nil, err
	}
	defer r.Finalize()
	return r.Run(plan, opts)
}

// A Runner samples from one model on one backend and keeps the graphs it compiles (the draw of x_T and
// the step) from one Run to the next, so that later runs of the same configuration start at once. It
// keeps one step graph per configuration it has run, a configuration being the sample shape [N,C,H,W],
// the steps per call, whether labels are given and whether the step noise comes from the host: a run
// that changes one of them compiles a graph of its own, and the earlier ones stay until Finalize. The
// plan, seed, labels, x_T and host noise are inputs: changing them compiles nothing. The weights are
// read from the model (Model.Weights) at every Run.
//
// A Runner is not safe for concurrent use. The zero value is not usable: make one with NewRunner.
type Runner struct {
	b     backends.Backend
	m     Model
	draws map[string]*graph.Exec // the draw of x_T, per sample shape
	steps map[stepKey]*graph.Exec
	built int // step graphs built so far (the graph function runs once per compiled graph)
	stats RunStats
}

// stepKey is what the step graph depends on besides the shapes of the weights.
type stepKey struct {
	dims             string // [N,C,H,W]
	k                int    // steps per call
	labels, devNoise bool
	history          bool // whether the plan uses the saved buffers h1, h2 (multistep, Heun)
}

// RunStats times one Runner.Run on the host clock. A compiled call may return before the device has
// finished it (backend.Info.Async), so Run waits for the first call before reading the clock, and Loop
// ends when x_0 has been read.
type RunStats struct {
	// Compiled is whether the run built and compiled a new step graph (the first run of its
	// configuration); FirstCall then includes the compilation.
	Compiled bool
	// Draw is the time to draw x_T, the compilation of its graph included on the first run of a sample
	// shape; 0 when Options.Init is given.
	Draw time.Duration
	// FirstCall is the time of the first step call (StepsPerCall steps), and Loop the time of all the
	// step calls, the first included; Calls is the number of calls of StepsPerCall steps each.
	FirstCall, Loop     time.Duration
	Calls, StepsPerCall int
	// Total is the time of the whole Run, from its start to x_0 on the host.
	Total time.Duration
}

// SteadyStep is the mean time of one step in the calls after the first (compiled graph, warm device),
// or 0 when the run had a single call.
func (s RunStats) SteadyStep() time.Duration {
	if s.Calls < 2 || s.StepsPerCall < 1 {
		return 0
	}
	return (s.Loop - s.FirstCall) / time.Duration((s.Calls-1)*s.StepsPerCall)
}

// NewRunner returns a Runner that samples from m on backend b. It compiles nothing yet: the graphs are
// compiled by the first Run of each configuration. Call Finalize to free them.
func NewRunner(b backends.Backend, m Model) (*Runner, error) {
	if b == nil || m == nil {
		return nil, fmt.Errorf("sampler: a Runner needs a backend and a model")
	}
	return &Runner{b: b, m: m, draws: map[string]*graph.Exec{}, steps: map[stepKey]*graph.Exec{}}, nil
}

// Stats returns the times of the last Run (the zero RunStats before the first, or when the last Run
// failed before its steps).
func (r *Runner) Stats() RunStats { return r.stats }

// Finalize frees the compiled graphs. The Runner must not be used after it.
func (r *Runner) Finalize() {
	for _, e := range r.draws {
		e.Finalize()
	}
	for _, e := range r.steps {
		e.Finalize()
	}
	r.draws, r.steps = nil, nil
}

// drawExec returns the graph that draws x_T of the given shape, rng -> (rng, x_T).
func (r *Runner) drawExec(sampleShape shapes.Shape) (*graph.Exec, error) {
	key := fmt.Sprint(sampleShape.Dimensions)
	if e := r.draws[key]; e != nil {
		return e, nil
	}
	e, err := graph.NewExec(r.b, func(rng *graph.Node) (*graph.Node, *graph.Node) {
		return graph.RandomNormal(rng, sampleShape)
	})
	if err != nil {
		return nil, err
	}
	r.draws[key] = e.SetMaxCache(1)
	return e, nil
}

// stepExec returns the step graph of a configuration, (weights, x_t, rows [k,RowSize], ts [k,N],
// [labels [N]], rng state or host noise [k,N,C,H,W]) -> (x_prev, x0Hat, [rng state]).
func (r *Runner) stepExec(key stepKey, nw, n int) (*graph.Exec, error) {
	if e := r.steps[key]; e != nil {
		return e, nil
	}
	m, k, hasLabels, deviceNoise, history := r.m, key.k, key.labels, key.devNoise, key.history
	e, err := graph.NewExec(r.b, func(in []*graph.Node) []*graph.Node {
		r.built++
		w, x, rows, ts := in[:nw], in[nw], in[nw+1], in[nw+2] // rows [k, RowSize], ts [k, N]
		next := nw + 3
		var h1, h2 *graph.Node
		if history {
			h1, h2, next = in[next], in[next+1], next+2
		}
		var y *graph.Node
		if hasLabels {
			y, next = in[next], next+1
		}
		rng := in[next] // the rng state, or the host noise [k, N, ...]
		denoise := m.Denoiser(w)
		var x0Hat *graph.Node
		for j := 0; j < k; j++ {
			t := graph.Reshape(graph.Slice(ts, graph.AxisElem(j), graph.AxisRange()), n)
			row := graph.Reshape(graph.Slice(rows, graph.AxisElem(j), graph.AxisRange()), RowSize)
			out := denoise(graphInput(row, x), t, y)
			if out == nil || !out.Shape().Equal(x.Shape()) {
				panic(fmt.Errorf("the denoiser returned %v for x_t of shape %s; want float32 of the same shape", shapeOf(out), x.Shape()))
			}
			var z *graph.Node
			if deviceNoise {
				rng, z = graph.RandomNormal(rng, x.Shape())
			} else {
				z = graph.Reshape(graph.Slice(rng, graph.AxisElem(j)), x.Shape().Dimensions...)
			}
			x, x0Hat, h1, h2 = GraphAdvance(row, x, out, z, h1, h2)
		}
		outs := []*graph.Node{x, x0Hat}
		if history {
			outs = append(outs, h1, h2)
		}
		if deviceNoise {
			outs = append(outs, rng)
		}
		return outs
	})
	if err != nil {
		return nil, err
	}
	// One configuration has one set of input shapes (the weights' shapes fixed by the model): one compiled
	// graph. A model whose weights change shape gets an error from Exec rather than a silent recompile.
	r.steps[key] = e.SetMaxCache(1)
	return e, nil
}

// Run samples as the function Run does, with the Runner's model and backend, reusing the graphs compiled
// by earlier runs of the same configuration (see Runner). The same plan and opts give the same samples
// as the function Run, bit for bit. Stats then times it.
func (r *Runner) Run(plan Plan, opts Options) (result *tensors.Tensor, err error) {
	start := time.Now()
	r.stats = RunStats{}
	defer func() {
		if rec := recover(); rec != nil {
			result = nil
			if e, ok := rec.(error); ok {
				err = fmt.Errorf("sampler: run: %w", e)
			} else {
				err = fmt.Errorf("sampler: run: %v", rec)
			}
		}
	}()
	if r.steps == nil {
		return nil, fmt.Errorf("sampler: Runner.Run after Finalize; make a new Runner with NewRunner")
	}
	if len(plan) == 0 {
		return nil, fmt.Errorf("sampler: empty plan; build one with DDPM.Plan or DDIM.Plan")
	}
	if err := opts.validate(plan); err != nil {
		return nil, err
	}
	b := r.b
	dims := append([]int{opts.N}, opts.Shape...)
	sampleShape := shapes.Make(dtypes.Float32, dims...)
	weights := r.m.Weights()
	deviceNoise := opts.Noise == nil
	hasLabels := opts.Labels != nil
	var stats RunStats

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
		t0 := time.Now()
		draw, err := r.drawExec(sampleShape)
		if err != nil {
			return nil, fmt.Errorf("sampler: run: %w", err)
		}
		out, err := draw.Exec(donate(b, rng))
		if err != nil {
			return nil, fmt.Errorf("sampler: run: drawing x_T: %w", err)
		}
		rng, xt, ownXt = out[0], out[1], true
		stats.Draw = time.Since(t0)
	}

	k := stepsPerCall(opts, len(plan))
	nw := len(weights)
	built := r.built
	history := plan.history()
	step, err := r.stepExec(stepKey{fmt.Sprint(dims), k, hasLabels, deviceNoise, history}, nw, opts.N)
	if err != nil {
		return nil, fmt.Errorf("sampler: run: %w", err)
	}

	// Per-call inputs, put on the device once: the coefficient rows and timesteps of each call's steps.
	calls := len(plan) / k
	rows, ts := make([]*tensors.Tensor, calls), make([]*tensors.Tensor, calls)
	for c := range rows {
		row := make([]float32, 0, k*RowSize)
		tv := make([]int32, 0, k*opts.N)
		for _, st := range plan[c*k : (c+1)*k] {
			row = append(row, st.Coef.Row()...)
			for range opts.N {
				tv = append(tv, int32(st.T))
			}
		}
		rows[c] = tensors.FromFlatDataAndDimensions(row, k, RowSize)
		ts[c] = tensors.FromFlatDataAndDimensions(tv, k, opts.N)
		for _, x := range []*tensors.Tensor{rows[c], ts[c]} {
			if err := x.MaterializeOnDevice(b, false, 0); err != nil {
				return nil, fmt.Errorf("sampler: run: %w", err)
			}
		}
	}
	var noise []*tensors.Tensor // host-supplied step noise, one [k,N,C,H,W] tensor per call
	if !deviceNoise {
		flat, err := opts.stepNoise(plan)
		if err != nil {
			return nil, err
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
	var h [2]*tensors.Tensor // the saved buffers, zero before the first step
	if history {
		for j := range h {
			h[j] = tensors.FromShape(sampleShape)
		}
	}
	args := make([]any, 0, nw+7)
	loop := time.Now()
	for c := 0; c < calls; c++ {
		i, st := c*k, plan[c*k] // with Record set, k = 1 and call c is step i
		if err := opts.stopped(i, len(plan)); err != nil {
			if deviceNoise {
				rng.FinalizeAll()
			}
			if ownXt {
				xt.FinalizeAll()
			}
			for _, hj := range h {
				if hj != nil {
					hj.FinalizeAll()
				}
			}
			return nil, err
		}
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
		if history {
			for _, hj := range h {
				if c == 0 {
					args = append(args, hj)
				} else {
					args = append(args, donate(b, hj))
				}
			}
		}
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
		if c == 0 {
			// Executions may return once queued (backend.Info.Async): wait for the first one, so that
			// FirstCall is the compilation and the first call's work.
			if err := out[1].ToLocal(); err != nil {
				return nil, fmt.Errorf("sampler: run: step %d: %w", i, err)
			}
			stats.FirstCall = time.Since(loop)
		}
		xt, ownXt = out[0], true
		rest := out[2:]
		if history {
			h[0], h[1], rest = rest[0], rest[1], rest[2:]
		}
		if deviceNoise {
			rng = rest[0]
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
		if opts.Progress != nil {
			opts.Progress(i+k, len(plan))
		}
	}
	stats.Calls, stats.StepsPerCall, stats.Compiled = calls, k, r.built > built
	if deviceNoise {
		rng.FinalizeAll()
	}
	for _, hj := range h {
		if hj != nil {
			hj.FinalizeAll()
		}
	}
	if err := xt.ToLocal(); err != nil {
		return nil, fmt.Errorf("sampler: run: reading x_0: %w", err)
	}
	stats.Loop = time.Since(loop) // the calls may have returned before the device finished: up to x_0 read
	stats.Total = time.Since(start)
	r.stats = stats
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
