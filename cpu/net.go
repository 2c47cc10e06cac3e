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

	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/unet"
)

// Net is a UNet2DModel on the engine: its config, its weights (a copy of the flat vector, in C memory)
// and one compiled plan per input shape. A Net is not safe for concurrent use.
type Net struct {
	Config unet.Config
	model  *unet.Model
	specs  []nn.Spec
	offset map[string]int
	total  int

	w       *C.float // the flat weights [total]
	version int      // bumped by SetWeights
	// derived weights, rebuilt by SetWeights: per attention the fused q,k,v projection [3C, C] and
	// bias [3C]; all resnets' time_emb_proj stacked [T, E] and [T].
	qkv   map[string]*C.float
	temb  *C.float
	tembT int // rows of temb
	// tembOff is where each resnet's projection starts in the stacked temb rows
	tembOff map[string]int

	plans map[[3]int]*plan
	// Profile, when not nil, accumulates the time of each step of Forward by layer name.
	Profile map[string]time.Duration
}

// Supports reports whether the engine computes the network of c (nil) or why not.
func Supports(c unet.Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.ClassEmbedding() == unet.Identity {
		return fmt.Errorf("cpu: class_embed_type \"identity\" (float class embeddings) is not supported by the CPU engine")
	}
	return nil
}

// New makes the network of c on the engine. It fails when oneDNN is missing (Available) or the
// config is not supported (Supports); callers then use the GoMLX path.
func New(c unet.Config) (*Net, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if err := Supports(c); err != nil {
		return nil, err
	}
	m, err := unet.New(c)
	if err != nil {
		return nil, err
	}
	n := &Net{Config: c, model: m, specs: m.Specs(), offset: map[string]int{}, plans: map[[3]int]*plan{}}
	offsets, total := nn.Offsets(n.specs)
	for i, s := range n.specs {
		n.offset[s.Name] = offsets[i]
	}
	n.total = total
	n.w = calloc(total)
	n.qkv = map[string]*C.float{}
	n.tembOff = map[string]int{}
	for _, s := range n.specs {
		if len(s.Name) > len("time_emb_proj.weight") && s.Name[len(s.Name)-len("time_emb_proj.weight"):] == "time_emb_proj.weight" {
			prefix := s.Name[:len(s.Name)-len("time_emb_proj.weight")]
			n.tembOff[prefix] = n.tembT
			n.tembT += s.Shape[0]
		}
	}
	return n, nil
}

// Params is the length of the flat weight vector.
func (n *Net) Params() int { return n.total }

// SetWeights copies the flat weights (unet.Model.Specs order) into the engine; the next Forward packs
// them into oneDNN's layouts.
func (n *Net) SetWeights(flat []float32) error {
	if len(flat) != n.total {
		return fmt.Errorf("cpu: %d weights, want %d for this config", len(flat), n.total)
	}
	copy(n.floats(n.w, n.total), flat)
	e := n.timeEmbedDim()
	if n.temb == nil {
		n.temb = calloc(n.tembT*e + n.tembT)
	}
	tw := n.floats(n.temb, n.tembT*e+n.tembT)
	for prefix, off := range n.tembOff {
		wname := prefix + "time_emb_proj.weight"
		rows := n.shape(wname)[0]
		copy(tw[off*e:(off+rows)*e], n.get(wname))
		copy(tw[n.tembT*e+off:n.tembT*e+off+rows], n.get(prefix+"time_emb_proj.bias"))
	}
	for _, s := range n.specs {
		const suffix = "to_q.weight"
		if len(s.Name) < len(suffix) || s.Name[len(s.Name)-len(suffix):] != suffix {
			continue
		}
		prefix := s.Name[:len(s.Name)-len(suffix)]
		c := s.Shape[0]
		p, ok := n.qkv[prefix]
		if !ok {
			p = calloc(3*c*c + 3*c)
			n.qkv[prefix] = p
		}
		q := n.floats(p, 3*c*c+3*c)
		for i, name := range []string{"to_q", "to_k", "to_v"} {
			copy(q[i*c*c:(i+1)*c*c], n.get(prefix+name+".weight"))
			copy(q[3*c*c+i*c:3*c*c+(i+1)*c], n.get(prefix+name+".bias"))
		}
	}
	n.version++
	return nil
}

func (n *Net) timeEmbedDim() int { return n.shape("time_embedding.linear_1.weight")[0] }

func (n *Net) shape(name string) []int {
	for _, s := range n.specs {
		if s.Name == name {
			return s.Shape
		}
	}
	panic(fmt.Errorf("cpu: no weight %q", name))
}

// ptr is the address of weight name in the flat weights.
func (n *Net) ptr(name string) *C.float {
	off, ok := n.offset[name]
	if !ok {
		panic(fmt.Errorf("cpu: no weight %q", name))
	}
	return fadd(n.w, off)
}

func (n *Net) has(name string) bool { _, ok := n.offset[name]; return ok }

// get is the weight as a Go slice over the engine's copy.
func (n *Net) get(name string) []float32 {
	sz := 1
	for _, d := range n.shape(name) {
		sz *= d
	}
	return n.floats(n.ptr(name), sz)
}

func (n *Net) floats(p *C.float, len int) []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(p)), len)
}

