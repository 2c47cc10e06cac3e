package data

import "fmt"

// BatcherState is all a Batcher is: save it with a checkpoint (it encodes to JSON) and give it to
// NewBatcher to go on with exactly the batches that would have come next. The zero Epoch and Pos
// start at the beginning.
type BatcherState struct {
	N         int    `json:"n"`          // number of examples
	BatchSize int    `json:"batch_size"` // indices per batch
	DropLast  bool   `json:"drop_last"`  // skip an epoch's last batch when it is smaller
	Seed      uint64 `json:"seed"`
	Epoch     int    `json:"epoch"` // the epoch of the last batch returned
	Pos       int    `json:"pos"`   // the position in that epoch's permutation of the next batch
}

// Validate checks that the state can yield batches.
func (s BatcherState) Validate() error {
	switch {
	case s.N <= 0:
		return fmt.Errorf("data: batcher: %d examples; want at least 1", s.N)
	case s.BatchSize <= 0:
		return fmt.Errorf("data: batcher: batch size %d; want at least 1", s.BatchSize)
	case s.DropLast && s.BatchSize > s.N:
		return fmt.Errorf("data: batcher: batch size %d > %d examples with drop_last: no batch would ever come; lower the batch size or keep the last batch",
			s.BatchSize, s.N)
	case s.Epoch < 0 || s.Pos < 0 || s.Pos > s.N:
		return fmt.Errorf("data: batcher: epoch %d, position %d; want epoch >= 0 and position in [0, %d] (a state of another data set?)",
			s.Epoch, s.Pos, s.N)
	}
	return nil
}

// A Batcher yields shuffled batches of example indices, epoch after epoch, without end. Epoch e's
// order is Permutation(N, s_e) with s_e = the (e+1)-th output of SplitMix64 seeded with Seed,
// mix64(Seed + (e+1)*0x9E3779B97F4A7C15); an epoch's batches are its permutation cut in order.
type Batcher struct {
	s    BatcherState
	perm []int // the permutation of epoch s.Epoch
}

// NewBatcher returns a Batcher at state s: BatcherState{N: n, BatchSize: b, Seed: seed} for a new
// one, or a saved State() to resume.
func NewBatcher(s BatcherState) (*Batcher, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &Batcher{s: s, perm: Permutation(s.N, epochSeed(s.Seed, s.Epoch))}, nil
}

func epochSeed(seed uint64, epoch int) uint64 {
	return mix64(seed + uint64(epoch+1)*gamma)
}

// Next returns the next batch of indices (a new slice). With DropLast, every batch has BatchSize
// indices; without, an epoch's last batch may be smaller.
func (b *Batcher) Next() []int {
	if b.s.Pos >= b.s.N || (b.s.DropLast && b.s.Pos+b.s.BatchSize > b.s.N) {
		b.s.Epoch++
		b.s.Pos = 0
		b.perm = Permutation(b.s.N, epochSeed(b.s.Seed, b.s.Epoch))
	}
	end := min(b.s.Pos+b.s.BatchSize, b.s.N)
	batch := append([]int(nil), b.perm[b.s.Pos:end]...)
	b.s.Pos = end
	return batch
}

// State returns the state to save for resuming.
func (b *Batcher) State() BatcherState { return b.s }

// Epoch returns the epoch of the last batch returned (0 before the first).
func (b *Batcher) Epoch() int { return b.s.Epoch }

// BatchesPerEpoch returns the number of batches in one epoch.
func (b *Batcher) BatchesPerEpoch() int {
	if b.s.DropLast {
		return b.s.N / b.s.BatchSize
	}
	return (b.s.N + b.s.BatchSize - 1) / b.s.BatchSize
}
