package viz

import (
	"fmt"
	"image"
	"image/gif"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// uniform reports whether every pixel of img in r is the gray v.
func uniform(img image.Image, r image.Rectangle, v uint8) error {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if got := rgbAt(img, x, y); got != [3]uint8{v, v, v} {
				return fmt.Errorf("(%d,%d) = %v; want gray %d", x, y, got, v)
			}
		}
	}
	return nil
}

// trajectory returns frames for n images 2x3 ([n,1,2,3]) where x_t of frame j, sample i is the
// constant xtValue(j, i) and x0Hat the negative of it.
func trajectory(ts []int, n int, withX0 bool) []Frame {
	var frames []Frame
	for j, t := range ts {
		vals := make([]float32, n)
		neg := make([]float32, n)
		for i := range vals {
			vals[i] = xtValue(j, i)
			neg[i] = -vals[i]
		}
		f := Frame{T: t, Xt: constantImages(vals, 1, 2, 3)}
		if withX0 {
			f.X0Hat = constantImages(neg, 1, 2, 3)
		}
		frames = append(frames, f)
	}
	return frames
}

func xtValue(j, i int) float32 { return float32(j*3+i)/10 - 0.9 }

func TestTrajectory(t *testing.T) {
	ts := []int{999, 500, 0}
	for _, tc := range []struct {
		name   string
		n      int
		withX0 bool
		opts   TrajectoryOptions
		scale  int
	}{
		{"x_t and x0_hat, automatic scale", 2, true, TrajectoryOptions{}, 16}, // 3 px wide: 16*3 = 48
		{"x_t only, scale 20, title", 3, false, TrajectoryOptions{Scale: 20, Title: "reverse"}, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames := trajectory(ts, tc.n, tc.withX0)
			img, err := Trajectory(frames, tc.n, 1, 2, 3, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			f, err := newFaces()
			if err != nil {
				t.Fatal(err)
			}
			l := layoutStrip(f, frames, tc.n, 3, 2, tc.scale, tc.withX0, tc.opts.Title)
			if img.Bounds() != image.Rect(0, 0, l.width, l.height) {
				t.Fatalf("size %v; want %dx%d", img.Bounds(), l.width, l.height)
			}
			// Per sample: two rows (x_t, x0_hat) or one, each 2*scale high.
			rows := 1
			if tc.withX0 {
				rows = 2
			}
			wantH := tc.n*(rows*2*tc.scale+(rows-1)*pairGap) + (tc.n-1)*sampleGap
			if got := l.cell(0, tc.n-1, rows-1).Max.Y - l.cell(0, 0, 0).Min.Y; got != wantH {
				t.Errorf("cells span %d px high; want %d", got, wantH)
			}
			if got := l.cell(len(ts)-1, 0, 0).Min.X - l.cell(0, 0, 0).Min.X; got != (len(ts)-1)*(l.colW+colGap) {
				t.Errorf("columns span %d px; want %d", got, (len(ts)-1)*(l.colW+colGap))
			}
			for j := range ts {
				for i := 0; i < tc.n; i++ {
					v := toByte(xtValue(j, i))
					if err := uniform(img, l.cell(j, i, 0), v); err != nil {
						t.Errorf("x_t of frame %d sample %d: %v", j, i, err)
					}
					if tc.withX0 {
						if err := uniform(img, l.cell(j, i, 1), toByte(-xtValue(j, i))); err != nil {
							t.Errorf("x0_hat of frame %d sample %d: %v", j, i, err)
						}
					}
				}
				// The "t=..." header above each column.
				top := l.cell(j, 0, 0)
				header := image.Rect(top.Min.X, top.Min.Y-lineHeight(f.body)-4, top.Max.X, top.Min.Y)
				if n := darkPixels(img, header); n < 10 {
					t.Errorf("header of column %d (t=%d) holds %d dark pixels; want its label", j, ts[j], n)
				}
			}
			// Row labels left of the first column; nothing dark right of the last.
			first := l.cell(0, 0, 0)
			if n := darkPixels(img, image.Rect(0, first.Min.Y, first.Min.X, first.Max.Y)); n < 10 {
				t.Errorf("row label x_t holds %d dark pixels; want text", n)
			}
			last := l.cell(len(ts)-1, 0, 0)
			if n := darkPixels(img, image.Rect(last.Max.X+1, 0, l.width, l.height)); n != 0 {
				t.Errorf("%d dark pixels right of the last column; want none", n)
			}
		})
	}
}

