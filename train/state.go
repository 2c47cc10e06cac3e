package train

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/nn"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// State files are safetensors: "params.<name>", "ema.<name>", "adam_m.<name>", "adam_v.<name>" (F32),
// "rng" (U64, GoMLX's RNG state) and metadata "step" plus whatever the caller adds (configs, the
// batcher's position).
const (
	prefixParams = "params."
	prefixEMA    = "ema."
	prefixM      = "adam_m."
	prefixV      = "adam_v."
)

// StateFile converts st (weights named by specs) to a tensor file with the given extra metadata.
func StateFile(st *State, specs []nn.Spec, meta map[string]string) (*checkpoint.File, error) {
	f := &checkpoint.File{Tensors: map[string]*checkpoint.Tensor{}, Metadata: map[string]string{}}
	for k, v := range meta {
		f.Metadata[k] = v
	}
	f.Metadata["step"] = strconv.FormatInt(st.Step, 10)
	groups := []struct {
		prefix string
		flat   *tensors.Tensor
	}{{prefixParams, st.Params}, {prefixEMA, st.EMA}, {prefixM, st.M}, {prefixV, st.V}}
	offsets, total := nn.Offsets(specs)
	for _, g := range groups {
		v, err := tensors.CopyFlatData[float32](g.flat)
		if err != nil {
			return nil, fmt.Errorf("train: %s: %w", g.prefix, err)
		}
		if len(v) != total {
			return nil, fmt.Errorf("train: state %s has %d values for %d parameters", g.prefix, len(v), total)
		}
		for i, s := range specs {
			f.Tensors[g.prefix+s.Name] = checkpoint.NewF32(s.Shape, v[offsets[i]:offsets[i]+s.Size()])
		}
	}
	rng, err := tensors.CopyFlatData[uint64](st.RNG)
	if err != nil {
		return nil, fmt.Errorf("train: rng state: %w", err)
	}
	raw := make([]int64, len(rng))
	for i, v := range rng {
		raw[i] = int64(v)
	}
	f.Tensors["rng"] = checkpoint.NewI64(st.RNG.Shape().Dimensions, raw)
	return f, nil
}

// StateFromFile is the inverse of StateFile. Every parameter of specs must be present with its shape.
func StateFromFile(f *checkpoint.File, specs []nn.Spec) (*State, error) {
	step, err := strconv.ParseInt(f.Metadata["step"], 10, 64)
	if err != nil || step < 0 {
		return nil, fmt.Errorf("train: state file has no valid \"step\" in its metadata (%q)", f.Metadata["step"])
	}
	st := &State{Step: step}
	_, total := nn.Offsets(specs)
	get := func(prefix string) (*tensors.Tensor, error) {
		out := make([]float32, 0, total)
		for _, s := range specs {
			t, ok := f.Tensors[prefix+s.Name]
			if !ok {
				return nil, fmt.Errorf("train: state file lacks %q (was it written for another model?)", prefix+s.Name)
			}
			if !slices.Equal(t.Shape, s.Shape) {
				return nil, fmt.Errorf("train: state tensor %q has shape %v, want %v (was it written for another model?)", prefix+s.Name, t.Shape, s.Shape)
			}
			v, err := t.Float32()
			if err != nil {
				return nil, fmt.Errorf("train: state tensor %q: %w", prefix+s.Name, err)
			}
			out = append(out, v...)
		}
		return tensors.FromFlatDataAndDimensions(out, total), nil
	}
	if st.Params, err = get(prefixParams); err != nil {
		return nil, err
	}
	if st.EMA, err = get(prefixEMA); err != nil {
		return nil, err
	}
	if st.M, err = get(prefixM); err != nil {
		return nil, err
	}
	if st.V, err = get(prefixV); err != nil {
		return nil, err
	}
	r, ok := f.Tensors["rng"]
	if !ok {
		return nil, fmt.Errorf("train: state file lacks the RNG state \"rng\"")
	}
	raw, err := r.Int64s()
	if err != nil {
		return nil, fmt.Errorf("train: rng: %w", err)
	}
	u := make([]uint64, len(raw))
	for i, v := range raw {
		u[i] = uint64(v)
	}
	st.RNG = tensors.FromFlatDataAndDimensions(u, r.Shape...)
	return st, nil
}
