package backend

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fakeCompilation stands for one PJRT_Client_Compile call: it "compiles" to program, and records what the
// cache asked of it.
type fakeCompilation struct {
	program                  string
	compileErr, serializeErr error
	compiled, serialized     int
	loaded                   []byte
	loadErr                  error
}

func (f *fakeCompilation) compile() error {
	f.compiled++
	return f.compileErr
}

func (f *fakeCompilation) serialize() ([]byte, error) {
	f.serialized++
	return []byte("exe:" + f.program), f.serializeErr
}

func (f *fakeCompilation) load(data []byte) error {
	if f.loadErr != nil {
		return f.loadErr
	}
	if !strings.HasPrefix(string(data), "exe:") {
		return errors.New("not an executable")
	}
	f.loaded = data
	return nil
}

func TestExecCacheStoresThenLoads(t *testing.T) {
	dir := t.TempDir()
	e := &execCache{dir: dir}
	first := &fakeCompilation{program: "step"}
	if err := e.get("k1", first); err != nil {
		t.Fatal(err)
	}
	if first.compiled != 1 || first.serialized != 1 {
		t.Fatalf("first call compiled %d, serialized %d times; want 1, 1", first.compiled, first.serialized)
	}
	second := &fakeCompilation{program: "step"}
	if err := e.get("k1", second); err != nil {
		t.Fatal(err)
	}
	if second.compiled != 0 || string(second.loaded) != "exe:step" {
		t.Errorf("second call compiled %d times and loaded %q; want 0 and the stored entry", second.compiled, second.loaded)
	}
	other := &fakeCompilation{program: "sample"}
	if err := e.get("k2", other); err != nil || other.compiled != 1 {
		t.Errorf("another key: compiled %d times (err %v); want a compilation of its own", other.compiled, err)
	}
	if s := e.stats; s.Loaded != 1 || s.Compiled != 2 || s.Stored != 2 || s.Problem != "" {
		t.Errorf("stats %+v; want 1 loaded, 2 compiled, 2 stored, no problem", s)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 2 {
		t.Errorf("cache holds %v; want the two entries and no temporary files", files)
	}
}

func TestExecCacheReplacesADamagedEntry(t *testing.T) {
	good := encodeEntry([]byte("exe:step"))
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1
	version := bytes.Clone(good)
	version[8] = 2
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"garbage":   {[]byte("garbage from a crash or another plugin"), "not a ddpm cache entry"},
		"truncated": {good[:len(good)-2], "truncated"},
		"flipped":   {flipped, "checksum mismatch"},
		"version":   {version, "entry format version 2, want 1"},
		"empty":     {nil, "not a ddpm cache entry"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "k.pjrt")
			os.WriteFile(path, c.data, 0o644)
			e := &execCache{dir: dir}
			f := &fakeCompilation{program: "step"}
			if err := e.get("k", f); err != nil {
				t.Fatal(err)
			}
			if f.compiled != 1 || f.loaded != nil {
				t.Fatalf("compiled %d times, loaded %q; want the damaged entry compiled again, never handed to the plugin", f.compiled, f.loaded)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, good) {
				t.Errorf("entry holds %q after recompiling; want the new executable's entry", b)
			}
			if !strings.Contains(e.stats.Problem, "damaged") || !strings.Contains(e.stats.Problem, c.want) {
				t.Errorf("problem %q; want it to say the entry is damaged: %s", e.stats.Problem, c.want)
			}
		})
	}
}

