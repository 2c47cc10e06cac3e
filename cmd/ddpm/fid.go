package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/fid"
	"github.com/ddpm/ddpm/models"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/gomlx/gomlx/backends"
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

// fidFlags are the flags of ddpm fid.
type fidFlags struct {
	fs                                            *flag.FlagSet
	set                                           map[string]bool
	run, model, images, sampler, ref, features    *string
	inception, classifier, save, dataDir, backend *string
	n, steps, batch, featBatch                    *int
	eta                                           *float64
	seed                                          *int64
	noCache, json                                 *bool
}

func newFIDFlags(stderr io.Writer) *fidFlags {
	fs := newFlags("fid", "[--run DIR | --model DIR_OR_HUB | --images FILE.safetensors[#KEY] | --images DIR | --images DATA:SPLIT] [--ref SPEC] [flags]", stderr)
	return &fidFlags{fs: fs,
		run:     fs.String("run", "", "a run folder of ddpm train (its EMA weights)"),
		model:   fs.String("model", "", "a diffusers pipeline folder or hub name (default: the bundled MNIST model)"),
		images:  fs.String("images", "", "score these images instead of sampling: FILE.safetensors[#KEY] ([N,C,H,W] float32 in model space [-1, 1], as ddpm sample --out x.safetensors writes; key default \"sample\"), a folder of PNG/JPEG files, or real images DATA:SPLIT[A:B] (as --ref)"),
		n:       fs.Int("n", 0, "number of samples to generate, >= 2 (0: 5000); with --images, score the first N (0: all)"),
		sampler: fs.String("sampler", "ddpm", "ddpm (ancestral), ddim, dpmsolver++, sde-dpmsolver++, euler, euler_ancestral or heun"),
		steps:   fs.Int("steps", 0, "sampling steps (0: all T for ddpm, 100 for the others)"),
		eta:     fs.Float64("eta", 0, "DDIM eta >= 0: 0 deterministic, 1 DDPM-like"),
		seed:    fs.Int64("seed", 0, "seed: batch k of --batch samples uses seed S+k (with --batch >= --n, the samples of ddpm sample --seed S)"),
		batch:   fs.Int("batch", 500, "samples per sampling call (one compiled graph; the last batch is sampled whole and cut)"),
		ref: fs.String("ref", "", "reference: a statistics file (.safetensors, from an earlier run's cache), a folder of images, or a split DATA:SPLIT[A:B] "+
			"with DATA mnist or fashion-mnist, SPLIT train, test or holdout (10% of train, seed "+strconv.Itoa(refHoldOutSeed)+"), e.g. mnist:test[:5000] "+
			"(default: mnist:test for the bundled model, DATA:holdout or DATA:test for a --run)"),
		features:   fs.String("features", "inception", "inception (pytorch-fid's, comparable with published FIDs) or classifier (ours, 28x28 grayscale, fast; its FIDs compare only with each other)"),
		inception:  fs.String("inception-weights", "", "pytorch-fid's "+fid.InceptionWeightsFile+" (default: our cache, torch hub's cache, then a download; ignored with --features classifier)"),
		classifier: fs.String("classifier", "", "classifier folder (default: models/classifier-DATA, DDPM_CACHE/classifier-DATA, then the bundled one)"),
		featBatch:  fs.Int("feature-batch", 0, "images per feature-extraction call (0: 250 on XLA, 16 on the pure-Go backend, 500 for the classifier)"),
		save:       fs.String("save-samples", "", "also write the generated samples to this .safetensors (key \"sample\", [N,C,H,W], model space), to score them again with --images"),
		dataDir:    fs.String("data-dir", "", "folder holding the dataset's idx .gz files (for a DATA:SPLIT reference)"),
		noCache:    fs.Bool("no-cache", false, "recompute the reference statistics of a DATA:SPLIT even when they are cached"),
		json:       fs.Bool("json", false, "also print the result as one JSON line"),
		backend:    backendFlag(fs),
	}
}

