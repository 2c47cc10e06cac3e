package data

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// idxBytes encodes an idx file with the given magic, dims and data.
func idxBytes(magic uint32, dims []int, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
	}
	return append(b, data...)
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func md5Hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tinySet is a small synthetic data set in the MNIST layout: n images of 3x2 pixels and labels.
type tinySet struct {
	files map[string][]byte // .gz file name -> content
	src   source
}

func newTinySet(t *testing.T, nTrain, nTest int) tinySet {
	t.Helper()
	ts := tinySet{files: map[string][]byte{}}
	add := func(images, labels string, n int) {
		pix := make([]byte, n*3*2)
		for i := range pix {
			pix[i] = byte(i * 37)
		}
		lab := make([]byte, n)
		for i := range lab {
			lab[i] = byte(i % 10)
		}
		ts.files[images] = gzipBytes(t, idxBytes(MagicImages, []int{n, 3, 2}, pix))
		ts.files[labels] = gzipBytes(t, idxBytes(MagicLabels, []int{n}, lab))
	}
	add(trainImages, trainLabels, nTrain)
	add(testImages, testLabels, nTest)
	ts.src = source{name: "tiny", md5: map[string]string{}, mirrors: []string{"http://127.0.0.1:1/"},
		classes: []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}}
	for name, b := range ts.files {
		ts.src.md5[name] = md5Hex(b)
	}
	return ts
}

// put writes the named files of ts into dir.
func (ts tinySet) put(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		writeFile(t, dir, n, ts.files[n])
	}
}
