package checkpoint

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// pyRepr renders an unpickled value in a Python-like notation for comparisons.
func pyRepr(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64) + "f"
	case string:
		return strconv.Quote(v)
	case pyTuple:
		return "(" + reprItems(v) + ")"
	case *pyList:
		return "[" + reprItems(v.items) + "]"
	case *pyDict:
		parts := make([]string, len(v.keys))
		for i := range v.keys {
			parts[i] = pyRepr(v.keys[i]) + ": " + pyRepr(v.values[i])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	default:
		return fmt.Sprintf("<%T>", v)
	}
}

func reprItems(items []any) string {
	parts := make([]string, len(items))
	for i, x := range items {
		parts[i] = pyRepr(x)
	}
	return strings.Join(parts, ", ")
}

// noGlobals are hooks for plain-value pickles: every reference to the outside world is an error.
var noGlobals = unpickleHooks{
	global:         func(m, n string) (any, error) { return nil, fmt.Errorf("global %s.%s refused", m, n) },
	reduce:         func(any, pyTuple) (any, error) { return nil, fmt.Errorf("reduce refused") },
	build:          func(any, any) error { return fmt.Errorf("build refused") },
	persistentLoad: func(any) (any, error) { return nil, fmt.Errorf("persistent id refused") },
}

// TestUnpicklePlainValues reads pickles that Python's pickle module wrote (testdata/pickle, from
// gen_pickles.py) with protocols 2 and 4, and compares them with the values gen_pickles.py pickled.
func TestUnpicklePlainValues(t *testing.T) {
	tests := map[string]string{
		"ints": "[0, 1, -1, 255, 256, 65535, 65536, -2147483648, 2147483647, 2147483648, -2147483649, " +
			"1099511627776, 9223372036854775807, -9223372036854775808]",
		"floats":  "(1.5f, -0f, 1e+300f, -2.5e-310f)",
		"consts":  "(None, True, False)",
		"tuples":  `((), ("x"), (1, 2), (1, 2, 3), (1, 2, 3, 4))`,
		"strings": `["", "ascii", "été ☃", "` + strings.Repeat("x", 300) + `"]`,
		"dict":    `{"a": 1, "b": [], "c": {}, 5: "five"}`,
		"shared":  `{"p": [1, 2], "q": [1, 2]}`,
		"single":  `{"k": [7]}`,
	}
	for name, want := range tests {
		for _, proto := range []int{2, 4} {
			t.Run(fmt.Sprintf("%s/protocol%d", name, proto), func(t *testing.T) {
				data, err := os.ReadFile(filepath.Join("testdata", "pickle", fmt.Sprintf("%s.p%d.pkl", name, proto)))
				if err != nil {
					t.Fatal(err)
				}
				v, err := unpickle(data, noGlobals)
				if err != nil {
					t.Fatal(err)
				}
				if got := pyRepr(v); got != want {
					t.Errorf("unpickle = %s; want %s", got, want)
				}
				if f, ok := v.(pyTuple); ok && name == "floats" && !math.Signbit(f[1].(float64)) {
					t.Errorf("-0.0 lost its sign")
				}
				if name == "shared" {
					d := v.(*pyDict)
					if d.values[0] != d.values[1] {
						t.Errorf("the list under p and q are two objects, want one (memo)")
					}
				}
			})
		}
	}
}

// pickler writes pickle opcodes for hand-made test pickles.
type pickler struct{ bytes.Buffer }

func (p *pickler) ops(ops ...byte) *pickler { p.Write(ops); return p }

func (p *pickler) str(s string) *pickler {
	p.WriteByte(opBinUnicode)
	p.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(s))))
	p.WriteString(s)
	return p
}

// int writes v the way Python's pickler does: BININT1, BININT2, BININT or LONG1.
func (p *pickler) int(v int64) *pickler {
	switch {
	case v >= 0 && v < 256:
		p.ops(opBinInt1, byte(v))
	case v >= 0 && v < 65536:
		p.ops(opBinInt2, byte(v), byte(v>>8))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		p.ops(opBinInt)
		p.Write(binary.LittleEndian.AppendUint32(nil, uint32(v)))
	default:
		p.ops(opLong1, 8)
		p.Write(binary.LittleEndian.AppendUint64(nil, uint64(v)))
	}
	return p
}

func (p *pickler) ints(vs ...int64) *pickler {
	p.ops(opMark)
	for _, v := range vs {
		p.int(v)
	}
	return p.ops(opTuple)
}

func (p *pickler) global(module, name string) *pickler {
	p.ops(opGlobal)
	p.WriteString(module + "\n" + name + "\n")
	return p
}

// view describes one tensor of a hand-made state dict: a view of a storage.
type view struct {
	name, storage, key string
	numel, offset      int64
	size, stride       []int64
}

// tensor writes _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()) as torch does.
func (p *pickler) tensor(v view) *pickler {
	p.global("torch._utils", "_rebuild_tensor_v2").ops(opMark, opMark)
	p.str("storage").global("torch", v.storage).str(v.key).str("cpu").int(v.numel).ops(opTuple, opBinPersID)
	p.int(v.offset).ints(v.size...).ints(v.stride...).ops(opNewFalse)
	p.global("collections", "OrderedDict").ops(opEmptyTuple, opReduce, opTuple, opReduce)
	return p
}

