package data

import "math"

// splitMix64 is Vigna's SplitMix64 generator (https://prng.di.unimi.it/splitmix64.c). The package
// uses it instead of math/rand so that every stream here is fixed by this file alone and can be
// reproduced in a few lines of Python (see the package doc).
type splitMix64 struct{ state uint64 }

// gamma is SplitMix64's increment, 2^64 / golden ratio, made odd.
const gamma = 0x9E3779B97F4A7C15

// next returns the next output:
//
//	state += 0x9E3779B97F4A7C15
//	z = (state ^ (state >> 30)) * 0xBF58476D1CE4E5B9
//	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//	return z ^ (z >> 31)
func (r *splitMix64) next() uint64 {
	r.state += gamma
	return mix64(r.state)
}

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// uniform returns a float64 in [0, 1): the top 53 bits of next, times 2^-53.
func (r *splitMix64) uniform() float64 {
	return float64(r.next()>>11) * 0x1p-53
}

// normal returns a standard normal draw by the Box-Muller transform of two uniforms, in this order:
//
//	u1 = 1 - uniform()   (in (0, 1], so the log is finite)
//	u2 = uniform()
//	z  = sqrt(-2 ln u1) * cos(2 pi u2)
func (r *splitMix64) normal() float64 {
	u1 := 1 - r.uniform()
	u2 := r.uniform()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// Permutation returns a permutation of 0..n-1 determined by seed alone: a Fisher-Yates shuffle
// driven by SplitMix64 seeded with seed,
//
//	p = [0, 1, ..., n-1]
//	for i = n-1 down to 1: j = next() mod (i+1); swap p[i], p[j]
//
// The modulo has a bias below n/2^64, negligible for any data set. The stream is part of the
// package's contract: it does not change between versions (the tests pin it).
// Permutation panics if n < 0.
func Permutation(n int, seed uint64) []int {
	return permute(n, &splitMix64{state: seed})
}

// permute is Permutation drawing from r.
func permute(n int, r *splitMix64) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(r.next() % uint64(i+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}
