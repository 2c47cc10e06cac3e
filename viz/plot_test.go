package viz

import (
	"image"
	"math"
	"slices"
	"strings"
	"testing"
)

// darkPixels counts the pixels of img inside r whose channels are all below 100: text, axes and
// lines, not the light grid lines or raw points.
func darkPixels(img image.Image, r image.Rectangle) int {
	n := 0
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if c := rgbAt(img, x, y); c[0] < 100 && c[1] < 100 && c[2] < 100 {
				n++
			}
		}
	}
	return n
}

// nonWhite counts the pixels of img inside r darker than the grid lines.
func nonWhite(img image.Image, r image.Rectangle) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if c := rgbAt(img, x, y); min(c[0], c[1], c[2]) < gridColor.R {
				n++
			}
		}
	}
	return n
}

func TestLogAxis(t *testing.T) {
	for _, tc := range []struct {
		name           string
		lo, hi         float64
		axisLo, axisHi float64
		majors         []float64
		labels         []string
	}{
		{"0.02 to 1.5", 0.02, 1.5, 0.01, 2, []float64{0.01, 0.1, 1}, []string{"0.01", "0.1", "1"}},
		{"3e-4 to 0.1", 3e-4, 0.1, 2e-4, 0.2, []float64{0.001, 0.01, 0.1}, []string{"0.001", "0.01", "0.1"}},
		// Less than a decade of data is widened to one; with one decade inside, 2x and 5x are labelled.
		{"one decade inside", 0.028, 0.28, 0.02, 0.4, []float64{0.1}, []string{"0.02", "0.05", "0.1", "0.2"}},
		{"narrow", 0.05, 0.08, 0.01, 0.3, []float64{0.01, 0.1}, []string{"0.01", "0.1"}},
		{"large and small", 2e-6, 3e5, 5e-7, 2e6, []float64{1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000, 1e4, 1e5, 1e6},
			[]string{"1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1", "1", "10", "100", "1000", "10000", "100000", "1e+06"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi, ticks := logAxis(tc.lo, tc.hi)
			if lo != tc.axisLo || hi != tc.axisHi {
				t.Errorf("logAxis(%g, %g) range = [%g, %g]; want [%g, %g]", tc.lo, tc.hi, lo, hi, tc.axisLo, tc.axisHi)
			}
			if lo > tc.lo || hi < tc.hi {
				t.Errorf("range [%g, %g] does not hold the data [%g, %g]", lo, hi, tc.lo, tc.hi)
			}
			var majors []float64
			var labels []string
			for i, tk := range ticks {
				if tk.v < lo || tk.v > hi {
					t.Errorf("tick %g outside the range [%g, %g]", tk.v, lo, hi)
				}
				if i > 0 && tk.v <= ticks[i-1].v {
					t.Errorf("ticks not increasing: %g after %g", tk.v, ticks[i-1].v)
				}
				if tk.major {
					majors = append(majors, tk.v)
				}
				if tk.label != "" {
					labels = append(labels, tk.label)
				}
			}
			if !slices.Equal(majors, tc.majors) {
				t.Errorf("major ticks = %v; want %v", majors, tc.majors)
			}
			if !slices.Equal(labels, tc.labels) {
				t.Errorf("labels = %q; want %q", labels, tc.labels)
			}
			// Every m*10^k inside the range is a tick: minor ticks 2..9 between the decades.
			for k := math.Floor(math.Log10(lo)); k <= math.Ceil(math.Log10(hi)); k++ {
				for m := 1; m <= 9; m++ {
					v := decimal(m, int(k))
					if v >= lo && v <= hi && !slices.ContainsFunc(ticks, func(tk tick) bool { return tk.v == v }) {
						t.Errorf("no tick at %g", v)
					}
				}
			}
		})
	}
}

func TestLinearTicks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lo, hi float64
		target int
		labels []string
	}{
		{"steps", -100, 5100, 6, []string{"0", "1000", "2000", "3000", "4000", "5000"}},
		{"symmetric", -1.4, 1.4, 4, []string{"-1.0", "-0.5", "0.0", "0.5", "1.0"}},
		{"gaussian cloud", -4.3, 4.3, 4, []string{"-4", "-2", "0", "2", "4"}},
		{"small", 0.0012, 0.0049, 4, []string{"0.002", "0.003", "0.004"}},
		{"degenerate", 3, 3, 4, []string{"3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var labels []string
			for _, tk := range linearTicks(tc.lo, tc.hi, tc.target) {
				labels = append(labels, tk.label)
			}
			if !slices.Equal(labels, tc.labels) {
				t.Errorf("linearTicks(%g, %g, %d) = %q; want %q", tc.lo, tc.hi, tc.target, labels, tc.labels)
			}
		})
	}
}

