package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ddpm/ddpm/fid"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/viz"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// samplersCell is one line of ddpm samplers: one sampler at one number of model evaluations.
type samplersCell struct {
	Dataset     string  `json:"dataset"`
	Source      string  `json:"source"`
	Sampler     string  `json:"sampler"` // as --samplers names it: ddim, dpmsolver++:karras, ddpm
	Desc        string  `json:"desc"`
	Steps       int     `json:"steps"`
	Evals       int     `json:"evals"` // model evaluations per sample
	N           int     `json:"n"`
	FID         float64 `json:"fid"`
	Ref         string  `json:"ref"`
	RefN        int     `json:"ref_n"`
	Extractor   string  `json:"extractor"`
	Batch       int     `json:"batch"`
	SampleS     float64 `json:"sample_s"` // all batches, compilation included where FirstCompile
	FirstBatchS float64 `json:"first_batch_s"`
	Compiled    bool    `json:"compiled"` // whether this cell compiled a new step graph
	FeaturesS   float64 `json:"features_s"`
	Backend     string  `json:"backend"`
	Device      string  `json:"device"`
}

// runSamplers measures the FID of many samplers and step counts in one process: the model, the step
// graphs (one sampler.Runner) and the reference statistics are kept between cells.
func runSamplers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("samplers", "[--model DIR | --run DIR] --ref DATA:SPLIT [flags]  |  --report FILE.jsonl[,FILE...] [--md OUT.md]", stderr)
	var (
		runDir    = fs.String("run", "", "a run directory of ddpm train (its EMA weights)")
		modelFlag = fs.String("model", "", "a diffusers pipeline directory (default: the bundled MNIST model)")
		list      = fs.String("samplers", "ddim,dpmsolver++,sde-dpmsolver++,euler,euler_ancestral,heun,dpmsolver++:karras", "samplers, comma-separated; NAME:karras for Karras sigmas")
		evalsArg  = fs.String("evals", "5,10,20,50,100", "model evaluations per sample (Heun: 2 steps - 1, the nearest below)")
		ddpmSteps = fs.Int("ddpm-steps", 1000, "also DDPM with this many steps, the reference line (0: none)")
		n         = fs.Int("n", 10000, "samples per cell")
		batch     = fs.Int("batch", 5000, "samples per sampling call")
		seed      = fs.Int64("seed", 0, "seed: batch k uses seed S+k in every cell (the same x_T for every sampler)")
		refArg    = fs.String("ref", "", "reference DATA:SPLIT (e.g. mnist:test, fashion-mnist:holdout) or statistics file")
		featArg   = fs.String("features", "classifier", "classifier or inception")
		classDir  = fs.String("classifier", "", "classifier directory (default: models/classifier-DATA)")
		dataDir   = fs.String("data-dir", "", "directory holding the dataset's idx .gz files")
		dataset   = fs.String("dataset", "", "the data set's name in the results (default: the reference's)")
		outPath   = fs.String("out", "", "append the JSON lines to this file too")
		report    = fs.String("report", "", "instead of measuring: read these JSON lines files (comma-separated) and write the tables and plots")
		md        = fs.String("md", "", "with --report: write the Markdown here (default: stdout)")
		imgDir    = fs.String("images", "", "with --report: write one plot per data set here, samplers-DATA.png (default: images/ beside --md)")
		title     = fs.String("title", "Fast samplers: FID against model evaluations", "with --report: the document's title")
		bk        = backendFlag(fs)
	)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *report != "" {
		return samplersReport(strings.Split(*report, ","), *md, *imgDir, *title, stdout)
	}
	if *refArg == "" {
		return usagef("samplers: give --ref, e.g. mnist:test")
	}
	var evals []int
	for _, f := range strings.Split(*evalsArg, ",") {
		e, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || e < 1 {
			return usagef("samplers: --evals %q: want positive integers", *evalsArg)
		}
		evals = append(evals, e)
	}
	gen, err := newFIDGenerator(ctx, *runDir, *modelFlag, "ddim", 1, 0, stderr)
	if err != nil {
		return err
	}
	p, err := pipeline.Load(gen.src)
	if err != nil {
		return err
	}
	cfg, err := p.SchedulerJSON()
	if err != nil {
		return err
	}
	type cell struct {
		name string
		run  pipeline.Run
	}
	var cells []cell
	for _, name := range strings.Split(*list, ",") {
		name = strings.TrimSpace(name)
		class, opt, _ := strings.Cut(name, ":")
		for _, e := range evals {
			c := pipeline.Choice{Class: class, Steps: e, Karras: opt == "karras"}
			if opt != "" && opt != "karras" {
				return usagef("samplers: %q: the only option is :karras", name)
			}
			if strings.EqualFold(class, "heun") {
				c.Steps = (e + 1) / 2
			}
			r, err := c.Plan(cfg)
			if err != nil {
				return usagef("samplers: %s: %v", name, err)
			}
			cells = append(cells, cell{name, r})
		}
	}
	if *ddpmSteps > 0 {
		r, err := pipeline.Choice{Class: "ddpm", Steps: *ddpmSteps}.Plan(cfg)
		if err != nil {
			return err
		}
		cells = append(cells, cell{"ddpm", r})
	}

	ref, err := parseRef(*refArg)
	if err != nil {
		return err
	}
	b, info, err := openBackend(*bk, stderr)
	if err != nil {
		return err
	}
	ext, err := loadExtractor(*featArg, "", *classDir, ref, gen.shape)
	if err != nil {
		return err
	}
	fb := 500
	if *featArg != "classifier" {
		fb = 250
	}
	refStats, _, err := ref.stats(ctx, b, ext, *dataDir, fb, gen.shape, false, stderr)
	if err != nil {
		return err
	}
	name := *dataset
	if name == "" {
		name = ref.dataset()
	}
	var out io.Writer = stdout
	if *outPath != "" {
		f, err := os.OpenFile(*outPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		out = io.MultiWriter(stdout, f)
	}
	runner, err := sampler.NewRunner(b, gen.model)
	if err != nil {
		return err
	}
	defer runner.Finalize()
	size := gen.shape[0] * gen.shape[1] * gen.shape[2]
	bs := min(*batch, *n)
	start := time.Now()
	for i, c := range cells {
		res := samplersCell{Dataset: name, Source: describeSource(gen.src, *runDir == "" && *modelFlag == ""), Sampler: c.name, Desc: c.run.Desc, Steps: len(c.run.Timesteps),
			Evals: len(c.run.Plan), N: *n, Ref: ref.String(), RefN: refStats.N, Extractor: ext.Extractor().Name, Batch: bs,
			Backend: info.Kind.String(), Device: info.Device}
		if c.name == "ddpm" || c.run.Class == pipeline.HeunDiscreteScheduler {
			res.Steps = len(c.run.Plan)
			if c.run.Class == pipeline.HeunDiscreteScheduler {
				res.Steps = (len(c.run.Plan) + 1) / 2
			}
		}
		t0 := time.Now()
		vals := make([]float32, 0, *n*size)
		for k := 0; len(vals) < *n*size; k++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			x, err := runner.Run(c.run.Plan, sampler.Options{N: bs, Shape: gen.shape[:], Seed: *seed + int64(k), StepsPerCall: stepsPerCall, Context: ctx})
			if err != nil {
				return err
			}
			v, err := tensors.CopyFlatData[float32](x)
			x.FinalizeAll()
			if err != nil {
				return err
			}
			if k == 0 {
				res.FirstBatchS, res.Compiled = time.Since(t0).Seconds(), runner.Stats().Compiled
			}
			vals = append(vals, v[:min(len(v), *n*size-len(vals))]...)
		}
		res.SampleS = time.Since(t0).Seconds()
		t1 := time.Now()
		feats, err := extractFeatures(b, ext, toUnit(vals), *n, gen.shape, fb, "generated", io.Discard)
		if err != nil {
			return err
		}
		st, err := fid.ComputeStats(feats, len(feats) / *n)
		if err != nil {
			return err
		}
		st.Extractor = ext.Extractor()
		if res.FID, err = fid.Distance(st, refStats); err != nil {
			return err
		}
		res.FeaturesS = time.Since(t1).Seconds()
		line, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, string(line))
		fmt.Fprintf(stderr, "[%d/%d %.0fs] %-22s %3d evals  FID %7.3f  sampling %.1fs\n", i+1, len(cells), time.Since(start).Seconds(),
			c.name, res.Evals, res.FID, res.SampleS)
	}
	return nil
}

