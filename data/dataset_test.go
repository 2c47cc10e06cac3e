package data

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func TestPixelTable(t *testing.T) {
	// Against p/127.5 - 1 in float64: torchvision's float32 order of operations may differ by
	// float32 rounding: measured at most 5.94e-8, below 2^-24.
	for p := range 256 {
		got, want := float64(pixelTable[p]), float64(p)/127.5-1
		if math.Abs(got-want) > 0x1p-24 {
			t.Errorf("pixelTable[%d] = %v; want %v within 2^-24", p, got, want)
		}
		if p > 0 && pixelTable[p] <= pixelTable[p-1] {
			t.Errorf("pixelTable[%d] = %v <= pixelTable[%d] = %v; want increasing", p, pixelTable[p], p-1, pixelTable[p-1])
		}
	}
	// Fixed points of the map, and torchvision's float32 result for 128: (128/255 - 0.5) / 0.5.
	for _, c := range []struct {
		p    int
		want float32
	}{{0, -1}, {255, 1}, {128, float32(0.003921628)}} {
		if pixelTable[c.p] != c.want {
			t.Errorf("pixelTable[%d] = %v; want %v", c.p, pixelTable[c.p], c.want)
		}
	}
}

func TestHoldOut(t *testing.T) {
	tests := []struct {
		n              int
		frac           float64
		seed           uint64
		wantHeld       int
		wantHeldValues []int // golden, from the Python code in the package doc; nil: not pinned
	}{
		{20, 0.25, 7, 5, []int{1, 2, 4, 15, 16}},
		{60000, 0.1, 1, 6000, nil},
		{10, 0, 3, 0, []int{}},
		{10, 1, 3, 10, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{7, 0.5, 2, 4, nil}, // 3.5 rounds up
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("n=%d,frac=%v,seed=%d", tt.n, tt.frac, tt.seed), func(t *testing.T) {
			train, held, err := HoldOutIndices(tt.n, tt.frac, tt.seed)
			if err != nil {
				t.Fatal(err)
			}
			if len(held) != tt.wantHeld || len(train) != tt.n-tt.wantHeld {
				t.Fatalf("HoldOutIndices(%d, %v, %d): %d train, %d held; want %d, %d", tt.n, tt.frac, tt.seed, len(train), len(held), tt.n-tt.wantHeld, tt.wantHeld)
			}
			if tt.wantHeldValues != nil && !slices.Equal(held, tt.wantHeldValues) {
				t.Errorf("held = %v; want %v", held, tt.wantHeldValues)
			}
			// Disjoint and covering: the two sorted parts merge to 0..n-1.
			all := append(slices.Clone(train), held...)
			slices.Sort(all)
			for i, v := range all {
				if v != i {
					t.Fatalf("train ∪ held, sorted, [%d] = %d; want %d (overlap or gap)", i, v, i)
				}
			}
			if !slices.IsSorted(train) || !slices.IsSorted(held) {
				t.Errorf("train or held not sorted ascending")
			}
			train2, held2, _ := HoldOutIndices(tt.n, tt.frac, tt.seed)
			if !slices.Equal(train, train2) || !slices.Equal(held, held2) {
				t.Errorf("a second HoldOutIndices(%d, %v, %d) differs; want deterministic", tt.n, tt.frac, tt.seed)
			}
		})
	}
	t.Run("seeds differ", func(t *testing.T) {
		_, a, _ := HoldOutIndices(1000, 0.1, 1)
		_, b, _ := HoldOutIndices(1000, 0.1, 2)
		if slices.Equal(a, b) {
			t.Errorf("seeds 1 and 2 hold out the same indices; want different splits")
		}
	})
	for _, frac := range []float64{-0.1, 1.5, math.NaN()} {
		t.Run(fmt.Sprintf("frac=%v", frac), func(t *testing.T) {
			if _, _, err := HoldOutIndices(10, frac, 1); err == nil {
				t.Errorf("HoldOutIndices(10, %v, 1): no error; want one", frac)
			}
		})
	}
}

func TestDatasetHoldOutAndGather(t *testing.T) {
	// 6 images of [1,1,2], image i filled with value i, label i%3.
	d := &Dataset{Name: "toy", C: 1, H: 1, W: 2, Labels: []int{0, 1, 2, 0, 1, 2}}
	for i := range 6 {
		d.Images = append(d.Images, float32(i), float32(i))
	}
	train, held, err := d.HoldOut(0.5, 11)
	if err != nil {
		t.Fatal(err)
	}
	_, heldIdx, _ := HoldOutIndices(6, 0.5, 11)
	if held.Len() != 3 || train.Len() != 3 || held.Name != "toy" {
		t.Fatalf("HoldOut(0.5): %d train, %d held, name %q; want 3, 3, toy", train.Len(), held.Len(), held.Name)
	}
	for j, i := range heldIdx {
		if img := held.Image(j); img[0] != float32(i) || img[1] != float32(i) || held.Labels[j] != i%3 {
			t.Errorf("held image %d = %v label %d; want image %d of d: [%d %d] label %d", j, img, held.Labels[j], i, i, i, i%3)
		}
	}
	images, labels := d.Gather([]int{5, 0}, make([]float32, 0, 4), nil)
	if !slices.Equal(images, []float32{5, 5, 0, 0}) || !slices.Equal(labels, []int{2, 0}) {
		t.Errorf("Gather([5 0]) = %v, %v; want [5 5 0 0], [2 0]", images, labels)
	}
	d.Labels = nil
	if _, labels := d.Gather([]int{1}, nil, []int{9}); labels != nil {
		t.Errorf("Gather on a set without labels gave labels %v; want nil", labels)
	}
}
