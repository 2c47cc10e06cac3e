package unet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Config is diffusers' UNet2DModel configuration (its config.json), with the same field names and,
// for fields absent from a file, the same defaults as UNet2DModel.__init__.
//
// Pointers are fields that diffusers allows to be null with a meaning of their own
// (attention_head_dim null: one head as wide as the block).
type Config struct {
	SampleSize           []int    `json:"-"` // [H, W]; diffusers accepts an int or a pair
	InChannels           int      `json:"in_channels"`
	OutChannels          int      `json:"out_channels"`
	CenterInputSample    bool     `json:"center_input_sample"`
	TimeEmbeddingType    string   `json:"time_embedding_type"`
	TimeEmbeddingDim     *int     `json:"time_embedding_dim"`
	FreqShift            float64  `json:"freq_shift"`
	FlipSinToCos         bool     `json:"flip_sin_to_cos"`
	DownBlockTypes       []string `json:"down_block_types"`
	MidBlockType         *string  `json:"mid_block_type"`
	UpBlockTypes         []string `json:"up_block_types"`
	BlockOutChannels     []int    `json:"block_out_channels"`
	LayersPerBlock       int      `json:"layers_per_block"`
	MidBlockScaleFactor  float64  `json:"mid_block_scale_factor"`
	DownsamplePadding    int      `json:"downsample_padding"`
	DownsampleType       string   `json:"downsample_type"`
	UpsampleType         string   `json:"upsample_type"`
	Dropout              float64  `json:"dropout"`
	ActFn                string   `json:"act_fn"`
	AttentionHeadDim     *int     `json:"attention_head_dim"`
	NormNumGroups        *int     `json:"norm_num_groups"`
	AttnNormNumGroups    *int     `json:"attn_norm_num_groups"`
	NormEps              float64  `json:"norm_eps"`
	ResnetTimeScaleShift string   `json:"resnet_time_scale_shift"`
	AddAttention         bool     `json:"add_attention"`
	ClassEmbedType       *string  `json:"class_embed_type"`
	NumClassEmbeds       *int     `json:"num_class_embeds"`
	NumTrainTimesteps    *int     `json:"num_train_timesteps"`
}

// IgnoredFields are config.json fields that do not change the network, so reading them is safe to skip.
var IgnoredFields = []string{
	"_class_name",        // checked: must be UNet2DModel
	"_diffusers_version", // provenance only
	"_name_or_path",      // provenance only
	"_use_default_values",
	"num_train_timesteps", // used by diffusers only for time_embedding_type "learned", which we reject
}

func ptr[T any](v T) *T { return &v }

// Default returns UNet2DModel's defaults.
func Default() Config {
	return Config{
		InChannels:           3,
		OutChannels:          3,
		TimeEmbeddingType:    "positional",
		FlipSinToCos:         true,
		DownBlockTypes:       []string{"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"},
		MidBlockType:         ptr("UNetMidBlock2D"),
		UpBlockTypes:         []string{"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"},
		BlockOutChannels:     []int{224, 448, 672, 896},
		LayersPerBlock:       2,
		MidBlockScaleFactor:  1,
		DownsamplePadding:    1,
		DownsampleType:       "conv",
		UpsampleType:         "conv",
		ActFn:                "silu",
		AttentionHeadDim:     ptr(8),
		NormNumGroups:        ptr(32),
		NormEps:              1e-5,
		ResnetTimeScaleShift: "default",
		AddAttention:         true,
	}
}

