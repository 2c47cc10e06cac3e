package viz

import (
	"fmt"
	"image"
	"math"
	"slices"
)

// A ScatterPanel is one point cloud: XY holds N points as [N,2] (x0, y0, x1, y1, ...).
type ScatterPanel struct {
	Title string // above the panel, for example "data", "samples" or "t=500"
	XY    []float32
}

// ScatterOptions lays out Scatter. The zero value is ready to use.
type ScatterOptions struct {
	// Title is written above all panels; empty means none.
	Title string
	// PanelSize is the side of each square panel in pixels; 0 means 240.
	PanelSize int
	// Cols is the number of panels per row; 0 means all panels in one row (a strip).
	Cols int
	// Limits are the axis limits shared by all panels, {xmin, xmax, ymin, ymax}; the zero value
	// means automatic: per axis, the 0.1% to 99.9% quantiles of the finite points of all panels
	// (so that a few wild samples do not shrink the rest), widened to a square (one unit is as long
	// on both axes) and padded by 10%. Points outside the limits are not drawn.
	Limits [4]float64
	// PointRadius is the radius of a point in pixels; 0 means 1.5.
	PointRadius float64
}

// Scatter draws point clouds side by side in square panels with the same axes and limits: two
// panels for "data" against "samples", or a strip of about ten for the cloud along the timesteps.
// Points are blended with an opacity that falls with the number of points, so density shows.
// Every panel has x tick labels; the first panel of each row has y tick labels.
func Scatter(panels []ScatterPanel, opts ScatterOptions) (image.Image, error) {
	if len(panels) == 0 {
		return nil, fmt.Errorf("viz: Scatter: no panels; pass at least one ScatterPanel")
	}
	if opts.PanelSize < 0 || opts.Cols < 0 || opts.PointRadius < 0 {
		return nil, fmt.Errorf("viz: Scatter: panel size %d, cols %d, point radius %g: all must be >= 0 (0: default)", opts.PanelSize, opts.Cols, opts.PointRadius)
	}
	for i, p := range panels {
		if len(p.XY)%2 != 0 {
			return nil, fmt.Errorf("viz: Scatter: panel %d %q: %d values, want an even number (points as [N,2])", i, p.Title, len(p.XY))
		}
	}
	lim := opts.Limits
	if lim == [4]float64{} {
		var ok bool
		if lim, ok = autoLimits(panels); !ok {
			return nil, fmt.Errorf("viz: Scatter: no finite point in any panel; pass points or Limits")
		}
	}
	if !(lim[1] > lim[0]) || !(lim[3] > lim[2]) {
		return nil, fmt.Errorf("viz: Scatter: limits %v: want xmin < xmax and ymin < ymax", lim)
	}
	size := opts.PanelSize
	if size == 0 {
		size = 240
	}
	if size < 60 {
		return nil, fmt.Errorf("viz: Scatter: panel size %d: want at least 60 pixels", size)
	}
	radius := opts.PointRadius
	if radius == 0 {
		radius = 1.5
	}
	cols := opts.Cols
	if cols == 0 || cols > len(panels) {
		cols = len(panels)
	}
	xticks := linearTicks(lim[0], lim[1], 4)
	yticks := linearTicks(lim[2], lim[3], 4)

	f, err := newFaces()
	if err != nil {
		return nil, err
	}
	l := layoutScatter(f, len(panels), cols, size, opts.Title, xticks, yticks)
	lh := lineHeight(f.body)
	cv := newCanvas(f, l.width, l.height)
	if opts.Title != "" {
		cv.text(cv.title, opts.Title, l.width/2, plotPad, alignCenter)
	}
	for i, pn := range panels {
		r := l.panel(i)
		p := plotArea{r: r, x0: lim[0], x1: lim[1], y0: lim[2], y1: lim[3]}
		cv.text(cv.body, pn.Title, (r.Min.X+r.Max.X)/2, r.Min.Y-lh-4, alignCenter)
		for _, t := range xticks {
			px := int(math.Round(p.px(t.v)))
			if px < r.Min.X || px >= r.Max.X {
				continue
			}
			if px > r.Min.X && px < r.Max.X-1 {
				cv.vline(px, r.Min.Y, r.Max.Y-1, gridColor)
			}
			cv.vline(px, r.Max.Y, r.Max.Y+majorTick-1, axisColor)
			cv.text(cv.body, t.label, px, r.Max.Y+majorTick+2, alignCenter)
		}
		for _, t := range yticks {
			py := int(math.Round(p.py(t.v)))
			if py < r.Min.Y || py >= r.Max.Y {
				continue
			}
			if py > r.Min.Y && py < r.Max.Y-1 {
				cv.hline(r.Min.X, r.Max.X-1, py, gridColor)
			}
			cv.hline(r.Min.X-majorTick, r.Min.X-1, py, axisColor)
			if i%cols == 0 {
				cv.text(cv.body, t.label, r.Min.X-majorTick-4, py-lh/2, alignRight)
			}
		}
		n := len(pn.XY) / 2
		alpha := min(0.8, max(0.15, 30/math.Sqrt(float64(max(n, 1)))))
		inner := r.Inset(1)
		for k := 0; k < n; k++ {
			px, py := float64(pn.XY[2*k]), float64(pn.XY[2*k+1])
			if px < lim[0] || px > lim[1] || py < lim[2] || py > lim[3] {
				continue // also skips NaN
			}
			cv.blendDisk(point{p.px(px), p.py(py)}, radius, alpha, seriesColors[0], inner)
		}
		cv.frame(r, axisColor)
	}
	return cv.RGBA, nil
}