func TestExecCacheWithoutSerializationStillCompiles(t *testing.T) {
	dir := t.TempDir()
	e := &execCache{dir: dir}
	c := &fakeCompilation{program: "a", serializeErr: errors.New("UNIMPLEMENTED")}
	if err := e.get("a", c); err != nil {
		t.Fatalf("a plugin that cannot serialize made the compile fail: %v", err)
	}
	d := &fakeCompilation{program: "b"}
	e.get("b", d)
	if d.compiled != 1 || d.serialized != 0 {
		t.Errorf("after a failed serialization: compiled %d, serialized %d; want 1 and 0 (stop trying)", d.compiled, d.serialized)
	}
	if !strings.Contains(e.stats.Problem, "UNIMPLEMENTED") {
		t.Errorf("problem %q; want the plugin's message", e.stats.Problem)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 0 {
		t.Errorf("cache holds %v; want nothing", files)
	}
}

func TestExecCacheCompileErrorIsReturned(t *testing.T) {
	e := &execCache{dir: t.TempDir()}
	c := &fakeCompilation{compileErr: errCompile}
	if err := e.get("k", c); !errors.Is(err, errCompile) {
		t.Errorf("get = %v; want the compile error", err)
	}
	if c.serialized != 0 || e.stats.Stored != 0 {
		t.Errorf("a failed compile was serialized (%d) or stored (%d)", c.serialized, e.stats.Stored)
	}
}

func TestExecCacheOffOnlyCompiles(t *testing.T) {
	e := &execCache{}
	c := &fakeCompilation{program: "x"}
	if err := e.get("k", c); err != nil || c.compiled != 1 || c.serialized != 0 {
		t.Errorf("without a dir: err %v, compiled %d, serialized %d; want nil, 1, 0", err, c.compiled, c.serialized)
	}
}

func TestEntryKeyCoversEveryPart(t *testing.T) {
	base := entryKey([]byte("mlir"), []byte("code"), []byte("opts"), "--flag=1")
	for name, k := range map[string]string{
		"format":  entryKey([]byte("hlo"), []byte("code"), []byte("opts"), "--flag=1"),
		"code":    entryKey([]byte("mlir"), []byte("code2"), []byte("opts"), "--flag=1"),
		"options": entryKey([]byte("mlir"), []byte("code"), []byte("opts2"), "--flag=1"),
		"flags":   entryKey([]byte("mlir"), []byte("code"), []byte("opts"), "--flag=2"),
		"split":   entryKey([]byte("mlir"), []byte("cod"), []byte("eopts"), "--flag=1"),
	} {
		if k == base {
			t.Errorf("changing the %s does not change the key", name)
		}
	}
	if again := entryKey([]byte("mlir"), []byte("code"), []byte("opts"), "--flag=1"); again != base {
		t.Errorf("key not stable: %s, %s", base, again)
	}
}

// TestPJRTLayoutMatchesTheHeader: execcache.c declares the parts of PJRT's C API it uses by position and
// asserts each offset and function index (_Static_assert) against pjrt_c_api.h, so a mismatch fails the
// build. This test checks that the header it asserts against is go-xla's own, and that every struct
// execcache.c declares and every index execcache.h lists is asserted.
func TestPJRTLayoutMatchesTheHeader(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gomlx/go-xla").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/gomlx/go-xla: %v", err)
	}
	theirs, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "pkg", "pjrt", "pjrt_c_api.h"))
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile("pjrt_c_api.h")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, theirs) {
		t.Fatal("backend/pjrt_c_api.h differs from go-xla's pkg/pjrt/pjrt_c_api.h: copy go-xla's over it and rebuild (the build asserts the layouts against it)")
	}
	c, _ := os.ReadFile("execcache.c")
	src := string(c)
	structs := regexp.MustCompile(`(?m)^} (\w+);`).FindAllStringSubmatch(src, -1)
	if len(structs) < 12 {
		t.Fatalf("found %d struct typedefs in execcache.c; want at least 12", len(structs))
	}
	for _, m := range structs {
		if m[1] != "api_table" && !strings.Contains(src, "SAME_OFFSET("+m[1]+",") {
			t.Errorf("execcache.c: struct %s has no SAME_OFFSET assertion", m[1])
		}
	}
	h, _ := os.ReadFile("execcache.h")
	enum := regexp.MustCompile(`DDPM_(PJRT_\w+) = \d+`).FindAllStringSubmatch(string(h), -1)
	if len(enum) < 10 {
		t.Fatalf("found %d function indices in execcache.h; want 10", len(enum))
	}
	for _, m := range enum {
		if !strings.Contains(src, "FN_INDEX("+m[1]+");") {
			t.Errorf("execcache.c: no FN_INDEX(%s) assertion", m[1])
		}
	}
}
