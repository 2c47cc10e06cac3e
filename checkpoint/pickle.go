package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// The pickle values this reader builds. None is nil; ints are int64, floats float64, bools bool and
// strings string.
type (
	pyTuple []any
	pyList  struct{ items []any }
	// pyDict is a dict or OrderedDict: insertion-ordered, with string or int keys only.
	pyDict struct {
		keys, values []any
		index        map[any]int
	}
	// pyGlobal is a class or function that a GLOBAL or STACK_GLOBAL named and the allow-list admitted.
	pyGlobal struct{ module, name string }
)

func newDict() *pyDict { return &pyDict{index: make(map[any]int)} }

// maxKeyLen bounds dict keys (tensor names), so that hashing one long string memoized and reused as
// the key of many dicts cannot take time quadratic in the pickle's length.
const maxKeyLen = 4096

func (d *pyDict) set(key, value any) error {
	switch k := key.(type) {
	case string:
		if len(k) > maxKeyLen {
			return fmt.Errorf("dict key of %d bytes: longer than %d", len(k), maxKeyLen)
		}
	case int64:
	default:
		return fmt.Errorf("dict key %s: only str and int keys are supported", describe(key))
	}
	if _, dup := d.index[key]; dup {
		return fmt.Errorf("duplicate dict key %s", describe(key))
	}
	d.index[key] = len(d.keys)
	d.keys = append(d.keys, key)
	d.values = append(d.values, value)
	return nil
}

func (g pyGlobal) String() string { return g.module + "." + g.name }

// describe names a pickle value for error messages without walking into it.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case int64:
		return fmt.Sprintf("int %d", v)
	case float64:
		return fmt.Sprintf("float %g", v)
	case string:
		if len(v) > 60 {
			v = v[:60] + "..."
		}
		return fmt.Sprintf("str %q", v)
	case pyTuple:
		return fmt.Sprintf("tuple of %d items", len(v))
	case *pyList:
		return fmt.Sprintf("list of %d items", len(v.items))
	case *pyDict:
		return fmt.Sprintf("dict of %d items", len(v.keys))
	case pyGlobal:
		return v.String()
	case *torchStorage:
		return fmt.Sprintf("storage %q (%s)", v.key, v.dtype)
	case *Tensor:
		return "tensor " + v.String()
	default:
		return fmt.Sprintf("%T", v)
	}
}

// unpickleHooks give meaning to the opcodes that refer to the outside world. The unpickler itself only
// moves values around; nothing is ever executed.
type unpickleHooks struct {
	// global resolves GLOBAL and STACK_GLOBAL; it refuses names outside its allow-list.
	global func(module, name string) (any, error)
	// reduce applies a callable that global returned to its arguments (REDUCE).
	reduce func(callable any, args pyTuple) (any, error)
	// build applies a state to an object (BUILD).
	build func(obj, state any) error
	// persistentLoad resolves a persistent id (BINPERSID).
	persistentLoad func(pid any) (any, error)
}

// maxMarkDepth bounds nested MARKs (a torch state dict uses at most three).
const maxMarkDepth = 256

// pickle opcodes (Python's Lib/pickle.py names).
const (
	opMark           = '('
	opStop           = '.'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opBinInt2        = 'M'
	opNone           = 'N'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opAppends        = 'e'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opEmptyList      = ']'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetItems       = 'u'
	opBinFloat       = 'G'
	opEmptyDict      = '}'
	opProto          = 0x80
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opShortBinUni    = 0x8c
	opBinUnicode8    = 0x8d
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
	highestProtocol  = 5
	maxGlobalNameLen = 256
)

// opcodeNames names every pickle opcode, supported or not, for error messages.
var opcodeNames = map[byte]string{
	'(': "MARK", '.': "STOP", '0': "POP", '1': "POP_MARK", '2': "DUP", 'F': "FLOAT", 'I': "INT",
	'J': "BININT", 'K': "BININT1", 'L': "LONG", 'M': "BININT2", 'N': "NONE", 'P': "PERSID",
	'Q': "BINPERSID", 'R': "REDUCE", 'S': "STRING", 'T': "BINSTRING", 'U': "SHORT_BINSTRING",
	'V': "UNICODE", 'X': "BINUNICODE", 'a': "APPEND", 'b': "BUILD", 'c': "GLOBAL", 'd': "DICT",
	'}': "EMPTY_DICT", 'e': "APPENDS", 'g': "GET", 'h': "BINGET", 'i': "INST", 'j': "LONG_BINGET",
	'l': "LIST", ']': "EMPTY_LIST", 'o': "OBJ", 'p': "PUT", 'q': "BINPUT", 'r': "LONG_BINPUT",
	's': "SETITEM", 't': "TUPLE", ')': "EMPTY_TUPLE", 'u': "SETITEMS", 'G': "BINFLOAT",
	0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1",
	0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4",
	'B': "BINBYTES", 'C': "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8",
	0x8e: "BINBYTES8", 0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX",
	0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER",
	0x98: "READONLY_BUFFER",
}

func opcodeName(op byte) string {
	if name, ok := opcodeNames[op]; ok {
		return name
	}
	return "unknown"
}

