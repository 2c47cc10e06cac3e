package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSafetensorsFixtures reads the files the real safetensors library wrote (via diffusers and
// torch), checks dtypes, shapes and a few values, and checks that encoding them again gives the same
// bytes as the file (exact: the writer follows the reference implementation's layout) and that
// WriteSafetensors + ReadSafetensors gives back every tensor's bytes.
func TestSafetensorsFixtures(t *testing.T) {
	tests := []struct {
		path     string
		count    int
		metadata map[string]string
		shapes   map[string]string // name -> "DTYPE [dims]"
		ints     map[string][]int64
	}{
		{
			path:     "diffusers/tiny-ddpm-cifar10/unet/diffusion_pytorch_model.safetensors",
			count:    268,
			metadata: map[string]string{"format": "pt"},
			shapes: map[string]string{
				"conv_in.weight":  "F32 [32 3 3 3]",
				"conv_in.bias":    "F32 [32]",
				"conv_out.weight": "F32 [3 32 3 3]",
			},
		},
		{
			path:  "diffusers/tiny-ddpm-cifar10/reference_io.safetensors",
			count: 11,
			shapes: map[string]string{
				"sample":       "F32 [2 3 16 16]",
				"timesteps":    "I64 [2]",
				"ddpm20_noise": "F32 [20 2 3 16 16]",
			},
			ints: map[string][]int64{"timesteps": {3, 777}},
		},
		{
			path:  "fid/inception_reference.safetensors",
			count: 7,
			shapes: map[string]string{
				"frechet_expected": "F64 [1]",
				"features28":       "F32 [3 2048]",
				"images28_gray":    "F32 [3 1 28 28]",
			},
		},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			path := sharedTestdata(t, tc.path)
			f, err := ReadSafetensors(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Tensors) != tc.count {
				t.Errorf("%d tensors, want %d", len(f.Tensors), tc.count)
			}
			if len(f.Metadata) != len(tc.metadata) {
				t.Errorf("metadata %v, want %v", f.Metadata, tc.metadata)
			}
			for k, v := range tc.metadata {
				if f.Metadata[k] != v {
					t.Errorf("metadata[%q] = %q, want %q", k, f.Metadata[k], v)
				}
			}
			for name, want := range tc.shapes {
				x, ok := f.Tensors[name]
				if !ok {
					t.Errorf("no tensor %q", name)
				} else if x.String() != want {
					t.Errorf("tensor %q is %v, want %s", name, x, want)
				}
			}
			for name, want := range tc.ints {
				got, err := f.Tensors[name].Int64s()
				if err != nil || len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
					t.Errorf("tensor %q = %v, %v; want %v", name, got, err, want)
				}
			}

			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := EncodeSafetensors(&buf, f); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), orig) {
				t.Errorf("EncodeSafetensors differs from the file (%d vs %d bytes)", buf.Len(), len(orig))
			}

			out := filepath.Join(t.TempDir(), "out.safetensors")
			if err := WriteSafetensors(out, f); err != nil {
				t.Fatal(err)
			}
			back, err := ReadSafetensors(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(back.Tensors) != len(f.Tensors) {
				t.Fatalf("read back %d tensors, want %d", len(back.Tensors), len(f.Tensors))
			}
			for _, name := range f.Names() {
				if d := tensorDiff(back.Tensors[name], f.Tensors[name]); d != "" {
					t.Errorf("tensor %q read back: %s", name, d)
				}
			}
		})
	}
}

