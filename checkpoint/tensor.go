package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strings"
)

// DType names an element type the way safetensors spells it.
type DType string

// The element types. Integers and floats are little-endian; BOOL is one byte, 0 or 1.
const (
	F64    DType = "F64"
	F32    DType = "F32"
	F16    DType = "F16"
	BF16   DType = "BF16"
	F8E5M2 DType = "F8_E5M2"
	F8E4M3 DType = "F8_E4M3"
	I64    DType = "I64"
	I32    DType = "I32"
	I16    DType = "I16"
	I8     DType = "I8"
	U64    DType = "U64"
	U32    DType = "U32"
	U16    DType = "U16"
	U8     DType = "U8"
	Bool   DType = "BOOL"
)

type dtypeKind int

const (
	kindFloat dtypeKind = iota
	kindInt
	kindUint
	kindBool
)

// dtypeInfo holds an element type's size in bytes, its kind and its rank in the Rust safetensors
// Dtype enum (declared in increasing alignment order), which orders tensors when writing.
var dtypeInfo = map[DType]struct {
	size int
	kind dtypeKind
	rank int
}{
	Bool:   {1, kindBool, 0},
	U8:     {1, kindUint, 1},
	I8:     {1, kindInt, 2},
	F8E5M2: {1, kindFloat, 3},
	F8E4M3: {1, kindFloat, 4},
	I16:    {2, kindInt, 5},
	U16:    {2, kindUint, 6},
	F16:    {2, kindFloat, 7},
	BF16:   {2, kindFloat, 8},
	I32:    {4, kindInt, 9},
	U32:    {4, kindUint, 10},
	F32:    {4, kindFloat, 11},
	F64:    {8, kindFloat, 12},
	I64:    {8, kindInt, 13},
	U64:    {8, kindUint, 14},
}

// Size returns the size of one element in bytes, or 0 for an unknown DType.
func (d DType) Size() int {
	return dtypeInfo[d].size
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	info, ok := dtypeInfo[d]
	return ok && info.kind == kindFloat
}

// knownDTypes lists the DTypes for error messages, in the safetensors order.
func knownDTypes() string {
	names := make([]string, 0, len(dtypeInfo))
	for d := range dtypeInfo {
		names = append(names, string(d))
	}
	sort.Slice(names, func(i, j int) bool { return dtypeInfo[DType(names[i])].rank < dtypeInfo[DType(names[j])].rank })
	return strings.Join(names, ", ")
}

// A Tensor is an element type, a shape and the elements' little-endian bytes in C (row-major) order:
// len(Data) = product(Shape) * DType.Size(). An empty Shape is a scalar (one element).
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
}

// numElements returns product(shape), or ok = false when a dimension is negative or the product
// overflows an int.
func numElements(shape []int) (n int, ok bool) {
	n = 1
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt {
			return 0, false
		}
		n = int(lo)
	}
	return n, true
}

