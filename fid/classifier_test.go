package fid

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/nn"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// randomClassifier is a classifier with PyTorch-initialized random weights from seed.
func randomClassifier(t *testing.T, seed uint64) *Classifier {
	t.Helper()
	c, err := NewClassifier("mnist", nn.InitTensors(ClassifierSpecs(), seed))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// randomImages returns n images [n,1,28,28] with values uniform in [0, 1).
func randomImages(seed uint64, n int) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	x := make([]float32, n*28*28)
	for i := range x {
		x[i] = r.Float32()
	}
	return x
}

// blocks is a synthetic labelled data set of n 28x28 images in [-1, 1]: class k is a bright 8x8
// block at column 2 + 5*(k%5) and row 4 + 12*(k/5) on a dark background, plus Gaussian noise
// (sigma 0.3), clipped. Easy to learn in a few steps, impossible to guess.
func blocks(seed uint64, n int) *data.Dataset {
	r := rand.New(rand.NewPCG(seed, 11))
	ds := &data.Dataset{Name: "blocks", Images: make([]float32, n*28*28), Labels: make([]int, n), C: 1, H: 28, W: 28}
	for i := range n {
		k := r.IntN(10)
		ds.Labels[i] = k
		x0, y0 := 2+5*(k%5), 4+12*(k/5)
		img := ds.Image(i)
		for y := range 28 {
			for x := range 28 {
				v := -0.8
				if x >= x0 && x < x0+8 && y >= y0 && y < y0+8 {
					v = 0.8
				}
				img[y*28+x] = float32(max(-1, min(1, v+0.3*r.NormFloat64())))
			}
		}
	}
	return ds
}

func TestClassifierSpecs(t *testing.T) {
	specs := ClassifierSpecs()
	if n := nn.Count(specs); n != 467818 {
		t.Errorf("ClassifierSpecs has %d weights, want 467818", n)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	want := "conv1.weight conv1.bias conv2.weight conv2.bias conv3.weight conv3.bias conv4.weight conv4.bias fc1.weight fc1.bias fc2.weight fc2.bias"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("weight names %q, want %q", got, want)
	}
}

// slowClassifier is the classifier's forward pass written out in float64 loops, for one image
// x [28*28] in [-1, 1]: the obvious reference for the graph.
func slowClassifier(c *Classifier, x []float32) (features, logits []float64) {
	specs := ClassifierSpecs()
	offsets, _ := nn.Offsets(specs)
	get := func(name string) []float32 {
		for i, s := range specs {
			if s.Name == name {
				return c.flat[offsets[i] : offsets[i]+s.Size()]
			}
		}
		panic(name)
	}
	// conv: 3x3 kernel, zero padding 1, then ReLU; in [ci,h,w] -> [co,ho,wo].
	conv := func(in []float64, ci, h, w int, name string, co, stride int) ([]float64, int, int) {
		wt, b := get(name+".weight"), get(name+".bias")
		ho, wo := (h+2-3)/stride+1, (w+2-3)/stride+1
		out := make([]float64, co*ho*wo)
		for o := range co {
			for oy := range ho {
				for ox := range wo {
					s := float64(b[o])
					for c := range ci {
						for ky := range 3 {
							for kx := range 3 {
								y, x := oy*stride+ky-1, ox*stride+kx-1
								if y < 0 || y >= h || x < 0 || x >= w {
									continue
								}
								s += float64(wt[((o*ci+c)*3+ky)*3+kx]) * in[(c*h+y)*w+x]
							}
						}
					}
					out[(o*ho+oy)*wo+ox] = max(s, 0)
				}
			}
		}
		return out, ho, wo
	}
	linear := func(in []float64, name string, nIn, nOut int) []float64 {
		wt, b := get(name+".weight"), get(name+".bias")
		out := make([]float64, nOut)
		for o := range nOut {
			s := float64(b[o])
			for i := range nIn {
				s += float64(wt[o*nIn+i]) * in[i]
			}
			out[o] = s
		}
		return out
	}
	h := make([]float64, len(x))
	for i, v := range x {
		h[i] = float64(v)
	}
	h, hh, ww := conv(h, 1, 28, 28, "conv1", 32, 1)
	h, hh, ww = conv(h, 32, hh, ww, "conv2", 32, 2)
	h, hh, ww = conv(h, 32, hh, ww, "conv3", 64, 1)
	h, _, _ = conv(h, 64, hh, ww, "conv4", 64, 2)
	features = linear(h, "fc1", 64*7*7, ClassifierDim)
	relu := make([]float64, len(features))
	for i, v := range features {
		relu[i] = max(v, 0)
	}
	return features, linear(relu, "fc2", ClassifierDim, ClassifierClasses)
}

