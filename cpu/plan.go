package cpu

/*
#include <stdlib.h>
#include <string.h>
#include "dnnl.h"
#include "fwd.h"
*/
import "C"

import (
	"fmt"
	"math"
	"time"
	"unsafe"
)

// A plan is the network compiled for one input shape [N, C, H, W]: oneDNN primitives with their
// packed weights, and the activation buffers, allocated once. It runs as a list of steps, one per
// layer, in order (llm.c's forward pass, unrolled).
type plan struct {
	net        *Net
	n, h, w    int
	steps      []step
	ops        []*C.ddpm_op
	packs      []func() error // repack the weights of ops from net's current weights
	packed     int            // net.version the packed weights are of
	all        []*C.float     // every buffer, to free
	pool       map[int][]*C.float
	keep       bool // training: keep every activation (no reuse)
	outs       map[string]buf
	xin, out   *C.float
	sinus, emb *C.float // [N, c0] sinusoidal embedding; [N, E] silu(time embedding) for the resnets
	tembAll    *C.float // [N, T] every resnet's time_emb_proj(silu(emb))
	ab         *C.float // group norm scratch [2, N, maxC]
	err        [512]C.char
}

type step struct {
	name string
	run  func() error
}

// buf is an activation [N, H, W, C] (NHWC) of the plan.
type buf struct {
	p       *C.float
	h, w, c int
	skip    bool // held for a skip connection of the up path
}

func (p *plan) alloc(h, w, c int) buf {
	size := p.n * h * w * c
	if l := p.pool[size]; len(l) > 0 {
		b := l[len(l)-1]
		p.pool[size] = l[:len(l)-1]
		return buf{p: b, h: h, w: w, c: c}
	}
	b := calloc(size)
	p.all = append(p.all, b)
	return buf{p: b, h: h, w: w, c: c}
}

// release gives b back for reuse by later steps (inference plans only).
func (p *plan) release(b buf) {
	if p.keep || b.skip {
		return
	}
	size := p.n * b.h * b.w * b.c
	p.pool[size] = append(p.pool[size], b.p)
}

func (p *plan) add(name string, f func() error) { p.steps = append(p.steps, step{name, f}) }

// keepOut records a layer's output under its name (training plans: for the backward pass and tests).
func (p *plan) keepOut(name string, b buf) {
	if p.keep {
		p.outs[name] = b
	}
}

func (p *plan) free() {
	for _, op := range p.ops {
		C.ddpm_op_free(op)
		C.free(unsafe.Pointer(op))
	}
	for _, b := range p.all {
		C.free(unsafe.Pointer(b))
	}
	p.ops, p.all = nil, nil
}

func (p *plan) newOp() *C.ddpm_op {
	op := (*C.ddpm_op)(C.calloc(1, C.size_t(unsafe.Sizeof(C.ddpm_op{}))))
	p.ops = append(p.ops, op)
	return op
}

func (p *plan) check(rc C.int, what string) error {
	if rc == 0 {
		return nil
	}
	return fmt.Errorf("cpu: %s: %s", what, C.GoString(&p.err[0]))
}

// conv makes a convolution step from x into a new buffer (or, with into, adding to into's values).
func (p *plan) conv(name string, x buf, oc, k, stride int, pad [4]int, into *buf) (buf, error) {
	oh := (x.h+pad[0]+pad[1]-k)/stride + 1
	ow := (x.w+pad[2]+pad[3]-k)/stride + 1
	var y buf
	sum := 0
	if into != nil {
		y, sum = *into, 1
	} else {
		y = p.alloc(oh, ow, oc)
	}
	op := p.newOp()
	rc := C.ddpm_conv_fwd(op, C.int(p.n), C.int(x.c), C.int(x.h), C.int(x.w), C.int(oc), C.int(oh), C.int(ow), C.int(k),
		C.int(stride), C.int(pad[0]), C.int(pad[2]), C.int(pad[1]), C.int(pad[3]), C.int(sum), &p.err[0], C.size_t(len(p.err)))
	if err := p.check(rc, name); err != nil {
		return y, err
	}
	wp, bp := p.net.ptr(name+".weight"), p.net.ptr(name+".bias")
	p.packs = append(p.packs, func() error {
		return p.check(C.ddpm_op_pack(op, wp, &p.err[0], C.size_t(len(p.err))), name+" weights")
	})
	p.keepOut(name, y)
	args := [4]unsafe.Pointer{unsafe.Pointer(x.p), unsafe.Pointer(wp), unsafe.Pointer(bp), unsafe.Pointer(y.p)}
	p.add(name, func() error {
		return p.check(C.ddpm_op_run(op, &args[0], &p.err[0], C.size_t(len(p.err))), name)
	})
	return y, nil
}

