package viz

import (
	"fmt"
	"image"
	"math"
	"strconv"
)

// A Series is one loss curve.
type Series struct {
	// Name is the legend entry (for example "fp32" or "bf16"). A legend is drawn when there is more
	// than one series or any series has a name.
	Name string
	// Steps are the x values, one per loss; nil means 0, 1, 2, ...
	Steps []float64
	// Loss are the y values. Values that are not finite and > 0 cannot be shown on a log scale
	// and are skipped (they do not break the smoothed line either).
	Loss []float64
}

// LossPlotOptions sets up LossPlot. The zero value is a 720x440 plot with automatic smoothing,
// labelled "step" and "loss", without a title.
type LossPlotOptions struct {
	Title  string
	XLabel string // empty means "step"
	YLabel string // empty means "loss"
	// Width and Height are the size of the picture in pixels; 0 means 720 and 440.
	Width, Height int
	// Smoothing is the weight beta of the past in the exponential moving average drawn as the dark
	// line (see EMA), in [0, 1). 0 means automatic, per series: 1 - 1/window with a window of
	// 2% of the points but at least 10 (beta 0.9 up to 500 points, 0.99 at 5000). A negative
	// value means no smoothing: the line joins the raw points.
	Smoothing float64
}

// EMA returns the exponential moving average of xs with weight beta of the past, debiased as
// TensorBoard's smoothing and Adam's moments are (Kingma & Ba 2015, arXiv:1412.6980v9, Alg. 1):
//
//	m_i = beta * m_{i-1} + (1 - beta) * x_i,   m_{-1} = 0
//	s_i = m_i / (1 - beta^(i+1))
//
// so s_0 = x_0 and the start is not pulled towards 0. beta = 0 returns a copy of xs.
func EMA(xs []float64, beta float64) []float64 {
	out := make([]float64, len(xs))
	m, pow := 0.0, 1.0
	for i, x := range xs {
		m = beta*m + (1-beta)*x
		pow *= beta
		out[i] = m / (1 - pow)
	}
	return out
}

// smoothing returns the EMA weight LossPlot uses for n points given the option opt.
func smoothing(opt float64, n int) float64 {
	switch {
	case opt > 0:
		return opt
	case opt < 0:
		return 0
	}
	window := max(10, float64(n)/50)
	return 1 - 1/window
}

// A tick is a mark on an axis; labelled ticks have a label, major ticks get a grid line.
type tick struct {
	v     float64
	label string
	major bool
}

// logAxis returns the range of a log-scale axis for data in [lo, hi] (0 < lo <= hi) and its ticks.
// The range is the data range widened to at least one decade, padded by 5% of its span in log10
// on each side and then widened to the next tick values m*10^k (m = 1..9). Major ticks are the
// decades 10^k inside, labelled "0.01", "0.1", "1", ... (1e-5 and below, 1e6 and above, as "1e-05",
// "1e+06"); minor ticks are m*10^k, m = 2..9. When fewer than two decades fall inside the range,
// the minor ticks 2*10^k and 5*10^k are labelled too.
func logAxis(lo, hi float64) (axisLo, axisHi float64, ticks []tick) {
	a, b := math.Log10(lo), math.Log10(hi)
	if b-a < 1 {
		mid := (a + b) / 2
		a, b = mid-0.5, mid+0.5
	}
	pad := 0.05 * (b - a)
	a, b = a-pad, b+pad
	axisLo, axisHi = snapDown(a), snapUp(b)
	var majors int
	for k := int(math.Floor(a)); k <= int(math.Ceil(b)); k++ {
		for m := 1; m <= 9; m++ {
			v := decimal(m, k)
			if v < axisLo || v > axisHi {
				continue
			}
			if m == 1 {
				majors++
			}
			ticks = append(ticks, tick{v: v, major: m == 1})
		}
	}
	for i := range ticks {
		if ticks[i].major {
			ticks[i].label = logLabel(ticks[i].v)
		}
	}
	if majors < 2 {
		for i := range ticks {
			if m := ticks[i].v / math.Pow(10, math.Floor(math.Log10(ticks[i].v)+1e-9)); math.Abs(m-2) < 1e-6 || math.Abs(m-5) < 1e-6 {
				ticks[i].label = logLabel(ticks[i].v)
			}
		}
	}
	return axisLo, axisHi, ticks
}

