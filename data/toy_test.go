package data

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// moments returns the mean and the variance of xs.
func moments(xs []float64) (mean, variance float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		variance += (x - mean) * (x - mean)
	}
	return mean, variance / float64(len(xs))
}

func TestSwissRoll(t *testing.T) {
	const n = 10000
	clean := SwissRoll(n, 0, 1)
	noisy := SwissRoll(n, 0.5, 1) // the lesson's setting
	if len(noisy) != 2*n {
		t.Fatalf("len(SwissRoll(%d)) = %d; want %d", n, len(noisy), 2*n)
	}
	t.Run("on the spiral", func(t *testing.T) {
		// Without noise, (x, z) = t (cos t, sin t) / 10 with t = 10 |(x, z)| in [1.5 pi, 4.5 pi];
		// float32 storage bounds the error to ~1e-6.
		for i := range n {
			x, z := float64(clean[2*i]), float64(clean[2*i+1])
			tt := 10 * math.Hypot(x, z)
			if tt < 1.5*math.Pi-1e-5 || tt > 4.5*math.Pi+1e-5 {
				t.Fatalf("point %d: t = %v; want in [1.5 pi, 4.5 pi]", i, tt)
			}
			if math.Abs(x-tt*math.Cos(tt)/10) > 1e-5 || math.Abs(z-tt*math.Sin(tt)/10) > 1e-5 {
				t.Fatalf("point %d = (%v, %v); want t (cos t, sin t)/10 = (%v, %v)", i, x, z, tt*math.Cos(tt)/10, tt*math.Sin(tt)/10)
			}
		}
	})
	t.Run("statistics", func(t *testing.T) {
		// t ~ U[1.5 pi, 4.5 pi]: E[t] = 3 pi, sd(t) = 3 pi / sqrt(12); E[t cos t] = 2, E[t sin t] = 2/(3 pi).
		// Tolerances are ~4 standard errors for n = 10,000.
		r, x, z := make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range n {
			x[i], z[i] = float64(noisy[2*i]), float64(noisy[2*i+1])
			r[i] = math.Hypot(x[i], z[i])
		}
		rMean, rVar := moments(r)
		xMean, _ := moments(x)
		zMean, _ := moments(z)
		for _, c := range []struct {
			name            string
			got, want, tolr float64
		}{
			{"mean radius", rMean, 3 * math.Pi / 10, 0.011},
			{"sd of radius", math.Sqrt(rVar), 3 * math.Pi / math.Sqrt(12) / 10, 0.008},
			{"mean x", xMean, 0.2, 0.03},
			{"mean z", zMean, 2 / (3 * math.Pi) / 10, 0.03},
		} {
			if math.Abs(c.got-c.want) > c.tolr {
				t.Errorf("SwissRoll(%d, 0.5, 1): %s = %.4f; want %.4f ± %v", n, c.name, c.got, c.want, c.tolr)
			}
		}
	})
	t.Run("extent", func(t *testing.T) {
		// Without noise the points span the extremes of t (cos t, sin t)/10 on [1.5 pi, 4.5 pi]
		// (found numerically): x in [-0.94773, 1.26059], z in [-1.10407, 1.41372]. 10,000 draws come
		// within 0.005 of each; with noise sd 0.05 no point is more than 5 sd outside.
		for _, c := range []struct {
			name  string
			coord int
			lo    float64
			hi    float64
		}{{"x", 0, -0.94773, 1.26059}, {"z", 1, -1.10407, 1.41372}} {
			var cl, no []float64
			for i := range n {
				cl, no = append(cl, float64(clean[2*i+c.coord])), append(no, float64(noisy[2*i+c.coord]))
			}
			if lo, hi := slices.Min(cl), slices.Max(cl); lo < c.lo-1e-5 || lo > c.lo+0.005 || hi > c.hi+1e-5 || hi < c.hi-0.005 {
				t.Errorf("noise 0: %s in [%.5f, %.5f]; want [%.5f, %.5f] within 0.005 inside", c.name, lo, hi, c.lo, c.hi)
			}
			if lo, hi := slices.Min(no), slices.Max(no); lo < c.lo-0.25 || hi > c.hi+0.25 {
				t.Errorf("noise 0.5: %s in [%.5f, %.5f]; want within [%.5f, %.5f] ± 0.25", c.name, lo, hi, c.lo, c.hi)
			}
		}
	})
	t.Run("noise", func(t *testing.T) {
		// The same seed draws the same t, so (noisy - clean) * 10 / 0.5 are the N(0, 1) draws.
		e := make([]float64, 2*n)
		for i := range e {
			e[i] = float64(noisy[i]-clean[i]) * 10 / 0.5
		}
		mean, variance := moments(e)
		if math.Abs(mean) > 0.03 || math.Abs(variance-1) > 0.05 {
			t.Errorf("noise: mean %.4f, variance %.4f; want 0 ± 0.03, 1 ± 0.05", mean, variance)
		}
	})
	t.Run("seeded", func(t *testing.T) {
		if !slices.Equal(SwissRoll(100, 0.5, 7), SwissRoll(100, 0.5, 7)) {
			t.Error("SwissRoll(100, 0.5, 7) differs between calls; want deterministic")
		}
		if slices.Equal(SwissRoll(100, 0.5, 7), SwissRoll(100, 0.5, 8)) {
			t.Error("SwissRoll seeds 7 and 8 give the same points; want different")
		}
	})
}

