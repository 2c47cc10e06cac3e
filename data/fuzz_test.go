package data

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"github.com/ddpm/ddpm/internal/memcap"
)

// FuzzDecodeIDX checks that no idx file, raw or gzip-compressed, makes the decoder panic or allocate
// more than it reads: at most 4 times the bytes the input holds once decompressed, plus 1 MB, whatever
// its header announces (inputs up to 64 KB, which deflate can expand to about 64 MB). What it accepts
// has exactly the bytes its dims hold.
func FuzzDecodeIDX(f *testing.F) {
	images := idxBytes(MagicImages, []int{2, 3, 2}, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	f.Add(images, true)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(images)
	zw.Close()
	f.Add(gz.Bytes(), true)
	f.Add(idxBytes(MagicLabels, []int{3}, []byte{7, 0, 9}), false)
	f.Add(idxBytes(MagicImages, []int{1000, 1000, 2000}, make([]byte, 10)), true)
	memcap.Harness(f)
	f.Fuzz(func(t *testing.T, in []byte, images bool) {
		if len(in) > 64<<10 {
			return
		}
		magic := uint32(MagicLabels)
		if images {
			magic = MagicImages
		}
		// The decompressed size, which is what the decoder may hold (gzip or not).
		plain := int64(len(in))
		if zr, err := gzip.NewReader(bytes.NewReader(in)); err == nil {
			n, _ := io.Copy(io.Discard, zr)
			plain = max(plain, n)
		}
		var got IDX
		var err error
		memcap.Within(t, 4*uint64(plain)+1<<20, func() { got, err = decodeIDX(bytes.NewReader(in), "f", magic) })
		if err != nil {
			return
		}
		n := 1
		for _, d := range got.Dims {
			n *= d
		}
		if len(got.Dims) != int(magic&0xff) || n != len(got.Data) {
			t.Fatalf("accepted dims %v with %d bytes of data", got.Dims, len(got.Data))
		}
	})
}