// decimal returns m * 10^k as the float64 nearest to the decimal "me" k, so that 3*10^-1 is 0.3.
func decimal(m, k int) float64 {
	v, _ := strconv.ParseFloat(strconv.Itoa(m)+"e"+strconv.Itoa(k), 64)
	return v
}

// snapDown returns the largest m*10^k (m = 1..9) <= 10^e; snapUp the smallest >= 10^e.
func snapDown(e float64) float64 {
	k := int(math.Floor(e))
	m := int(math.Floor(math.Pow(10, e-float64(k)) + 1e-9))
	return decimal(max(m, 1), k)
}

func snapUp(e float64) float64 {
	k := int(math.Floor(e))
	m := int(math.Ceil(math.Pow(10, e-float64(k)) - 1e-9))
	return decimal(m, k) // m may be 10: decimal(10, k) = 10^(k+1)
}

// logLabel formats a tick value of a log axis: "0.001", "0.02", "1", "200", or "1e-05".
func logLabel(v float64) string {
	if v >= 1e-4 && v < 1e6 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'e', -1, 64)
}

// linearTicks returns about target ticks at multiples of a nice step (1, 2 or 5 times a power of
// ten, the nearest to (hi-lo)/target) inside [lo, hi], all major and labelled with as many
// decimals as the step needs.
func linearTicks(lo, hi float64, target int) []tick {
	if !(hi > lo) {
		return []tick{{v: lo, label: strconv.FormatFloat(lo, 'g', 6, 64), major: true}}
	}
	// The step nearest to range/target in ratio, from 1, 2 and 5 times a power of ten.
	raw := (hi - lo) / float64(target)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, f := range []float64{2, 5, 10} {
		if math.Abs(math.Log(f*mag/raw)) < math.Abs(math.Log(step/raw)) {
			step = f * mag
		}
	}
	decimals := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
	var ticks []tick
	for k := math.Ceil(lo/step - 1e-9); k*step <= hi+step*1e-9; k++ {
		v := k * step
		label := strconv.FormatFloat(v, 'f', decimals, 64)
		if label == "-0" || (decimals > 0 && math.Abs(v) < step/2) {
			label = strconv.FormatFloat(0, 'f', decimals, 64)
		}
		ticks = append(ticks, tick{v: v, label: label, major: true})
	}
	return ticks
}

// plotArea maps data coordinates to the pixels of a rectangle.
type plotArea struct {
	r              image.Rectangle
	x0, x1, y0, y1 float64 // data range, in log10 for a log axis
	logY           bool
}

func (p plotArea) px(x float64) float64 {
	return float64(p.r.Min.X) + (x-p.x0)/(p.x1-p.x0)*float64(p.r.Dx())
}

func (p plotArea) py(y float64) float64 {
	if p.logY {
		y = math.Log10(y)
	}
	return float64(p.r.Max.Y) - (y-p.y0)/(p.y1-p.y0)*float64(p.r.Dy())
}

// Tick and layout sizes of the plots, in pixels.
const (
	majorTick = 6
	minorTick = 3
	plotPad   = 10 // outer margin
)

// LossPlot draws loss curves against steps, with a log-scale y axis: each series' raw points light,
// its EMA-smoothed line dark in the same hue, decade grid lines with minor ticks, axis labels, an
// optional title and, for several or named series, a legend in the top right corner.
// The line is the EMA of the loss itself, not of its log: it is a running mean, and with noisy
// losses it runs above the middle of the cloud of raw points on the log axis, as a mean lies
// above a median.
func LossPlot(series []Series, opts LossPlotOptions) (image.Image, error) {
	lp, err := newLossPlot(series, opts)
	if err != nil {
		return nil, err
	}
	return lp.draw(), nil
}

// curve is one series as drawn: the points that can be shown on a log scale and their EMA.
type curve struct{ x, raw, smooth []float64 }

