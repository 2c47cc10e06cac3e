package data

import (
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers JPEG for image.Decode
	_ "image/png"  // registers PNG for image.Decode
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// LoadFolder loads every PNG and JPEG file (by extension .png, .jpg, .jpeg, any case) directly in
// dir, in byte order of their names, into a Dataset of [N,C,H,W] images in [-1, 1] without labels.
// All images must have one size. C is 1 if every pixel of every image is gray (r = g = b), else 3
// (gray images are then repeated in the 3 channels). Alpha is dropped, keeping the stored colour as
// PIL's convert("RGB") does; 16-bit samples keep their high byte. Pixels are scaled as Load scales
// them. JPEG decoding may differ from libjpeg's by a level here and there; prefer PNG for FID.
func LoadFolder(dir string) (*Dataset, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("data: image folder: %w", err)
	}
	var names []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".png", ".jpg", ".jpeg":
			if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("data: image folder %s: no .png, .jpg or .jpeg files (is this the right directory?)", dir)
	}

	var h, w int
	var first string
	gray := true
	rgb := make([]uint8, 0) // [N,H,W,3] while reading
	for _, name := range names {
		path := filepath.Join(dir, name)
		img, err := decodeImage(path)
		if err != nil {
			return nil, err
		}
		b := img.Bounds()
		if first == "" {
			h, w, first = b.Dy(), b.Dx(), name
			rgb = slices.Grow(rgb, len(names)*h*w*3)
		} else if b.Dy() != h || b.Dx() != w {
			return nil, fmt.Errorf("data: image folder %s: %s is %dx%d (width x height), but %s and the images before it are %dx%d; resize it or move it out",
				dir, name, b.Dx(), b.Dy(), first, w, h)
		}
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, bl := rgb8(img.At(x, y))
				gray = gray && r == g && g == bl
				rgb = append(rgb, r, g, bl)
			}
		}
	}

	n, c := len(names), 3
	if gray {
		c = 1
	}
	d := &Dataset{Name: dir, Images: make([]float32, n*c*h*w), C: c, H: h, W: w}
	for i := range n {
		src := rgb[i*h*w*3 : (i+1)*h*w*3]
		dst := d.Image(i)
		for ch := range c {
			for p := range h * w {
				dst[ch*h*w+p] = pixelTable[src[3*p+ch]]
			}
		}
	}
	return d, nil
}

func decodeImage(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	img, format, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("data: %s: %v (not a valid PNG or JPEG? delete or move it out of the folder)", path, err)
	}
	if format != "png" && format != "jpeg" {
		return nil, fmt.Errorf("data: %s: a %s image; want PNG or JPEG", path, format)
	}
	return img, nil
}

// rgb8 returns a colour's 8-bit red, green and blue without alpha: the stored values for
// non-premultiplied colours (PNG with alpha), un-premultiplied otherwise.
func rgb8(c color.Color) (r, g, b uint8) {
	switch c := c.(type) {
	case color.NRGBA:
		return c.R, c.G, c.B
	case color.NRGBA64:
		return uint8(c.R >> 8), uint8(c.G >> 8), uint8(c.B >> 8)
	case color.Gray:
		return c.Y, c.Y, c.Y
	case color.Gray16:
		y := uint8(c.Y >> 8)
		return y, y, y
	}
	n := color.NRGBA64Model.Convert(c).(color.NRGBA64)
	return uint8(n.R >> 8), uint8(n.G >> 8), uint8(n.B >> 8)
}
