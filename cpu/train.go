package cpu

import (
	"fmt"
	"math"

	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Trainer runs the DDPM training step of train (Ho et al. 2020, Algorithm 1; see package train) on
// the engine, on the same train.State: it is a train.Engine (Trainer.SetEngine). Per step:
//
//	t, eps   drawn with GoMLX's RNG from st.RNG, by the same ops in the same order as the compiled
//	         step (on the pure-Go backend: a few milliseconds), so both paths see the same stream
//	x_t      = sqrt(alphaBar_t) x0 + sqrt(1 - alphaBar_t) eps, target likewise (sampler.Table)
//	loss     = mean((model(x_t, t) - target)^2), its gradient by Grad
//	         then AdamW and the EMA over the flat vectors, rounded as the compiled step rounds them
//
// so checkpoints, resume, EMA and export are shared with the GoMLX path.
type Trainer struct {
	cfg    train.Config
	g      *Grad
	table  []float32 // sampler.Table [T,4]
	T      int
	data   []float32
	dims   []int // [N, C, H, W]
	labels []int32
	draw   *graph.Exec
}

// NewTrainer prepares training of the UNet of uc with cfg on images [N, C, H, W] (flat, model space)
// with labels (nil: unconditional) under s. b is the pure-Go backend that draws the random numbers.
func NewTrainer(b backends.Backend, cfg train.Config, uc unet.Config, s *schedule.Schedule, images []float32, dims []int, labels []int) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Precision != train.FP32 {
		return nil, fmt.Errorf("cpu: the CPU engine trains in fp32 only (precision %s)", cfg.Precision)
	}
	if len(dims) != 4 || dims[0]*dims[1]*dims[2]*dims[3] != len(images) {
		return nil, fmt.Errorf("cpu: %d image values for shape %v, want [N, C, H, W]", len(images), dims)
	}
	if dims[0] < cfg.BatchSize {
		return nil, fmt.Errorf("cpu: %d examples are fewer than batch_size %d", dims[0], cfg.BatchSize)
	}
	if (cfg.NumClasses > 0) != (uc.NumClassEmbeds != nil) {
		return nil, fmt.Errorf("cpu: num_classes %d and the UNet's num_class_embeds disagree", cfg.NumClasses)
	}
	g, err := NewGrad(uc)
	if err != nil {
		return nil, err
	}
	tr := &Trainer{cfg: cfg, g: g, T: s.T(), data: images, dims: dims}
	tr.table = tensors.MustCopyFlatData[float32](sampler.Table(cfg.Prediction, s))
	if cfg.NumClasses > 0 {
		if len(labels) != dims[0] {
			return nil, fmt.Errorf("cpu: class-conditional training needs one label per image: %d labels, %d images", len(labels), dims[0])
		}
		tr.labels = make([]int32, len(labels))
		for i, v := range labels {
			if v < 0 || v >= cfg.NumClasses {
				return nil, fmt.Errorf("cpu: label %d of image %d is outside [0, %d)", v, i, cfg.NumClasses)
			}
			tr.labels[i] = int32(v)
		}
	}
	bsz := cfg.BatchSize
	x0 := shapes.Make(dtypes.Float32, bsz, dims[1], dims[2], dims[3])
	dropout := tr.labels != nil && cfg.ClassDropout > 0
	// The draws of train's buildStep, in its order: [class dropout's uniform], timesteps, noise.
	tr.draw, err = graph.NewExec(b, func(rng *graph.Node) []*graph.Node {
		var u, t, eps *graph.Node
		if dropout {
			rng, u = graph.RandomUniform(rng, shapes.Make(dtypes.Float32, bsz))
		}
		rng, t = graph.RandomIntN(rng, tr.T, shapes.Make(dtypes.Int32, bsz))
		rng, eps = graph.RandomNormal(rng, x0)
		if u == nil {
			u = graph.Zeros(rng.Graph(), shapes.Make(dtypes.Float32, bsz))
		}
		return []*graph.Node{rng, t, eps, u}
	})
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("cpu: %w", err)
	}
	return tr, nil
}

// Close frees the engine's memory.
func (tr *Trainer) Close() { tr.g.Close() }

