package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/fid"
	"github.com/ddpm/ddpm/models"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// refHoldOutSeed is the seed of the "holdout" reference split, DATA:holdout = data.HoldOut(0.1,
// refHoldOutSeed) of the training split: the seed `ddpm train --holdout 0.1` uses, so a model trained
// that way never saw these images.
const refHoldOutSeed = 1234

// refHoldOutFrac is the fraction of the training split in DATA:holdout.
const refHoldOutFrac = 0.1

// featureExtractor is what FID needs of a network: Inception or our classifier.
type featureExtractor interface {
	Features(b backends.Backend, images []float32, n, c, h, w, batch int) ([]float32, error)
	Extractor() fid.Extractor
}

// fidResult is the --json line of ddpm fid.
type fidResult struct {
	FID         float64 `json:"fid"`
	N           int     `json:"n"`
	RefN        int     `json:"ref_n"`
	Ref         string  `json:"ref"`
	Dataset     string  `json:"dataset,omitempty"`
	Extractor   string  `json:"extractor"`
	WeightsHash string  `json:"weights_sha256"`
	Source      string  `json:"source"`
	Sampler     string  `json:"sampler,omitempty"`
	Steps       int     `json:"steps,omitempty"`
	Eta         float64 `json:"eta,omitempty"`
	Seed        int64   `json:"seed"`
	Batch       int     `json:"batch,omitempty"`
	Backend     string  `json:"backend"`
	Device      string  `json:"device"`
	SampleS     float64 `json:"sample_s"`
	FirstBatchS float64 `json:"sample_first_batch_s,omitempty"`
	FeaturesS   float64 `json:"features_s"`
	RefS        float64 `json:"ref_s"`
	RefCached   bool    `json:"ref_cached"`
	DistanceS   float64 `json:"distance_s"`
	TotalS      float64 `json:"total_s"`
}

