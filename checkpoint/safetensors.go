package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ddpm/ddpm/internal/atomicfile"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strconv"
	"unicode/utf8"
)

// maxSafetensorsHeader bounds the JSON header, as the reference implementation does (100 MB), so that
// a corrupt length never causes a huge allocation.
const maxSafetensorsHeader = 100_000_000

// metadataKey is the reserved header key of the string metadata.
const metadataKey = "__metadata__"

// ReadSafetensors reads a .safetensors file. See DecodeSafetensors for the checks, which it makes before
// allocating anything beyond the header: it allocates the file's size once the header has shown that
// the tensors tile the file exactly.
func ReadSafetensors(path string) (*File, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	size := st.Size()
	// Check the header length against the file size before reading the whole file, so that reading a
	// file of another format by mistake fails at once.
	if size < 8 {
		return nil, tooShortError(path, int(size))
	}
	var prefix [8]byte
	if _, err := io.ReadFull(fd, prefix[:]); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	if err := checkHeaderLength(path, prefix[:], size); err != nil {
		return nil, err
	}
	// Parse the header and check that the tensors tile the rest of the file before allocating for the
	// data: a short header claiming a huge file (or a sparse one) costs nothing.
	n := int64(binary.LittleEndian.Uint64(prefix[:]))
	areaLen := size - 8 - n
	if areaLen > math.MaxInt {
		return nil, fmt.Errorf("checkpoint: %s: %d bytes do not fit in memory on this platform", path, size)
	}
	header := make([]byte, n)
	if _, err := fd.ReadAt(header, 8); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	entries, metadata, err := parseSafetensorsHeader(header, int(areaLen))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	area := make([]byte, areaLen)
	if _, err := fd.ReadAt(area, 8+n); err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	return newFile(entries, metadata, area), nil
}

// DecodeSafetensors decodes a safetensors file held in data. The tensors' Data alias data (each its own
// non-overlapping, capacity-limited slice of it).
//
// It checks that the header length fits the file and 100 MB, that the header is UTF-8 JSON with no
// duplicate keys, that every tensor has a known dtype, non-negative dimensions whose product does not
// overflow, and data_offsets [begin, end) holding exactly product(shape) * size(dtype) bytes, and that
// the tensors tile the data area: no gap, no overlap, no byte left over.
func DecodeSafetensors(data []byte) (*File, error) {
	return decodeSafetensors("safetensors", data)
}

func tooShortError(name string, size int) error {
	return fmt.Errorf("checkpoint: %s: %d bytes, shorter than the 8-byte header length: not a safetensors file", name, size)
}

// checkHeaderLength checks the header length in the file's first 8 bytes against the limit and the
// file size.
func checkHeaderLength(name string, prefix []byte, size int64) error {
	n := binary.LittleEndian.Uint64(prefix)
	if n > maxSafetensorsHeader {
		if bytes.HasPrefix(prefix, []byte("PK\x03\x04")) {
			return fmt.Errorf("checkpoint: %s: a zip archive, not a safetensors file (torch.save writes zip archives: use ReadTorch)", name)
		}
		return fmt.Errorf("checkpoint: %s: header length %d is beyond the %d-byte limit: not a safetensors file, or a corrupt one", name, n, maxSafetensorsHeader)
	}
	if int64(n) > size-8 {
		return fmt.Errorf("checkpoint: %s: header length %d runs past the end of the file (%d bytes): truncated, or not a safetensors file", name, n, size)
	}
	return nil
}

// safetensorsEntry is one tensor of a safetensors header.
type safetensorsEntry struct {
	name       string
	dtype      DType
	shape      []int
	begin, end int
}

func decodeSafetensors(name string, data []byte) (*File, error) {
	if len(data) < 8 {
		return nil, tooShortError(name, len(data))
	}
	if err := checkHeaderLength(name, data[:8], int64(len(data))); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(data)
	area := data[8+n:]
	entries, metadata, err := parseSafetensorsHeader(data[8:8+n], len(area))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %w", name, err)
	}
	return newFile(entries, metadata, area), nil
}

// newFile makes the File of checked entries whose data area is area: each tensor's Data is its own
// non-overlapping, capacity-limited slice of area.
func newFile(entries []safetensorsEntry, metadata map[string]string, area []byte) *File {
	f := &File{Tensors: make(map[string]*Tensor, len(entries)), Metadata: metadata}
	for _, e := range entries {
		f.Tensors[e.name] = &Tensor{DType: e.dtype, Shape: e.shape, Data: area[e.begin:e.end:e.end]}
	}
	return f
}

