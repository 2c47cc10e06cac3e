package data

import "math"

// SwissRoll returns n points [N,2] of scikit-learn's make_swiss_roll, keeping x and z and dividing
// by 10 (the 2-D lesson uses noise 0.5 and n = 10,000):
//
//	t = 1.5 pi (1 + 2u),  u ~ U[0, 1)
//	x = (t cos t + noise * e1) / 10
//	z = (t sin t + noise * e2) / 10,  e1, e2 ~ N(0, 1)
//
// so the noise-free points lie on the spiral of radius t/10 in [0.47, 1.41]. Each point draws u,
// e1, e2 in that order from SplitMix64 seeded with seed (not numpy's stream: the same distribution,
// not the same numbers). SwissRoll panics if n < 0.
func SwissRoll(n int, noise float64, seed uint64) []float32 {
	r := splitMix64{state: seed}
	pts := make([]float32, 2*n)
	for i := range n {
		t := 1.5 * math.Pi * (1 + 2*r.uniform())
		x := t*math.Cos(t) + noise*r.normal()
		z := t*math.Sin(t) + noise*r.normal()
		pts[2*i], pts[2*i+1] = float32(x/10), float32(z/10)
	}
	return pts
}

// TwoMoons returns n points [N,2] of scikit-learn's make_moons (shuffle on): n/2 (rounded down)
// points on the upper unit half-circle and the rest on the lower half-circle centred at (1, 0.5),
// evenly spaced in angle (numpy's linspace(0, pi, m)),
//
//	outer: (cos s, sin s),  inner: (1 - cos s, 0.5 - sin s),  s in linspace(0, pi, m)
//
// then shuffled (point i is moon point Permutation(n, seed)[i]), then N(0, noise^2) added to each
// coordinate, drawn from the same SplitMix64 stream after the shuffle's draws. TwoMoons panics if
// n < 0.
func TwoMoons(n int, noise float64, seed uint64) []float32 {
	nOut := n / 2
	moons := make([]float64, 0, 2*n)
	for i := range nOut {
		s := linspace(math.Pi, i, nOut)
		moons = append(moons, math.Cos(s), math.Sin(s))
	}
	for i := range n - nOut {
		s := linspace(math.Pi, i, n-nOut)
		moons = append(moons, 1-math.Cos(s), 0.5-math.Sin(s))
	}
	r := splitMix64{state: seed}
	pts := make([]float32, 2*n)
	for i, j := range permute(n, &r) {
		pts[2*i] = float32(moons[2*j] + noise*r.normal())
		pts[2*i+1] = float32(moons[2*j+1] + noise*r.normal())
	}
	return pts
}

// linspace returns element i of numpy's linspace(0, stop, m): i * (stop/(m-1)), the last exactly stop.
func linspace(stop float64, i, m int) float64 {
	if m == 1 {
		return 0
	}
	if i == m-1 {
		return stop
	}
	return float64(i) * (stop / float64(m-1))
}

// Ring returns n points [N,2] of a mixture of modes Gaussians with standard deviation std, centred
// evenly on the circle of the given radius (the lesson's ring uses 8 modes):
//
//	k ~ U{0, ..., modes-1},  theta = 2 pi k / modes
//	p = radius (cos theta, sin theta) + std * (e1, e2),  e1, e2 ~ N(0, 1)
//
// Each point draws k (next() mod modes), e1, e2 in that order from SplitMix64 seeded with seed.
// Ring panics if n < 0 or modes < 1.
func Ring(n, modes int, radius, std float64, seed uint64) []float32 {
	if modes < 1 {
		panic("data: Ring with fewer than 1 mode")
	}
	r := splitMix64{state: seed}
	pts := make([]float32, 2*n)
	for i := range n {
		theta := 2 * math.Pi * float64(r.next()%uint64(modes)) / float64(modes)
		x := radius*math.Cos(theta) + std*r.normal()
		y := radius*math.Sin(theta) + std*r.normal()
		pts[2*i], pts[2*i+1] = float32(x), float32(y)
	}
	return pts
}
