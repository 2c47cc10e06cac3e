package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strings"
)

// Bounds on what a torch archive may make this package allocate.
const (
	// maxDeflateRatio bounds the size a deflated entry may claim: deflate cannot expand data by more
	// than about 1032 times. (torch.save stores entries uncompressed; this only admits re-zipped files.)
	maxDeflateRatio = 1100
	// maxSmallEntry bounds the small text entries (byteorder).
	maxSmallEntry = 64
	// Materialized tensors may total at most materializeFactor times the storage bytes plus
	// materializeSlack: enough for tied weights and broadcast (stride 0) buffers, not for a pickle
	// that views one storage a million times.
	materializeFactor = 4
	materializeSlack  = 1 << 20
	// maxInflation bounds, when the caller states no limit (ReadTorch, DecodeTorch), the bytes that the
	// entries read (data.pkl and the storages) may declare once decompressed: this many times the
	// archive's size. torch.save stores entries, so a real archive declares less than its own size; a
	// re-zipped one of float weights deflates by far less than this.
	maxInflation = 8
	// maxRank bounds a tensor's number of dimensions (PyTorch's own limit is lower), so that one huge
	// memoized size tuple cannot be reused by many tensors.
	maxRank = 64
)

// torchStorageTypes maps the storage classes that name a storage's element type in a persistent id.
var torchStorageTypes = map[string]DType{
	"FloatStorage":    F32,
	"HalfStorage":     F16,
	"BFloat16Storage": BF16,
	"DoubleStorage":   F64,
	"LongStorage":     I64,
	"IntStorage":      I32,
	"ShortStorage":    I16,
	"CharStorage":     I8,
	"ByteStorage":     U8,
	"BoolStorage":     Bool,
}

// The callables a state dict pickle may apply.
var (
	globalOrderedDict      = pyGlobal{"collections", "OrderedDict"}
	globalRebuildTensorV2  = pyGlobal{"torch._utils", "_rebuild_tensor_v2"}
	globalRebuildParameter = pyGlobal{"torch._utils", "_rebuild_parameter"}
)

// legacyMagic starts the legacy (PyTorch < 1.6) torch.save format: a pickled magic number,
// 0x1950a86a20f9469cfc6c, as PROTO 2 + LONG1.
var legacyMagic = []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

// ReadTorch reads a state dict that torch.save wrote (PyTorch 1.6 or later: a zip archive), such as
// diffusers' diffusion_pytorch_model.bin or pytorch-fid's pt_inception-*.pth: a dict or OrderedDict
// from names to tensors of the types in DType. The result has no Metadata. See DecodeTorch.
func ReadTorch(path string) (*File, error) {
	return ReadTorchLimit(path, 0)
}

// ReadTorchLimit reads like ReadTorch, refusing, before decompressing anything, an archive whose
// entries (data.pkl and the storages) declare more than maxBytes bytes in total, and bounding the
// tensors copied out of the storages by maxBytes as well. A caller that knows the shapes it expects
// (a UNet config) passes their size; maxBytes <= 0 means no limit but the one every read has: entries
// may declare at most maxInflation (8) times the archive's size.
func ReadTorchLimit(path string, maxBytes int64) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	f, err := decodeTorch(fd, st.Size(), maxBytes)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	return f, nil
}

// DecodeTorch reads a torch.save state dict from the size bytes of ra. Tensors are copied out of the
// archive in C order, each with its own Data, whatever views, strides and storage sharing the archive
// holds. Anything but a state dict of tensors is an error, as are the legacy (PyTorch < 1.6) format,
// big-endian archives, TorchScript archives, and any size, offset, stride or memo index that does not
// fit the bytes actually present.
func DecodeTorch(ra io.ReaderAt, size int64) (*File, error) {
	f, err := decodeTorch(ra, size, 0)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: torch: %w", err)
	}
	return f, nil
}

// torchArchive reads the entries of one torch.save zip archive.
type torchArchive struct {
	size     int64 // of the whole archive
	prefix   string
	entries  map[string]*zip.File
	storages map[string]*torchStorage
	// claimed sums the stored sizes of the entries read so far: more than the archive holds means
	// entries overlap (a zip bomb), since each is read at most once.
	claimed int64
	// storageBytes and materialized bound the copies of tensors out of their storages; limit, when
	// positive, bounds materialized too.
	storageBytes, materialized, limit int64
}

// torchStorage is a storage that a persistent id loaded: the raw bytes of an entry data/<key>.
type torchStorage struct {
	key   string
	dtype DType
	data  []byte
}