func TestTwoMoons(t *testing.T) {
	for _, n := range []int{101, 1000} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			pts := TwoMoons(n, 0, 3)
			outer, inner := 0, 0
			var sx, sy float64
			for i := range n {
				x, y := float64(pts[2*i]), float64(pts[2*i+1])
				sx, sy = sx+x, sy+y
				switch {
				case math.Abs(math.Hypot(x, y)-1) < 1e-6 && y >= -1e-6:
					outer++
				case math.Abs(math.Hypot(x-1, y-0.5)-1) < 1e-6 && y <= 0.5+1e-6:
					inner++
				default:
					t.Fatalf("point %d (%v, %v) is on neither moon", i, x, y)
				}
			}
			if outer != n/2 || inner != n-n/2 {
				t.Errorf("%d outer, %d inner points; want %d, %d", outer, inner, n/2, n-n/2)
			}
			// The moons' centroid: x = 1/2, y = (2/pi + 1/2 - 2/pi) / 2 = 1/4, up to the even spacing.
			if mx, my := sx/float64(n), sy/float64(n); math.Abs(mx-0.5) > 0.02 || math.Abs(my-0.25) > 0.02 {
				t.Errorf("centroid (%.4f, %.4f); want (0.5, 0.25) ± 0.02", mx, my)
			}
			if first := TwoMoons(n, 0, 4); slices.Equal(first, pts) {
				t.Errorf("seeds 3 and 4 give the same order; want shuffled by seed")
			}
		})
	}
	t.Run("noise", func(t *testing.T) {
		const n = 5000
		clean, noisy := TwoMoons(n, 0, 5), TwoMoons(n, 0.1, 5)
		e := make([]float64, 2*n)
		for i := range e {
			e[i] = float64(noisy[i]-clean[i]) / 0.1
		}
		if mean, variance := moments(e); math.Abs(mean) > 0.04 || math.Abs(variance-1) > 0.07 {
			t.Errorf("noise / 0.1: mean %.4f, variance %.4f; want 0 ± 0.04, 1 ± 0.07", mean, variance)
		}
	})
}

func TestRing(t *testing.T) {
	const n, modes, radius = 8000, 8, 2.0
	t.Run("modes", func(t *testing.T) {
		pts := Ring(n, modes, radius, 0, 6)
		var counts [modes]int
		for i := range n {
			x, y := float64(pts[2*i]), float64(pts[2*i+1])
			k := int(math.Round(math.Atan2(y, x)/(2*math.Pi/modes)+modes)) % modes
			cx, cy := radius*math.Cos(2*math.Pi*float64(k)/modes), radius*math.Sin(2*math.Pi*float64(k)/modes)
			if math.Hypot(x-cx, y-cy) > 1e-6 {
				t.Fatalf("point %d (%v, %v) with std 0 is not on a mode's centre", i, x, y)
			}
			counts[k]++
		}
		// Multinomial: each count is 1000 ± 30 (sd); allow 5 sd.
		for k, c := range counts {
			if math.Abs(float64(c)-n/modes) > 150 {
				t.Errorf("mode %d has %d points; want %d ± 150", k, c, n/modes)
			}
		}
	})
	t.Run("spread", func(t *testing.T) {
		// The distance to the mode's centre is Rayleigh(std): mean std sqrt(pi/2).
		const std = 0.1
		clean, pts := Ring(n, modes, radius, 0, 6), Ring(n, modes, radius, std, 6)
		var sum float64
		for i := range n {
			sum += math.Hypot(float64(pts[2*i]-clean[2*i]), float64(pts[2*i+1]-clean[2*i+1]))
		}
		if got, want := sum/n, std*math.Sqrt(math.Pi/2); math.Abs(got-want) > 0.005 {
			t.Errorf("mean distance to the centre %.4f; want %.4f ± 0.005", got, want)
		}
	})
}
