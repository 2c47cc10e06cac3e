package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
)

// Magic numbers of the idx files of unsigned bytes: 0x0000 0x08 (ubyte) then the number of dims.
const (
	MagicImages = 0x00000803 // [N, rows, cols]
	MagicLabels = 0x00000801 // [N]
)

// maxIDXBytes bounds the data an idx header may announce, so that a corrupt header fails instead
// of allocating gigabytes.
const maxIDXBytes = 1 << 31

// IDX is a decoded idx file of unsigned bytes.
type IDX struct {
	Dims []int  // [N, rows, cols] for images, [N] for labels
	Data []byte // the values in C order; len(Data) is the product of Dims
}

// ReadImages reads an idx3 images file (magic 0x00000803), gzip-compressed or raw (gzip is
// recognized by its first two bytes, not by the file name).
func ReadImages(path string) (IDX, error) { return readIDX(path, MagicImages) }

// ReadLabels reads an idx1 labels file (magic 0x00000801), gzip-compressed or raw.
func ReadLabels(path string) (IDX, error) { return readIDX(path, MagicLabels) }

func readIDX(path string, magic uint32) (IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return IDX{}, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	return decodeIDX(f, path, magic)
}

// sourceReader remembers the first error, other than io.EOF, of the reader below it, so that a
// short read can be told apart as a corrupt gzip stream or a truncated file.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// decodeIDX decodes an idx file named name (for errors) from r and checks that it has the given
// magic, that its data has exactly the size its dims say, and, when gzip-compressed, that the gzip
// stream is intact (its CRC is checked at the end).
func decodeIDX(r io.Reader, name string, magic uint32) (IDX, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var src io.Reader = br
	compressed := false
	if b, _ := br.Peek(2); len(b) == 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return IDX{}, fmt.Errorf("data: %s: corrupt gzip: %v (delete it and download it again)", name, err)
		}
		src, compressed = zr, true
	}
	sr := &sourceReader{r: src}
	short := func(what string, got, want int) error {
		if compressed && sr.err != nil {
			return fmt.Errorf("data: %s: corrupt gzip: %v (delete it and download it again)", name, sr.err)
		}
		if sr.err != nil {
			return fmt.Errorf("data: %s: reading %s: %w", name, what, sr.err)
		}
		return fmt.Errorf("data: %s: truncated: %s has %d bytes, want %d (an incomplete download? delete it and download it again)",
			name, what, got, want)
	}

	var head [4]byte
	if n, err := io.ReadFull(sr, head[:]); err != nil {
		return IDX{}, short("the magic number", n, 4)
	}
	if got := binary.BigEndian.Uint32(head[:]); got != magic {
		return IDX{}, fmt.Errorf("data: %s: magic 0x%08x, want 0x%08x (%s)", name, got, magic, magicHint(got, magic))
	}
	dims := make([]int, magic&0xff)
	dimBytes := make([]byte, 4*len(dims))
	if n, err := io.ReadFull(sr, dimBytes); err != nil {
		return IDX{}, short("the header's dims", n, len(dimBytes))
	}
	// All dims are read before any is checked, so that an error shows the header as it is.
	for i := range dims {
		dims[i] = int(binary.BigEndian.Uint32(dimBytes[4*i:]))
	}
	size := 1
	for _, d := range dims {
		if d == 0 {
			return IDX{}, fmt.Errorf("data: %s: dims %s hold no data (a corrupt header?)", name, dimString(dims))
		}
		if size > maxIDXBytes/d {
			return IDX{}, fmt.Errorf("data: %s: dims %s hold more than %d bytes (a corrupt header?)", name, dimString(dims), maxIDXBytes)
		}
		size *= d
	}
	// The buffer grows with the bytes actually read, not with the size the header claims: a short file
	// with a huge header costs what it holds.
	buf, _ := io.ReadAll(io.LimitReader(sr, int64(size)))
	if len(buf) < size {
		return IDX{}, short(fmt.Sprintf("the data of dims %s", dimString(dims)), len(buf), size)
	}
	// Reading past the data finds either the end (and checks the gzip CRC) or extra bytes.
	extra, _ := io.Copy(io.Discard, sr)
	if compressed && sr.err != nil {
		return IDX{}, fmt.Errorf("data: %s: corrupt gzip: %v (delete it and download it again)", name, sr.err)
	}
	if sr.err != nil {
		return IDX{}, fmt.Errorf("data: %s: %w", name, sr.err)
	}
	if extra > 0 {
		return IDX{}, fmt.Errorf("data: %s: %d bytes after the %d bytes of data that dims %s hold (the dims don't match the size; a corrupt header?)",
			name, extra, size, dimString(dims))
	}
	return IDX{Dims: dims, Data: buf}, nil
}

func magicHint(got, want uint32) string {
	switch {
	case want == MagicImages && got == MagicLabels:
		return "an images file; is this a labels file?"
	case want == MagicLabels && got == MagicImages:
		return "a labels file; is this an images file?"
	default:
		return "an idx file of unsigned bytes; is this an MNIST-format file?"
	}
}

func dimString(dims []int) string {
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = fmt.Sprint(d)
	}
	return strings.Join(s, "x")
}