func decodeTorch(ra io.ReaderAt, size, limit int64) (*File, error) {
	var head [512]byte
	n, _ := ra.ReadAt(head[:], 0)
	if bytes.HasPrefix(head[:n], legacyMagic) || (n >= 262 && string(head[257:262]) == "ustar") {
		return nil, errors.New("legacy torch.save format (PyTorch < 1.6): load it with PyTorch and save it again with a current torch.save, or convert it to safetensors")
	}
	zr, err := zip.NewReader(ra, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		if n >= 9 && binary.LittleEndian.Uint64(head[:8]) < uint64(size) && head[8] == '{' {
			return nil, errors.New("a safetensors file, not a torch.save archive: use ReadSafetensors")
		}
		return nil, fmt.Errorf("not a torch.save zip archive: %w", err)
	}
	a := &torchArchive{size: size, entries: make(map[string]*zip.File, len(zr.File)), storages: make(map[string]*torchStorage)}
	var pickles []string
	for _, f := range zr.File {
		if _, dup := a.entries[f.Name]; dup {
			return nil, fmt.Errorf("zip entry %q appears twice", f.Name)
		}
		a.entries[f.Name] = f
		if dir, file, ok := strings.Cut(f.Name, "/"); ok && file == "data.pkl" && dir != "" {
			pickles = append(pickles, dir)
		}
	}
	switch len(pickles) {
	case 0:
		return nil, errors.New("no <name>/data.pkl entry: not a torch.save archive")
	case 1:
		a.prefix = pickles[0] + "/"
	default:
		sort.Strings(pickles)
		return nil, fmt.Errorf("%d data.pkl entries (in %s): not a single torch.save archive", len(pickles), strings.Join(pickles, ", "))
	}
	if _, ok := a.entries[a.prefix+"constants.pkl"]; ok {
		return nil, errors.New("a TorchScript archive (torch.jit.save), not a torch.save state dict: save model.state_dict() with torch.save")
	}
	if err := a.checkDeclared(limit); err != nil {
		return nil, err
	}
	if f, ok := a.entries[a.prefix+"byteorder"]; ok {
		b, err := a.read(f, maxSmallEntry)
		if err != nil {
			return nil, err
		}
		if string(b) != "little" {
			return nil, fmt.Errorf("byteorder %q: only little-endian archives can be read", b)
		}
	}
	pkl, err := a.read(a.entries[a.prefix+"data.pkl"], -1)
	if err != nil {
		return nil, err
	}
	v, err := unpickle(pkl, unpickleHooks{
		global:         torchGlobal,
		reduce:         a.reduce,
		build:          torchBuild,
		persistentLoad: a.persistentLoad,
	})
	if err != nil {
		return nil, fmt.Errorf("%sdata.pkl: %w", a.prefix, err)
	}
	return a.stateDict(v)
}

// checkDeclared checks the sizes that data.pkl and the storage entries declare, decompressed, against
// maxInflation times the archive's size and against limit when it is positive, before any of them is
// read: a zip bomb is refused from its directory alone.
func (a *torchArchive) checkDeclared(limit int64) error {
	var total uint64
	for name, f := range a.entries {
		if name == a.prefix+"data.pkl" || strings.HasPrefix(name, a.prefix+"data/") {
			if total += f.UncompressedSize64; total < f.UncompressedSize64 {
				total = math.MaxUint64
			}
		}
	}
	if total > uint64(maxInflation*a.size) {
		return fmt.Errorf("data.pkl and the storages declare %d bytes once decompressed, beyond %d times the archive's %d bytes: a zip bomb (torch.save stores entries uncompressed)", total, maxInflation, a.size)
	}
	if limit > 0 {
		if total > uint64(limit) {
			return fmt.Errorf("data.pkl and the storages declare %d bytes once decompressed, beyond the limit of %d bytes the caller expects: not the state dict expected", total, limit)
		}
		a.limit = limit
	}
	return nil
}

