package fid

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/internal/shared"
)

// benchFeatures returns n independent feature vectors [n,d] with per-dimension scales spread over
// three orders of magnitude, like Inception pool3 features.
func benchFeatures(seed uint64, n, d int) []float32 {
	r := rand.New(rand.NewPCG(seed, 2))
	scale := make([]float64, d)
	for j := range scale {
		scale[j] = 0.01 + 10*r.Float64()*r.Float64()*r.Float64()
	}
	x := make([]float32, n*d)
	for k := range x {
		x[k] = float32(scale[k%d] * (r.NormFloat64() + 1))
	}
	return x
}

// BenchmarkDistance times the Frechet distance at feature dimensions up to pool3's 2048
// (go test -bench Distance -benchtime 1x ./fid; D = 2048 takes ~12 s on 2 cores).
func BenchmarkDistance(b *testing.B) {
	for _, d := range []int{64, 512, 2048} {
		b.Run(fmt.Sprintf("D=%d", d), func(b *testing.B) {
			sa, err := ComputeStats(benchFeatures(1, d+100, d), d)
			if err != nil {
				b.Fatal(err)
			}
			sb, err := ComputeStats(benchFeatures(2, d+200, d), d)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := Distance(sa, sb); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAccumulator times the covariance update for batches of pool3 features (D = 2048).
func BenchmarkAccumulator(b *testing.B) {
	const batch, d = 250, 2048
	x := benchFeatures(3, batch, d)
	a := NewAccumulator(d)
	for b.Loop() {
		if err := a.Add(x); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "features/s")
}

// BenchmarkFeatures times Inception.Features on 32x32 RGB images (resized to 299x299 inside) by batch
// size, with the fixture's weights (the network of the real ones), on the pure-Go backend or the one
// $GOMLX_BACKEND names: go test -run XXX -bench Features -benchtime 2x ./fid
// (~3 s an image on 2 cores).
func BenchmarkFeatures(b *testing.B) {
	m, err := LoadInception(shared.Path(b, "fid/pt_inception-fixture.pth"))
	if err != nil {
		b.Fatal(err)
	}
	name := os.Getenv(backend.EnvVar)
	if name == "" {
		name = "go"
	}
	be, info, err := backend.New(name)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("backend %s", info)
	r := rand.New(rand.NewPCG(4, 5))
	for _, batch := range []int{1, 4} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			x := make([]float32, batch*3*32*32)
			for i := range x {
				x[i] = r.Float32()
			}
			if _, err := m.Features(be, x, batch, 3, 32, 32, batch); err != nil { // compiles
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := m.Features(be, x, batch, 3, 32, 32, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
