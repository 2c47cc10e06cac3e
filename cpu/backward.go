package cpu

/*
#include <stdlib.h>
#include <string.h>
#include "dnnl.h"
#include "backward.h"
#include "ops.h"
*/
import "C"

import (
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/unet"
)

// Grad is the UNet's training pass on the engine, llm.c style: a forward pass that keeps every
// activation the backward pass needs, then the backward pass layer by layer in reverse, writing the
// gradient of every weight into one flat vector in unet.Model.Specs order (the layout of the weights
// and of train.State). Activations are NHWC; every layer is a pair of closures (forward, backward)
// recorded in order when the plan is built for a batch shape.
//
// A tensor used by several layers (a skip connection, a residual input, the time embedding) gets its
// gradient summed: the first layer to reach it in the backward pass writes it, later ones add.
//
// A Grad is not safe for concurrent use; its methods run on the engine thread.
type Grad struct {
	Config unet.Config
	specs  []nn.Spec
	offset map[string]int
	shapes map[string][]int
	total  int

	w, g cbuf // the weights and their gradient, flat [total]

	n, h, wd    int
	steps       []gradStep
	acts        []*act
	packs       []packOp
	ops         []*C.ddpm_op
	bufs        []cbuf
	scratch     [2]cbuf // gradients that must be added to a tensor's
	scratchN    int
	normScratch cbuf // the group norms' per-sample partial sums [2, N, C]
	maxC        int

	// Profile, when not nil, accumulates the time of each layer's forward ("name") and backward
	// ("name bwd").
	Profile map[string]time.Duration

	x, tf  *act // the input [N,H,W,Cin] and the timesteps as float32 [N]
	out    *act // the model output [N,H,W,Cout]
	labels []int32
}

// gradStep is one layer: its forward and backward halves.
type gradStep struct {
	name     string
	fwd, bwd func() error
}

// act is an activation [rows, c] (rows = N*H*W for images) and, when needed, its gradient.
type act struct {
	x, g    cbuf
	rows, c int
	grad    bool // whether the backward pass computes its gradient
	written bool // in the current backward pass
}

type packOp struct {
	op *C.ddpm_op
	w  string // the weight to pack
}

// cbuf is float32 memory allocated in C (oneDNN keeps no Go pointers).
type cbuf struct {
	p *C.float
	n int
}

func (b cbuf) s() []float32 {
	if b.p == nil {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(b.p)), b.n)
}

func (b cbuf) at(off int) unsafe.Pointer { return unsafe.Add(unsafe.Pointer(b.p), 4*off) }

func newCBuf(n int) cbuf {
	size := C.size_t((max(n, 1)*4 + 63) / 64 * 64)
	p := C.aligned_alloc(64, size)
	if p == nil {
		panic(fmt.Errorf("cpu: out of memory for %d floats", n))
	}
	C.memset(p, 0, size)
	return cbuf{(*C.float)(p), n}
}

// SupportsTraining reports whether Grad computes the gradient of c's network (nil) or why not.
func SupportsTraining(c unet.Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	switch {
	case c.ClassEmbedType != nil:
		return fmt.Errorf("cpu: class_embed_type %q: the CPU engine trains only class_embed_type null", *c.ClassEmbedType)
	case c.ResnetTimeScaleShift == "scale_shift":
		return fmt.Errorf("cpu: resnet_time_scale_shift scale_shift: the CPU engine trains only \"default\"")
	}
	return nil
}

// NewGrad makes the training pass of c's network. It fails when oneDNN is missing (Available) or the
// config is not supported (SupportsTraining).
func NewGrad(c unet.Config) (*Grad, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if err := SupportsTraining(c); err != nil {
		return nil, err
	}
	m, err := unet.New(c)
	if err != nil {
		return nil, err
	}
	g := &Grad{Config: c, specs: m.Specs(), offset: map[string]int{}, shapes: map[string][]int{}}
	offsets, total := nn.Offsets(g.specs)
	for i, s := range g.specs {
		g.offset[s.Name] = offsets[i]
		g.shapes[s.Name] = s.Shape
	}
	g.total = total
	g.w, g.g = newCBuf(total), newCBuf(total)
	return g, nil
}

