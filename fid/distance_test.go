package fid

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestDistanceGolden compares with pytorch-fid's calculate_frechet_distance (scipy sqrtm) on the
// mean and np.cov covariance of frechet_a and frechet_b [500,16] of the shared fixture.
func TestDistanceGolden(t *testing.T) {
	f := readFixture(t, sharedTestdata(t, "fid/inception_reference.safetensors"))
	a := fixtureFloat32(t, f, "frechet_a", 500, 16)
	b := fixtureFloat32(t, f, "frechet_b", 500, 16)
	want := fixtureFloat64(t, f, "frechet_expected", 1)[0]
	sa, err := ComputeStats(a, 16)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := ComputeStats(b, 16)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Distance(sa, sb)
	if err != nil {
		t.Fatal(err)
	}
	// Tolerance 1e-7 relative: scipy's Schur-based sqrtm and our symmetric eigendecomposition agree
	// to ~1e-8 relative here (numpy with the eigh formulation gives the same 2.6585166259 as we do;
	// the fixture says 2.6585166074, a relative difference of 7e-9).
	if rel := math.Abs(got-want) / want; rel > 1e-7 {
		t.Errorf("Distance(frechet_a, frechet_b) = %.12g; want %.12g (pytorch-fid), relative error %g > 1e-7", got, want, rel)
	}
}

// statsOf returns Stats of n random correlated features of dimension d.
func statsOf(t *testing.T, seed uint64, n, d int) *Stats {
	t.Helper()
	s, err := ComputeStats(randomFeatures(seed, n, d), d)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func trace(s *Stats) float64 {
	d, tr := s.Dim(), 0.0
	for i := range d {
		tr += s.Sigma[i*d+i]
	}
	return tr
}

// TestDistanceSelf: Distance(a, a) = 0 up to rounding. The trace term is the sum of the singular
// values of G G^T = Sigma, each accurate to ~D*eps*|Sigma| (dgesvd), so |d| <= 1e-12 Tr(Sigma) for
// D <= 64, also when Sigma is rank-deficient (its numerically zero pivots are dropped, not square
// rooted). Observed: below 1e-15 Tr(Sigma).
func TestDistanceSelf(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n, d  int
		bound float64 // relative to Tr(Sigma)
	}{
		{"fullRank_n200d16", 200, 16, 1e-12},
		{"fullRank_n500d64", 500, 64, 1e-12},
		{"rankDeficient_n10d32", 10, 32, 1e-12},
		{"rankDeficient_n12d100", 12, 100, 1e-12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := statsOf(t, 3, tc.n, tc.d)
			got, err := Distance(s, s)
			if err != nil {
				t.Fatal(err)
			}
			if bound := tc.bound * trace(s); math.Abs(got) > bound {
				t.Errorf("Distance(a, a) = %g; want |d| <= %g", got, bound)
			}
		})
	}
}

// TestDistanceSymmetric: swapping a and b transposes G_a G_b^T, which has the same singular values,
// so the two orders agree up to rounding: 1e-12 of Tr(Sigma_a) + Tr(Sigma_b) (observed: equal).
func TestDistanceSymmetric(t *testing.T) {
	for _, tc := range []struct {
		name   string
		na, nb int
		d      int
		bound  float64
	}{
		{"fullRank", 300, 200, 16, 1e-12},
		{"rankDeficient", 9, 300, 24, 1e-12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := statsOf(t, 11, tc.na, tc.d), statsOf(t, 12, tc.nb, tc.d)
			ab, err := Distance(a, b)
			if err != nil {
				t.Fatal(err)
			}
			ba, err := Distance(b, a)
			if err != nil {
				t.Fatal(err)
			}
			if bound := tc.bound * (trace(a) + trace(b)); math.Abs(ab-ba) > bound {
				t.Errorf("Distance(a, b) = %.15g, Distance(b, a) = %.15g; want them within %g", ab, ba, bound)
			}
			if ab <= 0 {
				t.Errorf("Distance(a, b) = %g for different distributions; want > 0", ab)
			}
		})
	}
}

// randomOrthogonal returns a random orthogonal [d,d] matrix (Q of a QR factorisation).
func randomOrthogonal(r *rand.Rand, d int) *mat.Dense {
	g := mat.NewDense(d, d, nil)
	for i := range d {
		for j := range d {
			g.Set(i, j, r.NormFloat64())
		}
	}
	var qr mat.QR
	qr.Factorize(g)
	var q mat.Dense
	qr.QTo(&q)
	return &q
}

