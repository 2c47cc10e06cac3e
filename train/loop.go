package train

import (
	"context"
	"errors"
	"fmt"

	"github.com/ddpm/ddpm/data"
)

// An AfterFunc is called after every compiled call with the state, the epoch the batcher is in and
// the losses of the steps just taken. Returning ErrStop ends Run without an error; any other error
// ends it with that error.
type AfterFunc func(st *State, epoch int, losses []float32) error

// Run trains until st.Step reaches until (or ctx is done, or after returns ErrStop), drawing batches
// from b. StepsPerCall steps run per compiled call; the last call may run fewer.
func (tr *Trainer) Run(ctx context.Context, st *State, b *data.Batcher, until int64, after AfterFunc) error {
	for st.Step < until {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := int(min(int64(tr.cfg.StepsPerCall), until-st.Step))
		batches := make([][]int, k)
		for i := range batches {
			batches[i] = b.Next()
		}
		losses, err := tr.call(st, batches)
		if err != nil {
			return err
		}
		if after != nil {
			if err := after(st, b.Epoch(), losses); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return fmt.Errorf("train: %w", err)
			}
		}
	}
	return nil
}
