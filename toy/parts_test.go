package toy

import (
	"context"
	"errors"
	"github.com/ddpm/ddpm/internal/shared"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/schedule"
)

func TestMeanNearest(t *testing.T) {
	a := []float32{0, 0, 3, 4, 10, 0}
	b := []float32{0, 1, 3, 0}
	// (0,0): nearest (0,1) at 1; (3,4): (3,0) at 4; (10,0): (3,0) at 7.
	got, err := MeanNearest(a, b)
	if err != nil || math.Abs(got-4) > 1e-12 {
		t.Errorf("MeanNearest = %v, %v; want 4 (mean of 1, 4, 7)", got, err)
	}
	if got, _ := MeanNearest(a, a); got != 0 {
		t.Errorf("MeanNearest(a, a) = %v; want 0", got)
	}
	for _, c := range []struct {
		name string
		a, b []float32
	}{{"odd", []float32{1}, b}, {"empty", nil, b}, {"empty ref", a, nil}} {
		if _, err := MeanNearest(c.a, c.b); err == nil || !strings.HasPrefix(err.Error(), "toy: MeanNearest") {
			t.Errorf("MeanNearest(%s) error = %v; want a toy: MeanNearest error", c.name, err)
		}
	}
}

func TestDatasets(t *testing.T) {
	for _, name := range DatasetNames() {
		var d Dataset
		if err := d.UnmarshalText([]byte(name)); err != nil {
			t.Fatalf("UnmarshalText(%q): %v", name, err)
		}
		if d.String() != name {
			t.Errorf("Dataset %q round-trips to %q", name, d)
		}
		p, err := d.Points(1000, 4)
		if err != nil || len(p) != 2000 {
			t.Fatalf("%s.Points(1000, 4): %d values, %v; want 2000", d, len(p), err)
		}
		q, _ := d.Points(1000, 4)
		if !slices.Equal(p, q) {
			t.Errorf("%s.Points is not deterministic for a seed", d)
		}
		// Every set has its mean within 0.3 of 0 (the roll, not centred by the lesson, has its mean
		// at about (0.24, 0.03)) and a radius of 1 to 2 (0.47..1.41 + noise for the roll, the unit
		// circle for the ring, [-1.5, 1.5] x [-0.75, 0.75] for the moons).
		var mx, my, r float64
		for i := 0; i < len(p); i += 2 {
			mx += float64(p[i]) / 1000
			my += float64(p[i+1]) / 1000
			r = max(r, math.Hypot(float64(p[i]), float64(p[i+1])))
		}
		if math.Abs(mx) > 0.3 || math.Abs(my) > 0.3 || r < 1 || r > 2 {
			t.Errorf("%s: mean (%.3f, %.3f), max radius %.3f; want the mean within 0.3 of 0 and the radius in [1, 2]", d, mx, my, r)
		}
	}
	var d Dataset
	if err := d.UnmarshalText([]byte("spiral")); err == nil || !strings.Contains(err.Error(), "swiss-roll") {
		t.Errorf("UnmarshalText(spiral) = %v; want an error listing the names", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no steps", func(c *Config) { c.Steps = 0 }, "steps = 0"},
		{"no samples", func(c *Config) { c.Samples = 0 }, "samples = 0"},
		{"one frame", func(c *Config) { c.Frames = 1 }, "frames = 1"},
		{"batch above points", func(c *Config) { c.Points = 100 }, "fewer than batch_size"},
		{"bad data", func(c *Config) { c.Data = 7 }, "data = 7"},
		{"no layers", func(c *Config) { c.MLP.Layers = 0 }, "layers = 0"},
		{"odd embedding", func(c *Config) { c.MLP.EmbedDim = 15 }, "embed_dim = 15"},
		{"zero input scale", func(c *Config) { c.MLP.InputScale = 0 }, "input_scale = 0"},
		{"bad schedule", func(c *Config) { c.Schedule.T = 0 }, "num_train_timesteps"},
		{"bad lr", func(c *Config) { c.Train.LR = 0 }, "learning_rate"},
		{"conditional", func(c *Config) { c.Train.NumClasses = 10 }, "unconditional"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate() = %v; want an error saying %q", err, c.want)
			}
		})
	}
}

