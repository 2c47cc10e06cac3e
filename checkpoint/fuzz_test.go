package checkpoint

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/ddpm/ddpm/internal/memcap"
)

// The fuzz targets check that no input makes a reader panic, hang or allocate beyond the bounds the
// package documents, and that whatever a reader accepts is a valid File. Seeds: the small valid
// files below and the corpus in testdata/fuzz/<target>/ (valid files, mutations and past crashers).
//
// Memory: inputs are at most memcap.MaxInput bytes, and each read must allocate at most
// allocPerByte times the input's size plus allocSlack (memcap.Within), whatever the sizes the input
// declares: a reader that trusts a declared size fails at once.
const (
	allocPerByte = 64
	allocSlack   = 4 << 20
)

func allocBound(data []byte) uint64 { return allocPerByte*uint64(len(data)) + allocSlack }

func FuzzDecodeSafetensors(f *testing.F) {
	for _, file := range []*File{
		{},
		{Metadata: map[string]string{"format": "pt"}, Tensors: map[string]*Tensor{"w": NewF32([]int{2, 3}, []float32{1, 2, 3, 4, 5, 6})}},
		{Tensors: map[string]*Tensor{"a": NewI64([]int{2}, []int64{3, 777}), "b": NewF16(nil, []float32{1}), "c": NewF32([]int{0, 4}, nil)}},
	} {
		var buf bytes.Buffer
		if err := EncodeSafetensors(&buf, file); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	memcap.Harness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > memcap.MaxInput {
			return
		}
		var file *File
		var err error
		memcap.Within(t, allocBound(data), func() { file, err = DecodeSafetensors(data) })
		if err != nil {
			return
		}
		for name, x := range file.Tensors {
			if err := x.Validate(); err != nil {
				t.Fatalf("accepted tensor %q is invalid: %v", name, err)
			}
		}
		// What decodes must encode, and decode again to the same tensors.
		var buf bytes.Buffer
		if err := EncodeSafetensors(&buf, file); err != nil {
			t.Fatalf("EncodeSafetensors of a decoded file: %v", err)
		}
		back, err := DecodeSafetensors(buf.Bytes())
		if err != nil {
			t.Fatalf("decoding the re-encoded file: %v", err)
		}
		if len(back.Tensors) != len(file.Tensors) || len(back.Metadata) != len(file.Metadata) {
			t.Fatalf("round trip: %d tensors and %d metadata keys, want %d and %d", len(back.Tensors), len(back.Metadata), len(file.Tensors), len(file.Metadata))
		}
		for name, x := range file.Tensors {
			if d := tensorDiff(back.Tensors[name], x); back.Tensors[name] == nil || d != "" {
				t.Fatalf("round trip: tensor %q: %s", name, d)
			}
		}
	})
}

func FuzzReadTorch(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "torch", "*.pt"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed files in testdata/torch: %v", err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	memcap.Harness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > memcap.MaxInput {
			return
		}
		var file *File
		var err error
		memcap.Within(t, allocBound(data), func() { file, err = DecodeTorch(bytes.NewReader(data), int64(len(data))) })
		if err != nil {
			return
		}
		checkAccepted(t, file)
	})
}