// unpickler runs a pickle program: a stack machine whose opcodes push values, pop them into
// containers, and finally STOP with the result on the stack.
type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int // stack lengths at each open MARK
	memo  map[uint64]any
	hooks unpickleHooks
}

// unpickle runs the pickle in data and returns its value. Every length and index in data is checked
// against what is actually there before anything is allocated; errors name the opcode and its offset.
func unpickle(data []byte, hooks unpickleHooks) (any, error) {
	u := &unpickler{data: data, memo: make(map[uint64]any), hooks: hooks}
	for {
		start := u.pos
		if u.pos >= len(u.data) {
			return nil, fmt.Errorf("offset %d: the pickle ends without STOP: truncated", start)
		}
		op := u.data[u.pos]
		u.pos++
		if op == opStop {
			switch {
			case len(u.marks) > 0:
				return nil, fmt.Errorf("offset %d: STOP with %d open MARKs", start, len(u.marks))
			case len(u.stack) != 1:
				return nil, fmt.Errorf("offset %d: STOP with %d values on the stack, want 1", start, len(u.stack))
			case u.pos != len(u.data):
				return nil, fmt.Errorf("offset %d: %d bytes after STOP", start, len(u.data)-u.pos)
			}
			return u.stack[0], nil
		}
		if err := u.step(op); err != nil {
			return nil, fmt.Errorf("offset %d: opcode 0x%02x %s: %w", start, op, opcodeName(op), err)
		}
	}
}

var errUnsupported = errors.New("not supported in a torch state dict (nothing but state dicts of tensors can be read)")

func (u *unpickler) step(op byte) error {
	switch op {
	case opProto:
		b, err := u.read(1)
		if err != nil {
			return err
		}
		if b[0] > highestProtocol {
			return fmt.Errorf("protocol %d is beyond the highest known, %d", b[0], highestProtocol)
		}
	case opFrame:
		// Frames only group opcodes for buffered reading; the opcodes inside are read as usual.
		b, err := u.read(8)
		if err != nil {
			return err
		}
		if n := binary.LittleEndian.Uint64(b); n > uint64(len(u.data)-u.pos) {
			return fmt.Errorf("frame of %d bytes runs past the end of the pickle", n)
		}
	case opMark:
		if len(u.marks) >= maxMarkDepth {
			return fmt.Errorf("more than %d nested MARKs", maxMarkDepth)
		}
		u.marks = append(u.marks, len(u.stack))
	case opEmptyDict:
		u.push(newDict())
	case opEmptyList:
		u.push(&pyList{})
	case opEmptyTuple:
		u.push(pyTuple{})
	case opNone:
		u.push(nil)
	case opNewTrue:
		u.push(true)
	case opNewFalse:
		u.push(false)
	case opBinInt:
		b, err := u.read(4)
		if err != nil {
			return err
		}
		u.push(int64(int32(binary.LittleEndian.Uint32(b))))
	case opBinInt1:
		b, err := u.read(1)
		if err != nil {
			return err
		}
		u.push(int64(b[0]))
	case opBinInt2:
		b, err := u.read(2)
		if err != nil {
			return err
		}
		u.push(int64(binary.LittleEndian.Uint16(b)))
	case opLong1:
		return u.long1()
	case opBinFloat:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
	case opShortBinUni, opBinUnicode, opBinUnicode8:
		return u.unicode(op)
	case opBinPut, opLongBinPut:
		width := 1
		if op == opLongBinPut {
			width = 4
		}
		i, err := u.readUint(width)
		if err != nil {
			return err
		}
		return u.put(i)
	case opMemoize:
		return u.put(uint64(len(u.memo)))
	case opBinGet, opLongBinGet:
		width := 1
		if op == opLongBinGet {
			width = 4
		}
		i, err := u.readUint(width)
		if err != nil {
			return err
		}
		v, ok := u.memo[i]
		if !ok {
			return fmt.Errorf("memo index %d was never stored", i)
		}
		u.push(v)
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opTuple1, opTuple2, opTuple3:
		items, err := u.popN(int(op-opTuple1) + 1)
		if err != nil {
			return err
		}
		u.push(pyTuple(items))
	case opAppend, opAppends:
		return u.appends(op)
	case opSetItem, opSetItems:
		return u.setItems(op)
	case opGlobal:
		module, err := u.readLine()
		if err != nil {
			return err
		}
		name, err := u.readLine()
		if err != nil {
			return err
		}
		return u.global(module, name)
	case opStackGlobal:
		items, err := u.popN(2)
		if err != nil {
			return err
		}
		module, ok1 := items[0].(string)
		name, ok2 := items[1].(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("module and name are %s and %s, want two str", describe(items[0]), describe(items[1]))
		}
		return u.global(module, name)
	case opReduce:
		items, err := u.popN(2)
		if err != nil {
			return err
		}
		args, ok := items[1].(pyTuple)
		if !ok {
			return fmt.Errorf("arguments are a %s, want a tuple", describe(items[1]))
		}
		v, err := u.hooks.reduce(items[0], args)
		if err != nil {
			return err
		}
		u.push(v)
	case opBuild:
		items, err := u.popN(2)
		if err != nil {
			return err
		}
		if err := u.hooks.build(items[0], items[1]); err != nil {
			return err
		}
		u.push(items[0])
	case opBinPersID:
		items, err := u.popN(1)
		if err != nil {
			return err
		}
		v, err := u.hooks.persistentLoad(items[0])
		if err != nil {
			return err
		}
		u.push(v)
	default:
		return errUnsupported
	}
	return nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

// base returns the stack length at the innermost open MARK: values below it are not reachable.
func (u *unpickler) base() int {
	if len(u.marks) == 0 {
		return 0
	}
	return u.marks[len(u.marks)-1]
}

// popN pops the top n values, returned in stack order in a new slice.
func (u *unpickler) popN(n int) ([]any, error) {
	if len(u.stack)-u.base() < n {
		return nil, fmt.Errorf("needs %d values, the stack has %d above the last MARK", n, len(u.stack)-u.base())
	}
	k := len(u.stack) - n
	items := append([]any(nil), u.stack[k:]...)
	clear(u.stack[k:])
	u.stack = u.stack[:k]
	return items, nil
}

// popMark pops the values above the innermost MARK, and the MARK.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, errors.New("no MARK to pop to")
	}
	items, err := u.popN(len(u.stack) - u.base())
	u.marks = u.marks[:len(u.marks)-1]
	return items, err
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) <= u.base() {
		return nil, errors.New("the stack is empty above the last MARK")
	}
	return u.stack[len(u.stack)-1], nil
}

