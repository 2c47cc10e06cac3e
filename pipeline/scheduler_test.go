package pipeline

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
)

// TestParseSchedulerConfig pins DDPMScheduler.from_config and DDIMScheduler.from_config of each file: the
// fields of the target class carry over, the other class's field is dropped, absent ones take defaults.
func TestParseSchedulerConfig(t *testing.T) {
	def := DefaultSchedulerConfig()
	with := func(f func(c *SchedulerConfig)) SchedulerConfig {
		c := DefaultSchedulerConfig()
		c.Schedule.TrainedBetas = nil
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name, json string
		want       SchedulerConfig
	}{
		{"empty", `{}`, def},
		{"ddpm fixed_large: ddim gets set_alpha_to_one true", `{"_class_name": "DDPMScheduler", "variance_type": "fixed_large",
			"clip_sample": false, "steps_offset": 1, "timestep_spacing": "trailing", "prediction_type": "v_prediction"}`,
			with(func(c *SchedulerConfig) {
				c.DDPM = sampler.DDPM{Prediction: sampler.V, Variance: sampler.FixedLarge, ClipSampleRange: 1, Spacing: schedule.Trailing, StepsOffset: 1}
				c.DDIM = sampler.DDIM{Prediction: sampler.V, SetAlphaToOne: true, ClipSampleRange: 1, Spacing: schedule.Trailing, StepsOffset: 1}
			})},
		{"ddim: ddpm gets fixed_small", `{"_class_name": "DDIMScheduler", "set_alpha_to_one": false, "clip_sample_range": 2.5,
			"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 500}`,
			with(func(c *SchedulerConfig) {
				c.Class = DDIMScheduler
				c.Schedule = schedule.Config{T: 500, BetaStart: 0.00085, BetaEnd: 0.012, BetaSchedule: schedule.ScaledLinear}
				c.DDPM.ClipSampleRange, c.DDIM.ClipSampleRange = 2.5, 2.5
				c.DDIM.SetAlphaToOne = false
			})},
		{"ddim carrying a ddpm variance_type", `{"_class_name": "DDIMScheduler", "variance_type": "fixed_small_log"}`,
			with(func(c *SchedulerConfig) { c.Class, c.DDPM.Variance = DDIMScheduler, sampler.FixedSmallLog })},
		{"trained betas", `{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2, 0.3], "beta_schedule": "squaredcos_cap_v2"}`,
			with(func(c *SchedulerConfig) {
				c.Schedule = schedule.Config{T: 3, BetaStart: 1e-4, BetaEnd: 0.02, BetaSchedule: schedule.SquaredCosCapV2, TrainedBetas: []float64{0.1, 0.2, 0.3}}
			})},
		{"diffusers 0.1 config", `{"_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1", "beta_end": 0.02, "beta_schedule": "linear",
			"beta_start": 0.0001, "clip_sample": true, "num_train_timesteps": 1000, "tensor_format": "pt", "timestep_values": null,
			"trained_betas": null, "variance_type": "fixed_large"}`,
			with(func(c *SchedulerConfig) { c.DDPM.Variance = sampler.FixedLarge })},
		{"thresholding fields ignored when off", `{"thresholding": false, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 3,
			"rescale_betas_zero_snr": false}`, def},
		{"predict_epsilon true", `{"predict_epsilon": true}`, def},
		{"unknown fields ignored, as from_config does", `{"beta_start": 0.001, "skip_prk_steps": true, "zeta": 1}`,
			with(func(c *SchedulerConfig) { c.Schedule.BetaStart = 0.001 })},
		{"a DPMSolverMultistepScheduler file", `{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++",
			"lambda_min_clipped": -Infinity, "variance_type": null, "solver_order": 2, "timestep_spacing": "linspace"}`,
			with(func(c *SchedulerConfig) {
				c.Class = DPMSolverMultistepScheduler
				c.DDPM.Spacing, c.DDIM.Spacing = schedule.Linspace, schedule.Linspace
			})},
		{"predict_epsilon false with prediction_type", `{"predict_epsilon": false, "prediction_type": "sample"}`,
			with(func(c *SchedulerConfig) { c.DDPM.Prediction, c.DDIM.Prediction = sampler.Sample, sampler.Sample })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSchedulerConfig([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseSchedulerConfig(%s)\n = %+v\nwant %+v", tc.json, got, tc.want)
			}
		})
	}
}

func TestParseSchedulerConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"not json", `[1]`, "not a JSON object"},
		{"thresholding", `{"thresholding": true}`, "thresholding true"},
		{"rescale", `{"rescale_betas_zero_snr": true}`, "rescale_betas_zero_snr true"},
		{"learned", `{"variance_type": "learned"}`, `variance_type "learned"`},
		{"learned_range", `{"variance_type": "learned_range"}`, `variance_type "learned_range"`},
		{"fixed_large_log", `{"variance_type": "fixed_large_log"}`, `variance_type "fixed_large_log"`},
		{"variance typo", `{"variance_type": "fixed"}`, `variance_type: sampler: unsupported variance type "fixed"`},
		{"class", `{"_class_name": "PNDMScheduler"}`, `_class_name "PNDMScheduler"`},
		{"bool as string", `{"clip_sample": "yes"}`, `clip_sample: "yes": want a JSON boolean`},
		{"null", `{"num_train_timesteps": null}`, "num_train_timesteps: null"},
		{"float steps", `{"num_train_timesteps": 1000.5}`, "num_train_timesteps: 1000.5: want a JSON integer"},
		{"schedule name", `{"beta_schedule": "cosine"}`, `beta_schedule: schedule: unknown beta schedule "cosine"`},
		{"spacing", `{"timestep_spacing": "uniform"}`, `timestep_spacing: schedule: unknown timestep spacing`},
		{"prediction", `{"prediction_type": "eps"}`, `prediction_type: sampler: unknown prediction type "eps"`},
		{"timestep_values", `{"timestep_values": [1, 2]}`, "timestep_values [1, 2]"},
		{"predict_epsilon false", `{"predict_epsilon": false}`, `"prediction_type": "sample"`},
		{"ddim sigmoid", `{"_class_name": "DDIMScheduler", "beta_schedule": "sigmoid"}`, "DDIMScheduler does not implement it"},
		{"trained betas length", `{"num_train_timesteps": 4, "trained_betas": [0.1]}`, "trained_betas has 1 values"},
		{"clip range", `{"clip_sample_range": 0}`, "clip_sample_range is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSchedulerConfig([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "pipeline: ") {
				t.Fatalf("ParseSchedulerConfig(%s) error = %v; want one starting with \"pipeline: \" containing %q", tc.json, err, tc.want)
			}
		})
	}
}

// TestSchedulerConfigRoundTrip: what MarshalJSON writes, ParseSchedulerConfig reads back unchanged, for
// either class, including the other class's field kept aside.
func TestSchedulerConfigRoundTrip(t *testing.T) {
	ddpmLike := DefaultSchedulerConfig()
	ddpmLike.DDPM.Variance, ddpmLike.DDIM.SetAlphaToOne = sampler.FixedLarge, false
	ddim := ddpmLike
	ddim.Class = DDIMScheduler
	betas := DefaultSchedulerConfig()
	betas.Schedule = schedule.Config{T: 4, TrainedBetas: []float64{1e-6, 0.25, 1.0 / 3, 0.5}}
	for _, tc := range []struct {
		name string
		c    SchedulerConfig
	}{
		{"default", DefaultSchedulerConfig()},
		{"ddpm with set_alpha_to_one false", ddpmLike},
		{"ddim with fixed_large", ddim},
		{"trained betas", betas},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.c.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseSchedulerConfig(data)
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			if !reflect.DeepEqual(got, tc.c) {
				t.Fatalf("round trip of %+v gave %+v\n%s", tc.c, got, data)
			}
		})
	}
	bad := DefaultSchedulerConfig()
	bad.DDIM.ClipSample = false
	if _, err := bad.MarshalJSON(); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Fatalf("MarshalJSON with DDPM and DDIM clip_sample differing: error %v; want one saying they disagree", err)
	}
}

// TestSchedulerConfigMatchesDiffusers: the fixture's scheduler_config.json, written by diffusers'
// save_pretrained, is what MarshalJSON writes for it, byte for byte but for _diffusers_version.
func TestSchedulerConfigMatchesDiffusers(t *testing.T) {
	path := filepath.Join(shared.Path(t, "diffusers/tiny-ddpm-cifar10"), "scheduler", SchedulerConfigFile)
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadSchedulerConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	got = bytes.Replace(got, []byte(`"_diffusers_version": "`+DiffusersVersion+`"`), []byte(`"_diffusers_version": "0.40.0.dev0"`), 1)
	if !bytes.Equal(got, want) {
		t.Fatalf("MarshalJSON =\n%s\nwant (diffusers)\n%s", got, want)
	}
}

