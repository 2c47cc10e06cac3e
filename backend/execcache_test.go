package backend

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

func TestExecCacheReplacesAnEntryThatDoesNotLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.pjrt")
	os.WriteFile(path, []byte("garbage from a crash or another plugin"), 0o644)
	e := &execCache{dir: dir}
	c := &fakeCompilation{program: "step"}
	if err := e.get("k", c); err != nil {
		t.Fatal(err)
	}
	if c.compiled != 1 {
		t.Fatalf("compiled %d times; want the bad entry compiled again", c.compiled)
	}
	if b, _ := os.ReadFile(path); string(b) != "exe:step" {
		t.Errorf("entry holds %q after recompiling; want the new executable", b)
	}
	if !strings.Contains(e.stats.Problem, "did not load") {
		t.Errorf("problem %q; want it to say the entry did not load", e.stats.Problem)
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

// TestPJRTLayoutMatchesTheHeader checks execcache.h and execcache.c, which declare the parts of PJRT's
// C API they use by position, against the pjrt_c_api.h that go-xla ships.
func TestPJRTLayoutMatchesTheHeader(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gomlx/go-xla").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/gomlx/go-xla: %v", err)
	}
	header, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "pkg", "pjrt", "pjrt_c_api.h"))
	if err != nil {
		t.Fatal(err)
	}
	h := string(header)
	api := h[strings.Index(h, "typedef struct PJRT_Api {"):]
	api = api[:strings.Index(api, "} PJRT_Api;")]
	fields := regexp.MustCompile(`_PJRT_API_STRUCT_FIELD\((\w+)\)`).FindAllStringSubmatch(api, -1)
	index := map[string]int{}
	for i, f := range fields {
		index[f[1]] = i
	}
	ours, _ := os.ReadFile("execcache.h")
	enum := regexp.MustCompile(`DDPM_(PJRT_\w+) = (\d+)`).FindAllStringSubmatch(string(ours), -1)
	if len(enum) < 10 {
		t.Fatalf("found %d function indices in execcache.h; want 10", len(enum))
	}
	for _, m := range enum {
		want, ok := index[m[1]]
		if got, _ := strconv.Atoi(m[2]); !ok || got != want {
			t.Errorf("%s: execcache.h says index %s, the header %d (found %v)", m[1], m[2], want, ok)
		}
	}
	if !strings.Contains(api, "PJRT_Api_Version pjrt_api_version;") ||
		!regexp.MustCompile(`struct PJRT_Api_Version \{\s*size_t struct_size;\s*PJRT_Extension_Base\* extension_start;\s*int major_version;[^\n]*\s*int minor_version;`).MatchString(h) {
		t.Error("PJRT_Api's head is not {size_t, pointer, {size_t, pointer, int, int}} as execcache.c assumes")
	}
	// The argument structs, field by field, in the order execcache.c declares them.
	for name, want := range map[string][]string{
		"PJRT_Program":                             {"struct_size", "extension_start", "code", "code_size", "format", "format_size"},
		"PJRT_Client_Compile_Args":                 {"struct_size", "extension_start", "client", "program", "compile_options", "compile_options_size", "executable"},
		"PJRT_LoadedExecutable_GetExecutable_Args": {"struct_size", "extension_start", "loaded_executable", "executable"},
		"PJRT_Executable_Destroy_Args":             {"struct_size", "extension_start", "executable"},
		"PJRT_LoadedExecutable_Destroy_Args":       {"struct_size", "extension_start", "executable"},
		"PJRT_Executable_Serialize_Args":           {"struct_size", "extension_start", "executable", "serialized_bytes", "serialized_bytes_size", "serialized_executable", "serialized_executable_deleter"},
		"PJRT_Executable_DeserializeAndLoad_Args":  {"struct_size", "extension_start", "client", "serialized_executable", "serialized_executable_size", "loaded_executable", "overridden_serialized_compile_options", "overridden_serialized_compile_options_size"},
		"PJRT_Error_Message_Args":                  {"struct_size", "extension_start", "error", "message", "message_size"},
		"PJRT_Error_Destroy_Args":                  {"struct_size", "extension_start", "error"},
		"PJRT_Executable_GetCostAnalysis_Args":     {"struct_size", "extension_start", "executable", "num_properties", "properties"},
		"PJRT_NamedValue":                          {"struct_size", "extension_start", "name", "name_size", "type", "string_value", "int64_value", "int64_array_value", "float_value", "bool_value", "value_size"},
		"PJRT_LoadedExecutable_Execute_Args":       {"struct_size", "extension_start", "executable", "options", "argument_lists", "num_devices", "num_args", "output_lists", "device_complete_events", "execute_device"},
	} {
		i := strings.Index(h, "struct "+name+" {")
		if i < 0 {
			t.Errorf("struct %s not in the header", name)
			continue
		}
		body := h[i:]
		body = body[strings.Index(body, "{")+1 : strings.Index(body, "\n};")] // an inner union ends with an indented "};"
		var got []string
		for _, line := range strings.Split(body, "\n") {
			line = strings.TrimSpace(line)
			if j := strings.Index(line, "//"); j >= 0 {
				line = strings.TrimSpace(line[:j])
			}
			if line == "" || !strings.HasSuffix(line, ";") && !strings.HasSuffix(line, "(") {
				continue
			}
			if m := regexp.MustCompile(`\(\*(\w+)\)\($`).FindStringSubmatch(line); m != nil { // a function pointer
				got = append(got, m[1])
				continue
			}
			if m := regexp.MustCompile(`(\w+);$`).FindStringSubmatch(line); m != nil {
				got = append(got, m[1])
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("struct %s: header fields %v; execcache.c assumes %v", name, got, want)
		}
	}
}