// ParseConfig decodes a UNet2DModel config.json. Fields absent take diffusers' defaults; a field this
// package does not know is an error naming it (unless it is in IgnoredFields), and so is a value it
// cannot build.
func ParseConfig(data []byte) (Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("unet: config: %w", err)
	}
	c := Default()
	if v, ok := raw["_class_name"]; ok {
		var name string
		if err := json.Unmarshal(v, &name); err != nil || name != "UNet2DModel" {
			return Config{}, fmt.Errorf("unet: config: _class_name %s: only UNet2DModel is supported", v)
		}
	}
	if v, ok := raw["sample_size"]; ok && string(v) != "null" {
		var n int
		var pair []int
		switch {
		case json.Unmarshal(v, &n) == nil:
			c.SampleSize = []int{n, n}
		case json.Unmarshal(v, &pair) == nil && len(pair) == 2:
			c.SampleSize = pair
		default:
			return Config{}, fmt.Errorf("unet: config: sample_size %s: want an int or [height, width]", v)
		}
	}
	known := map[string]bool{"sample_size": true}
	for _, f := range IgnoredFields {
		known[f] = true
	}
	fields := map[string]json.RawMessage{}
	for k, v := range raw {
		if known[k] {
			continue
		}
		fields[k] = v
	}
	// Decode the rest strictly: an unknown key is an error, null keeps a pointer nil.
	rest, _ := json.Marshal(fields)
	dec := json.NewDecoder(bytes.NewReader(rest))
	dec.DisallowUnknownFields()
	// Pointers present as null must become nil even though Default set them.
	for k, v := range fields {
		if string(v) == "null" {
			switch k {
			case "time_embedding_dim":
				c.TimeEmbeddingDim = nil
			case "mid_block_type":
				c.MidBlockType = nil
			case "attention_head_dim":
				c.AttentionHeadDim = nil
			case "norm_num_groups":
				c.NormNumGroups = nil
			case "attn_norm_num_groups":
				c.AttnNormNumGroups = nil
			case "class_embed_type":
				c.ClassEmbedType = nil
			case "num_class_embeds":
				c.NumClassEmbeds = nil
			}
		}
	}
	if err := dec.Decode(&c); err != nil {
		msg := err.Error()
		if strings.Contains(msg, "unknown field") {
			return Config{}, fmt.Errorf("unet: config: %s: this UNet2DModel option is not supported (known fields: %s)",
				strings.TrimPrefix(msg, "json: "), strings.Join(c.fieldNames(), ", "))
		}
		return Config{}, fmt.Errorf("unet: config: %w", err)
	}
	return c, c.Validate()
}

// LoadConfig reads a config.json file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("unet: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return c, nil
}

func (c Config) fieldNames() []string {
	var names []string
	b, _ := json.Marshal(c)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for k := range m {
		names = append(names, k)
	}
	names = append(names, "sample_size")
	sort.Strings(names)
	return names
}

// MarshalJSON writes the config as diffusers does, with _class_name.
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config
	b, err := json.Marshal(plain(c))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["_class_name"] = "UNet2DModel"
	m["_diffusers_version"] = "0.30.0"
	if c.SampleSize != nil {
		if c.SampleSize[0] == c.SampleSize[1] {
			m["sample_size"] = c.SampleSize[0]
		} else {
			m["sample_size"] = c.SampleSize
		}
	} else {
		m["sample_size"] = nil
	}
	return json.MarshalIndent(m, "", "  ")
}

