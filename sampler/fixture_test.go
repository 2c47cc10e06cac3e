package sampler

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"github.com/ddpm/ddpm/internal/shared"
	"math"
	"os"
	"sync"
	"testing"

	"github.com/ddpm/ddpm/schedule"
)

// fixturePath is shared.Path: the fixture under ../shared/testdata ($DDPM_SHARED_TESTDATA).
func fixturePath(t *testing.T, rel string) string { return shared.Path(t, rel) }

// stepCase is one entry of schedulers.json's "cases" that this package checks: ddpm_step,
// ddpm_step_strided and ddim_step.
type stepCase struct {
	Op                 string           `json:"op"`
	T                  int              `json:"t"`
	VarianceType       Variance         `json:"variance_type"`
	PredictionType     Prediction       `json:"prediction_type"`
	ClipSample         *bool            `json:"clip_sample"`
	NumInferenceSteps  int              `json:"num_inference_steps"`
	TimestepSpacing    schedule.Spacing `json:"timestep_spacing"`
	SetAlphaToOne      bool             `json:"set_alpha_to_one"`
	Eta                float64          `json:"eta"`
	PrevSample         []float64        `json:"prev_sample"`
	PredOriginalSample []float64        `json:"pred_original_sample"`
}

type stepFixture struct {
	Shape       []int     `json:"shape"`
	Sample      []float64 `json:"sample"`       // x_t
	ModelOutput []float64 `json:"model_output"` // m
	Noise       []float64 `json:"noise"`        // z
	Cases       []stepCase
	// AlphasCumprod is diffusers' float32 alphas_cumprod of the linear schedule, T = 1000.
	AlphasCumprod []float32
}

// stepFixtureCache holds the parsed schedulers.json, shared by the tests of one run.
var stepFixtureCache struct {
	once sync.Once
	f    *stepFixture
	err  error
}

func loadStepFixture(t *testing.T) *stepFixture {
	t.Helper()
	path := fixturePath(t, "diffusers/schedulers.json")
	stepFixtureCache.once.Do(func() { stepFixtureCache.f, stepFixtureCache.err = parseStepFixture(path) })
	if stepFixtureCache.err != nil {
		t.Fatal(stepFixtureCache.err)
	}
	return stepFixtureCache.f
}

func parseStepFixture(path string) (*stepFixture, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var top struct {
		Shape       []int             `json:"shape"`
		Sample      []float64         `json:"sample"`
		ModelOutput []float64         `json:"model_output"`
		Noise       []float64         `json:"noise"`
		Cases       []json.RawMessage `json:"cases"`
		AlphaBar    []float32         `json:"alphas_cumprod/linear"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	f := &stepFixture{Shape: top.Shape, Sample: top.Sample, ModelOutput: top.ModelOutput, Noise: top.Noise,
		AlphasCumprod: top.AlphaBar}
	if len(f.AlphasCumprod) != 1000 || len(f.Sample) != 32 || len(f.ModelOutput) != 32 || len(f.Noise) != 32 {
		return nil, fmt.Errorf("%s: %d alphas_cumprod/linear, %d sample, %d model_output, %d noise values; want 1000, 32, 32, 32",
			path, len(f.AlphasCumprod), len(f.Sample), len(f.ModelOutput), len(f.Noise))
	}
	for _, msg := range top.Cases {
		var op struct{ Op string }
		if err := json.Unmarshal(msg, &op); err != nil {
			return nil, fmt.Errorf("%s: case: %v", path, err)
		}
		switch op.Op {
		case "ddpm_step", "ddpm_step_strided", "ddim_step":
			var c stepCase
			if err := json.Unmarshal(msg, &c); err != nil {
				return nil, fmt.Errorf("%s: %s case: %v", path, op.Op, err)
			}
			f.Cases = append(f.Cases, c)
		case "add_noise", "get_velocity", "ddpm_timesteps", "ddim_timesteps":
			// checked by package schedule
		default:
			return nil, fmt.Errorf("%s: a case with op %q that no test checks", path, op.Op)
		}
	}
	return f, nil
}

// config returns the sampler configuration, the number of inference steps, and a name for the case.
// ddpm_step runs without set_timesteps (n = T); ddpm_step_strided uses diffusers' defaults
// (fixed_small, epsilon, clip_sample) with set_timesteps(n); ddim_step uses the leading spacing.
func (c stepCase) config(T int) (ddpm *DDPM, ddim *DDIM, n int, name string) {
	clip := c.ClipSample == nil || *c.ClipSample
	switch c.Op {
	case "ddpm_step":
		k := DefaultDDPM()
		k.Prediction, k.Variance, k.ClipSample = c.PredictionType, c.VarianceType, clip
		return &k, nil, T, fmt.Sprintf("ddpm/%v/%v/clip=%v/t=%d", k.Variance, k.Prediction, clip, c.T)
	case "ddpm_step_strided":
		k := DefaultDDPM()
		k.Spacing = c.TimestepSpacing
		return &k, nil, c.NumInferenceSteps, fmt.Sprintf("ddpm_strided/%v/n=%d/t=%d", k.Spacing, c.NumInferenceSteps, c.T)
	case "ddim_step":
		k := DefaultDDIM()
		k.Prediction, k.SetAlphaToOne, k.ClipSample, k.Eta = c.PredictionType, c.SetAlphaToOne, clip, c.Eta
		return nil, &k, c.NumInferenceSteps, fmt.Sprintf("ddim/%v/alpha_to_one=%v/clip=%v/eta=%v/t=%d",
			k.Prediction, k.SetAlphaToOne, clip, k.Eta, c.T)
	}
	panic("unknown op " + c.Op)
}

// errStat tracks the largest error relative to a scale of 1 + |want|.
type errStat struct{ max float64 }

// check reports whether every |got - want| <= tol (1 + |want|), and records the largest such ratio.
func (e *errStat) check(got, want []float64, tol float64) (int, bool) {
	for i := range want {
		r := math.Abs(got[i]-want[i]) / (1 + math.Abs(want[i]))
		if !(r <= tol) { // also catches NaN
			return i, false
		}
		e.max = math.Max(e.max, r)
	}
	return -1, true
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// safetensorsInt64 reads an int64 tensor from a safetensors file: an 8-byte little-endian header length,
// a JSON header of {name: {dtype, shape, data_offsets}}, then the data.
func safetensorsInt64(t *testing.T, path, name string) []int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 8 {
		t.Fatalf("%s: too short for safetensors", path)
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	if uint64(len(raw)) < 8+n {
		t.Fatalf("%s: header length %d beyond the file", path, n)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &header); err != nil {
		t.Fatalf("%s: header: %v", path, err)
	}
	var info struct {
		DType       string `json:"dtype"`
		DataOffsets [2]int `json:"data_offsets"`
	}
	if err := json.Unmarshal(header[name], &info); err != nil || info.DType != "I64" {
		t.Fatalf("%s: tensor %q: %+v, %v; want an I64 tensor", path, name, info, err)
	}
	data := raw[8+n:][info.DataOffsets[0]:info.DataOffsets[1]]
	out := make([]int, len(data)/8)
	for i := range out {
		out[i] = int(int64(binary.LittleEndian.Uint64(data[8*i:])))
	}
	return out
}
