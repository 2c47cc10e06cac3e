package data

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// TestDecodeIDXHeaderErrors checks that an error about the dims shows every dim as the header has it
// (before, the dims after a zero one were printed as 0, never having been read).
func TestDecodeIDXHeaderErrors(t *testing.T) {
	for _, c := range []struct {
		dims []int
		want string
	}{
		{[]int{5, 0, 28}, "dims 5x0x28 hold no data"},
		{[]int{0, 7, 9}, "dims 0x7x9 hold no data"},
		{[]int{70000, 70000, 28}, "dims 70000x70000x28 hold more than 2147483648 bytes"},
	} {
		_, err := decodeIDX(bytes.NewReader(idxBytes(MagicImages, c.dims, nil)), "f", MagicImages)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("dims %v: %v; want an error containing %q", c.dims, err, c.want)
		}
	}
}

// TestDecodeIDXAllocatesWhatItReads checks that a header announcing 2e9 bytes in front of 10 bytes of
// data costs about what the file holds, raw or gzip-compressed, not the announced size.
func TestDecodeIDXAllocatesWhatItReads(t *testing.T) {
	raw := idxBytes(MagicImages, []int{1000, 1000, 2000}, make([]byte, 10))
	for name, in := range map[string][]byte{"raw": raw, "gzip": gzipBytes(t, raw)} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := decodeIDX(bytes.NewReader(in), "f", MagicImages)
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "the data of dims 1000x1000x2000 has 10 bytes, want 2000000000") {
			t.Fatalf("%s: %v; want a truncation error", name, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
			t.Fatalf("%s: decoding allocated %d bytes; want < 4 MB", name, n)
		}
	}
}
