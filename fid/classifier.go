package fid

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/nn"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The classifier is a fast, offline feature extractor for 28x28 grayscale data sets (MNIST,
// Fashion-MNIST): a small CNN of ours, trained on the data set's training split. Its FID is NOT
// comparable with published (Inception) FIDs, nor across data sets or weights; it ranks models of one
// data set, which is what the lesson's exercise needs, in a fraction of Inception's time.
//
//	input   x [N,1,28,28] in [-1, 1] (the data package's range)
//	conv1   1->32, 3x3, pad 1, ReLU                     -> [N,32,28,28]
//	conv2   32->32, 3x3, stride 2, pad 1, ReLU          -> [N,32,14,14]
//	conv3   32->64, 3x3, pad 1, ReLU                    -> [N,64,14,14]
//	conv4   64->64, 3x3, stride 2, pad 1, ReLU          -> [N,64,7,7]
//	flatten (C,H,W order, as torch.flatten)             -> [N,3136]
//	fc1     3136->128                                   -> the features [N,128] (before the ReLU)
//	fc2     ReLU, 128->10                               -> logits [N,10]
//
// No max pool: its gradient needs SelectAndScatter, which the pure-Go backend lacks; strided
// convolutions downsample instead. 467,818 weights, 1.9 MB in float32.

const (
	// ClassifierArch names the architecture above in weights files; a file of another architecture
	// is refused.
	ClassifierArch = "cnn28-v1"
	// ClassifierDim is the number of features per image: the 128 outputs of fc1.
	ClassifierDim = 128
	// ClassifierClasses is the number of classes of the head.
	ClassifierClasses = 10
	// ClassifierFile is the name of the weights file in a classifier directory.
	ClassifierFile = "classifier.safetensors"

	classifierFormat = "ddpm-fid-classifier/1"
	classifierSize   = 28
)

// ClassifierName is the Extractor name of the classifier of data set dataset, e.g.
// "classifier-mnist (ours, not Inception)".
func ClassifierName(dataset string) string {
	return "classifier-" + dataset + " (ours, not Inception)"
}

// ClassifierSpecs lists the classifier's weights (PyTorch layouts and default initializations).
func ClassifierSpecs() []nn.Spec {
	l := nn.NewSpecList()
	l.Conv("conv1", 1, 32, 3)
	l.Conv("conv2", 32, 32, 3)
	l.Conv("conv3", 32, 64, 3)
	l.Conv("conv4", 64, 64, 3)
	l.Linear("fc1", 64*7*7, ClassifierDim)
	l.Linear("fc2", ClassifierDim, ClassifierClasses)
	return l.Specs()
}

// classifierForward computes the features [N,128] (fc1 before its ReLU) and the logits [N,10] of x
// [N,1,28,28] in [-1, 1]. exact computes every product to float32 accuracy on GPUs too
// (nn.ExactProduct), so that features do not depend on TF32; training uses the backend's default.
func classifierForward(w nn.Scope, x *graph.Node, exact bool) (features, logits *graph.Node) {
	prod := func(a, b *graph.Node, op func(a, b *graph.Node) *graph.Node) *graph.Node {
		if exact {
			return nn.ExactProduct(a, b, op)
		}
		return op(a, b)
	}
	relu := func(x *graph.Node) *graph.Node { return graph.Max(x, graph.ZerosLike(x)) }
	conv := func(h *graph.Node, name string, stride int) *graph.Node {
		s := w.Sub(name)
		y := prod(h, s.Get("weight"), func(a, b *graph.Node) *graph.Node {
			return nn.Conv2D(a, b, nil, stride, [4]int{1, 1, 1, 1}, nn.ConvAuto)
		})
		bias := s.Get("bias")
		return relu(graph.Add(y, graph.Reshape(bias, 1, bias.Shape().Dimensions[0], 1, 1)))
	}
	linear := func(h *graph.Node, name string) *graph.Node {
		s := w.Sub(name)
		y := prod(h, s.Get("weight"), func(a, b *graph.Node) *graph.Node { return nn.Linear(a, b, nil) })
		return graph.Add(y, graph.ExpandLeftToRank(s.Get("bias"), 2))
	}
	n := x.Shape().Dimensions[0]
	h := conv(x, "conv1", 1)
	h = conv(h, "conv2", 2)
	h = conv(h, "conv3", 1)
	h = conv(h, "conv4", 2)
	features = linear(graph.Reshape(h, n, 64*7*7), "fc1")
	logits = linear(relu(features), "fc2")
	return features, logits
}