// TestEncodeSafetensorsReference checks the writer against the byte strings of the reference
// implementation's own tests (huggingface/safetensors, safetensors/src/tensor.rs: test_serialization,
// test_serialization_forced_alignement, test_empty), spelled as text here.
func TestEncodeSafetensorsReference(t *testing.T) {
	floats := NewF32([]int{1, 2, 3}, []float32{0, 1, 2, 3, 4, 5})
	tests := []struct {
		name   string
		file   *File
		header string
		data   []byte
	}{
		{"one tensor", &File{Tensors: map[string]*Tensor{"attn.0": floats}},
			`{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`, floats.Data},
		{"padded", &File{Tensors: map[string]*Tensor{"attn0": {F32, []int{1, 1, 2, 3}, floats.Data}}},
			`{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       `, floats.Data},
		{"empty", &File{}, `{}      `, nil},
		{"metadata only", &File{Metadata: map[string]string{"framework": "pt"}},
			`{"__metadata__":{"framework":"pt"}}     `, nil},
		{"empty metadata kept", &File{Metadata: map[string]string{}}, `{"__metadata__":{}}     `, nil},
		{"dtype order then names", &File{Tensors: map[string]*Tensor{
			"z": NewF64(nil, []float64{1}), "a": NewF32(nil, []float32{1}), "m": NewI64(nil, []int64{1}),
			"b": {U8, nil, []byte{1}}, "c": NewBF16(nil, []float32{1}), "d": NewF32([]int{0}, nil),
		}},
			// I64 > F64 > F32 > BF16 > U8 in the Rust enum; names break ties.
			`{"m":{"dtype":"I64","shape":[],"data_offsets":[0,8]},` +
				`"z":{"dtype":"F64","shape":[],"data_offsets":[8,16]},` +
				`"a":{"dtype":"F32","shape":[],"data_offsets":[16,20]},` +
				`"d":{"dtype":"F32","shape":[0],"data_offsets":[20,20]},` +
				`"c":{"dtype":"BF16","shape":[],"data_offsets":[20,22]},` +
				`"b":{"dtype":"U8","shape":[],"data_offsets":[22,23]}}     `,
			[]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0x80, 0x3f, 0x80, 0x3f, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := EncodeSafetensors(&buf, tc.file); err != nil {
				t.Fatal(err)
			}
			want := binary.LittleEndian.AppendUint64(nil, uint64(len(tc.header)))
			want = append(append(want, tc.header...), tc.data...)
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("EncodeSafetensors =\n%q\nwant\n%q", buf.Bytes(), want)
			}
			back, err := DecodeSafetensors(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if (back.Metadata == nil) != (tc.file.Metadata == nil) {
				t.Errorf("decoded Metadata %#v, want %#v", back.Metadata, tc.file.Metadata)
			}
		})
	}
}

// TestSafetensorsNames checks JSON escaping (serde_json's: control characters, quote and backslash
// only) and that names and metadata survive a round trip.
func TestSafetensorsNames(t *testing.T) {
	name := "a\"b\\c\nd\x01\x1fé<>&\x7f"
	f := &File{
		Tensors:  map[string]*Tensor{name: NewF32([]int{1}, []float32{2})},
		Metadata: map[string]string{"k\t": "v\u2028"},
	}
	var buf bytes.Buffer
	if err := EncodeSafetensors(&buf, f); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"a\"b\\c\nd\u0001\u001fé<>&` + "\x7f" + `"`, `"k\t":"v` + "\u2028" + `"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("header %q does not contain %q", buf.String()[8:], want)
		}
	}
	back, err := DecodeSafetensors(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if back.Tensors[name] == nil || back.Metadata["k\t"] != "v\u2028" {
		t.Errorf("round trip: names %q, metadata %q", back.Names(), back.Metadata)
	}
}

// rawSafetensors builds a file from a header text and a data area of n bytes.
func rawSafetensors(header string, n int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), make([]byte, n)...)
}

