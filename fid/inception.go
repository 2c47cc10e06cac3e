package fid

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// InceptionName names the feature extractor in statistics files (Extractor.Name).
const InceptionName = "inception-v3-fid (pytorch-fid pt_inception-2015-12-05)"

// InceptionDim is the number of features per image: the 2048 channels of the final average pool
// ("pool3").
const InceptionDim = 2048

// bnEps is the epsilon of every BatchNorm of torchvision's BasicConv2d.
const bnEps = 0.001

// A convSpec is one BasicConv2d of the network: a convolution without bias, BatchNorm (eps 0.001, running
// statistics) and ReLU. Its weights are the state-dict entries name+".conv.weight" [out,in,kh,kw] and
// name+".bn.{weight,bias,running_mean,running_var}" [out].
type convSpec struct {
	name                    string
	in, out, kh, kw, stride int
	same                    bool // zero padding (kh-1)/2 rows and (kw-1)/2 columns on each side; else none
}

func (s convSpec) pad() (ph, pw int) {
	if s.same {
		return (s.kh - 1) / 2, (s.kw - 1) / 2
	}
	return 0, 0
}

// inceptionLayout lists the BasicConv2d layers of pytorch-fid's FID Inception in state-dict order
// (torchvision's Inception3 with 1008 classes; the FID blocks change the pools, not the convolutions).
func inceptionLayout() []convSpec {
	var l []convSpec
	conv := func(name string, in, out, kh, kw, stride int, same bool) {
		l = append(l, convSpec{name, in, out, kh, kw, stride, same})
	}
	conv("Conv2d_1a_3x3", 3, 32, 3, 3, 2, false)
	conv("Conv2d_2a_3x3", 32, 32, 3, 3, 1, false)
	conv("Conv2d_2b_3x3", 32, 64, 3, 3, 1, true)
	conv("Conv2d_3b_1x1", 64, 80, 1, 1, 1, false)
	conv("Conv2d_4a_3x3", 80, 192, 3, 3, 1, false)
	blockA := func(b string, in, pool int) { // torchvision InceptionA
		conv(b+".branch1x1", in, 64, 1, 1, 1, false)
		conv(b+".branch5x5_1", in, 48, 1, 1, 1, false)
		conv(b+".branch5x5_2", 48, 64, 5, 5, 1, true)
		conv(b+".branch3x3dbl_1", in, 64, 1, 1, 1, false)
		conv(b+".branch3x3dbl_2", 64, 96, 3, 3, 1, true)
		conv(b+".branch3x3dbl_3", 96, 96, 3, 3, 1, true)
		conv(b+".branch_pool", in, pool, 1, 1, 1, false)
	}
	blockA("Mixed_5b", 192, 32)
	blockA("Mixed_5c", 256, 64)
	blockA("Mixed_5d", 288, 64)
	// InceptionB
	conv("Mixed_6a.branch3x3", 288, 384, 3, 3, 2, false)
	conv("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1, 1, false)
	conv("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3, 1, true)
	conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3, 2, false)
	blockC := func(b string, c7 int) { // InceptionC on 768 channels
		conv(b+".branch1x1", 768, 192, 1, 1, 1, false)
		conv(b+".branch7x7_1", 768, c7, 1, 1, 1, false)
		conv(b+".branch7x7_2", c7, c7, 1, 7, 1, true)
		conv(b+".branch7x7_3", c7, 192, 7, 1, 1, true)
		conv(b+".branch7x7dbl_1", 768, c7, 1, 1, 1, false)
		conv(b+".branch7x7dbl_2", c7, c7, 7, 1, 1, true)
		conv(b+".branch7x7dbl_3", c7, c7, 1, 7, 1, true)
		conv(b+".branch7x7dbl_4", c7, c7, 7, 1, 1, true)
		conv(b+".branch7x7dbl_5", c7, 192, 1, 7, 1, true)
		conv(b+".branch_pool", 768, 192, 1, 1, 1, false)
	}
	blockC("Mixed_6b", 128)
	blockC("Mixed_6c", 160)
	blockC("Mixed_6d", 160)
	blockC("Mixed_6e", 192)
	// InceptionD
	conv("Mixed_7a.branch3x3_1", 768, 192, 1, 1, 1, false)
	conv("Mixed_7a.branch3x3_2", 192, 320, 3, 3, 2, false)
	conv("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1, 1, false)
	conv("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7, 1, true)
	conv("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1, 1, true)
	conv("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3, 2, false)
	blockE := func(b string, in int) { // InceptionE
		conv(b+".branch1x1", in, 320, 1, 1, 1, false)
		conv(b+".branch3x3_1", in, 384, 1, 1, 1, false)
		conv(b+".branch3x3_2a", 384, 384, 1, 3, 1, true)
		conv(b+".branch3x3_2b", 384, 384, 3, 1, 1, true)
		conv(b+".branch3x3dbl_1", in, 448, 1, 1, 1, false)
		conv(b+".branch3x3dbl_2", 448, 384, 3, 3, 1, true)
		conv(b+".branch3x3dbl_3a", 384, 384, 1, 3, 1, true)
		conv(b+".branch3x3dbl_3b", 384, 384, 3, 1, 1, true)
		conv(b+".branch_pool", in, 192, 1, 1, 1, false)
	}
	blockE("Mixed_7b", 1280)
	blockE("Mixed_7c", 2048)
	return l
}

// computeDType resolves Inception.DType: the zero value is float32. Every product is nn.ExactProduct in
// either: XLA runs float32 convolutions and matrix products on NVIDIA GPUs on TF32 tensor cores, and
// GoMLX v0.26 cannot ask it for full float32 (measured on an H200, plain float32 features were up to
// 4.4% of 1 + |f| off pytorch-fid's), so three TF32 passes give float32 accuracy (float64 also does, at
// 813 images/s instead of 11k on that card).
func computeDType(d dtypes.DType) (dtypes.DType, error) {
	switch d {
	case dtypes.InvalidDType, dtypes.Float32:
		return dtypes.Float32, nil
	case dtypes.Float64:
		return dtypes.Float64, nil
	}
	return dtypes.InvalidDType, fmt.Errorf("fid: Inception.DType is %v, want Float32 (or unset) or Float64", d)
}

// Inception is pytorch-fid's InceptionV3([3]) (the FID Inception of TensorFlow's 2015-12-05 graph, as
// ported to PyTorch), with its weights loaded and every BatchNorm folded into its convolution. It maps
// images in [0, 1] to the 2048 pool3 features that FID compares. Features is safe for concurrent use.
type Inception struct {
	// DType is the arithmetic of Features: Float32 (the zero value, with exact products; pytorch-fid on
	// a CPU) or Float64 (the input images, the folded weights and the features stay float32 values).
	// Set it before calling Features, not during a call.
	DType dtypes.DType

	layers []convSpec
	index  map[string]int // layer name -> position in layers
	// Folded weights per layer: w [kh,kw,in,out] (the layout of graph.Convolve with channels last, and
	// of the im2col matrix [kh*kw*in, out]) and b [out].
	w, b  [][]float32
	hash  string // hex SHA-256 of the weights file
	mu    sync.Mutex
	execs map[execKey]*inceptionExec
}

type execKey struct {
	b     backends.Backend
	dtype dtypes.DType
}

// inceptionExec is the compiled network on one backend, with the weights as tensors there.
type inceptionExec struct {
	exec    *graph.Exec
	weights []*tensors.Tensor // w0, b0, w1, b1, ... in layer order
}

// LoadInception reads pytorch-fid's weights (pt_inception-2015-12-05-6726825d.pth, see
// FindInceptionWeights) with checkpoint.ReadTorch and folds each BatchNorm into its convolution.
// Every tensor the network uses must be present with its shape; the 1008-class head (fc.*) is not
// used. A file under the original name whose SHA-256 does not start with the 6726825d it carries is
// refused as damaged.
func LoadInception(path string) (*Inception, error) {
	hash, err := fileSHA256(path)
	if err != nil {
		return nil, fmt.Errorf("fid: Inception weights: %w (FindInceptionWeights finds or downloads pytorch-fid's %s)", err, InceptionWeightsFile)
	}
	if filepath.Base(path) == InceptionWeightsFile && !strings.HasPrefix(hash, inceptionWeightsHashPrefix) {
		return nil, fmt.Errorf("fid: Inception weights %s: SHA-256 %s does not start with %s as its name says: the file is damaged; delete it and download it again from %s",
			path, hash, inceptionWeightsHashPrefix, InceptionWeightsURL)
	}
	f, err := checkpoint.ReadTorch(path)
	if err != nil {
		return nil, fmt.Errorf("fid: Inception weights: %w", err)
	}
	m, err := newInception(f, hash)
	if err != nil {
		return nil, fmt.Errorf("fid: Inception weights %s: %w (want pytorch-fid's %s)", path, err, InceptionWeightsFile)
	}
	return m, nil
}

// newInception folds the weights of state dict f. hash identifies them (Extractor.WeightsHash).
func newInception(f *checkpoint.File, hash string) (*Inception, error) {
	layers := inceptionLayout()
	m := &Inception{
		layers: layers,
		index:  make(map[string]int, len(layers)),
		w:      make([][]float32, len(layers)),
		b:      make([][]float32, len(layers)),
		hash:   hash,
		execs:  map[execKey]*inceptionExec{},
	}
	get := func(name string, shape ...int) ([]float32, error) {
		t, ok := f.Tensors[name]
		if !ok {
			return nil, fmt.Errorf("no tensor %q", name)
		}
		if !slices.Equal(t.Shape, shape) {
			return nil, fmt.Errorf("tensor %q has shape %v, want %v", name, t.Shape, shape)
		}
		v, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		return v, nil
	}
	for i, s := range layers {
		m.index[s.name] = i
		w, err := get(s.name+".conv.weight", s.out, s.in, s.kh, s.kw)
		if err != nil {
			return nil, err
		}
		var bn [4][]float32 // gamma, beta, mean, var
		for j, p := range []string{"weight", "bias", "running_mean", "running_var"} {
			if bn[j], err = get(s.name+".bn."+p, s.out); err != nil {
				return nil, err
			}
		}
		m.w[i], m.b[i] = foldBatchNorm(w, bn[0], bn[1], bn[2], bn[3], s)
	}
	return m, nil
}

// foldBatchNorm folds BatchNorm with running statistics into the convolution before it (in float64,
// rounded once to float32), and lays the kernel out as [kh,kw,in,out]:
//
//	BN(conv(x, w)) = gamma * (conv(x, w) - mean) / sqrt(var + eps) + beta = conv(x, w * k) + (beta - mean * k),
//	k = gamma / sqrt(var + eps)   (per output channel)
func foldBatchNorm(w, gamma, beta, mean, variance []float32, s convSpec) (wf, bf []float32) {
	wf = make([]float32, len(w))
	bf = make([]float32, s.out)
	for o := range s.out {
		k := float64(gamma[o]) / math.Sqrt(float64(variance[o])+bnEps)
		bf[o] = float32(float64(beta[o]) - float64(mean[o])*k)
		for c := range s.in {
			for y := range s.kh {
				for x := range s.kw {
					src := ((o*s.in+c)*s.kh+y)*s.kw + x
					dst := ((y*s.kw+x)*s.in+c)*s.out + o
					wf[dst] = float32(float64(w[src]) * k)
				}
			}
		}
	}
	return wf, bf
}

// Extractor identifies this network and its weights in statistics files.
func (m *Inception) Extractor() Extractor {
	return Extractor{Name: InceptionName, WeightsHash: m.hash}
}

// Features returns the pool3 features [n,2048] (row-major) of images [n,c,h,w] in [0, 1] (float32,
// row-major, NCHW; c = 3 for RGB or 1 for grayscale, repeated to 3 channels), computed on backend b in
// batches of batch images in m.DType, as pytorch-fid's InceptionV3([3]) with its defaults:
// bilinear resize to 299x299 (skipped for a side already 299), scale to [-1, 1], the network.
// Values outside [0, 1] are not clipped (pytorch-fid does not clip either). The last partial batch
// is padded with blank images so that one compiled graph serves every batch; a batch larger than n
// is cut to n. Graphs are compiled once per backend, precision and input shape.
func (m *Inception) Features(b backends.Backend, images []float32, n, c, h, w, batch int) (feat []float32, err error) {
	if b == nil {
		return nil, fmt.Errorf("fid: Inception.Features: no backend (see package backend)")
	}
	if n <= 0 || h <= 0 || w <= 0 || batch <= 0 {
		return nil, fmt.Errorf("fid: Inception.Features(n=%d, %dx%d, batch %d): n, the image size and the batch must be positive", n, h, w, batch)
	}
	if c != 1 && c != 3 {
		return nil, fmt.Errorf("fid: Inception.Features: images have %d channels, want 3 (RGB) or 1 (grayscale)", c)
	}
	if len(images) != n*c*h*w {
		return nil, fmt.Errorf("fid: Inception.Features: images have %d values, want N*C*H*W = %d*%d*%d*%d = %d", len(images), n, c, h, w, n*c*h*w)
	}
	defer func() { // GoMLX reports graph-building errors as panics
		if r := recover(); r != nil {
			feat, err = nil, fmt.Errorf("fid: Inception.Features on %s: %v", b.Name(), r)
		}
	}()
	e, err := m.execFor(b)
	if err != nil {
		return nil, err
	}
	batch = min(batch, n)
	args := make([]any, 1+len(e.weights))
	for i, t := range e.weights {
		args[1+i] = t
	}
	return inBatches(images, n, c*h*w, batch, InceptionDim, func(x []float32, first int) ([]float32, error) {
		in := tensors.FromFlatDataAndDimensions(x, batch, c, h, w)
		defer in.FinalizeAll()
		args[0] = in
		out, err := e.exec.Exec(args...)
		if err != nil {
			return nil, fmt.Errorf("fid: Inception.Features on %s, images from %d: %w", b.Name(), first, err)
		}
		defer out[0].FinalizeAll()
		y, err := tensors.CopyFlatData[float32](out[0])
		if err != nil {
			return nil, fmt.Errorf("fid: Inception.Features: reading features: %w", err)
		}
		return y, nil
	})
}

// inBatches maps n items of size values each (x) to n rows of dim values, calling run on batches of
// exactly batch items: the last one padded with zeros, its padding rows dropped. run gets the batch and
// the index of its first item, and returns batch*dim values.
func inBatches(x []float32, n, size, batch, dim int, run func(x []float32, first int) ([]float32, error)) ([]float32, error) {
	out := make([]float32, n*dim)
	buf := make([]float32, batch*size)
	for first := 0; first < n; first += batch {
		k := min(batch, n-first)
		clear(buf[copy(buf, x[first*size:(first+k)*size]):])
		y, err := run(buf, first)
		if err != nil {
			return nil, err
		}
		if len(y) != batch*dim {
			return nil, fmt.Errorf("fid: a batch of %d gave %d values, want %d", batch, len(y), batch*dim)
		}
		copy(out[first*dim:], y[:k*dim])
	}
	return out, nil
}

// execFor returns the network compiled for b in m's precision, creating it (and b's copy of the
// weights) once.
func (m *Inception) execFor(b backends.Backend) (*inceptionExec, error) {
	dtype, err := computeDType(m.DType)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := execKey{b, dtype}
	if e, ok := m.execs[key]; ok {
		return e, nil
	}
	native := useNativeConv(b)
	exec, err := graph.NewExec(b, func(in []*graph.Node) *graph.Node {
		return m.forward(in[0], in[1:], native)
	})
	if err != nil {
		return nil, fmt.Errorf("fid: Inception on %s: %w", b.Name(), err)
	}
	e := &inceptionExec{exec: exec}
	for i, s := range m.layers {
		e.weights = append(e.weights,
			weightTensor(m.w[i], dtype, s.kh, s.kw, s.in, s.out),
			weightTensor(m.b[i], dtype, s.out))
	}
	m.execs[key] = e
	return e, nil
}

// weightTensor is v [dims] as a tensor of dtype (Float32 or Float64).
func weightTensor(v []float32, dtype dtypes.DType, dims ...int) *tensors.Tensor {
	if dtype == dtypes.Float64 {
		v64 := make([]float64, len(v))
		for i, x := range v {
			v64[i] = float64(x)
		}
		return tensors.FromFlatDataAndDimensions(v64, dims...)
	}
	return tensors.FromFlatDataAndDimensions(v, dims...)
}

// Close releases the compiled graphs and the backends' copies of the weights (95 MB per backend and
// precision); call it when no Features call is running. The Inception stays usable: the next
// Features call compiles again.
func (m *Inception) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.execs {
		e.exec.Finalize()
		for _, t := range e.weights {
			t.FinalizeAll()
		}
		delete(m.execs, k)
	}
}