func TestFrameTimes(t *testing.T) {
	s, err := schedule.New(DefaultConfig().Schedule)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{2, 3, 10, 30} {
		ts := FrameTimes(s, k)
		if len(ts) != k || ts[0] != 200 || ts[len(ts)-1] != 0 {
			t.Errorf("FrameTimes(T=200, %d) = %v; want %d timesteps from 200 to 0", k, ts, k)
		}
		for i := 1; i < len(ts); i++ {
			if ts[i] >= ts[i-1] {
				t.Errorf("FrameTimes(T=200, %d) = %v; want strictly decreasing", k, ts)
			}
		}
	}
	// The noise level sqrt(1 - alphaBar) at the middle frame of 3 is the nearest to 1/2.
	mid := FrameTimes(s, 3)[1]
	noise := func(tau int) float64 { return math.Sqrt(1 - s.AlphaBar[tau-1]) }
	if math.Abs(noise(mid)-0.5) > math.Abs(noise(mid+1)-0.5) || math.Abs(noise(mid)-0.5) > math.Abs(noise(mid-1)-0.5) {
		t.Errorf("FrameTimes(T=200, 3)[1] = %d with noise %.4f; a neighbour is nearer 0.5", mid, noise(mid))
	}
	small, _ := schedule.New(schedule.Config{T: 3, BetaStart: 0.1, BetaEnd: 0.5})
	if ts := FrameTimes(small, 10); ts[0] != 3 || ts[len(ts)-1] != 0 || len(ts) > 4 {
		t.Errorf("FrameTimes(T=3, 10) = %v; want at most 4 distinct timesteps from 3 to 0", ts)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cfg := quickConfig()
	cfg.Steps = 1000
	// Progress comes once per group of steps (train.Run reads losses in groups), so cancel at the first
	// report at or after step 3: Run must stop there, with no report after the cancel.
	calls, stopCall, stopStep := 0, 0, int64(0)
	_, err := Run(ctx, shared.GoBackend(t), cfg, func(done, total int64, loss float32) {
		calls++
		if done >= 3 && stopCall == 0 {
			stopCall, stopStep = calls, done
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || stopCall == 0 || calls != stopCall || stopStep >= cfg.Steps {
		t.Errorf("Run cancelled at step %d (report %d): %d progress reports, error %v; want no report after the cancel and context.Canceled",
			stopStep, stopCall, calls, err)
	}
}

// TestVerdict checks the ratios and the verdict on clouds whose quality is known without training:
// a fresh draw of the roll is good, a roll drawn with 1.6 times the noise is blurred, the inner
// half of the roll alone is incomplete, a standard normal cloud is poor.
func TestVerdict(t *testing.T) {
	train := data.SwissRoll(10000, 0.5, 1)
	var inner []float32
	wide := data.SwissRoll(4000, 0.5, 5)
	for i := 0; i < len(wide); i += 2 {
		if math.Hypot(float64(wide[i]), float64(wide[i+1])) < 0.94 && len(inner) < 2000 {
			inner = append(inner, wide[i], wide[i+1])
		}
	}
	gauss := make([]float32, 2000)
	r := rand.New(rand.NewPCG(3, 3))
	for i := range gauss {
		gauss[i] = float32(r.NormFloat64())
	}
	for _, c := range []struct {
		name    string
		samples []float32
		want    string
	}{
		{"a fresh draw", data.SwissRoll(1000, 0.5, 2), "good"},
		{"noise 0.8", data.SwissRoll(1000, 0.8, 3), "blurred"},
		{"the inner half", inner, "incomplete"},
		{"N(0, I)", gauss, "poor"},
	} {
		q, err := Evaluate(SwissRoll, train, c.samples, 101)
		if err != nil {
			t.Fatal(err)
		}
		if q.Verdict() != c.want || !strings.HasSuffix(q.String(), ": "+c.want) {
			t.Errorf("%s: %v; want the verdict %q", c.name, q, c.want)
		}
	}
	q, _ := Evaluate(SwissRoll, train, data.SwissRoll(1000, 0.5, 2), 101)
	if p, c := q.PrecisionRatio(), q.CoverageRatio(); math.Abs(p-1) > 0.1 || math.Abs(c-1) > 0.1 {
		t.Errorf("a fresh draw has ratios %.3f and %.3f; want both within 0.1 of 1", p, c)
	}
}
