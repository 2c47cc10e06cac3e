package cpu

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func tinyConfig() unet.Config {
	c := unet.Default()
	c.InChannels, c.OutChannels = 1, 1
	c.BlockOutChannels = []int{8, 16}
	c.DownBlockTypes = []string{"DownBlock2D", "AttnDownBlock2D"}
	c.UpBlockTypes = []string{"AttnUpBlock2D", "UpBlock2D"}
	c.LayersPerBlock = 1
	g := 4
	c.NormNumGroups = &g
	c.AttentionHeadDim = nil
	return c
}

// gradConfigs are the networks the gradient test covers: the tiny UNet (attention, two levels,
// conv_shortcut in the up path) and the family of unet/testdata/configs the engine trains (several
// heads, four levels, padding 1, flip_sin_to_cos, class labels, no mid block, center_input_sample,
// mid_block_scale_factor 2, attention-norm groups).
func gradConfigs(t *testing.T) map[string]unet.Config {
	out := map[string]unet.Config{"tiny": tinyConfig()}
	paths, err := filepath.Glob("../unet/testdata/configs/*/config.json")
	if err != nil || len(paths) < 8 {
		t.Fatalf("want the config fixtures in unet/testdata/configs, found %d (%v)", len(paths), err)
	}
	for _, p := range paths {
		c, err := unet.LoadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		if SupportsTraining(c) == nil {
			out[filepath.Base(filepath.Dir(p))] = c
		}
	}
	return out
}

// The training pass's output and the gradient of mean((out - target)^2) with respect to every weight,
// against unet.Model.Forward and graph.Gradient on the pure-Go backend, same weights, batch, timesteps
// and target. Tolerance: relative to the largest value of each weight's gradient, 2e-5 (float32 sums
// in other orders through a dozen layers; the worst seen is noted in the failure message).
func TestGradMatchesGoMLX(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	b := shared.GoBackend(t)
	for name, cfg := range gradConfigs(t) {
		t.Run(name, func(t *testing.T) {
			m, err := unet.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			specs := m.Specs()
			ts := nn.InitTensors(specs, 7)
			flatT, err := nn.Flatten(specs, ts)
			if err != nil {
				t.Fatal(err)
			}
			flat := tensors.MustCopyFlatData[float32](flatT)
			rng := rand.New(rand.NewPCG(1, 2))
			n, size := 2, 4<<(cfg.Levels()-1)
			if size < 8 {
				size = 8
			}
			x := randn(rng, n*cfg.InChannels*size*size)
			target := randn(rng, n*cfg.OutChannels*size*size)
			tsteps := []int32{3, 871}
			var y []int32
			if cfg.NumClassEmbeds != nil {
				y = []int32{1, int32(*cfg.NumClassEmbeds - 1)}
			}

			exec, err := graph.NewExec(b, func(in []*graph.Node) []*graph.Node {
				params := in[0]
				var yn *graph.Node
				if y != nil {
					yn = in[4]
				}
				weights := nn.SplitFlat(specs, params)
				out := m.Forward(nn.NewWeights(specs, weights).Scope(), in[1], in[2], yn)
				l := graph.ReduceAllMean(graph.Square(graph.Sub(out, in[3])))
				grad := nn.JoinFlat(specs, graph.Gradient(l, weights...))
				return []*graph.Node{out, graph.Reshape(l, 1), grad}
			})
			if err != nil {
				t.Fatal(err)
			}
			args := []any{flatT, tensor(x, n, cfg.InChannels, size, size),
				tensors.FromFlatDataAndDimensions(tsteps, n), tensor(target, n, cfg.OutChannels, size, size)}
			if y != nil {
				args = append(args, tensors.FromFlatDataAndDimensions(y, n))
			}
			res, err := exec.Exec(args...)
			if err != nil {
				t.Fatal(err)
			}
			wantOut := tensors.MustCopyFlatData[float32](res[0])
			wantLoss := tensors.MustCopyFlatData[float32](res[1])[0]
			wantGrad := tensors.MustCopyFlatData[float32](res[2])

			g, err := NewGrad(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			if err := g.SetWeights(flat); err != nil {
				t.Fatal(err)
			}
			out, err := g.Forward(x, n, size, size, tsteps, y)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "output", out, wantOut, 1e-5)
			loss, err := g.LossGrad(x, target, n, size, size, tsteps, y)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(loss-float64(wantLoss)) / float64(wantLoss); d > 1e-5 {
				t.Errorf("loss %v, want %v", loss, wantLoss)
			}
			offsets, _ := nn.Offsets(specs)
			grad := g.Gradient()
			// A weight whose gradient is zero in exact arithmetic (to_k.bias: softmax ignores a shift of
			// every score of a row) is compared with the scale of the whole gradient instead.
			floor := 0.0
			for _, v := range wantGrad {
				floor = max(floor, 1e-3*math.Abs(float64(v)))
			}
			worst, worstName := 0.0, ""
			for i, s := range specs {
				got, want := grad[offsets[i]:offsets[i]+s.Size()], wantGrad[offsets[i]:offsets[i]+s.Size()]
				e := relErr(got, want)
				if m := maxAbs(want); m < floor {
					e *= m / floor
				}
				if e > worst {
					worst, worstName = e, s.Name
				}
				if !(e <= 2e-5) {
					t.Errorf("d %s: relative error %.3g (got[0:3] %v, want %v)", s.Name, e, got[:min(3, len(got))], want[:min(3, len(want))])
				}
			}
			t.Logf("worst gradient relative error %.3g (%s) over %d weights", worst, worstName, len(specs))
		})
	}
}

func maxAbs(v []float32) float64 {
	m := 1e-30
	for _, x := range v {
		m = max(m, math.Abs(float64(x)))
	}
	return m
}
