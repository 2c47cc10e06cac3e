// Package unet is diffusers' UNet2DModel in GoMLX: the same architecture, built from the same
// config.json, with the same parameter names, so that a diffusers checkpoint is ours and ours is one.
//
// The network (Ho et al. 2020, arXiv:2006.11239v2, Appendix B; diffusers' unet_2d.py):
//
//	emb  = linear_2(silu(linear_1(sinusoidal(t))))            (+ the class embedding of y, see classEmbedding)
//	h    = conv_in(x)
//	down: per level, layers_per_block x [ResnetBlock2D(h, emb), Attention if Attn*], then a stride-2 conv
//	mid:  ResnetBlock2D, Attention, ResnetBlock2D
//	up:   per level, layers_per_block+1 x [concat(h, skip), ResnetBlock2D, Attention if Attn*], then
//	      nearest x2 upsample + conv
//	out  = conv_out(silu(conv_norm_out(h)))
//
// ResnetBlock2D: h = conv1(silu(norm1(x))) + time_emb_proj(silu(emb)); h = conv2(silu(norm2(h)));
// out = (shortcut(x) + h) / output_scale_factor. Attention: single- or multi-head self-attention over
// the H*W positions of group_norm(x), with a residual connection.
package unet

import (
	"fmt"
	"math"
	"strconv"

	"github.com/ddpm/ddpm/nn"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// Model is a UNet2DModel of a given config: its weight specs and its forward pass.
type Model struct {
	Config Config
	specs  []nn.Spec
	// Conv chooses the convolution implementation (tests compare them); zero value: nn.ConvAuto.
	Conv nn.ConvImpl
}

// New validates c and lays out the model's weights.
func New(c Config) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Config: c}
	m.specs = m.layout()
	return m, nil
}

// Specs lists the weights in state-dict order, with diffusers' names.
func (m *Model) Specs() []nn.Spec { return m.specs }

func itoa(i int) string { return strconv.Itoa(i) }

// level describes one resolution of the down or up path.
type level struct {
	in, out, prev int // channels: block input, block output, (up only) previous block's output
	attn          bool
	final         bool // no down/up-sampling after it
}

func (m *Model) downLevels() []level {
	c := m.Config
	out := c.BlockOutChannels[0]
	var lv []level
	for i, t := range c.DownBlockTypes {
		in := out
		out = c.BlockOutChannels[i]
		lv = append(lv, level{in: in, out: out, attn: c.hasAttention(t), final: i == len(c.DownBlockTypes)-1})
	}
	return lv
}

func (m *Model) upLevels() []level {
	c := m.Config
	n := len(c.BlockOutChannels)
	rev := make([]int, n)
	for i := range rev {
		rev[i] = c.BlockOutChannels[n-1-i]
	}
	out := rev[0]
	var lv []level
	for i, t := range c.UpBlockTypes {
		prev := out
		out = rev[i]
		lv = append(lv, level{in: rev[min(i+1, n-1)], out: out, prev: prev, attn: c.hasAttention(t), final: i == n-1})
	}
	return lv
}

// upResnetChannels gives the input and skip channels of resnet j of an up level.
func (m *Model) upResnetChannels(l level, j int) (in, skip int) {
	skip = l.out
	if j == m.Config.LayersPerBlock {
		skip = l.in
	}
	in = l.out
	if j == 0 {
		in = l.prev
	}
	return in, skip
}

