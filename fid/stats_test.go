package fid

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// randomFeatures returns n correlated feature vectors [n,d]: x = z L + offset with z ~ N(0, I),
// a random mixing L and a random offset, so that the covariance is dense.
func randomFeatures(seed uint64, n, d int) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	mix := make([]float64, d*d)
	for k := range mix {
		mix[k] = r.NormFloat64() / math.Sqrt(float64(d))
	}
	offset := make([]float64, d)
	for j := range offset {
		offset[j] = 3 * r.NormFloat64()
	}
	x := make([]float32, n*d)
	z := make([]float64, d)
	for i := range n {
		for k := range z {
			z[k] = r.NormFloat64()
		}
		for j := range d {
			v := offset[j]
			for k := range d {
				v += z[k] * mix[k*d+j]
			}
			x[i*d+j] = float32(v)
		}
	}
	return x
}

// naiveStats is the obvious two-pass np.mean / np.cov(rowvar=False) in float64.
func naiveStats(x []float32, d int) (mu, sigma []float64) {
	n := len(x) / d
	mu = make([]float64, d)
	for i := range n {
		for j := range d {
			mu[j] += float64(x[i*d+j])
		}
	}
	for j := range mu {
		mu[j] /= float64(n)
	}
	sigma = make([]float64, d*d)
	for a := range d {
		for b := range d {
			s := 0.0
			for i := range n {
				s += (float64(x[i*d+a]) - mu[a]) * (float64(x[i*d+b]) - mu[b])
			}
			sigma[a*d+b] = s / float64(n-1)
		}
	}
	return mu, sigma
}

func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

func TestComputeStatsMatchesTwoPass(t *testing.T) {
	for _, tc := range []struct {
		name string
		n, d int
	}{
		{"n2d1", 2, 1},
		{"n50d8", 50, 8},
		{"n7d20_rankDeficient", 7, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := randomFeatures(uint64(tc.n*100+tc.d), tc.n, tc.d)
			s, err := ComputeStats(x, tc.d)
			if err != nil {
				t.Fatal(err)
			}
			mu, sigma := naiveStats(x, tc.d)
			// Both are float64 sums of the same float32 values in other orders: ~1e-15 relative.
			if e := maxAbsDiff(s.Mu, mu); e > 1e-12 {
				t.Errorf("Mu differs from the two-pass mean by %g, want <= 1e-12", e)
			}
			if e := maxAbsDiff(s.Sigma, sigma); e > 1e-12 {
				t.Errorf("Sigma differs from the two-pass covariance by %g, want <= 1e-12", e)
			}
			if s.N != tc.n {
				t.Errorf("N = %d, want %d", s.N, tc.n)
			}
			if err := s.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestAccumulatorBatchesMatchOneShot(t *testing.T) {
	const n, d = 40, 6
	x := randomFeatures(7, n, d)
	want, err := ComputeStats(x, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		sizes []int // batch sizes, summing to n
	}{
		{"ones", func() []int {
			s := make([]int, n)
			for i := range s {
				s[i] = 1
			}
			return s
		}()},
		{"uneven", []int{3, 0, 17, 1, 19}},
		{"halves", []int{20, 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAccumulator(d)
			start := 0
			for _, b := range tc.sizes {
				if err := a.Add(x[start*d : (start+b)*d]); err != nil {
					t.Fatal(err)
				}
				start += b
			}
			got, err := a.Stats()
			if err != nil {
				t.Fatal(err)
			}
			// The Chan et al. merge is exact in real arithmetic; rounding only.
			if e := maxAbsDiff(got.Mu, want.Mu); e > 1e-12 {
				t.Errorf("Mu differs from one batch by %g, want <= 1e-12", e)
			}
			if e := maxAbsDiff(got.Sigma, want.Sigma); e > 1e-12 {
				t.Errorf("Sigma differs from one batch by %g, want <= 1e-12", e)
			}
			if got.N != n {
				t.Errorf("N = %d, want %d", got.N, n)
			}
		})
	}
}

func TestStatsErrors(t *testing.T) {
	valid := func() *Stats {
		return &Stats{Mu: []float64{0, 1}, Sigma: []float64{2, 0.5, 0.5, 1}, N: 10}
	}
	for _, tc := range []struct {
		name   string
		err    func() error
		substr string
	}{
		{"ragged", func() error { _, err := ComputeStats(make([]float32, 7), 2); return err }, "whole number"},
		{"one vector", func() error { _, err := ComputeStats(make([]float32, 3), 3); return err }, "at least 2"},
		{"zero dim", func() error { _, err := ComputeStats(nil, 0); return err }, "dimension"},
		{"nan feature", func() error { _, err := ComputeStats([]float32{0, float32(math.NaN()), 1, 2}, 2); return err }, "not finite"},
		{"empty mu", func() error { return (&Stats{N: 3}).Validate() }, "mu is empty"},
		{"sigma shape", func() error { s := valid(); s.Sigma = s.Sigma[:3]; return s.Validate() }, "sigma has 3 values"},
		{"small N", func() error { s := valid(); s.N = 1; return s.Validate() }, "N = 1"},
		{"inf mu", func() error { s := valid(); s.Mu[1] = math.Inf(1); return s.Validate() }, "mu[1]"},
		{"negative variance", func() error { s := valid(); s.Sigma[3] = -1; return s.Validate() }, "negative variance"},
		{"asymmetric", func() error { s := valid(); s.Sigma[1] = 0.6; return s.Validate() }, "not symmetric"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			if err == nil || !strings.Contains(err.Error(), tc.substr) || !strings.HasPrefix(err.Error(), "fid: ") {
				t.Errorf("error = %v, want one starting with \"fid: \" and containing %q", err, tc.substr)
			}
		})
	}
	if err := valid().Validate(); err != nil {
		t.Errorf("valid statistics: %v", err)
	}
}
