package fid

import "fmt"

// InceptionSize is the side of the images pytorch-fid's InceptionV3 resizes its input to.
const InceptionSize = 299

// linearTaps returns, for output index i of a resize from in to out samples, the two input indices
// and their weights of torch's bilinear interpolation with align_corners=False
// (aten/src/ATen/native/UpSample.h, area_pixel_compute_scale and area_pixel_compute_source_index):
//
//	scale = in / out                              (float32)
//	src   = max(scale * (i + 0.5) - 0.5, 0)       (float64)
//	i0    = floor(src),  i1 = min(i0 + 1, in - 1)
//	l1    = min(max(src - i0, 0), 1),  l0 = 1 - l1  (rounded to float32)
//
// This mix of float32 and float64 reproduces the weights of torch 1.13's CPU kernel for float32
// input bit for bit (checked on the resize of identity images to 299 from 28, 30, 32, 45, 64 and
// 512; all-float32 arithmetic differs by up to 1.5e-5 at 512).
func linearTaps(i, in, out int) (i0, i1 int, l0, l1 float32) {
	scale := float64(float32(in) / float32(out))
	src := max(scale*(float64(i)+0.5)-0.5, 0)
	i0 = int(src)
	i1 = i0
	if i0 < in-1 {
		i1 = i0 + 1
	}
	l1 = float32(min(max(src-float64(i0), 0), 1))
	return i0, i1, 1 - l1, l1
}

// Resize resizes images x [N,C,H,W] (float32, row-major) to [N,C,outH,outW] by bilinear
// interpolation as torch.nn.functional.interpolate(x, size=(outH, outW), mode="bilinear",
// align_corners=False) does without antialiasing; pytorch-fid's InceptionV3 uses it with
// outH = outW = InceptionSize. With the taps of each output row i (rows h0, h1, weights a0, a1) and
// column j (columns w0, w1, weights b0, b1), see linearTaps:
//
//	out[i,j] = a0 * (b0 * x[h0,w0] + b1 * x[h0,w1]) + a1 * (b0 * x[h1,w0] + b1 * x[h1,w1])
//
// Resize is the slow, obvious reference for the resize on a device (see ResizeMatrix).
func Resize(x []float32, n, c, h, w, outH, outW int) ([]float32, error) {
	if n < 0 || c < 0 || h <= 0 || w <= 0 || outH <= 0 || outW <= 0 {
		return nil, fmt.Errorf("fid: Resize [%d,%d,%d,%d] to %dx%d: sizes must be positive", n, c, h, w, outH, outW)
	}
	if len(x) != n*c*h*w {
		return nil, fmt.Errorf("fid: Resize: x has %d values, want N*C*H*W = %d*%d*%d*%d = %d", len(x), n, c, h, w, n*c*h*w)
	}
	out := make([]float32, n*c*outH*outW)
	for p := range n * c {
		img := x[p*h*w : (p+1)*h*w]
		dst := out[p*outH*outW : (p+1)*outH*outW]
		for i := range outH {
			h0, h1, a0, a1 := linearTaps(i, h, outH)
			for j := range outW {
				w0, w1, b0, b1 := linearTaps(j, w, outW)
				top := b0*img[h0*w+w0] + b1*img[h0*w+w1]
				bottom := b0*img[h1*w+w0] + b1*img[h1*w+w1]
				dst[i*outW+j] = a0*top + a1*bottom
			}
		}
	}
	return out, nil
}

// ResizeMatrix returns the resize of Resize along one axis, from in to out samples, as a matrix
// R [out,in] (row-major): row i holds the weights l0 at i0 and l1 at i1 of linearTaps(i, in, out).
// Bilinear interpolation is separable, so for each image [H,W] of a batch
//
//	out = Rh · img · Rw^T,   Rh = ResizeMatrix(H, outH) [outH,H],  Rw = ResizeMatrix(W, outW) [outW,W]
//
// which a device computes with two matrix multiplications. It equals Resize up to float32 rounding
// (the sums are taken in another order).
func ResizeMatrix(in, out int) ([]float32, error) {
	if in <= 0 || out <= 0 {
		return nil, fmt.Errorf("fid: ResizeMatrix(%d, %d): sizes must be positive", in, out)
	}
	r := make([]float32, out*in)
	for i := range out {
		i0, i1, l0, l1 := linearTaps(i, in, out)
		r[i*in+i0] += l0
		r[i*in+i1] += l1
	}
	return r, nil
}