// Params is the length of the flat weight vector.
func (g *Grad) Params() int { return g.total }

// Weights is the engine's flat weight vector (C memory): write it, then call Pack.
func (g *Grad) Weights() []float32 { return g.w.s() }

// Gradient is the flat gradient of the last Backward, in the order of Weights.
func (g *Grad) Gradient() []float32 { return g.g.s() }

// SetWeights copies flat into the engine's weights and packs them.
func (g *Grad) SetWeights(flat []float32) error {
	if len(flat) != g.total {
		return fmt.Errorf("cpu: %d weights, want %d for this config", len(flat), g.total)
	}
	copy(g.w.s(), flat)
	return g.Pack()
}

// Pack copies the weights into the layouts of the oneDNN primitives that keep their own copy; call it
// after every change of Weights.
func (g *Grad) Pack() error {
	var err error
	do(func() {
		var buf [256]C.char
		for _, p := range g.packs {
			if C.ddpm_op_pack(p.op, (*C.float)(g.w.at(g.offset[p.w])), &buf[0], C.size_t(len(buf))) != 0 {
				err = fmt.Errorf("cpu: packing %s: %s", p.w, C.GoString(&buf[0]))
				return
			}
		}
	})
	return err
}

// Forward runs the training forward pass on x [N, in_channels, H, W] (NCHW) at timesteps t [N] with
// labels y ([N], nil unless num_class_embeds), keeping the activations, and returns the output NCHW.
func (g *Grad) Forward(x []float32, n, h, w int, t, y []int32) ([]float32, error) {
	c := g.Config
	if len(x) != n*c.InChannels*h*w || len(t) != n {
		return nil, fmt.Errorf("cpu: input of %d values and %d timesteps for [%d, %d, %d, %d]", len(x), len(t), n, c.InChannels, h, w)
	}
	if c.NumClassEmbeds != nil && len(y) != n {
		return nil, fmt.Errorf("cpu: this model has num_class_embeds = %d and needs %d class labels, got %d", *c.NumClassEmbeds, n, len(y))
	}
	if f := 1 << (c.Levels() - 1); h%f != 0 || w%f != 0 {
		return nil, fmt.Errorf("cpu: input %dx%d: height and width must be divisible by %d", h, w, f)
	}
	var err error
	out := make([]float32, n*c.OutChannels*h*w)
	do(func() {
		if g.n != n || g.h != h || g.wd != w {
			g.free()
			if err = g.build(n, h, w); err != nil {
				return
			}
			// The new ops need the weights packed.
			var buf [256]C.char
			for _, p := range g.packs {
				if C.ddpm_op_pack(p.op, (*C.float)(g.w.at(g.offset[p.w])), &buf[0], C.size_t(len(buf))) != 0 {
					err = fmt.Errorf("cpu: packing %s: %s", p.w, C.GoString(&buf[0]))
					return
				}
			}
		}
		toNHWC(g.x.x.s(), x, n, c.InChannels, h*w)
		if c.CenterInputSample {
			xs := g.x.x.s()
			for i := range xs {
				xs[i] = xs[i]*2 - 1
			}
		}
		tf := g.tf.x.s()
		for i, v := range t {
			tf[i] = float32(v)
		}
		g.labels = y
		for _, s := range g.steps {
			t0 := time.Now()
			err = s.fwd()
			if g.Profile != nil {
				g.Profile[s.name] += time.Since(t0)
			}
			if err != nil {
				err = fmt.Errorf("cpu: %s: %w", s.name, err)
				return
			}
		}
		toNCHW(out, g.out.x.s(), n, c.OutChannels, h*w)
	})
	return out, err
}

// Backward computes the gradient of the weights (Gradient) for the gradient dout [N, out_channels, H, W]
// (NCHW) of the last Forward's output.
func (g *Grad) Backward(dout []float32) error {
	if g.out == nil || len(dout) != g.out.rows*g.out.c {
		return fmt.Errorf("cpu: Backward needs a Forward first and the output's shape")
	}
	var err error
	do(func() {
		toNHWC(g.out.g.s(), dout, g.n, g.out.c, g.h*g.wd)
		err = g.backward()
	})
	return err
}