// dims is a tensor's dims and strides for ddpm_matmul.
type dims struct{ d, s []int64 }

func plain(d ...int64) dims {
	s := make([]int64, len(d))
	st := int64(1)
	for i := len(d) - 1; i >= 0; i-- {
		s[i] = st
		st *= d[i]
	}
	return dims{d, s}
}

// matmul makes a step dst = src @ w (+ bias) (+ dst if sum); w and bias fixed pointers when constant
// (packed once per weights version), else read at each run.
func (p *plan) matmul(name string, src, wt, dst dims, srcP, wP, biasP, dstP *C.float, sum, constant bool) error {
	op := p.newOp()
	b2i := func(b bool) C.int {
		if b {
			return 1
		}
		return 0
	}
	nd := len(src.d)
	rc := C.ddpm_matmul(op, C.int(nd), (*C.int64_t)(&src.d[0]), (*C.int64_t)(&src.s[0]), (*C.int64_t)(&wt.d[0]),
		(*C.int64_t)(&wt.s[0]), (*C.int64_t)(&dst.d[0]), (*C.int64_t)(&dst.s[0]), b2i(biasP != nil), b2i(sum), b2i(constant),
		&p.err[0], C.size_t(len(p.err)))
	if err := p.check(rc, name); err != nil {
		return err
	}
	if constant {
		p.packs = append(p.packs, func() error {
			return p.check(C.ddpm_op_pack(op, wP, &p.err[0], C.size_t(len(p.err))), name+" weights")
		})
	}
	args := [4]unsafe.Pointer{unsafe.Pointer(srcP), unsafe.Pointer(wP), unsafe.Pointer(biasP), unsafe.Pointer(dstP)}
	if biasP == nil {
		args[2] = unsafe.Pointer(dstP)
	}
	p.add(name, func() error {
		return p.check(C.ddpm_op_run(op, &args[0], &p.err[0], C.size_t(len(p.err))), name)
	})
	return nil
}

// linear makes y [M, out] = x [M, in] @ W^T + b for a weight W [out, in] (PyTorch's layout) at wP.
func (p *plan) linear(name string, m, in, out int, x, wP, bP, y *C.float, sum bool) error {
	M, K, N := int64(m), int64(in), int64(out)
	return p.matmul(name, plain(M, K), dims{[]int64{K, N}, []int64{1, K}}, plain(M, N), x, wP, bP, y, sum, true)
}

// groupNorm makes a GroupNorm step over x into a new buffer, optionally adding the time embedding
// rows at column tembCol of tembAll before (default) or scale-shifting after (scaleShift), then SiLU.
func (p *plan) groupNorm(name string, x buf, groups int, silu bool, tembCol int, scaleShift bool) buf {
	y := p.alloc(x.h, x.w, x.c)
	mean, rstd := calloc(p.n*groups), calloc(p.n*groups)
	p.all = append(p.all, mean, rstd)
	gamma, beta := p.net.ptr(name+".weight"), p.net.ptr(name+".bias")
	eps := C.float(p.net.Config.NormEps)
	var addb, scale, shift *C.float
	stride := C.long(p.net.tembT)
	if tembCol >= 0 {
		if scaleShift {
			scale, shift = fadd(p.tembAll, tembCol), fadd(p.tembAll, tembCol+x.c)
		} else {
			addb = fadd(p.tembAll, tembCol)
		}
	}
	s := C.int(0)
	if silu {
		s = 1
	}
	p.keepOut(name, y)
	p.add(name, func() error {
		C.ddpm_groupnorm_fwd(x.p, C.long(p.n), C.long(x.h*x.w), C.long(x.c), C.long(groups), addb, stride, gamma, beta,
			scale, shift, stride, eps, s, y.p, mean, rstd, p.ab)
		return nil
	})
	return y
}

func (p *plan) scaleBy(name string, y buf, s float64) {
	if s == 1 {
		return
	}
	p.add(name+".rescale", func() error {
		C.ddpm_scale(y.p, C.long(p.n*y.h*y.w*y.c), C.float(1/s))
		return nil
	})
}

