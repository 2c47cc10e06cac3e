package main

import (
	"fmt"
	"io"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/cpu"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// openEngine returns the UNet of cfg with weights flat on the CPU engine when the backend choice
// (--backend, $GOMLX_BACKEND, else auto: CUDA, then the engine, then pure Go) picks it, or nil and the
// name of the GoMLX backend to open instead. A missing oneDNN or a config the engine does not cover
// falls back with one line on stderr; when --backend onednn named the engine, a missing oneDNN is an
// error.
func openEngine(name string, cfg unet.Config, flat *tensors.Tensor, threads int, stderr io.Writer) (*cpu.Net, backend.Info, string, error) {
	use, explicit := backend.UseEngine(name)
	if explicit {
		name = "auto"
	}
	if !use {
		return nil, backend.Info{}, name, nil
	}
	if err := cpu.Available(); err != nil {
		if explicit {
			return nil, backend.Info{}, "", err
		}
		fmt.Fprintf(stderr, "backend: the CPU engine needs oneDNN (libdnnl.so.2), which is not installed: %s for ~20x faster sampling\n", cpu.Install)
		return nil, backend.Info{}, name, nil
	}
	if err := cpu.Supports(cfg); err != nil {
		fmt.Fprintf(stderr, "backend: the CPU engine does not cover this model (%v): using GoMLX\n", err)
		return nil, backend.Info{}, name, nil
	}
	if err := cpu.SetThreads(threads); err != nil {
		return nil, backend.Info{}, "", err
	}
	net, err := cpu.New(cfg)
	if err != nil {
		return nil, backend.Info{}, "", err
	}
	if err := net.SetWeights(tensors.MustCopyFlatData[float32](flat)); err != nil {
		return nil, backend.Info{}, "", err
	}
	info := backend.Info{Kind: backend.OneDNN, Device: fmt.Sprintf("oneDNN %s, %d threads", cpu.Version(), cpu.Threads()),
		Reason: "fastest found"}
	if explicit {
		info.Reason = "asked for"
	}
	fmt.Fprintf(stderr, "backend: %s (%s)\n", info, info.Reason)
	return net, info, "", nil
}

// engineLine says in one line whether the CPU engine can run here, for `ddpm backends`.
func engineLine() string {
	if err := cpu.Available(); err != nil {
		return "onednn (the CPU engine): oneDNN (libdnnl.so.2) not installed: " + cpu.Install
	}
	return fmt.Sprintf("onednn (the CPU engine): oneDNN %s, %d threads", cpu.Version(), cpu.Threads())
}

// engineSample samples with the UNet of cfg and the flat weights on the CPU engine (training's sample
// grids when the steps run on it).
func engineSample(cfg unet.Config, flat *tensors.Tensor, plan sampler.Plan, opts sampler.Options) ([]float32, error) {
	net, err := cpu.New(cfg)
	if err != nil {
		return nil, err
	}
	defer net.Close()
	if err := net.SetWeights(tensors.MustCopyFlatData[float32](flat)); err != nil {
		return nil, err
	}
	return cpu.Sample(net, plan, opts)
}

// engineDenoiser is the engine's network as a host denoiser, with classifier-free guidance when --class
// asks for it, by the rules cond's apply gives the GoMLX model.
// shape is one sample's [C, H, W].
func engineDenoiser(net *cpu.Net, cond condSampleFlags, uc unet.Config, shape []int) (sampler.HostDenoiser, error) {
	den := net.Denoiser(shape[1], shape[2])
	if *cond.class == "" {
		return den, nil
	}
	null, err := uc.GuidanceNull(*cond.null)
	if err != nil {
		return nil, fmt.Errorf("sample: --class: %w", err)
	}
	return sampler.Guidance{Scale: *cond.guidance, Null: int32(null)}.Host(den), nil
}
