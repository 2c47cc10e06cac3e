package pipeline

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/internal/shared"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// tiny is the fixture: a real DDPMPipeline.save_pretrained directory (see ../shared/README.md).
const tiny = "diffusers/tiny-ddpm-cifar10"

func tinyDir(t testing.TB) string {
	t.Helper()
	return shared.Path(t, tiny)
}

// entry is one file of a test directory: a link to a fixture file (from, relative to the fixture
// directory) or literal content.
type entry struct{ from, content string }

func fixture(rel string) entry  { return entry{from: rel} }
func literal(text string) entry { return entry{content: text} }
func (e entry) isFixture() bool { return e.from != "" }
func readTiny(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tinyDir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// makeDir lays out a directory of entries (slash-separated relative paths); fixture files are symlinked,
// which is also how the hub cache presents them.
func makeDir(t testing.TB, entries map[string]entry) string {
	t.Helper()
	dir := t.TempDir()
	src := tinyDir(t)
	for rel, e := range entries {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if e.isFixture() {
			err = os.Symlink(filepath.Join(src, filepath.FromSlash(e.from)), p)
		} else {
			err = os.WriteFile(p, []byte(e.content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// standard is the fixture's own layout.
func standard() map[string]entry {
	return map[string]entry{
		"model_index.json":                         fixture("model_index.json"),
		"unet/config.json":                         fixture("unet/config.json"),
		"unet/diffusion_pytorch_model.safetensors": fixture("unet/diffusion_pytorch_model.safetensors"),
		"scheduler/scheduler_config.json":          fixture("scheduler/scheduler_config.json"),
	}
}

// edit returns standard() with some entries replaced (an empty entry deletes).
func edit(changes map[string]entry) map[string]entry {
	m := standard()
	for k, v := range changes {
		if v == (entry{}) {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

// tinyWeights returns the fixture's weights by name, float32.
func tinyWeights(t testing.TB) map[string][]float32 {
	t.Helper()
	f, err := checkpoint.ReadSafetensors(filepath.Join(tinyDir(t), "unet", SafetensorsFile))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for name, x := range f.Tensors {
		if out[name], err = x.Float32(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// checkWeights compares p's weights with want (by diffusers name) exactly: loading must not change a bit.
func checkWeights(t testing.TB, p *Pipeline, want map[string][]float32) {
	t.Helper()
	specs := p.UNet.Specs()
	if len(p.Weights) != len(specs) || len(specs) != len(want) {
		t.Fatalf("%d weights for %d specs; the fixture has %d", len(p.Weights), len(specs), len(want))
	}
	for i, s := range specs {
		got, err := tensors.CopyFlatData[float32](p.Weights[i])
		if err != nil {
			t.Fatal(err)
		}
		w := want[s.Name]
		if len(got) != len(w) {
			t.Fatalf("weight %s: %d values, want %d", s.Name, len(got), len(w))
		}
		for j := range got {
			if got[j] != w[j] {
				t.Fatalf("weight %s[%d] = %g; want %g (the fixture's)", s.Name, j, got[j], w[j])
			}
		}
	}
}

// refTimesteps reads an int64 timesteps list of reference_io.safetensors.
func refTimesteps(t testing.TB, name string) []int {
	t.Helper()
	f, err := checkpoint.ReadSafetensors(filepath.Join(tinyDir(t), "reference_io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	x, ok := f.Tensors[name]
	if !ok {
		t.Fatalf("reference_io.safetensors has no %s", name)
	}
	v, err := x.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int, len(v))
	for i := range v {
		out[i] = int(v[i])
	}
	return out
}