func TestDecodeSafetensorsErrors(t *testing.T) {
	const a = `"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}`
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"too short", []byte{1, 2, 3}, "3 bytes, shorter than the 8-byte header length"},
		{"zip archive", []byte("PK\x03\x04\x14\x00\x00\x00\x00\x00"), "a zip archive, not a safetensors file (torch.save writes zip archives: use ReadTorch)"},
		{"absurd header length", binary.LittleEndian.AppendUint64(nil, 1<<40), "header length 1099511627776 is beyond the 100000000-byte limit"},
		{"header past the end", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...), "header length 100 runs past the end of the file (10 bytes)"},
		{"invalid utf-8", rawSafetensors("{\"\xff\":1}", 0), "not valid UTF-8"},
		{"invalid json", rawSafetensors(`{"a":`, 0), "invalid JSON"},
		{"not an object", rawSafetensors(`[]`, 0), `got "[", want "{": not a safetensors file`},
		{"trailing garbage", rawSafetensors(`{} x`, 0), "1 bytes after the JSON object"},
		{"unknown dtype", rawSafetensors(`{"a":{"dtype":"F31","shape":[],"data_offsets":[0,4]}}`, 4), `tensor "a": unknown dtype "F31"`},
		{"negative dim", rawSafetensors(`{"a":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,0]}}`, 0), `tensor "a": shape [-1 2]: negative dimension`},
		{"fractional dim", rawSafetensors(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, 4), "1.5 is not an integer"},
		{"huge dim", rawSafetensors(`{"a":{"dtype":"F32","shape":[1e30],"data_offsets":[0,4]}}`, 4), "1e30 is not an integer in the int64 range"},
		{"string dim", rawSafetensors(`{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`, 8), `got string "2", want an integer`},
		{"overflowing shape", rawSafetensors(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4), "the element count overflows"},
		{"overflowing bytes", rawSafetensors(`{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}}`, 4), "the element count overflows"},
		{"offsets past the end", rawSafetensors(`{"a":{"dtype":"F32","shape":[25],"data_offsets":[0,100]}}`, 24), "data_offsets [0,100) run past the end of the data area (24 bytes)"},
		{"offsets reversed", rawSafetensors(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`, 8), "want [begin, end] with 0 <= begin <= end"},
		{"offsets negative", rawSafetensors(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, 8), "0 <= begin"},
		{"three offsets", rawSafetensors(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 8), "data_offsets [0 4 8]"},
		{"wrong byte count", rawSafetensors(`{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}`, 20),
			`checkpoint: safetensors: tensor "a": data_offsets [0,20) hold 20 bytes, want 24 for F32 [2 3]`},
		{"overlap", rawSafetensors(`{`+a+`,"b":{"dtype":"I64","shape":[2],"data_offsets":[16,32]}}`, 32), `tensor "b": data_offsets [16,32) overlap tensor "a", which ends at 24`},
		{"gap", rawSafetensors(`{`+a+`,"b":{"dtype":"I64","shape":[2],"data_offsets":[32,48]}}`, 48), `tensor "b": data_offsets [32,48) leave a gap of 8 bytes after offset 24`},
		{"gap at start", rawSafetensors(`{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]}}`, 32), "gap of 8 bytes after offset 0"},
		{"not covered", rawSafetensors(`{`+a+`}`, 32), "data area has 32 bytes, the tensors cover 24: 8 bytes not covered"},
		{"duplicate tensor", rawSafetensors(`{`+a+`,`+a+`}`, 24), `duplicate key "a"`},
		{"duplicate metadata key", rawSafetensors(`{"__metadata__":{"k":"1","k":"2"}}`, 0), `__metadata__: duplicate key "k"`},
		{"duplicate field", rawSafetensors(`{"a":{"dtype":"F32","dtype":"F32","shape":[],"data_offsets":[0,4]}}`, 4), `duplicate field "dtype"`},
		{"metadata not an object", rawSafetensors(`{"__metadata__":[]}`, 0), `__metadata__: got "[", want "{"`},
		{"metadata not string", rawSafetensors(`{"__metadata__":{"k":1}}`, 0), `key "k": got number 1, want a string`},
		{"unknown field", rawSafetensors(`{"a":{"dtype":"F32","shape":[],"offsets":[0,4]}}`, 4), `unknown field "offsets"`},
		{"missing field", rawSafetensors(`{"a":{"dtype":"F32","shape":[]}}`, 4), `no "data_offsets" field`},
		{"info not an object", rawSafetensors(`{"a":5}`, 0), `tensor "a": got number 5, want "{"`},
		{"deep nesting", rawSafetensors(`{"a":`+strings.Repeat("[", 100000)+`}`, 0), `tensor "a": got "[", want "{"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeSafetensors(tc.data)
			wantError(t, err, tc.want)
		})
	}
}

