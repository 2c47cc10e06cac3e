// Package viz draws the pictures a diffusion course teaches with, as plain PNG and GIF files:
// grids of samples, trajectory strips of the reverse process, a panel of one training step, loss
// curves on a log scale, and scatter plots of 2-D point clouds.
//
// Images come in model space, as float32 slices of layout [N,C,H,W] (C = 1 gray or 3 RGB) with
// values in [-1, 1]. A value x is shown as the byte
//
//	round((clamp(x, -1, 1) + 1) / 2 * 255)
//
// so -1 is black, 1 is white and 0 is the gray 128; NaN is shown as 0 (gray 128). Upscaling is by
// an integer factor, nearest neighbour, so that small samples (28x28 MNIST) stay crisp.
//
// Every picture is an image.Image (an *image.RGBA, opaque, white background); WritePNG and
// WriteGIF write them atomically (a temporary file in the same directory, renamed into place).
// Text is Go Regular at 14 px and titles Go Bold at 16 px (golang.org/x/image/font/gofont),
// antialiased, dark on white.
//
// The package is pure Go and does not depend on the rest of the module: callers pass plain slices.
package viz

import (
	"fmt"
	"image"
	"image/color"
	"math"
)

// toByte maps a model-space value in [-1, 1] to 0..255: round((clamp(x, -1, 1) + 1) / 2 * 255).
// NaN maps as 0 does, to 128.
func toByte(x float32) uint8 {
	v := float64(x)
	switch {
	case math.IsNaN(v):
		v = 0
	case v < -1:
		v = -1
	case v > 1:
		v = 1
	}
	return uint8(math.Round((v + 1) / 2 * 255))
}

// checkImages validates a batch of images [N,C,H,W] and says what is wrong.
func checkImages(what string, data []float32, n, c, h, w int) error {
	if n <= 0 || h <= 0 || w <= 0 {
		return fmt.Errorf("viz: %s: shape [%d %d %d %d]: N, H and W must be positive", what, n, c, h, w)
	}
	if c != 1 && c != 3 {
		return fmt.Errorf("viz: %s: shape [%d %d %d %d]: C = %d, want 1 (gray) or 3 (RGB); the layout is [N,C,H,W]", what, n, c, h, w, c)
	}
	if want := n * c * h * w; len(data) != want {
		return fmt.Errorf("viz: %s: %d values, want N*C*H*W = %d*%d*%d*%d = %d (is the layout [N,C,H,W]?)", what, len(data), n, c, h, w, want)
	}
	return nil
}

// blit draws image i of a batch [N,C,H,W] at (x, y) of dst, each pixel as a scale x scale block.
// Values are mapped to bytes by toByte after dividing by span (span 1: model space [-1, 1]).
func blit(dst *image.RGBA, x, y int, data []float32, i, c, h, w, scale int, span float32) {
	plane := h * w
	img := data[i*c*plane : (i+1)*c*plane]
	for py := 0; py < h; py++ {
		for px := 0; px < w; px++ {
			var rgb [3]uint8
			for ch := 0; ch < 3; ch++ {
				src := ch
				if c == 1 {
					src = 0
				}
				rgb[ch] = toByte(img[src*plane+py*w+px] / span)
			}
			col := color.RGBA{rgb[0], rgb[1], rgb[2], 0xff}
			for dy := 0; dy < scale; dy++ {
				off := dst.PixOffset(x+px*scale, y+py*scale+dy)
				for dx := 0; dx < scale; dx++ {
					p := dst.Pix[off+4*dx : off+4*dx+4 : off+4*dx+4]
					p[0], p[1], p[2], p[3] = col.R, col.G, col.B, col.A
				}
			}
		}
	}
}

// GridOptions lays out a grid. The zero value is a grid with no padding at scale 1.
type GridOptions struct {
	// Padding is the gap in output pixels between cells and around the grid (torchvision's
	// make_grid uses 2).
	Padding int
	// Scale is the integer upscale factor, nearest neighbour; 0 means 1.
	Scale int
	// PadColor fills the padding; nil means white.
	PadColor color.Color
}

// Grid lays out images [N,C,H,W] (model space [-1, 1], C = 1 or 3) in rows of cols cells, row-major,
// each upscaled by opts.Scale. cols <= 0 means ceil(sqrt(N)). The result is
//
//	width  = cols*W*scale + (cols+1)*padding
//	height = rows*H*scale + (rows+1)*padding,  rows = ceil(N/cols)
//
// and cells past N (in the last row) are left in the pad color.
func Grid(images []float32, n, c, h, w int, cols int, opts GridOptions) (image.Image, error) {
	if err := checkImages("Grid images", images, n, c, h, w); err != nil {
		return nil, err
	}
	if opts.Scale < 0 || opts.Padding < 0 {
		return nil, fmt.Errorf("viz: Grid: scale %d, padding %d: both must be >= 0", opts.Scale, opts.Padding)
	}
	scale := max(opts.Scale, 1)
	if cols <= 0 {
		cols = int(math.Ceil(math.Sqrt(float64(n))))
	}
	cols = min(cols, n)
	rows := (n + cols - 1) / cols
	pad := opts.Padding
	cw, ch := w*scale, h*scale
	dst := image.NewRGBA(image.Rect(0, 0, cols*cw+(cols+1)*pad, rows*ch+(rows+1)*pad))
	var padColor color.Color = color.White
	if opts.PadColor != nil {
		padColor = opts.PadColor
	}
	fillRect(dst, dst.Bounds(), color.RGBAModel.Convert(padColor).(color.RGBA))
	for i := 0; i < n; i++ {
		x := pad + (i%cols)*(cw+pad)
		y := pad + (i/cols)*(ch+pad)
		blit(dst, x, y, images, i, c, h, w, scale, 1)
	}
	return dst, nil
}