// NumElements returns product(Shape), 1 for a scalar, or -1 when a dimension is negative or the
// product overflows an int.
func (t *Tensor) NumElements() int {
	n, ok := numElements(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// Validate checks that the DType is known, the Shape has no negative dimension and Data holds exactly
// product(Shape) * DType.Size() bytes.
func (t *Tensor) Validate() error {
	size := t.DType.Size()
	if size == 0 {
		return fmt.Errorf("unknown dtype %q (known: %s)", t.DType, knownDTypes())
	}
	n, ok := numElements(t.Shape)
	if !ok {
		return fmt.Errorf("shape %v has a negative dimension or overflows", t.Shape)
	}
	if n > math.MaxInt/size {
		return fmt.Errorf("%v: byte size overflows", t)
	}
	if n*size != len(t.Data) {
		return fmt.Errorf("data holds %d bytes, want %d for %v", len(t.Data), n*size, t)
	}
	return nil
}

// String returns the dtype and shape, as in "F32 [32 3 3 3]".
func (t *Tensor) String() string {
	return fmt.Sprintf("%s %v", t.DType, t.Shape)
}

// Float32 returns the elements of a floating-point tensor as float32, in C order. F64 values are
// rounded to nearest; the narrower types convert exactly. Integer and BOOL tensors are an error: use
// Int64s.
func (t *Tensor) Float32() ([]float32, error) {
	if err := t.validateKind("Float32", kindFloat); err != nil {
		return nil, err
	}
	out := make([]float32, len(t.Data)/t.DType.Size())
	if t.DType == F64 {
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
		return out, nil
	}
	t.decodeFloat32(out)
	return out, nil
}

// Float64 returns the elements of a floating-point tensor as float64, in C order; every conversion is
// exact. Integer and BOOL tensors are an error: use Int64s.
func (t *Tensor) Float64() ([]float64, error) {
	if err := t.validateKind("Float64", kindFloat); err != nil {
		return nil, err
	}
	n := len(t.Data) / t.DType.Size()
	out := make([]float64, n)
	if t.DType == F64 {
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
		return out, nil
	}
	f32 := make([]float32, n)
	t.decodeFloat32(f32)
	for i, v := range f32 {
		out[i] = float64(v)
	}
	return out, nil
}

// decodeFloat32 decodes the elements of a validated tensor of a float type narrower than F64.
func (t *Tensor) decodeFloat32(out []float32) {
	d := t.Data
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = Float16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = BFloat16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case F8E5M2:
		for i := range out {
			out[i] = float8E5M2ToFloat32(d[i])
		}
	case F8E4M3:
		for i := range out {
			out[i] = float8E4M3ToFloat32(d[i])
		}
	}
}

// Int64s returns the elements of an integer or BOOL tensor as int64, in C order (BOOL: 0 or 1).
// A U64 value above math.MaxInt64 and floating-point tensors are errors.
func (t *Tensor) Int64s() ([]int64, error) {
	if err := t.validateKind("Int64s", kindInt); err != nil {
		return nil, err
	}
	d := t.Data
	out := make([]int64, len(d)/t.DType.Size())
	switch t.DType {
	case I64:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(d[8*i:]))
		}
	case I32:
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(d[4*i:])))
		}
	case I16:
		for i := range out {
			out[i] = int64(int16(binary.LittleEndian.Uint16(d[2*i:])))
		}
	case I8:
		for i := range out {
			out[i] = int64(int8(d[i]))
		}
	case U64:
		for i := range out {
			v := binary.LittleEndian.Uint64(d[8*i:])
			if v > math.MaxInt64 {
				return nil, fmt.Errorf("checkpoint: Int64s of %v: element %d = %d overflows int64", t, i, v)
			}
			out[i] = int64(v)
		}
	case U32:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case U16:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case U8:
		for i := range out {
			out[i] = int64(d[i])
		}
	case Bool:
		for i := range out {
			if d[i] > 1 {
				return nil, fmt.Errorf("checkpoint: Int64s of %v: element %d is byte %d, want 0 or 1", t, i, d[i])
			}
			out[i] = int64(d[i])
		}
	}
	return out, nil
}

// validateKind validates t for a conversion method: kindFloat accepts the float types, kindInt the
// integer types and BOOL.
func (t *Tensor) validateKind(method string, kind dtypeKind) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("checkpoint: %s: %w", method, err)
	}
	isFloat := t.DType.IsFloat()
	switch {
	case kind == kindFloat && !isFloat:
		return fmt.Errorf("checkpoint: %s of an integer tensor (%v): use Int64s", method, t)
	case kind != kindFloat && isFloat:
		return fmt.Errorf("checkpoint: %s of a floating-point tensor (%v): use Float32 or Float64", method, t)
	}
	return nil
}

// NewF32 returns an F32 tensor holding a copy of data, which must have product(shape) elements (an
// error Validate, and so writing, reports).
func NewF32(shape []int, data []float32) *Tensor {
	t := newTensor(F32, shape, len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(v))
	}
	return t
}

// NewF16 returns an F16 tensor of data rounded to float16 (nearest, ties to even; see
// Float32ToFloat16), which must have product(shape) elements.
func NewF16(shape []int, data []float32) *Tensor {
	t := newTensor(F16, shape, len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint16(t.Data[2*i:], Float32ToFloat16(v))
	}
	return t
}

// NewBF16 returns a BF16 tensor of data rounded to bfloat16 (nearest, ties to even; see
// Float32ToBFloat16), which must have product(shape) elements.
func NewBF16(shape []int, data []float32) *Tensor {
	t := newTensor(BF16, shape, len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint16(t.Data[2*i:], Float32ToBFloat16(v))
	}
	return t
}

// NewF64 returns an F64 tensor holding a copy of data, which must have product(shape) elements.
func NewF64(shape []int, data []float64) *Tensor {
	t := newTensor(F64, shape, len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(t.Data[8*i:], math.Float64bits(v))
	}
	return t
}

// NewI64 returns an I64 tensor holding a copy of data, which must have product(shape) elements.
func NewI64(shape []int, data []int64) *Tensor {
	t := newTensor(I64, shape, len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(t.Data[8*i:], uint64(v))
	}
	return t
}

// NewI32 returns an I32 tensor holding a copy of data, which must have product(shape) elements.
func NewI32(shape []int, data []int32) *Tensor {
	t := newTensor(I32, shape, len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(t.Data[4*i:], uint32(v))
	}
	return t
}

func newTensor(dtype DType, shape []int, n int) *Tensor {
	return &Tensor{DType: dtype, Shape: append([]int{}, shape...), Data: make([]byte, n*dtype.Size())}
}

// A File is a set of named tensors with optional string metadata (safetensors' "__metadata__"; nil
// when the file has none, and always nil for torch files).
type File struct {
	Tensors  map[string]*Tensor
	Metadata map[string]string
}

// Names returns the tensor names, sorted.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Tensors))
	for name := range f.Tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
