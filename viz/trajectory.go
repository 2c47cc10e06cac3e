package viz

import (
	"fmt"
	"image"
	"math"
)

// A Frame is one step of the reverse process at timestep T: the samples x_t and the model's
// estimate x0Hat of x_0 made at that step, each [N,C,H,W] in model space [-1, 1]. X0Hat may be nil
// in every frame of a trajectory, and then only x_t is drawn.
type Frame struct {
	T     int
	Xt    []float32
	X0Hat []float32
}

// TrajectoryOptions lays out Trajectory and TrajectoryGIF. The zero value is ready to use.
type TrajectoryOptions struct {
	// Scale is the integer upscale factor of each image; 0 means the smallest that makes an image
	// at least 48 px wide, so that a sample is easy to see beside its "t=999" label.
	Scale int
	// Title is written above the strip; empty means none.
	Title string
}

// Rows of the trajectory pictures.
const (
	xtLabel    = "x_t"
	x0HatLabel = "x0_hat"
	minCell    = 48 // least width in pixels of an image when Scale is 0
)

// checkFrames validates a trajectory and reports whether it has x0Hat.
func checkFrames(frames []Frame, n, c, h, w int, opts TrajectoryOptions) (hasX0 bool, scale int, err error) {
	if len(frames) == 0 {
		return false, 0, fmt.Errorf("viz: trajectory: no frames; pass one Frame per step to show")
	}
	hasX0 = frames[0].X0Hat != nil
	for i, f := range frames {
		if err := checkImages(fmt.Sprintf("trajectory frame %d (t=%d) Xt", i, f.T), f.Xt, n, c, h, w); err != nil {
			return false, 0, err
		}
		if (f.X0Hat != nil) != hasX0 {
			return false, 0, fmt.Errorf("viz: trajectory frame %d (t=%d): X0Hat is set in some frames and nil in others; set it in all or none", i, f.T)
		}
		if hasX0 {
			if err := checkImages(fmt.Sprintf("trajectory frame %d (t=%d) X0Hat", i, f.T), f.X0Hat, n, c, h, w); err != nil {
				return false, 0, err
			}
		}
	}
	if opts.Scale < 0 {
		return false, 0, fmt.Errorf("viz: trajectory: scale %d: want >= 0 (0: automatic)", opts.Scale)
	}
	scale = opts.Scale
	if scale == 0 {
		scale = max(1, (minCell+w-1)/w)
	}
	return hasX0, scale, nil
}

// tLabel is the column header of timestep t.
// tLabel names a frame by its timestep; a negative T marks the final output x_0.
func tLabel(t int) string {
	if t < 0 {
		return "output"
	}
	return fmt.Sprintf("t=%d", t)
}

// stripLayout places the cells of Trajectory.
type stripLayout struct {
	width, height int
	left, top     int // of the first cell
	cw, ch        int // image size after upscaling
	colW          int // column width, at least cw, wide enough for its "t=..." header
	rows          int // rows per sample: 1 (x_t) or 2 (x_t, x0_hat)
	titleH        int
}

// Gaps of the trajectory strip, in pixels.
const (
	stripMargin = 10
	colGap      = 4  // between columns
	pairGap     = 2  // between the x_t and x0_hat rows of one sample
	sampleGap   = 10 // between samples
)

func (l stripLayout) sampleH() int { return l.rows*l.ch + (l.rows-1)*pairGap }

// cell is the rectangle of frame j, sample i, row k (0: x_t, 1: x0_hat).
func (l stripLayout) cell(j, i, k int) image.Rectangle {
	x := l.left + j*(l.colW+colGap) + (l.colW-l.cw)/2
	y := l.top + i*(l.sampleH()+sampleGap) + k*(l.ch+pairGap)
	return image.Rect(x, y, x+l.cw, y+l.ch)
}

func layoutStrip(f faces, frames []Frame, n, w, h, scale int, hasX0 bool, title string) stripLayout {
	l := stripLayout{cw: w * scale, ch: h * scale, rows: 1}
	if hasX0 {
		l.rows = 2
	}
	l.colW = l.cw
	for _, fr := range frames {
		l.colW = max(l.colW, textWidth(f.body, tLabel(fr.T))+6)
	}
	labelW := max(textWidth(f.body, xtLabel), textWidth(f.body, x0HatLabel))
	if title != "" {
		l.titleH = lineHeight(f.title) + 6
	}
	l.left = stripMargin + labelW + 8
	l.top = stripMargin + l.titleH + lineHeight(f.body) + 4
	l.width = max(l.left+len(frames)*l.colW+(len(frames)-1)*colGap+stripMargin, 2*stripMargin+textWidth(f.title, title))
	l.height = l.top + n*l.sampleH() + (n-1)*sampleGap + stripMargin
	return l
}