func TestTrajectoryGIF(t *testing.T) {
	ts := []int{999, 750, 500, 250, 0}
	for _, tc := range []struct {
		name   string
		n      int
		withX0 bool
	}{{"x_t and x0_hat", 5, true}, {"x_t only", 4, false}} {
		t.Run(tc.name, func(t *testing.T) {
			frames := trajectory(ts, tc.n, tc.withX0)
			imgs, err := TrajectoryGIF(frames, tc.n, 1, 2, 3, TrajectoryOptions{Scale: 4})
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) != len(ts) {
				t.Fatalf("%d pictures; want one per frame, %d", len(imgs), len(ts))
			}
			f, err := newFaces()
			if err != nil {
				t.Fatal(err)
			}
			grids := 1
			if tc.withX0 {
				grids = 2
			}
			l := layoutGIF(f, frames, tc.n, 3, 2, 4, grids, "")
			for j, img := range imgs {
				if img.Bounds() != imgs[0].Bounds() {
					t.Fatalf("picture %d is %v, picture 0 %v; want one size", j, img.Bounds(), imgs[0].Bounds())
				}
				for i := 0; i < tc.n; i++ {
					if err := uniform(img, l.cell(0, i), toByte(xtValue(j, i))); err != nil {
						t.Errorf("frame %d x_t sample %d: %v", j, i, err)
					}
					if tc.withX0 {
						if err := uniform(img, l.cell(1, i), toByte(-xtValue(j, i))); err != nil {
							t.Errorf("frame %d x0_hat sample %d: %v", j, i, err)
						}
					}
				}
				if n := darkPixels(img, image.Rect(0, 0, l.width, stripMargin+l.titleH)); n < 10 {
					t.Errorf("frame %d: %d dark pixels in the title band; want \"t=%d\"", j, n, ts[j])
				}
			}
			path := filepath.Join(t.TempDir(), "traj.gif")
			if err := WriteGIF(path, imgs, 20); err != nil {
				t.Fatal(err)
			}
			if n := decodedGIFFrames(t, path); n != len(ts) {
				t.Errorf("decoded %d frames; want %d", n, len(ts))
			}
		})
	}
}

func TestTrajectoryErrors(t *testing.T) {
	good := trajectory([]int{9, 0}, 2, true)
	mixed := trajectory([]int{9, 0}, 2, true)
	mixed[1].X0Hat = nil
	short := trajectory([]int{9, 0}, 2, false)
	short[1].Xt = short[1].Xt[:5]
	for _, tc := range []struct {
		name   string
		frames []Frame
		opts   TrajectoryOptions
		want   string
	}{
		{"no frames", nil, TrajectoryOptions{}, "no frames"},
		{"x0Hat in some frames", mixed, TrajectoryOptions{}, "set it in all or none"},
		{"short Xt", short, TrajectoryOptions{}, "frame 1 (t=0) Xt"},
		{"negative scale", good, TrajectoryOptions{Scale: -2}, "scale -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for fn, draw := range map[string]func() error{
				"Trajectory":    func() error { _, err := Trajectory(tc.frames, 2, 1, 2, 3, tc.opts); return err },
				"TrajectoryGIF": func() error { _, err := TrajectoryGIF(tc.frames, 2, 1, 2, 3, tc.opts); return err },
			} {
				if err := draw(); err == nil || !strings.HasPrefix(err.Error(), "viz: ") || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s error = %v; want one containing %q", fn, err, tc.want)
				}
			}
		})
	}
}