// runFID generates N samples (or reads images) and computes their FID against reference statistics.
func runFID(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("fid", "[--run DIR | --model DIR_OR_HUB | --images FILE.safetensors[#KEY] | --images DIR | --images DATA:SPLIT] [--ref SPEC] [flags]", stderr)
	var (
		runDir     = fs.String("run", "", "a run directory of ddpm train (its EMA weights)")
		modelFlag  = fs.String("model", "", "a diffusers pipeline directory or hub name (default: the bundled MNIST model)")
		imagesArg  = fs.String("images", "", "score these images instead of sampling: FILE.safetensors[#KEY] ([N,C,H,W] float32 in model space [-1, 1], as ddpm sample --out x.safetensors writes; key default \"sample\"), a folder of PNG/JPEG files, or real images DATA:SPLIT[A:B] (as --ref)")
		n          = fs.Int("n", 5000, "number of samples (with --images: the first N; default all)")
		samplerArg = fs.String("sampler", "ddpm", "ddpm (ancestral), ddim, dpmsolver++, sde-dpmsolver++, euler, euler_ancestral or heun")
		steps      = fs.Int("steps", 0, "sampling steps (default: all T for ddpm, 100 for ddim)")
		eta        = fs.Float64("eta", 0, "DDIM eta: 0 deterministic, 1 DDPM-like")
		seed       = fs.Int64("seed", 0, "seed: batch k of --batch samples uses seed S+k (with --batch >= --n, the samples of ddpm sample --seed S)")
		batch      = fs.Int("batch", 500, "samples per sampling call (one compiled graph; the last batch is sampled whole and cut)")
		refArg     = fs.String("ref", "", "reference: a statistics file (.safetensors, from an earlier run's cache), a folder of images, or a split DATA:SPLIT[A:B] "+
			"with DATA mnist or fashion-mnist, SPLIT train, test or holdout (10% of train, seed "+strconv.Itoa(refHoldOutSeed)+"), e.g. mnist:test[:5000] "+
			"(default: mnist:test for the bundled model, DATA:holdout or DATA:test for a --run)")
		featArg   = fs.String("features", "inception", "inception (pytorch-fid's, comparable with published FIDs) or classifier (ours, 28x28 grayscale, fast; its FIDs compare only with each other)")
		inception = fs.String("inception-weights", "", "pytorch-fid's "+fid.InceptionWeightsFile+" (default: our cache, torch hub's cache, then a download)")
		classDir  = fs.String("classifier", "", "classifier directory (default: models/classifier-DATA, then DDPM_CACHE/classifier-DATA)")
		featBatch = fs.Int("feature-batch", 0, "images per feature-extraction call (default: 250 on XLA, 16 on the pure-Go backend; 500 for the classifier)")
		save      = fs.String("save-samples", "", "also write the generated samples to this .safetensors (key \"sample\", [N,C,H,W], model space), to score them again with --images")
		dataDir   = fs.String("data-dir", "", "directory holding the dataset's idx .gz files (for a DATA:SPLIT reference)")
		noCache   = fs.Bool("no-cache", false, "recompute the reference statistics of a DATA:SPLIT even when they are cached")
		jsonOut   = fs.Bool("json", false, "also print the result as one JSON line")
		bk        = backendFlag(fs)
	)
	if err := parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	sources := 0
	for _, name := range []string{"run", "model", "images"} {
		if set[name] {
			sources++
		}
	}
	switch {
	case sources > 1:
		return usagef("fid: give one of --run, --model and --images")
	case *n < 2:
		return usagef("fid: --n %d: want at least 2 images for a covariance", *n)
	case *batch < 1:
		return usagef("fid: --batch %d: want >= 1", *batch)
	case *featBatch < 0:
		return usagef("fid: --feature-batch %d: want >= 1 (0: the default)", *featBatch)
	case *featArg != "inception" && *featArg != "classifier":
		return usagef("fid: --features %q: want inception or classifier", *featArg)
	case *save != "" && *imagesArg != "":
		return usagef("fid: --save-samples keeps generated samples; with --images there are none")
	case *save != "" && !strings.EqualFold(filepath.Ext(*save), ".safetensors"):
		return usagef("fid: --save-samples %s: want a .safetensors file", *save)
	}
	if set["images"] {
		for _, name := range []string{"sampler", "steps", "eta", "seed", "batch"} {
			if set[name] {
				return usagef("fid: --%s is for sampling; with --images nothing is sampled", name)
			}
		}
	}
	kind := strings.ToLower(*samplerArg)
	var knownKind pipeline.Scheduler
	if err := knownKind.UnmarshalText([]byte(kind)); err != nil {
		return usagef("fid: --sampler %q: %v", *samplerArg, err)
	}
	tStart := time.Now()
	res := fidResult{Seed: *seed}

	// The generator or the images, checked before anything slow.
	var gen *fidGenerator
	var imgs *fidImages
	if *imagesArg != "" {
		var err error
		if imgs, err = readFIDImages(ctx, *imagesArg, *dataDir, stderr); err != nil {
			return err
		}
		if set["n"] {
			if *n > imgs.n {
				return fmt.Errorf("fid: --n %d, but %s holds %d images", *n, *imagesArg, imgs.n)
			}
			imgs.cut(*n)
		}
		if imgs.n < 2 {
			return fmt.Errorf("fid: %s holds %d image; want at least 2 for a covariance", *imagesArg, imgs.n)
		}
		res.Source, res.Sampler, res.Steps, res.Eta = imgs.describe, imgs.meta["sampler"], atoi(imgs.meta["steps"]), atof(imgs.meta["eta"])
		if s, err := strconv.ParseInt(imgs.meta["seed"], 10, 64); err == nil {
			res.Seed = s
		}
	} else {
		var err error
		if gen, err = newFIDGenerator(ctx, *runDir, *modelFlag, kind, *steps, *eta, stderr); err != nil {
			return err
		}
		res.Source, res.Sampler, res.Steps, res.Eta, res.Batch = gen.describe, kind, gen.steps, gen.eta, min(*batch, *n)
		if kind == "ddpm" {
			res.Eta = 0
		}
	}
	var shape [3]int // [C,H,W] of the images to score
	if imgs != nil {
		shape = imgs.shape
	} else {
		shape = gen.shape
	}

	// The reference.
	refSpec := *refArg
	if refSpec == "" {
		switch {
		case gen != nil && gen.defaultRef != "":
			refSpec = gen.defaultRef
		default:
			return usagef("fid: give --ref (a DATA:SPLIT such as mnist:test[:5000], a statistics file or an image folder)")
		}
	}
	ref, err := parseRef(refSpec)
	if err != nil {
		return err
	}
	res.Ref, res.Dataset = ref.String(), ref.split.Dataset

	// The extractor.
	b, info, err := openBackend(*bk, stderr)
	if err != nil {
		return err
	}
	res.Backend, res.Device = info.Kind.String(), info.Device
	ext, err := loadExtractor(*featArg, *inception, *classDir, ref, shape)
	if err != nil {
		return err
	}
	res.Extractor, res.WeightsHash = ext.Extractor().Name, ext.Extractor().WeightsHash
	fb := *featBatch
	if fb == 0 {
		switch {
		case *featArg == "classifier":
			fb = 500
		case info.Kind == backend.Go:
			fb = 16
		default:
			fb = 250
		}
	}
	fmt.Fprintf(stderr, "extractor: %s, sha256 %s\n", ext.Extractor().Name, short(ext.Extractor().WeightsHash))

	// Reference statistics first: a bad reference fails before the long sampling.
	t0 := time.Now()
	refStats, cached, err := ref.stats(ctx, b, ext, *dataDir, fb, shape, *noCache, stderr)
	if err != nil {
		return err
	}
	res.RefS, res.RefCached, res.RefN = time.Since(t0).Seconds(), cached, refStats.N

	// The images to score, in [0, 1].
	var x []float32
	if imgs != nil {
		x, res.N = imgs.x, imgs.n
	} else {
		t1 := time.Now()
		var first time.Duration
		vals, err := gen.sample(b, info.Kind, *n, *batch, *seed, stderr, &first)
		if err != nil {
			return err
		}
		res.SampleS, res.FirstBatchS, res.N = time.Since(t1).Seconds(), first.Seconds(), *n
		if *save != "" {
			if err := gen.save(*save, vals, *n, *seed, *batch); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "wrote %s\n", *save)
		}
		x = toUnit(vals)
	}

	t2 := time.Now()
	feats, err := extractFeatures(b, ext, x, res.N, shape, fb, "generated", stderr)
	if err != nil {
		return err
	}
	genStats, err := fid.ComputeStats(feats, len(feats)/res.N)
	if err != nil {
		return err
	}
	genStats.Extractor = ext.Extractor()
	res.FeaturesS = time.Since(t2).Seconds()

	t3 := time.Now()
	d, err := fid.Distance(genStats, refStats)
	if err != nil {
		return err
	}
	res.DistanceS = time.Since(t3).Seconds()
	res.FID = d
	res.TotalS = time.Since(tStart).Seconds()

	fmt.Fprintf(stdout, "FID %.4f  (N %d vs %d reference images)\n", d, res.N, res.RefN)
	fmt.Fprintf(stdout, "  images:    %s\n", res.Source)
	how := "computed"
	if cached {
		how = "cached"
	}
	fmt.Fprintf(stdout, "  reference: %s (%s; %s)\n", res.Ref, how, refStats.Source)
	fmt.Fprintf(stdout, "  extractor: %s, sha256 %s\n", res.Extractor, short(res.WeightsHash))
	fmt.Fprintf(stdout, "  time:      sampling %.1fs, features %.1fs, reference %.1fs, distance %.1fs, total %.1fs on %s (%s)\n",
		res.SampleS, res.FeaturesS, res.RefS, res.DistanceS, res.TotalS, info.Kind, info.Device)
	if res.N != res.RefN {
		fmt.Fprintf(stdout, "  note: FID is biased by N (it falls as N grows); compare FIDs of equal N only\n")
	}
	if *featArg == "classifier" {
		fmt.Fprintf(stdout, "  note: classifier features (ours, not Inception): not comparable with published FIDs\n")
	}
	if *jsonOut {
		j, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(j))
	}
	return nil
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	if hash == "" {
		return "(none)"
	}
	return hash
}

