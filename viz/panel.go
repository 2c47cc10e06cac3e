package viz

import (
	"fmt"
	"image"
	"strconv"
)

// A TrainingRow is one training example at timestep T, each image [C,H,W] in model space:
// the data X0, the noise Eps, the noised x_t = sqrt(AlphaBar)*X0 + sqrt(1-AlphaBar)*Eps
// (Ho et al. 2020, arXiv:2006.11239v2, Eq. 4) and the model's prediction EpsHat.
type TrainingRow struct {
	T        int
	AlphaBar float64
	X0       []float32
	Eps      []float32
	Xt       []float32
	EpsHat   []float32
}

// TrainingPanelOptions lays out TrainingPanel. The zero value is ready to use.
type TrainingPanelOptions struct {
	// Scale is the integer upscale factor of each image; 0 means the smallest that makes an image
	// at least 48 px wide.
	Scale int
	// NoiseRange is the half-width of the range the noise columns (eps, eps_hat, eps_hat - eps)
	// are shown on: [-NoiseRange, NoiseRange] maps to black..white. 0 means 3 (three standard
	// deviations of N(0, 1)). One range for the three columns, so that the error column compares
	// with the noise at sight.
	NoiseRange float64
	// Title is written above the panel; empty means none.
	Title string
}

// Column headers of the training panel.
var panelHeaders = []string{"x0", "eps", "x_t", "eps_hat", "eps_hat - eps"}

// TrainingPanel draws what one training step of DDPM sees: one row per timestep,
//
//	x0 | eps | x_t | eps_hat | eps_hat - eps
//
// under column headers, and right of each row its t, alphaBar_t and the loss
// mean((eps_hat - eps)^2) over the row's C*H*W values (the simple loss, Ho et al. 2020, Eq. 14).
// x0 and x_t are shown on [-1, 1], the three noise columns on [-NoiseRange, NoiseRange].
func TrainingPanel(rows []TrainingRow, c, h, w int, opts TrainingPanelOptions) (image.Image, error) {
	if len(rows) == 0 {
		return nil, fmt.Errorf("viz: TrainingPanel: no rows; pass one TrainingRow per timestep to show")
	}
	if opts.Scale < 0 || opts.NoiseRange < 0 {
		return nil, fmt.Errorf("viz: TrainingPanel: scale %d, noise range %g: both must be >= 0 (0: default)", opts.Scale, opts.NoiseRange)
	}
	diffs := make([][]float32, len(rows))
	losses := make([]float64, len(rows))
	for i, r := range rows {
		for _, im := range []struct {
			name string
			data []float32
		}{{"X0", r.X0}, {"Eps", r.Eps}, {"Xt", r.Xt}, {"EpsHat", r.EpsHat}} {
			if err := checkImages(fmt.Sprintf("TrainingPanel row %d (t=%d) %s", i, r.T, im.name), im.data, 1, c, h, w); err != nil {
				return nil, err
			}
		}
		diffs[i] = make([]float32, len(r.Eps))
		for k := range r.Eps {
			diffs[i][k] = r.EpsHat[k] - r.Eps[k]
		}
		losses[i] = meanSquare(diffs[i])
	}
	scale := opts.Scale
	if scale == 0 {
		scale = max(1, (minCell+w-1)/w)
	}
	noise := float32(opts.NoiseRange)
	if noise == 0 {
		noise = 3
	}
	f, err := newFaces()
	if err != nil {
		return nil, err
	}
	info := make([][]string, len(rows))
	for i, r := range rows {
		info[i] = []string{
			"t=" + strconv.Itoa(r.T),
			"alphaBar=" + strconv.FormatFloat(r.AlphaBar, 'g', 4, 64),
			"loss=" + strconv.FormatFloat(losses[i], 'g', 4, 64),
		}
	}
	footnote := fmt.Sprintf("x0, x_t shown on [-1, 1]; eps, eps_hat, eps_hat - eps on [-%g, %g]", noise, noise)
	l := layoutPanel(f, len(rows), w*scale, h*scale, info, opts.Title, footnote)

	cv := newCanvas(f, l.width, l.height)
	if opts.Title != "" {
		cv.text(cv.title, opts.Title, l.width/2, panelMargin, alignCenter)
	}
	for j, hd := range panelHeaders {
		cv.text(cv.body, hd, (l.col(j).Min.X+l.col(j).Max.X)/2, panelMargin+l.titleH, alignCenter)
	}
	lh := lineHeight(cv.body)
	for i, r := range rows {
		cells := []struct {
			data []float32
			span float32
		}{{r.X0, 1}, {r.Eps, noise}, {r.Xt, 1}, {r.EpsHat, noise}, {diffs[i], noise}}
		for j, cell := range cells {
			at := l.cell(i, j).Min
			blit(cv.RGBA, at.X, at.Y, cell.data, 0, c, h, w, scale, cell.span)
		}
		y := l.top + i*(l.rowH+panelGap) + (l.rowH-len(info[i])*lh)/2
		for k, s := range info[i] {
			cv.text(cv.body, s, l.infoX, y+k*lh, alignLeft)
		}
	}
	cv.text(cv.body, footnote, panelMargin, l.height-panelMargin-lh, alignLeft)
	return cv.RGBA, nil
}

// Gaps of the training panel, in pixels.
const (
	panelMargin = 10
	panelGap    = 6 // between columns and between rows
)

// panelLayout places the cells of TrainingPanel.
type panelLayout struct {
	width, height int
	top           int   // of the first row
	colX, colW    []int // left edge and width of each column
	cw, ch        int   // image size after upscaling
	rowH          int   // at least ch, tall enough for the three lines of text
	infoX         int   // left edge of the text of each row
	titleH        int
}

func layoutPanel(f faces, rows, cw, ch int, info [][]string, title, footnote string) panelLayout {
	l := panelLayout{cw: cw, ch: ch}
	lh := lineHeight(f.body)
	if title != "" {
		l.titleH = lineHeight(f.title) + 6
	}
	x := panelMargin
	for _, hd := range panelHeaders {
		w := max(cw, textWidth(f.body, hd)+4)
		l.colX, l.colW = append(l.colX, x), append(l.colW, w)
		x += w + panelGap
	}
	l.infoX = x + 2
	infoW, lines := 0, 0
	for _, row := range info {
		lines = max(lines, len(row))
		for _, s := range row {
			infoW = max(infoW, textWidth(f.body, s))
		}
	}
	l.rowH = max(ch, lines*lh)
	l.top = panelMargin + l.titleH + lh + 4
	l.width = max(l.infoX+infoW+panelMargin, 2*panelMargin+textWidth(f.title, title), 2*panelMargin+textWidth(f.body, footnote))
	l.height = l.top + rows*l.rowH + (rows-1)*panelGap + 6 + lh + panelMargin
	return l
}

// col is the rectangle of column j's header and cells, one row high, in row 0.
func (l panelLayout) col(j int) image.Rectangle {
	return image.Rect(l.colX[j], l.top, l.colX[j]+l.colW[j], l.top+l.rowH)
}

// cell is the rectangle of the image in row i, column j.
func (l panelLayout) cell(i, j int) image.Rectangle {
	x := l.colX[j] + (l.colW[j]-l.cw)/2
	y := l.top + i*(l.rowH+panelGap) + (l.rowH-l.ch)/2
	return image.Rect(x, y, x+l.cw, y+l.ch)
}

// meanSquare is mean(d^2), accumulated in float64.
func meanSquare(d []float32) float64 {
	var sum float64
	for _, v := range d {
		sum += float64(v) * float64(v)
	}
	return sum / float64(len(d))
}