func TestEMA(t *testing.T) {
	for _, tc := range []struct {
		name string
		xs   []float64
		beta float64
		want []float64
	}{
		{"beta 0 copies", []float64{3, 1, 2}, 0, []float64{3, 1, 2}},
		{"debiased: a constant stays constant", []float64{2, 2, 2, 2}, 0.9, []float64{2, 2, 2, 2}},
		// m0 = 0.5, s0 = 0.5/0.5 = 1; m1 = 0.25, s1 = 0.25/0.75 = 1/3.
		{"two steps", []float64{1, 0}, 0.5, []float64{1, 1.0 / 3}},
		{"empty", nil, 0.9, []float64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := EMA(tc.xs, tc.beta)
			if len(got) != len(tc.want) {
				t.Fatalf("EMA(%v, %g) = %v; want %v", tc.xs, tc.beta, got, tc.want)
			}
			for i := range got {
				if math.Abs(got[i]-tc.want[i]) > 1e-12 {
					t.Errorf("EMA(%v, %g) = %v; want %v", tc.xs, tc.beta, got, tc.want)
					break
				}
			}
		})
	}
}

func TestSmoothing(t *testing.T) {
	for _, tc := range []struct {
		opt  float64
		n    int
		want float64
	}{
		{0, 100, 0.9}, {0, 500, 0.9}, {0, 5000, 0.99}, {0.5, 5000, 0.5}, {-1, 5000, 0},
	} {
		if got := smoothing(tc.opt, tc.n); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("smoothing(%g, %d) = %g; want %g", tc.opt, tc.n, got, tc.want)
		}
	}
}