// check checks the flags and the output path before anything slow.
func (f *fidFlags) check(stderr io.Writer) error {
	f.set = map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	sources := 0
	for _, name := range []string{"run", "model", "images"} {
		if f.set[name] {
			sources++
		}
	}
	*f.sampler = strings.ToLower(*f.sampler)
	switch {
	case sources > 1:
		return usagef("fid: give one of --run, --model and --images")
	case *f.n != 0 && *f.n < 2:
		return usagef("fid: --n %d: want at least 2 images for a covariance (0: the default)", *f.n)
	case *f.batch < 1:
		return usagef("fid: --batch %d: want >= 1", *f.batch)
	case *f.featBatch < 0:
		return usagef("fid: --feature-batch %d: want >= 1 (0: the default)", *f.featBatch)
	case *f.eta < 0:
		return usagef("fid: --eta %g: want >= 0", *f.eta)
	case *f.save != "" && *f.images != "":
		return usagef("fid: --save-samples keeps generated samples; with --images there are none")
	}
	if err := checkChoice("fid", "features", *f.features, "inception", "classifier"); err != nil {
		return err
	}
	var knownKind pipeline.Scheduler
	if err := knownKind.UnmarshalText([]byte(*f.sampler)); err != nil {
		return usagef("fid: --sampler %q: %v", *f.sampler, unprefix(err))
	}
	if f.set["images"] {
		for _, name := range []string{"sampler", "steps", "eta", "seed", "batch"} {
			if f.set[name] {
				return usagef("fid: --%s is for sampling; with --images nothing is sampled", name)
			}
		}
	}
	if *f.n == 0 && *f.images == "" {
		*f.n = 5000
	}
	if *f.features == "classifier" && *f.inception != "" {
		fmt.Fprintln(stderr, "warning: --inception-weights is ignored with --features classifier")
	}
	if *f.save != "" {
		return checkOutput("fid", "save-samples", *f.save, ".safetensors")
	}
	return nil
}

// runFID generates N samples (or reads images) and computes their FID against reference statistics.
func runFID(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFIDFlags(stderr)
	if err := parse(f.fs, args); err != nil {
		return err
	}
	if err := f.check(stderr); err != nil {
		return err
	}
	tStart := time.Now()
	res := fidResult{Seed: *f.seed}
	gen, imgs, shape, err := f.source(ctx, &res, stderr)
	if err != nil {
		return err
	}
	ref, err := f.reference(gen, &res)
	if err != nil {
		return err
	}
	b, info, err := openBackend(*f.backend, stderr)
	if err != nil {
		return err
	}
	res.Backend, res.Device = info.Kind.String(), info.Device
	ext, err := loadExtractor(*f.features, *f.inception, *f.classifier, ref, shape)
	if err != nil {
		return err
	}
	res.Extractor, res.WeightsHash = ext.Extractor().Name, ext.Extractor().WeightsHash
	fb := f.featureBatch(info)
	fmt.Fprintf(stderr, "extractor: %s, sha256 %s\n", ext.Extractor().Name, short(ext.Extractor().WeightsHash))

	// Reference statistics first: a bad reference fails before the long sampling.
	t0 := time.Now()
	refStats, cached, err := ref.stats(ctx, b, ext, *f.dataDir, fb, shape, *f.noCache, stderr)
	if err != nil {
		return err
	}
	res.RefS, res.RefCached, res.RefN = time.Since(t0).Seconds(), cached, refStats.N
	x, err := f.images01(ctx, b, info, gen, imgs, &res, stderr)
	if err != nil {
		return err
	}
	t2 := time.Now()
	feats, err := extractFeatures(ctx, b, ext, x, res.N, shape, fb, "generated", stderr)
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
	if res.FID, err = fid.Distance(genStats, refStats); err != nil {
		return err
	}
	res.DistanceS = time.Since(t3).Seconds()
	res.TotalS = time.Since(tStart).Seconds()
	return printFID(stdout, res, refStats, info, *f.features == "classifier", *f.json)
}

// source opens the generator (a model to sample) or reads the images to score.
func (f *fidFlags) source(ctx context.Context, res *fidResult, stderr io.Writer) (*fidGenerator, *fidImages, [3]int, error) {
	if *f.images == "" {
		gen, err := newFIDGenerator(ctx, *f.run, *f.model, *f.sampler, *f.steps, *f.eta, stderr)
		if err != nil {
			return nil, nil, [3]int{}, err
		}
		res.Source, res.Sampler, res.Steps, res.Eta, res.Batch = gen.describe, *f.sampler, gen.steps, gen.eta, min(*f.batch, *f.n)
		if *f.sampler == "ddpm" {
			res.Eta = 0
		}
		return gen, nil, gen.shape, nil
	}
	imgs, err := readFIDImages(ctx, *f.images, *f.dataDir, stderr)
	if err != nil {
		return nil, nil, [3]int{}, err
	}
	if *f.n > 0 {
		if *f.n > imgs.n {
			return nil, nil, [3]int{}, fmt.Errorf("fid: --n %d, but %s holds %d images", *f.n, *f.images, imgs.n)
		}
		imgs.cut(*f.n)
	}
	if imgs.n < 2 {
		return nil, nil, [3]int{}, fmt.Errorf("fid: %s holds %d image; want at least 2 for a covariance", *f.images, imgs.n)
	}
	res.Source, res.Sampler, res.Steps, res.Eta = imgs.describe, imgs.meta["sampler"], atoi(imgs.meta["steps"]), atof(imgs.meta["eta"])
	if s, err := strconv.ParseInt(imgs.meta["seed"], 10, 64); err == nil {
		res.Seed = s
	}
	return nil, imgs, imgs.shape, nil
}

