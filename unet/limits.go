package unet

import "fmt"

// Limits on the sizes a config.json may ask for. They are far above any published UNet2DModel
// (google/ddpm-*: sample_size 256, block_out_channels up to 512, layers_per_block 2; Stable Diffusion's
// UNet: 1280 channels) and low enough that a hostile or mistyped config is refused with an error naming
// the field, before anything is allocated for it, instead of exhausting memory.
const (
	// MaxSampleSize bounds each side of sample_size: a [3, 4096, 4096] float32 image is 200 MB.
	MaxSampleSize = 4096
	// MaxChannels bounds in_channels, out_channels, each of block_out_channels and time_embedding_dim:
	// one 3x3 convolution of 8192 to 8192 channels is already 2.4 GB of float32 weights.
	MaxChannels = 8192
	// MaxBlocks bounds the number of down (and up) blocks: each halves the resolution, so 16 levels
	// need an input of 32768 pixels a side.
	MaxBlocks = 16
	// MaxLayersPerBlock bounds layers_per_block (the resnets of each down block; up blocks have one more).
	MaxLayersPerBlock = 64
	// MaxClassEmbeds bounds num_class_embeds (ImageNet has 1000 classes).
	MaxClassEmbeds = 100_000
)

// checkLimits reports the first size beyond the limits above, and the sizes that would divide by
// zero, by their config.json name and the limit.
func (c Config) checkLimits() error {
	over := func(field string, got, limit int) error {
		return fmt.Errorf("unet: config: %s: %d is beyond the limit of %d (unet.Max* in unet/limits.go)", field, got, limit)
	}
	if c.InChannels > MaxChannels {
		return over("in_channels", c.InChannels, MaxChannels)
	}
	if c.OutChannels > MaxChannels {
		return over("out_channels", c.OutChannels, MaxChannels)
	}
	if n := len(c.BlockOutChannels); n > MaxBlocks {
		return over("block_out_channels (the number of blocks)", n, MaxBlocks)
	}
	for i, ch := range c.BlockOutChannels {
		if ch > MaxChannels {
			return over(fmt.Sprintf("block_out_channels[%d]", i), ch, MaxChannels)
		}
	}
	if n := len(c.DownBlockTypes); n > MaxBlocks {
		return over("down_block_types (the number of blocks)", n, MaxBlocks)
	}
	if n := len(c.UpBlockTypes); n > MaxBlocks {
		return over("up_block_types (the number of blocks)", n, MaxBlocks)
	}
	if c.LayersPerBlock > MaxLayersPerBlock {
		return over("layers_per_block", c.LayersPerBlock, MaxLayersPerBlock)
	}
	if d := c.TimeEmbeddingDim; d != nil && (*d < 1 || *d > MaxChannels) {
		if *d < 1 {
			return fmt.Errorf("unet: config: time_embedding_dim: must be positive, got %d", *d)
		}
		return over("time_embedding_dim", *d, MaxChannels)
	}
	if n := c.NumClassEmbeds; n != nil && *n > MaxClassEmbeds {
		return over("num_class_embeds", *n, MaxClassEmbeds)
	}
	for i, s := range c.SampleSize {
		if s > MaxSampleSize {
			return over(fmt.Sprintf("sample_size[%d]", i), s, MaxSampleSize)
		}
	}
	if c.SampleSize != nil && len(c.SampleSize) != 2 {
		return fmt.Errorf("unet: config: sample_size: %d values, want an int or [height, width]", len(c.SampleSize))
	}
	if h := c.AttentionHeadDim; h != nil && *h < 1 {
		return fmt.Errorf("unet: config: attention_head_dim: must be positive or null, got %d", *h)
	}
	if g := c.AttnNormNumGroups; g != nil && *g < 1 {
		return fmt.Errorf("unet: config: attn_norm_num_groups: must be positive or null, got %d", *g)
	}
	return nil
}