// Step runs one optimizer step per batch of dataset indices on st (train.Engine).
func (tr *Trainer) Step(st *train.State, batches [][]int) ([]float32, error) {
	bsz, n := tr.cfg.BatchSize, tr.dims[0]
	for _, b := range batches {
		if len(b) != bsz {
			return nil, fmt.Errorf("cpu: a batch of %d indices, want batch_size %d", len(b), bsz)
		}
		for _, i := range b {
			if i < 0 || i >= n {
				return nil, fmt.Errorf("cpu: batch index %d outside the dataset", i)
			}
		}
	}
	var err error
	if err = tensors.ConstFlatData(st.Params, func(p []float32) { err = tr.g.SetWeights(p) }); err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	if err != nil {
		return nil, err
	}
	losses := make([]float32, 0, len(batches))
	for _, b := range batches {
		l, err := tr.step(st, b)
		if err != nil {
			return losses, err
		}
		losses = append(losses, l)
	}
	w := tr.g.Weights()
	if err := tensors.MutableFlatData(st.Params, func(p []float32) { copy(p, w) }); err != nil {
		return losses, fmt.Errorf("cpu: %w", err)
	}
	return losses, nil
}

func (tr *Trainer) step(st *train.State, batch []int) (float32, error) {
	bsz := tr.cfg.BatchSize
	c, h, w := tr.dims[1], tr.dims[2], tr.dims[3]
	img := c * h * w
	out, err := tr.draw.Exec(st.RNG)
	if err != nil {
		return 0, fmt.Errorf("cpu: drawing the noise: %w", err)
	}
	// Everything comes back to the host as fresh tensors: the backend's buffers are released here, and
	// the old RNG tensor is left to its owner.
	st.RNG = tensors.FromFlatDataAndDimensions(tensors.MustCopyFlatData[uint64](out[0]), out[0].Shape().Dimensions...)
	t := tensors.MustCopyFlatData[int32](out[1])
	eps := tensors.MustCopyFlatData[float32](out[2])
	u := tensors.MustCopyFlatData[float32](out[3])
	for _, o := range out {
		o.FinalizeAll()
	}
	var y []int32
	if tr.labels != nil {
		y = make([]int32, bsz)
		for i, k := range batch {
			y[i] = tr.labels[k]
			if tr.cfg.ClassDropout > 0 && u[i] < float32(tr.cfg.ClassDropout) {
				y[i] = int32(tr.cfg.NumClasses)
			}
		}
	}
	// x_t and the target as sampler.AddNoise and sampler.Target compute them, each product rounded.
	xt, target := make([]float32, bsz*img), make([]float32, bsz*img)
	for i, k := range batch {
		row := tr.table[4*int(t[i]) : 4*int(t[i])+4]
		x0 := tr.data[k*img : (k+1)*img]
		e := eps[i*img : (i+1)*img]
		for j := range x0 {
			xt[i*img+j] = float32(row[0]*x0[j]) + float32(row[1]*e[j])
			target[i*img+j] = float32(row[2]*x0[j]) + float32(row[3]*e[j])
		}
	}
	loss, err := tr.g.LossGrad(xt, target, bsz, h, w, t, y)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return float32(loss), fmt.Errorf("cpu: loss is %v at step %d: lower the learning rate or check the data", loss, st.Step+1)
	}
	st.Step++
	c0 := tr.cfg
	// The schedule's factor in float64, the product rounded once to float32 (the graph computes the
	// factor in float32: the two differ by float32 rounding, 1e-6 relative at most; train's tests).
	opt := AdamWConfig{LR: c0.LR * c0.LRFactor(st.Step-1), Beta1: c0.Beta1, Beta2: c0.Beta2, Eps: c0.Eps, WeightDecay: c0.WeightDecay, MaxGradNorm: c0.MaxGradNorm}
	p, grad := tr.g.Weights(), tr.g.Gradient()
	// The optimizer's loops run on the engine thread, in its team of threads, like every C call.
	err = tensors.MutableFlatData(st.M, func(m []float32) {
		err = tensors.MutableFlatData(st.V, func(v []float32) { do(func() { AdamW(opt, p, m, v, grad, st.Step) }) })
	})
	if err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	if err := tr.g.Pack(); err != nil {
		return 0, err
	}
	d := emaDecay(tr.cfg, st.Step)
	if err := tensors.MutableFlatData(st.EMA, func(ema []float32) { do(func() { EMA(ema, p, float64(d)) }) }); err != nil {
		return 0, fmt.Errorf("cpu: %w", err)
	}
	return float32(loss), nil
}

// emaDecay is train.Config.EMADecayAt computed in float32 as the compiled step does:
// min(decay, (1+k)/(10+k)) with k = n-1, 0 at the first step; decay without warmup.
func emaDecay(c train.Config, n int64) float32 {
	if !c.EMAWarmup {
		return float32(c.EMADecay)
	}
	k := float32(n - 1)
	if k <= 0 {
		return 0
	}
	return min((1+k)/(k+10), float32(c.EMADecay))
}