func TestPyFloat(t *testing.T) {
	for _, tc := range []struct {
		x    float64
		want string
	}{
		{1, "1.0"}, {0, "0.0"}, {0.02, "0.02"}, {0.0001, "0.0001"}, {0.00001, "1e-05"}, {1e-6, "1e-06"},
		{1.5e-7, "1.5e-07"}, {0.995, "0.995"}, {-2.5, "-2.5"}, {1e15, "1000000000000000.0"}, {1e16, "1e+16"},
		{1.0 / 3, "0.3333333333333333"}, {123456.789, "123456.789"},
	} {
		got, err := pyFloat(tc.x).MarshalJSON()
		if err != nil || string(got) != tc.want {
			t.Errorf("pyFloat(%g) = %s, %v; want %s (Python's repr)", tc.x, got, err, tc.want)
		}
	}
}

func TestSchedulerText(t *testing.T) {
	for _, tc := range []struct {
		text string
		want Scheduler
	}{{"ddpm", DDPMScheduler}, {"DDPMScheduler", DDPMScheduler}, {"ddim", DDIMScheduler}, {"DDIMScheduler", DDIMScheduler}} {
		var s Scheduler
		if err := s.UnmarshalText([]byte(tc.text)); err != nil || s != tc.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", tc.text, s, err, tc.want)
		}
	}
	var s Scheduler
	if err := s.UnmarshalText([]byte("pndm")); err == nil || !strings.Contains(err.Error(), "ddpm, ddim") {
		t.Errorf("UnmarshalText(pndm) error = %v; want one listing the valid names", err)
	}
	if b, err := DDIMScheduler.MarshalText(); err != nil || string(b) != "DDIMScheduler" {
		t.Errorf("MarshalText(DDIMScheduler) = %s, %v", b, err)
	}
}

// TestIgnoredFields: every field IgnoredFields lists is accepted, at a value an old or current diffusers
// writes, and changes nothing.
func TestIgnoredFields(t *testing.T) {
	values := map[string]string{
		"_diffusers_version": `"0.1.1"`, "_name_or_path": `"google/ddpm-cifar10-32"`, "tensor_format": `"pt"`,
		"timestep_values": `null`, "predict_epsilon": `true`, "dynamic_thresholding_ratio": `0.9`, "sample_max_value": `2.0`,
	}
	index := `{"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]`
	for _, f := range IgnoredFields {
		t.Run(f.File+"/"+f.Name, func(t *testing.T) {
			v, ok := values[f.Name]
			if !ok {
				t.Fatalf("no test value for ignored field %s", f.Name)
			}
			var err error
			switch f.File {
			case "scheduler_config.json":
				var c SchedulerConfig
				c, err = ParseSchedulerConfig([]byte(`{"` + f.Name + `": ` + v + `}`))
				if err == nil && !reflect.DeepEqual(c, DefaultSchedulerConfig()) {
					t.Errorf("ignored field %s changed the config: %+v", f.Name, c)
				}
			case "model_index.json":
				_, err = parseModelIndex([]byte(index + `, "` + f.Name + `": ` + v + `}`))
			default:
				t.Fatalf("unknown file %s", f.File)
			}
			if err != nil {
				t.Fatalf("ignored field %s = %s: %v", f.Name, v, err)
			}
			if f.Reason == "" {
				t.Errorf("ignored field %s has no reason", f.Name)
			}
		})
	}
}