// Validate reports the first field that this package cannot build, by its config.json name.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("unet: config: %s: %s", field, fmt.Sprintf(format, args...))
	}
	if err := c.checkLimits(); err != nil {
		return err
	}
	if c.InChannels <= 0 || c.OutChannels <= 0 {
		return bad("in_channels/out_channels", "must be positive, got %d/%d", c.InChannels, c.OutChannels)
	}
	if c.TimeEmbeddingType != "positional" {
		return bad("time_embedding_type", "%q is not supported (only \"positional\")", c.TimeEmbeddingType)
	}
	n := len(c.BlockOutChannels)
	if n == 0 {
		return bad("block_out_channels", "empty")
	}
	if len(c.DownBlockTypes) != n || len(c.UpBlockTypes) != n {
		return bad("down_block_types/up_block_types", "%d and %d blocks for %d block_out_channels: must be equal",
			len(c.DownBlockTypes), len(c.UpBlockTypes), n)
	}
	for i, t := range c.DownBlockTypes {
		if t != "DownBlock2D" && t != "AttnDownBlock2D" {
			return bad(fmt.Sprintf("down_block_types[%d]", i), "unknown block type %q (want DownBlock2D or AttnDownBlock2D)", t)
		}
	}
	for i, t := range c.UpBlockTypes {
		if t != "UpBlock2D" && t != "AttnUpBlock2D" {
			return bad(fmt.Sprintf("up_block_types[%d]", i), "unknown block type %q (want UpBlock2D or AttnUpBlock2D)", t)
		}
	}
	if c.MidBlockType != nil && *c.MidBlockType != "UNetMidBlock2D" {
		return bad("mid_block_type", "%q is not supported (want UNetMidBlock2D or null)", *c.MidBlockType)
	}
	if c.LayersPerBlock < 1 {
		return bad("layers_per_block", "must be >= 1, got %d", c.LayersPerBlock)
	}
	if c.DownsampleType != "conv" {
		return bad("downsample_type", "%q is not supported (only \"conv\")", c.DownsampleType)
	}
	if c.UpsampleType != "conv" {
		return bad("upsample_type", "%q is not supported (only \"conv\")", c.UpsampleType)
	}
	if c.ActFn != "silu" && c.ActFn != "swish" {
		return bad("act_fn", "%q is not supported (only \"silu\")", c.ActFn)
	}
	if c.ResnetTimeScaleShift != "default" && c.ResnetTimeScaleShift != "scale_shift" {
		return bad("resnet_time_scale_shift", "%q is not supported (\"default\" or \"scale_shift\")", c.ResnetTimeScaleShift)
	}
	if c.DownsamplePadding < 0 {
		return bad("downsample_padding", "must be >= 0, got %d", c.DownsamplePadding)
	}
	if t := c.ClassEmbedType; t != nil && *t != "timestep" && *t != "identity" {
		return bad("class_embed_type", "%q is not supported (null with num_class_embeds, \"timestep\" or \"identity\")", *t)
	}
	if c.NumClassEmbeds != nil && *c.NumClassEmbeds <= 0 {
		return bad("num_class_embeds", "must be positive, got %d", *c.NumClassEmbeds)
	}
	if c.Dropout < 0 || c.Dropout >= 1 {
		return bad("dropout", "must be in [0, 1), got %g", c.Dropout)
	}
	if c.NormEps <= 0 {
		return bad("norm_eps", "must be positive, got %g", c.NormEps)
	}
	if c.NormNumGroups == nil || *c.NormNumGroups <= 0 {
		return bad("norm_num_groups", "must be a positive number of groups (null is not supported)")
	}
	groups := *c.NormNumGroups
	for i, ch := range c.BlockOutChannels {
		if ch <= 0 {
			return bad(fmt.Sprintf("block_out_channels[%d]", i), "must be positive, got %d", ch)
		}
		if ch%groups != 0 {
			return bad("norm_num_groups", "%d groups do not divide block_out_channels[%d] = %d", groups, i, ch)
		}
		if h := c.headDim(ch); ch%h != 0 {
			return bad("attention_head_dim", "%d does not divide block_out_channels[%d] = %d", h, i, ch)
		}
	}
	if ag := c.AttnNormNumGroups; ag != nil && c.BlockOutChannels[n-1]%*ag != 0 {
		return bad("attn_norm_num_groups", "%d groups do not divide %d channels", *ag, c.BlockOutChannels[n-1])
	}
	if c.SampleSize != nil && (c.SampleSize[0] <= 0 || c.SampleSize[1] <= 0) {
		return bad("sample_size", "must be positive, got %v", c.SampleSize)
	}
	return nil
}

// midAttnGroups is the GroupNorm group count of the mid block's attention, 0 for none:
// attn_norm_num_groups, or when null the resnets' groups if resnet_time_scale_shift is "default"
// (UNetMidBlock2D's rule).
func (c Config) midAttnGroups() int {
	if c.AttnNormNumGroups != nil {
		return *c.AttnNormNumGroups
	}
	if c.ResnetTimeScaleShift == "default" {
		return *c.NormNumGroups
	}
	return 0
}

func (c Config) headDim(channels int) int {
	if c.AttentionHeadDim == nil {
		return channels
	}
	return *c.AttentionHeadDim
}

func (c Config) timeEmbedDim() int {
	if c.TimeEmbeddingDim != nil {
		return *c.TimeEmbeddingDim
	}
	return c.BlockOutChannels[0] * 4
}

