package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/pipeline"
)

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", "--run DIR --out MODEL_DIR [--dtype f32|f16|bf16] [--online]", stderr)
	var (
		runDir = fs.String("run", "", "a run directory of ddpm train, or any diffusers pipeline directory or hub name")
		out    = fs.String("out", "", "the diffusers pipeline directory to write (DDPMPipeline.from_pretrained loads it)")
		dtype  = fs.String("dtype", "f32", "weight precision: f32, f16 or bf16")
		online = fs.Bool("online", false, "export the online weights of the last checkpoint instead of the EMA weights")
		sched  = fs.String("scheduler", "", "write this scheduler's config instead of DDPMScheduler's: dpmsolver++, sde-dpmsolver++, euler, euler_ancestral, heun, ddim or ddpm")
		karras = fs.Bool("karras", false, "with --scheduler: use_karras_sigmas")
		set    = stringsFlag(fs, "scheduler-config", "with --scheduler: a setting key=value (repeatable)")
	)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *runDir == "" || *out == "" {
		return usagef("export: --run and --out are required")
	}
	dt := checkpoint.DType(strings.ToUpper(*dtype))
	if dt != checkpoint.F32 && dt != checkpoint.F16 && dt != checkpoint.BF16 {
		return usagef("export: --dtype %s: want f32, f16 or bf16", *dtype)
	}
	if abs(*runDir) == abs(*out) {
		return usagef("export: --out is the run directory itself, which is already a diffusers pipeline")
	}
	src, err := resolveModel(ctx, *runDir, stderr)
	if err != nil {
		return err
	}
	p, err := loadPipeline(src, *online, stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := pipeline.Save(*out, p, dt); err != nil {
		return err
	}
	if *sched != "" {
		if err := exportScheduler(*out, p, *sched, *karras, *set); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote %s (%s weights): load it with DDPMPipeline.from_pretrained(%q)\n", *out, dt, *out)
	return nil
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// loadPipeline loads the pipeline in dir, with the online weights of its last checkpoint instead of the
// EMA weights when online is set (a run directory of ddpm train), and says which it took.
func loadPipeline(dir string, online bool, stderr io.Writer) (*pipeline.Pipeline, error) {
	p, err := pipeline.Load(dir)
	if err != nil {
		return nil, err
	}
	for _, note := range p.Notes {
		fmt.Fprintf(stderr, "note: %s\n", note)
	}
	if online {
		st, _, path, err := loadLatest(dir, p.UNet)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "online weights of %s\n", path)
		if p.Weights, err = nn.Unflatten(p.UNet.Specs(), st.Params); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// exportScheduler rewrites the exported pipeline's scheduler as the chosen class, built from its config
// with diffusers' from_config semantics.
func exportScheduler(dir string, p *pipeline.Pipeline, class string, karras bool, settings []string) error {
	cfg, err := p.SchedulerJSON()
	if err != nil {
		return err
	}
	r, err := pipeline.Choice{Class: class, Steps: 1, Karras: karras, Overrides: settings}.Plan(cfg)
	if err != nil {
		return usagef("export: %v", err)
	}
	return pipeline.SetScheduler(dir, r)
}