// stateDict turns the unpickled value into a File: a dict of str keys to tensors. A tensor that
// appears under two keys (the same object, pickled once) gets a copy, so every tensor owns its Data;
// the copies count against the same bound as the tensors copied out of storages.
func (a *torchArchive) stateDict(v any) (*File, error) {
	d, ok := v.(*pyDict)
	if !ok {
		return nil, fmt.Errorf("the pickled object is a %s, want a state dict (save model.state_dict())", describe(v))
	}
	f := &File{Tensors: make(map[string]*Tensor, len(d.keys))}
	seen := make(map[*Tensor]bool, len(d.keys))
	for i, k := range d.keys {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("state dict key %s: want str keys", describe(k))
		}
		t, ok := d.values[i].(*Tensor)
		if !ok {
			return nil, fmt.Errorf("state dict key %q holds a %s, want a tensor (is this a training checkpoint? save the model's state_dict() alone)", name, describe(d.values[i]))
		}
		if seen[t] {
			if err := a.charge(int64(len(t.Data))); err != nil {
				return nil, fmt.Errorf("state dict key %q: %w", name, err)
			}
			t = &Tensor{DType: t.DType, Shape: append([]int(nil), t.Shape...), Data: append([]byte(nil), t.Data...)}
		}
		seen[t] = true
		f.Tensors[name] = t
	}
	return f, nil
}

// torchGlobal admits the classes and functions of the allow-list, and nothing else.
func torchGlobal(module, name string) (any, error) {
	g := pyGlobal{module, name}
	switch {
	case g == globalOrderedDict, g == globalRebuildTensorV2, g == globalRebuildParameter:
		return g, nil
	case module == "torch" && torchStorageTypes[name] != "":
		return g, nil
	}
	return nil, fmt.Errorf("global %s is not on the allow-list (OrderedDict, _rebuild_tensor_v2, _rebuild_parameter, torch.*Storage): only state dicts of tensors can be read", g)
}

// torchBuild accepts the one BUILD a state dict holds: an OrderedDict's attributes (its _metadata
// of module versions), which are dropped.
func torchBuild(obj, state any) error {
	if _, ok := obj.(*pyDict); !ok {
		return fmt.Errorf("BUILD of a %s: only a dict's attributes can be set", describe(obj))
	}
	if _, ok := state.(*pyDict); !ok && state != nil {
		return fmt.Errorf("BUILD of a dict with a %s, want a dict of attributes", describe(state))
	}
	return nil
}

func (a *torchArchive) reduce(callable any, args pyTuple) (any, error) {
	switch callable {
	case globalOrderedDict:
		if len(args) != 0 {
			return nil, fmt.Errorf("OrderedDict with %d arguments, want none", len(args))
		}
		return newDict(), nil
	case globalRebuildTensorV2:
		return a.rebuildTensor(args)
	case globalRebuildParameter:
		// _rebuild_parameter(data, requires_grad, backward_hooks)
		if len(args) != 3 {
			return nil, fmt.Errorf("_rebuild_parameter with %d arguments, want 3", len(args))
		}
		t, ok := args[0].(*Tensor)
		if !ok {
			return nil, fmt.Errorf("_rebuild_parameter of a %s, want a tensor", describe(args[0]))
		}
		return t, nil
	}
	return nil, fmt.Errorf("calling %s: only OrderedDict, _rebuild_tensor_v2 and _rebuild_parameter can be called", describe(callable))
}

// persistentLoad loads the storage that a persistent id names:
//
//	('storage', torch.<Type>Storage, key, location, numel)
//
// from the entry data/<key>, which must hold exactly numel elements. The location (a device) is
// ignored: everything is loaded into memory.
func (a *torchArchive) persistentLoad(pid any) (any, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 || t[0] != "storage" {
		return nil, fmt.Errorf("persistent id %s, want ('storage', type, key, location, numel)", describe(pid))
	}
	g, ok := t[1].(pyGlobal)
	dtype := torchStorageTypes[g.name]
	if !ok || g.module != "torch" || dtype == "" {
		return nil, fmt.Errorf("persistent id: storage type %s, want a torch.*Storage class", describe(t[1]))
	}
	key, ok1 := t[2].(string)
	_, ok2 := t[3].(string)
	numel, ok3 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || numel < 0 {
		return nil, fmt.Errorf("persistent id (%s, %s, %s): want a str key, a str location and a non-negative int size", describe(t[2]), describe(t[3]), describe(t[4]))
	}
	if s, ok := a.storages[key]; ok {
		if s.dtype != dtype {
			return nil, fmt.Errorf("storage %q is used as %s and as %s", key, s.dtype, dtype)
		}
		if int64(len(s.data)) != numel*int64(dtype.Size()) {
			return nil, fmt.Errorf("storage %q is used with %d and with %d elements", key, len(s.data)/dtype.Size(), numel)
		}
		return s, nil
	}
	name := a.prefix + "data/" + key
	f, ok := a.entries[name]
	if !ok {
		return nil, fmt.Errorf("storage %q: no zip entry %s", key, name)
	}
	if numel > math.MaxInt64/int64(dtype.Size()) || uint64(numel*int64(dtype.Size())) != f.UncompressedSize64 {
		return nil, fmt.Errorf("storage %q: %s holds %d bytes, want %d %s elements", key, name, f.UncompressedSize64, numel, dtype)
	}
	data, err := a.read(f, -1)
	if err != nil {
		return nil, err
	}
	s := &torchStorage{key: key, dtype: dtype, data: data}
	a.storages[key] = s
	a.storageBytes += int64(len(data))
	return s, nil
}

