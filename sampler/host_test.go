package sampler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// hostDenoiser is fakeModel as a HostDenoiser, for samples of `size` values.
func (f fakeModel) hostDenoiser(size int) HostDenoiser {
	return func(xt []float32, t []int32, y []int32) ([]float32, error) {
		m := make([]float32, len(xt))
		for n := range t {
			copy(m[n*size:(n+1)*size], f.host(xt[n*size:(n+1)*size], size, int(t[n]), labelsOf(y, n, size)))
		}
		return m, nil
	}
}

// labelsOf repeats sample n's label for each of its values, as fakeModel.host indexes labels per value/size.
func labelsOf(y []int32, n, size int) []int32 {
	if y == nil {
		return nil
	}
	l := make([]int32, size)
	for i := range l {
		l[i] = y[n]
	}
	return l
}

// TestRunHostMatchesRun checks RunHost against the host loop of Step (exactly: the same arithmetic) and
// against the graph Run on the pure-Go backend (float32 on the device, 1e-5), with a given x_T and noise.
func TestRunHostMatchesRun(t *testing.T) {
	b := shared.GoBackend(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	const N, size = 2, 1 * 4 * 4
	model := fakeModel{w: 0.9, u: 0.3}
	for k, tc := range runCases() {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := tc.plan(s)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(7, uint64(k)))
			xT := normals(rng, N*size)
			noise := make([][]float32, len(plan))
			var noiseFlat []float32
			for i := range noise {
				noise[i] = normals(rng, N*size)
				noiseFlat = append(noiseFlat, noise[i]...)
			}
			want, _, _ := hostRun(model, plan, xT, size, noise, tc.labels)
			opts := Options{
				N: N, Shape: []int{1, 4, 4},
				Init:   tensors.FromFlatDataAndDimensions(slices.Clone(xT), N, 1, 4, 4),
				Noise:  tensors.FromFlatDataAndDimensions(noiseFlat, len(plan), N, 1, 4, 4),
				Labels: tc.labels,
			}
			var progress []int
			hostOpts := opts
			hostOpts.Progress = func(done, total int) {
				if total != len(plan) {
					t.Errorf("Progress total %d; want %d", total, len(plan))
				}
				progress = append(progress, done)
			}
			got, err := RunHost(model.hostDenoiser(size), plan, hostOpts)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxRelDiff(flat32(t, got), want); d != 0 {
				t.Fatalf("RunHost differs from the host loop by %.3g; want 0", d)
			}
			if want := fmt.Sprint(seq(1, len(plan))); fmt.Sprint(progress) != want {
				t.Fatalf("Progress called with %v; want %v", progress, want)
			}
			dev, err := Run(b, model, plan, opts)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxRelDiff(flat32(t, got), flat32(t, dev)); !(d <= 1e-5) {
				t.Fatalf("RunHost differs from Run by %.3g; want <= 1e-5", d)
			}
		})
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestRunHostSeed: the same seed gives the same samples, another seed others; Record sees the steps asked.
func TestRunHostSeed(t *testing.T) {
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := DefaultDDPM().Plan(s, 5)
	if err != nil {
		t.Fatal(err)
	}
	model := fakeModel{w: 0.7, u: 0.1}
	run := func(seed int64, record []int, onStep func(i, t int, xt, x0Hat *tensors.Tensor)) []float32 {
		x, err := RunHost(model.hostDenoiser(8), plan, Options{N: 3, Shape: []int{2, 2, 2}, Seed: seed, Record: record, OnStep: onStep})
		if err != nil {
			t.Fatal(err)
		}
		return flat32(t, x)
	}
	var steps []int
	a1 := run(42, []int{4, 1}, func(i, tt int, xt, x0Hat *tensors.Tensor) {
		steps = append(steps, i)
		if tt != plan[i].T || xt.Shape().Size() != 24 || x0Hat.Shape().Size() != 24 {
			t.Errorf("OnStep(%d, %d, %s, %s); want t=%d and [3,2,2,2] tensors", i, tt, xt.Shape(), x0Hat.Shape(), plan[i].T)
		}
	})
	if fmt.Sprint(steps) != "[1 4]" {
		t.Errorf("OnStep called for steps %v; want [1 4]", steps)
	}
	a2, c := run(42, nil, nil), run(43, nil, nil)
	if fmt.Sprint(a1) != fmt.Sprint(a2) {
		t.Errorf("seed 42 twice gave different samples:\n%v\n%v", a1, a2)
	}
	if maxRelDiff(a1, c) < 1e-3 {
		t.Errorf("seeds 42 and 43 gave the same samples: %v", a1)
	}
}