// scatterGap is the gap between panels, in pixels.
const scatterGap = 18

// scatterLayout places the panels of Scatter.
type scatterLayout struct {
	width, height int
	left, top     int // of the first panel's square
	size          int
	cols          int
	cellH         int // from one row of panels to the next
}

func layoutScatter(f faces, panels, cols, size int, title string, xticks, yticks []tick) scatterLayout {
	lh := lineHeight(f.body)
	tickW := 0
	for _, t := range yticks {
		tickW = max(tickW, textWidth(f.body, t.label))
	}
	titleH := 0
	if title != "" {
		titleH = lineHeight(f.title) + 8
	}
	rows := (panels + cols - 1) / cols
	l := scatterLayout{size: size, cols: cols}
	l.left = plotPad + tickW + majorTick + 4
	l.top = plotPad + titleH + lh + 4 // the panel's own title above it
	l.cellH = lh + 4 + size + majorTick + 2 + lh + scatterGap
	l.width = l.left + cols*size + (cols-1)*scatterGap + plotPad + textWidth(f.body, xticks[len(xticks)-1].label)/2
	l.width = max(l.width, 2*plotPad+textWidth(f.title, title))
	l.height = plotPad + titleH + rows*l.cellH - scatterGap + plotPad
	return l
}

// panel is the square of panel i.
func (l scatterLayout) panel(i int) image.Rectangle {
	x := l.left + (i%l.cols)*(l.size+scatterGap)
	y := l.top + (i/l.cols)*l.cellH
	return image.Rect(x, y, x+l.size, y+l.size)
}

// autoLimits returns the square limits Scatter uses by default (see ScatterOptions.Limits);
// ok is false when there is no finite point.
func autoLimits(panels []ScatterPanel) (lim [4]float64, ok bool) {
	var xs, ys []float64
	for _, p := range panels {
		for k := 0; k+1 < len(p.XY); k += 2 {
			x, y := float64(p.XY[k]), float64(p.XY[k+1])
			if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(x, 0) || math.IsInf(y, 0) {
				continue
			}
			xs, ys = append(xs, x), append(ys, y)
		}
	}
	if len(xs) == 0 {
		return lim, false
	}
	slices.Sort(xs)
	slices.Sort(ys)
	q := func(v []float64, f float64) float64 { return v[int(math.Round(f*float64(len(v)-1)))] }
	xlo, xhi, ylo, yhi := q(xs, 0.001), q(xs, 0.999), q(ys, 0.001), q(ys, 0.999)
	half := max(xhi-xlo, yhi-ylo, 1e-6) / 2 * 1.2
	cx, cy := (xlo+xhi)/2, (ylo+yhi)/2
	return [4]float64{cx - half, cx + half, cy - half, cy + half}, true
}