// LossGrad runs the forward pass, the loss mean((out - target)^2) against target (NCHW, like x) and the
// backward pass; the gradient is in Gradient.
func (g *Grad) LossGrad(x, target []float32, n, h, w int, t, y []int32) (float64, error) {
	out, err := g.Forward(x, n, h, w, t, y)
	if err != nil {
		return 0, err
	}
	if len(target) != len(out) {
		return 0, fmt.Errorf("cpu: target has %d values, want %d", len(target), len(out))
	}
	var loss float64
	do(func() {
		// The loss and its gradient in NHWC: the mean does not depend on the order.
		tg := g.scratch[0].s()[:len(target)]
		toNHWC(tg, target, n, g.out.c, h*w)
		loss = MSE(g.out.g.s(), g.out.x.s(), tg)
		err = g.backward()
	})
	return loss, err
}

func (g *Grad) backward() error {
	for _, a := range g.acts {
		a.written = false
	}
	g.out.written = true
	for i := len(g.steps) - 1; i >= 0; i-- {
		s := g.steps[i]
		if s.bwd == nil {
			continue
		}
		t0 := time.Now()
		err := s.bwd()
		if g.Profile != nil {
			g.Profile[s.name+" bwd"] += time.Since(t0)
		}
		if err != nil {
			return fmt.Errorf("cpu: %s backward: %w", s.name, err)
		}
	}
	return nil
}

// Close frees the engine memory of g.
func (g *Grad) Close() {
	do(func() {
		g.free()
		C.free(unsafe.Pointer(g.w.p))
		C.free(unsafe.Pointer(g.g.p))
		g.w, g.g = cbuf{}, cbuf{}
	})
}

func (g *Grad) free() {
	for _, op := range g.ops {
		C.ddpm_op_free(op)
		C.free(unsafe.Pointer(op))
	}
	for _, b := range g.bufs {
		C.free(unsafe.Pointer(b.p))
	}
	for _, a := range g.acts {
		C.free(unsafe.Pointer(a.x.p))
		if a.g.p != nil {
			C.free(unsafe.Pointer(a.g.p))
		}
	}
	for _, s := range append(g.scratch[:], g.normScratch) {
		C.free(unsafe.Pointer(s.p))
	}
	g.ops, g.bufs, g.acts, g.packs, g.steps = nil, nil, nil, nil, nil
	g.scratch, g.normScratch = [2]cbuf{}, cbuf{}
	g.n, g.h, g.wd = 0, 0, 0
}

// toNHWC writes x [N,C,HW] as [N,HW,C]; toNCHW the reverse.
func toNHWC(dst, x []float32, n, c, hw int) {
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			src := x[(i*c+ch)*hw : (i*c+ch+1)*hw]
			for p, v := range src {
				dst[(i*hw+p)*c+ch] = v
			}
		}
	}
}