func (m *Model) layout() []nn.Spec {
	c := m.Config
	l := nn.NewSpecList()
	c0, e := c.BlockOutChannels[0], c.timeEmbedDim()
	l.Conv("conv_in", c.InChannels, c0, 3)
	te := l.Sub("time_embedding")
	te.Linear("linear_1", c0, e)
	te.Linear("linear_2", e, e)
	switch c.ClassEmbedding() {
	case Learned:
		l.Add("class_embedding.weight", nn.Normal, 0, *c.NumClassEmbeds, e)
	case Timestep:
		ce := l.Sub("class_embedding")
		ce.Linear("linear_1", c0, e)
		ce.Linear("linear_2", e, e)
	}
	groups := *c.NormNumGroups
	for i, lv := range m.downLevels() {
		b := l.Sub("down_blocks", itoa(i))
		for j := 0; j < c.LayersPerBlock; j++ {
			in := lv.out
			if j == 0 {
				in = lv.in
			}
			m.resnetSpecs(b.Sub("resnets", itoa(j)), in, lv.out)
			if lv.attn {
				attnSpecs(b.Sub("attentions", itoa(j)), lv.out, groups)
			}
		}
		if !lv.final {
			b.Sub("downsamplers", "0").Conv("conv", lv.out, lv.out, 3)
		}
	}
	for i, lv := range m.upLevels() {
		b := l.Sub("up_blocks", itoa(i))
		for j := 0; j <= c.LayersPerBlock; j++ {
			in, skip := m.upResnetChannels(lv, j)
			m.resnetSpecs(b.Sub("resnets", itoa(j)), in+skip, lv.out)
			if lv.attn {
				attnSpecs(b.Sub("attentions", itoa(j)), lv.out, groups)
			}
		}
		if !lv.final {
			b.Sub("upsamplers", "0").Conv("conv", lv.out, lv.out, 3)
		}
	}
	if c.MidBlockType != nil {
		last := c.BlockOutChannels[len(c.BlockOutChannels)-1]
		mb := l.Sub("mid_block")
		m.resnetSpecs(mb.Sub("resnets", "0"), last, last)
		if c.AddAttention {
			attnSpecs(mb.Sub("attentions", "0"), last, c.midAttnGroups())
		}
		m.resnetSpecs(mb.Sub("resnets", "1"), last, last)
	}
	l.Norm("conv_norm_out", c0)
	l.Conv("conv_out", c0, c.OutChannels, 3)
	return l.Specs()
}

func (m *Model) resnetSpecs(l nn.SpecList, in, out int) {
	l.Norm("norm1", in)
	l.Conv("conv1", in, out, 3)
	proj := out
	if m.Config.ResnetTimeScaleShift == "scale_shift" {
		proj = 2 * out
	}
	l.Linear("time_emb_proj", m.Config.timeEmbedDim(), proj)
	l.Norm("norm2", out)
	l.Conv("conv2", out, out, 3)
	if in != out {
		l.Conv("conv_shortcut", in, out, 1)
	}
}

func attnSpecs(l nn.SpecList, c, groups int) {
	if groups > 0 {
		l.Norm("group_norm", c)
	}
	l.Linear("to_q", c, c)
	l.Linear("to_k", c, c)
	l.Linear("to_v", c, c)
	l.Linear("to_out.0", c, c)
}