// Classifier is our small CNN for one 28x28 grayscale data set with its trained weights (see
// ClassifierSpecs and the comment above it). Its features are an FID extractor that is fast and
// needs no download, but its FIDs are comparable only with FIDs of the same weights. Features,
// Logits and Accuracy are safe for concurrent use.
type Classifier struct {
	// Dataset is the data set it was trained on ("mnist", "fashion-mnist").
	Dataset string
	// Metadata is what its weights file says (test accuracy, training settings); set by Save and
	// LoadClassifier.
	Metadata map[string]string

	flat  []float32 // the weights in ClassifierSpecs order (nn.Flatten)
	hash  string    // hex SHA-256 of the weights file; "" until saved or loaded
	mu    sync.Mutex
	execs map[backends.Backend]*classifierExec
}

type classifierExec struct {
	exec    *graph.Exec // (x [B,1,28,28] in [-1,1], flat) -> (features [B,128], logits [B,10])
	weights *tensors.Tensor
}

// NewClassifier returns the classifier of data set dataset with the given weights, in ClassifierSpecs
// order and shapes (for example nn.InitTensors(ClassifierSpecs(), seed), or weights trained
// elsewhere). Its weights hash is empty until Save.
func NewClassifier(dataset string, weights []*tensors.Tensor) (*Classifier, error) {
	if dataset == "" {
		return nil, fmt.Errorf("fid: NewClassifier: no data set name")
	}
	flat, err := nn.Flatten(ClassifierSpecs(), weights)
	if err != nil {
		return nil, fmt.Errorf("fid: NewClassifier: %w", err)
	}
	for i, s := range ClassifierSpecs() {
		if !slices.Equal(weights[i].Shape().Dimensions, s.Shape) {
			return nil, fmt.Errorf("fid: NewClassifier: weight %q has shape %v, want %v", s.Name, weights[i].Shape().Dimensions, s.Shape)
		}
	}
	return newClassifier(dataset, tensors.MustCopyFlatData[float32](flat)), nil
}

// newClassifier wraps weights in ClassifierSpecs order.
func newClassifier(dataset string, flat []float32) *Classifier {
	return &Classifier{Dataset: dataset, flat: flat, Metadata: map[string]string{}, execs: map[backends.Backend]*classifierExec{}}
}

// Extractor identifies the classifier and its weights file in statistics files:
// ClassifierName(Dataset) and the SHA-256 of the file (empty before Save).
func (c *Classifier) Extractor() Extractor {
	return Extractor{Name: ClassifierName(c.Dataset), WeightsHash: c.hash}
}

// TestAccuracy returns the test accuracy recorded in the metadata, and whether there is one.
func (c *Classifier) TestAccuracy() (float64, bool) {
	v, err := strconv.ParseFloat(c.Metadata["test_accuracy"], 64)
	return v, err == nil
}

// ClassifierPath returns the weights file of path: path itself when it names a file, else
// path/ClassifierFile.
func ClassifierPath(path string) string {
	if strings.HasSuffix(strings.ToLower(path), ".safetensors") {
		return path
	}
	return filepath.Join(path, ClassifierFile)
}

// Save writes the weights (F32) and c.Metadata to path (a directory, created if needed, that gets
// ClassifierFile; or a .safetensors file) atomically, and sets the weights hash of c.Extractor to the
// SHA-256 of the written file.
func (c *Classifier) Save(path string) error {
	file := ClassifierPath(path)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("fid: saving the classifier: %w", err)
	}
	specs := ClassifierSpecs()
	offsets, total := nn.Offsets(specs)
	if len(c.flat) != total {
		return fmt.Errorf("fid: saving the classifier: %d weights, want %d", len(c.flat), total)
	}
	f := &checkpoint.File{Tensors: map[string]*checkpoint.Tensor{}, Metadata: map[string]string{}}
	for i, s := range specs {
		f.Tensors[s.Name] = checkpoint.NewF32(s.Shape, c.flat[offsets[i]:offsets[i]+s.Size()])
	}
	for k, v := range c.Metadata {
		f.Metadata[k] = v
	}
	f.Metadata["format"] = classifierFormat
	f.Metadata["arch"] = ClassifierArch
	f.Metadata["dataset"] = c.Dataset
	f.Metadata["input"] = "[N,1,28,28] in [-1, 1]; Features takes [0, 1] and maps p to 2p - 1"
	f.Metadata["features"] = "fc1 before its ReLU, 128"
	if err := checkpoint.WriteSafetensors(file, f); err != nil {
		return fmt.Errorf("fid: saving the classifier: %w", err)
	}
	hash, err := fileSHA256(file)
	if err != nil {
		return fmt.Errorf("fid: saving the classifier: %w", err)
	}
	c.hash, c.Metadata = hash, f.Metadata
	return nil
}