func toNCHW(dst, x []float32, n, c, hw int) {
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			d := dst[(i*c+ch)*hw : (i*c+ch+1)*hw]
			for p := range d {
				d[p] = x[(i*hw+p)*c+ch]
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Building the plan: the same walk as unet.Model.Forward.

func (g *Grad) newAct(rows, c int, grad bool) *act {
	a := &act{x: newCBuf(rows * c), rows: rows, c: c, grad: grad}
	if grad {
		a.g = newCBuf(rows * c)
	}
	g.acts = append(g.acts, a)
	g.scratchN = max(g.scratchN, rows*c)
	g.maxC = max(g.maxC, c)
	return a
}

func (g *Grad) buf(n int) cbuf {
	b := newCBuf(n)
	g.bufs = append(g.bufs, b)
	return b
}

func (g *Grad) add(name string, fwd, bwd func() error) {
	g.steps = append(g.steps, gradStep{name, fwd, bwd})
}

// gradInto returns where to write the gradient of a: its own buffer if nothing was written there in this
// backward pass, else a scratch buffer that the caller adds with done.
func (g *Grad) gradInto(a *act, k int) (dst []float32, done func()) {
	if !a.written {
		a.written = true
		return a.g.s(), func() {}
	}
	s := g.scratch[k].s()[:a.rows*a.c]
	return s, func() { AddForward(a.g.s(), a.g.s(), s, 1) }
}

func (g *Grad) wt(name string) []float32 {
	off, ok := g.offset[name]
	if !ok {
		panic(fmt.Errorf("cpu: no weight %q", name))
	}
	sz := 1
	for _, d := range g.shapes[name] {
		sz *= d
	}
	return g.w.s()[off : off+sz]
}

func (g *Grad) gr(name string) []float32 {
	off := g.offset[name]
	sz := 1
	for _, d := range g.shapes[name] {
		sz *= d
	}
	return g.g.s()[off : off+sz]
}

func (g *Grad) has(name string) bool { _, ok := g.offset[name]; return ok }

func (g *Grad) newOp() *C.ddpm_op {
	op := (*C.ddpm_op)(C.calloc(1, C.size_t(unsafe.Sizeof(C.ddpm_op{}))))
	g.ops = append(g.ops, op)
	return op
}

func runOp(op *C.ddpm_op, ptrs ...unsafe.Pointer) error {
	var buf [256]C.char
	p := (*[8]unsafe.Pointer)(C.malloc(C.size_t(8 * 8)))
	defer C.free(unsafe.Pointer(p))
	copy(p[:], ptrs)
	if C.ddpm_op_run(op, &p[0], &buf[0], C.size_t(len(buf))) != 0 {
		return fmt.Errorf("%s", C.GoString(&buf[0]))
	}
	return nil
}

func sp(s []float32) unsafe.Pointer { return unsafe.Pointer(&s[0]) }

func (g *Grad) build(n, h, w int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cpu: building the training plan: %v", r)
		}
	}()
	g.n, g.h, g.wd = n, h, w
	c := g.Config
	g.scratchN, g.maxC = 0, 0
	g.x = g.newAct(n*h*w, c.InChannels, false)
	g.tf = g.newAct(n, 1, false)

	// Time embedding.
	c0 := c.BlockOutChannels[0]
	e0 := g.newAct(n, c0, false)
	freqs := nn.TimestepFrequencies(c0, c.FreqShift)
	g.add("time_proj", func() error {
		TimestepEmbedding(e0.x.s(), g.tf.x.s(), freqs, c0, c.FlipSinToCos)
		return nil
	}, nil)
	emb := g.linear("time_embedding.linear_1", e0)
	emb = g.silu("time_embedding.act", emb)
	emb = g.linear("time_embedding.linear_2", emb)
	if c.NumClassEmbeds != nil {
		emb = g.classEmbedding(emb)
	}
	semb := g.silu("resnets.silu(emb)", emb) // every resnet's time_emb_proj input

	hh, ww := h, w
	x := g.conv("conv_in", g.x, hh, ww, 1, [4]int{1, 1, 1, 1})
	skips := []*act{x}
	groups := *c.NormNumGroups
	for i := range c.DownBlockTypes {
		b := fmt.Sprintf("down_blocks.%d.", i)
		for j := 0; j < c.LayersPerBlock; j++ {
			x = g.resnet(fmt.Sprintf("%sresnets.%d.", b, j), x, semb, hh, ww, 1)
			if a := fmt.Sprintf("%sattentions.%d.", b, j); g.has(a + "to_q.weight") {
				x = g.attention(a, x, hh, ww, groups, 1)
			}
			skips = append(skips, x)
		}
		if name := b + "downsamplers.0.conv"; g.has(name + ".weight") {
			pad := [4]int{0, 1, 0, 1}
			if p := c.DownsamplePadding; p > 0 {
				pad = [4]int{p, p, p, p}
			}
			x = g.conv(name, x, hh, ww, 2, pad)
			hh, ww = (hh+pad[0]+pad[1]-3)/2+1, (ww+pad[2]+pad[3]-3)/2+1
			skips = append(skips, x)
		}
	}
	if c.MidBlockType != nil {
		s := c.MidBlockScaleFactor
		x = g.resnet("mid_block.resnets.0.", x, semb, hh, ww, s)
		if g.has("mid_block.attentions.0.to_q.weight") {
			x = g.attention("mid_block.attentions.0.", x, hh, ww, midAttnGroups(c), s)
		}
		x = g.resnet("mid_block.resnets.1.", x, semb, hh, ww, s)
	}
	for i := range c.UpBlockTypes {
		b := fmt.Sprintf("up_blocks.%d.", i)
		for j := 0; j <= c.LayersPerBlock; j++ {
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			x = g.concat(fmt.Sprintf("%sconcat.%d", b, j), x, skip)
			x = g.resnet(fmt.Sprintf("%sresnets.%d.", b, j), x, semb, hh, ww, 1)
			if a := fmt.Sprintf("%sattentions.%d.", b, j); g.has(a + "to_q.weight") {
				x = g.attention(a, x, hh, ww, groups, 1)
			}
		}
		if name := b + "upsamplers.0.conv"; g.has(name + ".weight") {
			x = g.upsample(b+"upsamplers.0", x, hh, ww)
			hh, ww = 2*hh, 2*ww
			x = g.conv(name, x, hh, ww, 1, [4]int{1, 1, 1, 1})
		}
	}
	x = g.groupNorm("conv_norm_out", x, nil, hh*ww, groups, true)
	g.out = g.conv("conv_out", x, hh, ww, 1, [4]int{1, 1, 1, 1})
	for k := range g.scratch {
		g.scratch[k] = newCBuf(g.scratchN)
	}
	g.normScratch = newCBuf(2 * n * g.maxC)
	return nil
}

