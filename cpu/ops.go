package cpu

/*
#cgo CFLAGS: -O3
#cgo LDFLAGS: -lm
#include "ops.h"
*/
import "C"

import (
	"fmt"
	"math"
)

// The Go side of ops.c: one function per C entry point, on float32 slices in the channels-last
// layout [N, H*W, C]. They panic on slices too short for the shapes (a programming error, as an index
// out of range would be). Call them from the engine's thread (they parallelise themselves).

func ptr(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(&s[0])
}

func need(name string, s []float32, n int) {
	if len(s) < n {
		panic(fmt.Sprintf("cpu: %s has %d values, want %d", name, len(s), n))
	}
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// GroupNormForward computes y = silu?(GroupNorm(x + bias)) for x, y [N,HW,C], bias [N,C] or nil,
// gamma, beta [C], and saves mean, rstd [N,G] for GroupNormBackward. y may be x.
func GroupNormForward(y, mean, rstd, x, bias, gamma, beta []float32, n, hw, c, groups int, eps float32, silu bool) {
	if c%groups != 0 {
		panic(fmt.Sprintf("cpu: GroupNorm of %d channels in %d groups", c, groups))
	}
	need("x", x, n*hw*c)
	need("y", y, n*hw*c)
	need("mean", mean, n*groups)
	need("rstd", rstd, n*groups)
	need("gamma", gamma, c)
	need("beta", beta, c)
	if bias != nil {
		need("bias", bias, n*c)
	}
	C.ddpm_groupnorm_forward(ptr(y), ptr(mean), ptr(rstd), ptr(x), ptr(bias), ptr(gamma), ptr(beta),
		C.int(n), C.int(hw), C.int(c), C.int(groups), C.float(eps), cbool(silu))
}

// GroupNormBackward computes dx [N,HW,C] (may be dy), dbias [N,C] (nil when the forward had no bias)
// and dgamma, dbeta [C] (overwritten) from dy and the forward's inputs and saved mean, rstd. scratch
// holds at least 2*N*C values.
func GroupNormBackward(dx, dbias, dgamma, dbeta, scratch, dy, x, bias, gamma, beta, mean, rstd []float32, n, hw, c, groups int, silu bool) {
	need("x", x, n*hw*c)
	need("dy", dy, n*hw*c)
	need("dx", dx, n*hw*c)
	need("scratch", scratch, 2*n*c)
	need("dgamma", dgamma, c)
	need("dbeta", dbeta, c)
	need("mean", mean, n*groups)
	need("rstd", rstd, n*groups)
	if bias != nil {
		need("bias", bias, n*c)
		need("dbias", dbias, n*c)
	} else {
		dbias = nil
	}
	C.ddpm_groupnorm_backward(ptr(dx), ptr(dbias), ptr(dgamma), ptr(dbeta), ptr(scratch), ptr(dy), ptr(x),
		ptr(bias), ptr(gamma), ptr(beta), ptr(mean), ptr(rstd), C.int(n), C.int(hw), C.int(c), C.int(groups), cbool(silu))
}

// SiLUForward: y = x sigmoid(x) over len(x) values (y may be x).
func SiLUForward(y, x []float32) {
	need("y", y, len(x))
	C.ddpm_silu_forward(ptr(y), ptr(x), C.long(len(x)))
}

// SiLUBackward: dx = dy silu'(x).
func SiLUBackward(dx, dy, x []float32) {
	need("dy", dy, len(x))
	need("dx", dx, len(x))
	C.ddpm_silu_backward(ptr(dx), ptr(dy), ptr(x), C.long(len(x)))
}

// SoftmaxForward: each row of x [rows, l] to softmax(scale * row); y may be x.
func SoftmaxForward(y, x []float32, rows, l int, scale float32) {
	need("x", x, rows*l)
	need("y", y, rows*l)
	C.ddpm_softmax_forward(ptr(y), ptr(x), C.long(rows), C.int(l), C.float(scale))
}

// SoftmaxBackward: dx = scale * y * (dy - rowsum(dy * y)), y the forward's output.
func SoftmaxBackward(dx, dy, y []float32, rows, l int, scale float32) {
	need("y", y, rows*l)
	need("dy", dy, rows*l)
	need("dx", dx, rows*l)
	C.ddpm_softmax_backward(ptr(dx), ptr(dy), ptr(y), C.long(rows), C.int(l), C.float(scale))
}

// Upsample2xForward: nearest 2x of x [N,H,W,C] into y [N,2H,2W,C].
func Upsample2xForward(y, x []float32, n, h, w, c int) {
	need("x", x, n*h*w*c)
	need("y", y, 4*n*h*w*c)
	C.ddpm_upsample2x_forward(ptr(y), ptr(x), C.int(n), C.int(h), C.int(w), C.int(c))
}

// Upsample2xBackward: dx [N,H,W,C] sums each 2x2 block of dy [N,2H,2W,C].
func Upsample2xBackward(dx, dy []float32, n, h, w, c int) {
	need("dx", dx, n*h*w*c)
	need("dy", dy, 4*n*h*w*c)
	C.ddpm_upsample2x_backward(ptr(dx), ptr(dy), C.int(n), C.int(h), C.int(w), C.int(c))
}

// ConcatForward: y [P, ca+cb] = [a [P,ca], b [P,cb]] along channels.
func ConcatForward(y, a, b []float32, p, ca, cb int) {
	need("a", a, p*ca)
	need("b", b, p*cb)
	need("y", y, p*(ca+cb))
	C.ddpm_concat_forward(ptr(y), ptr(a), ptr(b), C.long(p), C.int(ca), C.int(cb))
}

// ConcatBackward splits dy [P, ca+cb] into da [P,ca] and db [P,cb].
func ConcatBackward(da, db, dy []float32, p, ca, cb int) {
	need("da", da, p*ca)
	need("db", db, p*cb)
	need("dy", dy, p*(ca+cb))
	C.ddpm_concat_backward(ptr(da), ptr(db), ptr(dy), C.long(p), C.int(ca), C.int(cb))
}

// AddForward: y = (a + b) / s (a residual connection with output_scale_factor s); y may be a or b.
func AddForward(y, a, b []float32, s float32) {
	need("b", b, len(a))
	need("y", y, len(a))
	C.ddpm_add_forward(ptr(y), ptr(a), ptr(b), C.long(len(a)), C.float(s))
}

// ScaleBackward: dx = dy / s, the gradient of either input of AddForward.
func ScaleBackward(dx, dy []float32, s float32) {
	need("dx", dx, len(dy))
	C.ddpm_scale_backward(ptr(dx), ptr(dy), C.long(len(dy)), C.float(s))
}

// ColSum writes out[c] = sum over rows of x [M, C].
func ColSum(out, x []float32, m, c int) {
	need("x", x, m*c)
	need("out", out, c)
	C.ddpm_colsum(ptr(out), ptr(x), C.long(m), C.int(c))
}

// TimestepEmbedding writes emb [N, dim], the sinusoidal embedding of t [N] with freqs [dim/2]
// (nn.TimestepFrequencies): [sin(t f), cos(t f)], or [cos, sin] when flip.
func TimestepEmbedding(emb, t, freqs []float32, dim int, flip bool) {
	n := len(t)
	need("emb", emb, n*dim)
	need("freqs", freqs, dim/2)
	C.ddpm_timestep_embedding(ptr(emb), ptr(t), ptr(freqs), C.int(n), C.int(dim), cbool(flip))
}

// MSE returns mean((pred - target)^2) and writes its gradient dpred = 2 (pred - target) / n.
func MSE(dpred, pred, target []float32) float64 {
	need("target", target, len(pred))
	need("dpred", dpred, len(pred))
	return float64(C.ddpm_mse_forward_backward(ptr(dpred), ptr(pred), ptr(target), C.long(len(pred))))
}

// AdamWConfig are AdamW's hyper-parameters (train.Config's fields of the same names).
type AdamWConfig struct {
	LR, Beta1, Beta2, Eps, WeightDecay, MaxGradNorm float64
}

// AdamW updates the flat weights p and moments m, v in place with gradient g at 1-based step n,
// exactly as train/train.go's graph does in float32 (torch.optim.AdamW):
//
//	p = p (1 - lr wd);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//	p = p - lr (m / (1 - b1^n)) / (sqrt(v / (1 - b2^n)) + eps)
//
// With MaxGradNorm > 0, g is first scaled by min(1, max_norm / (|g| + 1e-6)) (clip_grad_norm_).
func AdamW(c AdamWConfig, p, m, v, g []float32, n int64) {
	need("m", m, len(p))
	need("v", v, len(p))
	need("g", g, len(p))
	f := func(x float64) float32 { return float32(x) }
	// The graph raises the float32 beta to the float32 step and subtracts from 1 in float32.
	pow := func(b float64) float32 { return f(math.Pow(float64(f(b)), float64(f(float64(n))))) }
	bc1, bc2 := 1-pow(c.Beta1), 1-pow(c.Beta2)
	wdMul := float32(1)
	if c.WeightDecay > 0 {
		wdMul = f(1 - c.LR*c.WeightDecay)
	}
	gscale := float32(1)
	if c.MaxGradNorm > 0 {
		norm := f(math.Sqrt(float64(C.ddpm_sumsq(ptr(g), C.long(len(g))))))
		gscale = min(1, f(c.MaxGradNorm)/(norm+f(1e-6)))
	}
	C.ddpm_adamw(ptr(p), ptr(m), ptr(v), ptr(g), C.long(len(p)), C.float(f(c.LR)), C.float(wdMul),
		C.float(f(c.Beta1)), C.float(f(1-c.Beta1)), C.float(f(c.Beta2)), C.float(f(1-c.Beta2)),
		C.float(bc1), C.float(bc2), C.float(f(c.Eps)), C.float(gscale))
}

// EMA updates ema = d ema + (1 - d) p in place (1 - d taken in float32, as the graph does).
func EMA(ema, p []float32, d float64) {
	need("p", p, len(ema))
	df := float32(d)
	C.ddpm_ema(ptr(ema), ptr(p), C.long(len(ema)), C.float(df), C.float(1-df))
}
