package unet

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/nn"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The class-conditional diffusers fixture (../shared/README.md, tiny-cond-gray-16): num_class_embeds 11,
// labels 0, 9 and the null label 10.
func TestForwardWithLabelsMatchesDiffusers(t *testing.T) {
	dir := shared.Path(t, "diffusers/tiny-cond-gray-16")
	cfg, err := LoadConfig(filepath.Join(dir, "unet", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if null, ok := cfg.NullLabel(); !ok || null != 10 {
		t.Fatalf("NullLabel() = %d, %v; want 10, true (num_class_embeds 11)", null, ok)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wf, err := checkpoint.ReadSafetensors(filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.Weights(wf)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := checkpoint.ReadSafetensors(filepath.Join(dir, "reference_io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ints := func(name string) *tensors.Tensor {
		v, err := ref.Tensors[name].Int64s()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]int32, len(v))
		for i := range v {
			out[i] = int32(v[i])
		}
		return tensors.FromFlatDataAndDimensions(out, len(out))
	}
	floats := func(name string) []float32 {
		v, err := ref.Tensors[name].Float32()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	b, _, err := backend.New("go")
	if err != nil {
		t.Fatal(err)
	}
	n := len(m.Specs())
	exec, err := graph.NewExec(b, func(in []*graph.Node) *graph.Node {
		return m.Forward(nn.NewWeights(m.Specs(), in[:n]).Scope(), in[n], in[n+1], in[n+2])
	})
	if err != nil {
		t.Fatal(err)
	}
	args := []any{}
	for _, x := range w {
		args = append(args, x)
	}
	args = append(args, tensors.FromFlatDataAndDimensions(floats("sample"), ref.Tensors["sample"].Shape...),
		ints("timesteps"), ints("class_labels"))
	out, err := exec.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	d := maxAbsDiff(tensors.MustCopyFlatData[float32](out[0]), floats("expected"))
	t.Logf("max abs error %.3g", d)
	// float32 on both sides, sums in other orders (the unconditional fixture's bound).
	if d > 2e-5 {
		t.Errorf("forward(labels 0, 9, 10) differs from diffusers by %.3g, want <= 2e-5", d)
	}
}

func TestClassEmbeddingConfig(t *testing.T) {
	base := `{"block_out_channels": [8, 16], "norm_num_groups": 4, "down_block_types": ["DownBlock2D", "DownBlock2D"],
		"up_block_types": ["UpBlock2D", "UpBlock2D"], "in_channels": 1, "out_channels": 1`
	for _, c := range []struct {
		name, extra string
		kind        ClassEmbedding
		null        int // -1: none
		params      []string
		labelErr    string
	}{
		{"unconditional", ``, NoClasses, -1, nil, "unconditional"},
		{"learned", `, "num_class_embeds": 11`, Learned, 10, []string{"class_embedding.weight"}, ""},
		{"timestep", `, "class_embed_type": "timestep"`, Timestep, -1,
			[]string{"class_embedding.linear_1.weight", "class_embedding.linear_1.bias", "class_embedding.linear_2.weight", "class_embedding.linear_2.bias"}, ""},
		{"timestep with num_class_embeds", `, "class_embed_type": "timestep", "num_class_embeds": 4`, Timestep, 3,
			[]string{"class_embedding.linear_1.weight"}, ""},
		{"identity", `, "class_embed_type": "identity"`, Identity, -1, nil, "identity"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(base + c.extra + "}"))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.ClassEmbedding(); got != c.kind {
				t.Errorf("ClassEmbedding() = %s; want %s", got, c.kind)
			}
			null, ok := cfg.NullLabel()
			if (c.null >= 0) != ok || (ok && null != c.null) {
				t.Errorf("NullLabel() = %d, %v; want %d", null, ok, c.null)
			}
			err = cfg.CheckLabels()
			if (c.labelErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.labelErr)) {
				t.Errorf("CheckLabels() = %v; want an error containing %q", err, c.labelErr)
			}
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]bool{}
			for _, s := range m.Specs() {
				if strings.HasPrefix(s.Name, "class_embedding") {
					names[s.Name] = true
				}
			}
			for _, p := range c.params {
				if !names[p] {
					t.Errorf("Specs() lacks %s (has %v)", p, names)
				}
			}
			if len(c.params) == 0 && len(names) > 0 {
				t.Errorf("Specs() has class weights %v; want none", names)
			}
			// The config round-trips through diffusers' config.json.
			b, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseConfig(b)
			if err != nil {
				t.Fatal(err)
			}
			if back.ClassEmbedding() != c.kind || !ptrEq(back.NumClassEmbeds, cfg.NumClassEmbeds) || !ptrEq(back.ClassEmbedType, cfg.ClassEmbedType) {
				t.Errorf("round trip through %s changed the class embedding", b)
			}
		})
	}
	if _, err := ParseConfig([]byte(base + `, "class_embed_type": "projection"}`)); err == nil || !strings.Contains(err.Error(), "class_embed_type") {
		t.Errorf("class_embed_type projection: err = %v; want an error naming class_embed_type", err)
	}
}