func atoi(s string) int { v, _ := strconv.Atoi(s); return v }

func atof(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }

// toUnit maps model-space values to what pytorch-fid reads from a saved 8-bit image: clamp to
// [-1, 1], x -> (x + 1) / 2, rounded to the nearest of the 256 levels p/255. Real images of the data
// package become exactly p/255 this way, as torchvision's ToTensor gives, so generated and real
// images take the same path.
func toUnit(x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		u := (float64(v) + 1) / 2
		u = max(0, min(1, u))
		out[i] = float32(math.Round(u*255)) / 255
	}
	return out
}

// extractFeatures computes the features of x [n,C,H,W] in [0, 1] in calls of batch images, with a
// progress bar.
func extractFeatures(b backends.Backend, ext featureExtractor, x []float32, n int, shape [3]int, batch int, what string, stderr io.Writer) ([]float32, error) {
	c, h, w := shape[0], shape[1], shape[2]
	size := c * h * w
	bar := newProgress(stderr, int64(n))
	var out []float32
	for first := 0; first < n; first += batch {
		k := min(batch, n-first)
		f, err := ext.Features(b, x[first*size:(first+k)*size], k, c, h, w, batch)
		if err != nil {
			return nil, err
		}
		out = append(out, f...)
		bar.update(int64(first+k), fmt.Sprintf("features of %d/%d %s images", first+k, n, what), first+k == n)
	}
	bar.done()
	return out, nil
}