// TestDistanceCommutingClosedForm: for covariances with common eigenvectors Q,
// Sigma = Q diag(s) Q^T, the trace term is sum_i sqrt(s1_i s2_i), so
// d^2 = ||mu1 - mu2||^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2.
func TestDistanceCommutingClosedForm(t *testing.T) {
	const d = 12
	r := rand.New(rand.NewPCG(5, 5))
	s1, s2 := make([]float64, d), make([]float64, d)
	mu1, mu2 := make([]float64, d), make([]float64, d)
	for i := range d {
		s1[i] = r.Float64() * 4
		s2[i] = r.Float64() * 0.5
		mu1[i], mu2[i] = r.NormFloat64(), r.NormFloat64()
	}
	s1[3], s2[7] = 0, 0 // singular, as with dead features
	want := 0.0
	for i := range d {
		want += (mu1[i]-mu2[i])*(mu1[i]-mu2[i]) + (math.Sqrt(s1[i])-math.Sqrt(s2[i]))*(math.Sqrt(s1[i])-math.Sqrt(s2[i]))
	}
	for _, tc := range []struct {
		name string
		q    *mat.Dense
	}{
		{"diagonal", func() *mat.Dense {
			q := mat.NewDense(d, d, nil)
			for i := range d {
				q.Set(i, i, 1)
			}
			return q
		}()},
		{"rotated", randomOrthogonal(r, d)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigma := func(s []float64) []float64 {
				var m mat.Dense
				m.Mul(tc.q, mat.NewDiagDense(d, s))
				m.Mul(&m, tc.q.T())
				out := make([]float64, d*d)
				for i := range d {
					for j := range d {
						out[i*d+j] = 0.5 * (m.At(i, j) + m.At(j, i))
					}
				}
				return out
			}
			a := &Stats{Mu: mu1, Sigma: sigma(s1), N: 100}
			b := &Stats{Mu: mu2, Sigma: sigma(s2), N: 100}
			got, err := Distance(a, b)
			if err != nil {
				t.Fatal(err)
			}
			// 1e-12 absolute: d ~ 20 in float64 with D = 12; the zero eigenvalues s1_3 and s2_7 are
			// dropped by the pivoted Cholesky factorisation instead of being square rooted as noise
			// (an eigenvalue-based trace was off by 3e-8 here). Observed: 4e-15.
			if math.Abs(got-want) > 1e-12 {
				t.Errorf("Distance = %.12g; want %.12g (closed form)", got, want)
			}
		})
	}
}

// TestDistanceRankDeficient checks covariances of fewer samples than dimensions against an
// independent computation: with centred features X1 [n1,D], X2 [n2,D] and Sigma_k = X_k^T X_k/(n_k-1),
// the non-zero eigenvalues of Sigma1 Sigma2 are the squared singular values of X1 X2^T, so
//
//	Tr((Sigma1 Sigma2)^{1/2}) = ||X1 X2^T||_* / sqrt((n1-1)(n2-1))   (nuclear norm, by SVD).
func TestDistanceRankDeficient(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n1, n2 int
		d      int
	}{
		{"bothDeficient", 6, 9, 32},
		{"oneDeficient", 5, 200, 16},
		{"fullRank", 100, 150, 8},
		{"blockedFactorisation_d100", 15, 20, 100}, // dpstrf's blocked code path (D > 64)
	} {
		t.Run(tc.name, func(t *testing.T) {
			f1 := randomFeatures(21, tc.n1, tc.d)
			f2 := randomFeatures(22, tc.n2, tc.d)
			a, err := ComputeStats(f1, tc.d)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ComputeStats(f2, tc.d)
			if err != nil {
				t.Fatal(err)
			}
			centred := func(f []float32, s *Stats) *mat.Dense {
				n := len(f) / tc.d
				m := mat.NewDense(n, tc.d, nil)
				for i := range n {
					for j := range tc.d {
						m.Set(i, j, float64(f[i*tc.d+j])-s.Mu[j])
					}
				}
				return m
			}
			var prod mat.Dense
			prod.Mul(centred(f1, a), centred(f2, b).T())
			var svd mat.SVD
			if !svd.Factorize(&prod, mat.SVDNone) {
				t.Fatal("SVD did not converge")
			}
			nuclear := 0.0
			for _, s := range svd.Values(nil) {
				nuclear += s
			}
			diff2 := 0.0
			for j := range tc.d {
				diff2 += (a.Mu[j] - b.Mu[j]) * (a.Mu[j] - b.Mu[j])
			}
			want := diff2 + trace(a) + trace(b) - 2*nuclear/math.Sqrt(float64((tc.n1-1)*(tc.n2-1)))
			got, err := Distance(a, b)
			if err != nil {
				t.Fatal(err)
			}
			// 1e-12 relative: two float64 routes to the same singular values (observed: <= 1e-15).
			// An eigenvalue-based trace, which square roots the noise of the zero eigenvalues, was off
			// by ~5e-10 relative here.
			if rel := math.Abs(got-want) / want; rel > 1e-12 || math.IsNaN(got) {
				t.Errorf("Distance = %.12g; want %.12g (nuclear norm), relative error %g > 1e-12", got, want, rel)
			}
		})
	}
}