// resnet is ResnetBlock2D with output_scale_factor s:
//
//	h = conv1(silu(norm1(x))); h = norm2(h + temb) or norm2(h)*(1+scale)+shift; h = conv2(silu(h))
//	out = (shortcut(x) + h) / s
func (p *plan) resnet(name string, x buf, out int, s float64) (buf, error) {
	net := p.net
	groups := *net.Config.NormNumGroups
	a1 := p.groupNorm(name+".norm1", x, groups, true, -1, false)
	h1, err := p.conv(name+".conv1", a1, out, 3, 1, [4]int{1, 1, 1, 1}, nil)
	if err != nil {
		return h1, err
	}
	p.release(a1)
	a2 := p.groupNorm(name+".norm2", h1, groups, true, net.tembOff[name+"."], net.Config.ResnetTimeScaleShift == "scale_shift")
	p.release(h1)
	var y buf
	if net.has(name + ".conv_shortcut.weight") {
		if y, err = p.conv(name+".conv_shortcut", x, out, 1, 1, [4]int{}, nil); err != nil {
			return y, err
		}
	} else {
		y = p.alloc(x.h, x.w, out)
		src, dst, size := x.p, y.p, C.size_t(p.n*x.h*x.w*out*4)
		p.add(name+".shortcut", func() error {
			C.memcpy(unsafe.Pointer(dst), unsafe.Pointer(src), size)
			return nil
		})
	}
	p.release(x)
	if _, err := p.conv(name+".conv2", a2, out, 3, 1, [4]int{1, 1, 1, 1}, &y); err != nil {
		return y, err
	}
	p.release(a2)
	p.scaleBy(name, y, s)
	return y, nil
}

// attention is diffusers' Attention over the L = H*W positions of x [N, L, C], heads of size d:
//
//	q, k, v = to_q/k/v(group_norm(x)); o = softmax(q k^T / sqrt(d)) v per head; out = (x + to_out(o)) / s
func (p *plan) attention(name string, x buf, groups int, s float64) (buf, error) {
	net := p.net
	c, l := x.c, x.h*x.w
	d := c
	if net.Config.AttentionHeadDim != nil {
		d = *net.Config.AttentionHeadDim
	}
	heads := c / d
	hn := x
	if groups > 0 {
		hn = p.groupNorm(name+".group_norm", x, groups, false, -1, false)
	}
	N, L, C, H, D := int64(p.n), int64(l), int64(c), int64(heads), int64(d)
	qkv := p.alloc(x.h, x.w, 3*c) // [N, L, 3C]
	wqkv := net.qkv[name+"."]
	if err := p.matmul(name+".qkv", plain(N*L, C), dims{[]int64{C, 3 * C}, []int64{1, C}}, plain(N*L, 3*C),
		hn.p, wqkv, fadd(wqkv, 3*c*c), qkv.p, false, true); err != nil {
		return x, err
	}
	if groups > 0 {
		p.release(hn)
	}
	scores := calloc(p.n * heads * l * l)
	p.all = append(p.all, scores)
	q := dims{[]int64{N, H, L, D}, []int64{L * 3 * C, D, 3 * C, 1}}
	kT := dims{[]int64{N, H, D, L}, []int64{L * 3 * C, D, 1, 3 * C}}
	if err := p.matmul(name+".scores", q, kT, plain(N, H, L, L), qkv.p, fadd(qkv.p, c), nil, scores, false, false); err != nil {
		return x, err
	}
	scale := C.float(1 / math.Sqrt(float64(d)))
	p.add(name+".softmax", func() error {
		C.ddpm_softmax_rows(scores, C.long(N*H*L), C.long(L), scale)
		return nil
	})
	o := p.alloc(x.h, x.w, c)
	v := dims{[]int64{N, H, L, D}, []int64{L * 3 * C, D, 3 * C, 1}}
	oD := dims{[]int64{N, H, L, D}, []int64{L * C, D, C, 1}}
	if err := p.matmul(name+".pv", plain(N, H, L, L), v, oD, scores, fadd(qkv.p, 2*c), nil, o.p, false, false); err != nil {
		return x, err
	}
	p.release(qkv)
	y := p.alloc(x.h, x.w, c)
	src, dst, size := x.p, y.p, C.size_t(p.n*l*c*4)
	p.add(name+".residual", func() error {
		C.memcpy(unsafe.Pointer(dst), unsafe.Pointer(src), size)
		return nil
	})
	if err := p.linear(name+".to_out.0", p.n*l, c, c, o.p, net.ptr(name+".to_out.0.weight"), net.ptr(name+".to_out.0.bias"), y.p, true); err != nil {
		return x, err
	}
	p.release(o)
	p.release(x)
	p.scaleBy(name, y, s)
	return y, nil
}