// loadExtractor loads Inception or the classifier. The classifier's data set is the reference's
// (a DATA:SPLIT, or the extractor named in a statistics file), else the one of --classifier.
func loadExtractor(kind, inceptionPath, classDir string, ref *fidRef, shape [3]int) (featureExtractor, error) {
	if kind == "inception" {
		path, err := fid.FindInceptionWeights(inceptionPath)
		if err != nil {
			return nil, err
		}
		return fid.LoadInception(path)
	}
	if shape != [3]int{1, 28, 28} {
		return nil, fmt.Errorf("fid: the classifier features take 1x28x28 grayscale images; these are %dx%dx%d: use --features inception", shape[0], shape[1], shape[2])
	}
	dataset := ref.dataset()
	if dataset == "" && classDir == "" {
		return nil, fmt.Errorf("fid: which classifier? the reference %s names no data set: pass --classifier DIR", ref)
	}
	if classDir == "" && slices.Contains(models.Names(), "classifier-"+dataset) {
		if _, err := fid.FindClassifier(dataset, ""); err != nil { // nothing trained locally: the bundled one
			if classDir, err = models.Dir("classifier-" + dataset); err != nil {
				return nil, err
			}
		}
	}
	path, err := fid.FindClassifier(dataset, classDir)
	if err != nil {
		return nil, err
	}
	c, err := fid.LoadClassifier(path)
	if err != nil {
		return nil, err
	}
	if dataset != "" && c.Dataset != dataset {
		return nil, fmt.Errorf("fid: classifier %s was trained on %s, the reference is %s data: use models/classifier-%s", path, c.Dataset, dataset, dataset)
	}
	return c, nil
}

// A fidGenerator samples from a diffusion pipeline.
type fidGenerator struct {
	model      unetModel
	plan       sampler.Plan
	shape      [3]int
	kind       string // ddpm or ddim
	steps      int
	eta        float64
	describe   string // e.g. "the bundled MNIST model, DDPM 1000 steps (variance fixed_large)"
	defaultRef string // the reference to use without --ref
	src        string
}