// parseSafetensorsHeader parses and checks the JSON header against a data area of areaLen bytes.
func parseSafetensorsHeader(header []byte, areaLen int) ([]safetensorsEntry, map[string]string, error) {
	if !utf8.Valid(header) {
		return nil, nil, errors.New("header is not valid UTF-8: not a safetensors file")
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, nil, fmt.Errorf("header: %w: not a safetensors file", err)
	}
	var (
		entries  []safetensorsEntry
		metadata map[string]string
		seen     = make(map[string]bool)
	)
	for dec.More() {
		key, err := stringToken(dec)
		if err != nil {
			return nil, nil, fmt.Errorf("header: %w", err)
		}
		if seen[key] {
			return nil, nil, fmt.Errorf("header: duplicate key %q", key)
		}
		seen[key] = true
		if key == metadataKey {
			if metadata, err = parseStringMap(dec); err != nil {
				return nil, nil, fmt.Errorf("header: %s: %w", metadataKey, err)
			}
			continue
		}
		e, err := parseTensorInfo(dec, key, areaLen)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", key, err)
		}
		entries = append(entries, e)
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	if rest := bytes.TrimLeft(header[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return nil, nil, fmt.Errorf("header: %d bytes after the JSON object", len(rest))
	}
	if err := checkTiling(entries, areaLen); err != nil {
		return nil, nil, err
	}
	return entries, metadata, nil
}

// checkTiling checks that the tensors' byte ranges cover [0, areaLen) exactly once.
func checkTiling(entries []safetensorsEntry, areaLen int) error {
	order := make([]*safetensorsEntry, len(entries))
	for i := range entries {
		order[i] = &entries[i]
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].begin != order[j].begin {
			return order[i].begin < order[j].begin
		}
		return order[i].end < order[j].end
	})
	pos, prev := 0, ""
	for _, e := range order {
		switch {
		case e.begin > pos:
			return fmt.Errorf("tensor %q: data_offsets [%d,%d) leave a gap of %d bytes after offset %d: tensors must cover the data area exactly", e.name, e.begin, e.end, e.begin-pos, pos)
		case e.begin < pos:
			return fmt.Errorf("tensor %q: data_offsets [%d,%d) overlap tensor %q, which ends at %d", e.name, e.begin, e.end, prev, pos)
		}
		if e.end > e.begin {
			pos, prev = e.end, e.name
		}
	}
	if pos != areaLen {
		return fmt.Errorf("data area has %d bytes, the tensors cover %d: %d bytes not covered", areaLen, pos, areaLen-pos)
	}
	return nil
}

func parseTensorInfo(dec *json.Decoder, name string, areaLen int) (safetensorsEntry, error) {
	e := safetensorsEntry{name: name}
	if err := expectDelim(dec, '{'); err != nil {
		return e, err
	}
	var offsets []int64
	seen := make(map[string]bool)
	for dec.More() {
		key, err := stringToken(dec)
		if err != nil {
			return e, err
		}
		if seen[key] {
			return e, fmt.Errorf("duplicate field %q", key)
		}
		seen[key] = true
		switch key {
		case "dtype":
			s, err := stringToken(dec)
			if err != nil {
				return e, fmt.Errorf("dtype: %w", err)
			}
			e.dtype = DType(s)
			if e.dtype.Size() == 0 {
				return e, fmt.Errorf("unknown dtype %q (known: %s)", s, knownDTypes())
			}
		case "shape":
			dims, err := intArray(dec)
			if err != nil {
				return e, fmt.Errorf("shape: %w", err)
			}
			e.shape = make([]int, len(dims))
			for i, d := range dims {
				if d < 0 {
					return e, fmt.Errorf("shape %v: negative dimension", dims)
				}
				e.shape[i] = int(d)
			}
		case "data_offsets":
			if offsets, err = intArray(dec); err != nil {
				return e, fmt.Errorf("data_offsets: %w", err)
			}
		default:
			return e, fmt.Errorf("unknown field %q (want dtype, shape, data_offsets)", key)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return e, err
	}
	for _, field := range []string{"dtype", "shape", "data_offsets"} {
		if !seen[field] {
			return e, fmt.Errorf("no %q field", field)
		}
	}
	if len(offsets) != 2 || offsets[0] < 0 || offsets[1] < offsets[0] {
		return e, fmt.Errorf("data_offsets %v: want [begin, end] with 0 <= begin <= end", offsets)
	}
	if offsets[1] > int64(areaLen) {
		return e, fmt.Errorf("data_offsets [%d,%d) run past the end of the data area (%d bytes)", offsets[0], offsets[1], areaLen)
	}
	e.begin, e.end = int(offsets[0]), int(offsets[1])
	n, ok := numElements(e.shape)
	hi, nbytes := bits.Mul64(uint64(n), uint64(e.dtype.Size()))
	if !ok || hi != 0 || nbytes > math.MaxInt64 {
		return e, fmt.Errorf("shape %v: the element count overflows", e.shape)
	}
	if uint64(e.end-e.begin) != nbytes {
		return e, fmt.Errorf("data_offsets [%d,%d) hold %d bytes, want %d for %s %v", e.begin, e.end, e.end-e.begin, nbytes, e.dtype, e.shape)
	}
	return e, nil
}

// parseStringMap reads a JSON object of strings; null reads as a nil map, as the reference
// implementation accepts it.
func parseStringMap(dec *json.Decoder) (map[string]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonError(err)
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("got %s, want \"{\"", describeToken(tok))
	}
	m := make(map[string]string)
	for dec.More() {
		key, err := stringToken(dec)
		if err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		if m[key], err = stringToken(dec); err != nil {
			return nil, fmt.Errorf("key %q: %w", key, err)
		}
	}
	return m, expectDelim(dec, '}')
}