func TestTrainingPanel(t *testing.T) {
	const c, h, w = 3, 2, 2
	fill := func(v float32) []float32 { return constantImages([]float32{v}, c, h, w) }
	rows := []TrainingRow{
		{T: 10, AlphaBar: 0.99, X0: fill(0.5), Eps: fill(1.5), Xt: fill(-0.5), EpsHat: fill(1.8)},
		{T: 900, AlphaBar: 0.0003, X0: fill(-1), Eps: fill(-3), Xt: fill(2), EpsHat: fill(-6)},
	}
	for _, tc := range []struct {
		name  string
		opts  TrainingPanelOptions
		noise float32
	}{
		{"defaults", TrainingPanelOptions{}, 3},
		{"noise range 2, title", TrainingPanelOptions{NoiseRange: 2, Title: "a training step", Scale: 30}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := TrainingPanel(rows, c, h, w, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			f, err := newFaces()
			if err != nil {
				t.Fatal(err)
			}
			scale := max(tc.opts.Scale, minCell/w)
			info := [][]string{{"t=10", "alphaBar=0.99", "loss=0.09"}, {"t=900", "alphaBar=0.0003", "loss=9"}}
			l := layoutPanel(f, len(rows), w*scale, h*scale, info, tc.opts.Title, "")
			if img.Bounds().Dy() != l.height {
				t.Errorf("height %d; want %d", img.Bounds().Dy(), l.height)
			}
			for i, r := range rows {
				// x0 and x_t on [-1, 1]; eps, eps_hat and their difference on [-noise, noise].
				want := []uint8{
					toByte(r.X0[0]), toByte(r.Eps[0] / tc.noise), toByte(r.Xt[0]),
					toByte(r.EpsHat[0] / tc.noise), toByte((r.EpsHat[0] - r.Eps[0]) / tc.noise),
				}
				for j, v := range want {
					if err := uniform(img, l.cell(i, j), v); err != nil {
						t.Errorf("row %d (t=%d) column %s: %v", i, r.T, panelHeaders[j], err)
					}
				}
				y := l.cell(i, 0)
				if n := darkPixels(img, image.Rect(l.infoX, y.Min.Y, img.Bounds().Max.X, y.Max.Y)); n < 30 {
					t.Errorf("row %d: %d dark pixels right of the images; want t, alphaBar and the loss", i, n)
				}
			}
			for j := range panelHeaders {
				col := l.col(j)
				if n := darkPixels(img, image.Rect(col.Min.X, l.top-lineHeight(f.body)-4, col.Max.X, l.top)); n < 5 {
					t.Errorf("header %q: %d dark pixels; want its text", panelHeaders[j], n)
				}
			}
		})
	}
	t.Run("loss", func(t *testing.T) {
		// (1.8 - 1.5)^2 = 0.09 and (-6 - -3)^2 = 9, the same at every element.
		for i, want := range []float64{0.09, 9} {
			d := make([]float32, len(rows[i].Eps))
			for k := range d {
				d[k] = rows[i].EpsHat[k] - rows[i].Eps[k]
			}
			if got := meanSquare(d); math.Abs(got-want) > 1e-6 {
				t.Errorf("loss of row %d = %g; want %g", i, got, want)
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		bad := []TrainingRow{rows[0]}
		bad[0].EpsHat = bad[0].EpsHat[:3]
		for _, tc := range []struct {
			name string
			rows []TrainingRow
			opts TrainingPanelOptions
			want string
		}{
			{"no rows", nil, TrainingPanelOptions{}, "no rows"},
			{"short EpsHat", bad, TrainingPanelOptions{}, "row 0 (t=10) EpsHat"},
			{"negative noise range", rows, TrainingPanelOptions{NoiseRange: -1}, "noise range -1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := TrainingPanel(tc.rows, c, h, w, tc.opts)
				if err == nil || !strings.HasPrefix(err.Error(), "viz: ") || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("TrainingPanel error = %v; want one containing %q", err, tc.want)
				}
			})
		}
	})
}