func TestDecodeSafetensorsNullMetadata(t *testing.T) {
	f, err := DecodeSafetensors(rawSafetensors(`{"__metadata__":null,"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1))
	if err != nil || f.Metadata != nil || len(f.Tensors) != 1 {
		t.Errorf("DecodeSafetensors = %+v, %v; want one tensor and nil Metadata", f, err)
	}
}

func TestReadSafetensorsNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"short.safetensors", []byte{1}, "short.safetensors: 1 bytes, shorter than"},
		{"bad.safetensors", rawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), `bad.safetensors: tensor "a": data_offsets [0,4) hold 4 bytes, want 8 for F32 [2]`},
		{"huge.safetensors", binary.LittleEndian.AppendUint64(nil, math.MaxUint64), "huge.safetensors: header length 18446744073709551615 is beyond"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadSafetensors(path)
			wantError(t, err, "checkpoint: "+path)
			wantError(t, err, tc.want)
		})
	}
	_, err := ReadSafetensors(filepath.Join(dir, "missing.safetensors"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadSafetensors(missing) = %v, want an os.ErrNotExist error", err)
	}
}

func TestEncodeSafetensorsErrors(t *testing.T) {
	tests := []struct {
		name string
		file *File
		want string
	}{
		{"short data", &File{Tensors: map[string]*Tensor{"w": NewF32([]int{2, 2}, []float32{1})}}, `tensor "w": data holds 4 bytes, want 16 for F32 [2 2]`},
		{"reserved name", &File{Tensors: map[string]*Tensor{"__metadata__": NewF32(nil, []float32{1})}}, "reserved"},
		{"nil tensor", &File{Tensors: map[string]*Tensor{"w": nil}}, `tensor "w" is nil`},
		{"invalid utf-8 name", &File{Tensors: map[string]*Tensor{"\xff": NewF32(nil, []float32{1})}}, "not valid UTF-8"},
		{"invalid utf-8 metadata", &File{Metadata: map[string]string{"k": "\xff"}}, `metadata "k": not valid UTF-8`},
		{"unknown dtype", &File{Tensors: map[string]*Tensor{"w": {DType: "Q8", Data: []byte{1}}}}, `unknown dtype "Q8"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			wantError(t, EncodeSafetensors(&buf, tc.file), tc.want)
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes before failing, want none", buf.Len())
			}
		})
	}
}

// TestWriteSafetensorsAtomic checks that a failed write leaves an existing file untouched and no
// temporary file behind.
func TestWriteSafetensorsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	good := &File{Tensors: map[string]*Tensor{"w": NewF32([]int{2}, []float32{1, 2})}}
	if err := WriteSafetensors(path, good); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", st.Mode(), err)
	}

	tests := []struct {
		name  string
		write func() error
		want  string
	}{
		{"invalid tensor", func() error {
			return WriteSafetensors(path, &File{Tensors: map[string]*Tensor{"w": NewF32([]int{3}, []float32{1})}})
		}, `model.safetensors: tensor "w": data holds 4 bytes`},
		{"failing writer", func() error {
			return writeAtomic(path, func(w io.Writer) error {
				if _, err := w.Write(make([]byte, 3<<20)); err != nil {
					return err
				}
				return errors.New("disk on fire")
			})
		}, "checkpoint: writing " + path + ": disk on fire"},
		{"missing directory", func() error {
			return WriteSafetensors(filepath.Join(dir, "no", "such", "dir", "m.safetensors"), good)
		}, "no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.write(), tc.want)
			after, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(after, before) {
				t.Errorf("the existing file changed: %d bytes, %v", len(after), err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("directory holds %v, want only model.safetensors", names)
			}
		})
	}
}

// TestDecodeSafetensorsAliases documents that decoded tensors alias the input with their capacity
// limited, so appending to one never writes into its neighbour.
func TestDecodeSafetensorsAliases(t *testing.T) {
	var buf bytes.Buffer
	f := &File{Tensors: map[string]*Tensor{"a": NewF32([]int{1}, []float32{1}), "b": NewF32([]int{1}, []float32{2})}}
	if err := EncodeSafetensors(&buf, f); err != nil {
		t.Fatal(err)
	}
	back, err := DecodeSafetensors(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	a := back.Tensors["a"]
	if cap(a.Data) != 4 {
		t.Errorf("cap(a.Data) = %d, want 4", cap(a.Data))
	}
	_ = append(a.Data, 9, 9, 9, 9)
	if v, _ := back.Tensors["b"].Float32(); v[0] != 2 {
		t.Errorf("b = %v after appending to a, want [2]", v)
	}
}
