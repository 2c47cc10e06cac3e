package backend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// TestExecCacheKeepsAGoodEntryThatDoesNotLoad: an entry whose header and checksum are right but that
// the plugin fails to load (out of device memory, say) is kept as it is; the program is compiled.
func TestExecCacheKeepsAGoodEntryThatDoesNotLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.pjrt")
	good := encodeEntry([]byte("exe:step"))
	os.WriteFile(path, good, 0o644)
	e := &execCache{dir: dir}
	c := &fakeCompilation{program: "other", loadErr: errors.New("RESOURCE_EXHAUSTED: out of memory")}
	if err := e.get("k", c); err != nil {
		t.Fatal(err)
	}
	if c.compiled != 1 || c.serialized != 0 {
		t.Fatalf("compiled %d, serialized %d times; want 1 and 0", c.compiled, c.serialized)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, good) {
		t.Fatalf("entry after a failed load: %q, %v; want it kept unchanged", b, err)
	}
	if !strings.Contains(e.stats.Problem, "RESOURCE_EXHAUSTED") || !strings.Contains(e.stats.Problem, "kept") {
		t.Errorf("problem %q; want the plugin's message and that the entry was kept", e.stats.Problem)
	}
	// The next process loads it.
	next := &fakeCompilation{program: "step"}
	if err := (&execCache{dir: dir}).get("k", next); err != nil || next.compiled != 0 || string(next.loaded) != "exe:step" {
		t.Fatalf("next get: err %v, compiled %d, loaded %q; want the kept entry loaded", err, next.compiled, next.loaded)
	}
}

// TestExecCacheKeepsAnEntryItCannotRead: a read error other than "no such file" leaves the path alone.
func TestExecCacheKeepsAnEntryItCannotRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.pjrt")
	if err := os.Mkdir(path, 0o755); err != nil { // reading it fails with EISDIR
		t.Fatal(err)
	}
	e := &execCache{dir: dir}
	c := &fakeCompilation{program: "step"}
	if err := e.get("k", c); err != nil || c.compiled != 1 {
		t.Fatalf("err %v, compiled %d; want a compile", err, c.compiled)
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Fatalf("the unreadable path was replaced: %v", err)
	}
}

// TestExecCacheEvictsLeastRecentlyUsed: with a cap, storing an entry deletes the entries used longest
// ago (a load counts as a use) until the cache fits, never the one just stored.
func TestExecCacheEvictsLeastRecentlyUsed(t *testing.T) {
	dir := t.TempDir()
	entrySize := int64(len(encodeEntry([]byte("exe:p0"))))
	e := &execCache{dir: dir, maxBytes: 3 * entrySize}
	base := time.Now().Add(-time.Hour)
	for i, k := range []string{"k0", "k1", "k2"} {
		if err := e.get(k, &fakeCompilation{program: "p" + k[1:]}); err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Minute)
		os.Chtimes(filepath.Join(dir, k+".pjrt"), at, at)
	}
	// k0 is the oldest; loading it makes k1 the least recently used.
	if c := (&fakeCompilation{}); e.get("k0", c) != nil || c.compiled != 0 {
		t.Fatal("k0 did not load")
	}
	if err := e.get("k3", &fakeCompilation{program: "p3"}); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]bool{"k0": true, "k1": false, "k2": true, "k3": true} {
		if _, err := os.Stat(filepath.Join(dir, k+".pjrt")); (err == nil) != want {
			t.Errorf("%s present: %v; want %v", k, err == nil, want)
		}
	}
	if e.stats.Evicted != 1 {
		t.Errorf("Evicted = %d; want 1", e.stats.Evicted)
	}
	// A cap below one entry keeps the entry just stored.
	e.maxBytes = 1
	if err := e.get("k4", &fakeCompilation{program: "p4"}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.pjrt"))
	if len(files) != 1 || filepath.Base(files[0]) != "k4.pjrt" {
		t.Errorf("cache holds %v; want only k4.pjrt", files)
	}
}

