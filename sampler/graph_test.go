package sampler

import (
	"github.com/ddpm/ddpm/internal/shared"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func flat32(t *testing.T, x *tensors.Tensor) []float32 {
	t.Helper()
	v, err := tensors.CopyFlatData[float32](x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestGraphStepGolden runs GraphStep on the pure-Go backend, one compiled graph for all 201 cases (the
// coefficients are an input), against the host Step (graphTol) and against the fixture (the host
// tolerances: the float32 graph adds at most graphTol to them).
func TestGraphStepGolden(t *testing.T) {
	f := loadStepFixture(t)
	b := shared.GoBackend(t)
	exec, err := graph.NewExec(b, func(row, xt, m, z *graph.Node) (*graph.Node, *graph.Node) {
		return GraphStep(row, xt, m, z)
	})
	if err != nil {
		t.Fatal(err)
	}
	exec.SetMaxCache(1) // one compiled graph serves every case
	dims := f.Shape
	xt32, m32, z32 := to32(f.Sample), to32(f.ModelOutput), to32(f.Noise)
	xt := tensors.FromFlatDataAndDimensions(xt32, dims...)
	m := tensors.FromFlatDataAndDimensions(m32, dims...)
	z := tensors.FromFlatDataAndDimensions(z32, dims...)
	var vsHost, vsFixture errStat
	for _, g := range goldenCases(t, f) {
		t.Run(g.name, func(t *testing.T) {
			out, err := exec.Exec(g.coef.Row(), xt, m, z)
			if err != nil {
				t.Fatal(err)
			}
			prev, x0 := to64(flat32(t, out[0])), to64(flat32(t, out[1]))
			hostPrev, hostX0 := Step(g.coef, xt32, m32, z32)
			if i, ok := vsHost.check(prev, to64(hostPrev), graphTol); !ok {
				t.Errorf("GraphStep(t=%d) prev[%d] = %.8g; host Step %.8g", g.c.T, i, prev[i], hostPrev[i])
			}
			if i, ok := vsHost.check(x0, to64(hostX0), graphTol); !ok {
				t.Errorf("GraphStep(t=%d) x0Hat[%d] = %.8g; host Step %.8g", g.c.T, i, x0[i], hostX0[i])
			}
			tol := hostTol + graphTol
			if g.c.T <= 10 {
				tol = hostSmallTTol + graphTol
			}
			checkCase(t, "GraphStep", &vsFixture, g, prev, x0, tol)
		})
	}
	t.Logf("max error / (1 + |want|): vs host Step %.3g (tolerance %g), vs fixture %.3g", vsHost.max, graphTol, vsFixture.max)
}

// TestGraphStepNoNoise checks that GraphStep with z = nil drops the noise term.
func TestGraphStepNoNoise(t *testing.T) {
	b := shared.GoBackend(t)
	coef := Coefficients{A: 2, B: -1, C: 0.5, D: 0.25, E: -0.125, Sigma: 3, Clip: 1}
	xt, m := []float32{0.1, 0.7, -2}, []float32{-0.3, 0.2, 0.5}
	got, err := execOnce(b, func(row, xt, m *graph.Node) []*graph.Node {
		prev, x0 := GraphStep(row, xt, m, nil)
		return []*graph.Node{prev, x0}
	}, coef.Row(), xt, m)
	if err != nil {
		t.Fatal(err)
	}
	wantPrev, wantX0 := Step(coef, xt, m, nil)
	for i, w := range [][]float32{wantPrev, wantX0} {
		g := flat32(t, got[i])
		for j := range w {
			if math.Abs(float64(g[j]-w[j])) > 1e-6 {
				t.Fatalf("GraphStep(z=nil) output %d [%d] = %v; want %v", i, j, g[j], w[j])
			}
		}
	}
}

// TestAddNoiseTargetGraph checks the graph AddNoise and Target, each sample at its own timestep, against
// schedule.AddNoise and Prediction.Target on the host. Tolerance 1e-6: float32 arithmetic with float32
// table entries on values of magnitude ~3.
func TestAddNoiseTargetGraph(t *testing.T) {
	b := shared.GoBackend(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	ts := []int32{0, 17, 500, 999}
	const size = 2 * 3 * 3 // [C,H,W] = [2,3,3]
	x0, eps := make([]float32, len(ts)*size), make([]float32, len(ts)*size)
	for i := range x0 {
		x0[i], eps[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	x0T := tensors.FromFlatDataAndDimensions(x0, len(ts), 2, 3, 3)
	epsT := tensors.FromFlatDataAndDimensions(eps, len(ts), 2, 3, 3)
	for _, p := range []Prediction{Epsilon, Sample, V} {
		t.Run(p.String(), func(t *testing.T) {
			out, err := execOnce(b, func(table, x0, eps, t *graph.Node) []*graph.Node {
				return []*graph.Node{AddNoise(table, x0, eps, t), Target(table, x0, eps, t)}
			}, Table(p, s), x0T, epsT, ts)
			if err != nil {
				t.Fatal(err)
			}
			gotXt, gotTarget := flat32(t, out[0]), flat32(t, out[1])
			for n, tt := range ts {
				lo, hi := n*size, (n+1)*size
				ab := s.AlphaBar[tt]
				wantXt := schedule.AddNoise(x0[lo:hi], eps[lo:hi], ab)
				wantTarget := p.Target(x0[lo:hi], eps[lo:hi], ab)
				for i := range wantXt {
					if d := math.Abs(float64(gotXt[lo+i] - wantXt[i])); d > 1e-6 {
						t.Fatalf("AddNoise(t=%d)[%d] = %v; want %v", tt, i, gotXt[lo+i], wantXt[i])
					}
					if d := math.Abs(float64(gotTarget[lo+i] - wantTarget[i])); d > 1e-6 {
						t.Fatalf("Target(t=%d)[%d] = %v; want %v", tt, i, gotTarget[lo+i], wantTarget[i])
					}
				}
			}
		})
	}
	t.Run("bad table", func(t *testing.T) {
		_, err := execOnce(b, func(table, x0, eps, t *graph.Node) []*graph.Node {
			return []*graph.Node{AddNoise(table, x0, eps, t)}
		}, []float32{1, 2, 3}, x0T, epsT, ts)
		if err == nil || !containsAll(err.Error(), "sampler: table", "[T,4]") {
			t.Fatalf("AddNoise with a [3] table: error %v; want one asking for sampler.Table", err)
		}
	})
}

// execOnce compiles graphFn (any of GoMLX's graph function signatures) and runs it once on args.
func execOnce(b backends.Backend, graphFn any, args ...any) ([]*tensors.Tensor, error) {
	exec, err := graph.NewExecAny(b, graphFn)
	if err != nil {
		return nil, err
	}
	defer exec.Finalize()
	return exec.Exec(args...)
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