// TestDistanceRidgeRetry: a covariance with an eigenvalue clearly below 0 but above -Eps is
// retried, as pytorch-fid does, with Eps*I added to both covariances; one far from positive
// semi-definite is an error.
func TestDistanceRidgeRetry(t *testing.T) {
	const d = 4
	mu := make([]float64, d)
	b := &Stats{Mu: mu, Sigma: []float64{2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0.5}, N: 10}

	// Sigma_a = Q diag(1, 2, 3, -5e-7) Q^T for a rotation Q: not PSD, but PSD after the ridge.
	q := randomOrthogonal(rand.New(rand.NewPCG(9, 9)), d)
	spectrum := func(last float64) []float64 {
		s := []float64{1, 2, 3, last}
		var m mat.Dense
		m.Mul(q, mat.NewDiagDense(d, s))
		m.Mul(&m, q.T())
		out := make([]float64, d*d)
		for i := range d {
			for j := range d {
				out[i*d+j] = 0.5 * (m.At(i, j) + m.At(j, i))
			}
		}
		return out
	}

	t.Run("slightlyIndefinite", func(t *testing.T) {
		a := &Stats{Mu: mu, Sigma: spectrum(-5e-7), N: 10}
		got, err := Distance(a, b)
		if err != nil {
			t.Fatal(err)
		}
		ridged, err := traceSqrtProduct(a.Sigma, b.Sigma, d, Eps)
		if err != nil {
			t.Fatal(err)
		}
		want := trace(a) + trace(b) - 2*ridged
		if math.Abs(got-want) > 1e-12 {
			t.Errorf("Distance = %.15g; want %.15g (the trace term with Eps*I added)", got, want)
		}
	})
	t.Run("indefinite", func(t *testing.T) {
		a := &Stats{Mu: mu, Sigma: spectrum(-0.5), N: 10}
		_, err := Distance(a, b)
		if err == nil || !strings.Contains(err.Error(), "not positive semi-definite") {
			t.Errorf("Distance of an indefinite covariance: error = %v, want one saying it is not positive semi-definite", err)
		}
	})
}

func TestDistanceErrors(t *testing.T) {
	two := func() *Stats { return &Stats{Mu: []float64{0, 1}, Sigma: []float64{1, 0, 0, 1}, N: 5} }
	three := &Stats{Mu: []float64{0, 1, 2}, Sigma: []float64{1, 0, 0, 0, 1, 0, 0, 0, 1}, N: 5}
	for _, tc := range []struct {
		name   string
		a, b   *Stats
		substr string
	}{
		{"dimensions", two(), three, "dimensions differ, 2 vs 3"},
		{"nil", two(), nil, "nil"},
		{"invalid", two(), &Stats{Mu: []float64{0, 1}, Sigma: []float64{1}, N: 5}, "second statistics"},
		{"extractor", func() *Stats { s := two(); s.Extractor.Name = "inception"; return s }(),
			func() *Stats { s := two(); s.Extractor.Name = "clip"; return s }(), "different feature extractors"},
		{"weights", func() *Stats { s := two(); s.Extractor.WeightsHash = "sha256:aa"; return s }(),
			func() *Stats { s := two(); s.Extractor.WeightsHash = "sha256:bb"; return s }(), "weights hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Distance(tc.a, tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.substr) || !strings.HasPrefix(err.Error(), "fid: Distance: ") {
				t.Errorf("Distance error = %v; want one starting with \"fid: Distance: \" and containing %q", err, tc.substr)
			}
		})
	}
	// One side without an extractor name is comparable with any.
	a := two()
	a.Extractor = Extractor{Name: "inception", WeightsHash: "sha256:aa"}
	if _, err := Distance(a, two()); err != nil {
		t.Errorf("Distance with one unnamed extractor: %v; want no error", err)
	}
}

// TestDistanceRoundingAsymmetry: a covariance that is symmetric only to rounding (as Validate
// allows) is symmetrised, not refused as indefinite.
func TestDistanceRoundingAsymmetry(t *testing.T) {
	a, b := statsOf(t, 41, 60, 10), statsOf(t, 42, 70, 10)
	want, err := Distance(a, b)
	if err != nil {
		t.Fatal(err)
	}
	d := a.Dim()
	skewed := *a
	skewed.Sigma = append([]float64(nil), a.Sigma...)
	for i := range d {
		for j := i + 1; j < d; j++ {
			skewed.Sigma[i*d+j] *= 1 + 1e-9
			skewed.Sigma[j*d+i] *= 1 - 1e-9
		}
	}
	got, err := Distance(&skewed, b)
	if err != nil {
		t.Fatal(err)
	}
	// The symmetric part is the original to ~1e-16; 1e-12 relative.
	if math.Abs(got-want) > 1e-12*want {
		t.Errorf("Distance with a rounding-asymmetric covariance = %.15g; want %.15g", got, want)
	}
}