// TestChoice: each class is built from a DDPMScheduler file with from_config semantics (shared fields
// carried over, Heun takes clip_sample), the short names, overrides and --karras apply, and what
// ConfigJSON writes builds the same sampler back, also through SetScheduler and Load.
func TestChoice(t *testing.T) {
	file := []byte(`{"_class_name": "DDPMScheduler", "prediction_type": "v_prediction", "timestep_spacing": "trailing",
		"clip_sample": true, "clip_sample_range": 1.5, "variance_type": "fixed_large", "steps_offset": 1}`)
	for _, c := range []struct {
		choice Choice
		want   any
		evals  int
	}{
		{Choice{Class: "dpmsolver++", Steps: 10}, func() any {
			d := sampler.DefaultDPMSolver()
			d.Prediction, d.Spacing, d.StepsOffset = sampler.V, schedule.Trailing, 1
			return d
		}(), 10},
		{Choice{Class: "sde-dpmsolver++", Steps: 10, Karras: true, Overrides: []string{"solver_order=3", "solver_type=heun"}}, func() any {
			d := sampler.DefaultDPMSolver()
			d.Prediction, d.Spacing, d.StepsOffset = sampler.V, schedule.Trailing, 1
			d.Algorithm, d.Karras, d.Order, d.SolverType = sampler.SDEDPMSolverPP, true, 3, sampler.HeunType
			return d
		}(), 10},
		{Choice{Class: "EulerDiscreteScheduler", Steps: 7, Overrides: []string{`timestep_spacing="linspace"`, "final_sigmas_type=sigma_min"}},
			sampler.Euler{Prediction: sampler.V, Spacing: schedule.Linspace, StepsOffset: 1, FinalSigmas: sampler.FinalSigmaMin}, 7},
		{Choice{Class: "euler_ancestral", Steps: 5}, sampler.EulerAncestral{Prediction: sampler.V, Spacing: schedule.Trailing, StepsOffset: 1}, 5},
		{Choice{Class: "heun", Steps: 6}, sampler.Heun{Prediction: sampler.V, ClipSample: true, ClipSampleRange: 1.5, Spacing: schedule.Trailing, StepsOffset: 1}, 11},
		{Choice{Class: "ddim", Steps: 4, Eta: 0.5}, sampler.DDIM{Prediction: sampler.V, Eta: 0.5, SetAlphaToOne: true, ClipSample: true, ClipSampleRange: 1.5, Spacing: schedule.Trailing, StepsOffset: 1}, 4},
		{Choice{Steps: 4}, sampler.DDPM{Prediction: sampler.V, Variance: sampler.FixedLarge, ClipSample: true, ClipSampleRange: 1.5, Spacing: schedule.Trailing, StepsOffset: 1}, 4},
	} {
		t.Run(c.choice.Class, func(t *testing.T) {
			r, err := c.choice.Plan(file)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.Config, c.want) || len(r.Plan) != c.evals {
				t.Fatalf("Plan(%+v) = %+v, %d evaluations\nwant %+v, %d", c.choice, r.Config, len(r.Plan), c.want, c.evals)
			}
			cfg, err := r.ConfigJSON()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Choice{Steps: c.choice.Steps, Eta: c.choice.Eta}.Plan(cfg)
			if err != nil {
				t.Fatalf("%s\n: %v", cfg, err)
			}
			if !reflect.DeepEqual(back.Config, r.Config) || back.Class != r.Class {
				t.Fatalf("ConfigJSON\n%s\nbuilds %v %+v; want %v %+v", cfg, back.Class, back.Config, r.Class, r.Config)
			}
		})
	}
	for _, bad := range []struct {
		c    Choice
		want string
	}{
		{Choice{Class: "euler_ancestral", Steps: 5, Karras: true}, "no use_karras_sigmas"},
		{Choice{Class: "pndm", Steps: 5}, "unknown scheduler"},
		{Choice{Class: "euler", Steps: 5, Overrides: []string{"interpolation_type=log_linear"}}, "not supported"},
		{Choice{Class: "dpmsolver++", Steps: 5, Overrides: []string{"algorithm_type=dpmsolver"}}, "algorithm_type"},
		{Choice{Class: "euler", Steps: 5, Overrides: []string{"novalue"}}, "key=value"},
		{Choice{Class: "euler", Steps: 0}, "inference steps"},
	} {
		if _, err := bad.c.Plan(file); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Plan(%+v) error %v; want one containing %q", bad.c, err, bad.want)
		}
	}
}

// TestSetScheduler: an exported pipeline whose scheduler is switched loads with that class.
func TestSetScheduler(t *testing.T) {
	p, err := Load("../models/mnist")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Save(dir, p, "F32"); err != nil {
		t.Fatal(err)
	}
	r, err := Choice{Class: "dpmsolver++", Steps: 1, Karras: true}.Plan(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetScheduler(dir, r); err != nil {
		t.Fatal(err)
	}
	q, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if q.Scheduler != DPMSolverMultistepScheduler {
		t.Fatalf("loaded scheduler %v; want DPMSolverMultistepScheduler", q.Scheduler)
	}
	cfg, err := q.SchedulerJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Choice{Steps: 3}.Plan(cfg)
	if err != nil || !back.Config.(sampler.DPMSolver).Karras {
		t.Fatalf("the saved config builds %+v, %v; want Karras DPM-Solver++", back.Config, err)
	}
}