// LoadClassifier reads a classifier written by Save from path (its directory or its file). Every
// weight of ClassifierSpecs must be there with its shape, and the architecture must be
// ClassifierArch.
func LoadClassifier(path string) (*Classifier, error) {
	file := ClassifierPath(path)
	f, err := checkpoint.ReadSafetensors(file)
	if err != nil {
		return nil, fmt.Errorf("fid: classifier: %w (train one with `ddpm classifier train --data mnist --out models/classifier-mnist`)", err)
	}
	if f.Metadata["format"] != classifierFormat {
		return nil, fmt.Errorf("fid: %s is not a classifier written by ddpm classifier train (metadata format %q, want %q)", file, f.Metadata["format"], classifierFormat)
	}
	if f.Metadata["arch"] != ClassifierArch {
		return nil, fmt.Errorf("fid: classifier %s has architecture %q, this version knows %q: retrain it with this version's `ddpm classifier train`", file, f.Metadata["arch"], ClassifierArch)
	}
	dataset := f.Metadata["dataset"]
	if dataset == "" {
		return nil, fmt.Errorf("fid: classifier %s: metadata names no data set", file)
	}
	specs := ClassifierSpecs()
	_, total := nn.Offsets(specs)
	flat := make([]float32, 0, total)
	for _, s := range specs {
		t, ok := f.Tensors[s.Name]
		if !ok {
			return nil, fmt.Errorf("fid: classifier %s: no tensor %q", file, s.Name)
		}
		if !slices.Equal(t.Shape, s.Shape) {
			return nil, fmt.Errorf("fid: classifier %s: tensor %q has shape %v, want %v", file, s.Name, t.Shape, s.Shape)
		}
		v, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("fid: classifier %s: tensor %q: %w", file, s.Name, err)
		}
		flat = append(flat, v...)
	}
	if len(f.Tensors) != len(specs) {
		return nil, fmt.Errorf("fid: classifier %s: %d tensors, want the %d of ClassifierSpecs", file, len(f.Tensors), len(specs))
	}
	hash, err := fileSHA256(file)
	if err != nil {
		return nil, fmt.Errorf("fid: classifier: %w", err)
	}
	c := newClassifier(dataset, flat)
	c.hash, c.Metadata = hash, f.Metadata
	return c, nil
}

// FindClassifier returns the classifier directory for data set dataset: explicit when it is not
// empty (it must exist), else the first of models/classifier-<dataset> (relative to the working
// directory, where the repository ships them) and classifier-<dataset> in our cache ($DDPM_CACHE,
// else ddpm/ in os.UserCacheDir()) that holds ClassifierFile.
func FindClassifier(dataset, explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(ClassifierPath(explicit)); err != nil {
			return "", fmt.Errorf("fid: classifier: %w (train one with `ddpm classifier train --data %s --out %s`)", err, dataset, explicit)
		}
		return explicit, nil
	}
	dirs := []string{filepath.Join("models", "classifier-"+dataset)}
	root := os.Getenv("DDPM_CACHE")
	if root == "" {
		if d, err := os.UserCacheDir(); err == nil {
			root = filepath.Join(d, "ddpm")
		}
	}
	if root != "" {
		dirs = append(dirs, filepath.Join(root, "classifier-"+dataset))
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, ClassifierFile)); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("fid: no classifier for %s in %s: train one with `ddpm classifier train --data %s --out %s` (or pass its directory)",
		dataset, strings.Join(dirs, " or "), dataset, dirs[0])
}

