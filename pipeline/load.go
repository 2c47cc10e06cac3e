package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The file names of a diffusers pipeline directory.
const (
	ModelIndexFile      = "model_index.json"
	UNetConfigFile      = "config.json"
	SafetensorsFile     = "diffusion_pytorch_model.safetensors"
	TorchFile           = "diffusion_pytorch_model.bin"
	SchedulerConfigFile = "scheduler_config.json"
)

// The pipeline classes this package reads.
const (
	DDPMPipeline = "DDPMPipeline"
	DDIMPipeline = "DDIMPipeline"
)

// Pipeline is a diffusers DDPMPipeline or DDIMPipeline: a UNet2DModel with its weights, and a scheduler
// config decoded for both samplers.
type Pipeline struct {
	// Class is model_index.json's _class_name, DDPMPipeline or DDIMPipeline (DDPMPipeline for a flat
	// directory without model_index.json).
	Class string
	// Scheduler is the scheduler class model_index.json names, the one diffusers instantiates (without
	// model_index.json: scheduler_config.json's _class_name, else DDPMScheduler).
	Scheduler Scheduler
	UNet      *unet.Model
	// Weights are the UNet's weights in UNet.Specs() order, float32.
	Weights  []*tensors.Tensor
	Schedule schedule.Config
	// DDPM and DDIM are the scheduler config as DDPMScheduler.from_config and DDIMScheduler.from_config
	// would read it (see SchedulerConfig), so that either sampler can run.
	DDPM sampler.DDPM
	DDIM sampler.DDIM
	// Files says where each part was read from; empty for a Pipeline made by New.
	Files Files
	// Notes say what Load assumed: a flat layout, a default scheduler, .bin weights.
	Notes []string
}

// Files are the paths of a pipeline's files. SchedulerConfig and ModelIndex are empty when absent.
type Files struct {
	ModelIndex, UNetConfig, Weights, SchedulerConfig string
}

// DefaultScheduler returns the scheduler class a diffusers pipeline of this directory samples with:
// DDIMScheduler for a DDIMPipeline (whose constructor converts any scheduler with
// DDIMScheduler.from_config), else the class model_index.json names.
func (p *Pipeline) DefaultScheduler() Scheduler {
	if p.Class == DDIMPipeline {
		return DDIMScheduler
	}
	return p.Scheduler
}

// Check reports whether diffusers could sample this pipeline with scheduler class s, as
// s.from_config(scheduler.config): DDIMScheduler refuses the sigmoid beta schedule.
func (p *Pipeline) Check(s Scheduler) error {
	return p.SchedulerConfig(s).Check(s)
}

// SchedulerConfig returns the pipeline's schedule and sampler settings as a config of class s.
func (p *Pipeline) SchedulerConfig(s Scheduler) SchedulerConfig {
	return SchedulerConfig{Class: s, Schedule: p.Schedule, DDPM: p.DDPM, DDIM: p.DDIM}
}

// Load reads a diffusers DDPMPipeline or DDIMPipeline directory, as DiffusionPipeline.from_pretrained does:
//
//	model_index.json                           _class_name and components (unet, scheduler)
//	unet/config.json                           the UNet2DModel config (package unet)
//	unet/diffusion_pytorch_model.safetensors   the weights, or if absent unet/diffusion_pytorch_model.bin
//	scheduler/scheduler_config.json            a DDPMScheduler or DDIMScheduler config
//
// A component whose subfolder does not exist is read from the directory itself, as diffusers does: that is
// the older flat layout (config.json, the weights and scheduler_config.json at the top). A directory with
// config.json but no model_index.json is a UNet2DModel alone, read as a DDPMPipeline. Without any
// scheduler_config.json the scheduler is DDPMScheduler() with its defaults; Notes says so.
func Load(dir string) (*Pipeline, error) {
	files, notes, err := findFiles(dir)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{Class: DDPMPipeline, Scheduler: DDPMScheduler, Files: files, Notes: notes}
	if files.ModelIndex != "" {
		data, err := os.ReadFile(files.ModelIndex)
		if err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		mi, err := parseModelIndex(data)
		if err != nil {
			return nil, fmt.Errorf("pipeline: %s: %w", files.ModelIndex, err)
		}
		p.Class, p.Scheduler = mi.class, mi.scheduler
	}

	cfg, err := unet.LoadConfig(files.UNetConfig)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	if p.UNet, err = unet.New(cfg); err != nil {
		return nil, fmt.Errorf("pipeline: %s: %w", files.UNetConfig, err)
	}
	sc := DefaultSchedulerConfig()
	if files.SchedulerConfig != "" {
		if sc, err = LoadSchedulerConfig(files.SchedulerConfig); err != nil {
			return nil, err
		}
		if files.ModelIndex == "" { // no model_index.json to name the class: the config's own
			p.Scheduler = sc.Class
		} else if sc.Class != p.Scheduler {
			p.Notes = append(p.Notes, fmt.Sprintf("%s is a %s config; model_index.json names %s, which diffusers builds from it (%s.from_config)",
				files.SchedulerConfig, sc.Class, p.Scheduler, p.Scheduler))
		}
	}
	if err := sc.Check(p.DefaultScheduler()); err != nil {
		return nil, fmt.Errorf("%w (a %s, %s)", err, p.Class, files.SchedulerConfig)
	}
	p.Schedule, p.DDPM, p.DDIM = sc.Schedule, sc.DDPM, sc.DDIM

	// The weights last: every config is checked before the large file is read.
	var f *checkpoint.File
	if filepath.Base(files.Weights) == TorchFile {
		f, err = checkpoint.ReadTorchLimit(files.Weights, torchLimit(p.UNet.Specs()))
	} else {
		f, err = checkpoint.ReadSafetensors(files.Weights)
	}
	if err != nil {
		return nil, fmt.Errorf("pipeline: unet weights: %w", err)
	}
	if p.Weights, err = p.UNet.Weights(f); err != nil {
		return nil, fmt.Errorf("pipeline: %s: %w", files.Weights, err)
	}
	return p, nil
}

