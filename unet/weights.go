package unet

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// legacyAttention maps the attention parameter names of checkpoints saved before diffusers 0.15
// (the google/ddpm-* ones) to the current ones.
var legacyAttention = []struct{ old, new string }{
	{".query.", ".to_q."},
	{".key.", ".to_k."},
	{".value.", ".to_v."},
	{".proj_attn.", ".to_out.0."},
}

// CanonicalName maps a state-dict key to its current diffusers name (legacy attention names).
func CanonicalName(name string) string {
	if !strings.Contains(name, ".attentions.") {
		return name
	}
	for _, r := range legacyAttention {
		if strings.Contains(name, r.old) {
			return strings.Replace(name, r.old, r.new, 1)
		}
	}
	return name
}

// Weights takes the model's weights from a state dict, in Specs order, as float32 tensors. Current and
// legacy attention names are accepted; a missing, unexpected or misshaped tensor is an error that names
// it.
func (m *Model) Weights(f *checkpoint.File) ([]*tensors.Tensor, error) {
	byName := make(map[string]*checkpoint.Tensor, len(f.Tensors))
	origName := map[string]string{}
	for name, t := range f.Tensors {
		c := CanonicalName(name)
		if prev, dup := origName[c]; dup {
			return nil, fmt.Errorf("unet: weights %q and %q are the same parameter %q", prev, name, c)
		}
		byName[c], origName[c] = t, name
	}
	out := make([]*tensors.Tensor, len(m.specs))
	var missing []string
	for i, s := range m.specs {
		t, ok := byName[s.Name]
		if !ok {
			missing = append(missing, s.Name)
			continue
		}
		if !slices.Equal(t.Shape, s.Shape) {
			return nil, fmt.Errorf("unet: tensor %q: shape %v, want %v (does config.json match the weights?)",
				origName[s.Name], t.Shape, s.Shape)
		}
		data, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("unet: tensor %q: %w", origName[s.Name], err)
		}
		out[i] = tensors.FromFlatDataAndDimensions(data, s.Shape...)
		delete(byName, s.Name)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("unet: %d weights missing from the checkpoint, first %s (does config.json match the weights?)",
			len(missing), strings.Join(missing[:min(3, len(missing))], ", "))
	}
	if len(byName) > 0 {
		var extra []string
		for c := range byName {
			extra = append(extra, origName[c])
		}
		sort.Strings(extra)
		return nil, fmt.Errorf("unet: %d unexpected tensors in the checkpoint, first %s (does config.json match the weights?)",
			len(extra), strings.Join(extra[:min(3, len(extra))], ", "))
	}
	return out, nil
}

// File makes a state dict of weights (in Specs order), stored as dtype (F32, F16 or BF16).
func (m *Model) File(weights []*tensors.Tensor, dtype checkpoint.DType) (*checkpoint.File, error) {
	if len(weights) != len(m.specs) {
		return nil, fmt.Errorf("unet: %d weights for %d parameters", len(weights), len(m.specs))
	}
	f := &checkpoint.File{Tensors: make(map[string]*checkpoint.Tensor, len(weights))}
	for i, s := range m.specs {
		data, err := tensors.CopyFlatData[float32](weights[i])
		if err != nil {
			return nil, fmt.Errorf("unet: weight %q: %w", s.Name, err)
		}
		var t *checkpoint.Tensor
		switch dtype {
		case checkpoint.F32:
			t = checkpoint.NewF32(s.Shape, data)
		case checkpoint.F16:
			t = checkpoint.NewF16(s.Shape, data)
		case checkpoint.BF16:
			t = checkpoint.NewBF16(s.Shape, data)
		default:
			return nil, fmt.Errorf("unet: cannot store weights as %s (want F32, F16 or BF16)", dtype)
		}
		f.Tensors[s.Name] = t
	}
	return f, nil
}