// execFor returns the forward pass compiled for b, with b's copy of the weights.
func (c *Classifier) execFor(b backends.Backend) (*classifierExec, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.execs[b]; ok {
		return e, nil
	}
	specs := ClassifierSpecs()
	exec, err := graph.NewExec(b, func(x, flat *graph.Node) (*graph.Node, *graph.Node) {
		return classifierForward(nn.NewWeights(specs, nn.SplitFlat(specs, flat)).Scope(), x, true)
	})
	if err != nil {
		return nil, fmt.Errorf("fid: classifier on %s: %w", b.Name(), err)
	}
	e := &classifierExec{exec: exec.WithName("classifier"), weights: tensors.FromFlatDataAndDimensions(c.flat, len(c.flat))}
	c.execs[b] = e
	return e, nil
}

// Close releases the compiled graphs and the backends' copies of the weights. The classifier stays
// usable.
func (c *Classifier) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for b, e := range c.execs {
		e.exec.Finalize()
		e.weights.FinalizeAll()
		delete(c.execs, b)
	}
}

// run computes features [n,128] and logits [n,10] of x [n,1,28,28] in [-1, 1], in batches.
func (c *Classifier) run(b backends.Backend, x []float32, n, batch int) (features, logits []float32, err error) {
	if b == nil {
		return nil, nil, fmt.Errorf("fid: classifier: no backend (see package backend)")
	}
	if n <= 0 || batch <= 0 {
		return nil, nil, fmt.Errorf("fid: classifier: %d images in batches of %d: both must be positive", n, batch)
	}
	defer func() { // GoMLX reports graph-building errors as panics
		if r := recover(); r != nil {
			features, logits, err = nil, nil, fmt.Errorf("fid: classifier on %s: %v", b.Name(), r)
		}
	}()
	e, err := c.execFor(b)
	if err != nil {
		return nil, nil, err
	}
	batch = min(batch, n)
	const size = classifierSize * classifierSize
	logits = make([]float32, 0, n*ClassifierClasses)
	features, err = inBatches(x, n, size, batch, ClassifierDim, func(x []float32, first int) ([]float32, error) {
		in := tensors.FromFlatDataAndDimensions(x, batch, 1, classifierSize, classifierSize)
		defer in.FinalizeAll()
		out, err := e.exec.Exec(in, e.weights)
		if err != nil {
			return nil, fmt.Errorf("fid: classifier on %s, images from %d: %w", b.Name(), first, err)
		}
		defer out[0].FinalizeAll()
		defer out[1].FinalizeAll()
		l, err := tensors.CopyFlatData[float32](out[1])
		if err != nil {
			return nil, fmt.Errorf("fid: classifier: reading logits: %w", err)
		}
		k := min(batch, n-first)
		logits = append(logits, l[:k*ClassifierClasses]...)
		return tensors.CopyFlatData[float32](out[0])
	})
	if err != nil {
		return nil, nil, err
	}
	return features, logits, nil
}

// checkImages reports whether images [n,c,h,w] fit the classifier.
func (c *Classifier) checkImages(images []float32, n, ch, h, w int) error {
	if ch != 1 || h != classifierSize || w != classifierSize {
		return fmt.Errorf("fid: %s takes 1x28x28 grayscale images, got %dx%dx%d: use the Inception features for other images",
			ClassifierName(c.Dataset), ch, h, w)
	}
	if n <= 0 || len(images) != n*ch*h*w {
		return fmt.Errorf("fid: classifier: images have %d values, want N*C*H*W = %d*%d*%d*%d", len(images), n, ch, h, w)
	}
	return nil
}

// Features returns the features [n,128] (row-major; fc1 before its ReLU) of images [n,c,h,w] in
// [0, 1] (float32, NCHW, c = 1, h = w = 28: the convention of Inception.Features), computed on b in
// batches of batch images with float32-exact products (nn.ExactProduct). Each value p becomes 2p - 1,
// the range the classifier was trained on. The last partial batch is padded.
func (c *Classifier) Features(b backends.Backend, images []float32, n, ch, h, w, batch int) ([]float32, error) {
	if err := c.checkImages(images, n, ch, h, w); err != nil {
		return nil, err
	}
	x := make([]float32, len(images))
	for i, p := range images {
		x[i] = 2*p - 1
	}
	f, _, err := c.run(b, x, n, batch)
	return f, err
}

