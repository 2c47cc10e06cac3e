//go:build gallery

package viz

import (
	"image"
	"image/draw"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/image/font"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// TestGallery renders every picture with synthetic data into the directory named by
// DDPM_VIZ_GALLERY (for example /tmp/viz), for a person to look at. It is a generator, not a check,
// so it builds only with the gallery tag:
//
//	DDPM_VIZ_GALLERY=/tmp/viz go test -tags gallery ./viz/ -run Gallery
func TestGallery(t *testing.T) {
	dir := os.Getenv("DDPM_VIZ_GALLERY")
	if dir == "" {
		t.Fatal("set DDPM_VIZ_GALLERY to a directory to render the gallery into")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	png := func(name string, img image.Image, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := WritePNG(filepath.Join(dir, name), img); err != nil {
			t.Fatal(err)
		}
	}

	digits := syntheticDigits(t, 64, rng)
	img, err := Grid(digits, 64, 1, 28, 28, 8, GridOptions{Padding: 2, Scale: 2})
	png("grid_mnist.png", img, err)

	rgb := syntheticRGB(16, 32, rng)
	img, err = Grid(rgb, 16, 3, 32, 32, 4, GridOptions{Padding: 2, Scale: 2})
	png("grid_rgb.png", img, err)

	// A pretend reverse process: x_t = sqrt(alphaBar) x0 + sqrt(1-alphaBar) eps, and an x0 estimate
	// that is x0 plus noise shrinking with t.
	alphaBar := linearAlphaBar(1000)
	const n = 4
	x0 := digits[:n*28*28]
	eps := gaussian(len(x0), rng)
	var frames []Frame
	for _, step := range []int{999, 888, 777, 666, 555, 444, 333, 222, 111, 0} {
		ab := alphaBar[step]
		xt := make([]float32, len(x0))
		x0Hat := make([]float32, len(x0))
		for k := range x0 {
			xt[k] = float32(math.Sqrt(ab))*x0[k] + float32(math.Sqrt(1-ab))*eps[k]
			x0Hat[k] = x0[k] + float32(0.8*math.Sqrt(1-ab))*eps[(k+97)%len(eps)]
		}
		frames = append(frames, Frame{T: step, Xt: xt, X0Hat: x0Hat})
	}
	img, err = Trajectory(frames, n, 1, 28, 28, TrajectoryOptions{Title: "DDPM reverse process"})
	png("trajectory.png", img, err)
	gifFrames, err := TrajectoryGIF(frames, n, 1, 28, 28, TrajectoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteGIF(filepath.Join(dir, "trajectory.gif"), gifFrames, 30); err != nil {
		t.Fatal(err)
	}
	png("trajectory_gif_frame0.png", gifFrames[0], nil)
	rgbFrames := make([]Frame, len(frames))
	rgbEps := gaussian(4*3*32*32, rng)
	for i, fr := range frames {
		ab := alphaBar[fr.T]
		xt := make([]float32, len(rgbEps))
		for k := range xt {
			xt[k] = float32(math.Sqrt(ab))*rgb[k] + float32(math.Sqrt(1-ab))*rgbEps[k]
		}
		rgbFrames[i] = Frame{T: fr.T, Xt: xt}
	}
	gifFrames, err = TrajectoryGIF(rgbFrames, 4, 3, 32, 32, TrajectoryOptions{Title: "RGB"})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteGIF(filepath.Join(dir, "trajectory_rgb.gif"), gifFrames, 30); err != nil {
		t.Fatal(err)
	}

	var rows []TrainingRow
	for i, step := range []int{10, 250, 500, 900} {
		ab := alphaBar[step]
		im := digits[(10+i)*784 : (11+i)*784]
		e := gaussian(784, rng)
		xt := make([]float32, 784)
		epsHat := make([]float32, 784)
		errScale := 0.6 - 0.5*float64(step)/1000 // small t is hard to denoise
		for k := range xt {
			xt[k] = float32(math.Sqrt(ab))*im[k] + float32(math.Sqrt(1-ab))*e[k]
			epsHat[k] = e[k] + float32(errScale*rng.NormFloat64())
		}
		rows = append(rows, TrainingRow{T: step, AlphaBar: ab, X0: im, Eps: e, Xt: xt, EpsHat: epsHat})
	}
	img, err = TrainingPanel(rows, 1, 28, 28, TrainingPanelOptions{Title: "One training step"})
	png("training_panel.png", img, err)

	var fp32, bf16 Series
	fp32.Name, bf16.Name = "fp32", "bf16"
	for s := 0; s < 5000; s += 5 {
		base := 0.03 + 1.2*math.Exp(-float64(s)/250)
		fp32.Steps = append(fp32.Steps, float64(s))
		fp32.Loss = append(fp32.Loss, base*math.Exp(0.35*rng.NormFloat64()))
		bf16.Steps = append(bf16.Steps, float64(s))
		bf16.Loss = append(bf16.Loss, 1.15*base*math.Exp(0.35*rng.NormFloat64()))
	}
	img, err = LossPlot([]Series{fp32}, LossPlotOptions{Title: "MNIST training loss"})
	png("loss.png", img, err)
	img, err = LossPlot([]Series{fp32, bf16}, LossPlotOptions{Title: "fp32 vs bf16"})
	png("loss_compare.png", img, err)
	small := Series{Steps: fp32.Steps[:200], Loss: make([]float64, 200)}
	for i := range small.Loss {
		small.Loss[i] = 3e-4 + 0.1*math.Exp(-float64(i)/20)*math.Exp(0.2*rng.NormFloat64())
	}
	img, err = LossPlot([]Series{small}, LossPlotOptions{Title: "loss in [3e-4, 0.1]", Width: 560, Height: 360})
	png("loss_small.png", img, err)

	data := swissRoll(3000, 0.02, rng)
	samples := swissRoll(3000, 0.06, rng)
	img, err = Scatter([]ScatterPanel{{Title: "data", XY: data}, {Title: "samples", XY: samples}}, ScatterOptions{Title: "Swiss roll"})
	png("scatter.png", img, err)
	var strip []ScatterPanel
	noise := gaussian(len(data), rng)
	for _, step := range []int{0, 50, 100, 150, 200, 300, 400, 600, 800, 999} {
		ab := alphaBar[step]
		xt := make([]float32, len(data))
		for k := range xt {
			xt[k] = float32(math.Sqrt(ab))*data[k] + float32(math.Sqrt(1-ab))*noise[k]
		}
		strip = append(strip, ScatterPanel{Title: "t=" + strconv.Itoa(step), XY: xt})
	}
	img, err = Scatter(strip, ScatterOptions{Title: "Forward process", PanelSize: 180})
	png("scatter_strip.png", img, err)
}

// syntheticDigits renders n digits 0-9 as 28x28 images [n,1,28,28] in [-1, 1], white on black
// like MNIST, with a little jitter.
func syntheticDigits(t *testing.T, n int, rng *rand.Rand) []float32 {
	fonts, err := parsedFonts()
	if err != nil {
		t.Fatal(err)
	}
	face, err := opentype.NewFace(fonts[1], &opentype.FaceOptions{Size: 24, DPI: 72})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, 0, n*784)
	for i := 0; i < n; i++ {
		g := image.NewGray(image.Rect(0, 0, 28, 28))
		d := font.Drawer{Dst: g, Src: image.White, Face: face,
			Dot: fixed.P(7+rng.IntN(3), 23+rng.IntN(3))}
		d.DrawString(strconv.Itoa(i % 10))
		draw.Draw(g, g.Rect, g, image.Point{}, draw.Src)
		for _, v := range g.Pix {
			out = append(out, float32(v)/127.5-1)
		}
	}
	return out
}

// syntheticRGB makes n RGB images [n,3,s,s] in [-1, 1]: a colored disk on a gradient.
func syntheticRGB(n, s int, rng *rand.Rand) []float32 {
	out := make([]float32, n*3*s*s)
	for i := 0; i < n; i++ {
		cx, cy, r := rng.Float64()*float64(s), rng.Float64()*float64(s), 4+rng.Float64()*8
		col := [3]float32{rng.Float32()*2 - 1, rng.Float32()*2 - 1, rng.Float32()*2 - 1}
		for y := 0; y < s; y++ {
			for x := 0; x < s; x++ {
				in := math.Hypot(float64(x)-cx, float64(y)-cy) < r
				for c := 0; c < 3; c++ {
					v := float32(x+y)/float32(s) - 1 + float32(c)*0.3 - 0.3
					if in {
						v = col[c]
					}
					out[((i*3+c)*s+y)*s+x] = v
				}
			}
		}
	}
	return out
}

// linearAlphaBar is DDPM's linear schedule (beta from 1e-4 to 0.02) as alphaBar_t, t = 0..T-1.
func linearAlphaBar(T int) []float64 {
	out := make([]float64, T)
	prod := 1.0
	for t := range out {
		beta := 1e-4 + (0.02-1e-4)*float64(t)/float64(T-1)
		prod *= 1 - beta
		out[t] = prod
	}
	return out
}

func gaussian(n int, rng *rand.Rand) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64())
	}
	return out
}

// swissRoll returns n points [n,2] of a 2-D swiss roll scaled to about [-1, 1], with noise.
func swissRoll(n int, noise float64, rng *rand.Rand) []float32 {
	out := make([]float32, 0, 2*n)
	for i := 0; i < n; i++ {
		t := 1.5 * math.Pi * (1 + 2*rng.Float64())
		out = append(out, float32(t*math.Cos(t)/10+noise*rng.NormFloat64()), float32(t*math.Sin(t)/10+noise*rng.NormFloat64()))
	}
	return out
}
