package viz

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"sync"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// Text sizes in pixels (72 DPI, so points are pixels): legible at 100% zoom.
const (
	textSize  = 14
	titleSize = 16
)

// Colors shared by the pictures.
var (
	white     = color.RGBA{0xff, 0xff, 0xff, 0xff}
	ink       = color.RGBA{0x22, 0x22, 0x22, 0xff} // text, axes
	axisColor = color.RGBA{0x44, 0x44, 0x44, 0xff}
	gridColor = color.RGBA{0xe4, 0xe4, 0xe4, 0xff} // grid lines behind the data
	// seriesColors are matplotlib's tab10 blue, orange, green, red, purple, brown, pink, gray, olive, cyan.
	seriesColors = []color.RGBA{
		{0x1f, 0x77, 0xb4, 0xff},
		{0xff, 0x7f, 0x0e, 0xff},
		{0x2c, 0xa0, 0x2c, 0xff},
		{0xd6, 0x27, 0x28, 0xff},
		{0x94, 0x67, 0xbd, 0xff},
		{0x8c, 0x56, 0x4b, 0xff},
		{0xe3, 0x77, 0xc2, 0xff},
		{0x7f, 0x7f, 0x7f, 0xff},
		{0xbc, 0xbd, 0x22, 0xff},
		{0x17, 0xbe, 0xcf, 0xff},
	}
)

// parsedFonts parses the embedded Go fonts once; a parsed sfnt.Font is safe for concurrent use,
// a font.Face is not, so each picture makes its own faces.
var parsedFonts = sync.OnceValues(func() ([2]*opentype.Font, error) {
	regular, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return [2]*opentype.Font{}, fmt.Errorf("viz: parsing the embedded Go Regular font: %w", err)
	}
	bold, err := opentype.Parse(gobold.TTF)
	if err != nil {
		return [2]*opentype.Font{}, fmt.Errorf("viz: parsing the embedded Go Bold font: %w", err)
	}
	return [2]*opentype.Font{regular, bold}, nil
})

// faces holds the two faces a picture writes with.
type faces struct {
	body, title font.Face
}

func newFaces() (faces, error) {
	fonts, err := parsedFonts()
	if err != nil {
		return faces{}, err
	}
	text, err := opentype.NewFace(fonts[0], &opentype.FaceOptions{Size: textSize, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return faces{}, fmt.Errorf("viz: making a %d px text face: %w", textSize, err)
	}
	title, err := opentype.NewFace(fonts[1], &opentype.FaceOptions{Size: titleSize, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return faces{}, fmt.Errorf("viz: making a %d px title face: %w", titleSize, err)
	}
	return faces{body: text, title: title}, nil
}

// align places text horizontally relative to its x coordinate.
type align int

const (
	alignLeft align = iota
	alignCenter
	alignRight
)

// lineHeight is the height of one line of text of face f in pixels.
func lineHeight(f font.Face) int { return f.Metrics().Height.Ceil() }

// textWidth is the advance width of s in pixels.
func textWidth(f font.Face, s string) int { return font.MeasureString(f, s).Ceil() }

// canvas is an RGBA picture with its faces.
type canvas struct {
	*image.RGBA
	faces
}

// newCanvas returns a white w x h canvas that writes with f.
func newCanvas(f faces, w, h int) *canvas {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fillRect(img, img.Bounds(), white)
	return &canvas{RGBA: img, faces: f}
}

// fillRect fills r (clipped to dst) with col, replacing what was there.
func fillRect(dst *image.RGBA, r image.Rectangle, col color.RGBA) {
	r = r.Intersect(dst.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		off := dst.PixOffset(r.Min.X, y)
		for x := r.Min.X; x < r.Max.X; x++ {
			p := dst.Pix[off : off+4 : off+4]
			p[0], p[1], p[2], p[3] = col.R, col.G, col.B, col.A
			off += 4
		}
	}
}

// text draws s with face f; (x, top) is the left, center or right end of the line's top edge.
// It returns the width drawn.
func (c *canvas) text(f font.Face, s string, x, top int, a align) int {
	width := textWidth(f, s)
	switch a {
	case alignCenter:
		x -= width / 2
	case alignRight:
		x -= width
	}
	d := font.Drawer{
		Dst:  c.RGBA,
		Src:  image.NewUniform(ink),
		Face: f,
		Dot:  fixed.P(x, top+f.Metrics().Ascent.Ceil()),
	}
	d.DrawString(s)
	return width
}

// textUp draws s rotated 90 degrees counter-clockwise (reading bottom to top), centred on (cx, cy).
func (c *canvas) textUp(f font.Face, s string, cx, cy int) {
	w, h := textWidth(f, s), lineHeight(f)
	flat := &canvas{RGBA: image.NewRGBA(image.Rect(0, 0, w, h)), faces: c.faces}
	flat.text(f, s, 0, 0, alignLeft)
	up := image.NewRGBA(image.Rect(0, 0, h, w))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			// (x, y) -> (y, w-1-x): a quarter turn counter-clockwise.
			copy(up.Pix[up.PixOffset(y, w-1-x):][:4], flat.Pix[flat.PixOffset(x, y):][:4])
		}
	}
	at := image.Pt(cx-h/2, cy-w/2)
	draw.Draw(c.RGBA, image.Rectangle{at, at.Add(up.Rect.Size())}, up, image.Point{}, draw.Over)
}