// Predict returns the predicted class of each image of ds (images in [-1, 1], 1x28x28).
func (c *Classifier) Predict(b backends.Backend, ds *data.Dataset, batch int) ([]int, error) {
	if err := c.checkImages(ds.Images, ds.Len(), ds.C, ds.H, ds.W); err != nil {
		return nil, err
	}
	_, logits, err := c.run(b, ds.Images, ds.Len(), batch)
	if err != nil {
		return nil, err
	}
	pred := make([]int, ds.Len())
	for i := range pred {
		row := logits[i*ClassifierClasses : (i+1)*ClassifierClasses]
		for k, v := range row {
			if v > row[pred[i]] {
				pred[i] = k
			}
		}
	}
	return pred, nil
}

// Accuracy returns the fraction of the images of ds (with labels) that the classifier labels right.
func (c *Classifier) Accuracy(b backends.Backend, ds *data.Dataset, batch int) (float64, error) {
	if len(ds.Labels) != ds.Len() {
		return 0, fmt.Errorf("fid: classifier accuracy: %s has %d labels for %d images; it needs a labelled data set", ds.Name, len(ds.Labels), ds.Len())
	}
	pred, err := c.Predict(b, ds, batch)
	if err != nil {
		return 0, err
	}
	right := 0
	for i, p := range pred {
		if p == ds.Labels[i] {
			right++
		}
	}
	return float64(right) / float64(len(pred)), nil
}

// ClassifierConfig holds the classifier's training settings. Zero values are not defaults: use
// DefaultClassifierConfig.
type ClassifierConfig struct {
	Epochs      int     `json:"epochs"`
	MaxSteps    int64   `json:"max_steps"` // > 0: stop after this many steps, before the epochs end
	BatchSize   int     `json:"batch_size"`
	LR          float64 `json:"learning_rate"`
	WeightDecay float64 `json:"weight_decay"` // decoupled (AdamW); 0: Adam
	Seed        uint64  `json:"seed"`         // of the initial weights and the batch order
	// StepsPerCall is how many optimizer steps one compiled call runs, so that one graph serves every
	// call: the steps of the epochs are rounded up to a multiple of it, and with MaxSteps it is
	// lowered to a divisor of MaxSteps. On a GPU 10 or more remove the per-call synchronization; on
	// the pure-Go backend 1.
	StepsPerCall int `json:"steps_per_call"`
}

// DefaultClassifierConfig is 3 epochs of Adam (lr 1e-3, PyTorch's betas and eps) at batch 128.
func DefaultClassifierConfig() ClassifierConfig {
	return ClassifierConfig{Epochs: 3, BatchSize: 128, LR: 1e-3, StepsPerCall: 1}
}

// Validate names the first setting out of range.
func (cfg ClassifierConfig) Validate() error {
	switch {
	case cfg.Epochs < 1 && cfg.MaxSteps < 1:
		return fmt.Errorf("fid: classifier training: epochs = %d: want >= 1 (or max_steps)", cfg.Epochs)
	case cfg.MaxSteps < 0:
		return fmt.Errorf("fid: classifier training: max_steps = %d: want >= 0", cfg.MaxSteps)
	case cfg.BatchSize < 1:
		return fmt.Errorf("fid: classifier training: batch_size = %d: want >= 1", cfg.BatchSize)
	case !(cfg.LR > 0) || math.IsInf(cfg.LR, 0):
		return fmt.Errorf("fid: classifier training: learning_rate = %v: want > 0", cfg.LR)
	case cfg.WeightDecay < 0:
		return fmt.Errorf("fid: classifier training: weight_decay = %v: want >= 0", cfg.WeightDecay)
	case cfg.StepsPerCall < 1:
		return fmt.Errorf("fid: classifier training: steps_per_call = %d: want >= 1", cfg.StepsPerCall)
	}
	return nil
}

// Adam's constants (torch.optim.Adam's defaults).
const (
	adamBeta1 = 0.9
	adamBeta2 = 0.999
	adamEps   = 1e-8
)

// ClassifierProgress is what TrainClassifier reports after each compiled call.
type ClassifierProgress struct {
	Step, Steps int64     // steps done, steps in all
	Epoch       int       // the epoch of the last step (0-based)
	Losses      []float32 // the cross-entropy of each step of the call
}