func newFIDGenerator(ctx context.Context, runDir, modelFlag, kind string, steps int, eta float64, stderr io.Writer) (*fidGenerator, error) {
	bundled := runDir == "" && modelFlag == ""
	src := runDir
	var err error
	switch {
	case modelFlag != "":
		if src, err = resolveModel(ctx, modelFlag, stderr); err != nil {
			return nil, err
		}
	case bundled:
		if src, err = models.Dir("mnist"); err != nil {
			return nil, err
		}
	}
	p, err := pipeline.Load(src)
	if err != nil {
		return nil, err
	}
	for _, note := range p.Notes {
		fmt.Fprintf(stderr, "note: %s\n", note)
	}
	model, err := newUNetModel(p.UNet, p.Weights)
	if err != nil {
		return nil, err
	}
	sched, err := schedule.New(p.Schedule)
	if err != nil {
		return nil, err
	}
	g := &fidGenerator{model: model, src: src, kind: kind, eta: eta}
	var desc string
	if steps == 0 {
		steps = sched.T()
		if kind != "ddpm" && kind != "ddpmscheduler" {
			steps = 100
		}
	}
	g.steps = steps
	cfg, err := p.SchedulerJSON()
	if err != nil {
		return nil, err
	}
	r, err := pipeline.Choice{Class: kind, Steps: steps, Eta: eta}.Plan(cfg)
	if err != nil {
		return nil, usagef("fid: %v", err)
	}
	g.plan, desc = r.Plan, r.Desc
	uc := p.UNet.Config
	h, w := 32, 32
	if uc.SampleSize != nil {
		h, w = uc.SampleSize[0], uc.SampleSize[1]
	}
	g.shape = [3]int{uc.InChannels, h, w}
	g.describe = describeSource(src, bundled) + ", " + desc
	switch {
	case bundled:
		g.defaultRef = "mnist:test"
	case runDir != "":
		if b, err := os.ReadFile(filepath.Join(runDir, runConfigFile)); err == nil {
			var rc runConfig
			if json.Unmarshal(b, &rc) == nil && rc.Data != "" {
				g.defaultRef = rc.Data + ":test"
				if rc.HoldOut == refHoldOutFrac && rc.HoldOutSeed == refHoldOutSeed {
					g.defaultRef = rc.Data + ":holdout"
				}
			}
		}
	}
	return g, nil
}

// sample draws n samples in calls of batch (the last call sampled whole and cut), call k with seed
// seed+k, and returns them [n,C,H,W] in model space. first gets the time of the first call, which
// includes compilation.
//
// All calls go through one sampler.Runner and have the same shape (the last batch is sampled whole,
// not smaller, which also keeps sample i the same whatever n), so the step graph is compiled once.
func (g *fidGenerator) sample(b backends.Backend, kind backend.Kind, n, batch int, seed int64, stderr io.Writer, first *time.Duration) ([]float32, error) {
	batch = min(batch, n)
	size := g.shape[0] * g.shape[1] * g.shape[2]
	out := make([]float32, 0, n*size)
	fmt.Fprintf(stderr, "sampling %d images of %dx%dx%d: %s, %d per call\n", n, g.shape[0], g.shape[1], g.shape[2], g.describe, batch)
	run, err := sampler.NewRunner(b, g.model)
	if err != nil {
		return nil, err
	}
	defer run.Finalize()
	bar := newProgress(stderr, int64(n))
	t0 := time.Now()
	for k := 0; len(out) < n*size; k++ {
		opts := sampler.Options{N: batch, Shape: g.shape[:], Seed: seed + int64(k), StepsPerCall: stepsPerCall}
		x, err := run.Run(g.plan, opts)
		if err != nil {
			return nil, err
		}
		v, err := tensors.CopyFlatData[float32](x)
		x.FinalizeAll()
		if err != nil {
			return nil, fmt.Errorf("fid: reading samples: %w", err)
		}
		if k == 0 {
			*first = time.Since(t0)
		}
		out = append(out, v[:min(len(v), n*size-len(out))]...)
		done := len(out) / size
		bar.update(int64(done), fmt.Sprintf("sampled %d/%d", done, n), done == n)
	}
	bar.done()
	return out, nil
}

// save writes the samples with what made them in the metadata (read back by --images).
func (g *fidGenerator) save(path string, vals []float32, n int, seed int64, batch int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("fid: --save-samples: %w", err)
	}
	f := &checkpoint.File{
		Tensors: map[string]*checkpoint.Tensor{"sample": checkpoint.NewF32([]int{n, g.shape[0], g.shape[1], g.shape[2]}, vals)},
		Metadata: map[string]string{
			"source": g.describe, "sampler": g.kind, "steps": strconv.Itoa(g.steps),
			"eta": strconv.FormatFloat(g.eta, 'g', -1, 64), "seed": strconv.FormatInt(seed, 10),
			"batch": strconv.Itoa(min(batch, n)),
		},
	}
	return checkpoint.WriteSafetensors(path, f)
}