// build compiles the network for inputs [n, in_channels, h, w]. keep: keep every activation (for a
// backward pass); otherwise buffers are reused as soon as no later step reads them.
func (net *Net) build(n, h, w int, keep bool) (*plan, error) {
	c := net.Config
	p := &plan{net: net, n: n, h: h, w: w, keep: keep, pool: map[int][]*C.float{}, outs: map[string]buf{}}
	fail := func(err error) (*plan, error) {
		p.free()
		return nil, err
	}
	c0, e := c.BlockOutChannels[0], net.timeEmbedDim()
	maxC := 0
	for _, s := range net.specs {
		if len(s.Shape) == 4 && s.Shape[1] > maxC {
			maxC = s.Shape[1]
		}
		if len(s.Shape) >= 1 && s.Shape[0] > maxC {
			maxC = s.Shape[0]
		}
	}
	p.ab = calloc(2 * n * maxC)
	p.sinus, p.emb = calloc(n*c0), calloc(n*e)
	emb1 := calloc(n * e)
	p.tembAll = calloc(n * net.tembT)
	p.all = append(p.all, p.ab, p.sinus, p.emb, emb1, p.tembAll)
	p.xin = p.alloc(h, w, c.InChannels).p

	// Time embedding: emb = linear_2(silu(linear_1(sinusoid(t)))) (+ class_embedding[y]); then every
	// resnet's time_emb_proj(silu(emb)) in one product.
	if err := p.linear("time_embedding.linear_1", n, c0, e, p.sinus, net.ptr("time_embedding.linear_1.weight"),
		net.ptr("time_embedding.linear_1.bias"), emb1, false); err != nil {
		return fail(err)
	}
	p.add("time_embedding.silu", func() error {
		siluInPlace(net.floats(emb1, n*e))
		return nil
	})
	if err := p.linear("time_embedding.linear_2", n, e, e, emb1, net.ptr("time_embedding.linear_2.weight"),
		net.ptr("time_embedding.linear_2.bias"), p.emb, false); err != nil {
		return fail(err)
	}
	// Forward adds the class embedding and applies SiLU between the steps above and this one.
	p.add("time_embedding.class_silu", nil)
	if err := p.linear("time_emb_proj", n, e, net.tembT, p.emb, net.temb, fadd(net.temb, net.tembT*e), p.tembAll, false); err != nil {
		return fail(err)
	}

	x := buf{p: p.xin, h: h, w: w, c: c.InChannels}
	hb, err := p.conv("conv_in", x, c0, 3, 1, [4]int{1, 1, 1, 1}, nil)
	if err != nil {
		return fail(err)
	}
	hb.skip = true
	s0 := hb
	skips := []*buf{&s0}
	groups := *c.NormNumGroups
	nb := len(c.BlockOutChannels)
	for i, t := range c.DownBlockTypes {
		out := c.BlockOutChannels[i]
		for j := 0; j < c.LayersPerBlock; j++ {
			name := fmt.Sprintf("down_blocks.%d.resnets.%d", i, j)
			if hb, err = p.resnet(name, hb, out, 1); err != nil {
				return fail(err)
			}
			if t == "AttnDownBlock2D" {
				if hb, err = p.attention(fmt.Sprintf("down_blocks.%d.attentions.%d", i, j), hb, groups, 1); err != nil {
					return fail(err)
				}
			}
			hb.skip = true
			s := hb
			skips = append(skips, &s)
		}
		if i < nb-1 {
			pad := [4]int{0, 1, 0, 1} // downsample_padding 0: pad right and bottom only
			if dp := c.DownsamplePadding; dp > 0 {
				pad = [4]int{dp, dp, dp, dp}
			}
			if hb, err = p.conv(fmt.Sprintf("down_blocks.%d.downsamplers.0.conv", i), hb, out, 3, 2, pad, nil); err != nil {
				return fail(err)
			}
			hb.skip = true
			s := hb
			skips = append(skips, &s)
		}
	}
	if c.MidBlockType != nil {
		last := c.BlockOutChannels[nb-1]
		s := c.MidBlockScaleFactor
		// hb, the last down output, is also the last skip: the resnet keeps it.
		if hb, err = p.resnet("mid_block.resnets.0", hb, last, s); err != nil {
			return fail(err)
		}
		if c.AddAttention {
			mg := groups
			if c.AttnNormNumGroups != nil {
				mg = *c.AttnNormNumGroups
			} else if c.ResnetTimeScaleShift != "default" {
				mg = 0
			}
			if hb, err = p.attention("mid_block.attentions.0", hb, mg, s); err != nil {
				return fail(err)
			}
		}
		if hb, err = p.resnet("mid_block.resnets.1", hb, last, s); err != nil {
			return fail(err)
		}
	}
	rev := make([]int, nb)
	for i := range rev {
		rev[i] = c.BlockOutChannels[nb-1-i]
	}
	for i, t := range c.UpBlockTypes {
		out := rev[i]
		for j := 0; j <= c.LayersPerBlock; j++ {
			sk := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			cat := p.alloc(hb.h, hb.w, hb.c+sk.c)
			a, ca, b, cb, px := hb.p, hb.c, sk.p, sk.c, p.n*hb.h*hb.w
			name := fmt.Sprintf("up_blocks.%d.resnets.%d", i, j)
			p.add(name+".concat", func() error {
				C.ddpm_concat_c(a, C.long(ca), b, C.long(cb), C.long(px), cat.p)
				return nil
			})
			p.release(hb)
			sk.skip = false
			p.release(*sk)
			if hb, err = p.resnet(name, cat, out, 1); err != nil {
				return fail(err)
			}
			if t == "AttnUpBlock2D" {
				if hb, err = p.attention(fmt.Sprintf("up_blocks.%d.attentions.%d", i, j), hb, groups, 1); err != nil {
					return fail(err)
				}
			}
		}
		if i < nb-1 {
			up := p.alloc(2*hb.h, 2*hb.w, hb.c)
			src, sh, sw, sc := hb.p, hb.h, hb.w, hb.c
			name := fmt.Sprintf("up_blocks.%d.upsamplers.0", i)
			p.add(name+".upsample", func() error {
				C.ddpm_upsample2x(src, C.long(p.n), C.long(sh), C.long(sw), C.long(sc), up.p)
				return nil
			})
			p.release(hb)
			if hb, err = p.conv(name+".conv", up, out, 3, 1, [4]int{1, 1, 1, 1}, nil); err != nil {
				return fail(err)
			}
			p.release(up)
		}
	}
	a := p.groupNorm("conv_norm_out", hb, groups, true, -1, false)
	p.release(hb)
	y, err := p.conv("conv_out", a, c.OutChannels, 3, 1, [4]int{1, 1, 1, 1}, nil)
	if err != nil {
		return fail(err)
	}
	p.out = y.p
	return p, nil
}

