// Package train trains a denoiser with the DDPM objective (Ho et al. 2020, arXiv:2006.11239v2,
// Algorithm 1), on the device, a whole optimizer step per compiled call or several:
//
//	x0 ~ data, t ~ U{0..T-1}, eps ~ N(0, I)
//	x_t   = sqrt(alphaBar_t) x0 + sqrt(1 - alphaBar_t) eps           (the closed-form jump, Eq. 4)
//	loss  = mean((model(x_t, t) - target)^2)                         (target: eps, x0 or v)
//
// then AdamW (Loshchilov & Hutter 2019, as torch.optim.AdamW) and an exponential moving average of the
// weights. Batches are drawn on the host (shuffled epochs, data.Batcher) as indices into the dataset,
// which lives on the device; noise and timesteps come from the device's RNG, whose state is part of
// the training state, so a resumed run continues the same random stream.
package train

import (
	"errors"
	"fmt"
	"math"

	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// A Model is a denoiser with named weights: the UNet, or the toy MLP.
type Model interface {
	Specs() []nn.Spec
	// Forward predicts the model output for x_t at timesteps t [N] int32, class labels y [N] int32 or nil.
	Forward(w nn.Scope, xt, t, y *graph.Node) *graph.Node
}

// Config holds the optimization hyper-parameters. Zero values are not defaults: use Default.
type Config struct {
	BatchSize    int                `json:"batch_size"`
	LR           float64            `json:"learning_rate"`
	Beta1        float64            `json:"adam_beta1"`
	Beta2        float64            `json:"adam_beta2"`
	Eps          float64            `json:"adam_epsilon"`
	WeightDecay  float64            `json:"weight_decay"`
	MaxGradNorm  float64            `json:"max_grad_norm"` // 0: no clipping
	EMADecay     float64            `json:"ema_decay"`
	EMAWarmup    bool               `json:"ema_warmup"` // diffusers' EMAModel ramp min(decay, (1+n)/(10+n))
	Prediction   sampler.Prediction `json:"prediction_type"`
	ZeroInit     []string           `json:"zero_init"`     // weights that start at zero (the output conv)
	ClassDropout float64            `json:"class_dropout"` // probability of the null label, for classifier-free guidance
	NumClasses   int                `json:"num_classes"`   // >0: class-conditional; label NumClasses is the null class
	StepsPerCall int                `json:"steps_per_call"`
	// The learning-rate schedule (lr.go): diffusers' --lr_scheduler, --lr_warmup_steps and the
	// num_training_steps it decays over. Empty and zero: the constant LR of the lesson.
	LRScheduler   string    `json:"lr_scheduler,omitempty"`
	LRWarmupSteps int64     `json:"lr_warmup_steps,omitempty"`
	LRTotalSteps  int64     `json:"lr_total_steps,omitempty"`
	Precision     Precision `json:"precision"`
}

// Precision is the dtype of the forward and backward passes. Weights, Adam moments, EMA and the loss
// stay float32 (mixed precision: master weights in float32, a bfloat16 copy for compute).
type Precision int

const (
	FP32 Precision = iota
	BF16
)

func (p Precision) String() string {
	if p == BF16 {
		return "bf16"
	}
	return "fp32"
}

// MarshalText writes fp32 or bf16.
func (p Precision) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads fp32 or bf16.
func (p *Precision) UnmarshalText(b []byte) error {
	switch string(b) {
	case "fp32", "float32", "":
		*p = FP32
	case "bf16", "bfloat16":
		*p = BF16
	default:
		return fmt.Errorf("train: precision %q: want fp32 or bf16", b)
	}
	return nil
}

// Default is the lesson's recipe: AdamW lr 2e-4 (PyTorch's betas, eps and weight decay), batch 64,
// EMA 0.999 every step, epsilon prediction.
func Default() Config {
	return Config{
		BatchSize:    64,
		LR:           2e-4,
		Beta1:        0.9,
		Beta2:        0.999,
		Eps:          1e-8,
		WeightDecay:  0.01,
		EMADecay:     0.999,
		Prediction:   sampler.Epsilon,
		StepsPerCall: 1,
	}
}

// Validate names the first field out of range.
func (c Config) Validate() error {
	bad := func(f string, v any, want string) error {
		return fmt.Errorf("train: %s = %v: %s", f, v, want)
	}
	switch {
	case c.BatchSize < 1:
		return bad("batch_size", c.BatchSize, "want >= 1")
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return bad("learning_rate", c.LR, "want > 0")
	case c.Beta1 < 0 || c.Beta1 >= 1:
		return bad("adam_beta1", c.Beta1, "want in [0, 1)")
	case c.Beta2 < 0 || c.Beta2 >= 1:
		return bad("adam_beta2", c.Beta2, "want in [0, 1)")
	case !(c.Eps > 0):
		return bad("adam_epsilon", c.Eps, "want > 0")
	case c.WeightDecay < 0:
		return bad("weight_decay", c.WeightDecay, "want >= 0")
	case c.MaxGradNorm < 0:
		return bad("max_grad_norm", c.MaxGradNorm, "want >= 0 (0: no clipping)")
	case c.EMADecay < 0 || c.EMADecay >= 1:
		return bad("ema_decay", c.EMADecay, "want in [0, 1)")
	case c.ClassDropout < 0 || c.ClassDropout >= 1:
		return bad("class_dropout", c.ClassDropout, "want in [0, 1)")
	case c.ClassDropout > 0 && c.NumClasses == 0:
		return bad("class_dropout", c.ClassDropout, "needs num_classes > 0")
	case c.NumClasses < 0:
		return bad("num_classes", c.NumClasses, "want >= 0")
	case c.StepsPerCall < 1:
		return bad("steps_per_call", c.StepsPerCall, "want >= 1")
	}
	return c.validateLR()
}

// EMADecayAt is the EMA decay used at optimizer step n (1-based): EMADecay, or with EMAWarmup
// diffusers' EMAModel default ramp min(EMADecay, (1+n')/(10+n')) with n' = n-1 (0 at the first step,
// which copies the weights).
func (c Config) EMADecayAt(n int64) float64 {
	if !c.EMAWarmup {
		return c.EMADecay
	}
	k := float64(n - 1)
	if k <= 0 {
		return 0
	}
	return min(c.EMADecay, (1+k)/(10+k))
}

// State is everything a run needs to continue exactly: weights, their moving average, AdamW's moments,
// the step counter and the device RNG state. Weights, EMA and moments are flat float32 vectors
// [total] in the model's Specs order (nn.Flatten): four device buffers in and out of each compiled
// call, and one fused optimizer update, instead of four per weight. Tensors may live on the device.
type State struct {
	Step   int64 // optimizer steps taken
	Params *tensors.Tensor
	EMA    *tensors.Tensor
	M, V   *tensors.Tensor // AdamW first and second moments
	RNG    *tensors.Tensor // GoMLX RNG state

	copies *deviceCopies // the state on devices 1..n-1 of a Trainer on several devices (shard.go)
}

// Trainer runs training steps of one model on one backend.
type Trainer struct {
	b      backends.Backend
	cfg    Config
	model  Model
	specs  []nn.Spec
	table  *tensors.Tensor // sampler.Table of the schedule
	data   *tensors.Tensor // [N, ...] float32
	labels *tensors.Tensor // [N] int32, nil if unconditional
	exec   *graph.Exec
	T      int
	engine Engine    // nil: the compiled graph
	shard  *sharding // nil: one device; see SetDevices (shard.go)
}

// New prepares training of model on images [N, ...] (model space, float32, flat C order with shape
// dims) with labels (nil: unconditional), under the noise schedule s.
func New(b backends.Backend, cfg Config, model Model, s *schedule.Schedule, images []float32, dims []int, labels []int) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := 1
	for _, d := range dims {
		n *= d
	}
	if len(dims) < 2 || n != len(images) {
		return nil, fmt.Errorf("train: %d image values for shape %v", len(images), dims)
	}
	if dims[0] < cfg.BatchSize {
		return nil, fmt.Errorf("train: %d examples are fewer than batch_size %d", dims[0], cfg.BatchSize)
	}
	tr := &Trainer{b: b, cfg: cfg, model: model, specs: model.Specs(), T: s.T()}
	tr.table = sampler.Table(cfg.Prediction, s)
	tr.data = tensors.FromFlatDataAndDimensions(images, dims...)
	if cfg.NumClasses > 0 {
		if len(labels) != dims[0] {
			return nil, fmt.Errorf("train: class-conditional training needs one label per image: %d labels, %d images", len(labels), dims[0])
		}
		l := make([]int32, len(labels))
		for i, v := range labels {
			if v < 0 || v >= cfg.NumClasses {
				return nil, fmt.Errorf("train: label %d of image %d is outside [0, %d)", v, i, cfg.NumClasses)
			}
			l[i] = int32(v)
		}
		tr.labels = tensors.FromFlatDataAndDimensions(l, len(l))
	}
	for _, name := range cfg.ZeroInit {
		if tr.specIndex(name) < 0 {
			return nil, fmt.Errorf("train: zero_init names %q, which the model does not have", name)
		}
	}
	exec, err := graph.NewExec(b, tr.buildStep)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	tr.exec = exec.WithName("train_step")
	return tr, nil
}