// Forward computes the model output [N, out_channels, H, W] for x [N, in_channels, H, W] (NCHW,
// flattened) at integer timesteps t [N], with class labels y [N] (nil unless num_class_embeds is set).
func (n *Net) Forward(x []float32, batch, h, w int, t []int32, y []int32) ([]float32, error) {
	c := n.Config
	if len(x) != batch*c.InChannels*h*w {
		return nil, fmt.Errorf("cpu: input has %d values, want %d = [%d, %d, %d, %d]", len(x), batch*c.InChannels*h*w, batch, c.InChannels, h, w)
	}
	if len(t) != batch {
		return nil, fmt.Errorf("cpu: %d timesteps for a batch of %d", len(t), batch)
	}
	switch k := c.ClassEmbedding(); {
	case k != unet.NoClasses && len(y) != batch:
		return nil, fmt.Errorf("cpu: this model has a class embedding (%s) and needs %d class labels, got %d", k, batch, len(y))
	case k == unet.Learned:
		for _, v := range y {
			if v < 0 || int(v) >= *c.NumClassEmbeds {
				return nil, fmt.Errorf("cpu: class label %d outside [0, %d)", v, *c.NumClassEmbeds)
			}
		}
	}
	if f := 1 << (c.Levels() - 1); h%f != 0 || w%f != 0 {
		return nil, fmt.Errorf("cpu: input %dx%d: height and width must be divisible by %d", h, w, f)
	}
	if n.version == 0 {
		return nil, fmt.Errorf("cpu: Forward before SetWeights")
	}
	out := make([]float32, batch*c.OutChannels*h*w)
	var err error
	do(func() {
		key := [3]int{batch, h, w}
		p := n.plans[key]
		if p == nil {
			p, err = n.build(batch, h, w, false)
			if err != nil {
				return
			}
			n.plans[key] = p
		}
		err = p.run(x, t, y, out)
	})
	return out, err
}

// Close frees the engine's memory of n.
func (n *Net) Close() {
	do(func() {
		for _, p := range n.plans {
			p.free()
		}
		n.plans = nil
		C.free(unsafe.Pointer(n.w))
		C.free(unsafe.Pointer(n.temb))
		for _, p := range n.qkv {
			C.free(unsafe.Pointer(p))
		}
	})
}

// timestepEmbedding writes the sinusoidal embedding of t into e [N, dim], rounding as
// nn.TimestepEmbedding: the argument t*f in float32, sin and cos of it.
func timestepEmbedding(e []float32, t []int32, dim int, flip bool, shift float64) {
	freqs := nn.TimestepFrequencies(dim, shift)
	half := dim / 2
	for i, ti := range t {
		row := e[i*dim : (i+1)*dim]
		for j, f := range freqs {
			arg := float64(float32(ti) * f)
			s, c := float32(math.Sin(arg)), float32(math.Cos(arg))
			if flip {
				s, c = c, s
			}
			row[j], row[half+j] = s, c
		}
		if dim%2 == 1 {
			row[dim-1] = 0
		}
	}
}

// classEmbedding adds the class term of labels y to emb [N, E] (unet.Model's classEmbedding): a row
// of class_embedding.weight (Learned), or linear_2(silu(linear_1(sinusoidal(y)))) (Timestep), on the
// host (N x E x E multiply-adds, small beside the network).
func (n *Net) classEmbedding(emb []float32, y []int32) {
	c := n.Config
	e := n.timeEmbedDim()
	switch c.ClassEmbedding() {
	case unet.Learned:
		table := n.get("class_embedding.weight")
		for i, yi := range y {
			row := emb[i*e : (i+1)*e]
			for j, v := range table[int(yi)*e : (int(yi)+1)*e] {
				row[j] += v
			}
		}
	case unet.Timestep:
		c0 := c.BlockOutChannels[0]
		s := make([]float32, len(y)*c0)
		timestepEmbedding(s, y, c0, c.FlipSinToCos, c.FreqShift)
		h := hostLinear(s, len(y), c0, e, n.get("class_embedding.linear_1.weight"), n.get("class_embedding.linear_1.bias"))
		siluInPlace(h)
		h = hostLinear(h, len(y), e, e, n.get("class_embedding.linear_2.weight"), n.get("class_embedding.linear_2.bias"))
		for i := range emb {
			emb[i] += h[i]
		}
	}
}

// hostLinear is y [m, out] = x [m, in] W^T + b for W [out, in], in float64 sums.
func hostLinear(x []float32, m, in, out int, w, b []float32) []float32 {
	y := make([]float32, m*out)
	for i := 0; i < m; i++ {
		for o := 0; o < out; o++ {
			s := float64(b[o])
			for k, v := range x[i*in : (i+1)*in] {
				s += float64(v) * float64(w[o*in+k])
			}
			y[i*out+o] = float32(s)
		}
	}
	return y
}

func calloc(n int) *C.float {
	p := C.aligned_alloc(64, C.size_t((n*4+63)/64*64))
	if p == nil {
		panic(fmt.Errorf("cpu: out of memory for %d floats", n))
	}
	C.memset(p, 0, C.size_t((n*4+63)/64*64))
	return (*C.float)(p)
}

func fadd(p *C.float, off int) *C.float {
	return (*C.float)(unsafe.Add(unsafe.Pointer(p), off*4))
}