// Forward computes the model output for x [N, in_channels, H, W] at timesteps t ([N] or a scalar;
// integer or float), with class labels y (nil for an unconditional model; int [N] for num_class_embeds
// or class_embed_type "timestep", float [N, E] for "identity"). Weights come from
// w, named as Specs. H and W must be divisible by 2^(levels-1).
func (m *Model) Forward(w nn.Scope, x, t, y *graph.Node) *graph.Node {
	c := m.Config
	n := x.Shape().Dimensions[0]
	if d := x.Shape().Dimensions; len(d) != 4 || d[1] != c.InChannels {
		panic(fmt.Errorf("unet: input shape %v, want [N, %d, H, W]", d, c.InChannels))
	}
	if c.CenterInputSample {
		x = graph.AddScalar(graph.MulScalar(x, 2), -1)
	}
	if t.IsScalar() {
		t = graph.BroadcastToDims(t, n)
	}
	c0 := c.BlockOutChannels[0]
	emb := nn.TimestepEmbedding(t, c0, c.FlipSinToCos, c.FreqShift)
	if dt := x.DType(); emb.DType() != dt {
		emb = graph.ConvertDType(emb, dt) // mixed precision: x and the weights in bfloat16
	}
	te := w.Sub("time_embedding")
	emb = nn.Linear(emb, te.Get("linear_1.weight"), te.Get("linear_1.bias"))
	emb = nn.Linear(nn.SiLU(emb), te.Get("linear_2.weight"), te.Get("linear_2.bias"))
	if y != nil || c.ClassEmbedding() != NoClasses {
		emb = graph.Add(emb, m.classEmbedding(w, y, emb.DType()))
	}

	h := m.conv(w, "conv_in", x, 1, pad1)
	skips := []*graph.Node{h}
	groups := *c.NormNumGroups
	for i, lv := range m.downLevels() {
		b := w.Sub("down_blocks", itoa(i))
		for j := 0; j < c.LayersPerBlock; j++ {
			h = m.resnet(b.Sub("resnets", itoa(j)), h, emb, 1)
			if lv.attn {
				h = m.attention(b.Sub("attentions", itoa(j)), h, groups, 1)
			}
			skips = append(skips, h)
		}
		if !lv.final {
			pad := [4]int{0, 1, 0, 1} // diffusers' downsample_padding 0: pad right and bottom only
			if p := c.DownsamplePadding; p > 0 {
				pad = [4]int{p, p, p, p}
			}
			h = m.conv(b.Sub("downsamplers", "0"), "conv", h, 2, pad)
			skips = append(skips, h)
		}
	}
	if c.MidBlockType != nil {
		mb := w.Sub("mid_block")
		s := c.MidBlockScaleFactor
		h = m.resnet(mb.Sub("resnets", "0"), h, emb, s)
		if c.AddAttention {
			h = m.attention(mb.Sub("attentions", "0"), h, c.midAttnGroups(), s)
		}
		h = m.resnet(mb.Sub("resnets", "1"), h, emb, s)
	}
	for i, lv := range m.upLevels() {
		b := w.Sub("up_blocks", itoa(i))
		for j := 0; j <= c.LayersPerBlock; j++ {
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			h = graph.Concatenate([]*graph.Node{h, skip}, 1)
			h = m.resnet(b.Sub("resnets", itoa(j)), h, emb, 1)
			if lv.attn {
				h = m.attention(b.Sub("attentions", itoa(j)), h, groups, 1)
			}
		}
		if !lv.final {
			h = m.conv(b.Sub("upsamplers", "0"), "conv", nn.UpsampleNearest2x(h), 1, pad1)
		}
	}
	h = nn.SiLU(nn.GroupNorm(h, w.Get("conv_norm_out.weight"), w.Get("conv_norm_out.bias"), groups, c.NormEps))
	return m.conv(w, "conv_out", h, 1, pad1)
}

var pad1 = [4]int{1, 1, 1, 1}

// classEmbedding is the class term added to the time embedding (diffusers' UNet2DModel.forward):
//
//	Learned:  class_embedding.weight[y]                                y int [N]
//	Timestep: linear_2(silu(linear_1(sinusoidal(y))))                  y int [N], as t
//	Identity: y                                                        y float [N, E]
func (m *Model) classEmbedding(w nn.Scope, y *graph.Node, dt dtypes.DType) *graph.Node {
	c := m.Config
	kind := c.ClassEmbedding()
	if y == nil {
		panic(fmt.Errorf("unet: this model has a class embedding (%s) and needs class labels", kind))
	}
	var e *graph.Node
	switch kind {
	case NoClasses:
		panic(fmt.Errorf("unet: class labels given, but this model has no class embedding (config.json has no num_class_embeds or class_embed_type)"))
	case Learned:
		e = nn.Embedding(w.Get("class_embedding.weight"), y)
	case Timestep:
		e = nn.TimestepEmbedding(y, c.BlockOutChannels[0], c.FlipSinToCos, c.FreqShift)
		if e.DType() != dt {
			e = graph.ConvertDType(e, dt)
		}
		ce := w.Sub("class_embedding")
		e = nn.Linear(e, ce.Get("linear_1.weight"), ce.Get("linear_1.bias"))
		e = nn.Linear(nn.SiLU(e), ce.Get("linear_2.weight"), ce.Get("linear_2.bias"))
	case Identity:
		if d := y.Shape().Dimensions; len(d) != 2 || d[1] != c.timeEmbedDim() {
			panic(fmt.Errorf("unet: class_embed_type identity takes class embeddings [N, %d], got shape %v", c.timeEmbedDim(), d))
		}
		e = y
	}
	if e.DType() != dt {
		e = graph.ConvertDType(e, dt)
	}
	return e
}