func midAttnGroups(c unet.Config) int {
	if c.AttnNormNumGroups != nil {
		return *c.AttnNormNumGroups
	}
	if c.ResnetTimeScaleShift == "default" {
		return *c.NormNumGroups
	}
	return 0
}

// resnet is ResnetBlock2D (see unet.Model.resnet): x [N,h,w,Cin] -> [N,h,w,Cout].
func (g *Grad) resnet(p string, x, semb *act, h, w int, s float64) *act {
	groups := *g.Config.NormNumGroups
	a1 := g.groupNorm(p+"norm1", x, nil, h*w, groups, true)
	h1 := g.conv(p+"conv1", a1, h, w, 1, [4]int{1, 1, 1, 1})
	tp := g.linear(p+"time_emb_proj", semb)
	a2 := g.groupNorm(p+"norm2", h1, tp, h*w, groups, true)
	h2 := g.conv(p+"conv2", a2, h, w, 1, [4]int{1, 1, 1, 1})
	sc := x
	if g.has(p + "conv_shortcut.weight") {
		sc = g.conv(p+"conv_shortcut", x, h, w, 1, [4]int{})
	}
	return g.residual(p+"add", sc, h2, s)
}

// residual is (a + b) / s.
func (g *Grad) residual(name string, a, b *act, s float64) *act {
	out := g.newAct(a.rows, a.c, true)
	sf := float32(s)
	g.add(name, func() error {
		AddForward(out.x.s(), a.x.s(), b.x.s(), sf)
		return nil
	}, func() error {
		for k, in := range []*act{a, b} {
			if in.grad {
				d, done := g.gradInto(in, k)
				ScaleBackward(d, out.g.s(), sf)
				done()
			}
		}
		return nil
	})
	return out
}

// groupNorm is GroupNorm (+ the per-sample bias [N,C] before it) (+ SiLU after it) of x [N*hw, C].
func (g *Grad) groupNorm(p string, x, bias *act, hw, groups int, silu bool) *act {
	n, c := g.n, x.c
	eps := float32(g.Config.NormEps)
	out := g.newAct(x.rows, c, true)
	mean, rstd := g.buf(n*groups), g.buf(n*groups)
	gamma, beta := g.wt(p+".weight"), g.wt(p+".bias")
	dgamma, dbeta := g.gr(p+".weight"), g.gr(p+".bias")
	var bx []float32
	if bias != nil {
		bx = bias.x.s()
	}
	g.add(p, func() error {
		GroupNormForward(out.x.s(), mean.s(), rstd.s(), x.x.s(), bx, gamma, beta, n, hw, c, groups, eps, silu)
		return nil
	}, func() error {
		dx, done := g.gradInto(x, 0)
		var db []float32
		doneB := func() {}
		if bias != nil {
			db, doneB = g.gradInto(bias, 1)
		}
		GroupNormBackward(dx, db, dgamma, dbeta, g.normScratch.s(), out.g.s(), x.x.s(), bx, gamma, beta, mean.s(), rstd.s(), n, hw, c, groups, silu)
		done()
		doneB()
		return nil
	})
	return out
}

