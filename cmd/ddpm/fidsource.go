package main

// The images ddpm fid scores: samples of a pipeline (fidGenerator) or images read from a file, a
// folder or a data split (fidImages).

import (
	"context"
	"fmt"
	rundir "github.com/ddpm/ddpm/run"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/models"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// A fidGenerator samples from a diffusion pipeline.
type fidGenerator struct {
	model      sampler.Model
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
		if rc, err := rundir.ReadConfig(runDir); err == nil {
			if rc.Data != "" {
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
func (g *fidGenerator) sample(ctx context.Context, b backends.Backend, kind backend.Kind, n, batch int, seed int64, stderr io.Writer, first *time.Duration) ([]float32, error) {
	batch = min(batch, n)
	size := g.shape[0] * g.shape[1] * g.shape[2]
	out := make([]float32, 0, n*size)
	fmt.Fprintf(stderr, "sampling %d images of %dx%dx%d: %s, %d per call\n", n, g.shape[0], g.shape[1], g.shape[2], g.describe, batch)
	run, err := sampler.NewRunner(b, g.model)
	if err != nil {
		return nil, err
	}
	defer run.Finalize()
	calls := (n + batch - 1) / batch
	bar := newProgress(stderr, "sampling", int64(calls*len(g.plan)), "steps", "make it shorter with --n or --steps, or use a GPU (--backend cuda)")
	defer bar.finish()
	t0 := time.Now()
	for k := 0; len(out) < n*size; k++ {
		opts := sampler.Options{N: batch, Shape: g.shape[:], Seed: seed + int64(k), StepsPerCall: stepsPerCall, Context: ctx}
		opts.Progress = func(done, total int) {
			bar.update(int64(k*total+done), fmt.Sprintf("%d of %d images", min(k*batch, n), n))
		}
		x, err := run.Run(g.plan, opts)
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(stderr, "sampling stopped: nothing was written")
				return nil, ctx.Err()
			}
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
	}
	bar.finish()
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