// lossPlot is a LossPlot laid out, ready to draw.
type lossPlot struct {
	f              faces
	series         []Series
	curves         []curve
	area           plotArea
	xticks, yticks []tick
	width, height  int
	title          string
	xlabel, ylabel string
	legend         bool
}

func newLossPlot(series []Series, opts LossPlotOptions) (*lossPlot, error) {
	if len(series) == 0 {
		return nil, fmt.Errorf("viz: LossPlot: no series; pass at least one Series")
	}
	if len(series) > len(seriesColors) {
		return nil, fmt.Errorf("viz: LossPlot: %d series; at most %d can be told apart", len(series), len(seriesColors))
	}
	if opts.Smoothing >= 1 {
		return nil, fmt.Errorf("viz: LossPlot: smoothing %g: want a weight in [0, 1) (0: automatic; negative: none)", opts.Smoothing)
	}
	if opts.Width < 0 || opts.Height < 0 {
		return nil, fmt.Errorf("viz: LossPlot: size %dx%d: want sizes >= 0 (0: 720x440)", opts.Width, opts.Height)
	}
	curves := make([]curve, len(series))
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	legend := len(series) > 1
	for i, s := range series {
		if s.Steps != nil && len(s.Steps) != len(s.Loss) {
			return nil, fmt.Errorf("viz: LossPlot: series %d %q: %d steps for %d losses; pass one step per loss, or nil steps", i, s.Name, len(s.Steps), len(s.Loss))
		}
		legend = legend || s.Name != ""
		var cv curve
		for k, l := range s.Loss {
			x := float64(k)
			if s.Steps != nil {
				x = s.Steps[k]
			}
			if !(l > 0) || math.IsInf(l, 0) || math.IsNaN(x) || math.IsInf(x, 0) {
				continue
			}
			cv.x, cv.raw = append(cv.x, x), append(cv.raw, l)
			xlo, xhi = min(xlo, x), max(xhi, x)
			ylo, yhi = min(ylo, l), max(yhi, l)
		}
		cv.smooth = EMA(cv.raw, smoothing(opts.Smoothing, len(cv.raw)))
		curves[i] = cv
	}
	if math.IsInf(ylo, 1) {
		return nil, fmt.Errorf("viz: LossPlot: no finite loss > 0 in any series; a log scale cannot show the data")
	}
	if xhi == xlo {
		xlo, xhi = xlo-1, xhi+1
	}
	xpad := 0.02 * (xhi - xlo)
	xlo, xhi = xlo-xpad, xhi+xpad
	axisLo, axisHi, yticks := logAxis(ylo, yhi)
	xticks := linearTicks(xlo, xhi, 6)

	f, err := newFaces()
	if err != nil {
		return nil, err
	}
	width, height := opts.Width, opts.Height
	if width == 0 {
		width = 720
	}
	if height == 0 {
		height = 440
	}
	xlabel, ylabel := opts.XLabel, opts.YLabel
	if xlabel == "" {
		xlabel = "step"
	}
	if ylabel == "" {
		ylabel = "loss"
	}
	lh := lineHeight(f.body)
	tickW := 0
	for _, t := range yticks {
		tickW = max(tickW, textWidth(f.body, t.label))
	}
	titleH := 0
	if opts.Title != "" {
		titleH = lineHeight(f.title) + 8
	}
	r := image.Rect(plotPad+lh+8+tickW+majorTick+4, plotPad+titleH+lh/2,
		width-plotPad-textWidth(f.body, xticks[len(xticks)-1].label)/2, height-plotPad-lh-6-lh-majorTick-2)
	if r.Dx() < 50 || r.Dy() < 50 {
		return nil, fmt.Errorf("viz: LossPlot: size %dx%d leaves no room to plot; make it larger", width, height)
	}
	return &lossPlot{
		f:      f,
		series: series,
		curves: curves,
		area:   plotArea{r: r, x0: xlo, x1: xhi, y0: math.Log10(axisLo), y1: math.Log10(axisHi), logY: true},
		xticks: xticks,
		yticks: yticks,
		width:  width,
		height: height,
		title:  opts.Title,
		xlabel: xlabel,
		ylabel: ylabel,
		legend: legend,
	}, nil
}