// TrainClassifier trains a classifier from scratch on ds (a 1x28x28 data set with labels in 0..9,
// images in [-1, 1]) on backend b: cross-entropy, Adam(W) with cfg's settings, shuffled epochs
// (data.Batcher, last partial batch dropped), the weights initialized as PyTorch does
// (nn.InitTensors) from cfg.Seed. The data set lives on the device; each compiled call takes the
// batch indices and runs cfg.StepsPerCall steps on one flat weight vector and its moments, donated.
// progress, if not nil, is called after each call. The result's Dataset is ds.Name; it is not
// saved and has no accuracy yet.
func TrainClassifier(ctx context.Context, b backends.Backend, ds *data.Dataset, cfg ClassifierConfig, progress func(ClassifierProgress)) (c *Classifier, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("fid: classifier training: no backend (see package backend)")
	}
	if ds.C != 1 || ds.H != classifierSize || ds.W != classifierSize {
		return nil, fmt.Errorf("fid: classifier training: %s has %dx%dx%d images; the classifier takes 1x28x28", ds.Name, ds.C, ds.H, ds.W)
	}
	n := ds.Len()
	if len(ds.Labels) != n {
		return nil, fmt.Errorf("fid: classifier training: %s has %d labels for %d images; it needs a labelled data set", ds.Name, len(ds.Labels), n)
	}
	if n < cfg.BatchSize {
		return nil, fmt.Errorf("fid: classifier training: %d images are fewer than the batch size %d", n, cfg.BatchSize)
	}
	labels := make([]int32, n)
	for i, l := range ds.Labels {
		if l < 0 || l >= ClassifierClasses {
			return nil, fmt.Errorf("fid: classifier training: label %d of image %d is outside 0..%d", l, i, ClassifierClasses-1)
		}
		labels[i] = int32(l)
	}
	defer func() { // GoMLX reports graph-building errors as panics
		if r := recover(); r != nil {
			c, err = nil, fmt.Errorf("fid: classifier training on %s: %v", b.Name(), r)
		}
	}()

	bt, err := data.NewBatcher(data.BatcherState{N: n, BatchSize: cfg.BatchSize, DropLast: true, Seed: cfg.Seed})
	if err != nil {
		return nil, err
	}
	steps := int64(cfg.Epochs) * int64(bt.BatchesPerEpoch())
	if cfg.MaxSteps > 0 && (cfg.Epochs < 1 || cfg.MaxSteps < steps) {
		steps = cfg.MaxSteps
	}
	// One compiled graph for every call: an exact MaxSteps lowers K to a divisor of it; the epochs'
	// count is rounded up to a multiple of K instead (at most K-1 steps into the next epoch).
	k := int64(cfg.StepsPerCall)
	if cfg.MaxSteps > 0 && steps == cfg.MaxSteps {
		for steps%k != 0 {
			k--
		}
	} else {
		steps = (steps + k - 1) / k * k
	}

	specs := ClassifierSpecs()
	params, err := nn.Flatten(specs, nn.InitTensors(specs, cfg.Seed))
	if err != nil {
		return nil, fmt.Errorf("fid: classifier training: %w", err)
	}
	_, total := nn.Offsets(specs)
	m := tensors.FromShape(shapes.Make(dtypes.Float32, total))
	v := tensors.FromShape(shapes.Make(dtypes.Float32, total))
	images := tensors.FromFlatDataAndDimensions(ds.Images, n, 1, classifierSize, classifierSize)
	labelsT := tensors.FromFlatDataAndDimensions(labels, n)
	defer images.FinalizeAll()
	defer labelsT.FinalizeAll()

	exec, err := graph.NewExec(b, func(in []*graph.Node) []*graph.Node { return classifierStep(cfg, specs, in) })
	if err != nil {
		return nil, fmt.Errorf("fid: classifier training: %w", err)
	}
	defer exec.Finalize()
	exec = exec.WithName("classifier_step")
	donate := func(t *tensors.Tensor) any {
		if t.IsOnDevice(0) && !t.IsLocal() {
			if d, err := graph.DonateTensorBuffer(t, b, 0); err == nil {
				return d
			}
		}
		return t
	}
	idx := make([]int32, 0, int(k)*cfg.BatchSize)
	for step := int64(0); step < steps; step += k {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		idx = idx[:0]
		for range k {
			for _, i := range bt.Next() {
				idx = append(idx, int32(i))
			}
		}
		out, err := exec.Exec(donate(params), donate(m), donate(v), int32(step),
			tensors.FromFlatDataAndDimensions(idx, int(k), cfg.BatchSize), images, labelsT)
		if err != nil {
			return nil, fmt.Errorf("fid: classifier training, step %d: %w", step+1, err)
		}
		params, m, v = out[0], out[1], out[2]
		losses, err := tensors.CopyFlatData[float32](out[3])
		out[3].FinalizeAll()
		if err != nil {
			return nil, fmt.Errorf("fid: classifier training: reading the loss: %w", err)
		}
		for i, l := range losses {
			if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
				return nil, fmt.Errorf("fid: classifier training: loss is %v at step %d: lower the learning rate", l, step+int64(i)+1)
			}
		}
		if progress != nil {
			progress(ClassifierProgress{Step: step + k, Steps: steps, Epoch: bt.Epoch(), Losses: losses})
		}
	}
	flat, err := tensors.CopyFlatData[float32](params)
	params.FinalizeAll()
	m.FinalizeAll()
	v.FinalizeAll()
	if err != nil {
		return nil, fmt.Errorf("fid: classifier training: reading the weights: %w", err)
	}
	c = newClassifier(ds.Name, flat)
	c.Metadata["train_images"] = strconv.Itoa(n)
	c.Metadata["steps"] = strconv.FormatInt(steps, 10)
	c.Metadata["epochs"] = fmt.Sprintf("%.3g", float64(steps)/float64(bt.BatchesPerEpoch()))
	c.Metadata["batch_size"] = strconv.Itoa(cfg.BatchSize)
	c.Metadata["learning_rate"] = strconv.FormatFloat(cfg.LR, 'g', -1, 64)
	c.Metadata["weight_decay"] = strconv.FormatFloat(cfg.WeightDecay, 'g', -1, 64)
	c.Metadata["seed"] = strconv.FormatUint(cfg.Seed, 10)
	return c, nil
}

