package pipeline

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func loadTiny(t testing.TB) *Pipeline {
	t.Helper()
	p, err := Load(tinyDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// samePipeline compares everything Save writes.
func samePipeline(t testing.TB, got, want *Pipeline) {
	t.Helper()
	if got.Class != want.Class || got.Scheduler != want.Scheduler {
		t.Errorf("class %s/%s; want %s/%s", got.Class, got.Scheduler, want.Class, want.Scheduler)
	}
	if !reflect.DeepEqual(got.UNet.Config, want.UNet.Config) {
		t.Errorf("UNet config %+v; want %+v", got.UNet.Config, want.UNet.Config)
	}
	if !reflect.DeepEqual(got.Schedule, want.Schedule) || got.DDPM != want.DDPM || got.DDIM != want.DDIM {
		t.Errorf("scheduler %+v %+v %+v; want %+v %+v %+v", got.Schedule, got.DDPM, got.DDIM, want.Schedule, want.DDPM, want.DDIM)
	}
	byName := map[string][]float32{}
	for i, s := range want.UNet.Specs() {
		v, err := tensors.CopyFlatData[float32](want.Weights[i])
		if err != nil {
			t.Fatal(err)
		}
		byName[s.Name] = v
	}
	checkWeights(t, got, byName)
}

// TestSaveRoundTrip: Save then Load gives the same pipeline; with float32 weights the files are the ones
// diffusers wrote, byte for byte, but for _diffusers_version.
func TestSaveRoundTrip(t *testing.T) {
	p := loadTiny(t)
	dir := filepath.Join(t.TempDir(), "out")
	if err := Save(dir, p, checkpoint.F32); err != nil {
		t.Fatal(err)
	}
	q, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	samePipeline(t, q, p)
	if len(q.Notes) != 0 {
		t.Errorf("Notes = %q; want none for the standard layout", q.Notes)
	}
	for _, rel := range []string{"model_index.json", "scheduler/scheduler_config.json", "unet/diffusion_pytorch_model.safetensors"} {
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		got = bytes.Replace(got, []byte(`"_diffusers_version": "`+DiffusersVersion+`"`), []byte(`"_diffusers_version": "0.40.0.dev0"`), 1)
		if want := readTiny(t, rel); string(got) != want {
			t.Errorf("saved %s differs from the one diffusers wrote (%d bytes, want %d)", rel, len(got), len(want))
		}
	}
	if got, want := listFiles(t, dir), []string{"model_index.json", "scheduler/scheduler_config.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"}; !reflect.DeepEqual(got, want) {
		t.Errorf("saved files %q; want exactly %q", got, want)
	}
}

// TestSaveDTypes: half-precision weights come back rounded as PyTorch's .half() and .bfloat16() round.
func TestSaveDTypes(t *testing.T) {
	p := loadTiny(t)
	for _, tc := range []struct {
		dtype checkpoint.DType
		round func(float32) float32
	}{
		{checkpoint.F16, func(x float32) float32 { return checkpoint.Float16ToFloat32(checkpoint.Float32ToFloat16(x)) }},
		{checkpoint.BF16, func(x float32) float32 { return checkpoint.BFloat16ToFloat32(checkpoint.Float32ToBFloat16(x)) }},
	} {
		t.Run(string(tc.dtype), func(t *testing.T) {
			dir := t.TempDir()
			if err := Save(dir, p, tc.dtype); err != nil {
				t.Fatal(err)
			}
			q, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]float32{}
			for i, s := range p.UNet.Specs() {
				v, _ := tensors.CopyFlatData[float32](p.Weights[i])
				for j := range v {
					v[j] = tc.round(v[j])
				}
				want[s.Name] = v
			}
			checkWeights(t, q, want)
		})
	}
	if err := Save(t.TempDir(), p, checkpoint.I64); err == nil || !strings.Contains(err.Error(), "I64") {
		t.Errorf("Save as I64: error %v; want one naming the dtype", err)
	}
}

// TestSaveDDIMPipeline: a DDIMPipeline is saved as a DDPMPipeline whose scheduler config still gives
// DDIMScheduler.from_config its set_alpha_to_one.
func TestSaveDDIMPipeline(t *testing.T) {
	index := strings.NewReplacer("DDPMPipeline", "DDIMPipeline", "DDPMScheduler", "DDIMScheduler").Replace(readTiny(t, "model_index.json"))
	sched := `{"_class_name": "DDIMScheduler", "set_alpha_to_one": false, "steps_offset": 1, "clip_sample": false}`
	p, err := Load(makeDir(t, edit(map[string]entry{"model_index.json": literal(index), "scheduler/scheduler_config.json": literal(sched)})))
	if err != nil {
		t.Fatal(err)
	}
	if p.DDIM.SetAlphaToOne || p.DDIM.StepsOffset != 1 || p.DDPM.Variance != sampler.FixedSmall {
		t.Fatalf("loaded DDIM %+v, DDPM %+v; want set_alpha_to_one false, steps_offset 1, fixed_small", p.DDIM, p.DDPM)
	}
	dir := t.TempDir()
	if err := Save(dir, p, checkpoint.F32); err != nil {
		t.Fatal(err)
	}
	q, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if q.Class != DDPMPipeline || q.Scheduler != DDPMScheduler || q.DDIM != p.DDIM || q.DDPM != p.DDPM {
		t.Fatalf("after Save: %s/%s DDIM %+v DDPM %+v; want DDPMPipeline/DDPMScheduler with DDIM %+v DDPM %+v",
			q.Class, q.Scheduler, q.DDIM, q.DDPM, p.DDIM, p.DDPM)
	}
}

// TestSaveFailureKeepsOldFiles makes each rename of a Save over an existing pipeline fail in turn, and a
// write fail before any rename: the directory must hold exactly the old files each time.
func TestSaveFailureKeepsOldFiles(t *testing.T) {
	p := loadTiny(t)
	dir := t.TempDir()
	if err := Save(dir, p, checkpoint.F32); err != nil {
		t.Fatal(err)
	}
	old := snapshotFiles(t, dir)

	// A different pipeline: other scheduler settings, weights stored in F16.
	q := *p
	q.DDPM.Variance = sampler.FixedSmall
	defer func() { rename = os.Rename }()
	for fail := 1; ; fail++ {
		calls := 0
		rename = func(from, to string) error {
			calls++
			if _, err := os.Stat(to); err != nil && calls <= fail {
				t.Errorf("rename %d: %s is missing while the new file goes in: %v", calls, to, err)
			}
			if calls == fail {
				return errors.New("injected rename failure")
			}
			return os.Rename(from, to)
		}
		err := Save(dir, &q, checkpoint.F16)
		if calls < fail { // every rename done: this Save succeeded
			if err != nil {
				t.Fatal(err)
			}
			if fail != 5 { // 4 files, each renamed over the old one
				t.Errorf("Save made %d renames; want 4", calls)
			}
			break
		}
		checkErr(t, err, "injected rename failure", "left as it was")
		if got := snapshotFiles(t, dir); !reflect.DeepEqual(got, old) {
			t.Fatalf("rename %d failed: the directory changed: %q; want the old files %q", fail, keys(got), keys(old))
		}
	}
	rename = os.Rename
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.DDPM.Variance != sampler.FixedSmall {
		t.Fatalf("after the successful Save, variance %s; want fixed_small", r.DDPM.Variance)
	}
	if got := listFiles(t, dir); len(got) != 4 {
		t.Fatalf("files after Save: %q; want the 4 of a pipeline, no leftovers", got)
	}

	t.Run("write fails", func(t *testing.T) {
		dir := t.TempDir()
		if err := Save(dir, p, checkpoint.F32); err != nil {
			t.Fatal(err)
		}
		// scheduler/ becomes a file: the unet files are written, then the scheduler's cannot be.
		if err := os.RemoveAll(filepath.Join(dir, "scheduler")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "scheduler"), []byte("in the way"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := snapshotFiles(t, dir)
		checkErr(t, Save(dir, &q, checkpoint.F16), "nothing in", "was changed")
		if got := snapshotFiles(t, dir); !reflect.DeepEqual(got, before) {
			t.Fatalf("failed Save changed the directory: %q; want %q", keys(got), keys(before))
		}
	})
}

func TestNew(t *testing.T) {
	p := loadTiny(t)
	ddpm := sampler.DefaultDDPM()
	ddpm.Spacing, ddpm.StepsOffset = schedule.Trailing, 2
	q, err := New(p.UNet.Config, p.Weights, schedule.Default(), ddpm)
	if err != nil {
		t.Fatal(err)
	}
	want := sampler.DDIM{Prediction: sampler.Epsilon, SetAlphaToOne: true, ClipSample: true, ClipSampleRange: 1, Spacing: schedule.Trailing, StepsOffset: 2}
	if q.Class != DDPMPipeline || q.DDPM != ddpm || q.DDIM != want {
		t.Fatalf("New = %s DDPM %+v DDIM %+v; want DDPMPipeline, %+v, %+v", q.Class, q.DDPM, q.DDIM, ddpm, want)
	}
	swapped := append([]*tensors.Tensor(nil), p.Weights...)
	swapped[0], swapped[1] = swapped[1], swapped[0]
	badClip := ddpm
	badClip.ClipSampleRange = -1
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"too few weights", func() error { _, err := New(p.UNet.Config, p.Weights[1:], schedule.Default(), ddpm); return err }, "weights for the"},
		{"wrong order", func() error { _, err := New(p.UNet.Config, swapped, schedule.Default(), ddpm); return err }, "want [32 3 3 3]"},
		{"bad schedule", func() error { _, err := New(p.UNet.Config, p.Weights, schedule.Config{}, ddpm); return err }, "num_train_timesteps"},
		{"bad sampler", func() error { _, err := New(p.UNet.Config, p.Weights, schedule.Default(), badClip); return err }, "clip_sample_range"},
		{"nil", func() error { return Save(t.TempDir(), nil, checkpoint.F32) }, "no pipeline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want one about %q", err, tc.want)
			}
		})
	}
}

// listFiles returns the regular files and symlinks under dir, slash-separated and sorted.
func listFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// snapshotFiles returns every file under dir with its bytes.
func snapshotFiles(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, rel := range listFiles(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		m[rel] = string(b)
	}
	return m
}

func keys(m map[string]string) []string {
	var k []string
	for name := range m {
		k = append(k, name)
	}
	sort.Strings(k)
	return k
}