func (tr *Trainer) specIndex(name string) int {
	for i, s := range tr.specs {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// Init returns a fresh state: weights initialized from seed (PyTorch's default initializations, and
// zero for cfg.ZeroInit), EMA equal to the weights, zero moments, the device RNG seeded from seed.
func (tr *Trainer) Init(seed uint64) (*State, error) {
	params := nn.InitTensors(tr.specs, seed)
	if len(params) == 0 {
		return nil, fmt.Errorf("train: the model has no weights")
	}
	for _, name := range tr.cfg.ZeroInit {
		i := tr.specIndex(name)
		params[i] = tensors.FromShape(shapes.Make(dtypes.Float32, tr.specs[i].Shape...))
	}
	return tr.StateFrom(params, seed)
}

// StateFrom starts from given weights in Specs order (fine-tuning): EMA = weights, zero moments, RNG
// from seed.
func (tr *Trainer) StateFrom(params []*tensors.Tensor, seed uint64) (*State, error) {
	rng, err := graph.RNGStateFromSeed(int64(seed))
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	flat, err := nn.Flatten(tr.specs, params)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	ema, err := nn.Flatten(tr.specs, params)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	_, total := nn.Offsets(tr.specs)
	return &State{RNG: rng, Params: flat, EMA: ema,
		M: tensors.FromShape(shapes.Make(dtypes.Float32, total)),
		V: tensors.FromShape(shapes.Make(dtypes.Float32, total))}, nil
}

// Step runs len(batches) optimizer steps (at most... exactly cfg.StepsPerCall per compiled call; any
// count is accepted and split into calls) on the given batches of dataset indices, updating st in
// place, and returns the loss of each step. The state's buffers are donated to the computation.
func (tr *Trainer) Step(st *State, batches [][]int) ([]float32, error) {
	var losses []float32
	k := tr.cfg.StepsPerCall
	for len(batches) > 0 {
		n := min(k, len(batches))
		l, err := tr.call(st, batches[:n])
		if err != nil {
			return losses, err
		}
		losses = append(losses, l...)
		batches = batches[n:]
	}
	return losses, nil
}

func (tr *Trainer) call(st *State, batches [][]int) ([]float32, error) {
	lt, err := tr.launch(st, batches)
	if err != nil {
		return nil, err
	}
	return readLosses(lt, st.Step-int64(len(batches)))
}

// launch starts one compiled call of len(batches) steps and advances st. The losses stay on the device
// (the backend may return before the device has finished): read them with readLosses.
func (tr *Trainer) launch(st *State, batches [][]int) (*tensors.Tensor, error) {
	if tr.engine != nil {
		return tr.launchEngine(st, batches)
	}
	bsz := tr.cfg.BatchSize
	idx := make([]int32, 0, len(batches)*bsz)
	for _, b := range batches {
		if len(b) != bsz {
			return nil, fmt.Errorf("train: a batch of %d indices, want batch_size %d", len(b), bsz)
		}
		for _, i := range b {
			if i < 0 || i >= tr.data.Shape().Dimensions[0] {
				return nil, fmt.Errorf("train: batch index %d outside the dataset", i)
			}
			idx = append(idx, int32(i))
		}
	}
	if tr.shard != nil {
		return tr.launchSharded(st, idx, len(batches))
	}
	args := []any{tr.donate(st.Params), tr.donate(st.M), tr.donate(st.V), tr.donate(st.EMA), tr.donate(st.RNG),
		int32(st.Step), tensors.FromFlatDataAndDimensions(idx, len(batches), bsz), tr.data, tr.table}
	if tr.labels != nil {
		args = append(args, tr.labels)
	}
	out, err := tr.exec.Exec(args...)
	if err != nil {
		return nil, fmt.Errorf("train: step %d: %w", st.Step+1, err)
	}
	st.Params, st.M, st.V, st.EMA, st.RNG = out[0], out[1], out[2], out[3], out[4]
	st.Step += int64(len(batches))
	return out[5], nil
}

// A NonFiniteLoss is the error of a step whose loss is NaN or infinite; the state has been updated
// with that step and must not be saved.
type NonFiniteLoss struct {
	Step int64
	Loss float32
}

func (e *NonFiniteLoss) Error() string {
	return fmt.Sprintf("train: loss is %v at step %d: lower the learning rate or check the data", e.Loss, e.Step)
}

// readLosses reads the losses of a call whose first step was step0+1 (waiting for the device) and
// checks them.
func readLosses(lt *tensors.Tensor, step0 int64) ([]float32, error) {
	losses, err := tensors.CopyFlatData[float32](lt)
	lt.FinalizeAll()
	if err != nil {
		return nil, fmt.Errorf("train: reading the loss: %w", err)
	}
	for i, l := range losses {
		if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
			return losses, &NonFiniteLoss{Step: step0 + int64(i) + 1, Loss: l}
		}
	}
	return losses, nil
}

// donate hands a device buffer to the computation when the tensor has one (it is invalid afterwards);
// host tensors are passed as they are.
func (tr *Trainer) donate(t *tensors.Tensor) any {
	if t.IsOnDevice(0) && !t.IsLocal() {
		if d, err := graph.DonateTensorBuffer(t, tr.b, 0); err == nil {
			return d
		}
	}
	return t
}

// buildStep is the compiled computation: K optimizer steps (K = rows of idx).
// Inputs: params, m, v, ema (flat [total] each), rng, step0 (int32), idx [K, B], data, table[, labels].
// Outputs: params, m, v, ema, rng, losses [K].
func (tr *Trainer) buildStep(in []*graph.Node) []*graph.Node {
	params, m, v, ema := in[0], in[1], in[2], in[3]
	rng, step0, idx, data, table := in[4], in[5], in[6], in[7], in[8]
	var labels *graph.Node
	if len(in) > 9 {
		labels = in[9]
	}
	g := rng.Graph()
	k, bsz := idx.Shape().Dimensions[0], idx.Shape().Dimensions[1]
	losses := make([]*graph.Node, k)
	for s := 0; s < k; s++ {
		rows := graph.Reshape(graph.Slice(idx, graph.AxisElem(s), graph.AxisRange()), bsz, 1)
		x0 := graph.Gather(data, rows)
		var y *graph.Node
		if labels != nil {
			y = graph.Reshape(graph.Gather(labels, rows), bsz)
			if tr.cfg.ClassDropout > 0 {
				var u *graph.Node
				rng, u = graph.RandomUniform(rng, shapes.Make(dtypes.Float32, bsz))
				null := graph.Scalar(g, dtypes.Int32, tr.cfg.NumClasses)
				y = graph.Where(graph.LessThan(u, graph.Scalar(g, dtypes.Float32, tr.cfg.ClassDropout)),
					graph.BroadcastToShape(null, y.Shape()), y)
			}
		}
		var t, eps *graph.Node
		rng, t = graph.RandomIntN(rng, tr.T, shapes.Make(dtypes.Int32, bsz))
		rng, eps = graph.RandomNormal(rng, x0.Shape())
		xt := sampler.AddNoise(table, x0, eps, t)
		target := sampler.Target(table, x0, eps, t)
		weights := nn.SplitFlat(tr.specs, params)
		compute, xin := weights, xt
		if tr.cfg.Precision == BF16 {
			compute = make([]*graph.Node, len(weights))
			for i, w := range weights {
				compute[i] = graph.ConvertDType(w, dtypes.BFloat16)
			}
			xin = graph.ConvertDType(xt, dtypes.BFloat16)
		}
		pred := graph.ConvertDType(tr.model.Forward(nn.NewWeights(tr.specs, compute).Scope(), xin, t, y), dtypes.Float32)
		l := graph.ReduceAllMean(graph.Square(graph.Sub(pred, target)))
		grad := nn.JoinFlat(tr.specs, graph.Gradient(l, weights...))
		n := graph.AddScalar(graph.ConvertDType(step0, dtypes.Float32), float64(s+1)) // 1-based step
		params, m, v = tr.adamW(params, grad, m, v, n)
		ema = tr.updateEMA(ema, params, graph.AddScalar(graph.ConvertDType(step0, dtypes.Int64), int64(s+1)))
		losses[s] = graph.Reshape(l, 1)
	}
	return []*graph.Node{params, m, v, ema, rng, graph.Concatenate(losses, 0)}
}

// adamW is torch.optim.AdamW's update at 1-based step n (nn.AdamW), after clip_grad_norm_ when
// MaxGradNorm is set, on the flat vectors: one fused elementwise update for every weight.
func (tr *Trainer) adamW(p, grad, m, v, n *graph.Node) (p2, m2, v2 *graph.Node) {
	c := tr.cfg
	g := n.Graph()
	if c.MaxGradNorm > 0 {
		// torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
		norm := graph.Sqrt(graph.ReduceAllSum(graph.Square(grad)))
		scale := graph.Min(graph.Scalar(g, dtypes.Float32, 1),
			graph.Div(graph.Scalar(g, dtypes.Float32, c.MaxGradNorm), graph.AddScalar(norm, 1e-6)))
		grad = graph.Mul(grad, scale)
	}
	return nn.AdamW{LR: c.LR, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps, WeightDecay: c.WeightDecay}.UpdateScaled(p, grad, m, v, n, c.lrFactor(n))
}

// updateEMA: ema = d ema + (1 - d) p, with d = EMADecayAt(n).
func (tr *Trainer) updateEMA(ema, params, n *graph.Node) *graph.Node {
	g := n.Graph()
	var d *graph.Node
	if tr.cfg.EMAWarmup {
		k := graph.ConvertDType(graph.AddScalar(n, -1), dtypes.Float32)
		ramp := graph.Div(graph.OnePlus(k), graph.AddScalar(k, 10))
		d = graph.Min(ramp, graph.Scalar(g, dtypes.Float32, tr.cfg.EMADecay))
		d = graph.Where(graph.LessOrEqual(k, graph.ScalarZero(g, dtypes.Float32)), graph.ScalarZero(g, dtypes.Float32), d)
	} else {
		d = graph.Scalar(g, dtypes.Float32, tr.cfg.EMADecay)
	}
	return graph.Add(graph.Mul(ema, d), graph.Mul(params, graph.OneMinus(d)))
}

// ErrStop is returned by a hook to end Run early without an error.
var ErrStop = errors.New("train: stop")

// Weights returns the weights of a flat vector (st.Params or st.EMA) in Specs order, on the host.
func (tr *Trainer) Weights(flat *tensors.Tensor) ([]*tensors.Tensor, error) {
	return nn.Unflatten(tr.specs, flat)
}
