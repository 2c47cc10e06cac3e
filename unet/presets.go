package unet

import (
	"fmt"
	"sort"
	"strings"
)

// Presets are named configurations.
//
// "mnist" is the lesson's small UNet for 28x28x1: block_out_channels 32/64/128 (28 -> 14 -> 7: 28 = 4*7,
// and 7 is odd, so three levels), one resnet per level, single-head attention at the 7x7 level and in
// the mid block (49 positions: global structure at little cost), GroupNorm with 8 groups. 2.7M
// parameters. One resnet per level rather than diffusers' default two keeps sampling on 2 CPU cores
// affordable.
//
// "cifar10" is the architecture of google/ddpm-cifar10-32 (Ho et al. 2020's CIFAR-10 model as diffusers
// ships it): 128/256/256/256 channels, attention at 16x16, 35.7M parameters.
var Presets = map[string]func() Config{
	"mnist": func() Config {
		c := Default()
		c.SampleSize = []int{28, 28}
		c.InChannels, c.OutChannels = 1, 1
		c.BlockOutChannels = []int{32, 64, 128}
		c.LayersPerBlock = 1
		c.DownBlockTypes = []string{"DownBlock2D", "DownBlock2D", "AttnDownBlock2D"}
		c.UpBlockTypes = []string{"AttnUpBlock2D", "UpBlock2D", "UpBlock2D"}
		c.NormNumGroups = ptr(8)
		c.AttentionHeadDim = nil
		return c
	},
	"cifar10": func() Config {
		c := Default()
		c.SampleSize = []int{32, 32}
		c.BlockOutChannels = []int{128, 256, 256, 256}
		c.DownBlockTypes = []string{"DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"}
		c.UpBlockTypes = []string{"UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"}
		c.AttentionHeadDim = nil
		c.DownsamplePadding = 0
		c.FlipSinToCos = false
		c.FreqShift = 1
		c.NormEps = 1e-6
		return c
	},
}

// Preset returns the named configuration.
func Preset(name string) (Config, error) {
	f, ok := Presets[name]
	if !ok {
		names := make([]string, 0, len(Presets))
		for n := range Presets {
			names = append(names, n)
		}
		sort.Strings(names)
		return Config{}, fmt.Errorf("unet: unknown preset %q (have %s)", name, strings.Join(names, ", "))
	}
	return f(), nil
}