// classifierStep is the compiled training call: K optimizer steps (K = rows of idx).
// Inputs: params, m, v (flat [total]), step0 (int32, steps done before), idx [K,B] int32, images
// [N,1,28,28], labels [N] int32. Outputs: params, m, v, losses [K].
//
// Per step, the mean cross-entropy of the batch,
//
//	loss = -1/B sum_i log softmax(logits_i)[y_i]
//
// and Adam(W) at 1-based step n (nn.AdamW; with weight decay 0, torch.optim.Adam).
func classifierStep(cfg ClassifierConfig, specs []nn.Spec, in []*graph.Node) []*graph.Node {
	params, m, v, step0, idx, images, labels := in[0], in[1], in[2], in[3], in[4], in[5], in[6]
	opt := nn.AdamW{LR: cfg.LR, Beta1: adamBeta1, Beta2: adamBeta2, Eps: adamEps, WeightDecay: cfg.WeightDecay}
	k, bsz := idx.Shape().Dimensions[0], idx.Shape().Dimensions[1]
	losses := make([]*graph.Node, k)
	for s := range k {
		rows := graph.Reshape(graph.Slice(idx, graph.AxisElem(s), graph.AxisRange()), bsz, 1)
		x := graph.Gather(images, rows)                                                                      // [B,1,28,28]
		y := graph.OneHot(graph.Reshape(graph.Gather(labels, rows), bsz), ClassifierClasses, dtypes.Float32) // [B,10]
		weights := nn.SplitFlat(specs, params)
		_, logits := classifierForward(nn.NewWeights(specs, weights).Scope(), x, false)
		loss := graph.Neg(graph.ReduceAllMean(graph.ReduceSum(graph.Mul(y, graph.LogSoftmax(logits)), -1)))
		grad := nn.JoinFlat(specs, graph.Gradient(loss, weights...))

		n := graph.AddScalar(graph.ConvertDType(step0, dtypes.Float32), float64(s+1))
		params, m, v = opt.Update(params, grad, m, v, n)
		losses[s] = graph.Reshape(loss, 1)
	}
	return []*graph.Node{params, m, v, graph.Concatenate(losses, 0)}
}
