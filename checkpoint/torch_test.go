package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// TestReadTorchMatchesSafetensors checks that the torch.save copy of the tiny UNet's state dict gives
// the same tensors as the safetensors copy: names, dtypes, shapes and every byte (exact: both hold
// the same float32 values).
func TestReadTorchMatchesSafetensors(t *testing.T) {
	bin, err := ReadTorch(sharedTestdata(t, "diffusers/tiny-ddpm-cifar10/unet/diffusion_pytorch_model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadSafetensors(sharedTestdata(t, "diffusers/tiny-ddpm-cifar10/unet/diffusion_pytorch_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(bin.Tensors) != len(st.Tensors) || len(bin.Tensors) != 268 {
		t.Fatalf(".bin has %d tensors, .safetensors %d; want 268 each", len(bin.Tensors), len(st.Tensors))
	}
	if bin.Metadata != nil {
		t.Errorf("Metadata = %v, want nil", bin.Metadata)
	}
	for _, name := range st.Names() {
		b, ok := bin.Tensors[name]
		if !ok {
			t.Errorf("tensor %q missing from the .bin", name)
			continue
		}
		if d := tensorDiff(b, st.Tensors[name]); d != "" {
			t.Errorf("tensor %q: %s", name, d)
		}
	}
}

// TestReadTorchInception reads the pytorch-fid Inception fixture (95 MB) and checks every tensor's
// dtype and shape against the listing PyTorch 1.13 made (testdata/pt_inception_listing.json, from
// gen_inception_listing.py); the first four values exactly (float32 -> float64 is exact), the float64
// sum within 1e-9 relative to sum(|x|) (PyTorch sums in another order).
func TestReadTorchInception(t *testing.T) {
	f, err := ReadTorch(sharedTestdata(t, "fid/pt_inception-fixture.pth"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/pt_inception_listing.json")
	if err != nil {
		t.Fatal(err)
	}
	var listing []struct {
		Name  string
		DType DType
		Shape []int
		Sum   float64
		First []float64
	}
	if err := json.Unmarshal(raw, &listing); err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != len(listing) || len(listing) != 566 {
		t.Fatalf("%d tensors, listing %d; want 566", len(f.Tensors), len(listing))
	}
	for _, want := range listing {
		x, ok := f.Tensors[want.Name]
		if !ok {
			t.Errorf("no tensor %q", want.Name)
			continue
		}
		if got := x.String(); got != (&Tensor{DType: want.DType, Shape: want.Shape}).String() {
			t.Errorf("tensor %q is %s, want %s %v", want.Name, got, want.DType, want.Shape)
			continue
		}
		var values []float64
		if x.DType == I64 {
			ints, err := x.Int64s()
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range ints {
				values = append(values, float64(v))
			}
		} else if values, err = x.Float64(); err != nil {
			t.Fatal(err)
		}
		var sum, abs float64
		for _, v := range values {
			sum += v
			abs += math.Abs(v)
		}
		if math.Abs(sum-want.Sum) > 1e-9*(abs+1) {
			t.Errorf("tensor %q: sum %.17g, want %.17g", want.Name, sum, want.Sum)
		}
		for i, v := range want.First {
			if values[i] != v {
				t.Errorf("tensor %q: element %d = %.9g, want %.9g", want.Name, i, values[i], v)
			}
		}
	}
}

// TestReadTorchFixtures reads the tiny torch.save files that PyTorch 1.13 wrote (testdata/torch, from
// gen_torch.py): every dtype, shared storages, storage offsets, transposed and strided views,
// broadcast (stride 0) views, an nn.Module state dict with _metadata, scalars, empty tensors, an
// nn.Parameter and pickle protocol 4. Every value must match exactly (expected.json holds them as
// float64, exact for every dtype there).
func TestReadTorchFixtures(t *testing.T) {
	raw, err := os.ReadFile("testdata/torch/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var expected map[string][]struct {
		Name   string
		DType  DType
		Shape  []int
		Values []any // numbers, or "inf", "-inf", "nan"
	}
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(expected))
	for name := range expected {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) < 12 {
		t.Fatalf("expected.json has %d files, want 12", len(names))
	}
	for _, file := range names {
		t.Run(file, func(t *testing.T) {
			f, err := ReadTorch(filepath.Join("testdata", "torch", file+".pt"))
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Tensors) != len(expected[file]) {
				t.Errorf("%d tensors %v, want %d", len(f.Tensors), f.Names(), len(expected[file]))
			}
			for _, want := range expected[file] {
				x, ok := f.Tensors[want.Name]
				if !ok {
					t.Errorf("no tensor %q", want.Name)
					continue
				}
				if got, w := x.String(), (&Tensor{DType: want.DType, Shape: want.Shape}).String(); got != w {
					t.Errorf("tensor %q is %s, want %s", want.Name, got, w)
					continue
				}
				got := tensorValues(t, x)
				if len(got) != len(want.Values) {
					t.Fatalf("tensor %q: %d values, want %d", want.Name, len(got), len(want.Values))
				}
				for i, wv := range want.Values {
					w := jsonFloat(wv)
					if !(got[i] == w && math.Signbit(got[i]) == math.Signbit(w)) && !(got[i] != got[i] && w != w) {
						t.Errorf("tensor %q: element %d = %v, want %v", want.Name, i, got[i], w)
					}
				}
			}
		})
	}
}

// tensorValues returns any tensor's values as float64.
func tensorValues(t *testing.T, x *Tensor) []float64 {
	t.Helper()
	if x.DType.IsFloat() {
		v, err := x.Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ints, err := x.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(ints))
	for i, v := range ints {
		out[i] = float64(v)
	}
	return out
}

func jsonFloat(v any) float64 {
	switch v := v.(type) {
	case float64:
		return v
	case string:
		switch v {
		case "inf":
			return math.Inf(1)
		case "-inf":
			return math.Inf(-1)
		}
	}
	return math.NaN()
}

// TestReadTorchSharedStorageIsCopied checks that tensors viewing one storage come out independent.
func TestReadTorchSharedStorageIsCopied(t *testing.T) {
	f, err := ReadTorch("testdata/torch/shared.pt")
	if err != nil {
		t.Fatal(err)
	}
	w, tied, rows := f.Tensors["w"], f.Tensors["tied"], f.Tensors["w_rows"]
	if tensorDiff(w, tied) != "" || !bytes.Equal(rows.Data, w.Data[5*4:15*4]) {
		t.Fatalf("w, tied and w_rows do not hold the same values")
	}
	w.Data[20] ^= 0xff
	if tied.Data[20] == w.Data[20] || rows.Data[0] == w.Data[20] {
		t.Errorf("changing w changed tied or w_rows: they share memory")
	}
}

// zipEntry is one entry of a hand-made zip archive.
type zipEntry struct {
	name   string
	data   []byte
	method uint16
}

func buildZip(t testing.TB, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawZipEntry writes an entry whose header claims what the test says, whatever the data.
func rawZip(t testing.TB, hdr *zip.FileHeader, data []byte, more ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(hdr)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	for _, e := range more {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func f32Bytes(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func iota32(n int) []byte {
	vs := make([]float32, n)
	for i := range vs {
		vs[i] = float32(i)
	}
	return f32Bytes(vs...)
}

// decodeTorchBytes decodes an in-memory archive.
func decodeTorchBytes(data []byte) (*File, error) {
	return DecodeTorch(bytes.NewReader(data), int64(len(data)))
}

// TestDecodeTorchViews checks hand-made views against values worked out by hand.
func TestDecodeTorchViews(t *testing.T) {
	storage := iota32(12) // 0, 1, ..., 11
	tests := []struct {
		name string
		view view
		want []float32
	}{
		{"contiguous", view{"x", "FloatStorage", "0", 12, 0, []int64{3, 4}, []int64{4, 1}}, []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"transposed", view{"x", "FloatStorage", "0", 12, 0, []int64{4, 3}, []int64{1, 4}}, []float32{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}},
		{"offset row", view{"x", "FloatStorage", "0", 12, 8, []int64{4}, []int64{1}}, []float32{8, 9, 10, 11}},
		{"column", view{"x", "FloatStorage", "0", 12, 2, []int64{3}, []int64{4}}, []float32{2, 6, 10}},
		{"broadcast", view{"x", "FloatStorage", "0", 12, 5, []int64{2, 3}, []int64{0, 1}}, []float32{5, 6, 7, 5, 6, 7}},
		{"scalar", view{"x", "FloatStorage", "0", 12, 11, nil, nil}, []float32{11}},
		{"size-1 dims any stride", view{"x", "FloatStorage", "0", 12, 3, []int64{1, 2, 1}, []int64{99, 1, 7}}, []float32{3, 4}},
		{"empty", view{"x", "FloatStorage", "0", 12, 0, []int64{0, 3}, []int64{3, 1}}, []float32{}},
		{"empty past the end", view{"x", "FloatStorage", "0", 12, 50, []int64{0}, []int64{1}}, []float32{}},
		{"3d permuted", view{"x", "FloatStorage", "0", 12, 0, []int64{2, 3, 2}, []int64{1, 4, 2}}, []float32{0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := buildZip(t,
				zipEntry{name: "archive/data.pkl", data: stateDictPickle(tc.view)},
				zipEntry{name: "archive/data/0", data: storage})
			f, err := decodeTorchBytes(data)
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Tensors["x"].Float32()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d values %v, want %v", len(got), got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("values %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestDecodeTorchArchives checks archive-level variations that are valid.
func TestDecodeTorchArchives(t *testing.T) {
	pkl := stateDictPickle(view{"x", "FloatStorage", "0", 2, 0, []int64{2}, []int64{1}})
	// The same tensor object under two keys: pickled once, then fetched from the memo.
	memo := &pickler{}
	memo.ops(opProto, 2, opEmptyDict, opMark).str("a").tensor(view{"", "FloatStorage", "0", 2, 0, []int64{2}, []int64{1}})
	memo.ops(opBinPut, 9).str("b").ops(opBinGet, 9, opSetItems, opStop)
	tests := []struct {
		name    string
		entries []zipEntry
		names   []string
	}{
		{"any top folder", []zipEntry{{name: "diffusion_pytorch_model/data.pkl", data: pkl}, {name: "diffusion_pytorch_model/data/0", data: f32Bytes(1, 2)}}, []string{"x"}},
		{"version and byteorder", []zipEntry{{name: "a/data.pkl", data: pkl}, {name: "a/byteorder", data: []byte("little")}, {name: "a/.data/version", data: []byte("3\n")}, {name: "a/version", data: []byte("3\n")}, {name: "a/data/0", data: f32Bytes(1, 2)}}, []string{"x"}},
		{"deflated entries", []zipEntry{{name: "a/data.pkl", data: pkl, method: zip.Deflate}, {name: "a/data/0", data: f32Bytes(1, 2), method: zip.Deflate}}, []string{"x"}},
		{"one tensor under two keys", []zipEntry{{name: "a/data.pkl", data: memo.Bytes()}, {name: "a/data/0", data: f32Bytes(1, 2)}}, []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := decodeTorchBytes(buildZip(t, tc.entries...))
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Names(); len(got) != len(tc.names) {
				t.Fatalf("names %v, want %v", got, tc.names)
			}
			for _, name := range tc.names {
				if v, err := f.Tensors[name].Float32(); err != nil || len(v) != 2 || v[0] != 1 || v[1] != 2 {
					t.Errorf("tensor %q = %v, %v; want [1 2]", name, v, err)
				}
			}
			if len(tc.names) == 2 {
				f.Tensors["a"].Data[0] ^= 0xff
				if f.Tensors["b"].Data[0] == f.Tensors["a"].Data[0] {
					t.Errorf("a and b share memory")
				}
			}
		})
	}
}

// overlappingZip builds a zip bomb of stored entries: ten central directory records that all point at
// one 1000-byte entry, each claiming its 1000 bytes, referenced by a pickle of ten tensors.
func overlappingZip(t *testing.T) []byte {
	views := make([]view, 10)
	entries := []zipEntry{{name: "a/data/0", data: iota32(250)}}
	for i := range views {
		key := string(rune('0' + i))
		views[i] = view{"t" + key, "FloatStorage", key, 250, 0, []int64{250}, []int64{1}}
		if i > 0 {
			entries = append(entries, zipEntry{name: "a/data/" + key, data: []byte{0}})
		}
	}
	entries = append(entries, zipEntry{name: "a/data.pkl", data: stateDictPickle(views...)})
	data := buildZip(t, entries...)
	crc := crc32.ChecksumIEEE(iota32(250))
	// Point every central directory record of a one-byte entry at entry data/0.
	for i := 0; i+46 < len(data); i++ {
		if string(data[i:i+4]) != "PK\x01\x02" {
			continue
		}
		if binary.LittleEndian.Uint32(data[i+24:]) == 1 {
			binary.LittleEndian.PutUint32(data[i+16:], crc)
			binary.LittleEndian.PutUint32(data[i+20:], 1000)
			binary.LittleEndian.PutUint32(data[i+24:], 1000)
			binary.LittleEndian.PutUint32(data[i+42:], 0)
		}
	}
	return data
}

func TestDecodeTorchErrors(t *testing.T) {
	x := view{"x", "FloatStorage", "0", 6, 0, []int64{2, 3}, []int64{3, 1}}
	good := stateDictPickle(x)
	storage := iota32(6)
	archive := func(pkl []byte, more ...zipEntry) []byte {
		return buildZip(t, append([]zipEntry{{name: "archive/data.pkl", data: pkl}, {name: "archive/data/0", data: storage}}, more...)...)
	}
	withView := func(v view) []byte { return archive(stateDictPickle(v)) }
	legacy, err := os.ReadFile("testdata/torch/legacy.pt")
	if err != nil {
		t.Fatal(err)
	}
	badCRC := buildZip(t, zipEntry{name: "archive/data.pkl", data: good}, zipEntry{name: "archive/data/0", data: storage})
	badCRC[bytes.Index(badCRC, storage)] ^= 1 // the storage's first byte, after the local header

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"legacy format", legacy, "legacy torch.save format (PyTorch < 1.6)"},
		{"tar", append(make([]byte, 257), "ustar\x0000"...), "legacy torch.save format"},
		{"not a zip", []byte("hello, world"), "not a torch.save zip archive"},
		{"safetensors", rawSafetensors("{}", 0), "a safetensors file, not a torch.save archive: use ReadSafetensors"},
		{"no data.pkl", buildZip(t, zipEntry{name: "archive/data/0", data: storage}), "no <name>/data.pkl entry"},
		{"data.pkl at the root", buildZip(t, zipEntry{name: "data.pkl", data: good}), "no <name>/data.pkl entry"},
		{"two archives", buildZip(t, zipEntry{name: "a/data.pkl", data: good}, zipEntry{name: "b/data.pkl", data: good}), "2 data.pkl entries (in a, b)"},
		{"duplicate entry", buildZip(t, zipEntry{name: "a/data.pkl", data: good}, zipEntry{name: "a/data.pkl", data: good}), `zip entry "a/data.pkl" appears twice`},
		{"torchscript", archive(good, zipEntry{name: "archive/constants.pkl", data: good}), "a TorchScript archive"},
		{"big endian", archive(good, zipEntry{name: "archive/byteorder", data: []byte("big")}), `byteorder "big": only little-endian`},
		{"huge byteorder", archive(good, zipEntry{name: "archive/byteorder", data: make([]byte, 100)}), "archive/byteorder: 100 bytes, want at most 64"},
		{"bzip2 entry", rawZip(t, &zip.FileHeader{Name: "a/data.pkl", Method: 12, CompressedSize64: 3, UncompressedSize64: 3}, []byte("abc")), "compression method 12 is not supported"},
		{"deflate bomb", rawZip(t, &zip.FileHeader{Name: "a/data.pkl", Method: zip.Deflate, CompressedSize64: 10, UncompressedSize64: 1 << 40}, make([]byte, 10)), "declare 1099511627776 bytes once decompressed"},
		{"stored sizes differ", rawZip(t, &zip.FileHeader{Name: "a/data.pkl", Method: zip.Store, CompressedSize64: 3, UncompressedSize64: 5}, []byte("abc")), "stored with 3 bytes, claims 5"},
		{"overlapping entries", overlappingZip(t), "entries overlap or run past the end"},
		{"crc mismatch", badCRC, "archive/data/0: zip: checksum error"},
		{"storage too small", withView(view{"x", "FloatStorage", "0", 8, 0, []int64{2, 4}, []int64{4, 1}}), `storage "0": archive/data/0 holds 24 bytes, want 8 F32 elements`},
		{"missing storage", withView(view{"x", "FloatStorage", "7", 6, 0, []int64{6}, []int64{1}}), `storage "7": no zip entry archive/data/7`},
		{"view past the storage", withView(view{"x", "FloatStorage", "0", 6, 0, []int64{3, 3}, []int64{3, 1}}), "reaches element 8, the storage has 6"},
		{"offset past the storage", withView(view{"x", "FloatStorage", "0", 6, 6, []int64{1}, []int64{1}}), "reaches element 6, the storage has 6"},
		{"overflowing size", withView(view{"x", "FloatStorage", "0", 6, 0, []int64{1 << 40, 1 << 40}, []int64{0, 0}}), "the element count overflows"},
		{"overflowing extent", withView(view{"x", "FloatStorage", "0", 6, 0, []int64{1 << 20}, []int64{1 << 50}}), "the extent overflows"},
		{"huge broadcast", withView(view{"x", "FloatStorage", "0", 6, 0, []int64{1 << 30, 1 << 30}, []int64{0, 0}}), "would exceed 4 times its 24 storage bytes"},
		{"negative dim", withView(view{"x", "FloatStorage", "0", 6, 0, []int64{-1}, []int64{1}}), "size[0] is int -1, want a non-negative int"},
		{"negative stride", withView(view{"x", "FloatStorage", "0", 6, 5, []int64{2}, []int64{-1}}), "stride[0] is int -1"},
		{"rank mismatch", withView(view{"x", "FloatStorage", "0", 6, 0, []int64{6}, []int64{1, 1}}), "size [6] and stride [1 1] differ in length"},
		{"unknown storage type", withView(view{"x", "ComplexFloatStorage", "0", 6, 0, []int64{6}, []int64{1}}), "global torch.ComplexFloatStorage is not on the allow-list"},
		{"storage used as two types", archive(stateDictPickle(x, view{"y", "IntStorage", "0", 6, 0, []int64{6}, []int64{1}})), `storage "0" is used as F32 and as I32`},
		{"disallowed global", archive((&pickler{}).ops(opProto, 2).global("os", "system").str("echo").ops(opTuple1, opReduce, opStop).Bytes()), "archive/data.pkl: offset 2: opcode 0x63 GLOBAL: global os.system is not on the allow-list"},
		{"calling a storage class", archive((&pickler{}).ops(opProto, 2).global("torch", "FloatStorage").ops(opEmptyTuple, opReduce, opStop).Bytes()), "calling torch.FloatStorage: only OrderedDict"},
		{"OrderedDict with arguments", archive((&pickler{}).global("collections", "OrderedDict").ops(opNone, opTuple1, opReduce, opStop).Bytes()), "OrderedDict with 1 arguments, want none"},
		{"rebuild arity", archive((&pickler{}).global("torch._utils", "_rebuild_tensor_v2").ops(opEmptyTuple, opReduce, opStop).Bytes()), "_rebuild_tensor_v2 with 0 arguments, want 6 or 7"},
		{"build on a list", archive([]byte{opEmptyList, opEmptyDict, opBuild, opStop}), "BUILD of a list of 0 items"},
		{"bad persistent id", archive([]byte{opNone, opBinPersID, opStop}), "persistent id None, want ('storage', type, key, location, numel)"},
		{"not a dict", archive([]byte{opEmptyList, opStop}), "the pickled object is a list of 0 items, want a state dict"},
		{"non-tensor value", archive((&pickler{}).ops(opEmptyDict).str("epoch").int(5).ops(opSetItem, opStop).Bytes()), `state dict key "epoch" holds a int 5, want a tensor`},
		{"int key", archive((&pickler{}).ops(opEmptyDict).int(1).ops(opNone, opSetItem, opStop).Bytes()), "state dict key int 1: want str keys"},
		{"duplicate key", archive((&pickler{}).ops(opEmptyDict, opMark).str("x").tensor(x).str("x").tensor(x).ops(opSetItems, opStop).Bytes()), `duplicate dict key str "x"`},
		{"truncated pickle", archive(good[:len(good)-1]), "the pickle ends without STOP"},
		{"rank 65", withView(view{"x", "FloatStorage", "0", 6, 0, make([]int64, 65), make([]int64, 65)}), "size has 65 dimensions, more than 64"},
		{"long key", archive((&pickler{}).ops(opEmptyDict).str(string(make([]byte, 5000))).ops(opNone, opSetItem, opStop).Bytes()), "dict key of 5000 bytes: longer than 4096"},
		{"memoized broadcast copied again and again", archive(func() []byte {
			// A 1 MiB broadcast view of a 6-element storage is within bounds once, not twice.
			p := &pickler{}
			p.ops(opProto, 2, opEmptyDict, opMark).str("a").tensor(view{"", "FloatStorage", "0", 6, 0, []int64{1 << 18}, []int64{0}})
			p.ops(opBinPut, 99).str("b").ops(opBinGet, 99, opSetItems, opStop)
			return p.Bytes()
		}()), `state dict key "b": the tensors copied out of the archive would exceed 4 times its 24 storage bytes`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeTorchBytes(tc.data)
			wantError(t, err, "checkpoint: torch: ")
			wantError(t, err, tc.want)
		})
	}
	// The good archive these cases spoil must itself load.
	if _, err := decodeTorchBytes(archive(good)); err != nil {
		t.Errorf("the unspoilt archive: %v", err)
	}
}

// TestWrongReader checks the hints given when a file is read with the other format's reader.
func TestWrongReader(t *testing.T) {
	_, err := ReadSafetensors(sharedTestdata(t, "diffusers/tiny-ddpm-cifar10/unet/diffusion_pytorch_model.bin"))
	wantError(t, err, "a zip archive, not a safetensors file (torch.save writes zip archives: use ReadTorch)")
	_, err = ReadTorch(sharedTestdata(t, "diffusers/tiny-ddpm-cifar10/unet/diffusion_pytorch_model.safetensors"))
	wantError(t, err, "a safetensors file, not a torch.save archive: use ReadSafetensors")
}

func TestReadTorchNamesTheFile(t *testing.T) {
	_, err := ReadTorch("testdata/torch/legacy.pt")
	wantError(t, err, "checkpoint: testdata/torch/legacy.pt: legacy torch.save format")
	_, err = ReadTorch("testdata/no-such.pt")
	wantError(t, err, "no such file")
}

// slowMaterialize is the obvious reference for materialize: each element's storage index from its
// flat C-order index, by division.
func slowMaterialize(storage []byte, es int, offset int64, size, stride []int64) []byte {
	n := int64(1)
	for _, d := range size {
		n *= d
	}
	out := make([]byte, 0, n*int64(es))
	for flat := int64(0); flat < n; flat++ {
		at, rest := offset, flat
		for k := len(size) - 1; k >= 0; k-- {
			at += rest % size[k] * stride[k]
			rest /= size[k]
		}
		out = append(out, storage[at*int64(es):(at+1)*int64(es)]...)
	}
	return out
}

// TestMaterializeMatchesSlow compares the fast materialize with slowMaterialize on random views:
// permuted, sliced with steps, broadcast, offset; ranks 0 to 5 and element sizes 1 to 8.
func TestMaterializeMatchesSlow(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		rank := rng.Intn(6)
		es := []int{1, 2, 4, 8}[rng.Intn(4)]
		size := make([]int64, rank)
		stride := make([]int64, rank)
		for k := range size {
			size[k] = int64(rng.Intn(4) + 1)
			if rng.Intn(8) == 0 {
				size[k] = 0
			}
			stride[k] = int64(rng.Intn(7))
		}
		offset := int64(rng.Intn(5))
		last := offset
		for k := range size {
			if size[k] > 0 {
				last += (size[k] - 1) * stride[k]
			}
		}
		storage := make([]byte, (last+1+int64(rng.Intn(3)))*int64(es))
		rng.Read(storage)
		numel, err := checkView(int64(len(storage)/es), offset, size, stride)
		if err != nil {
			t.Fatalf("checkView(size %v, stride %v, offset %d): %v", size, stride, offset, err)
		}
		got := materialize(storage, es, offset, size, stride)
		want := slowMaterialize(storage, es, offset, size, stride)
		if int64(len(got)) != numel*int64(es) || !bytes.Equal(got, want) {
			t.Fatalf("materialize(size %v, stride %v, offset %d, es %d) differs from slowMaterialize", size, stride, offset, es)
		}
	}
}

func TestIsContiguous(t *testing.T) {
	tests := []struct {
		size, stride []int64
		want         bool
	}{
		{nil, nil, true},
		{[]int64{2, 3}, []int64{3, 1}, true},
		{[]int64{2, 3}, []int64{1, 2}, false},
		{[]int64{1, 3}, []int64{100, 1}, true},
		{[]int64{2, 1}, []int64{1, 5}, true},
		{[]int64{2, 3}, []int64{0, 1}, false},
		{[]int64{3}, []int64{2}, false},
	}
	for _, tc := range tests {
		if got := isContiguous(tc.size, tc.stride); got != tc.want {
			t.Errorf("isContiguous(%v, %v) = %v; want %v", tc.size, tc.stride, got, tc.want)
		}
	}
}