// fidImages are images to score, in [0, 1].
type fidImages struct {
	x        []float32 // [n,C,H,W]
	n        int
	shape    [3]int
	meta     map[string]string // of a safetensors file written by --save-samples
	describe string
}

func (im *fidImages) cut(n int) {
	im.x = im.x[:n*im.shape[0]*im.shape[1]*im.shape[2]]
	im.n = n
}

// readFIDImages reads FILE.safetensors[#KEY] (model space), an image folder, or the real images of a
// DATA:SPLIT[A:B] (for the FID of real images against the reference: the floor that finite N sets).
func readFIDImages(ctx context.Context, arg, dataDir string, stderr io.Writer) (*fidImages, error) {
	path, key, _ := strings.Cut(arg, "#")
	if _, err := os.Stat(path); err != nil && refSplitPattern.MatchString(arg) {
		r, err := parseRefSplit(arg)
		if err != nil {
			return nil, err
		}
		ds, err := r.load(ctx, dataDir, stderr)
		if err != nil {
			return nil, err
		}
		return &fidImages{x: toUnit(ds.Images), n: ds.Len(), shape: [3]int{ds.C, ds.H, ds.W}, describe: r.String() + " (real images)"}, nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		ds, err := data.LoadFolder(path)
		if err != nil {
			return nil, fmt.Errorf("fid: --images: %w", err)
		}
		return &fidImages{x: toUnit(ds.Images), n: ds.Len(), shape: [3]int{ds.C, ds.H, ds.W}, describe: fmt.Sprintf("image folder %s", path)}, nil
	}
	if !strings.EqualFold(filepath.Ext(path), ".safetensors") {
		return nil, usagef("fid: --images %s: want FILE.safetensors[#KEY], a folder of images or DATA:SPLIT[A:B]", arg)
	}
	f, err := checkpoint.ReadSafetensors(path)
	if err != nil {
		return nil, fmt.Errorf("fid: --images: %w", err)
	}
	if key == "" {
		key = "sample"
		if _, ok := f.Tensors[key]; !ok && len(f.Tensors) == 1 {
			key = f.Names()[0]
		}
	}
	t, ok := f.Tensors[key]
	if !ok {
		return nil, fmt.Errorf("fid: --images: %s has no tensor %q (it has %s): name one with %s#KEY", path, key, strings.Join(f.Names(), ", "), path)
	}
	if len(t.Shape) != 4 || (t.Shape[1] != 1 && t.Shape[1] != 3) {
		return nil, fmt.Errorf("fid: --images: %s#%s has shape %v; want [N,C,H,W] with C = 1 or 3", path, key, t.Shape)
	}
	v, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("fid: --images: %s#%s: %w", path, key, err)
	}
	im := &fidImages{x: toUnit(v), n: t.Shape[0], shape: [3]int{t.Shape[1], t.Shape[2], t.Shape[3]}, meta: f.Metadata}
	im.describe = fmt.Sprintf("%s#%s", path, key)
	if s := f.Metadata["source"]; s != "" {
		im.describe += " (" + s + ", seed " + f.Metadata["seed"] + ")"
	}
	return im, nil
}

// refSplit is a DATA:SPLIT[A:B] reference: images A..B-1 (End -1: to the end) of a split.
type refSplit struct {
	Dataset, Split string
	Start, End     int
}

var refSplitPattern = regexp.MustCompile(`^([a-z0-9-]+):(train|test|holdout)(?:\[(\d*):(\d*)\])?$`)