func (g *Grad) silu(name string, x *act) *act {
	out := g.newAct(x.rows, x.c, true)
	g.add(name, func() error {
		SiLUForward(out.x.s(), x.x.s())
		return nil
	}, func() error {
		if x.grad {
			d, done := g.gradInto(x, 0)
			SiLUBackward(d, out.g.s(), x.x.s())
			done()
		}
		return nil
	})
	return out
}

func (g *Grad) concat(name string, a, b *act) *act {
	out := g.newAct(a.rows, a.c+b.c, true)
	g.add(name, func() error {
		ConcatForward(out.x.s(), a.x.s(), b.x.s(), a.rows, a.c, b.c)
		return nil
	}, func() error {
		da, doneA := g.gradInto(a, 0)
		db, doneB := g.gradInto(b, 1)
		ConcatBackward(da, db, out.g.s(), a.rows, a.c, b.c)
		doneA()
		doneB()
		return nil
	})
	return out
}

func (g *Grad) upsample(name string, x *act, h, w int) *act {
	out := g.newAct(4*x.rows, x.c, true)
	n := g.n
	g.add(name, func() error {
		Upsample2xForward(out.x.s(), x.x.s(), n, h, w, x.c)
		return nil
	}, func() error {
		d, done := g.gradInto(x, 0)
		Upsample2xBackward(d, out.g.s(), n, h, w, x.c)
		done()
		return nil
	})
	return out
}

// classEmbedding adds class_embedding.weight[y] to emb [N, E].
func (g *Grad) classEmbedding(emb *act) *act {
	out := g.newAct(emb.rows, emb.c, true)
	e := emb.c
	tab, dtab := g.wt("class_embedding.weight"), g.gr("class_embedding.weight")
	g.add("class_embedding", func() error {
		o, x := out.x.s(), emb.x.s()
		for i, y := range g.labels {
			row := tab[int(y)*e : (int(y)+1)*e]
			for j := 0; j < e; j++ {
				o[i*e+j] = x[i*e+j] + row[j]
			}
		}
		return nil
	}, func() error {
		clear(dtab)
		d, done := g.gradInto(emb, 0)
		dy := out.g.s()
		copy(d, dy)
		done()
		for i, y := range g.labels {
			row := dtab[int(y)*e : (int(y)+1)*e]
			for j := 0; j < e; j++ {
				row[j] += dy[i*e+j]
			}
		}
		return nil
	})
	return out
}

// ---------------------------------------------------------------------------------------------
// oneDNN layers: convolution, linear, attention.

func opErr(rc C.int, buf *[256]C.char, what string) error {
	if rc == 0 {
		return nil
	}
	return fmt.Errorf("cpu: %s: %s", what, C.GoString(&buf[0]))
}

