package fid

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// Eps is the ridge pytorch-fid's calculate_frechet_distance adds to the diagonal of both
// covariances when its first attempt fails (its eps argument, default 1e-6).
const Eps = 1e-6

const machineEps = 0x1p-52

// remainderFactor bounds the remainder of a pivoted Cholesky factorisation of a positive
// semi-definite matrix, in units of the stopping tolerance (see factorPSD).
const remainderFactor = 4

// Distance returns the squared Frechet distance between the Gaussians N(a.Mu, a.Sigma) and
// N(b.Mu, b.Sigma), pytorch-fid's calculate_frechet_distance (Heusel et al. 2017, arXiv:1706.08500v6,
// Eq. 6):
//
//	d^2 = ||mu_a - mu_b||^2 + Tr(Sigma_a) + Tr(Sigma_b) - 2 Tr((Sigma_a Sigma_b)^{1/2})
//
// The last trace is the nuclear norm ||G_a G_b^T||_* of factors Sigma = G^T G (see the package
// documentation and traceSqrtProduct) instead of the trace of scipy.linalg.sqrtm of the
// non-symmetric product. In exact arithmetic the two agree, and Distance(a, b) = Distance(b, a).
// The result is not clamped at 0: Distance(a, a) is 0 up to rounding and may come out slightly
// negative, as pytorch-fid's may.
//
// How the pytorch-fid corner cases map:
//
//   - Imaginary parts: the singular values of G_a G_b^T are real and non-negative, so no imaginary
//     part can arise. pytorch-fid's come from sqrtm of a non-symmetric matrix: rounding noise, which
//     it drops when those on the diagonal are below 1e-3, or a covariance that is not positive
//     semi-definite, for which it raises an error (see the last case).
//   - Singular and rank-deficient covariances (N <= D): the factors simply have fewer rows (rank
//     revealed by the pivoted Cholesky factorisation, the rest is rounding noise below
//     D * 2^-52 * max_i Sigma_ii and dropped). pytorch-fid's sqrtm may find such a product singular
//     and retry with the ridge Eps*I, which changes its answer by about sqrt(Eps * eigenvalue) per
//     missing dimension; we give the value without the ridge (its limit as the ridge goes to 0).
//   - A covariance that is not positive semi-definite beyond rounding (say one accumulated in
//     float32): as pytorch-fid does when sqrtm is not finite, we retry once with Eps*I added to both
//     covariances, and return an error if that does not help.
//
// Distance returns an error when the statistics are invalid (see Stats.Validate), when their
// dimensions differ, or when they come from different extractors or weights.
func Distance(a, b *Stats) (float64, error) {
	if a == nil || b == nil {
		return 0, fmt.Errorf("fid: Distance: nil statistics")
	}
	if err := a.validate(); err != nil {
		return 0, fmt.Errorf("fid: Distance: first statistics: %w", err)
	}
	if err := b.validate(); err != nil {
		return 0, fmt.Errorf("fid: Distance: second statistics: %w", err)
	}
	if a.Dim() != b.Dim() {
		return 0, fmt.Errorf("fid: Distance: feature dimensions differ, %d vs %d: both statistics must come from the same feature layer", a.Dim(), b.Dim())
	}
	if err := a.Extractor.conflict(b.Extractor); err != nil {
		return 0, fmt.Errorf("fid: Distance: statistics from different feature extractors (%v): recompute one of them with the other's extractor", err)
	}
	d := a.Dim()
	diff2, traceA, traceB := 0.0, 0.0, 0.0
	for i := range d {
		diff := a.Mu[i] - b.Mu[i]
		diff2 += diff * diff
		traceA += a.Sigma[i*d+i]
		traceB += b.Sigma[i*d+i]
	}
	trSqrt, err := traceSqrtProduct(a.Sigma, b.Sigma, d, 0)
	if err != nil {
		// pytorch-fid's fallback: a ridge on both covariances.
		var err2 error
		if trSqrt, err2 = traceSqrtProduct(a.Sigma, b.Sigma, d, Eps); err2 != nil {
			return 0, fmt.Errorf("fid: Distance: %v (adding %g*I to both covariances, pytorch-fid's fallback, did not help)", err, Eps)
		}
	}
	return diff2 + traceA + traceB - 2*trSqrt, nil
}