// hline and vline draw one-pixel lines, ends included.
func (c *canvas) hline(x0, x1, y int, col color.RGBA) {
	fillRect(c.RGBA, image.Rect(x0, y, x1+1, y+1), col)
}

func (c *canvas) vline(x, y0, y1 int, col color.RGBA) {
	fillRect(c.RGBA, image.Rect(x, y0, x+1, y1+1), col)
}

// frame draws a one-pixel border just inside r.
func (c *canvas) frame(r image.Rectangle, col color.RGBA) {
	c.hline(r.Min.X, r.Max.X-1, r.Min.Y, col)
	c.hline(r.Min.X, r.Max.X-1, r.Max.Y-1, col)
	c.vline(r.Min.X, r.Min.Y, r.Max.Y-1, col)
	c.vline(r.Max.X-1, r.Min.Y, r.Max.Y-1, col)
}

// point is a position in pixel coordinates (x right, y down; pixel (i, j) covers [i, i+1) x [j, j+1)).
type point struct{ x, y float64 }

// mask is an antialiased coverage in [0, 1] over a rectangle; shapes added to it combine by
// maximum, so a polyline with many short segments is as dark as one long segment.
type mask struct {
	r image.Rectangle
	a []float32
}

func newMask(r image.Rectangle) *mask {
	return &mask{r: r, a: make([]float32, r.Dx()*r.Dy())}
}

// segment adds the segment pq drawn width pixels wide with round ends. The coverage of a pixel is
// its centre's distance d to the segment turned into a one-pixel ramp: clamp(width/2 + 0.5 - d, 0, 1).
func (m *mask) segment(p, q point, width float64) {
	half := width / 2
	x0 := int(math.Floor(min(p.x, q.x) - half - 1))
	x1 := int(math.Ceil(max(p.x, q.x) + half + 1))
	y0 := int(math.Floor(min(p.y, q.y) - half - 1))
	y1 := int(math.Ceil(max(p.y, q.y) + half + 1))
	r := image.Rect(x0, y0, x1, y1).Intersect(m.r)
	dx, dy := q.x-p.x, q.y-p.y
	l2 := dx*dx + dy*dy
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cx, cy := float64(x)+0.5, float64(y)+0.5
			s := 0.0
			if l2 > 0 {
				s = math.Max(0, math.Min(1, ((cx-p.x)*dx+(cy-p.y)*dy)/l2))
			}
			d := math.Hypot(cx-(p.x+s*dx), cy-(p.y+s*dy))
			m.add(x, y, half+0.5-d)
		}
	}
}

// disk adds a filled disk of the given radius centred on p.
func (m *mask) disk(p point, radius float64) {
	r := image.Rect(int(math.Floor(p.x-radius-1)), int(math.Floor(p.y-radius-1)),
		int(math.Ceil(p.x+radius+1)), int(math.Ceil(p.y+radius+1))).Intersect(m.r)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			m.add(x, y, radius+0.5-math.Hypot(float64(x)+0.5-p.x, float64(y)+0.5-p.y))
		}
	}
}

func (m *mask) add(x, y int, cov float64) {
	if cov <= 0 {
		return
	}
	i := (y-m.r.Min.Y)*m.r.Dx() + x - m.r.Min.X
	m.a[i] = max(m.a[i], float32(min(cov, 1)))
}

// paint blends col over the canvas where m covers it.
func (c *canvas) paint(m *mask, col color.RGBA) {
	for y := m.r.Min.Y; y < m.r.Max.Y; y++ {
		for x := m.r.Min.X; x < m.r.Max.X; x++ {
			if a := m.a[(y-m.r.Min.Y)*m.r.Dx()+x-m.r.Min.X]; a > 0 {
				c.blend(x, y, col, float64(a))
			}
		}
	}
}

// blendDisk blends a disk of col with opacity alpha over the canvas, clipped to clip; overlapping
// disks darken, so the density of a point cloud shows.
func (c *canvas) blendDisk(p point, radius, alpha float64, col color.RGBA, clip image.Rectangle) {
	r := image.Rect(int(math.Floor(p.x-radius-1)), int(math.Floor(p.y-radius-1)),
		int(math.Ceil(p.x+radius+1)), int(math.Ceil(p.y+radius+1))).Intersect(clip)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cov := radius + 0.5 - math.Hypot(float64(x)+0.5-p.x, float64(y)+0.5-p.y)
			if cov > 0 {
				c.blend(x, y, col, alpha*min(cov, 1))
			}
		}
	}
}

// blend mixes col into pixel (x, y) with weight a in [0, 1]; the canvas stays opaque.
func (c *canvas) blend(x, y int, col color.RGBA, a float64) {
	off := c.PixOffset(x, y)
	p := c.Pix[off : off+3 : off+3]
	p[0] = uint8(math.Round(float64(p[0])*(1-a) + float64(col.R)*a))
	p[1] = uint8(math.Round(float64(p[1])*(1-a) + float64(col.G)*a))
	p[2] = uint8(math.Round(float64(p[2])*(1-a) + float64(col.B)*a))
}

// lighten mixes col with white: f = 0 gives col, f = 1 white.
func lighten(col color.RGBA, f float64) color.RGBA {
	mix := func(v uint8) uint8 { return uint8(math.Round(float64(v)*(1-f) + 255*f)) }
	return color.RGBA{mix(col.R), mix(col.G), mix(col.B), 0xff}
}
