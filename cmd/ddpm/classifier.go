package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/gomlx/gomlx/backends"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/fid"
)

// classifierHoldOut is the fraction of the training split the classifier does not train on, with
// the hold-out seed of `ddpm train --holdout` (refHoldOutSeed): the images of the "holdout"
// reference of `ddpm fid` are then unseen by the classifier as well as by the diffusion model.
const classifierHoldOut = 0.1

// runClassifier trains or evaluates our small CNN, the fast FID extractor of package fid.
//
//	ddpm classifier train --data mnist --out models/classifier-mnist
//	ddpm classifier eval --classifier models/classifier-mnist
func runClassifier(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if slices.ContainsFunc(args, isHelpFlag) {
			fmt.Fprint(stderr, classifierUsage)
			return flag.ErrHelp
		}
		return usagef("classifier: want a subcommand: train or eval (see `ddpm help classifier`)")
	}
	switch args[0] {
	case "train":
		return runClassifierTrain(ctx, args[1:], stdout, stderr)
	case "eval":
		return runClassifierEval(ctx, args[1:], stdout, stderr)
	}
	return usagef("classifier: unknown subcommand %q: want train or eval", args[0])
}

const classifierUsage = `Usage: ddpm classifier SUBCOMMAND [flags]

Subcommands:
  train   train the classifier on a data set's training split (ddpm classifier train -h)
  eval    measure a classifier's accuracy on a test split        (ddpm classifier eval -h)
`

func runClassifierTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("classifier train", "--data mnist --out models/classifier-mnist [flags]", stderr)
	def := fid.DefaultClassifierConfig()
	var (
		dataName = fs.String("data", "mnist", "dataset: "+strings.Join(data.Names(), ", "))
		dataDir  = fs.String("data-dir", "", "directory holding the dataset's idx .gz files (default: cache, Go module, download)")
		out      = fs.String("out", "", "directory to write "+fid.ClassifierFile+" to (default models/classifier-DATA)")
		epochs   = fs.Int("epochs", def.Epochs, "epochs over the training split (less the hold-out)")
		maxSteps = fs.Int64("max-steps", 0, "stop after this many optimizer steps (0: epochs decide)")
		batch    = fs.Int("batch", def.BatchSize, "batch size")
		lr       = fs.Float64("lr", def.LR, "Adam learning rate")
		wd       = fs.Float64("weight-decay", def.WeightDecay, "decoupled weight decay (AdamW; 0: Adam)")
		seed     = fs.Uint64("seed", def.Seed, "seed of the initial weights and the batch order")
		holdout  = fs.Float64("holdout", classifierHoldOut, "fraction of the training split not trained on (seed "+strconv.Itoa(refHoldOutSeed)+", the images of fid --ref DATA:holdout)")
		perCall  = fs.Int("steps-per-call", 0, "optimizer steps per compiled call (0: 1, the fastest measured)")
		evalB    = fs.Int("eval-batch", 500, "batch size of the test-set evaluation")
		testN    = fs.Int("test-n", 0, "measure the accuracy on the first N test images (0: all)")
		force    = fs.Bool("force", false, "replace an existing classifier in --out (cached FID statistics of the old one stay valid for it only)")
		bk       = backendFlag(fs)
	)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		*out = "models/classifier-" + *dataName
	}
	if _, err := os.Stat(fid.ClassifierPath(*out)); err == nil && !*force {
		return fmt.Errorf("classifier train: %s exists: choose another --out, or pass --force to replace it", fid.ClassifierPath(*out))
	}
	if *holdout < 0 || *holdout >= 1 {
		return usagef("classifier train: --holdout %g: want a fraction in [0, 1)", *holdout)
	}
	cfg := def
	cfg.Epochs, cfg.MaxSteps, cfg.BatchSize, cfg.LR, cfg.WeightDecay, cfg.Seed = *epochs, *maxSteps, *batch, *lr, *wd, *seed
	cfg.StepsPerCall = *perCall
	if cfg.StepsPerCall == 0 {
		cfg.StepsPerCall = stepsPerCall
	}
	if err := checkClassifierFlags(cfg, *perCall, *evalB, *testN); err != nil {
		return err
	}
	if err := checkOutputDir("classifier train", "out", *out); err != nil {
		return err
	}
	b, info, err := openBackend(*bk, stderr)
	if err != nil {
		return err
	}
	opts := data.Options{Dir: *dataDir, Progress: downloadProgress(stderr)}
	train, err := data.Load(ctx, *dataName, "train", opts)
	if err != nil {
		return err
	}
	test, err := loadTest(ctx, *dataName, opts, *testN)
	if err != nil {
		return err
	}
	if *holdout > 0 {
		if train, _, err = train.HoldOut(*holdout, refHoldOutSeed); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "training the %s classifier on %d images (%s train less a %g hold-out), %d epochs at batch %d, %d steps per call\n",
		*dataName, train.Len(), *dataName, *holdout, cfg.Epochs, cfg.BatchSize, cfg.StepsPerCall)
	t0 := time.Now()
	c, lastLoss, err := fitClassifier(ctx, b, train, cfg, stderr)
	if err != nil {
		return err
	}
	return saveClassifier(c, b, info, test, *out, *dataName, *holdout, *evalB, lastLoss, time.Since(t0), stdout)
}

func runClassifierEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("classifier eval", "[--classifier DIR] [--data mnist] [flags]", stderr)
	var (
		dir      = fs.String("classifier", "", "classifier directory or file (default: models/classifier-DATA, then the cache)")
		dataName = fs.String("data", "", "dataset to test on (default: the classifier's)")
		dataDir  = fs.String("data-dir", "", "directory holding the dataset's idx .gz files")
		batch    = fs.Int("batch", 500, "batch size")
		testN    = fs.Int("test-n", 0, "the first N test images (0: all)")
		bk       = backendFlag(fs)
	)
	if err := parse(fs, args); err != nil {
		return err
	}
	name := *dataName
	if name == "" && *dir == "" {
		name = "mnist"
	}
	path, err := findClassifier(name, *dir)
	if err != nil {
		return fmt.Errorf("classifier eval: %w", err)
	}
	c, err := fid.LoadClassifier(path)
	if err != nil {
		return err
	}
	if name == "" {
		name = c.Dataset
	}
	b, info, err := openBackend(*bk, stderr)
	if err != nil {
		return err
	}
	test, err := loadTest(ctx, name, data.Options{Dir: *dataDir, Progress: downloadProgress(stderr)}, *testN)
	if err != nil {
		return err
	}
	t0 := time.Now()
	acc, err := c.Accuracy(b, test, *batch)
	if err != nil {
		return err
	}
	recorded := "none recorded"
	if v, ok := c.TestAccuracy(); ok {
		recorded = fmt.Sprintf("%.4f recorded on %s images", v, c.Metadata["test_images"])
	}
	fmt.Fprintf(stdout, "test accuracy %.4f (%s test, %d images; %s) of %s, sha256 %s, %.1fs on %s\n",
		acc, name, test.Len(), recorded, fid.ClassifierPath(path), c.Extractor().WeightsHash[:16], time.Since(t0).Seconds(), info.Kind)
	return nil
}

// saveClassifier measures the trained classifier on the test split, records it in the metadata, saves
// it and prints the summary.
func saveClassifier(c *fid.Classifier, b backends.Backend, info backend.Info, test *data.Dataset, out, dataName string, holdout float64, evalB int, lastLoss float32, trainTime time.Duration, stdout io.Writer) error {
	t1 := time.Now()
	acc, err := c.Accuracy(b, test, evalB)
	if err != nil {
		return err
	}
	evalTime := time.Since(t1)
	c.Metadata["test_accuracy"] = strconv.FormatFloat(acc, 'f', 4, 64)
	c.Metadata["test_images"] = strconv.Itoa(test.Len())
	c.Metadata["holdout"] = strconv.FormatFloat(holdout, 'g', -1, 64)
	c.Metadata["holdout_seed"] = strconv.Itoa(refHoldOutSeed)
	c.Metadata["backend"] = info.Kind.String()
	if err := c.Save(out); err != nil {
		return err
	}
	fi, _ := os.Stat(fid.ClassifierPath(out))
	var size int64
	if fi != nil {
		size = fi.Size()
	}
	fmt.Fprintf(stdout, "test accuracy %.4f (%s test, %d images)\n", acc, dataName, test.Len())
	fmt.Fprintf(stdout, "wrote %s (%.2f MB, sha256 %s; extractor %q)\n", fid.ClassifierPath(out), float64(size)/1e6, c.Extractor().WeightsHash[:16], c.Extractor().Name)
	fmt.Fprintf(stdout, "time: training %.1fs (%s steps, last loss %.4f), test %.1fs, on %s\n", trainTime.Seconds(), c.Metadata["steps"], lastLoss, evalTime.Seconds(), info.Kind)
	return nil
}

// checkClassifierFlags checks classifier train's settings in the words of its flags.
func checkClassifierFlags(cfg fid.ClassifierConfig, perCall, evalBatch, testN int) error {
	for _, c := range []struct {
		flag  string
		v, lo int
	}{{"epochs", cfg.Epochs, 0}, {"batch", cfg.BatchSize, 1}, {"steps-per-call", perCall, 0}, {"eval-batch", evalBatch, 1}, {"test-n", testN, 0}} {
		if err := checkInt("classifier train", c.flag, c.v, c.lo, -1, ""); err != nil {
			return err
		}
	}
	switch {
	case cfg.Epochs < 1 && cfg.MaxSteps < 1:
		return usagef("classifier train: --epochs %d: want at least 1 (or --max-steps)", cfg.Epochs)
	case cfg.MaxSteps < 0:
		return usagef("classifier train: --max-steps %d: want >= 0", cfg.MaxSteps)
	case !(cfg.LR > 0) || math.IsInf(cfg.LR, 0):
		return usagef("classifier train: --lr %g: want > 0", cfg.LR)
	case cfg.WeightDecay < 0:
		return usagef("classifier train: --weight-decay %g: want >= 0", cfg.WeightDecay)
	}
	return nil
}

// fitClassifier trains the classifier with a progress bar; it returns the last loss too.
func fitClassifier(ctx context.Context, b backends.Backend, train *data.Dataset, cfg fid.ClassifierConfig, stderr io.Writer) (*fid.Classifier, float32, error) {
	var bar *progress
	var lastLoss float32
	c, err := fid.TrainClassifier(ctx, b, train, cfg, func(p fid.ClassifierProgress) {
		if bar == nil {
			bar = newProgress(stderr, "training the classifier", p.Steps, "steps", "shorten it with --epochs or --max-steps, or use a GPU (--backend cuda)")
		}
		lastLoss = p.Losses[len(p.Losses)-1]
		bar.update(p.Step, fmt.Sprintf("epoch %d, loss %.4f", p.Epoch+1, lastLoss))
	})
	if bar != nil {
		bar.finish()
	}
	return c, lastLoss, err
}

// loadTest loads the test split of a data set, its first n images when n > 0.
func loadTest(ctx context.Context, name string, opts data.Options, n int) (*data.Dataset, error) {
	if n < 0 {
		return nil, usagef("classifier: --test-n %d: want >= 0", n)
	}
	test, err := data.Load(ctx, name, "test", opts)
	if err != nil || n == 0 || n >= test.Len() {
		return test, err
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return test.Subset(idx), nil
}