// intArray reads a JSON array of integers. Every number must be an integer that fits an int64.
func intArray(dec *json.Decoder) ([]int64, error) {
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	var out []int64
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonError(err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("got %s, want an integer", describeToken(tok))
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s is not an integer in the int64 range", num)
		}
		out = append(out, v)
	}
	return out, expectDelim(dec, ']')
}

func stringToken(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", jsonError(err)
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("got %s, want a string", describeToken(tok))
	}
	return s, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("got %s, want %q", describeToken(tok), string(want))
	}
	return nil
}

func jsonError(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", string(v))
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("string %q", v)
	case json.Number:
		return "number " + string(v)
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T %v", v, v)
	}
}

// WriteSafetensors writes f to path atomically: to a temporary file in the same directory, synced,
// then renamed over path, so that an error never leaves a partial file (nor touches an existing one).
// See EncodeSafetensors for the layout.
func WriteSafetensors(path string, f *File) error {
	header, order, err := prepareSafetensors(f)
	if err != nil {
		return fmt.Errorf("checkpoint: %s: %w", path, err)
	}
	return writeAtomic(path, func(w io.Writer) error {
		return writeSafetensors(w, header, order)
	})
}

// EncodeSafetensors writes f in the safetensors format the way the reference implementation does:
// tensors sorted by descending dtype (BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32,
// F32, F64, I64, U64 in reverse; this keeps each tensor aligned to its element size), then by name;
// compact JSON with "__metadata__" (its keys sorted) first when f.Metadata is not nil; the header
// padded with spaces to a multiple of 8 bytes. Every tensor is validated before anything is written.
func EncodeSafetensors(w io.Writer, f *File) error {
	header, order, err := prepareSafetensors(f)
	if err != nil {
		return fmt.Errorf("checkpoint: safetensors: %w", err)
	}
	if err := writeSafetensors(w, header, order); err != nil {
		return fmt.Errorf("checkpoint: writing safetensors: %w", err)
	}
	return nil
}

func writeSafetensors(w io.Writer, header []byte, order []*Tensor) error {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(header); err != nil {
		return err
	}
	for _, t := range order {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// prepareSafetensors validates f and returns the padded header and the tensors in data order.
func prepareSafetensors(f *File) ([]byte, []*Tensor, error) {
	names := make([]string, 0, len(f.Tensors))
	for name, t := range f.Tensors {
		switch {
		case name == metadataKey:
			return nil, nil, fmt.Errorf("tensor name %q is reserved for the metadata", name)
		case !utf8.ValidString(name):
			return nil, nil, fmt.Errorf("tensor name %q is not valid UTF-8", name)
		case t == nil:
			return nil, nil, fmt.Errorf("tensor %q is nil", name)
		}
		if err := t.Validate(); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		ri, rj := dtypeInfo[f.Tensors[names[i]].DType].rank, dtypeInfo[f.Tensors[names[j]].DType].rank
		if ri != rj {
			return ri > rj
		}
		return names[i] < names[j]
	})

	var b bytes.Buffer
	b.WriteByte('{')
	if f.Metadata != nil {
		keys := make([]string, 0, len(f.Metadata))
		for k, v := range f.Metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, nil, fmt.Errorf("metadata %q: not valid UTF-8", k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		writeJSONString(&b, metadataKey)
		b.WriteString(":{")
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, f.Metadata[k])
		}
		b.WriteByte('}')
	}
	order := make([]*Tensor, len(names))
	offset := 0
	for i, name := range names {
		t := f.Tensors[name]
		order[i] = t
		if i > 0 || f.Metadata != nil {
			b.WriteByte(',')
		}
		writeJSONString(&b, name)
		b.WriteString(`:{"dtype":`)
		writeJSONString(&b, string(t.DType))
		b.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, offset, offset+len(t.Data))
		offset += len(t.Data)
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > maxSafetensorsHeader {
		return nil, nil, fmt.Errorf("header of %d bytes is beyond the %d-byte limit readers accept", b.Len(), maxSafetensorsHeader)
	}
	return b.Bytes(), order, nil
}

// writeJSONString writes s as a JSON string escaped the way serde_json does: `"`, `\` and the control
// characters below U+0020 only (\b \t \n \f \r by name, the others as \u00xx); everything else verbatim.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// writeAtomic writes a file through write into a temporary file in path's directory, syncs it and
// renames it to path. On any error path is left as it was (internal/atomicfile).
func writeAtomic(path string, write func(io.Writer) error) error {
	if err := atomicfile.Write(path, write); err != nil {
		return fmt.Errorf("checkpoint: writing %s: %w", path, err)
	}
	return nil
}