// rebuildTensor applies torch._utils._rebuild_tensor_v2:
//
//	(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
//
// copying the view into a new C-order tensor (see materialize).
func (a *torchArchive) rebuildTensor(args pyTuple) (any, error) {
	if len(args) != 6 && len(args) != 7 {
		return nil, fmt.Errorf("_rebuild_tensor_v2 with %d arguments, want 6 or 7", len(args))
	}
	s, ok := args[0].(*torchStorage)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2 of a %s, want a storage", describe(args[0]))
	}
	offset, ok := args[1].(int64)
	if !ok || offset < 0 {
		return nil, fmt.Errorf("_rebuild_tensor_v2: storage offset %s, want a non-negative int", describe(args[1]))
	}
	size, err := intTuple(args[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(args[3], "stride")
	if err != nil {
		return nil, err
	}
	if _, ok := args[4].(bool); !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2: requires_grad %s, want a bool", describe(args[4]))
	}
	if len(args) == 7 {
		if m, ok := args[6].(*pyDict); args[6] != nil && (!ok || len(m.keys) > 0) {
			return nil, fmt.Errorf("_rebuild_tensor_v2: tensor metadata %s is not supported", describe(args[6]))
		}
	}
	if len(size) != len(stride) {
		return nil, fmt.Errorf("_rebuild_tensor_v2: size %v and stride %v differ in length", size, stride)
	}
	es := s.dtype.Size()
	numel, err := checkView(int64(len(s.data)/es), offset, size, stride)
	if err != nil {
		return nil, fmt.Errorf("storage %q (%s): %w", s.key, s.dtype, err)
	}
	if numel > math.MaxInt64/int64(es) {
		return nil, fmt.Errorf("storage %q: size %v overflows", s.key, size)
	}
	if err := a.charge(numel * int64(es)); err != nil {
		return nil, fmt.Errorf("storage %q: %w", s.key, err)
	}
	shape := make([]int, len(size))
	for i, d := range size {
		shape[i] = int(d)
	}
	return &Tensor{DType: s.dtype, Shape: shape, Data: materialize(s.data, es, offset, size, stride)}, nil
}

// charge accounts for n more bytes of tensor data, refusing to go beyond materializeFactor times the
// storage bytes plus materializeSlack.
func (a *torchArchive) charge(n int64) error {
	if n > materializeFactor*a.storageBytes+materializeSlack-a.materialized {
		return fmt.Errorf("the tensors copied out of the archive would exceed %d times its %d storage bytes (plus %d)", materializeFactor, a.storageBytes, materializeSlack)
	}
	if a.limit > 0 && n > a.limit-a.materialized {
		return fmt.Errorf("the tensors copied out of the archive would exceed the limit of %d bytes the caller expects", a.limit)
	}
	a.materialized += n
	return nil
}

func intTuple(v any, what string) ([]int64, error) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2: %s is a %s, want a tuple of ints", what, describe(v))
	}
	if len(t) > maxRank {
		return nil, fmt.Errorf("_rebuild_tensor_v2: %s has %d dimensions, more than %d", what, len(t), maxRank)
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("_rebuild_tensor_v2: %s[%d] is %s, want a non-negative int", what, i, describe(x))
		}
		out[i] = n
	}
	return out, nil
}

// checkView checks that the view (offset, size, stride) lies inside a storage of storageLen elements
// and returns its element count, product(size). A view with elements reaches up to the element
//
//	offset + sum_k (size_k - 1) * stride_k
//
// which must be below storageLen; every product and sum is checked for overflow. Sizes and strides
// are non-negative (intTuple checked).
func checkView(storageLen, offset int64, size, stride []int64) (int64, error) {
	numel := uint64(1)
	for _, d := range size {
		hi, lo := bits.Mul64(numel, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("size %v: the element count overflows", size)
		}
		numel = lo
	}
	if numel == 0 {
		return 0, nil
	}
	last := uint64(offset)
	for k, d := range size {
		hi, lo := bits.Mul64(uint64(d-1), uint64(stride[k]))
		sum, carry := bits.Add64(last, lo, 0)
		if hi != 0 || carry != 0 || sum > math.MaxInt64 {
			return 0, fmt.Errorf("size %v, stride %v: the extent overflows", size, stride)
		}
		last = sum
	}
	if last >= uint64(storageLen) {
		return 0, fmt.Errorf("view at offset %d with size %v and stride %v reaches element %d, the storage has %d", offset, size, stride, last, storageLen)
	}
	return int64(numel), nil
}