// conv is a 2-D convolution of x [N,h,w,Cin] with p.weight [O,Cin,k,k] and p.bias [O].
func (g *Grad) conv(p string, x *act, h, w, stride int, pad [4]int) *act {
	ws := g.shapes[p+".weight"]
	oc, ic, k := ws[0], ws[1], ws[2]
	if ic != x.c {
		panic(fmt.Errorf("%s: input has %d channels, weight %v", p, x.c, ws))
	}
	oh, ow := (h+pad[0]+pad[1]-k)/stride+1, (w+pad[2]+pad[3]-k)/stride+1
	n := g.n
	out := g.newAct(n*oh*ow, oc, true)
	var buf [256]C.char
	args := []C.int{C.int(n), C.int(ic), C.int(h), C.int(w), C.int(oc), C.int(oh), C.int(ow), C.int(k), C.int(stride),
		C.int(pad[0]), C.int(pad[2]), C.int(pad[1]), C.int(pad[3])}
	fwd := g.newOp()
	if err := opErr(C.ddpm_conv_fwd(fwd, args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8],
		args[9], args[10], args[11], args[12], 0, &buf[0], C.size_t(len(buf))), &buf, p+" forward"); err != nil {
		panic(err)
	}
	g.packs = append(g.packs, packOp{fwd, p + ".weight"})
	var bwdData *C.ddpm_op
	if x.grad {
		bwdData = g.newOp()
		if err := opErr(C.ddpm_conv_bwd_data(bwdData, args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7],
			args[8], args[9], args[10], args[11], args[12], &buf[0], C.size_t(len(buf))), &buf, p+" backward-data"); err != nil {
			panic(err)
		}
		g.packs = append(g.packs, packOp{bwdData, p + ".weight"})
	}
	bwdW := g.newOp()
	if err := opErr(C.ddpm_conv_bwd_weights(bwdW, args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7],
		args[8], args[9], args[10], args[11], args[12], &buf[0], C.size_t(len(buf))), &buf, p+" backward-weights"); err != nil {
		panic(err)
	}
	wgt, bias := g.wt(p+".weight"), g.wt(p+".bias")
	dw, db := g.gr(p+".weight"), g.gr(p+".bias")
	g.add(p, func() error {
		return runOp(fwd, sp(x.x.s()), sp(wgt), sp(bias), sp(out.x.s()))
	}, func() error {
		var buf [256]C.char
		if err := opErr(C.ddpm_conv_bwd_weights_run(bwdW, sp(x.x.s()), sp(out.g.s()), sp(dw), sp(db), &buf[0], C.size_t(len(buf))), &buf, "weights"); err != nil {
			return err
		}
		if bwdData == nil {
			return nil
		}
		d, done := g.gradInto(x, 0)
		if err := runOp(bwdData, sp(out.g.s()), sp(wgt), sp(d)); err != nil {
			return err
		}
		done()
		return nil
	})
	return out
}

// matmul makes dst = src @ wei for strided operands of rank len(sd) (oneDNN's matmul, batched).
func (g *Grad) matmul(name string, sd, ss, wd, ws, dd, ds []int64, bias, sum bool) *C.ddpm_op {
	op := g.newOp()
	var buf [256]C.char
	cd := C.malloc(C.size_t(6 * 4 * 8))
	defer C.free(cd)
	arr := (*[24]int64)(cd)
	for i, v := range [][]int64{sd, ss, wd, ws, dd, ds} {
		copy(arr[i*4:], v)
	}
	at := func(i int) *C.int64_t { return (*C.int64_t)(unsafe.Pointer(&arr[i*4])) }
	if err := opErr(C.ddpm_matmul(op, C.int(len(sd)), at(0), at(1), at(2), at(3), at(4), at(5), cbool(bias), cbool(sum), 0,
		&buf[0], C.size_t(len(buf))), &buf, name); err != nil {
		panic(err)
	}
	return op
}

func strides(d ...int64) []int64 {
	s := make([]int64, len(d))
	k := int64(1)
	for i := len(d) - 1; i >= 0; i-- {
		s[i] = k
		k *= d[i]
	}
	return s
}

// linear is x [M, in] p.weight^T + p.bias: [M, out] (torch.nn.Linear).
func (g *Grad) linear(p string, x *act) *act {
	ws := g.shapes[p+".weight"]
	o, in := int64(ws[0]), int64(ws[1])
	m := int64(x.rows)
	out := g.newAct(x.rows, int(o), true)
	// forward: y [M,o] = x [M,in] . W^T [in,o]
	fwd := g.matmul(p, []int64{m, in}, []int64{in, 1}, []int64{in, o}, []int64{1, in}, []int64{m, o}, []int64{o, 1}, true, false)
	// dx [M,in] = dy [M,o] . W [o,in]
	var bwdX *C.ddpm_op
	if x.grad {
		bwdX = g.matmul(p+" dx", []int64{m, o}, []int64{o, 1}, []int64{o, in}, []int64{in, 1}, []int64{m, in}, []int64{in, 1}, false, false)
	}
	// dW [o,in] = dy^T [o,M] . x [M,in]
	bwdW := g.matmul(p+" dW", []int64{o, m}, []int64{1, o}, []int64{m, in}, []int64{in, 1}, []int64{o, in}, []int64{in, 1}, false, false)
	wgt, bias := g.wt(p+".weight"), g.wt(p+".bias")
	dw, db := g.gr(p+".weight"), g.gr(p+".bias")
	g.add(p, func() error {
		return runOp(fwd, sp(x.x.s()), sp(wgt), sp(bias), sp(out.x.s()))
	}, func() error {
		if err := runOp(bwdW, sp(out.g.s()), sp(x.x.s()), sp(dw)); err != nil {
			return err
		}
		ColSum(db, out.g.s(), int(m), int(o))
		if bwdX == nil {
			return nil
		}
		d, done := g.gradInto(x, 0)
		if err := runOp(bwdX, sp(out.g.s()), sp(wgt), sp(d)); err != nil {
			return err
		}
		done()
		return nil
	})
	return out
}