// torchLimit is the most a .bin state dict of these parameters may declare: 8 bytes an element (float64
// storages) plus 1 KiB a tensor and 64 KiB for data.pkl. A larger archive is not this config's weights,
// and is refused before anything in it is decompressed.
func torchLimit(specs []nn.Spec) int64 {
	n := int64(64 << 10)
	for _, s := range specs {
		n += 8*int64(s.Size()) + 1<<10
	}
	return n
}

// findFiles locates a pipeline's files in dir with diffusers' rules (see Load).
func findFiles(dir string) (Files, []string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Files{}, nil, fmt.Errorf("pipeline: %s: no such directory (for a hub name like google/ddpm-cifar10-32 use Open or Resolve)", dir)
		}
		return Files{}, nil, fmt.Errorf("pipeline: %w", err)
	}
	if !fi.IsDir() {
		return Files{}, nil, fmt.Errorf("pipeline: %s is a file; want a pipeline directory (the one holding model_index.json)", dir)
	}
	var files Files
	var notes []string
	unetDir, schedDir := dir, dir
	if p := filepath.Join(dir, ModelIndexFile); isFile(p) {
		files.ModelIndex = p
		// diffusers: a component is read from its subfolder when that is a directory, else from the top.
		if d := filepath.Join(dir, "unet"); isDir(d) {
			unetDir = d
		} else {
			notes = append(notes, "flat layout: the UNet is read from the top of "+dir+" (no unet/ folder)")
		}
		if d := filepath.Join(dir, "scheduler"); isDir(d) {
			schedDir = d
		}
	} else if isFile(filepath.Join(dir, UNetConfigFile)) {
		notes = append(notes, "no model_index.json: "+dir+" is a UNet2DModel directory, read as a DDPMPipeline")
	} else {
		return Files{}, nil, fmt.Errorf("pipeline: %s holds neither %s (a diffusers pipeline) nor %s (a UNet2DModel); is it a DDPMPipeline directory?",
			dir, ModelIndexFile, UNetConfigFile)
	}

	files.UNetConfig = filepath.Join(unetDir, UNetConfigFile)
	if !isFile(files.UNetConfig) {
		return Files{}, nil, fmt.Errorf("pipeline: %s is missing; the UNet2DModel config must be there", files.UNetConfig)
	}
	switch st, bin := filepath.Join(unetDir, SafetensorsFile), filepath.Join(unetDir, TorchFile); {
	case isFile(st):
		files.Weights = st
	case isFile(bin):
		files.Weights = bin
		notes = append(notes, "weights read from "+TorchFile+" (no "+SafetensorsFile+")")
	default:
		return Files{}, nil, fmt.Errorf("pipeline: no UNet weights: want %s or %s", st, bin)
	}
	if p := filepath.Join(schedDir, SchedulerConfigFile); isFile(p) {
		files.SchedulerConfig = p
	} else if schedDir != dir {
		return Files{}, nil, fmt.Errorf("pipeline: %s is missing; the scheduler folder must hold it", p)
	} else {
		notes = append(notes, "no "+SchedulerConfigFile+": the scheduler is DDPMScheduler() with diffusers' defaults")
	}
	return files, notes, nil
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

type modelIndex struct {
	class     string
	scheduler Scheduler
}