func TestLossPlot(t *testing.T) {
	flat := Series{Loss: slices.Repeat([]float64{0.1}, 50)}
	steps := make([]float64, 200)
	falling := make([]float64, 200)
	for i := range steps {
		steps[i] = float64(10 * i)
		falling[i] = 0.02 + 1.5*math.Exp(-float64(i)/30)
	}
	for _, tc := range []struct {
		name          string
		series        []Series
		opts          LossPlotOptions
		width, height int
	}{
		{"default size", []Series{flat}, LossPlotOptions{Title: "loss"}, 720, 440},
		{"custom size", []Series{{Steps: steps, Loss: falling}}, LossPlotOptions{Width: 500, Height: 300}, 500, 300},
		{"two series", []Series{{Name: "fp32", Steps: steps, Loss: falling}, {Name: "bf16", Steps: steps, Loss: falling[:200:200]}}, LossPlotOptions{}, 720, 440},
		{"bad points skipped", []Series{{Loss: []float64{1, math.NaN(), 0, -1, math.Inf(1), 0.5}}}, LossPlotOptions{Smoothing: -1}, 720, 440},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := LossPlot(tc.series, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := img.Bounds().Size(); got != image.Pt(tc.width, tc.height) {
				t.Errorf("size = %v; want %dx%d", got, tc.width, tc.height)
			}
		})
	}

	t.Run("text and a blank region", func(t *testing.T) {
		lp, err := newLossPlot([]Series{flat}, LossPlotOptions{Title: "a title"})
		if err != nil {
			t.Fatal(err)
		}
		img := lp.draw()
		r := lp.area.r
		if n := darkPixels(img, image.Rect(r.Min.X, 0, r.Max.X, r.Min.Y)); n < 20 {
			t.Errorf("title band holds %d dark pixels; want the title drawn", n)
		}
		if n := darkPixels(img, image.Rect(0, r.Min.Y, r.Min.X-majorTick, r.Max.Y)); n < 40 {
			t.Errorf("left of the plot holds %d dark pixels; want tick labels and \"loss\"", n)
		}
		if n := darkPixels(img, image.Rect(r.Min.X, r.Max.Y+majorTick, r.Max.X, img.Rect.Max.Y)); n < 40 {
			t.Errorf("below the plot holds %d dark pixels; want tick labels and \"step\"", n)
		}
		// The loss is 0.1 everywhere: the plot is empty above and below the line, apart from grid lines.
		y := int(math.Round(lp.area.py(0.1)))
		above := image.Rect(r.Min.X+1, r.Min.Y+1, r.Max.X-1, y-4)
		below := image.Rect(r.Min.X+1, y+5, r.Max.X-1, r.Max.Y-1)
		for name, blank := range map[string]image.Rectangle{"above": above, "below": below} {
			if blank.Dy() < 50 {
				t.Fatalf("region %s %v is too small to test", name, blank)
			}
			if n := nonWhite(img, blank); n != 0 {
				t.Errorf("%d pixels darker than the grid %s the line in %v; want none", n, name, blank)
			}
		}
		mid, onLine := (r.Min.X+r.Max.X)/2, false
		for dy := -2; dy <= 2; dy++ {
			onLine = onLine || rgbAt(img, mid, y+dy) == [3]uint8{seriesColors[0].R, seriesColors[0].G, seriesColors[0].B}
		}
		if !onLine {
			t.Errorf("no pixel of the series color %v at x = %d, y = %d +- 2; want the line", seriesColors[0], mid, y)
		}
		// The smoothed line at 0.1 lies on the decade grid line; the y label of 0.1 is beside it.
		if n := darkPixels(img, image.Rect(r.Min.X-majorTick-40, y-8, r.Min.X-majorTick, y+8)); n < 10 {
			t.Errorf("no label \"0.1\" left of the line: %d dark pixels", n)
		}
	})

	t.Run("a falling loss falls", func(t *testing.T) {
		lp, err := newLossPlot([]Series{{Steps: steps, Loss: falling}}, LossPlotOptions{})
		if err != nil {
			t.Fatal(err)
		}
		img := lp.draw()
		r := lp.area.r
		// The topmost pixel of the series color in a column near each end of the curve.
		top := func(x int) int {
			for y := r.Min.Y; y < r.Max.Y; y++ {
				if rgbAt(img, x, y) == [3]uint8{seriesColors[0].R, seriesColors[0].G, seriesColors[0].B} {
					return y
				}
			}
			t.Fatalf("no pixel of the series color in column %d", x)
			return 0
		}
		left, right := top(int(lp.area.px(steps[2]))), top(int(lp.area.px(steps[len(steps)-3])))
		if wantLeft := lp.area.py(falling[2]); math.Abs(float64(left)-wantLeft) > 4 {
			t.Errorf("line at step %g is at y = %d; want about %.0f (loss %.3g)", steps[2], left, wantLeft, falling[2])
		}
		if left >= right-100 {
			t.Errorf("line starts at y = %d and ends at y = %d; want it to fall (y growing downwards)", left, right)
		}
	})

	t.Run("legend only with names or several series", func(t *testing.T) {
		for _, tc := range []struct {
			series []Series
			legend bool
		}{
			{[]Series{flat}, false},
			{[]Series{{Name: "fp32", Loss: flat.Loss}}, true},
			{[]Series{flat, flat}, true},
		} {
			lp, err := newLossPlot(tc.series, LossPlotOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if lp.legend != tc.legend {
				t.Errorf("%d series, name %q: legend = %v; want %v", len(tc.series), tc.series[0].Name, lp.legend, tc.legend)
			}
			img := lp.draw()
			r := lp.area.r
			corner := image.Rect(r.Max.X-120, r.Min.Y+1, r.Max.X-1, r.Min.Y+60)
			if got := darkPixels(img, corner) > 10; got != tc.legend {
				t.Errorf("%d series, name %q: text in the top right corner = %v; want %v", len(tc.series), tc.series[0].Name, got, tc.legend)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			series []Series
			opts   LossPlotOptions
			want   string
		}{
			{"no series", nil, LossPlotOptions{}, "no series"},
			{"steps mismatch", []Series{{Steps: []float64{1, 2}, Loss: []float64{1}}}, LossPlotOptions{}, "2 steps for 1 losses"},
			{"nothing positive", []Series{{Loss: []float64{0, -1, math.NaN()}}}, LossPlotOptions{}, "no finite loss > 0"},
			{"smoothing 1", []Series{flat}, LossPlotOptions{Smoothing: 1}, "smoothing 1"},
			{"too small", []Series{flat}, LossPlotOptions{Width: 90, Height: 90}, "no room"},
			{"too many series", slices.Repeat([]Series{flat}, len(seriesColors)+1), LossPlotOptions{}, "at most"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := LossPlot(tc.series, tc.opts)
				if err == nil || !strings.HasPrefix(err.Error(), "viz: LossPlot: ") || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("LossPlot error = %v; want one containing %q", err, tc.want)
				}
			})
		}
	})
}
