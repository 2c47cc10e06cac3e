package data

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestDecodeIDX(t *testing.T) {
	pix := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11} // 2 images of 3x2
	images := idxBytes(MagicImages, []int{2, 3, 2}, pix)
	labels := idxBytes(MagicLabels, []int{3}, []byte{7, 0, 9})

	gzImages := gzipBytes(t, images)
	badCRC := slices.Clone(gzImages)
	badCRC[len(badCRC)-8] ^= 0xff // the CRC-32 of the gzip trailer
	badDeflate := slices.Clone(gzImages)
	badDeflate[12] ^= 0xff

	tests := []struct {
		name    string
		in      []byte
		magic   uint32
		want    IDX
		wantErr []string // substrings of the error; nil: no error
	}{
		{name: "raw images", in: images, magic: MagicImages, want: IDX{Dims: []int{2, 3, 2}, Data: pix}},
		{name: "gzip images", in: gzImages, magic: MagicImages, want: IDX{Dims: []int{2, 3, 2}, Data: pix}},
		{name: "raw labels", in: labels, magic: MagicLabels, want: IDX{Dims: []int{3}, Data: []byte{7, 0, 9}}},
		{name: "gzip labels", in: gzipBytes(t, labels), magic: MagicLabels, want: IDX{Dims: []int{3}, Data: []byte{7, 0, 9}}},
		{name: "labels file as images", in: labels, magic: MagicImages,
			wantErr: []string{"f.gz: magic 0x00000801, want 0x00000803", "is this a labels file?"}},
		{name: "images file as labels", in: gzImages, magic: MagicLabels,
			wantErr: []string{"magic 0x00000803, want 0x00000801", "is this an images file?"}},
		{name: "other magic", in: idxBytes(0x00000d03, []int{1, 1, 1}, []byte{0, 0, 0, 0}), magic: MagicImages,
			wantErr: []string{"magic 0x00000d03, want 0x00000803"}},
		{name: "empty", in: nil, magic: MagicImages, wantErr: []string{"truncated: the magic number has 0 bytes, want 4"}},
		{name: "truncated header", in: images[:9], magic: MagicImages, wantErr: []string{"truncated: the header's dims has 5 bytes, want 12"}},
		{name: "truncated data", in: images[:len(images)-3], magic: MagicImages,
			wantErr: []string{"truncated: the data of dims 2x3x2 has 9 bytes, want 12", "incomplete download"}},
		{name: "truncated data in gzip", in: gzipBytes(t, images[:len(images)-3]), magic: MagicImages,
			wantErr: []string{"truncated: the data of dims 2x3x2 has 9 bytes, want 12"}},
		{name: "extra data", in: append(slices.Clone(images), 1, 2), magic: MagicImages,
			wantErr: []string{"2 bytes after the 12 bytes of data that dims 2x3x2 hold", "don't match the size"}},
		{name: "zero dim", in: idxBytes(MagicImages, []int{0, 28, 28}, nil), magic: MagicImages, wantErr: []string{"hold no data"}},
		{name: "huge dims", in: idxBytes(MagicImages, []int{1 << 20, 1 << 10, 1 << 10}, nil), magic: MagicImages,
			wantErr: []string{"more than 2147483648 bytes"}},
		{name: "truncated gzip", in: gzImages[:len(gzImages)-12], magic: MagicImages, wantErr: []string{"f.gz: corrupt gzip"}},
		{name: "bad gzip crc", in: badCRC, magic: MagicImages, wantErr: []string{"corrupt gzip", "checksum"}},
		{name: "bad deflate data", in: badDeflate, magic: MagicImages, wantErr: []string{"corrupt gzip"}},
		{name: "bad gzip header", in: []byte{0x1f, 0x8b, 0, 0}, magic: MagicImages, wantErr: []string{"corrupt gzip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeIDX(bytes.NewReader(tt.in), "f.gz", tt.magic)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("decodeIDX: %v", err)
				}
				if !slices.Equal(got.Dims, tt.want.Dims) || !bytes.Equal(got.Data, tt.want.Data) {
					t.Fatalf("decodeIDX = %v %v; want %v %v", got.Dims, got.Data, tt.want.Dims, tt.want.Data)
				}
				return
			}
			if err == nil {
				t.Fatalf("decodeIDX = %v, no error; want an error with %q", got.Dims, tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("decodeIDX error %q; want it to contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "data: f.gz: ") {
				t.Errorf("decodeIDX error %q; want it to start with %q", err, "data: f.gz: ")
			}
		})
	}
}

func TestLoadIDX(t *testing.T) {
	dir := t.TempDir()
	pix := make([]byte, 3*2*2)
	pix[0], pix[1] = 255, 128
	imgs := writeFile(t, dir, "img.gz", gzipBytes(t, idxBytes(MagicImages, []int{3, 2, 2}, pix)))
	labs := writeFile(t, dir, "lab", idxBytes(MagicLabels, []int{3}, []byte{1, 2, 3}))
	short := writeFile(t, dir, "short", idxBytes(MagicLabels, []int{2}, []byte{1, 2}))
	big := writeFile(t, dir, "big", idxBytes(MagicLabels, []int{3}, []byte{1, 10, 3}))

	t.Run("valid", func(t *testing.T) {
		d, err := loadIDX(imgs, labs, 10)
		if err != nil {
			t.Fatal(err)
		}
		if d.Len() != 3 || d.C != 1 || d.H != 2 || d.W != 2 || !slices.Equal(d.Labels, []int{1, 2, 3}) {
			t.Fatalf("loadIDX = N %d, [C,H,W] [%d,%d,%d], labels %v; want 3, [1,2,2], [1 2 3]", d.Len(), d.C, d.H, d.W, d.Labels)
		}
		if d.Images[0] != 1 || d.Images[2] != -1 || d.Images[1] != pixelTable[128] {
			t.Fatalf("loadIDX images[:3] = %v; want [1 %v -1]", d.Images[:3], pixelTable[128])
		}
	})
	for _, tt := range []struct {
		name, labels, want string
	}{
		{"count mismatch", short, "has 3 images but " + short + " has 2 labels"},
		{"label out of range", big, "label 10 at index 1; want 0..9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadIDX(imgs, tt.labels, 10)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("loadIDX error %v; want one with %q", err, tt.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := ReadImages(dir + "/nope")
		if err == nil || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("ReadImages error %v; want one naming the file", err)
		}
	})
}