func (lp *lossPlot) draw() *image.RGBA {
	p, r, lh := lp.area, lp.area.r, lineHeight(lp.f.body)
	cv := newCanvas(lp.f, lp.width, lp.height)
	if lp.title != "" {
		cv.text(cv.title, lp.title, (r.Min.X+r.Max.X)/2, plotPad, alignCenter)
	}
	for _, t := range lp.yticks {
		y := int(math.Round(p.py(t.v)))
		if t.major && y > r.Min.Y && y < r.Max.Y-1 {
			cv.hline(r.Min.X, r.Max.X-1, y, gridColor)
		}
	}
	for _, t := range lp.xticks {
		if x := int(math.Round(p.px(t.v))); x > r.Min.X && x < r.Max.X-1 {
			cv.vline(x, r.Min.Y, r.Max.Y-1, gridColor)
		}
	}
	for i, c := range lp.curves {
		raw := newMask(r)
		for k := range c.x {
			raw.disk(point{p.px(c.x[k]), p.py(c.raw[k])}, 1.3)
		}
		cv.paint(raw, lighten(seriesColors[i], 0.65))
	}
	for i, c := range lp.curves {
		line := newMask(r)
		for k := range c.x {
			q := point{p.px(c.x[k]), p.py(c.smooth[k])}
			if k == 0 {
				line.disk(q, 1)
				continue
			}
			line.segment(point{p.px(c.x[k-1]), p.py(c.smooth[k-1])}, q, 2)
		}
		cv.paint(line, seriesColors[i])
	}
	cv.frame(r, axisColor)
	for _, t := range lp.yticks {
		y := int(math.Round(p.py(t.v)))
		if y < r.Min.Y || y >= r.Max.Y {
			continue
		}
		length := minorTick
		if t.major {
			length = majorTick
		}
		cv.hline(r.Min.X-length, r.Min.X-1, y, axisColor)
		if t.label != "" {
			cv.text(cv.body, t.label, r.Min.X-majorTick-4, y-lh/2, alignRight)
		}
	}
	for _, t := range lp.xticks {
		x := int(math.Round(p.px(t.v)))
		if x < r.Min.X || x >= r.Max.X {
			continue
		}
		cv.vline(x, r.Max.Y, r.Max.Y+majorTick-1, axisColor)
		cv.text(cv.body, t.label, x, r.Max.Y+majorTick+2, alignCenter)
	}
	cv.text(cv.body, lp.xlabel, (r.Min.X+r.Max.X)/2, lp.height-plotPad-lh, alignCenter)
	cv.textUp(cv.body, lp.ylabel, plotPad+lh/2, (r.Min.Y+r.Max.Y)/2)
	if lp.legend {
		drawLegend(cv, r, lp.series)
	}
	return cv.RGBA
}

// drawLegend draws one entry per series, a line sample in its color and its name, in a framed
// box in the top right corner of r.
func drawLegend(cv *canvas, r image.Rectangle, series []Series) {
	const sample, inner = 22, 8
	lh := lineHeight(cv.body)
	w := 0
	for i, s := range series {
		w = max(w, textWidth(cv.body, legendName(s, i)))
	}
	box := image.Rect(r.Max.X-inner-2*inner-sample-6-w, r.Min.Y+inner, r.Max.X-inner, r.Min.Y+inner+2*6+len(series)*lh)
	fillRect(cv.RGBA, box, white)
	cv.frame(box, gridColor)
	for i, s := range series {
		y := box.Min.Y + 6 + i*lh
		line := newMask(box)
		line.segment(point{float64(box.Min.X + inner), float64(y) + float64(lh)/2}, point{float64(box.Min.X + inner + sample), float64(y) + float64(lh)/2}, 2)
		cv.paint(line, seriesColors[i])
		cv.text(cv.body, legendName(s, i), box.Min.X+inner+sample+6, y, alignLeft)
	}
}

// legendName is the legend entry of series i: its name, or "series i+1" when it has none.
func legendName(s Series, i int) string {
	if s.Name != "" {
		return s.Name
	}
	return "series " + strconv.Itoa(i+1)
}