func (m *Model) conv(w nn.Scope, name string, x *graph.Node, stride int, pad [4]int) *graph.Node {
	return nn.Conv2D(x, w.Get(name+".weight"), w.Get(name+".bias"), stride, pad, m.Conv)
}

func (m *Model) norm(w nn.Scope, name string, x *graph.Node, groups int) *graph.Node {
	return nn.GroupNorm(x, w.Get(name+".weight"), w.Get(name+".bias"), groups, m.Config.NormEps)
}

// resnet is diffusers' ResnetBlock2D with output_scale_factor s.
func (m *Model) resnet(w nn.Scope, x, emb *graph.Node, s float64) *graph.Node {
	groups := *m.Config.NormNumGroups
	h := m.conv(w, "conv1", nn.SiLU(m.norm(w, "norm1", x, groups)), 1, pad1)
	temb := nn.Linear(nn.SiLU(emb), w.Get("time_emb_proj.weight"), w.Get("time_emb_proj.bias"))
	out := h.Shape().Dimensions[1]
	if m.Config.ResnetTimeScaleShift == "scale_shift" {
		n := temb.Shape().Dimensions[0]
		parts := nn.Chunk(temb, 1, 2)
		scale := graph.Reshape(parts[0], n, out, 1, 1)
		shift := graph.Reshape(parts[1], n, out, 1, 1)
		h = m.norm(w, "norm2", h, groups)
		h = graph.Add(graph.Mul(h, graph.OnePlus(scale)), shift)
	} else {
		h = graph.Add(h, graph.Reshape(temb, temb.Shape().Dimensions[0], out, 1, 1))
		h = m.norm(w, "norm2", h, groups)
	}
	h = m.conv(w, "conv2", nn.SiLU(h), 1, pad1)
	if w.Has("conv_shortcut.weight") {
		x = m.conv(w, "conv_shortcut", x, 1, [4]int{})
	}
	out2 := graph.Add(x, h)
	if s != 1 {
		out2 = graph.DivScalar(out2, s)
	}
	return out2
}

// attention is diffusers' Attention over the H*W positions (AttnProcessor), with a residual
// connection and rescale_output_factor s:
//
//	out = (x + to_out(softmax(q k^T / sqrt(d)) v)) / s,   q, k, v = to_q/k/v(group_norm(x)) per head
func (m *Model) attention(w nn.Scope, x *graph.Node, groups int, s float64) *graph.Node {
	d := x.Shape().Dimensions
	n, c, hgt, wid := d[0], d[1], d[2], d[3]
	l := hgt * wid
	headDim := m.Config.headDim(c)
	heads := c / headDim
	h := x
	if groups > 0 {
		h = m.norm(w, "group_norm", x, groups)
	}
	h = graph.TransposeAllAxes(graph.Reshape(h, n, c, l), 0, 2, 1) // [N, L, C]
	split := func(name string) *graph.Node {
		p := nn.Linear(h, w.Get(name+".weight"), w.Get(name+".bias"))
		return graph.TransposeAllAxes(graph.Reshape(p, n, l, heads, headDim), 0, 2, 1, 3) // [N, heads, L, d]
	}
	q, k, v := split("to_q"), split("to_k"), split("to_v")
	scores := nn.MatMul(q, graph.TransposeAllAxes(k, 0, 1, 3, 2))
	scores = graph.MulScalar(scores, 1/math.Sqrt(float64(headDim)))
	probs := nn.Softmax(scores)
	o := nn.MatMul(probs, v) // [N, heads, L, d]
	o = graph.Reshape(graph.TransposeAllAxes(o, 0, 2, 1, 3), n, l, c)
	o = nn.Linear(o, w.Get("to_out.0.weight"), w.Get("to_out.0.bias"))
	o = graph.Reshape(graph.TransposeAllAxes(o, 0, 2, 1), n, c, hgt, wid)
	out := graph.Add(o, x)
	if s != 1 {
		out = graph.DivScalar(out, s)
	}
	return out
}
