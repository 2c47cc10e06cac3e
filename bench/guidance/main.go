// Command guidance measures classifier-free guidance on a class-conditional model: for each guidance
// scale, perClass samples of every class from the same seeds, then with our classifier of the data set
// the accuracy with which it recognises the requested class, the classifier FID of all samples against
// a real split, and the FID of each class against that class's real images (their mean is reported). It
// prints one JSON line per scale (and appends it to --json) and draws a grid: rows = classes, columns =
// guidance scales (the first --grid-k samples of each, the same x_T in every column group).
//
//	go build -o .bin/guidance ./bench/guidance
//	.bin/guidance --model runs/mnist-cond --data mnist --scales 0,1,2,3,5,7 --json guidance.jsonl --grid g.png
//
// It is a benchmark harness (bench/gpu_guidance.sh runs it on the GPU), not part of the ddpm command.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/fid"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/viz"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// result is one JSON line: one guidance scale on one model.
type result struct {
	Data          string    `json:"data"`
	Model         string    `json:"model"`
	Scale         float64   `json:"guidance"`
	Sampler       string    `json:"sampler"`
	Desc          string    `json:"desc"` // the sampler in words, with its options (Karras sigmas, eta)
	Steps         int       `json:"steps"`
	Eta           float64   `json:"eta"`
	N             int       `json:"n"`
	PerClass      int       `json:"per_class"`
	Ref           string    `json:"ref"`
	RefN          int       `json:"ref_n"`
	Accuracy      float64   `json:"accuracy"`
	ClassAccuracy []float64 `json:"class_accuracy"`
	FID           float64   `json:"fid"`
	ClassFID      []float64 `json:"class_fid"`
	MeanClassFID  float64   `json:"mean_class_fid"`
	SampleS       float64   `json:"sample_s"`
	Backend       string    `json:"backend"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "guidance:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		modelDir = flag.String("model", "", "a class-conditional pipeline directory (ddpm train --classes, or its export)")
		dataName = flag.String("data", "mnist", "data set: mnist or fashion-mnist (for the real images and the classifier)")
		dataDir  = flag.String("data-dir", "", "directory holding the data set's idx .gz files")
		split    = flag.String("split", "test", "the real images: test, or holdout (10% of train, seed 1234, as ddpm train --holdout 0.1)")
		classDir = flag.String("classifier", "", "classifier directory (default models/classifier-DATA)")
		scalesF  = flag.String("scales", "0,1,2,3,5,7", "guidance scales")
		perClass = flag.Int("per-class", 1000, "samples per class and scale")
		batch    = flag.Int("batch", 1000, "samples per sampling call (must divide --per-class)")
		kind     = flag.String("sampler", "ddim", "any of ddpm sample's: dpmsolver++, sde-dpmsolver++, euler, euler_ancestral, heun, ddim, ddpm")
		karras   = flag.Bool("karras", false, "Karras sigmas (dpmsolver++, euler, heun)")
		steps    = flag.Int("steps", 50, "sampling steps")
		eta      = flag.Float64("eta", 1, "DDIM eta")
		seed     = flag.Int64("seed", 0, "seed: class c, batch k uses seed+1000c+k at every scale")
		gridPath = flag.String("grid", "", "write the grid (rows = classes, column groups = scales) to this PNG")
		gridK    = flag.Int("grid-k", 3, "samples per class and scale in the grid")
		jsonPath = flag.String("json", "", "append the JSON lines to this file")
		bk       = flag.String("backend", "", "compute backend (default: auto)")
	)
	flag.Parse()
	if *modelDir == "" {
		return fmt.Errorf("--model DIR is required")
	}
	if *batch < 1 || *perClass%*batch != 0 {
		return fmt.Errorf("--batch %d must divide --per-class %d", *batch, *perClass)
	}
	var scales []float64
	for _, s := range strings.Split(*scalesF, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("--scales: %q: %w", s, err)
		}
		scales = append(scales, v)
	}

	b, info, err := backend.New(*bk)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "backend: %s\n", info)
	p, err := pipeline.Load(*modelDir)
	if err != nil {
		return err
	}
	uc := p.UNet.Config
	null, err := uc.GuidanceNull(-1)
	if err != nil {
		return err
	}
	classes := null
	flat, err := nn.Flatten(p.UNet.Specs(), p.Weights)
	if err != nil {
		return err
	}
	model := train.SamplerModel(p.UNet, flat)
	// The sampler built from the pipeline's scheduler config, as ddpm sample builds it (from_config).
	cfg, err := p.SchedulerJSON()
	if err != nil {
		return err
	}
	choice, err := pipeline.Choice{Class: *kind, Steps: *steps, Eta: *eta, Karras: *karras}.Plan(cfg)
	if err != nil {
		return fmt.Errorf("--sampler %s: %w", *kind, err)
	}
	plan := choice.Plan
	shape := []int{uc.InChannels, uc.SampleSize[0], uc.SampleSize[1]}
	size := shape[0] * shape[1] * shape[2]

	// The real images and their statistics, overall and per class.
	splitName := *split
	switch *split {
	case "test":
	case "holdout":
		splitName = "train"
	default:
		return fmt.Errorf("--split %q: want test or holdout", *split)
	}
	if *gridK < 1 || *gridK > *perClass {
		return fmt.Errorf("--grid-k %d: want 1..--per-class", *gridK)
	}
	real, err := data.Load(context.Background(), *dataName, splitName, data.Options{Dir: *dataDir})
	if err != nil {
		return err
	}
	if *split == "holdout" {
		if _, real, err = real.HoldOut(0.1, 1234); err != nil {
			return err
		}
	}
	if len(real.Classes) != classes {
		return fmt.Errorf("%s has %d classes, the model %d (null label %d)", *dataName, len(real.Classes), classes, null)
	}
	cpath, err := fid.FindClassifier(*dataName, *classDir)
	if err != nil {
		return err
	}
	clf, err := fid.LoadClassifier(fid.ClassifierPath(cpath))
	if err != nil {
		return err
	}
	if clf.Dataset != *dataName {
		return fmt.Errorf("classifier %s was trained on %s, not %s", cpath, clf.Dataset, *dataName)
	}
	realFeat, err := clf.Features(b, to01(real.Images), real.Len(), real.C, real.H, real.W, 500)
	if err != nil {
		return err
	}
	d := len(realFeat) / real.Len()
	realStats, err := fid.ComputeStats(realFeat, d)
	if err != nil {
		return err
	}
	realClass := make([]*fid.Stats, classes)
	for c := range realClass {
		var f []float32
		for i, l := range real.Labels {
			if l == c {
				f = append(f, realFeat[i*d:(i+1)*d]...)
			}
		}
		if realClass[c], err = fid.ComputeStats(f, d); err != nil {
			return fmt.Errorf("class %d: %w", c, err)
		}
	}

	var grid [][]float32 // [scale][class*k images]
	for _, s := range scales {
		g := sampler.Guidance{Scale: s, Null: int32(null)}
		runner, err := sampler.NewRunner(b, g.Model(model))
		if err != nil {
			return err
		}
		n := classes * *perClass
		samples := make([]float32, 0, n*size)
		labels := make([]int, 0, n)
		t0 := time.Now()
		for c := 0; c < classes; c++ {
			y := make([]int32, *batch)
			for i := range y {
				y[i] = int32(c)
			}
			for k := 0; k < *perClass / *batch; k++ {
				x, err := runner.Run(plan, sampler.Options{N: *batch, Shape: shape, Seed: *seed + int64(1000*c+k), Labels: y})
				if err != nil {
					return fmt.Errorf("guidance %g, class %d: %w", s, c, err)
				}
				samples = append(samples, tensors.MustCopyFlatData[float32](x)...)
				for range *batch {
					labels = append(labels, c)
				}
			}
		}
		el := time.Since(t0)
		runner.Finalize()
		for i, v := range samples {
			samples[i] = float32(math.Max(-1, math.Min(1, float64(v))))
		}
		pred, err := clf.Predict(b, &data.Dataset{Images: samples, C: shape[0], H: shape[1], W: shape[2]}, 500)
		if err != nil {
			return err
		}
		feat, err := clf.Features(b, to01(samples), n, shape[0], shape[1], shape[2], 500)
		if err != nil {
			return err
		}
		res := result{Data: *dataName, Model: *modelDir, Scale: s, Sampler: *kind, Desc: choice.Desc, Steps: *steps, Eta: *eta, N: n, PerClass: *perClass,
			Ref: *dataName + ":" + *split, RefN: real.Len(), SampleS: el.Seconds(), Backend: info.String()}
		if *kind != "ddim" {
			res.Eta = 0
		}
		right := make([]int, classes)
		for i, p := range pred {
			if p == labels[i] {
				right[p]++
			}
		}
		total := 0
		for c := range right {
			total += right[c]
			res.ClassAccuracy = append(res.ClassAccuracy, float64(right[c])/float64(*perClass))
		}
		res.Accuracy = float64(total) / float64(n)
		st, err := fid.ComputeStats(feat, d)
		if err != nil {
			return err
		}
		if res.FID, err = fid.Distance(st, realStats); err != nil {
			return err
		}
		var sum float64
		var row []float32
		for c := 0; c < classes; c++ {
			f := feat[c**perClass*d : (c+1)**perClass*d]
			cs, err := fid.ComputeStats(f, d)
			if err != nil {
				return err
			}
			v, err := fid.Distance(cs, realClass[c])
			if err != nil {
				return err
			}
			res.ClassFID = append(res.ClassFID, v)
			sum += v
			row = append(row, samples[c**perClass*size:(c**perClass+*gridK)*size]...)
		}
		res.MeanClassFID = sum / float64(classes)
		grid = append(grid, row)
		line, _ := json.Marshal(res)
		fmt.Println(string(line))
		if *jsonPath != "" {
			f, err := os.OpenFile(*jsonPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			fmt.Fprintln(f, string(line))
			if err := f.Close(); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "%s guidance %g: accuracy %.4f, FID %.2f, mean class FID %.2f, %d samples in %.1fs\n",
			*dataName, s, res.Accuracy, res.FID, res.MeanClassFID, n, el.Seconds())
	}
	if *gridPath != "" {
		// Rows = classes; in each row, the k samples of scale 1, then of scale 2, ...
		var imgs []float32
		for c := 0; c < classes; c++ {
			for si := range scales {
				imgs = append(imgs, grid[si][c**gridK*size:(c+1)**gridK*size]...)
			}
		}
		img, err := viz.Grid(imgs, classes*len(scales)**gridK, shape[0], shape[1], shape[2], len(scales)**gridK, viz.GridOptions{Padding: 2, Scale: 2})
		if err != nil {
			return err
		}
		if err := viz.WritePNG(*gridPath, img); err != nil {
			return err
		}
	}
	return nil
}

// to01 maps images in [-1, 1] to [0, 1], the convention of the classifier's Features.
func to01(x []float32) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = (v + 1) / 2
	}
	return out
}
