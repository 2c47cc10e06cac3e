package viz

import (
	"fmt"
	"github.com/ddpm/ddpm/internal/atomicfile"
	"image"
	"image/color"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"image/png"
	"io"
)

// WritePNG writes img to path as a PNG. The file is written to a temporary name in the same
// directory and renamed into place, so a failed write leaves no partial file (and an existing file
// at path is replaced only by a complete one).
func WritePNG(path string, img image.Image) error {
	if img == nil {
		return fmt.Errorf("viz: WritePNG %s: the image is nil", path)
	}
	return writeAtomic(path, func(w io.Writer) error { return png.Encode(w, img) })
}

// gifHold is the least time, in hundredths of a second, the last frame of a GIF is shown, so that
// each loop of an animation ends on its result.
const gifHold = 200

// WriteGIF writes frames to path as a looping animated GIF, delay hundredths of a second apart
// (the last frame is held for max(delay, 2 s)). All frames must have the size of the first.
// Frames that are *image.Paletted are written as they are; a gray frame is converted exactly to a
// 256-gray palette, any other frame to the Plan 9 palette with Floyd-Steinberg dithering. The
// write is atomic, as in WritePNG.
func WriteGIF(path string, frames []image.Image, delay int) error {
	if len(frames) == 0 {
		return fmt.Errorf("viz: WriteGIF %s: no frames; pass at least one image", path)
	}
	if delay < 0 {
		return fmt.Errorf("viz: WriteGIF %s: delay %d: want hundredths of a second >= 0", path, delay)
	}
	anim := &gif.GIF{}
	size := frames[0].Bounds().Size()
	for i, f := range frames {
		if f == nil {
			return fmt.Errorf("viz: WriteGIF %s: frame %d is nil", path, i)
		}
		if f.Bounds().Size() != size {
			return fmt.Errorf("viz: WriteGIF %s: frame %d is %v, frame 0 is %v; all frames must have one size", path, i, f.Bounds().Size(), size)
		}
		anim.Image = append(anim.Image, toPaletted(f))
		anim.Delay = append(anim.Delay, delay)
	}
	anim.Delay[len(frames)-1] = max(delay, gifHold)
	return writeAtomic(path, func(w io.Writer) error { return gif.EncodeAll(w, anim) })
}

// grays is the palette of the 256 grays.
var grays = func() color.Palette {
	p := make(color.Palette, 256)
	for i := range p {
		p[i] = color.Gray{uint8(i)}
	}
	return p
}()

// toPaletted converts img for GIF: exact for grays, dithered Plan 9 otherwise. The result starts
// at (0, 0).
func toPaletted(img image.Image) *image.Paletted {
	b := img.Bounds()
	if p, ok := img.(*image.Paletted); ok && b.Min == (image.Point{}) {
		return p
	}
	out := image.NewPaletted(image.Rect(0, 0, b.Dx(), b.Dy()), grays)
	if isGray(img) {
		draw.Draw(out, out.Rect, img, b.Min, draw.Src)
		return out
	}
	out.Palette = palette.Plan9
	draw.FloydSteinberg.Draw(out, out.Rect, img, b.Min)
	return out
}

// isGray reports whether every pixel of img has R = G = B.
func isGray(img image.Image) bool {
	if _, ok := img.(*image.Gray); ok {
		return true
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r != g || g != bl {
				return false
			}
		}
	}
	return true
}

// writeAtomic writes through encode to a temporary file beside path and renames it to path; on any
// error path is left as it was (internal/atomicfile).
func writeAtomic(path string, encode func(io.Writer) error) error {
	if err := atomicfile.Write(path, encode); err != nil {
		return fmt.Errorf("viz: writing %s: %w", path, err)
	}
	return nil
}
