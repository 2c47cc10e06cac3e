package unet

// FLOPs counts the multiply-adds (as 2 FLOPs each) of one forward pass for one h x w image: every
// convolution, the attention projections and its two matmuls (QK^T and PV). Normalizations,
// activations, the time-embedding MLP and other elementwise work are left out (they are a few percent
// and memory-bound). A training step costs about 3 times this per image (forward, and a backward pass
// with two matmuls per matmul).
func (m *Model) FLOPs(h, w int) int64 {
	c := m.Config
	conv := func(h, w, in, out, k int) int64 { return 2 * int64(h*w) * int64(out) * int64(in*k*k) }
	resnet := func(h, w, in, out int) int64 {
		f := conv(h, w, in, out, 3) + conv(h, w, out, out, 3)
		if in != out {
			f += conv(h, w, in, out, 1)
		}
		return f
	}
	attn := func(h, w, ch int) int64 {
		l := int64(h * w)
		return 4*2*l*int64(ch*ch) + 2*2*l*l*int64(ch)
	}
	f := conv(h, w, c.InChannels, c.BlockOutChannels[0], 3)
	hh, ww := h, w
	for _, lv := range m.downLevels() {
		for j := 0; j < c.LayersPerBlock; j++ {
			in := lv.out
			if j == 0 {
				in = lv.in
			}
			f += resnet(hh, ww, in, lv.out)
			if lv.attn {
				f += attn(hh, ww, lv.out)
			}
		}
		if !lv.final {
			hh, ww = (hh+1)/2, (ww+1)/2
			f += conv(hh, ww, lv.out, lv.out, 3)
		}
	}
	if c.MidBlockType != nil {
		last := c.BlockOutChannels[len(c.BlockOutChannels)-1]
		f += 2 * resnet(hh, ww, last, last)
		if c.AddAttention {
			f += attn(hh, ww, last)
		}
	}
	for _, lv := range m.upLevels() {
		for j := 0; j <= c.LayersPerBlock; j++ {
			in, skip := m.upResnetChannels(lv, j)
			f += resnet(hh, ww, in+skip, lv.out)
			if lv.attn {
				f += attn(hh, ww, lv.out)
			}
		}
		if !lv.final {
			hh, ww = 2*hh, 2*ww
			f += conv(hh, ww, lv.out, lv.out, 3)
		}
	}
	return f + conv(h, w, c.BlockOutChannels[0], c.OutChannels, 3)
}