// Trajectory draws the reverse process as a strip: one column per frame, headed by its "t=...", in
// the order given (usually t=999 ... t=0), and per sample two rows, x_t and x0_hat (one row when
// X0Hat is nil), labelled on the left. Pass about ten frames; every frame passed becomes a column.
func Trajectory(frames []Frame, n, c, h, w int, opts TrajectoryOptions) (image.Image, error) {
	hasX0, scale, err := checkFrames(frames, n, c, h, w, opts)
	if err != nil {
		return nil, err
	}
	f, err := newFaces()
	if err != nil {
		return nil, err
	}
	l := layoutStrip(f, frames, n, w, h, scale, hasX0, opts.Title)
	cv := newCanvas(f, l.width, l.height)
	if opts.Title != "" {
		cv.text(cv.title, opts.Title, l.width/2, stripMargin, alignCenter)
	}
	lh := lineHeight(cv.body)
	for j, fr := range frames {
		cv.text(cv.body, tLabel(fr.T), l.left+j*(l.colW+colGap)+l.colW/2, stripMargin+l.titleH, alignCenter)
		for i := 0; i < n; i++ {
			r := l.cell(j, i, 0)
			blit(cv.RGBA, r.Min.X, r.Min.Y, fr.Xt, i, c, h, w, scale, 1)
			if hasX0 {
				r = l.cell(j, i, 1)
				blit(cv.RGBA, r.Min.X, r.Min.Y, fr.X0Hat, i, c, h, w, scale, 1)
			}
		}
	}
	for i := 0; i < n; i++ {
		for k, label := range []string{xtLabel, x0HatLabel}[:l.rows] {
			r := l.cell(0, i, k)
			cv.text(cv.body, label, l.left-8, (r.Min.Y+r.Max.Y)/2-lh/2, alignRight)
		}
	}
	return cv.RGBA, nil
}

// gifLayout places the grids of a TrajectoryGIF frame.
type gifLayout struct {
	width, height int
	left, top     int // of the first grid
	cw, ch        int // image size after upscaling
	cols          int // images per grid row
	gridW         int
	titleH        int
}

// Gaps of the trajectory GIF, in pixels.
const (
	gifPad     = 2  // between images of a grid
	gifGridGap = 24 // between the x_t and x0_hat grids
)

// cell is the rectangle of sample i in grid g (0: x_t, 1: x0_hat).
func (l gifLayout) cell(g, i int) image.Rectangle {
	x := l.left + g*(l.gridW+gifGridGap) + (i%l.cols)*(l.cw+gifPad)
	y := l.top + (i/l.cols)*(l.ch+gifPad)
	return image.Rect(x, y, x+l.cw, y+l.ch)
}

func layoutGIF(f faces, frames []Frame, n, w, h, scale, grids int, title string) gifLayout {
	l := gifLayout{cw: w * scale, ch: h * scale, cols: int(math.Ceil(math.Sqrt(float64(n))))}
	rows := (n + l.cols - 1) / l.cols
	l.gridW = l.cols*l.cw + (l.cols-1)*gifPad
	gridH := rows*l.ch + (rows-1)*gifPad
	l.titleH = lineHeight(f.title) + 6
	l.top = stripMargin + l.titleH + lineHeight(f.body) + 4
	widest := 0
	for _, fr := range frames {
		widest = max(widest, textWidth(f.title, gifTitle(title, fr.T)))
	}
	gridsW := grids*l.gridW + (grids-1)*gifGridGap
	l.width = max(2*stripMargin+gridsW, 2*stripMargin+widest)
	l.height = l.top + gridH + stripMargin
	l.left = (l.width - gridsW) / 2
	return l
}

// TrajectoryGIF draws one picture per frame, for WriteGIF: "t=..." on top, the samples x_t in a
// grid on the left and their x0_hat in a grid on the right (x_t only when X0Hat is nil), each grid
// ceil(sqrt(N)) images wide. All pictures have one size.
func TrajectoryGIF(frames []Frame, n, c, h, w int, opts TrajectoryOptions) ([]image.Image, error) {
	hasX0, scale, err := checkFrames(frames, n, c, h, w, opts)
	if err != nil {
		return nil, err
	}
	f, err := newFaces()
	if err != nil {
		return nil, err
	}
	grids := 1
	if hasX0 {
		grids = 2
	}
	l := layoutGIF(f, frames, n, w, h, scale, grids, opts.Title)
	out := make([]image.Image, 0, len(frames))
	for _, fr := range frames {
		cv := newCanvas(f, l.width, l.height)
		cv.text(cv.title, gifTitle(opts.Title, fr.T), l.width/2, stripMargin, alignCenter)
		for g := 0; g < grids; g++ {
			data, label := fr.Xt, xtLabel
			if g == 1 {
				data, label = fr.X0Hat, x0HatLabel
			}
			x0 := l.left + g*(l.gridW+gifGridGap)
			cv.text(cv.body, label, x0+l.gridW/2, stripMargin+l.titleH, alignCenter)
			for i := 0; i < n; i++ {
				r := l.cell(g, i)
				blit(cv.RGBA, r.Min.X, r.Min.Y, data, i, c, h, w, scale, 1)
			}
		}
		out = append(out, cv.RGBA)
	}
	return out, nil
}

// gifTitle is the title line of one GIF frame.
func gifTitle(title string, t int) string {
	if title == "" {
		return tLabel(t)
	}
	return title + "   " + tLabel(t)
}
