package data

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestBatcherEpochs(t *testing.T) {
	tests := []struct {
		n, size     int
		dropLast    bool
		wantSizes   []int // batch sizes of one epoch
		wantCovered int   // distinct indices per epoch
	}{
		{10, 3, false, []int{3, 3, 3, 1}, 10},
		{10, 3, true, []int{3, 3, 3}, 9},
		{9, 3, true, []int{3, 3, 3}, 9},
		{5, 8, false, []int{5}, 5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("n=%d,size=%d,drop=%v", tt.n, tt.size, tt.dropLast), func(t *testing.T) {
			b, err := NewBatcher(BatcherState{N: tt.n, BatchSize: tt.size, DropLast: tt.dropLast, Seed: 4})
			if err != nil {
				t.Fatal(err)
			}
			if got := b.BatchesPerEpoch(); got != len(tt.wantSizes) {
				t.Errorf("BatchesPerEpoch() = %d; want %d", got, len(tt.wantSizes))
			}
			var orders [][]int
			for epoch := range 3 {
				var order []int
				for j, want := range tt.wantSizes {
					batch := b.Next()
					if len(batch) != want {
						t.Fatalf("epoch %d batch %d has %d indices; want %d", epoch, j, len(batch), want)
					}
					if b.Epoch() != epoch {
						t.Fatalf("Epoch() = %d during epoch %d", b.Epoch(), epoch)
					}
					order = append(order, batch...)
				}
				seen := map[int]bool{}
				for _, i := range order {
					if i < 0 || i >= tt.n || seen[i] {
						t.Fatalf("epoch %d: index %d out of range or repeated in %v", epoch, i, order)
					}
					seen[i] = true
				}
				if len(seen) != tt.wantCovered {
					t.Errorf("epoch %d covers %d indices; want %d", epoch, len(seen), tt.wantCovered)
				}
				orders = append(orders, order)
			}
			if tt.n > 5 && slices.Equal(orders[0], orders[1]) && slices.Equal(orders[1], orders[2]) {
				t.Errorf("three epochs in the same order %v; want a new shuffle each epoch", orders[0])
			}
		})
	}
	t.Run("golden epoch orders", func(t *testing.T) {
		// From the Python code in the package doc: permutation(8, epoch_seed(3, e)) for e = 0, 1.
		b, _ := NewBatcher(BatcherState{N: 8, BatchSize: 8, Seed: 3})
		for e, want := range [][]int{{6, 5, 4, 0, 1, 2, 3, 7}, {0, 2, 3, 7, 1, 6, 4, 5}} {
			if got := b.Next(); !slices.Equal(got, want) {
				t.Errorf("epoch %d order %v; want %v", e, got, want)
			}
		}
	})
}

func TestBatcherResume(t *testing.T) {
	// Stop after k batches, save the state as JSON, resume, and compare with an uninterrupted run,
	// across epoch boundaries (7 batches per epoch).
	for _, k := range []int{0, 3, 7, 8, 20} {
		for _, drop := range []bool{false, true} {
			t.Run(fmt.Sprintf("after=%d,drop=%v", k, drop), func(t *testing.T) {
				start := BatcherState{N: 50, BatchSize: 8, DropLast: drop, Seed: 99}
				ref, _ := NewBatcher(start)
				var want [][]int
				for range k + 15 {
					want = append(want, ref.Next())
				}
				b, _ := NewBatcher(start)
				for range k {
					b.Next()
				}
				saved, err := json.Marshal(b.State())
				if err != nil {
					t.Fatal(err)
				}
				var s BatcherState
				if err := json.Unmarshal(saved, &s); err != nil {
					t.Fatal(err)
				}
				resumed, err := NewBatcher(s)
				if err != nil {
					t.Fatalf("NewBatcher(%s): %v", saved, err)
				}
				for j := range 15 {
					if got := resumed.Next(); !slices.Equal(got, want[k+j]) {
						t.Fatalf("resumed from %s: batch %d = %v; want %v", saved, k+j, got, want[k+j])
					}
				}
			})
		}
	}
}

func TestBatcherStateValidate(t *testing.T) {
	tests := []struct {
		name string
		s    BatcherState
		want string
	}{
		{"no examples", BatcherState{N: 0, BatchSize: 1}, "0 examples"},
		{"no batch size", BatcherState{N: 5}, "batch size 0"},
		{"drop all", BatcherState{N: 5, BatchSize: 8, DropLast: true}, "no batch would ever come"},
		{"position past end", BatcherState{N: 5, BatchSize: 2, Pos: 6}, "position 6"},
		{"negative epoch", BatcherState{N: 5, BatchSize: 2, Epoch: -1}, "epoch -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewBatcher(tt.s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewBatcher(%+v) error %v; want one with %q", tt.s, err, tt.want)
			}
		})
	}
}