// reference parses --ref, or takes the generator's default.
func (f *fidFlags) reference(gen *fidGenerator, res *fidResult) (*fidRef, error) {
	spec := *f.ref
	if spec == "" {
		if gen == nil || gen.defaultRef == "" {
			return nil, usagef("fid: give --ref (a DATA:SPLIT such as mnist:test[:5000], a statistics file or an image folder)")
		}
		spec = gen.defaultRef
	}
	ref, err := parseRef(spec)
	if err != nil {
		return nil, err
	}
	res.Ref, res.Dataset = ref.String(), ref.split.Dataset
	return ref, nil
}

func (f *fidFlags) featureBatch(info backend.Info) int {
	switch {
	case *f.featBatch > 0:
		return *f.featBatch
	case *f.features == "classifier":
		return 500
	case info.Kind == backend.Go:
		return 16
	}
	return 250
}

// images01 returns the images to score in [0, 1]: the read ones, or new samples (saved if asked).
func (f *fidFlags) images01(ctx context.Context, b backends.Backend, info backend.Info, gen *fidGenerator, imgs *fidImages, res *fidResult, stderr io.Writer) ([]float32, error) {
	if imgs != nil {
		res.N = imgs.n
		return imgs.x, nil
	}
	t1 := time.Now()
	var first time.Duration
	vals, err := gen.sample(ctx, b, info.Kind, *f.n, *f.batch, *f.seed, stderr, &first)
	if err != nil {
		return nil, err
	}
	res.SampleS, res.FirstBatchS, res.N = time.Since(t1).Seconds(), first.Seconds(), *f.n
	if *f.save != "" {
		if err := gen.save(*f.save, vals, *f.n, *f.seed, *f.batch); err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "wrote %s\n", *f.save)
	}
	return toUnit(vals), nil
}

func printFID(stdout io.Writer, res fidResult, refStats *fid.Stats, info backend.Info, classifier, asJSON bool) error {
	fmt.Fprintf(stdout, "FID %.4f  (N %d vs %d reference images)\n", res.FID, res.N, res.RefN)
	fmt.Fprintf(stdout, "  images:    %s\n", res.Source)
	how := "computed"
	if res.RefCached {
		how = "cached"
	}
	fmt.Fprintf(stdout, "  reference: %s (%s; %s)\n", res.Ref, how, refStats.Source)
	fmt.Fprintf(stdout, "  extractor: %s, sha256 %s\n", res.Extractor, short(res.WeightsHash))
	fmt.Fprintf(stdout, "  time:      sampling %.1fs, features %.1fs, reference %.1fs, distance %.1fs, total %.1fs on %s (%s)\n",
		res.SampleS, res.FeaturesS, res.RefS, res.DistanceS, res.TotalS, info.Kind, info.Device)
	if res.N != res.RefN {
		fmt.Fprintf(stdout, "  note: FID is biased by N (it falls as N grows); compare FIDs of equal N only\n")
	}
	if classifier {
		fmt.Fprintf(stdout, "  note: classifier features (ours, not Inception): not comparable with published FIDs\n")
	}
	if asJSON {
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

// findClassifier finds the classifier of a data set: dir if given, else one trained locally
// (models/classifier-DATA, the cache), else the bundled one, from any working directory.
func findClassifier(dataset, dir string) (string, error) {
	if dir == "" && slices.Contains(models.Names(), "classifier-"+dataset) {
		if _, err := fid.FindClassifier(dataset, ""); err != nil { // nothing trained locally: the bundled one
			return models.Dir("classifier-" + dataset)
		}
	}
	path, err := fid.FindClassifier(dataset, dir)
	if err != nil {
		if dataset == "" {
			dataset = "mnist"
		}
		return "", fmt.Errorf("%s (train one with `ddpm classifier train --data %s --out DIR`)", strings.TrimPrefix(strings.SplitN(err.Error(), " (train one", 2)[0], "fid: "), dataset)
	}
	return path, nil
}

// extractFeatures computes the features of x [n,C,H,W] in [0, 1] in calls of batch images, with a
// progress bar.
func extractFeatures(ctx context.Context, b backends.Backend, ext featureExtractor, x []float32, n int, shape [3]int, batch int, what string, stderr io.Writer) ([]float32, error) {
	c, h, w := shape[0], shape[1], shape[2]
	size := c * h * w
	bar := newProgress(stderr, "features of the "+what+" images", int64(n), "images", "")
	var out []float32
	for first := 0; first < n; first += batch {
		if err := ctx.Err(); err != nil {
			bar.finish()
			fmt.Fprintln(stderr, "stopped: nothing was written")
			return nil, err
		}
		k := min(batch, n-first)
		f, err := ext.Features(b, x[first*size:(first+k)*size], k, c, h, w, batch)
		if err != nil {
			return nil, err
		}
		out = append(out, f...)
		bar.update(int64(first+k), "")
	}
	bar.finish()
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
	path, err := findClassifier(dataset, classDir)
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