// The graph's features and logits against slowClassifier on random weights and images, 3 images in
// batches of 2 (so the padded last batch is checked too). Tolerance 1e-4 (1 + |ref|): float32
// sums of up to 3136 terms of size ~0.1 against float64 (observed ~1e-6).
func TestClassifierMatchesSlowReference(t *testing.T) {
	b := goBackend(t)
	c := randomClassifier(t, 3)
	const n = 3
	images := randomImages(5, n) // in [0, 1]
	feat, err := c.Features(b, images, n, 1, 28, 28, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(feat) != n*ClassifierDim {
		t.Fatalf("Features returned %d values, want %d", len(feat), n*ClassifierDim)
	}
	ds := &data.Dataset{Images: make([]float32, len(images)), C: 1, H: 28, W: 28}
	for i, p := range images {
		ds.Images[i] = 2*p - 1
	}
	_, logits, err := c.run(b, ds.Images, n, 2)
	if err != nil {
		t.Fatal(err)
	}
	pred, err := c.Predict(b, ds, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		wantF, wantL := slowClassifier(c, ds.Image(i))
		for j, w := range wantF {
			if got := float64(feat[i*ClassifierDim+j]); math.Abs(got-w) > 1e-4*(1+math.Abs(w)) {
				t.Fatalf("image %d: feature[%d] = %g; want %g", i, j, got, w)
			}
		}
		best := 0
		for j, w := range wantL {
			if got := float64(logits[i*ClassifierClasses+j]); math.Abs(got-w) > 1e-4*(1+math.Abs(w)) {
				t.Fatalf("image %d: logit[%d] = %g; want %g", i, j, got, w)
			}
			if w > wantL[best] {
				best = j
			}
		}
		if pred[i] != best {
			t.Errorf("image %d: Predict = %d; want %d (the largest reference logit)", i, pred[i], best)
		}
	}
}

// Training on the synthetic blocks (10 classes) for 12 steps at batch 8: the loss must fall by
// half, and the accuracy on 200 fresh images must clearly beat chance (0.1). Observed: loss 2.30 ->
// 0.21, accuracy 1.0. Training is seeded, so a second run gives the same weights.
func TestTrainClassifierLearns(t *testing.T) {
	b := goBackend(t)
	train := blocks(1, 96)
	cfg := DefaultClassifierConfig()
	cfg.BatchSize, cfg.Epochs, cfg.LR, cfg.StepsPerCall = 8, 1, 3e-3, 2
	var losses []float32
	var calls int
	c, err := TrainClassifier(context.Background(), b, train, cfg, func(p ClassifierProgress) {
		calls++
		losses = append(losses, p.Losses...)
		if p.Steps != 12 {
			t.Errorf("progress says %d steps; want 12 (96 images / batch 8)", p.Steps)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(losses) != 12 || calls != 6 {
		t.Fatalf("%d losses in %d calls; want 12 in 6 (2 steps per call)", len(losses), calls)
	}
	first := losses[0]
	last := (losses[9] + losses[10] + losses[11]) / 3
	t.Logf("loss %.3f -> %.3f (mean of the last 3)", first, last)
	if !(last < first/2) {
		t.Errorf("loss fell from %.3f to %.3f (mean of the last 3 steps); want below half", first, last)
	}
	acc, err := c.Accuracy(b, blocks(2, 200), 100)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accuracy %.3f", acc)
	if acc < 0.6 {
		t.Errorf("accuracy %.3f on fresh images; want >= 0.6 (chance is 0.1)", acc)
	}
	if c.Dataset != "blocks" || c.Metadata["steps"] != "12" || c.Metadata["batch_size"] != "8" {
		t.Errorf("Dataset %q, metadata %v; want blocks, 12 steps, batch 8", c.Dataset, c.Metadata)
	}

	// Same seed, same weights: one step again from the start.
	cfg.MaxSteps = 1
	c1, err := TrainClassifier(context.Background(), b, train, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := TrainClassifier(context.Background(), b, train, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range c1.flat {
		if c1.flat[i] != c2.flat[i] {
			t.Fatalf("two runs with seed %d differ at weight %d: %g vs %g", cfg.Seed, i, c1.flat[i], c2.flat[i])
		}
	}
}

// One graph for every call: the epochs' steps are rounded up to a multiple of StepsPerCall, while
// MaxSteps is exact and lowers StepsPerCall to a divisor of it.
func TestTrainClassifierStepsPerCall(t *testing.T) {
	b := goBackend(t)
	ds := blocks(1, 16) // 2 steps an epoch at batch 8
	for _, tc := range []struct {
		name                   string
		epochs, perCall        int
		maxSteps               int64
		wantSteps, wantPerCall int
	}{
		{"rounded up", 1, 3, 0, 3, 3},
		{"exact max", 0, 3, 4, 4, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultClassifierConfig()
			cfg.BatchSize, cfg.Epochs, cfg.StepsPerCall, cfg.MaxSteps = 8, tc.epochs, tc.perCall, tc.maxSteps
			var perCall []int
			c, err := TrainClassifier(context.Background(), b, ds, cfg, func(p ClassifierProgress) { perCall = append(perCall, len(p.Losses)) })
			if err != nil {
				t.Fatal(err)
			}
			if c.Metadata["steps"] != strconv.Itoa(tc.wantSteps) || len(perCall) == 0 || perCall[0] != tc.wantPerCall || len(perCall)*tc.wantPerCall != tc.wantSteps {
				t.Errorf("%s steps in calls of %v; want %d in calls of %d", c.Metadata["steps"], perCall, tc.wantSteps, tc.wantPerCall)
			}
		})
	}
}

func TestTrainClassifierErrors(t *testing.T) {
	b := goBackend(t)
	ok := blocks(1, 8)
	cfg := DefaultClassifierConfig()
	cfg.BatchSize = 4
	rgb := &data.Dataset{Name: "rgb", Images: make([]float32, 8*3*28*28), Labels: make([]int, 8), C: 3, H: 28, W: 28}
	unlabelled := &data.Dataset{Name: "folder", Images: ok.Images, C: 1, H: 28, W: 28}
	badLabel := blocks(1, 8)
	badLabel.Labels[3] = 10
	for _, tc := range []struct {
		name string
		ds   *data.Dataset
		cfg  func(c *ClassifierConfig)
		want string
	}{
		{"rgb", rgb, nil, "1x28x28"},
		{"unlabelled", unlabelled, nil, "labelled"},
		{"label", badLabel, nil, "label 10 of image 3"},
		{"batch", ok, func(c *ClassifierConfig) { c.BatchSize = 16 }, "fewer than the batch size"},
		{"lr", ok, func(c *ClassifierConfig) { c.LR = 0 }, "learning_rate"},
		{"epochs", ok, func(c *ClassifierConfig) { c.Epochs = 0 }, "epochs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.cfg != nil {
				tc.cfg(&c)
			}
			_, err := TrainClassifier(context.Background(), b, tc.ds, c, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestClassifierSaveLoad(t *testing.T) {
	b := goBackend(t)
	c := randomClassifier(t, 9)
	c.Metadata["test_accuracy"] = "0.9912"
	if c.Extractor().WeightsHash != "" {
		t.Errorf("an unsaved classifier has weights hash %q; want none", c.Extractor().WeightsHash)
	}
	dir := filepath.Join(t.TempDir(), "models", "classifier-mnist")
	if err := c.Save(dir); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, ClassifierFile)
	hash, err := FileSHA256(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(file); fi == nil || fi.Size() > 2<<20 {
		t.Errorf("weights file %v; want under 2 MiB", fi)
	}
	got, err := LoadClassifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Extractor{Name: "classifier-mnist (ours, not Inception)", WeightsHash: hash}
	if got.Extractor() != want || c.Extractor() != want {
		t.Errorf("Extractor after Save %v, after Load %v; want %v", c.Extractor(), got.Extractor(), want)
	}
	if acc, ok := got.TestAccuracy(); !ok || acc != 0.9912 {
		t.Errorf("TestAccuracy = %v, %v; want 0.9912", acc, ok)
	}
	if got.Metadata["arch"] != ClassifierArch || got.Dataset != "mnist" {
		t.Errorf("metadata %v; want arch %s, data set mnist", got.Metadata, ClassifierArch)
	}
	images := randomImages(4, 2)
	f1, err := c.Features(b, images, 2, 1, 28, 28, 2)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := got.Features(b, images, 2, 1, 28, 28, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f1 {
		if f1[i] != f2[i] {
			t.Fatalf("feature %d = %g after Load, %g before", i, f2[i], f1[i])
		}
	}

	// Damaged or foreign files are refused with a reason.
	f, err := checkpoint.ReadSafetensors(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(f *checkpoint.File)
		want   string
	}{
		{"format", func(f *checkpoint.File) { f.Metadata["format"] = "ddpm-fid-stats/1" }, "not a classifier"},
		{"arch", func(f *checkpoint.File) { f.Metadata["arch"] = "cnn28-v0" }, "retrain"},
		{"missing", func(f *checkpoint.File) { delete(f.Tensors, "fc2.bias") }, `no tensor "fc2.bias"`},
		{"shape", func(f *checkpoint.File) { f.Tensors["fc2.bias"] = checkpoint.NewF32([]int{9}, make([]float32, 9)) }, "shape [9]"},
		{"dataset", func(f *checkpoint.File) { delete(f.Metadata, "dataset") }, "no data set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &checkpoint.File{Tensors: map[string]*checkpoint.Tensor{}, Metadata: map[string]string{}}
			for k, v := range f.Tensors {
				g.Tensors[k] = v
			}
			for k, v := range f.Metadata {
				g.Metadata[k] = v
			}
			tc.change(g)
			p := filepath.Join(t.TempDir(), "bad.safetensors")
			if err := checkpoint.WriteSafetensors(p, g); err != nil {
				t.Fatal(err)
			}
			_, err := LoadClassifier(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := LoadClassifier(t.TempDir()); err == nil || !strings.Contains(err.Error(), "ddpm classifier train") {
		t.Errorf("loading an empty directory: err = %v; want advice to train one", err)
	}
}

func TestNewClassifierErrors(t *testing.T) {
	w := nn.InitTensors(ClassifierSpecs(), 1)
	// fc1.weight transposed: the right size, the wrong shape.
	w[8] = tensors.FromFlatDataAndDimensions(tensors.MustCopyFlatData[float32](w[8]), 64*7*7, ClassifierDim)
	if _, err := NewClassifier("mnist", w); err == nil || !strings.Contains(err.Error(), "fc1.weight") {
		t.Errorf("fc1.weight [3136 128]: err = %v; want one naming fc1.weight", err)
	}
	if _, err := NewClassifier("mnist", w[:5]); err == nil {
		t.Errorf("5 weights of 12: no error")
	}
	if _, err := NewClassifier("", nn.InitTensors(ClassifierSpecs(), 1)); err == nil {
		t.Errorf("no data set name: no error")
	}
}

func TestClassifierFeaturesErrors(t *testing.T) {
	b := goBackend(t)
	c := randomClassifier(t, 1)
	if _, err := c.Features(b, make([]float32, 2*3*32*32), 2, 3, 32, 32, 2); err == nil || !strings.Contains(err.Error(), "Inception") {
		t.Errorf("RGB 32x32 images: err = %v; want advice to use Inception", err)
	}
	if _, err := c.Features(b, make([]float32, 28*28), 2, 1, 28, 28, 2); err == nil || !strings.Contains(err.Error(), "values") {
		t.Errorf("too few values: err = %v; want a count error", err)
	}
	if _, err := c.Accuracy(b, &data.Dataset{Images: make([]float32, 28*28), C: 1, H: 28, W: 28}, 1); err == nil {
		t.Errorf("Accuracy of an unlabelled set: no error")
	}
}

func TestFindClassifier(t *testing.T) {
	work, cache := t.TempDir(), t.TempDir()
	t.Chdir(work)
	t.Setenv("DDPM_CACHE", cache)
	if _, err := FindClassifier("mnist", ""); err == nil || !strings.Contains(err.Error(), "ddpm classifier train --data mnist") {
		t.Errorf("nothing anywhere: err = %v; want advice to train", err)
	}
	c := randomClassifier(t, 1)
	inCache := filepath.Join(cache, "classifier-mnist")
	if err := c.Save(inCache); err != nil {
		t.Fatal(err)
	}
	if got, err := FindClassifier("mnist", ""); err != nil || got != inCache {
		t.Errorf("FindClassifier = %q, %v; want the cache's %q", got, err, inCache)
	}
	if err := c.Save(filepath.Join("models", "classifier-mnist")); err != nil {
		t.Fatal(err)
	}
	if got, err := FindClassifier("mnist", ""); err != nil || got != filepath.Join("models", "classifier-mnist") {
		t.Errorf("FindClassifier = %q, %v; want the repository's models/classifier-mnist first", got, err)
	}
	if _, err := FindClassifier("mnist", filepath.Join(work, "nowhere")); err == nil {
		t.Errorf("an explicit path that does not exist: no error")
	}
}
