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

// MaxRatio is the largest PrecisionRatio and CoverageRatio that Verdict calls "good": a swiss roll
// drawn with noise 0.6 instead of the lesson's 0.5 (arms 20% thicker) has a precision ratio of
// about 1.13, one with noise 0.65 about 1.29.
const MaxRatio = 1.2

// PrecisionRatio is Precision / FreshPrecision: 1 when the samples lie as close to the data as a
// fresh draw of it does, larger when they stray off it.
func (q Quality) PrecisionRatio() float64 { return q.Precision / q.FreshPrecision }

// CoverageRatio is Coverage / FreshCoverage: 1 when every part of the data is sampled as densely as
// by a fresh draw, larger when parts are missed.
func (q Quality) CoverageRatio() float64 { return q.Coverage / q.FreshCoverage }

// Verdict sums up the ratios in one word: "good" when both are at most MaxRatio, "blurred" when only
// the samples stray off the data, "incomplete" when only parts of the data are missed, and "poor"
// when both.
func (q Quality) Verdict() string {
	p, c := q.PrecisionRatio() <= MaxRatio, q.CoverageRatio() <= MaxRatio
	switch {
	case p && c:
		return "good"
	case c:
		return "blurred"
	case p:
		return "incomplete"
	}
	return "poor"
}

// String reports the two ratios and the verdict, as `ddpm toy` prints them.
func (q Quality) String() string {
	return fmt.Sprintf("precision %.2fx, coverage %.2fx a fresh draw of the data (1 is perfect, <= %.1f good): %s",
		q.PrecisionRatio(), q.CoverageRatio(), MaxRatio, q.Verdict())
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
