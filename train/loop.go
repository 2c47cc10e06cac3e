package train

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ddpm/ddpm/data"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// An AfterFunc is called with the state, the epoch the batcher is in and the losses of the steps taken
// since its last call (in step order: the last loss is that of step st.Step). Run calls it after every
// group of compiled calls (see Run). Returning ErrStop ends Run without an error; any other error ends
// it with that error.
type AfterFunc func(st *State, epoch int, losses []float32) error

// Run trains until st.Step reaches until (or ctx is done, or after returns ErrStop), drawing batches
// from b. StepsPerCall steps run per compiled call; the last call may run fewer.
//
// Reading a loss makes the host wait for the device. So Run launches calls one after another and reads
// their losses, and calls after, once per group: when readEvery has passed since the last read, when
// maxPending steps are unread, at an epoch's end and at the end. On a backend that returns once the work
// is queued (the CUDA backend; backend.Info.Async) the device then runs a group's steps back to back.
// On one that computes before returning (the pure-Go backend) a UNet call takes longer than readEvery,
// so after runs after every call; only tiny models (the toy MLP) get grouped there.
func (tr *Trainer) Run(ctx context.Context, st *State, b *data.Batcher, until int64, after AfterFunc) error {
	type call struct {
		losses *tensors.Tensor
		step0  int64
	}
	var pending []call
	unread, lastRead, epoch := 0, time.Now(), b.Epoch()
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		var losses []float32
		var err error
		for _, c := range pending {
			var l []float32
			if err == nil {
				l, err = readLosses(c.losses, c.step0)
				losses = append(losses, l...)
			} else {
				c.losses.FinalizeAll()
			}
		}
		pending, unread, lastRead = pending[:0], 0, time.Now()
		if err != nil {
			return err
		}
		if after != nil {
			if err := after(st, b.Epoch(), losses); err != nil {
				if errors.Is(err, ErrStop) {
					return ErrStop
				}
				return fmt.Errorf("train: %w", err)
			}
		}
		return nil
	}
	for st.Step < until {
		if err := ctx.Err(); err != nil {
			if ferr := flush(); ferr != nil && !errors.Is(ferr, ErrStop) {
				return ferr
			}
			return err
		}
		k := int(min(int64(tr.cfg.StepsPerCall), until-st.Step))
		batches := make([][]int, k)
		for i := range batches {
			batches[i] = b.Next()
		}
		step0 := st.Step
		lt, err := tr.launch(st, batches)
		if err != nil {
			flush()
			return err
		}
		pending, unread = append(pending, call{lt, step0}), unread+k
		if st.Step < until && unread < maxPending && time.Since(lastRead) < readEvery && b.Epoch() == epoch {
			continue
		}
		epoch = b.Epoch()
		if err := flush(); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// How often Run reads losses: after readEvery, or maxPending unread steps, whichever comes first.
const (
	readEvery  = 200 * time.Millisecond
	maxPending = 100
)