// run packs the weights if they changed, then runs every step: x and out are NCHW.
func (p *plan) run(x []float32, t []int32, y []int32, out []float32) error {
	net := p.net
	c := net.Config
	if p.packed != net.version {
		for _, f := range p.packs {
			if err := f(); err != nil {
				return err
			}
		}
		p.packed = net.version
	}
	hw := p.h * p.w
	xs := x
	if c.CenterInputSample {
		xs = make([]float32, len(x))
		for i, v := range x {
			xs[i] = 2*v - 1
		}
	}
	C.ddpm_nchw_to_nhwc((*C.float)(unsafe.Pointer(&xs[0])), C.long(p.n), C.long(c.InChannels), C.long(hw), p.xin)
	c0, e := c.BlockOutChannels[0], net.timeEmbedDim()
	timestepEmbedding(net.floats(p.sinus, p.n*c0), t, c0, c.FlipSinToCos, c.FreqShift)
	for _, s := range p.steps {
		if s.run == nil { // the class embedding and SiLU of the time embedding
			emb := net.floats(p.emb, p.n*e)
			net.classEmbedding(emb, y)
			siluInPlace(emb)
			continue
		}
		var t0 time.Time
		if net.Profile != nil {
			t0 = time.Now()
		}
		if err := s.run(); err != nil {
			return err
		}
		if net.Profile != nil {
			net.Profile[s.name] += time.Since(t0)
		}
	}
	C.ddpm_nhwc_to_nchw(p.out, C.long(p.n), C.long(c.OutChannels), C.long(hw), (*C.float)(unsafe.Pointer(&out[0])))
	return nil
}

func siluInPlace(x []float32) {
	for i, v := range x {
		x[i] = float32(float64(v) / (1 + math.Exp(-float64(v))))
	}
}