// traceSqrtProduct returns Tr((S1 S2)^{1/2}) for symmetric positive semi-definite S1, S2 [d,d]
// (row-major), each with ridge*I added. With factors S1 = G1^T G1 and S2 = G2^T G2 (factorPSD),
// S1 S2 = G1^T (G1 G2^T G2) has the non-zero eigenvalues of (G1 G2^T G2) G1^T = B B^T,
// B = G1 G2^T, which are the squared singular values of B. So
//
//	Tr((S1 S2)^{1/2}) = sum_i sigma_i(B) = ||G1 G2^T||_*   (nuclear norm)
//
// computed with one matrix product and the singular values of B (LAPACK dgesvd via gonum).
func traceSqrtProduct(s1, s2 []float64, d int, ridge float64) (float64, error) {
	g1, r1, err := factorPSD(s1, d, ridge)
	if err != nil {
		return 0, fmt.Errorf("the first covariance %v", err)
	}
	g2, r2, err := factorPSD(s2, d, ridge)
	if err != nil {
		return 0, fmt.Errorf("the second covariance %v", err)
	}
	if r1 == 0 || r2 == 0 {
		return 0, nil
	}
	b := blas64.General{Rows: r1, Cols: r2, Stride: r2, Data: make([]float64, r1*r2)}
	blas64.Gemm(blas.NoTrans, blas.Trans, 1,
		blas64.General{Rows: r1, Cols: d, Stride: d, Data: g1},
		blas64.General{Rows: r2, Cols: d, Stride: d, Data: g2}, 0, b)
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(r1, r2, b.Data), mat.SVDNone) {
		return 0, fmt.Errorf("the singular value decomposition of G_a G_b^T did not converge")
	}
	tr := 0.0
	for _, s := range svd.Values(nil) {
		tr += s
	}
	return tr, nil
}

// factorPSD returns G [r,d] (row-major) with S + ridge*I = G^T G up to rounding, where r is the
// numerical rank, from the Cholesky factorisation with complete pivoting (LAPACK dpstrf, Higham,
// "Accuracy and Stability of Numerical Algorithms", 2nd ed., Sec. 10.3):
//
//	P^T S P = U^T U,   G = U[:r, :] P^T
//
// It stops when the largest remaining pivot is at most tol = d * 2^-52 * max_i S_ii (LAPACK's
// default); what is left, E = S - G^T G, is dropped. For a positive semi-definite S the remainder is
// itself positive semi-definite, so |E_ij| <= sqrt(E_ii E_jj) <= tol; a larger entry means S has a
// clearly negative eigenvalue and factorPSD returns an error.
func factorPSD(s []float64, d int, ridge float64) ([]float64, int, error) {
	// sym = (S + S^T)/2 + ridge*I: Validate allows asymmetry at the level of rounding.
	sym := make([]float64, d*d)
	maxDiag := 0.0
	for i := range d {
		for j := range d {
			sym[i*d+j] = 0.5 * (s[i*d+j] + s[j*d+i])
		}
		sym[i*d+i] += ridge
		maxDiag = max(maxDiag, sym[i*d+i])
	}
	a := append([]float64(nil), sym...)
	tol := float64(d) * machineEps * maxDiag
	piv := make([]int, d)
	u, r, _ := lapack64.Pstrf(blas64.Symmetric{Uplo: blas.Upper, N: d, Stride: d, Data: a}, piv, tol, make([]float64, 2*d))

	// The remainder lives on the pivots r..d-1 (the factorisation reproduces the first r rows and
	// columns of P^T S P): E = S[piv_t, piv_v] - (U[:r, r:]^T U[:r, r:])_tv for t, v >= r.
	if m := d - r; m > 0 {
		e := make([]float64, m*m)
		if r > 0 {
			tail := blas64.General{Rows: r, Cols: m, Stride: d, Data: u.Data[r:]}
			blas64.Gemm(blas.Trans, blas.NoTrans, 1, tail, tail, 0, blas64.General{Rows: m, Cols: m, Stride: m, Data: e})
		}
		for t := range m {
			for v := t; v < m; v++ {
				x := sym[piv[r+t]*d+piv[r+v]] - e[t*m+v]
				if math.Abs(x) > remainderFactor*tol {
					return nil, 0, fmt.Errorf("is not positive semi-definite beyond rounding (after rank %d of its pivoted Cholesky factorisation the remainder has an entry %g, above %g): compute covariances in float64, e.g. with ComputeStats", r, x, remainderFactor*tol)
				}
			}
		}
	}
	g := make([]float64, r*d)
	for k := range r {
		for j := k; j < d; j++ {
			g[k*d+piv[j]] = u.Data[k*d+j]
		}
	}
	return g, r, nil
}
