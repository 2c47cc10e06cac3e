package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/unet"
)

// TestLoadFixture loads the real diffusers directory and checks every part against the files, and the
// scheduler against the timesteps diffusers recorded for DDPMScheduler.set_timesteps(20) and
// DDIMScheduler.from_config(scheduler.config).set_timesteps(10).
func TestLoadFixture(t *testing.T) {
	dir := tinyDir(t)
	p, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.Class != DDPMPipeline || p.Scheduler != DDPMScheduler || p.DefaultScheduler() != DDPMScheduler || len(p.Notes) != 0 {
		t.Fatalf("Load = class %s, scheduler %s, default %s, notes %q; want DDPMPipeline, DDPMScheduler, no notes",
			p.Class, p.Scheduler, p.DefaultScheduler(), p.Notes)
	}
	want := Files{
		ModelIndex:      filepath.Join(dir, "model_index.json"),
		UNetConfig:      filepath.Join(dir, "unet", "config.json"),
		Weights:         filepath.Join(dir, "unet", SafetensorsFile),
		SchedulerConfig: filepath.Join(dir, "scheduler", SchedulerConfigFile),
	}
	if p.Files != want {
		t.Fatalf("Files = %+v; want %+v", p.Files, want)
	}
	cfg, err := unet.LoadConfig(want.UNetConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.UNet.Config, cfg) {
		t.Fatalf("UNet config %+v; want %+v", p.UNet.Config, cfg)
	}
	checkWeights(t, p, tinyWeights(t))
	if !reflect.DeepEqual(p.Schedule, schedule.Default()) {
		t.Fatalf("Schedule = %+v; want the linear 1e-4..0.02 of the file", p.Schedule)
	}
	wantDDPM := sampler.DefaultDDPM()
	wantDDPM.Variance = sampler.FixedLarge
	if p.DDPM != wantDDPM || p.DDIM != sampler.DefaultDDIM() {
		t.Fatalf("DDPM %+v, DDIM %+v; want %+v and %+v", p.DDPM, p.DDIM, wantDDPM, sampler.DefaultDDIM())
	}

	for _, sch := range []Scheduler{DDPMScheduler, DDIMScheduler} {
		if err := p.Check(sch); err != nil {
			t.Errorf("Check(%s) = %v; want nil for a linear schedule", sch, err)
		}
	}
	sigmoid := *p
	sigmoid.Schedule.BetaSchedule = schedule.Sigmoid
	if sigmoid.Check(DDPMScheduler) != nil || sigmoid.Check(DDIMScheduler) == nil {
		t.Errorf("Check with a sigmoid schedule: DDPM %v, DDIM %v; want only DDIM refused", sigmoid.Check(DDPMScheduler), sigmoid.Check(DDIMScheduler))
	}

	s, err := schedule.New(p.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		plan func() (sampler.Plan, error)
		ref  string
	}{
		{"ddpm 20 steps", func() (sampler.Plan, error) { return p.DDPM.Plan(s, 20) }, "ddpm20_timesteps"},
		{"ddim 10 steps", func() (sampler.Plan, error) { return p.DDIM.Plan(s, 10) }, "ddim10_timesteps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := tc.plan()
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, st := range plan {
				got = append(got, st.T)
			}
			if want := refTimesteps(t, tc.ref); !slices.Equal(got, want) {
				t.Fatalf("plan timesteps %v; want %v (diffusers' %s)", got, want, tc.ref)
			}
		})
	}
}