func parseRefSplit(s string) (refSplit, error) {
	m := refSplitPattern.FindStringSubmatch(s)
	if m == nil {
		return refSplit{}, usagef("fid: --ref %q: want a statistics .safetensors file, an image folder, or DATA:SPLIT[A:B] with SPLIT train, test or holdout (e.g. mnist:test[:5000])", s)
	}
	r := refSplit{Dataset: m[1], Split: m[2], End: -1}
	known := false
	for _, name := range data.Names() {
		known = known || name == r.Dataset
	}
	if !known {
		return refSplit{}, usagef("fid: --ref %q: unknown data set %q; want one of %s", s, r.Dataset, strings.Join(data.Names(), ", "))
	}
	if m[3] != "" {
		r.Start, _ = strconv.Atoi(m[3])
	}
	if m[4] != "" {
		r.End, _ = strconv.Atoi(m[4])
		if r.End <= r.Start {
			return refSplit{}, usagef("fid: --ref %q: the range [%d:%d] is empty", s, r.Start, r.End)
		}
	}
	return r, nil
}

func (r refSplit) String() string {
	s := r.Dataset + ":" + r.Split
	switch {
	case r.End >= 0:
		s += fmt.Sprintf("[%d:%d]", r.Start, r.End)
	case r.Start > 0:
		s += fmt.Sprintf("[%d:]", r.Start)
	}
	return s
}

// cacheName is the file name of the split's statistics: <split>-<extractor>-<hash>.safetensors.
func (r refSplit) cacheName(e fid.Extractor) string {
	split := r.Dataset + "-" + r.Split
	if r.Start > 0 || r.End >= 0 {
		split += fmt.Sprintf("-%d-%d", r.Start, r.End)
	}
	ext := "inception"
	if e.Name != fid.InceptionName {
		ext, _, _ = strings.Cut(e.Name, " ")
	}
	return fmt.Sprintf("%s-%s-%s.safetensors", split, ext, short(e.WeightsHash))
}

// load returns the split's images, in [-1, 1].
func (r refSplit) load(ctx context.Context, dataDir string, stderr io.Writer) (*data.Dataset, error) {
	split := r.Split
	if split == "holdout" {
		split = "train"
	}
	ds, err := data.Load(ctx, r.Dataset, split, data.Options{Dir: dataDir, Progress: downloadProgress(stderr)})
	if err != nil {
		return nil, err
	}
	if r.Split == "holdout" {
		if _, ds, err = ds.HoldOut(refHoldOutFrac, refHoldOutSeed); err != nil {
			return nil, err
		}
	}
	end := r.End
	if end < 0 {
		end = ds.Len()
	}
	if end > ds.Len() || r.Start >= ds.Len() {
		return nil, fmt.Errorf("fid: --ref %s: %s:%s has %d images", r, r.Dataset, r.Split, ds.Len())
	}
	if r.Start == 0 && end == ds.Len() {
		return ds, nil
	}
	idx := make([]int, end-r.Start)
	for i := range idx {
		idx[i] = r.Start + i
	}
	return ds.Subset(idx), nil
}

// fidRef is the --ref: exactly one of split, statsPath and folder.
type fidRef struct {
	split     refSplit
	statsPath string
	folder    string
}

func parseRef(s string) (*fidRef, error) {
	if fi, err := os.Stat(s); err == nil {
		if fi.IsDir() {
			return &fidRef{folder: s}, nil
		}
		return &fidRef{statsPath: s}, nil
	}
	if strings.EqualFold(filepath.Ext(s), ".safetensors") {
		return nil, fmt.Errorf("fid: --ref %s: %w", s, iofs.ErrNotExist)
	}
	r, err := parseRefSplit(s)
	if err != nil {
		return nil, err
	}
	return &fidRef{split: r}, nil
}

func (r *fidRef) String() string {
	switch {
	case r.statsPath != "":
		return r.statsPath
	case r.folder != "":
		return r.folder
	}
	return r.split.String()
}

// dataset returns the data set the reference is of, when it says: the split's, or the one in the
// name of a statistics file's classifier extractor.
func (r *fidRef) dataset() string {
	if r.split.Dataset != "" {
		return r.split.Dataset
	}
	if r.statsPath != "" {
		if s, err := fid.Load(r.statsPath, fid.Extractor{}); err == nil {
			if rest, ok := strings.CutPrefix(s.Extractor.Name, "classifier-"); ok {
				name, _, _ := strings.Cut(rest, " ")
				return name
			}
		}
	}
	return ""
}