// FuzzReadSafetensors fuzzes the file reader, which parses the header before it reads the data: the
// input is the file's first bytes, followed by a hole (a sparse extension) of 0 to 256 MB. A file the
// reader refuses must cost at most the usual bound plus the header length it admits (at most 100 MB),
// whatever the hole; one it accepts, that plus the hole. Without a hole, the file reader and DecodeSafetensors must agree.
func FuzzReadSafetensors(f *testing.F) {
	var buf bytes.Buffer
	if err := EncodeSafetensors(&buf, &File{Tensors: map[string]*Tensor{"w": NewF32([]int{2}, []float32{1, 2})}}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes(), uint32(0))
	f.Add([]byte("\x02\x00\x00\x00\x00\x00\x00\x00{}"), uint32(1<<27))
	memcap.Harness(f)
	path := filepath.Join(f.TempDir(), "fuzz.safetensors")
	f.Fuzz(func(t *testing.T, data []byte, hole uint32) {
		if len(data) > memcap.MaxInput {
			return
		}
		hole %= 256 << 20
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, int64(len(data))+int64(hole)); err != nil {
			t.Fatal(err)
		}
		// The header is read whole once its length passes the checks (at most 100 MB and within the
		// file), which may put it in the hole: that much is allowed on top of the bound.
		bound := allocBound(data)
		if size := uint64(len(data)) + uint64(hole); size >= 8 {
			var prefix [8]byte
			copy(prefix[:], data)
			if n := binary.LittleEndian.Uint64(prefix[:]); n <= maxSafetensorsHeader && n <= size-8 {
				bound += n
			}
		}
		var err error
		n := memcap.Allocated(func() { _, err = ReadSafetensors(path) })
		if err != nil && n > bound {
			t.Fatalf("refusing the file (%v) allocated %d bytes, beyond %d", err, n, bound)
		}
		if err == nil && n > bound+uint64(hole) {
			t.Fatalf("reading the file allocated %d bytes, beyond %d and the %d-byte hole", n, bound, hole)
		}
		if hole == 0 {
			if _, memErr := DecodeSafetensors(data); (err == nil) != (memErr == nil) {
				t.Fatalf("ReadSafetensors: %v; DecodeSafetensors: %v; want both to accept or both to refuse", err, memErr)
			}
		}
	})
}

// FuzzTorchPickle fuzzes data.pkl alone, inside a fixed archive that holds two storages: "0", twelve
// float32 values, and "1", eight int64 values. Mutating a whole zip rarely gets past its CRCs; this
// target reaches the unpickler and the tensor views directly.
func FuzzTorchPickle(f *testing.F) {
	f.Add(stateDictPickle(view{"x", "FloatStorage", "0", 12, 0, []int64{3, 4}, []int64{4, 1}}))
	f.Add(stateDictPickle(
		view{"t", "FloatStorage", "0", 12, 1, []int64{2, 3}, []int64{1, 4}},
		view{"b", "FloatStorage", "0", 12, 3, []int64{4, 2}, []int64{0, 1}},
		view{"n", "LongStorage", "1", 8, 7, nil, nil},
		view{"h", "HalfStorage", "0", 24, 0, []int64{2, 2, 6}, []int64{12, 6, 1}},
	))
	memo := &pickler{}
	memo.ops(opProto, 2, opEmptyDict, opMark).str("a").tensor(view{"", "IntStorage", "0", 12, 0, []int64{12}, []int64{1}})
	memo.ops(opBinPut, 9).str("b").ops(opBinGet, 9, opSetItems, opEmptyDict, opBuild, opStop)
	f.Add(memo.Bytes())
	paths, _ := filepath.Glob(filepath.Join("testdata", "pickle", "*.pkl"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	storages := []zipEntry{{name: "archive/data/0", data: iota32(12)}, {name: "archive/data/1", data: make([]byte, 64)}}
	memcap.Harness(f)
	f.Fuzz(func(t *testing.T, pkl []byte) {
		if len(pkl) > memcap.MaxInput {
			return
		}
		data := buildZip(t, append([]zipEntry{{name: "archive/data.pkl", data: pkl}}, storages...)...)
		var file *File
		var err error
		memcap.Within(t, allocBound(data), func() { file, err = DecodeTorch(bytes.NewReader(data), int64(len(data))) })
		if err != nil {
			return
		}
		checkAccepted(t, file)
	})
}

// checkAccepted checks a File a torch reader accepted: valid tensors, none sharing memory.
func checkAccepted(t *testing.T, file *File) {
	t.Helper()
	owner := make(map[*byte]string)
	for name, x := range file.Tensors {
		if err := x.Validate(); err != nil {
			t.Fatalf("accepted tensor %q is invalid: %v", name, err)
		}
		if len(x.Data) > 0 {
			if other, ok := owner[&x.Data[0]]; ok {
				t.Fatalf("tensors %q and %q share memory", name, other)
			}
			owner[&x.Data[0]] = name
		}
	}
}