// TestLoadLayouts reads the same pipeline in every layout diffusers accepts; the weights must come out
// bit for bit the same.
func TestLoadLayouts(t *testing.T) {
	weights := tinyWeights(t)
	ddimIndex := strings.NewReplacer("DDPMPipeline", "DDIMPipeline", "DDPMScheduler", "DDIMScheduler").Replace(readTiny(t, "model_index.json"))
	for _, tc := range []struct {
		name      string
		entries   map[string]entry
		class     string
		scheduler Scheduler
		dflt      Scheduler
		weights   string // base name of Files.Weights
		variance  sampler.Variance
		notes     []string // substrings, one per note
	}{
		{name: "bin only", entries: edit(map[string]entry{
			"unet/diffusion_pytorch_model.safetensors": {},
			"unet/diffusion_pytorch_model.bin":         fixture("unet/diffusion_pytorch_model.bin"),
		}), class: DDPMPipeline, weights: TorchFile, variance: sampler.FixedLarge, notes: []string{"weights read from diffusion_pytorch_model.bin"}},
		{name: "legacy attention names", entries: edit(map[string]entry{
			"unet/diffusion_pytorch_model.safetensors": fixture("unet/legacy_attention_names.safetensors"),
		}), class: DDPMPipeline, weights: SafetensorsFile, variance: sampler.FixedLarge},
		{name: "safetensors preferred over bin", entries: edit(map[string]entry{
			"unet/diffusion_pytorch_model.bin": fixture("unet/diffusion_pytorch_model.bin"),
		}), class: DDPMPipeline, weights: SafetensorsFile, variance: sampler.FixedLarge},
		{name: "flat with model_index", entries: map[string]entry{
			"model_index.json":                    fixture("model_index.json"),
			"config.json":                         fixture("unet/config.json"),
			"diffusion_pytorch_model.safetensors": fixture("unet/diffusion_pytorch_model.safetensors"),
			"scheduler_config.json":               fixture("scheduler/scheduler_config.json"),
		}, class: DDPMPipeline, weights: SafetensorsFile, variance: sampler.FixedLarge, notes: []string{"flat layout"}},
		{name: "flat unet only", entries: map[string]entry{
			"config.json":                       fixture("unet/config.json"),
			"diffusion_pytorch_model.bin":       fixture("unet/diffusion_pytorch_model.bin"),
			"unrelated/scheduler_config.json":   literal("{not read}"),
			"README.md":                         literal("# a UNet"),
			"unet_unrelated/weights.safetensor": literal("x"),
		}, class: DDPMPipeline, weights: TorchFile, variance: sampler.FixedSmall,
			notes: []string{"no model_index.json", "weights read from", "DDPMScheduler() with diffusers' defaults"}},
		{name: "flat ddim scheduler without model_index", entries: map[string]entry{
			"config.json":                         fixture("unet/config.json"),
			"diffusion_pytorch_model.safetensors": fixture("unet/diffusion_pytorch_model.safetensors"),
			"scheduler_config.json":               literal(`{"_class_name": "DDIMScheduler", "variance_type": "fixed_large"}`),
		}, class: DDPMPipeline, scheduler: DDIMScheduler, dflt: DDIMScheduler, weights: SafetensorsFile, variance: sampler.FixedLarge,
			notes: []string{"no model_index.json"}},
		{name: "ddim pipeline", entries: edit(map[string]entry{"model_index.json": literal(ddimIndex)}),
			class: DDIMPipeline, scheduler: DDIMScheduler, dflt: DDIMScheduler, weights: SafetensorsFile, variance: sampler.FixedLarge,
			notes: []string{"is a DDPMScheduler config; model_index.json names DDIMScheduler"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load(makeDir(t, tc.entries))
			if err != nil {
				t.Fatal(err)
			}
			if p.Class != tc.class || p.Scheduler != tc.scheduler || p.DefaultScheduler() != tc.dflt ||
				filepath.Base(p.Files.Weights) != tc.weights || p.DDPM.Variance != tc.variance {
				t.Fatalf("Load = class %s, scheduler %s, default %s, weights %s, variance %s; want %s, %s, %s, %s, %s",
					p.Class, p.Scheduler, p.DefaultScheduler(), p.Files.Weights, p.DDPM.Variance,
					tc.class, tc.scheduler, tc.dflt, tc.weights, tc.variance)
			}
			if len(p.Notes) != len(tc.notes) {
				t.Fatalf("Notes = %q; want %d notes about %q", p.Notes, len(tc.notes), tc.notes)
			}
			for i, n := range tc.notes {
				if !strings.Contains(p.Notes[i], n) {
					t.Errorf("Notes[%d] = %q; want it to mention %q", i, p.Notes[i], n)
				}
			}
			checkWeights(t, p, weights)
		})
	}
}