// parseModelIndex decodes a DDPMPipeline or DDIMPipeline model_index.json: _class_name, and the components
// unet = ["diffusers", "UNet2DModel"] and scheduler = ["diffusers", "DDPMScheduler" or "DDIMScheduler"].
func parseModelIndex(data []byte) (modelIndex, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return modelIndex{}, fmt.Errorf("not a JSON object: %w", err)
	}
	var mi modelIndex
	v, ok := raw["_class_name"]
	if !ok {
		return modelIndex{}, fmt.Errorf("no _class_name; want \"DDPMPipeline\" or \"DDIMPipeline\"")
	}
	if err := json.Unmarshal(v, &mi.class); err != nil || (mi.class != DDPMPipeline && mi.class != DDIMPipeline) {
		return modelIndex{}, fmt.Errorf("_class_name %s is not supported: only DDPMPipeline and DDIMPipeline (a UNet2DModel with a DDPM or DDIM scheduler)", v)
	}
	var unknown []string
	seen := map[string]bool{}
	for k, v := range raw {
		switch k {
		case "_class_name":
		case "unet", "scheduler":
			var comp []*string
			if err := json.Unmarshal(v, &comp); err != nil || len(comp) != 2 || comp[0] == nil || comp[1] == nil {
				return modelIndex{}, fmt.Errorf("component %q is %s; want [\"diffusers\", class name]", k, v)
			}
			lib, class := *comp[0], *comp[1]
			if lib != "diffusers" {
				return modelIndex{}, fmt.Errorf("component %q comes from library %q; want \"diffusers\"", k, lib)
			}
			if k == "unet" && class != "UNet2DModel" {
				return modelIndex{}, fmt.Errorf("component unet is a %s; only UNet2DModel is supported", class)
			}
			if k == "scheduler" {
				s, ok := schedulerClass(class)
				if !ok {
					return modelIndex{}, fmt.Errorf("component scheduler is a %s; only DDPMScheduler and DDIMScheduler are supported", class)
				}
				mi.scheduler = s
			}
			seen[k] = true
		default:
			if !ignored("model_index.json", k) {
				unknown = append(unknown, k)
			}
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return modelIndex{}, fmt.Errorf("unknown field(s) %s: a %s has only the components unet and scheduler (ignored: %s)",
			strings.Join(unknown, ", "), mi.class, strings.Join(ignoredNames("model_index.json"), ", "))
	}
	for _, k := range []string{"unet", "scheduler"} {
		if !seen[k] {
			return modelIndex{}, fmt.Errorf("no %s component; want \"%s\": [\"diffusers\", ...]", k, k)
		}
	}
	return mi, nil
}

// New makes a DDPMPipeline from its parts: a UNet config, its weights in unet.Model.Specs order, the noise
// schedule and the DDPM sampler settings. DDIM is what DDIMScheduler.from_config makes of that
// DDPMScheduler: the shared fields, with set_alpha_to_one true.
func New(cfg unet.Config, weights []*tensors.Tensor, sched schedule.Config, ddpm sampler.DDPM) (*Pipeline, error) {
	m, err := unet.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	specs := m.Specs()
	if len(weights) != len(specs) {
		return nil, fmt.Errorf("pipeline: %d weights for the %d parameters of this UNet config; pass them in unet.Model.Specs order", len(weights), len(specs))
	}
	for i, s := range specs {
		if weights[i] == nil {
			return nil, fmt.Errorf("pipeline: weight %d (%s) is nil", i, s.Name)
		}
		if got := weights[i].Shape(); !slices.Equal(got.Dimensions, s.Shape) {
			return nil, fmt.Errorf("pipeline: weight %d (%s) has shape %s; want %v (does the UNet config match?)", i, s.Name, got, s.Shape)
		}
	}
	sc := SchedulerConfig{Class: DDPMScheduler, Schedule: sched, DDPM: ddpm, DDIM: ddimFrom(ddpm, true)}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	return &Pipeline{
		Class: DDPMPipeline, Scheduler: DDPMScheduler, UNet: m, Weights: weights,
		Schedule: sched, DDPM: sc.DDPM, DDIM: sc.DDIM,
	}, nil
}

// ddimFrom returns DDIMScheduler.from_config of a DDPMScheduler with settings d.
func ddimFrom(d sampler.DDPM, setAlphaToOne bool) sampler.DDIM {
	return sampler.DDIM{
		Prediction:      d.Prediction,
		SetAlphaToOne:   setAlphaToOne,
		ClipSample:      d.ClipSample,
		ClipSampleRange: d.ClipSampleRange,
		Spacing:         d.Spacing,
		StepsOffset:     d.StepsOffset,
	}
}
