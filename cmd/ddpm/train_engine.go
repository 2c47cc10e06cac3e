package main

import (
	"fmt"
	"io"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/cpu"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/backends"
)

// trainOnEngine says whether `ddpm train` runs its steps on the CPU engine, by the same choice as
// sampling (openEngine): named with --backend onednn, or under auto without a CUDA GPU. It returns the
// GoMLX backend to open: the pure-Go one when the engine trains (it draws the noise, from the same RNG
// state as the compiled step), else name unchanged. A missing oneDNN or a config or setting the engine
// does not train falls back to GoMLX with one line on stderr (an error when the engine was named).
func trainOnEngine(name string, uc unet.Config, cfg train.Config, stderr io.Writer) (use bool, gomlxName string, err error) {
	use, explicit := backend.UseEngine(name)
	if !use {
		return false, name, nil
	}
	fallback := func(why error) (bool, string, error) {
		if explicit {
			return false, "", why
		}
		fmt.Fprintf(stderr, "backend: training on GoMLX: %v\n", why)
		return false, name, nil
	}
	if err := cpu.Available(); err != nil {
		if explicit {
			return false, "", err
		}
		fmt.Fprintf(stderr, "backend: the CPU engine is not installed (%s for ~20x faster training)\n", cpu.Install)
		return false, name, nil
	}
	if err := cpu.SupportsTraining(uc); err != nil {
		return fallback(err)
	}
	if cfg.Precision != train.FP32 {
		return fallback(fmt.Errorf("cpu: the CPU engine trains in fp32 only, not %s", cfg.Precision))
	}
	return true, "go", nil
}

// setEngineThreads sets the CPU engine's threads (--threads; 0: all cores, the default).
func setEngineThreads(n int) error { return cpu.SetThreads(n) }

// attachTrainEngine makes tr's steps run on the CPU engine. Call close when training ends.
func attachTrainEngine(tr *train.Trainer, b backends.Backend, cfg train.Config, uc unet.Config, s *schedule.Schedule,
	images []float32, dims []int, labels []int, stderr io.Writer) (info backend.Info, close func(), err error) {
	e, err := cpu.NewTrainer(b, cfg, uc, s, images, dims, labels)
	if err != nil {
		return info, nil, err
	}
	tr.SetEngine(e)
	info = backend.Info{Kind: backend.OneDNN, Device: fmt.Sprintf("oneDNN %s, %d threads", cpu.Version(), cpu.Threads()),
		Reason: "training steps on the CPU engine"}
	fmt.Fprintf(stderr, "backend: %s (%s)\n", info, info.Reason)
	return info, e.Close, nil
}