// attention is diffusers' Attention over the h*w positions (unet.Model.attention), x [N, L, C]:
//
//	out = (x + to_out(softmax(q k^T / sqrt(d)) v)) / s,   q, k, v = to_q/k/v(group_norm(x)) per head
func (g *Grad) attention(p string, x *act, h, w, groups int, s float64) *act {
	c := x.c
	hd := c
	if g.Config.AttentionHeadDim != nil {
		hd = *g.Config.AttentionHeadDim
	}
	heads := c / hd
	n, l := int64(g.n), int64(h*w)
	C_, H, L, D := int64(c), int64(heads), l, int64(hd)
	hn := x
	if groups > 0 && g.has(p+"group_norm.weight") {
		hn = g.groupNorm(p+"group_norm", x, nil, h*w, groups, false)
	}
	q, k, v := g.linear(p+"to_q", hn), g.linear(p+"to_k", hn), g.linear(p+"to_v", hn)
	probs := g.buf(int(n * H * L * L))
	o := g.newAct(x.rows, c, true)
	dP := g.buf(int(n * H * L * L))
	heads4 := []int64{n, H, L, D}
	headStr := []int64{L * C_, D, C_, 1}  // q, k, v, o as [N, heads, L, d] views of [N, L, C]
	headStrT := []int64{L * C_, D, 1, C_} // k, v as [N, heads, d, L]
	pd := []int64{n, H, L, L}             // probs
	pT := []int64{H * L * L, L * L, 1, L} // probs^T
	scores := g.matmul(p+"scores", heads4, headStr, []int64{n, H, D, L}, headStrT, pd, strides(pd...), false, false)
	pv := g.matmul(p+"pv", pd, strides(pd...), heads4, headStr, heads4, headStr, false, false)
	dPop := g.matmul(p+"dP", heads4, headStr, []int64{n, H, D, L}, headStrT, pd, strides(pd...), false, false)
	dVop := g.matmul(p+"dV", pd, pT, heads4, headStr, heads4, headStr, false, false)
	dQop := g.matmul(p+"dQ", pd, strides(pd...), heads4, headStr, heads4, headStr, false, false)
	dKop := g.matmul(p+"dK", pd, pT, heads4, headStr, heads4, headStr, false, false)
	scale := float32(1 / math.Sqrt(float64(hd)))
	rows := int(n * H * L)
	g.add(p+"softmax", func() error {
		if err := runOp(scores, sp(q.x.s()), sp(k.x.s()), sp(probs.s())); err != nil {
			return err
		}
		SoftmaxForward(probs.s(), probs.s(), rows, int(L), scale)
		return runOp(pv, sp(probs.s()), sp(v.x.s()), sp(o.x.s()))
	}, func() error {
		dO := o.g.s()
		if err := runOp(dPop, sp(dO), sp(v.x.s()), sp(dP.s())); err != nil {
			return err
		}
		q.written, k.written, v.written = true, true, true
		if err := runOp(dVop, sp(probs.s()), sp(dO), sp(v.g.s())); err != nil {
			return err
		}
		SoftmaxBackward(dP.s(), dP.s(), probs.s(), rows, int(L), scale)
		if err := runOp(dQop, sp(dP.s()), sp(k.x.s()), sp(q.g.s())); err != nil {
			return err
		}
		return runOp(dKop, sp(dP.s()), sp(q.x.s()), sp(k.g.s()))
	})
	o2 := g.linear(p+"to_out.0", o)
	return g.residual(p+"add", o2, x, s)
}
