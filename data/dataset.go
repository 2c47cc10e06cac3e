package data

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// A Dataset is a set of images in [-1, 1], with class labels where the source has them.
type Dataset struct {
	Name    string    // "mnist", "fashion-mnist", or an image folder's path
	Split   string    // "train", "test", or "" (an image folder)
	Images  []float32 // [N,C,H,W] in C order, each value in [-1, 1]
	Labels  []int     // [N] class indices into Classes; nil for a set without labels
	Classes []string  // class names; nil for a set without labels
	C, H, W int       // channels, height and width of one image
}

// Len returns the number of images, N.
func (d *Dataset) Len() int {
	if d.C*d.H*d.W == 0 {
		return 0
	}
	return len(d.Images) / (d.C * d.H * d.W)
}

// Image returns image i, [C,H,W], sharing memory with d.Images.
func (d *Dataset) Image(i int) []float32 {
	size := d.C * d.H * d.W
	return d.Images[i*size : (i+1)*size : (i+1)*size]
}

// Gather copies the images (and labels, if d has them) at idx into images and labels, reusing their
// capacity, and returns them: images [len(idx),C,H,W], labels [len(idx)] (nil when d has none).
func (d *Dataset) Gather(idx []int, images []float32, labels []int) ([]float32, []int) {
	images, labels = images[:0], labels[:0]
	for _, i := range idx {
		images = append(images, d.Image(i)...)
		if d.Labels != nil {
			labels = append(labels, d.Labels[i])
		}
	}
	if d.Labels == nil {
		labels = nil
	}
	return images, labels
}

// Subset returns a new Dataset of the images at idx, in that order (copied).
func (d *Dataset) Subset(idx []int) *Dataset {
	s := *d
	s.Images, s.Labels = d.Gather(idx, make([]float32, 0, len(idx)*d.C*d.H*d.W), make([]int, 0, len(idx)))
	return &s
}

// HoldOut splits d into a training part and a held-out part of floor(frac*N + 0.5) images, by the
// indices of HoldOutIndices(N, frac, seed).
func (d *Dataset) HoldOut(frac float64, seed uint64) (train, held *Dataset, err error) {
	trainIdx, heldIdx, err := HoldOutIndices(d.Len(), frac, seed)
	if err != nil {
		return nil, nil, err
	}
	return d.Subset(trainIdx), d.Subset(heldIdx), nil
}

// HoldOutIndices splits 0..n-1 into a held-out part of k = floor(frac*n + 0.5) indices and the rest, both sorted ascending: the held-out part is the first k entries of
// Permutation(n, seed). The same (n, frac, seed) gives the same split in every version.
func HoldOutIndices(n int, frac float64, seed uint64) (train, held []int, err error) {
	if !(frac >= 0 && frac <= 1) {
		return nil, nil, fmt.Errorf("data: hold-out fraction %v; want a value in [0, 1], e.g. 0.1", frac)
	}
	if n < 0 {
		return nil, nil, fmt.Errorf("data: hold-out of %d images; want n >= 0", n)
	}
	k := int(math.Floor(frac*float64(n) + 0.5))
	perm := Permutation(n, seed)
	held, train = perm[:k:k], perm[k:]
	slices.Sort(held)
	slices.Sort(train)
	return train, held, nil
}

// pixelTable maps a byte to [-1, 1] as torchvision's ToTensor then Normalize(0.5, 0.5) do, all in
// float32: (p/255 - 0.5) / 0.5. This is p/127.5 - 1 up to float32 rounding, and bit-equal to what
// a PyTorch data loader feeds a diffusers model.
var pixelTable = func() (t [256]float32) {
	for p := range t {
		t[p] = (float32(p)/255 - 0.5) / 0.5
	}
	return t
}()

// Load loads split "train" or "test" of data set name ("mnist" or "fashion-mnist"), finding or
// downloading its files as Locate does, into a Dataset of [N,1,28,28] images in [-1, 1] and labels
// 0..9.
func Load(ctx context.Context, name, split string, opts Options) (*Dataset, error) {
	src, err := lookup(name)
	if err != nil {
		return nil, err
	}
	files, err := splitFiles(split)
	if err != nil {
		return nil, err
	}
	paths, err := locate(ctx, src, files, opts)
	if err != nil {
		return nil, err
	}
	d, err := loadIDX(paths[0], paths[1], len(src.classes))
	if err != nil {
		return nil, err
	}
	d.Name, d.Split, d.Classes = src.name, split, src.classes
	return d, nil
}

// loadIDX reads an images file and a labels file into a Dataset with labels in [0, classes).
func loadIDX(imagesPath, labelsPath string, classes int) (*Dataset, error) {
	images, err := ReadImages(imagesPath)
	if err != nil {
		return nil, err
	}
	labels, err := ReadLabels(labelsPath)
	if err != nil {
		return nil, err
	}
	n := images.Dims[0]
	if labels.Dims[0] != n {
		return nil, fmt.Errorf("data: %s has %d images but %s has %d labels (files of different splits or data sets?)",
			imagesPath, n, labelsPath, labels.Dims[0])
	}
	d := &Dataset{
		Images: make([]float32, len(images.Data)),
		Labels: make([]int, n),
		C:      1, H: images.Dims[1], W: images.Dims[2],
	}
	for i, p := range images.Data {
		d.Images[i] = pixelTable[p]
	}
	for i, l := range labels.Data {
		if int(l) >= classes {
			return nil, fmt.Errorf("data: %s: label %d at index %d; want 0..%d (labels of another data set?)", labelsPath, l, i, classes-1)
		}
		d.Labels[i] = int(l)
	}
	return d, nil
}
