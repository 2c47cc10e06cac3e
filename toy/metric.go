package toy

import (
	"fmt"
	"math"
)

// MeanNearest returns the mean, over the points of a [N,2], of the Euclidean distance to the
// nearest point of b [M,2]: how far a's points lie from b's cloud. With a = samples and b = data
// it measures precision (do the samples lie on the data?), with a = data and b = samples coverage
// (is every part of the data sampled?). Points are compared in float64, by brute force (O(N M)).
func MeanNearest(a, b []float32) (float64, error) {
	if len(a)%2 != 0 || len(b)%2 != 0 {
		return 0, fmt.Errorf("toy: MeanNearest: %d and %d values; want points as [N,2]", len(a), len(b))
	}
	if len(a) == 0 || len(b) == 0 {
		return 0, fmt.Errorf("toy: MeanNearest: %d and %d points; want at least one in each", len(a)/2, len(b)/2)
	}
	sum := 0.0
	for i := 0; i < len(a); i += 2 {
		x, y := float64(a[i]), float64(a[i+1])
		best := math.Inf(1)
		for j := 0; j < len(b); j += 2 {
			dx, dy := x-float64(b[j]), y-float64(b[j+1])
			if d := dx*dx + dy*dy; d < best {
				best = d
			}
		}
		sum += math.Sqrt(best)
	}
	return sum / float64(len(a)/2), nil
}

// Quality compares samples with the data they were trained on, by MeanNearest, against the same
// measures for fresh draws of the data distribution, which a perfect model would match.
type Quality struct {
	// Precision is the mean distance from a sample to its nearest training point; FreshPrecision is
	// the same for a fresh draw of as many points from the data distribution.
	Precision, FreshPrecision float64
	// Coverage is the mean distance from a point of a fresh draw to its nearest sample;
	// FreshCoverage is the same with a second fresh draw in place of the samples.
	Coverage, FreshCoverage float64
}

// Evaluate measures the Quality of samples [n,2] of the data set d trained on train [N,2]. The
// fresh draws come from d with seeds seed and seed+1, which must differ from the training data's.
func Evaluate(d Dataset, train, samples []float32, seed uint64) (Quality, error) {
	n := len(samples) / 2
	fresh, err := d.Points(n, seed)
	if err != nil {
		return Quality{}, err
	}
	fresh2, err := d.Points(n, seed+1)
	if err != nil {
		return Quality{}, err
	}
	var q Quality
	for _, m := range []struct {
		out  *float64
		a, b []float32
	}{
		{&q.Precision, samples, train},
		{&q.FreshPrecision, fresh, train},
		{&q.Coverage, fresh, samples},
		{&q.FreshCoverage, fresh, fresh2},
	} {
		if *m.out, err = MeanNearest(m.a, m.b); err != nil {
			return Quality{}, err
		}
	}
	return q, nil
}

// Quality evaluates the run's samples against its training data (Evaluate), with fresh draws from
// seeds Config.Seed+101 and +102.
func (r *Result) Quality() (Quality, error) {
	return Evaluate(r.Config.Data, r.Data, r.Samples, r.Config.Seed+101)
}
