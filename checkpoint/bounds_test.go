package checkpoint

import (
	"archive/zip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/internal/memcap"
)

// sparseFile writes head at the start of a file of size bytes, the rest a hole: no disk space is used.
func sparseFile(t *testing.T, head []byte, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "huge.safetensors")
	if err := os.WriteFile(path, head, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatalf("a sparse file of %d bytes: %v", size, err)
	}
	return path
}

// TestReadSafetensorsHugeFileDoesNotAllocate reads sparse 30 GB files whose header does not describe
// them: ReadSafetensors must refuse them from the header alone (before, it allocated the 30 GB first
// and died of Go's fatal out-of-memory error).
func TestReadSafetensorsHugeFileDoesNotAllocate(t *testing.T) {
	const size = 30 << 30
	for _, c := range []struct{ name, header, want string }{
		{"no tensors", `{}`, "data area has 32212254710 bytes, the tensors cover 0"},
		{"one small tensor", `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, "the tensors cover 8"},
		{"offsets past the end", `{"w":{"dtype":"U8","shape":[40000000000],"data_offsets":[0,40000000000]}}`, "run past the end"},
	} {
		t.Run(c.name, func(t *testing.T) {
			head := binary.LittleEndian.AppendUint64(nil, uint64(len(c.header)))
			path := sparseFile(t, append(head, c.header...), size)
			var err error
			n := memcap.Allocated(func() { _, err = ReadSafetensors(path) })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadSafetensors: %v; want an error containing %q", err, c.want)
			}
			if n > 1<<20 {
				t.Fatalf("ReadSafetensors allocated %d bytes to refuse the file; want < 1 MB", n)
			}
		})
	}
}

// TestReadTorchZipBomb reads a 2 MB archive whose one storage, deflated, declares 2 GB (deflate's
// ratio allows it): the reader must refuse it from the zip directory, before decompressing, whatever
// the caller's limit (before, it allocated the 2 GB, then the tensor's copy).
func TestReadTorchZipBomb(t *testing.T) {
	const numel = 1 << 29 // float32: 2 GiB
	pkl := stateDictPickle(view{"w", "FloatStorage", "0", numel, 0, []int64{numel}, []int64{1}})
	bomb := rawZip(t, &zip.FileHeader{Name: "archive/data/0", Method: zip.Deflate, CompressedSize64: 2 << 20, UncompressedSize64: 4 * numel},
		make([]byte, 2<<20), zipEntry{name: "archive/data.pkl", data: pkl})
	path := filepath.Join(t.TempDir(), "bomb.bin")
	if err := os.WriteFile(path, bomb, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int64{0, 1 << 20, 1 << 40} {
		var err error
		n := memcap.Allocated(func() { _, err = ReadTorchLimit(path, limit) })
		if err == nil || !strings.Contains(err.Error(), "declare 2147483817 bytes once decompressed") {
			t.Fatalf("limit %d: ReadTorchLimit: %v; want the declared size refused", limit, err)
		}
		if n > 32<<20 {
			t.Fatalf("limit %d: ReadTorchLimit allocated %d bytes to refuse a 2 MB file; want < 32 MB", limit, n)
		}
	}
}

// TestReadTorchLimit checks that a caller's limit refuses a valid archive that declares more than
// expected, and admits it at its exact size.
func TestReadTorchLimit(t *testing.T) {
	pkl := stateDictPickle(view{"w", "FloatStorage", "0", 12, 0, []int64{3, 4}, []int64{4, 1}})
	data := buildZip(t, zipEntry{name: "archive/data.pkl", data: pkl}, zipEntry{name: "archive/data/0", data: iota32(12)})
	path := filepath.Join(t.TempDir(), "w.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	declared := int64(len(pkl) + 48)
	if _, err := ReadTorchLimit(path, declared-1); err == nil || !strings.Contains(err.Error(), "beyond the limit of") {
		t.Fatalf("limit %d: %v; want an error", declared-1, err)
	}
	f, err := ReadTorchLimit(path, declared)
	if err != nil {
		t.Fatalf("limit %d: %v", declared, err)
	}
	if got := f.Tensors["w"]; got == nil || len(got.Data) != 48 {
		t.Fatalf("tensor w = %v", got)
	}
}
