package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/internal/atomicfile"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// A Checkpoint is one file of a run's checkpoints folder.
type Checkpoint struct {
	Step int64
	Path string
}

// CheckpointPath is the file of the checkpoint at step: checkpoints/step-00001234.safetensors.
func CheckpointPath(dir string, step int64) string {
	return join(dir, CheckpointDir, fmt.Sprintf("step-%08d.safetensors", step))
}

// Checkpoints lists dir's checkpoints, oldest first.
func Checkpoints(dir string) []Checkpoint {
	paths, _ := filepath.Glob(join(dir, CheckpointDir, "step-*.safetensors"))
	var out []Checkpoint
	for _, p := range paths {
		var c Checkpoint
		if _, err := fmt.Sscanf(filepath.Base(p), "step-%d.safetensors", &c.Step); err == nil {
			c.Path = p
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out
}

// A NonFiniteError is a training state or loss with a NaN or an infinity, which is never saved.
type NonFiniteError struct {
	Step int64  // the step whose loss or state is not finite
	What string // "the loss", "the weights", ...
	Last *Checkpoint
}

func (e *NonFiniteError) Error() string {
	last := "there is no checkpoint yet"
	if e.Last != nil {
		last = fmt.Sprintf("the last checkpoint, step %d (%s), is intact", e.Last.Step, e.Last.Path)
	}
	return fmt.Sprintf("run: %s became NaN or infinite at step %d, so it was not saved; %s; lower --lr or set --max-grad-norm and start again",
		e.What, e.Step, last)
}

// NonFinite returns a *NonFiniteError when a loss is NaN or infinite, nil otherwise; step is the step
// of the last loss.
func (r *Run) NonFinite(step int64, losses []float32) error {
	for i, l := range losses {
		if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
			return &NonFiniteError{Step: step - int64(len(losses)-1-i), What: "the loss", Last: r.last()}
		}
	}
	return nil
}

func (r *Run) last() *Checkpoint {
	if c := Checkpoints(r.Dir); len(c) > 0 {
		return &c[len(c)-1]
	}
	return nil
}

// Save replaces the run's diffusers pipeline with the EMA weights of st, writes the training state as
// checkpoint st.Step and removes the oldest checkpoints beyond Keep. A state with a NaN or an infinity is not
// saved: Save returns a *NonFiniteError and the folder is unchanged.
func (r *Run) Save(model *unet.Model, st *train.State, bs data.BatcherState) (string, error) {
	bj, _ := json.Marshal(bs)
	cj, _ := json.Marshal(r.Config)
	f, err := train.StateFile(st, model.Specs(), map[string]string{"batcher": string(bj), "config": string(cj)})
	if err != nil {
		return "", err
	}
	if what := nonFinite(f); what != "" {
		return "", &NonFiniteError{Step: st.Step, What: what, Last: r.last()}
	}
	// The pipeline first: a kill between the two writes then leaves a folder whose pipeline is at most
	// one save ahead of its newest checkpoint, never a checkpoint without a pipeline (the first save).
	if err := WritePipeline(r.Dir, model, st.EMA, r.Config); err != nil {
		return "", err
	}
	path := CheckpointPath(r.Dir, st.Step)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("run: %w", err)
	}
	if err := atomicfile.Write(path, func(w io.Writer) error { return checkpoint.EncodeSafetensors(w, f) }); err != nil {
		return "", fmt.Errorf("run: checkpoint %s: %w", path, err)
	}
	all := Checkpoints(r.Dir)
	for len(all) > r.Config.KeepCkpts {
		if err := os.Remove(all[0].Path); err != nil {
			return "", fmt.Errorf("run: removing an old checkpoint: %w", err)
		}
		all = all[1:]
	}
	return path, nil
}

// nonFinite names the first group of tensors of a state file holding a NaN or an infinity, or "".
func nonFinite(f *checkpoint.File) string {
	names := f.Names()
	sort.Strings(names)
	for _, name := range names {
		v, err := f.Tensors[name].Float32()
		if err != nil {
			continue
		}
		for _, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				group, _, _ := strings.Cut(name, ".")
				return map[string]string{"params": "the weights", "ema": "the EMA weights",
					"adam_m": "the optimizer state (adam_m)", "adam_v": "the optimizer state (adam_v)"}[group] + " (" + name + ")"
			}
		}
	}
	return ""
}

// ErrNoCheckpoint is returned by Latest for a run with no checkpoint yet.
var ErrNoCheckpoint = errors.New("no checkpoint yet")

// A Restored is the state read back from a run's newest readable checkpoint.
type Restored struct {
	State   *train.State
	Batcher data.BatcherState
	Path    string
	// Skipped lists the newer checkpoints that did not read back ("step-00000004.safetensors: why").
	// They are left as they are, never deleted.
	Skipped []string
}

// Latest reads the newest checkpoint of dir that reads back whole, skipping (and listing) damaged
// newer ones. With no checkpoint it returns an error wrapping ErrNoCheckpoint.
func Latest(dir string, specs []nn.Spec) (*Restored, error) {
	all := Checkpoints(dir)
	if len(all) == 0 {
		return nil, fmt.Errorf("run: %s: %w", join(dir, CheckpointDir), ErrNoCheckpoint)
	}
	var skipped []string
	for i := len(all) - 1; i >= 0; i-- {
		st, bs, err := readCheckpoint(all[i].Path, specs)
		if err == nil {
			return &Restored{State: st, Batcher: bs, Path: all[i].Path, Skipped: skipped}, nil
		}
		skipped = append(skipped, fmt.Sprintf("%s: %v", filepath.Base(all[i].Path), err))
	}
	return nil, fmt.Errorf("run: no readable checkpoint in %s:\n  %s", dir, strings.Join(skipped, "\n  "))
}

func readCheckpoint(path string, specs []nn.Spec) (*train.State, data.BatcherState, error) {
	var bs data.BatcherState
	f, err := checkpoint.ReadSafetensors(path)
	if err != nil {
		return nil, bs, err
	}
	st, err := train.StateFromFile(f, specs)
	if err != nil {
		return nil, bs, err
	}
	if err := json.Unmarshal([]byte(f.Metadata["batcher"]), &bs); err != nil {
		return nil, bs, fmt.Errorf("batcher state: %w", err)
	}
	return st, bs, bs.Validate()
}

// WritePipeline writes dir's diffusers files (model_index.json, unet/, scheduler/) with the EMA
// weights ema (one flat vector, nn.Flatten), one atomic rename per file.
func WritePipeline(dir string, model *unet.Model, ema *tensors.Tensor, c Config) error {
	weights, err := nn.Unflatten(model.Specs(), ema)
	if err != nil {
		return err
	}
	ddpm := sampler.DefaultDDPM()
	ddpm.Prediction = c.Train.Prediction
	ddpm.Variance = c.DDPMVariance
	if model.Config.ClassEmbedding() != unet.NoClasses {
		// A class-conditional model is sampled with guidance, and clamping the x0 of a guided prediction
		// while keeping its eps sends DDPM and DDIM to other classes (docs/guidance.md): no clip_sample.
		ddpm.ClipSample = false
	}
	p, err := pipeline.New(model.Config, weights, c.Schedule, ddpm)
	if err != nil {
		return err
	}
	return pipeline.Save(dir, p, checkpoint.F32)
}