func TestScatter(t *testing.T) {
	limits := [4]float64{-1, 1, -1, 1}
	t.Run("sizes", func(t *testing.T) {
		size := func(n, cols, panel int) image.Point {
			img, err := Scatter(make([]ScatterPanel, n), ScatterOptions{Limits: limits, Cols: cols, PanelSize: panel})
			if err != nil {
				t.Fatal(err)
			}
			return img.Bounds().Size()
		}
		two, three := size(2, 0, 0), size(3, 0, 0)
		if three.X-two.X != 240+scatterGap || three.Y != two.Y {
			t.Errorf("3 panels %v, 2 panels %v; want one more 240 px panel and gap to the right", three, two)
		}
		ten, wrapped := size(10, 0, 100), size(10, 5, 100)
		if ten.X-wrapped.X != 5*(100+scatterGap) || wrapped.Y <= ten.Y+100 {
			t.Errorf("10 panels in a strip %v, in 2 rows of 5 %v; want 5 panels narrower and a row taller", ten, wrapped)
		}
	})
	t.Run("points land where their coordinates say", func(t *testing.T) {
		panels := []ScatterPanel{
			{Title: "data", XY: []float32{0.5, 0.5}},                  // upper right
			{Title: "samples", XY: []float32{-0.5, -0.5, 3, 0, 0, 7}}, // lower left; two outside the limits
		}
		img, err := Scatter(panels, ScatterOptions{Limits: limits, PointRadius: 3})
		if err != nil {
			t.Fatal(err)
		}
		f, err := newFaces()
		if err != nil {
			t.Fatal(err)
		}
		l := layoutScatter(f, 2, 2, 240, "", linearTicks(-1, 1, 4), linearTicks(-1, 1, 4))
		blue := func(r image.Rectangle) (n int, centre image.Point) {
			for y := r.Min.Y; y < r.Max.Y; y++ {
				for x := r.Min.X; x < r.Max.X; x++ {
					if c := rgbAt(img, x, y); int(c[2])-int(c[0]) > 60 {
						n++
						centre = centre.Add(image.Pt(x, y))
					}
				}
			}
			if n > 0 {
				centre = centre.Div(n)
			}
			return n, centre
		}
		for i, want := range []image.Point{{180, 60}, {60, 180}} { // 0.5 is 3/4 of 240 px from the left
			r := l.panel(i)
			n, centre := blue(r)
			if n == 0 || n > 40 {
				t.Fatalf("panel %d: %d blue pixels; want one dot of radius 3", i, n)
			}
			if d := centre.Sub(r.Min).Sub(want); d.X*d.X+d.Y*d.Y > 2 {
				t.Errorf("panel %d: dot at %v in the panel; want %v", i, centre.Sub(r.Min), want)
			}
			if n := darkPixels(img, image.Rect(r.Min.X, r.Min.Y-lineHeight(f.body)-4, r.Max.X, r.Min.Y)); n < 10 {
				t.Errorf("panel %d: %d dark pixels above it; want its title", i, n)
			}
		}
		if n, _ := blue(img.Bounds()); n > 80 {
			t.Errorf("%d blue pixels in all; want only the two dots inside the limits", n)
		}
	})
	t.Run("automatic limits are square and hold the points", func(t *testing.T) {
		lim, ok := autoLimits([]ScatterPanel{{XY: []float32{0, 0, 4, 1, float32(math.NaN()), 2}}, {XY: []float32{2, -1}}})
		if !ok {
			t.Fatal("autoLimits found no point")
		}
		if math.Abs((lim[1]-lim[0])-(lim[3]-lim[2])) > 1e-9 || lim[0] >= 0 || lim[1] <= 4 || lim[2] >= -1 || lim[3] <= 1 {
			t.Errorf("autoLimits = %v; want a square holding x in [0, 4] and y in [-1, 1]", lim)
		}
		if _, ok := autoLimits([]ScatterPanel{{XY: []float32{float32(math.Inf(1)), 0}}}); ok {
			t.Error("autoLimits of no finite point: ok = true; want false")
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			panels []ScatterPanel
			opts   ScatterOptions
			want   string
		}{
			{"no panels", nil, ScatterOptions{}, "no panels"},
			{"odd length", []ScatterPanel{{XY: []float32{1, 2, 3}}}, ScatterOptions{}, "even number"},
			{"no finite point", []ScatterPanel{{XY: []float32{float32(math.NaN()), 0}}}, ScatterOptions{}, "no finite point"},
			{"bad limits", []ScatterPanel{{}}, ScatterOptions{Limits: [4]float64{1, 0, 0, 1}}, "xmin < xmax"},
			{"tiny panels", []ScatterPanel{{}}, ScatterOptions{Limits: limits, PanelSize: 20}, "at least 60"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := Scatter(tc.panels, tc.opts)
				if err == nil || !strings.HasPrefix(err.Error(), "viz: Scatter: ") || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Scatter error = %v; want one containing %q", err, tc.want)
				}
			})
		}
	})
}

// decodedGIFFrames decodes the GIF at path and returns its number of frames.
func decodedGIFFrames(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := gif.DecodeAll(f)
	if err != nil {
		t.Fatalf("gif.DecodeAll %s: %v", path, err)
	}
	return len(g.Image)
}
