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

// condSampleFlags are ddpm sample's flags of class-conditional sampling.
type condSampleFlags struct {
	class    *string
	guidance *float64
	null     *int
}

// defaultGuidance is --guidance when --class is given without it: the smallest scale at which our
// classifiers recognise the requested class in >= 99% of MNIST's samples and >= 95% of
// Fashion-MNIST's (docs/guidance.md, 2026-12-03, one H200, 10,000 samples per scale: 99.99% and
// 98.4% at S = 2, against 98.1% and 90.0% at S = 1). It costs diversity: the classifier FID rises
// from 17.4 to 122 on MNIST (--guidance 1 for the plain conditional model).
const defaultGuidance = 2

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
