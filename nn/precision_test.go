package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ddpm/ddpm/internal/shared"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// tf32 rounds x down to a TF32 mantissa, as tf32Split's hi does on the device (the same mask) and as a
// TF32 tensor core reads its inputs.
func tf32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) & 0xFFFFE000) }

// TestThreeProductsRecoverFloat32 checks the 3xTF32 scheme of Highest with threeProducts, the sum
// product uses on XLA backends, on the pure-Go backend: the operands are split as tf32Split splits them
// (hi = tf32(x), lo = x - hi), and every product is fed TF32 inputs, as a GPU's tensor cores compute it
// (lo rounded to TF32 too). One such product is ~1e-3 off a float64 reference; the three-product sum
// must be float32-accurate (< 1e-6 relative to the sum of |terms|).
//
// tf32Split itself uses Bitcast, which GoMLX v0.26's pure-Go backend does not implement, so its graph
// runs only on XLA: `ddpm verify` on a GPU checks it end to end (the UNet within 9e-6 of diffusers with
// Highest, 3e-3 without).
func TestThreeProductsRecoverFloat32(t *testing.T) {
	b := shared.GoBackend(t)
	const n, k, m = 8, 256, 8
	rng := rand.New(rand.NewPCG(9, 10))
	split := func(x []float32) (hi, lo []float32) {
		hi, lo = make([]float32, len(x)), make([]float32, len(x))
		for i, v := range x {
			hi[i] = tf32(v)
			lo[i] = v - hi[i]
			if hi[i]+lo[i] != v || (lo[i] != 0 && math.Abs(float64(lo[i])) >= math.Abs(float64(v))/1024) {
				t.Fatalf("split of %g: %g + %g", v, hi[i], lo[i])
			}
			lo[i] = tf32(lo[i]) // what the tensor core reads
		}
		return hi, lo
	}
	a, c := make([]float32, n*k), make([]float32, k*m)
	for i := range a {
		a[i] = float32(rng.NormFloat64())
	}
	for i := range c {
		c[i] = float32(rng.NormFloat64())
	}
	ah, al := split(a)
	ch, cl := split(c)
	matmul := func(x, y *graph.Node) *graph.Node { return graph.Dot(x, y) }
	exec, err := graph.NewExec(b, func(in []*graph.Node) []*graph.Node {
		return []*graph.Node{matmul(in[0], in[2]), threeProducts(in[0], in[1], in[2], in[3], matmul)}
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Exec(tensors.FromFlatDataAndDimensions(ah, n, k), tensors.FromFlatDataAndDimensions(al, n, k),
		tensors.FromFlatDataAndDimensions(ch, k, m), tensors.FromFlatDataAndDimensions(cl, k, m))
	if err != nil {
		t.Fatal(err)
	}
	one, three := tensors.MustCopyFlatData[float32](out[0]), tensors.MustCopyFlatData[float32](out[1])
	var errOne, errThree float64
	for i := range n {
		for j := range m {
			var want, scale float64
			for l := range k {
				p := float64(a[i*k+l]) * float64(c[l*m+j])
				want += p
				scale += math.Abs(p)
			}
			errOne = max(errOne, math.Abs(float64(one[i*m+j])-want)/scale)
			errThree = max(errThree, math.Abs(float64(three[i*m+j])-want)/scale)
		}
	}
	t.Logf("relative error: one TF32 product %.2g, three %.2g", errOne, errThree)
	if errThree > 1e-6 {
		t.Errorf("three TF32 products are %.2g off; want float32 accuracy (< 1e-6)", errThree)
	}
	if errOne < 1e-4 {
		t.Errorf("one TF32 product is only %.2g off; the test does not emulate TF32", errOne)
	}
}

// TestExactProductOnGoIsTheProduct: on the pure-Go backend (float32 already) Highest changes nothing:
// ExactProduct and a product under SetPrecision(Highest) build op(a, b) itself, bit for bit.
func TestExactProductOnGoIsTheProduct(t *testing.T) {
	b := shared.GoBackend(t)
	SetPrecision(Highest)
	defer SetPrecision(Default)
	rng := rand.New(rand.NewPCG(11, 12))
	a, c := make([]float32, 4*16), make([]float32, 16*4)
	for i := range a {
		a[i], c[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	exec, err := graph.NewExec(b, func(x, y *graph.Node) []*graph.Node {
		return []*graph.Node{graph.Dot(x, y), ExactProduct(x, y, graph.Dot), threePass(x, y, graph.Dot)}
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Exec(tensors.FromFlatDataAndDimensions(a, 4, 16), tensors.FromFlatDataAndDimensions(c, 16, 4))
	if err != nil {
		t.Fatal(err)
	}
	want := tensors.MustCopyFlatData[float32](out[0])
	for _, o := range out[1:] {
		got := tensors.MustCopyFlatData[float32](o)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("[%d] = %g; want %g, the plain product", i, got[i], want[i])
			}
		}
	}
}