// Levels is the number of resolutions; the input's height and width must be divisible by
// 2^(Levels-1).
func (c Config) Levels() int { return len(c.BlockOutChannels) }

func (c Config) hasAttention(blockType string) bool {
	return strings.HasPrefix(blockType, "Attn")
}

// ClassEmbedding is how a UNet2DModel takes class labels (diffusers' class_embed_type and
// num_class_embeds).
type ClassEmbedding int

const (
	// NoClasses: no class embedding; the model is unconditional (class_embed_type and num_class_embeds null).
	NoClasses ClassEmbedding = iota
	// Learned: class_embed_type null with num_class_embeds: a table [num_class_embeds, E],
	// class_embedding.weight, whose row y is added to the time embedding.
	Learned
	// Timestep: class_embed_type "timestep": the label goes through the same sinusoidal projection as t
	// and its own TimestepEmbedding (class_embedding.linear_1, linear_2).
	Timestep
	// Identity: class_embed_type "identity": the caller passes the embedding itself, float [N, E].
	Identity
)

func (k ClassEmbedding) String() string {
	return [...]string{"none", "learned (num_class_embeds)", "timestep", "identity"}[k]
}

// ClassEmbedding says how the config takes class labels. As in diffusers, class_embed_type wins over
// num_class_embeds.
func (c Config) ClassEmbedding() ClassEmbedding {
	switch {
	case c.ClassEmbedType != nil && *c.ClassEmbedType == "timestep":
		return Timestep
	case c.ClassEmbedType != nil && *c.ClassEmbedType == "identity":
		return Identity
	case c.NumClassEmbeds != nil:
		return Learned
	}
	return NoClasses
}

// NullLabel is the label of the unconditional (null) class of classifier-free guidance:
// num_class_embeds - 1 (a model of 10 classes trained with label dropout has num_class_embeds 11).
// ok is false when the config does not say (no num_class_embeds: "timestep" models, say); the caller
// must then be told the null label.
func (c Config) NullLabel() (label int, ok bool) {
	k := c.ClassEmbedding()
	if (k != Learned && k != Timestep) || c.NumClassEmbeds == nil || *c.NumClassEmbeds < 2 {
		return 0, false
	}
	return *c.NumClassEmbeds - 1, true
}

// CheckLabels reports whether the model takes integer class labels, with an error that says what to
// do when it does not.
func (c Config) CheckLabels() error {
	switch c.ClassEmbedding() {
	case NoClasses:
		return fmt.Errorf("unet: this model is unconditional (config.json has no num_class_embeds or class_embed_type): it takes no class labels; train one with `ddpm train --classes`")
	case Identity:
		return fmt.Errorf("unet: this model has class_embed_type \"identity\": it takes embedding vectors [N, %d], not class labels", c.timeEmbedDim())
	}
	return nil
}

// Conditional returns c with a learned class embedding (class_embed_type null, num_class_embeds) for
// `classes` classes and the null class of classifier-free guidance after them: num_class_embeds =
// classes + 1, null label = classes.
func (c Config) Conditional(classes int) (Config, error) {
	if classes < 1 {
		return c, fmt.Errorf("unet: %d classes: want at least 1", classes)
	}
	c.ClassEmbedType = nil
	c.NumClassEmbeds = ptr(classes + 1)
	return c, c.Validate()
}

// GuidanceNull returns the null label for classifier-free guidance, override when >= 0 (ddpm sample
// --null-label), else NullLabel, and an error when the model takes no labels or the label is unknown.
func (c Config) GuidanceNull(override int) (int, error) {
	if err := c.CheckLabels(); err != nil {
		return 0, err
	}
	if override >= 0 {
		if c.ClassEmbedding() == Learned && override >= *c.NumClassEmbeds {
			return 0, fmt.Errorf("unet: null label %d is outside the %d class embeddings (num_class_embeds)", override, *c.NumClassEmbeds)
		}
		return override, nil
	}
	if null, ok := c.NullLabel(); ok {
		return null, nil
	}
	return 0, fmt.Errorf("unet: this model (class_embed_type %q) does not say which label is the null class: give it (--null-label N)", c.ClassEmbedding())
}