// materialize copies the view (offset, size, stride) of a storage of es-byte elements into a new
// buffer in C order:
//
//	out[i_0, ..., i_{n-1}] = storage[offset + i_0*stride_0 + ... + i_{n-1}*stride_{n-1}]
//
// checkView must have accepted the view. A C-contiguous view is one copy; any other is copied row by
// row along the last dimension.
func materialize(storage []byte, es int, offset int64, size, stride []int64) []byte {
	numel := int64(1)
	for _, d := range size {
		numel *= d
	}
	out := make([]byte, numel*int64(es))
	if numel == 0 {
		return out
	}
	if isContiguous(size, stride) {
		copy(out, storage[offset*int64(es):])
		return out
	}
	rank := len(size)
	idx := make([]int64, rank-1) // the index over all but the last dimension
	inner, innerStride := size[rank-1], stride[rank-1]
	base := offset // the storage element of out[idx..., 0]
	for o := 0; o < len(out); {
		for j := int64(0); j < inner; j++ {
			at := (base + j*innerStride) * int64(es)
			o += copy(out[o:o+es], storage[at:at+int64(es)])
		}
		// Advance idx like an odometer, keeping base = offset + sum_k idx_k * stride_k.
		for k := rank - 2; k >= 0; k-- {
			idx[k]++
			base += stride[k]
			if idx[k] < size[k] {
				break
			}
			base -= idx[k] * stride[k]
			idx[k] = 0
		}
	}
	return out
}

// isContiguous reports whether stride is the C-order stride of size (dimensions of size 1 may have any
// stride, as in PyTorch).
func isContiguous(size, stride []int64) bool {
	want := int64(1)
	for k := len(size) - 1; k >= 0; k-- {
		if size[k] != 1 && stride[k] != want {
			return false
		}
		want *= size[k]
	}
	return true
}

// read returns the contents of a zip entry. Entries must be stored (as torch.save writes them) or
// deflated; the size an entry claims is checked against the bytes it occupies in the archive before
// anything is allocated, and its CRC is checked. limit >= 0 bounds the size further.
func (a *torchArchive) read(f *zip.File, limit int64) ([]byte, error) {
	n := f.UncompressedSize64
	switch f.Method {
	case zip.Store:
		if n != f.CompressedSize64 {
			return nil, fmt.Errorf("zip entry %s: stored with %d bytes, claims %d", f.Name, f.CompressedSize64, n)
		}
	case zip.Deflate:
		if n/maxDeflateRatio > f.CompressedSize64 {
			return nil, fmt.Errorf("zip entry %s: %d deflated bytes claim %d, beyond what deflate can expand to", f.Name, f.CompressedSize64, n)
		}
	default:
		return nil, fmt.Errorf("zip entry %s: compression method %d is not supported (torch.save stores entries uncompressed)", f.Name, f.Method)
	}
	if limit >= 0 && n > uint64(limit) {
		return nil, fmt.Errorf("zip entry %s: %d bytes, want at most %d", f.Name, n, limit)
	}
	if f.CompressedSize64 > uint64(a.size-a.claimed) {
		return nil, fmt.Errorf("zip entry %s: %d bytes, but the archive has only %d bytes left unclaimed: entries overlap or run past the end", f.Name, f.CompressedSize64, a.size-a.claimed)
	}
	a.claimed += int64(f.CompressedSize64)
	if n > math.MaxInt {
		return nil, fmt.Errorf("zip entry %s: %d bytes do not fit in memory on this platform", f.Name, n)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("zip entry %s: %w", f.Name, err)
	}
	defer rc.Close()
	data := make([]byte, n)
	if _, err := io.ReadFull(rc, data); err != nil {
		return nil, fmt.Errorf("zip entry %s: %w", f.Name, err)
	}
	// Reading to the end makes archive/zip check the size and the CRC.
	var one [1]byte
	if m, err := rc.Read(one[:]); m != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = errors.New("longer than it claims")
		}
		return nil, fmt.Errorf("zip entry %s: %w", f.Name, err)
	}
	return data, nil
}