func TestCacheMax(t *testing.T) {
	for v, want := range map[string]int64{
		"": defaultCacheMax, "off": 0, "0": 0, "1048576": 1 << 20, "500M": 500 << 20, "2G": 2 << 30,
		"2GiB": 2 << 30, "2gb": 2 << 30, "64k": 64 << 10, "1T": 1 << 40,
	} {
		t.Setenv("DDPM_CACHE_MAX", v)
		if got, err := cacheMax(); err != nil || got != want {
			t.Errorf("DDPM_CACHE_MAX=%q: %d, %v; want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"lots", "-5G", "9999999999T", "1.5G"} {
		t.Setenv("DDPM_CACHE_MAX", v)
		if got, err := cacheMax(); err == nil || got != defaultCacheMax || !strings.Contains(err.Error(), "DDPM_CACHE_MAX") {
			t.Errorf("DDPM_CACHE_MAX=%q: %d, %v; want the default and an error naming the variable", v, got, err)
		}
	}
}

// gatedCompilation compiles once gate is closed, telling started first.
type gatedCompilation struct {
	fakeCompilation
	started chan<- string
	gate    <-chan struct{}
}

func (g *gatedCompilation) compile() error {
	g.started <- g.program
	<-g.gate
	return g.fakeCompilation.compile()
}

// TestExecCacheLocksPerProgram: two programs compile at the same time; a second request for a program
// being compiled waits for it, then loads the stored entry instead of compiling it again.
func TestExecCacheLocksPerProgram(t *testing.T) {
	e := &execCache{dir: t.TempDir()}
	started := make(chan string, 3)
	gate := make(chan struct{})
	a := &gatedCompilation{fakeCompilation{program: "a"}, started, gate}
	b := &gatedCompilation{fakeCompilation{program: "b"}, started, gate}
	a2 := &gatedCompilation{fakeCompilation{program: "a"}, started, gate}
	var wg sync.WaitGroup
	for _, c := range []struct {
		key string
		c   compilation
	}{{"ka", a}, {"kb", b}} {
		wg.Add(1)
		go func() { defer wg.Done(); e.get(c.key, c.c) }()
	}
	for range 2 { // both compile at once: neither waits for the other
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the second program waited for the first one's compile")
		}
	}
	wg.Add(1)
	go func() { defer wg.Done(); e.get("ka", a2) }()
	select {
	case p := <-started:
		t.Fatalf("a second request for program %s compiled while the first was compiling", p)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	wg.Wait()
	if a.compiled != 1 || b.compiled != 1 || a2.compiled != 0 || string(a2.loaded) != "exe:a" {
		t.Fatalf("compiled a %d, b %d, a again %d (loaded %q); want 1, 1, 0 and the entry of a", a.compiled, b.compiled, a2.compiled, a2.loaded)
	}
	if len(e.keys) != 0 {
		t.Errorf("%d key locks left; want none", len(e.keys))
	}
}

// TestCostFromPropertiesStepsByStructSize lays out PJRT_NamedValues as a newer plugin would, each 24
// bytes larger than ours, and checks that both costs are found; a struct_size too small is refused.
func TestCostFromPropertiesStepsByStructSize(t *testing.T) {
	const ours = 56 // sizeof(PJRT_NamedValue) in pjrt_c_api.h (execcache.c asserts named_value has it)
	names := [][]byte{[]byte("utilization"), []byte("flops"), []byte("bytes accessed")}
	var pin runtime.Pinner
	defer pin.Unpin()
	layout := func(stride int) []byte {
		buf := make([]byte, len(names)*stride)
		for i, name := range names {
			v := buf[i*stride:]
			pin.Pin(&name[0])
			binary.LittleEndian.PutUint64(v[0:], uint64(stride))
			binary.LittleEndian.PutUint64(v[16:], uint64(uintptr(unsafe.Pointer(&name[0]))))
			binary.LittleEndian.PutUint64(v[24:], uint64(len(name)))
			binary.LittleEndian.PutUint32(v[32:], 3) // kFloat
			binary.LittleEndian.PutUint32(v[40:], math.Float32bits(float32(10*(i+1))))
			binary.LittleEndian.PutUint64(v[48:], 1)
		}
		return buf
	}
	for _, stride := range []int{ours, ours + 24} {
		buf := layout(stride)
		flops, nbytes, err := costFromProperties(unsafe.Pointer(&buf[0]), len(names))
		if err != nil || flops != 20 || nbytes != 30 {
			t.Errorf("struct_size %d: flops %v, bytes %v, %v; want 20, 30", stride, flops, nbytes, err)
		}
	}
	buf := layout(ours)
	binary.LittleEndian.PutUint64(buf, 16)
	if _, _, err := costFromProperties(unsafe.Pointer(&buf[0]), 1); err == nil {
		t.Error("struct_size 16 was accepted")
	}
}

// TestOpenPluginClosesOnError builds two shared libraries that are not PJRT plugins (no GetPjrtApi; one
// that returns NULL) and checks that opening them fails and leaves them unloaded.
func TestOpenPluginClosesOnError(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"noapi":   "int not_a_plugin = 1;\n",
		"nullapi": "const void *GetPjrtApi(void) { return 0; }\n",
	} {
		c, so := filepath.Join(dir, name+".c"), filepath.Join(dir, name+".so")
		if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(cc(), "-shared", "-fPIC", "-o", so, c).CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", so, err, out)
		}
		_, err := openPlugin(so)
		want := map[string]string{"noapi": "no GetPjrtApi", "nullapi": "GetPjrtApi returned NULL"}[name]
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error containing %q", name, err, want)
		}
		if pluginLoaded(so) {
			t.Errorf("%s: still loaded after the error; want dlclose", name)
		}
	}
}

// cc is the C compiler cgo uses.
func cc() string {
	if c := os.Getenv("CC"); c != "" {
		return strings.Fields(c)[0]
	}
	return "gcc"
}

// TestAsyncNeedsTheCheckedGoXLA: async execution is on only with the go-xla version it was checked
// against, and that is the version go.mod requires (a bump fails here until execute_hook is rechecked).
func TestAsyncNeedsTheCheckedGoXLA(t *testing.T) {
	if err := checkAsync(asyncGoXLA); err != nil {
		t.Errorf("checkAsync(%s): %v", asyncGoXLA, err)
	}
	for _, v := range []string{"v0.1.5", "v0.2.0", ""} {
		if err := checkAsync(v); err == nil {
			t.Errorf("checkAsync(%q) = nil; want async refused", v)
		}
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/gomlx/go-xla").Output()
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(string(out)); v != asyncGoXLA {
		t.Errorf("go.mod requires go-xla %s; asynchronous execution was checked against %s: recheck execute_hook, then asyncGoXLA", v, asyncGoXLA)
	}
}