func ptrEq[T comparable](a, b *T) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// A model without class embedding rejects labels, and a conditional one needs them, with errors that say so.
func TestForwardLabelErrors(t *testing.T) {
	b, _, err := backend.New("go")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, extra string
		labels      bool
		want        string
	}{
		{"unconditional with labels", ``, true, "no class embedding"},
		{"conditional without labels", `, "num_class_embeds": 3`, false, "needs class labels"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(`{"block_out_channels": [8], "norm_num_groups": 4, "down_block_types": ["DownBlock2D"],
				"up_block_types": ["UpBlock2D"], "in_channels": 1, "out_channels": 1, "mid_block_type": null` + c.extra + `}`))
			if err != nil {
				t.Fatal(err)
			}
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			n := len(m.Specs())
			args := []any{}
			for _, x := range nn.InitTensors(m.Specs(), 1) {
				args = append(args, x)
			}
			args = append(args, tensors.FromFlatDataAndDimensions(make([]float32, 16), 1, 1, 4, 4),
				tensors.FromFlatDataAndDimensions([]int32{5}, 1), tensors.FromFlatDataAndDimensions([]int32{0}, 1))
			err = func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("%v", r)
					}
				}()
				e, err := graph.NewExec(b, func(in []*graph.Node) *graph.Node {
					var y *graph.Node
					if c.labels {
						y = in[n+2]
					}
					return m.Forward(nn.NewWeights(m.Specs(), in[:n]).Scope(), in[n], in[n+1], y)
				})
				if err != nil {
					return err
				}
				_, err = e.Exec(args...)
				return err
			}()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v; want one containing %q", err, c.want)
			}
		})
	}
}

func TestConditionalAndGuidanceNull(t *testing.T) {
	base, err := Preset("mnist")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := base.GuidanceNull(-1); err == nil || !strings.Contains(err.Error(), "unconditional") {
		t.Errorf("GuidanceNull of an unconditional model: err = %v; want one saying it is unconditional", err)
	}
	c, err := base.Conditional(10)
	if err != nil {
		t.Fatal(err)
	}
	if *c.NumClassEmbeds != 11 || c.ClassEmbedding() != Learned {
		t.Errorf("Conditional(10): num_class_embeds %d, %s; want 11, learned", *c.NumClassEmbeds, c.ClassEmbedding())
	}
	for _, tc := range []struct {
		cfg      Config
		override int
		want     int
		err      string
	}{
		{c, -1, 10, ""},
		{c, 0, 0, ""},
		{c, 11, 0, "outside"},
		{withType(base, "timestep"), -1, 0, "--null-label"},
		{withType(base, "timestep"), 10, 10, ""},
		{withType(base, "identity"), 10, 0, "identity"},
	} {
		got, err := tc.cfg.GuidanceNull(tc.override)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("GuidanceNull(%d) of %s: err = %v; want one containing %q", tc.override, tc.cfg.ClassEmbedding(), err, tc.err)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("GuidanceNull(%d) of %s = %d, %v; want %d", tc.override, tc.cfg.ClassEmbedding(), got, err, tc.want)
		}
	}
}

func withType(c Config, kind string) Config {
	c.ClassEmbedType = &kind
	return c
}
