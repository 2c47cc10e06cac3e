package train

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// An Engine runs optimizer steps outside GoMLX (the CPU engine of package cpu) on the same State:
// Step takes one step per batch of dataset indices, updates st in place (weights, AdamW moments,
// EMA, RNG state, st.Step) exactly as the compiled step does, and returns each step's loss.
type Engine interface {
	Step(st *State, batches [][]int) ([]float32, error)
}

// SetEngine makes Step and Run use e instead of the compiled graph (nil: back to the graph).
func (tr *Trainer) SetEngine(e Engine) { tr.engine = e }

// launchEngine is launch on the engine: the losses come back on the host.
func (tr *Trainer) launchEngine(st *State, batches [][]int) (*tensors.Tensor, error) {
	step0 := st.Step
	losses, err := tr.engine.Step(st, batches)
	if err != nil {
		return nil, fmt.Errorf("train: step %d: %w", step0+1, err)
	}
	return tensors.FromFlatDataAndDimensions(losses, len(losses)), nil
}
