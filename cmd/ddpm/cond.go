package main

// Class-conditional training and classifier-free guidance: the flags of ddpm train and ddpm sample, and
// the glue between them and the library (unet.Config.Conditional and GuidanceNull,
// sampler.ParseClasses and Guidance).

import (
	"flag"
	"fmt"
	"strings"

	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/models"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
)

// condTrainFlags are ddpm train's flags of class-conditional training.
type condTrainFlags struct {
	classes *bool
	pUncond *float64
}

func addCondTrainFlags(fs *flag.FlagSet) condTrainFlags {
	return condTrainFlags{
		classes: fs.Bool("classes", false, "train a class-conditional model on the data set's labels (num_class_embeds = classes + 1, the last the null class), for ddpm sample --class"),
		pUncond: fs.Float64("p-uncond", 0.1, "with --classes: probability of replacing a label by the null label (label dropout), which classifier-free guidance needs"),
	}
}

// apply makes a new run's train and UNet configs class-conditional when --classes is given.
func (f condTrainFlags) apply(fs *flag.FlagSet, dataName string, cfg *train.Config, uc *unet.Config) error {
	if !*f.classes {
		pSet := false
		fs.Visit(func(fl *flag.Flag) { pSet = pSet || fl.Name == "p-uncond" })
		if pSet {
			return usagef("train: --p-uncond is label dropout for --classes; give --classes too")
		}
		return nil
	}
	classes, err := data.Classes(dataName)
	if err != nil {
		return fmt.Errorf("train: --classes: %w", err)
	}
	if *uc, err = uc.Conditional(len(classes)); err != nil {
		return err
	}
	if p := *f.pUncond; !(p >= 0 && p < 1) {
		return usagef("train: --p-uncond %g: want a probability in [0, 1) (class_dropout)", p)
	}
	cfg.NumClasses, cfg.ClassDropout = len(classes), *f.pUncond
	return nil
}

// trainLabels are the labels train.New needs: the data set's for a class-conditional run, else nil.
func trainLabels(cfg train.Config, uc unet.Config, ds *data.Dataset) ([]int, error) {
	if cfg.NumClasses == 0 {
		if uc.ClassEmbedding() != unet.NoClasses {
			return nil, fmt.Errorf("train: the UNet config has a class embedding (%s) but the run has no labels: train with --classes (which sets num_class_embeds itself)", uc.ClassEmbedding())
		}
		return nil, nil
	}
	if ds.Labels == nil {
		return nil, fmt.Errorf("train: a class-conditional run needs labels, and %s has none", ds.Name)
	}
	return ds.Labels, nil
}

// gridClasses lays out the training run's sample grid: one row of 8 per class (classes = the null
// label) for a class-conditional model, else 64 samples in 8 columns without labels.
func gridClasses(uc unet.Config) (n int, labels []int32, err error) {
	if uc.ClassEmbedding() == unet.NoClasses {
		return 64, nil, nil
	}
	null, err := uc.GuidanceNull(-1)
	if err != nil {
		return 0, nil, err
	}
	c, err := sampler.ParseClasses("all", null, 0, 8)
	return len(c.Labels), c.Labels, err
}

// condSampleFlags are ddpm sample's flags of class-conditional sampling.
type condSampleFlags struct {
	class    *string
	guidance *float64
	null     *int
}

// defaultGuidance is --guidance when --class is given without it.
const defaultGuidance = 3

func addCondSampleFlags(fs *flag.FlagSet) condSampleFlags {
	return condSampleFlags{
		class: fs.String("class", "", "class-conditional sampling: a label (7: every sample), a list (1,3,5: one per sample), or all (one row per class, --cols per class, default 8); "+
			"without --run/--model: the bundled conditional MNIST model"),
		guidance: fs.Float64("guidance", defaultGuidance, "classifier-free guidance scale S (diffusers' guidance_scale): eps = eps(null) + S (eps(class) - eps(null)); 1: the plain conditional model, 0: unconditional"),
		null:     fs.Int("null-label", -1, "the null (unconditional) label (default: num_class_embeds - 1; needed for class_embed_type \"timestep\" models)"),
	}
}

// bundled names the bundled model ddpm sample uses without --run or --model.
func (f condSampleFlags) bundled() (string, error) {
	if *f.class == "" {
		return models.Dir("mnist")
	}
	dir, err := models.Dir("mnist-cond")
	if err != nil {
		return "", fmt.Errorf("sample: --class: no bundled class-conditional model in this build (%v); give --run DIR or --model DIR of one trained with ddpm train --classes", err)
	}
	return dir, nil
}

// apply sets the labels of a class-conditional run and wraps the model with guidance; without --class it
// returns m as it is (and rejects --guidance and --null-label). perClass is the samples per class of
// --class all; cols, the grid width it asks for (0: the caller's default).
func (f condSampleFlags) apply(fs *flag.FlagSet, uc unet.Config, opts *sampler.Options, m sampler.Model, perClass int) (_ sampler.Model, cols int, desc string, err error) {
	if *f.class == "" {
		var bad string
		fs.Visit(func(fl *flag.Flag) {
			if fl.Name == "guidance" || fl.Name == "null-label" {
				bad = fl.Name
			}
		})
		if bad != "" {
			return nil, 0, "", usagef("sample: --%s is for class-conditional sampling: give --class too", bad)
		}
		return m, 0, "", nil
	}
	null, err := uc.GuidanceNull(*f.null)
	if err != nil {
		return nil, 0, "", fmt.Errorf("sample: --class: %w", err)
	}
	if perClass < 1 {
		perClass = 8
	}
	n := opts.N // one label takes --n; a list must agree with an explicit --n or --init
	nSet := opts.Init != nil
	fs.Visit(func(fl *flag.Flag) { nSet = nSet || fl.Name == "n" })
	if !nSet && strings.Contains(*f.class, ",") {
		n = 0
	}
	c, err := sampler.ParseClasses(*f.class, null, n, perClass)
	if err != nil {
		return nil, 0, "", usageError{err.Error()}
	}
	if opts.Init != nil && len(c.Labels) != opts.N {
		return nil, 0, "", usagef("sample: --class %s gives %d samples; --init has %d", *f.class, len(c.Labels), opts.N)
	}
	opts.N, opts.Labels = len(c.Labels), c.Labels
	g := sampler.Guidance{Scale: *f.guidance, Null: int32(null)}
	if err := g.Validate(); err != nil {
		return nil, 0, "", usageError{err.Error()}
	}
	return g.Model(m), c.Cols, fmt.Sprintf("class %s, guidance %g (null label %d)", *f.class, g.Scale, null), nil
}