// TestLoadErrors: each bad directory gives an error that starts with the package and names the problem.
func TestLoadErrors(t *testing.T) {
	index := readTiny(t, "model_index.json")
	unetConfig := readTiny(t, "unet/config.json")
	sched := readTiny(t, "scheduler/scheduler_config.json")
	wrongShape := wrongShapeWeights(t)
	for _, tc := range []struct {
		name    string
		entries map[string]entry
		want    []string
	}{
		{"unknown pipeline class", edit(map[string]entry{"model_index.json": literal(strings.Replace(index, "DDPMPipeline", "StableDiffusionPipeline", 1))}),
			[]string{"model_index.json", `_class_name "StableDiffusionPipeline" is not supported`}},
		{"no pipeline class", edit(map[string]entry{"model_index.json": literal(`{"unet": ["diffusers", "UNet2DModel"]}`)}),
			[]string{"no _class_name"}},
		{"scheduler component", edit(map[string]entry{"model_index.json": literal(strings.Replace(index, "DDPMScheduler", "PNDMScheduler", 1))}),
			[]string{"component scheduler is a PNDMScheduler"}},
		{"extra component", edit(map[string]entry{"model_index.json": literal(strings.Replace(index, `"unet"`, `"vqvae": ["diffusers", "VQModel"], "unet"`, 1))}),
			[]string{"unknown field(s) vqvae"}},
		{"missing component", edit(map[string]entry{"model_index.json": literal(`{"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"]}`)}),
			[]string{"no scheduler component"}},
		{"unknown unet field", edit(map[string]entry{"unet/config.json": literal(strings.Replace(unetConfig, `"act_fn"`, `"foo_bar": 3, "act_fn"`, 1))}),
			[]string{"unet/config.json", "foo_bar"}},
		{"thresholding", edit(map[string]entry{"scheduler/scheduler_config.json": literal(strings.Replace(sched, `"thresholding": false`, `"thresholding": true`, 1))}),
			[]string{"scheduler_config.json", "thresholding true"}},
		{"ddim pipeline with sigmoid", edit(map[string]entry{
			"model_index.json":                literal(strings.Replace(index, "DDPMPipeline", "DDIMPipeline", 1)),
			"scheduler/scheduler_config.json": literal(strings.Replace(sched, `"linear"`, `"sigmoid"`, 1)),
		}), []string{"sigmoid", "DDIMScheduler does not implement it", "DDIMPipeline"}},
		{"missing weights", edit(map[string]entry{"unet/diffusion_pytorch_model.safetensors": {}}),
			[]string{"no UNet weights", SafetensorsFile, TorchFile}},
		{"corrupt safetensors header", edit(map[string]entry{"unet/diffusion_pytorch_model.safetensors": literal("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": oops}     ")}),
			[]string{"unet weights", "checkpoint", "header"}},
		{"truncated safetensors", edit(map[string]entry{"unet/diffusion_pytorch_model.safetensors": literal("\x00\x01")}),
			[]string{"unet weights", "checkpoint"}},
		{"weight of the wrong shape", edit(map[string]entry{"unet/diffusion_pytorch_model.safetensors": literal(wrongShape)}),
			[]string{`"conv_in.weight"`, "shape [32 3 3 2], want [32 3 3 3]"}},
		{"missing unet config", edit(map[string]entry{"unet/config.json": {}}),
			[]string{"unet/config.json is missing"}},
		{"scheduler folder without config", edit(map[string]entry{
			"scheduler/scheduler_config.json": {}, "scheduler/README.md": literal("x"),
		}), []string{"scheduler/scheduler_config.json is missing"}},
		{"not a pipeline", map[string]entry{"README.md": literal("hello")},
			[]string{"neither model_index.json", "nor config.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(makeDir(t, tc.entries))
			checkErr(t, err, tc.want...)
		})
	}
	t.Run("no such directory", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "nope"))
		checkErr(t, err, "no such directory", "Open or Resolve")
	})
}

func checkErr(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one about %q", want)
	}
	if !strings.HasPrefix(err.Error(), "pipeline: ") {
		t.Errorf("error %q does not start with \"pipeline: \"", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// wrongShapeWeights returns the fixture's safetensors with conv_in.weight one column short.
func wrongShapeWeights(t testing.TB) string {
	t.Helper()
	f, err := checkpoint.ReadSafetensors(filepath.Join(tinyDir(t), "unet", SafetensorsFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(f.Tensors["conv_in.weight"].Shape); got != "[32 3 3 3]" {
		t.Fatalf("fixture conv_in.weight has shape %s; the test expects [32 3 3 3]", got)
	}
	f.Tensors["conv_in.weight"] = checkpoint.NewF32([]int{32, 3, 3, 2}, make([]float32, 32*3*3*2))
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := checkpoint.WriteSafetensors(path, f); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
