package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ddpm/ddpm/toy"
)

// runToy trains the lesson's MLP on a 2-D data set, samples it and writes the pictures.
func runToy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("toy", "--out DIR [--data swiss-roll|moons|ring] [--steps N] [--seed S] [flags]", stderr)
	def := toy.DefaultConfig()
	var (
		out      = fs.String("out", "", "directory to write "+strings.Join(toyFiles(), ", ")+" into (created; files of an earlier run are replaced)")
		dataName = fs.String("data", def.Data.String(), "data set: "+strings.Join(toy.DatasetNames(), ", "))
		steps    = fs.Int64("steps", def.Steps, "training steps")
		seed     = fs.Uint64("seed", def.Seed, "seed of the data, the weights, the batches and all noise")
		samples  = fs.Int("samples", def.Samples, "points to sample after training")
		bk       = backendFlag(fs)
	)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := def
	switch {
	case *out == "":
		return usagef("toy: --out DIR is required")
	case *steps < 1:
		return usagef("toy: --steps %d: want at least 1", *steps)
	case *samples < 1:
		return usagef("toy: --samples %d: want at least 1", *samples)
	}
	if err := checkOutputDir("toy", "out", *out); err != nil {
		return err
	}
	if err := cfg.Data.UnmarshalText([]byte(*dataName)); err != nil {
		return usagef("toy: --data: %v", err)
	}
	cfg.SetSteps(*steps)
	cfg.Seed, cfg.Samples = *seed, *samples
	b, info, err := openBackend(*bk, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "training the toy MLP on %d points of %s: batch %d, %d steps, T = %d\n",
		cfg.Points, cfg.Data, cfg.Train.BatchSize, cfg.Steps, cfg.Schedule.T)
	bar := newProgress(stderr, "training", cfg.Steps, "steps", "")
	start := time.Now()
	res, err := toy.Run(ctx, b, cfg, func(done, total int64, loss float32) {
		bar.update(done, fmt.Sprintf("loss %.4f", loss))
	})
	bar.finish()
	if err != nil {
		return err
	}
	files, err := res.Write(*out)
	if err != nil {
		return err
	}
	q, err := res.Quality()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trained %d steps in %.1fs (first call, with compilation: %.2fs); sampled %d points with DDPM (%d steps) in %.1fs on %s; %.1fs in all\n",
		len(res.Loss), res.TrainTime.Seconds(), res.FirstCall.Seconds(), len(res.Samples)/2, cfg.Schedule.T,
		res.SampleTime.Seconds(), info.Kind, time.Since(start).Seconds())
	fmt.Fprintf(stdout, "%s samples: %v\n", cfg.Data, q)
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s\n", f)
	}
	return nil
}

func toyFiles() []string {
	return []string{toy.ConfigFile, toy.DataFile, toy.SamplesFile, toy.ScatterFile, toy.TrajectoryFile, toy.LossFile, toy.LossPlotFile}
}