// stateDict writes an OrderedDict of the views, as torch.save writes a state dict.
func stateDictPickle(views ...view) []byte {
	p := &pickler{}
	p.ops(opProto, 2).global("collections", "OrderedDict").ops(opEmptyTuple, opReduce, opMark)
	for _, v := range views {
		p.str(v.name).tensor(v)
	}
	return p.ops(opSetItems, opStop).Bytes()
}

func TestUnpickleErrors(t *testing.T) {
	tests := []struct {
		name   string
		pickle []byte
		want   string
	}{
		{"empty", nil, "offset 0: the pickle ends without STOP"},
		{"no stop", []byte{opProto, 2, opNone}, "offset 3: the pickle ends without STOP"},
		{"protocol 6", []byte{opProto, 6, opNone, opStop}, "protocol 6 is beyond the highest known, 5"},
		{"unsupported opcode", []byte{opProto, 2, opNone, '0', opStop}, "offset 3: opcode 0x30 POP: not supported"},
		{"unknown opcode", []byte{0xff}, "opcode 0xff unknown: not supported"},
		{"text opcode", []byte("I1\n."), "opcode 0x49 INT: not supported"},
		{"memo miss", []byte{opNone, opBinGet, 5, opStop}, "memo index 5 was never stored"},
		{"huge memo index", []byte{opNone, opLongBinGet, 0xff, 0xff, 0xff, 0xff, opStop}, "memo index 4294967295 was never stored"},
		{"put on empty stack", []byte{opBinPut, 0}, "the stack is empty above the last MARK"},
		{"deep marks", bytes.Repeat([]byte{opMark}, 300), "more than 256 nested MARKs"},
		{"tuple without mark", []byte{opNone, opTuple}, "no MARK to pop to"},
		{"pop below mark", []byte{opNone, opMark, opTuple1}, "needs 1 values, the stack has 0 above the last MARK"},
		{"string past the end", []byte{opBinUnicode, 0xff, 0xff, 0xff, 0x7f, 'a'}, "string of 2147483647 bytes runs past the end of the pickle (1 bytes left)"},
		{"string8 past the end", []byte{opBinUnicode8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "string of 18446744073709551615 bytes runs past the end"},
		{"invalid utf-8", []byte{opShortBinUni, 1, 0xff, opStop}, "string is not valid UTF-8"},
		{"long1 too big", []byte{opLong1, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "integer of 9 bytes does not fit an int64"},
		{"frame past the end", []byte{opFrame, 0xff, 0, 0, 0, 0, 0, 0, 0}, "frame of 255 bytes runs past the end"},
		{"truncated int", []byte{opBinInt, 1, 2}, "needs 4 bytes, 2 left: truncated"},
		{"global without newline", []byte("cos\nsystem"), "no newline within"},
		{"global refused", []byte("cos\nsystem\n."), "global os.system refused"},
		{"stack global not str", []byte{opNone, opNone, opStackGlobal}, "module and name are None and None, want two str"},
		{"duplicate key", (&pickler{}).ops(opEmptyDict).str("a").ops(opNone, opSetItem).str("a").ops(opNone, opSetItem, opStop).Bytes(), `duplicate dict key str "a"`},
		{"unhashable key", (&pickler{}).ops(opEmptyDict, opEmptyTuple, opNone, opSetItem, opStop).Bytes(), "dict key tuple of 0 items: only str and int keys"},
		{"odd setitems", (&pickler{}).ops(opEmptyDict, opMark, opNone, opSetItems, opStop).Bytes(), "1 values for key-value pairs"},
		{"setitem on list", []byte{opEmptyList, opNone, opNone, opSetItem, opStop}, "setting items of a list of 0 items, want a dict"},
		{"append to dict", []byte{opEmptyDict, opNone, opAppend, opStop}, "appending to a dict of 0 items, want a list"},
		{"reduce args not tuple", []byte{opNone, opNone, opReduce}, "arguments are a None, want a tuple"},
		{"two values at stop", []byte{opNone, opNone, opStop}, "STOP with 2 values on the stack, want 1"},
		{"open mark at stop", []byte{opNone, opMark, opStop}, "STOP with 1 open MARKs"},
		{"bytes after stop", []byte{opNone, opStop, opNone}, "1 bytes after STOP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := unpickle(tc.pickle, noGlobals)
			wantError(t, err, tc.want)
		})
	}
}

// TestUnpickleDeepTuples builds a million nested tuples: nothing may recurse over values.
func TestUnpickleDeepTuples(t *testing.T) {
	p := append([]byte{opNone}, bytes.Repeat([]byte{opTuple1}, 1_000_000)...)
	v, err := unpickle(append(p, opStop), noGlobals)
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(v); got != "tuple of 1 items" {
		t.Errorf("describe = %q", got)
	}
}
