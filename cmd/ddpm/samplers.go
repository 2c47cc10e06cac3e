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
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// samplersCell is one line of ddpm samplers: one sampler at one number of model evaluations.
type samplersCell struct {
	Dataset     string  `json:"dataset"`
	Source      string  `json:"source"`
	Sampler     string  `json:"sampler"` // as --samplers names it: ddim, dpmsolver++:karras, ddpm
	Desc        string  `json:"desc"`
	Steps       int     `json:"steps"`
	Evals       int     `json:"evals"`            // model evaluations per sample
	Budget      int     `json:"budget,omitempty"` // the evaluations asked for (--evals); Heun's odd count sits below
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
		intro     = fs.String("intro", "", "with --report: a Markdown file put after the title (default: docs/samplers-intro.md beside --md, if it exists)")
		bk        = backendFlag(fs)
	)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *report != "" {
		head, err := samplersHead(*title, *intro, *md)
		if err != nil {
			return err
		}
		return samplersReport(strings.Split(*report, ","), *md, *imgDir, head, stdout)
	}
	if *refArg == "" {
		return usagef("samplers: give --ref, e.g. mnist:test")
	}
	evals, err := parseEvals(*evalsArg)
	if err != nil {
		return err
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
	cells, err := samplerPlans(cfg, *list, evals, *ddpmSteps)
	if err != nil {
		return err
	}
	ref, err := parseRef(*refArg)
	if err != nil {
		return err
	}
	b, info, err := openBackend(*bk, stderr)
	if err != nil {
		return err
	}
	st := samplersStudy{gen: gen, b: b, n: *n, batch: min(*batch, *n), seed: *seed, fb: 500}
	if *featArg != "classifier" {
		st.fb = 250
	}
	if st.ext, err = loadExtractor(*featArg, "", *classDir, ref, gen.shape); err != nil {
		return err
	}
	if st.refStats, _, err = ref.stats(ctx, b, st.ext, *dataDir, st.fb, gen.shape, false, stderr); err != nil {
		return err
	}
	name := *dataset
	if name == "" {
		name = ref.dataset()
	}
	st.proto = samplersCell{Dataset: name, Source: describeSource(gen.src, *runDir == "" && *modelFlag == ""), N: *n, Ref: ref.String(),
		RefN: st.refStats.N, Extractor: st.ext.Extractor().Name, Batch: st.batch, Backend: info.Kind.String(), Device: info.Device}
	var out io.Writer = stdout
	if *outPath != "" {
		f, err := os.OpenFile(*outPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		out = io.MultiWriter(stdout, f)
	}
	if st.runner, err = sampler.NewRunner(b, gen.model); err != nil {
		return err
	}
	defer st.runner.Finalize()
	start := time.Now()
	for i, c := range cells {
		res, err := st.measure(ctx, c)
		if err != nil {
			return err
		}
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

// samplersHead is the report's title and, when there is one, its introduction: --intro, or
// samplers-intro.md beside --md.
func samplersHead(title, intro, md string) (string, error) {
	if intro == "" && md != "" {
		if p := filepath.Join(filepath.Dir(md), "samplers-intro.md"); fileExists(p) {
			intro = p
		}
	}
	head := "# " + title + "\n\n"
	if intro != "" {
		b, err := os.ReadFile(intro)
		if err != nil {
			return "", err
		}
		head += strings.TrimSpace(string(b)) + "\n\n"
	}
	return head, nil
}

// parseEvals reads --evals: positive integers, comma-separated.
func parseEvals(arg string) ([]int, error) {
	var evals []int
	for _, f := range strings.Split(arg, ",") {
		e, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || e < 1 {
			return nil, usagef("samplers: --evals %q: want positive integers", arg)
		}
		evals = append(evals, e)
	}
	return evals, nil
}

// samplerPlan is one cell of the study before it runs: a sampler as --samplers names it, its plan, and
// the model evaluations asked for.
type samplerPlan struct {
	name   string
	run    pipeline.Run
	budget int
}

// samplerPlans builds every cell: each sampler of list at each budget of evals (Heun at (e+1)/2
// steps), built from the pipeline's scheduler config cfg, then DDPM with ddpmSteps steps when > 0.
func samplerPlans(cfg []byte, list string, evals []int, ddpmSteps int) ([]samplerPlan, error) {
	var cells []samplerPlan
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		class, opt, _ := strings.Cut(name, ":")
		if opt != "" && opt != "karras" {
			return nil, usagef("samplers: %q: the only option is :karras", name)
		}
		for _, e := range evals {
			c := pipeline.Choice{Class: class, Steps: e, Karras: opt == "karras"}
			if strings.EqualFold(class, "heun") {
				c.Steps = (e + 1) / 2
			}
			r, err := c.Plan(cfg)
			if err != nil {
				return nil, usagef("samplers: %s: %v", name, err)
			}
			cells = append(cells, samplerPlan{name, r, e})
		}
	}
	if ddpmSteps > 0 {
		r, err := pipeline.Choice{Class: "ddpm", Steps: ddpmSteps}.Plan(cfg)
		if err != nil {
			return nil, err
		}
		cells = append(cells, samplerPlan{"ddpm", r, ddpmSteps})
	}
	return cells, nil
}

// samplersStudy is what the cells share: the model and its compiled step graphs (runner), the
// feature extractor and the reference statistics, and the fields every result line repeats (proto).
type samplersStudy struct {
	gen      *fidGenerator
	b        backends.Backend
	runner   *sampler.Runner
	ext      featureExtractor
	refStats *fid.Stats
	proto    samplersCell
	n, batch int
	fb       int // feature-extraction batch
	seed     int64
}

// measure samples one cell's n images in batches (batch k from seed S+k, as in every cell) and scores
// them against the reference.
func (st *samplersStudy) measure(ctx context.Context, c samplerPlan) (samplersCell, error) {
	res := st.proto
	res.Sampler, res.Desc, res.Steps, res.Evals, res.Budget = c.name, c.run.Desc, len(c.run.Timesteps), len(c.run.Plan), c.budget
	if c.name == "ddpm" {
		res.Steps = len(c.run.Plan)
	}
	if c.run.Class == pipeline.HeunDiscreteScheduler {
		res.Steps = (len(c.run.Plan) + 1) / 2
	}
	shape := st.gen.shape
	size := shape[0] * shape[1] * shape[2]
	t0 := time.Now()
	vals := make([]float32, 0, st.n*size)
	for k := 0; len(vals) < st.n*size; k++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		x, err := st.runner.Run(c.run.Plan, sampler.Options{N: st.batch, Shape: shape[:], Seed: st.seed + int64(k), StepsPerCall: stepsPerCall, Context: ctx})
		if err != nil {
			return res, err
		}
		v, err := tensors.CopyFlatData[float32](x)
		x.FinalizeAll()
		if err != nil {
			return res, err
		}
		if k == 0 {
			res.FirstBatchS, res.Compiled = time.Since(t0).Seconds(), st.runner.Stats().Compiled
		}
		vals = append(vals, v[:min(len(v), st.n*size-len(vals))]...)
	}
	res.SampleS = time.Since(t0).Seconds()
	t1 := time.Now()
	feats, err := extractFeatures(ctx, st.b, st.ext, toUnit(vals), st.n, shape, st.fb, "generated", io.Discard)
	if err != nil {
		return res, err
	}
	stats, err := fid.ComputeStats(feats, len(feats)/st.n)
	if err != nil {
		return res, err
	}
	stats.Extractor = st.ext.Extractor()
	if res.FID, err = fid.Distance(stats, st.refStats); err != nil {
		return res, err
	}
	res.FeaturesS = time.Since(t1).Seconds()
	return res, nil
}

// samplersReport writes docs/samplers.md-style tables and one plot per data set from the JSON lines of
// ddpm samplers.
func samplersReport(files []string, md, imgDir, head string, stdout io.Writer) error {
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
			if c.Sampler == "" && c.Evals == 0 { // a ddpm fid --json line of real images: the floor
				c.Sampler = floorCell
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
	doc, err := samplersMarkdown(cells, head, imgDir, md)
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

// floorCell marks the FID of real images against the reference (a ddpm fid --images --json line).
const floorCell = "floor"

// samplersMarkdown renders the cells as one section per data set: a table of FID (and sampling seconds)
// per sampler and number of evaluations, the DDPM line, the best sampler within a budget, and a plot.
func samplersMarkdown(cells []samplersCell, head, imgDir, mdPath string) (string, error) {
	var b strings.Builder
	b.WriteString(head)
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
		var ddpm, floor *samplersCell
		for i, c := range dc {
			if c.Sampler == "ddpm" {
				ddpm = &dc[i]
				continue
			}
			if c.Sampler == floorCell {
				floor = &dc[i]
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
		for _, c := range dc {
			if c.Sampler != floorCell {
				first = c
				break
			}
		}
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
				if c.Sampler != "ddpm" && c.Sampler != floorCell && c.Evals <= 20 && (best == nil || c.FID < best.FID) {
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
				if c.Sampler != "ddpm" && c.Sampler != floorCell && c.FID <= 1.3*ddpm.FID && (fewest == nil || c.Evals < fewest.Evals || (c.Evals == fewest.Evals && c.FID < fewest.FID)) {
					fewest = c
				}
			}
			if fewest != nil {
				fmt.Fprintf(&b, "Fewest evaluations within 1.3x of DDPM-%d: %s at %d (FID %.2f).\n",
					ddpm.Evals, samplerLabel(fewest.Sampler), fewest.Evals, fewest.FID)
			}
		}
		if floor != nil {
			fmt.Fprintf(&b, "The floor: %d images of %s score %.2f against the same reference.\n", floor.N, floor.Source, floor.FID)
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

// evalColumn is the table column of a cell: the evaluations asked for (Heun's 2n - 1 sits in the column
// it was asked for), else its evaluations.
func evalColumn(c samplersCell) int {
	if c.Budget > 0 {
		return c.Budget
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

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}