// TestStopOnContext: both loops stop before the next step once the context is cancelled, and say so.
func TestStopOnContext(t *testing.T) {
	b := shared.GoBackend(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := DefaultDDIM().Plan(s, 6)
	if err != nil {
		t.Fatal(err)
	}
	model := fakeModel{w: 0.7, u: 0.1}
	for _, host := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		var done []int
		opts := Options{N: 2, Shape: []int{1, 2, 2}, Context: ctx, Progress: func(d, total int) {
			done = append(done, d)
			if d == 2 {
				cancel()
			}
		}}
		var err error
		if host {
			_, err = RunHost(model.hostDenoiser(4), plan, opts)
		} else {
			_, err = Run(b, model, plan, opts)
		}
		cancel()
		if !errors.Is(err, context.Canceled) || fmt.Sprint(done) != "[1 2]" {
			t.Errorf("host=%v: cancelled after step 2: error %v, progress %v; want context.Canceled after [1 2]", host, err, done)
		}
	}
}

// TestRunHostErrors: a denoiser's error and a wrong output length are reported with the step.
func TestRunHostErrors(t *testing.T) {
	s, _ := schedule.New(schedule.Default())
	plan, err := DefaultDDIM().Plan(s, 3)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{N: 1, Shape: []int{1, 2, 2}}
	boom := errors.New("boom")
	if _, err := RunHost(func([]float32, []int32, []int32) ([]float32, error) { return nil, boom }, plan, opts); !errors.Is(err, boom) {
		t.Errorf("denoiser error: got %v; want it wrapped", err)
	}
	short := func(x []float32, _, _ []int32) ([]float32, error) { return x[:1], nil }
	if _, err := RunHost(short, plan, opts); err == nil || !containsAll(err.Error(), "step 0", "returned 1 values") {
		t.Errorf("short output: got %v; want an error naming the step and the length", err)
	}
	if _, err := RunHost(nil, plan, opts); err == nil {
		t.Errorf("nil denoiser: no error")
	}
}

// TestCompactNoise: Noise with one draw per noisy step (DDPM: none at t = 0) gives the samples of the full
// [steps,...] noise, in both loops.
func TestCompactNoise(t *testing.T) {
	b := shared.GoBackend(t)
	s, _ := schedule.New(schedule.Default())
	plan, err := DefaultDDPM().Plan(s, 5)
	if err != nil {
		t.Fatal(err)
	}
	if plan.noisy() != 4 {
		t.Fatalf("DDPM 5 steps: %d noisy steps; want 4 (none at t = 0)", plan.noisy())
	}
	model := fakeModel{w: 0.6, u: 0.2}
	rng := rand.New(rand.NewPCG(11, 12))
	xT, full := normals(rng, 8), normals(rng, 5*8)
	for _, host := range []bool{true, false} {
		var got [2][]float32
		for k, noise := range []*tensors.Tensor{
			tensors.FromFlatDataAndDimensions(slices.Clone(full), 5, 2, 1, 2, 2),
			tensors.FromFlatDataAndDimensions(slices.Clone(full[:4*8]), 4, 2, 1, 2, 2),
		} {
			opts := Options{N: 2, Shape: []int{1, 2, 2}, Init: tensors.FromFlatDataAndDimensions(slices.Clone(xT), 2, 1, 2, 2), Noise: noise}
			var x *tensors.Tensor
			if host {
				x, err = RunHost(model.hostDenoiser(4), plan, opts)
			} else {
				x, err = Run(b, model, plan, opts)
			}
			if err != nil {
				t.Fatal(err)
			}
			got[k] = flat32(t, x)
		}
		if fmt.Sprint(got[0]) != fmt.Sprint(got[1]) {
			t.Errorf("host=%v: full noise gives %v, compact %v", host, got[0], got[1])
		}
	}
	bad := Options{N: 2, Shape: []int{1, 2, 2}, Noise: tensors.FromFlatDataAndDimensions(make([]float32, 3*8), 3, 2, 1, 2, 2)}
	if _, err := RunHost(model.hostDenoiser(4), plan, bad); err == nil || !containsAll(err.Error(), "[5 2 1 2 2]", "[4 2 1 2 2]") {
		t.Errorf("3 draws for 5 steps: error %v; want one naming both accepted shapes", err)
	}
}