// statsCacheDir is where reference statistics of data splits are cached: $DDPM_CACHE/fid-stats,
// else ddpm/fid-stats in os.UserCacheDir().
func statsCacheDir() (string, error) {
	if d := os.Getenv("DDPM_CACHE"); d != "" {
		return filepath.Join(d, "fid-stats"), nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("fid: no cache directory for reference statistics (set DDPM_CACHE): %w", err)
	}
	return filepath.Join(d, "ddpm", "fid-stats"), nil
}

// stats returns the reference statistics for ext: read from a statistics file (refused when made by
// another extractor), computed from a folder, or for a split read from the cache or computed and
// cached. The reference images must have the generated images' shape, when known.
func (r *fidRef) stats(ctx context.Context, b backends.Backend, ext featureExtractor, dataDir string, batch int, shape [3]int, noCache bool, stderr io.Writer) (*fid.Stats, bool, error) {
	want := ext.Extractor()
	if r.statsPath != "" {
		s, err := fid.Load(r.statsPath, want)
		if err != nil {
			return nil, false, err
		}
		return s, true, checkShape(shape, s.Source, r)
	}
	var ds *data.Dataset
	var cache string
	if r.folder != "" {
		var err error
		if ds, err = data.LoadFolder(r.folder); err != nil {
			return nil, false, fmt.Errorf("fid: --ref: %w", err)
		}
	} else {
		dir, err := statsCacheDir()
		if err != nil {
			return nil, false, err
		}
		cache = filepath.Join(dir, r.split.cacheName(want))
		if !noCache {
			if s, err := fid.Load(cache, want); err == nil {
				fmt.Fprintf(stderr, "reference statistics: %s (cached)\n", cache)
				if err := checkShape(shape, s.Source, r); err != nil {
					return nil, false, err
				}
				return s, true, nil
			} else if !errors.Is(err, iofs.ErrNotExist) {
				fmt.Fprintf(stderr, "note: recomputing the cached reference statistics: %v\n", err)
			}
		}
		if ds, err = r.split.load(ctx, dataDir, stderr); err != nil {
			return nil, false, err
		}
	}
	refShape := [3]int{ds.C, ds.H, ds.W}
	if refShape != shape {
		return nil, false, fmt.Errorf("fid: the images are %s but the reference %s is %s: FID compares images of one size and channel count",
			shapeString(shape), r, shapeString(refShape))
	}
	if ds.Len() < 2 {
		return nil, false, fmt.Errorf("fid: the reference %s has %d image; want at least 2", r, ds.Len())
	}
	feats, err := extractFeatures(b, ext, toUnit(ds.Images), ds.Len(), refShape, batch, "reference", stderr)
	if err != nil {
		return nil, false, err
	}
	s, err := fid.ComputeStats(feats, len(feats)/ds.Len())
	if err != nil {
		return nil, false, err
	}
	s.Extractor = want
	s.Source = fmt.Sprintf("%s, %d images %s", r, ds.Len(), shapeString(refShape))
	if cache != "" {
		if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
			return nil, false, fmt.Errorf("fid: caching reference statistics: %w", err)
		}
		if err := s.Save(cache); err != nil {
			return nil, false, err
		}
		fmt.Fprintf(stderr, "reference statistics: %s (cached for next time)\n", cache)
	}
	return s, false, nil
}

// checkShape compares the images' shape with the one a cached statistics file's source records.
func checkShape(shape [3]int, source string, r *fidRef) error {
	want := shapeString(shape)
	if i := strings.LastIndex(source, " images "); i >= 0 && source[i+len(" images "):] != want {
		return fmt.Errorf("fid: the images are %s but the reference %s is %s: FID compares images of one size and channel count",
			want, r, source[i+len(" images "):])
	}
	return nil
}

func shapeString(s [3]int) string { return fmt.Sprintf("%dx%dx%d", s[0], s[1], s[2]) }