func (u *unpickler) put(i uint64) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	u.memo[i] = v
	return nil
}

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, fmt.Errorf("needs %d bytes, %d left: truncated", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

// readUint reads a little-endian unsigned integer of width 1, 4 or 8 bytes.
func (u *unpickler) readUint(width int) (uint64, error) {
	b, err := u.read(width)
	if err != nil {
		return 0, err
	}
	switch width {
	case 1:
		return uint64(b[0]), nil
	case 4:
		return uint64(binary.LittleEndian.Uint32(b)), nil
	default:
		return binary.LittleEndian.Uint64(b), nil
	}
}

func (u *unpickler) readLine() (string, error) {
	rest := u.data[u.pos:]
	if len(rest) > maxGlobalNameLen+1 {
		rest = rest[:maxGlobalNameLen+1]
	}
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		return "", fmt.Errorf("no newline within %d bytes", len(rest))
	}
	s := string(rest[:i])
	u.pos += i + 1
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("name %q is not valid UTF-8", s)
	}
	return s, nil
}

// long1 reads LONG1: a length byte n, then an n-byte little-endian two's complement integer. Only
// integers that fit an int64 are accepted.
func (u *unpickler) long1() error {
	nb, err := u.read(1)
	if err != nil {
		return err
	}
	n := int(nb[0])
	if n > 8 {
		return fmt.Errorf("integer of %d bytes does not fit an int64", n)
	}
	b, err := u.read(n)
	if err != nil {
		return err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if n > 0 && n < 8 && b[n-1]&0x80 != 0 {
		v |= math.MaxUint64 << (8 * n) // sign-extend
	}
	u.push(int64(v))
	return nil
}

func (u *unpickler) unicode(op byte) error {
	width := 4
	switch op {
	case opShortBinUni:
		width = 1
	case opBinUnicode8:
		width = 8
	}
	n, err := u.readUint(width)
	if err != nil {
		return err
	}
	if n > uint64(len(u.data)-u.pos) {
		return fmt.Errorf("string of %d bytes runs past the end of the pickle (%d bytes left)", n, len(u.data)-u.pos)
	}
	b, _ := u.read(int(n))
	if !utf8.Valid(b) {
		return errors.New("string is not valid UTF-8")
	}
	u.push(string(b))
	return nil
}

func (u *unpickler) appends(op byte) error {
	var items []any
	var err error
	if op == opAppend {
		items, err = u.popN(1)
	} else {
		items, err = u.popMark()
	}
	if err != nil {
		return err
	}
	target, err := u.top()
	if err != nil {
		return err
	}
	list, ok := target.(*pyList)
	if !ok {
		return fmt.Errorf("appending to a %s, want a list", describe(target))
	}
	list.items = append(list.items, items...)
	return nil
}

func (u *unpickler) setItems(op byte) error {
	var items []any
	var err error
	if op == opSetItem {
		items, err = u.popN(2)
	} else {
		items, err = u.popMark()
	}
	if err != nil {
		return err
	}
	if len(items)%2 != 0 {
		return fmt.Errorf("%d values for key-value pairs", len(items))
	}
	target, err := u.top()
	if err != nil {
		return err
	}
	dict, ok := target.(*pyDict)
	if !ok {
		return fmt.Errorf("setting items of a %s, want a dict", describe(target))
	}
	for i := 0; i < len(items); i += 2 {
		if err := dict.set(items[i], items[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (u *unpickler) global(module, name string) error {
	v, err := u.hooks.global(module, name)
	if err != nil {
		return err
	}
	u.push(v)
	return nil
}