// samplersReport writes docs/samplers.md-style tables and one plot per data set from the JSON lines of
// ddpm samplers.
func samplersReport(files []string, md, imgDir, title string, stdout io.Writer) error {
	var cells []samplersCell
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var c samplersCell
			if err := json.Unmarshal([]byte(line), &c); err != nil {
				f.Close()
				return fmt.Errorf("samplers --report: %s: %w", path, err)
			}
			cells = append(cells, c)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return err
		}
	}
	if imgDir == "" && md != "" {
		imgDir = filepath.Join(filepath.Dir(md), "images")
	}
	doc, err := samplersMarkdown(cells, title, imgDir, md)
	if err != nil {
		return err
	}
	if md == "" {
		_, err := io.WriteString(stdout, doc)
		return err
	}
	if err := os.WriteFile(md, []byte(doc), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", md)
	return nil
}

// samplersMarkdown renders the cells as one section per data set: a table of FID (and sampling seconds)
// per sampler and number of evaluations, the DDPM line, the best sampler within a budget, and a plot.
func samplersMarkdown(cells []samplersCell, title, imgDir, mdPath string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", title)
	fmt.Fprintf(&b, "Generated by `ddpm samplers --report` from the JSON lines of `ddpm samplers` (bench/gpu_samplers.sh); "+
		"each cell is the classifier FID of N samples against the held-out real images (lower is better), "+
		"with the sampling time of the N samples in seconds (the first cell of each step graph includes its compilation).\n\n")
	var datasets []string
	for _, c := range cells {
		if !slices.Contains(datasets, c.Dataset) {
			datasets = append(datasets, c.Dataset)
		}
	}
	for _, ds := range datasets {
		var dc []samplersCell
		for _, c := range cells {
			if c.Dataset == ds {
				dc = append(dc, c)
			}
		}
		var samplers []string
		var evals []int
		var ddpm *samplersCell
		for i, c := range dc {
			if c.Sampler == "ddpm" {
				ddpm = &dc[i]
				continue
			}
			if !slices.Contains(samplers, c.Sampler) {
				samplers = append(samplers, c.Sampler)
			}
			col := evalColumn(c)
			if !slices.Contains(evals, col) {
				evals = append(evals, col)
			}
		}
		slices.Sort(evals)
		first := dc[0]
		fmt.Fprintf(&b, "## %s\n\n", ds)
		fmt.Fprintf(&b, "Model: %s. N = %d samples per cell against %s (%d images), features: %s; %s, %s.\n\n",
			first.Source, first.N, first.Ref, first.RefN, first.Extractor, first.Backend, first.Device)
		b.WriteString("| sampler |")
		for _, e := range evals {
			fmt.Fprintf(&b, " %d evals |", e)
		}
		b.WriteString("\n| --- |")
		for range evals {
			b.WriteString(" --- |")
		}
		b.WriteString("\n")
		var series []viz.Series
		for _, s := range samplers {
			fmt.Fprintf(&b, "| %s |", samplerLabel(s))
			var xs, ys []float64
			for _, e := range evals {
				var c *samplersCell
				for i := range dc {
					if dc[i].Sampler == s && evalColumn(dc[i]) == e {
						c = &dc[i]
					}
				}
				if c == nil {
					b.WriteString(" |")
					continue
				}
				note := ""
				if c.Evals != e {
					note = fmt.Sprintf(" (%d)", c.Evals)
				}
				fmt.Fprintf(&b, " %.2f%s, %.0fs |", c.FID, note, c.SampleS)
				xs, ys = append(xs, float64(c.Evals)), append(ys, c.FID)
			}
			b.WriteString("\n")
			series = append(series, viz.Series{Name: samplerLabel(s), Steps: xs, Loss: ys})
		}
		if ddpm != nil {
			fmt.Fprintf(&b, "\nThe reference line, %s: FID **%.2f**, %.0fs sampling.\n", ddpm.Desc, ddpm.FID, ddpm.SampleS)
			if len(evals) > 0 {
				series = append(series, viz.Series{Name: fmt.Sprintf("DDPM-%d", ddpm.Evals),
					Steps: []float64{float64(evals[0]), float64(evals[len(evals)-1])}, Loss: []float64{ddpm.FID, ddpm.FID}})
			}
			var best *samplersCell
			for i := range dc {
				c := &dc[i]
				if c.Sampler != "ddpm" && c.Evals <= 20 && (best == nil || c.FID < best.FID) {
					best = c
				}
			}
			if best != nil {
				fmt.Fprintf(&b, "Best at <= 20 evaluations: %s at %d, FID %.2f = %.2fx DDPM-%d's.\n",
					samplerLabel(best.Sampler), best.Evals, best.FID, best.FID/ddpm.FID, ddpm.Evals)
			}
			var fewest *samplersCell
			for i := range dc {
				c := &dc[i]
				if c.Sampler != "ddpm" && c.FID <= 1.3*ddpm.FID && (fewest == nil || c.Evals < fewest.Evals || (c.Evals == fewest.Evals && c.FID < fewest.FID)) {
					fewest = c
				}
			}
			if fewest != nil {
				fmt.Fprintf(&b, "Fewest evaluations within 1.3x of DDPM-%d: %s at %d (FID %.2f).\n",
					ddpm.Evals, samplerLabel(fewest.Sampler), fewest.Evals, fewest.FID)
			}
		}
		if imgDir != "" && len(series) > 0 {
			img, err := viz.LossPlot(series, viz.LossPlotOptions{Title: ds + ": classifier FID against model evaluations",
				XLabel: "model evaluations per sample", YLabel: "classifier FID", Smoothing: -1, Width: 820, Height: 500})
			if err != nil {
				return "", err
			}
			if err := os.MkdirAll(imgDir, 0o755); err != nil {
				return "", err
			}
			path := filepath.Join(imgDir, "samplers-"+ds+".png")
			if err := viz.WritePNG(path, img); err != nil {
				return "", err
			}
			rel := path
			if mdPath != "" {
				if r, err := filepath.Rel(filepath.Dir(mdPath), path); err == nil {
					rel = r
				}
			}
			fmt.Fprintf(&b, "\n![FID against model evaluations, %s](%s)\n", ds, filepath.ToSlash(rel))
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

// evalColumn is the table column of a cell: its evaluations, Heun's 2n - 1 put in the column of 2n.
func evalColumn(c samplersCell) int {
	if strings.EqualFold(c.Sampler, "heun") && c.Evals%2 == 1 && c.Evals > 1 {
		return c.Evals + 1
	}
	return c.Evals
}

func samplerLabel(s string) string {
	switch s {
	case "ddim":
		return "DDIM"
	case "dpmsolver++":
		return "DPM-Solver++ 2M"
	case "sde-dpmsolver++":
		return "SDE-DPM-Solver++ 2M"
	case "dpmsolver++:karras":
		return "DPM-Solver++ 2M Karras"
	case "euler":
		return "Euler"
	case "euler_ancestral":
		return "Euler ancestral"
	case "heun":
		return "Heun"
	}
	return s
}
