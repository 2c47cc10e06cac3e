package backend

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "execcache.h"
*/
import "C"

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/ddpm/ddpm/internal/atomicfile"

	"github.com/gomlx/go-xla/pkg/pjrt"
)

// The executable cache: XLA compiles a training step in 10-15 s on a GPU, and GoMLX compiles every graph
// afresh in each process. PJRT can serialize a compiled executable and load it back
// (PJRT_Executable_Serialize / PJRT_Executable_DeserializeAndLoad), but neither go-xla v0.1.4 nor
// GoMLX v0.26 exposes that. So ddpm loads the plugin itself, hands go-xla a copy of the plugin's API
// table whose PJRT_Client_Compile first looks in the cache (ddpmCompileHook), and registers that table
// with go-xla as a preloaded plugin. Everything else goes to the plugin untouched.
//
// An entry is keyed by the SHA-256 of what determines the compiled code: the program (StableHLO
// bytecode), its compile options and $XLA_FLAGS. Entries live in ExecutableDir(CacheDir(plugin)), whose
// name is keyed by the plugin file and the GPU model, so another plugin or card never reads them. Each
// entry is a header (magic, format version, payload length, SHA-256 of the payload) and the plugin's
// serialized executable: a truncated, corrupt or foreign file is found by the header and deleted before
// the plugin sees it; a good entry that the plugin fails to load (a transient failure: out of memory)
// is kept and the program compiled. The directory is capped at $DDPM_CACHE_MAX bytes (default 4 GiB),
// the least recently used entries evicted first. A program compiles under a lock of its own key, so
// two programs compile at once and the second request for one program waits for the first and loads
// it. A failure to store an entry only costs the next run the compile.

// CompileStats counts what the executable cache did in this process.
type CompileStats struct {
	Loaded, Compiled, Stored int           // executables loaded from the cache, compiled, written to it
	Evicted                  int           // entries deleted to keep the cache under its cap
	LoadTime, CompileTime    time.Duration // time spent loading, and compiling (and storing)
	Problem                  string        // the last error that made the cache compile or not store
	// Programs lists XLA's own cost analysis of each program compiled or loaded, in order.
	Programs []ProgramCost
}

// ProgramCost is XLA's cost analysis of one compiled program (-1: not reported by the plugin). FLOPs
// count a multiply-add as 2; bytes are those its operations read and write in device memory, after
// XLA's fusion (a fused intermediate costs nothing).
type ProgramCost struct {
	Key          string
	FLOPs, Bytes float64
}

func (s CompileStats) String() string {
	out := fmt.Sprintf("%d compiled in %.1fs, %d loaded from the cache in %.1fs", s.Compiled,
		s.CompileTime.Seconds(), s.Loaded, s.LoadTime.Seconds())
	if s.Evicted > 0 {
		out += fmt.Sprintf(", %d evicted", s.Evicted)
	}
	if s.Problem != "" {
		out += " (cache: " + s.Problem + ")"
	}
	return out
}

// Compilations returns what the executable cache has done so far in this process.
func Compilations() CompileStats {
	theExecCache.mu.Lock()
	defer theExecCache.mu.Unlock()
	s := theExecCache.stats
	s.Programs = slices.Clone(s.Programs)
	return s
}

// ExecutableDir is the directory of cached executables inside a CacheDir.
func ExecutableDir(cacheDir string) string { return filepath.Join(cacheDir, "executables") }

// execCache is the cache logic, apart from PJRT so that it can be tested without a plugin.
type execCache struct {
	mu       sync.Mutex // guards the fields below; never held through a compile or a load
	dir      string     // "": compile only
	maxBytes int64      // the cap on the entries' total size; <= 0: none
	noStore  bool       // the plugin cannot serialize: stop trying
	stats    CompileStats
	keys     map[string]*keyLock
}

// keyLock serializes the compilations of one key; n counts its holders and waiters.
type keyLock struct {
	mu sync.Mutex
	n  int
}

var theExecCache execCache

// A compilation is one PJRT_Client_Compile call as the cache sees it.
type compilation interface {
	compile() error             // compiles the program and sets the call's result
	serialize() ([]byte, error) // the result of compile, serialized
	load(data []byte) error     // loads a serialized executable as the call's result
}

// errCompile marks a failure of the compiler itself: the caller passes the plugin's own error on.
var errCompile = errors.New("compile failed")

// lock takes the lock of key and returns its release.
func (e *execCache) lock(key string) func() {
	e.mu.Lock()
	if e.keys == nil {
		e.keys = make(map[string]*keyLock)
	}
	l := e.keys[key]
	if l == nil {
		l = &keyLock{}
		e.keys[key] = l
	}
	l.n++
	e.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		e.mu.Lock()
		if l.n--; l.n == 0 {
			delete(e.keys, key)
		}
		e.mu.Unlock()
	}
}

// update changes the stats under the lock.
func (e *execCache) update(f func(s *CompileStats)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(&e.stats)
}

// get sets the result of c from the entry key, or compiles it and stores the entry.
func (e *execCache) get(key string, c compilation) error {
	defer e.lock(key)()
	e.mu.Lock()
	dir, noStore := e.dir, e.noStore
	e.mu.Unlock()
	path := ""
	keep := false // an entry is there that must not be replaced
	if dir != "" {
		path = filepath.Join(dir, key+".pjrt")
		t0 := time.Now()
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			payload, err := decodeEntry(data)
			if err != nil {
				e.update(func(s *CompileStats) {
					s.Problem = fmt.Sprintf("entry %s is damaged (%v); deleted and compiled again", filepath.Base(path), err)
				})
				os.Remove(path)
				break
			}
			if err := c.load(payload); err != nil {
				keep = true
				e.update(func(s *CompileStats) {
					s.Problem = fmt.Sprintf("entry %s did not load (%v); compiled, the entry kept", filepath.Base(path), err)
				})
				break
			}
			now := time.Now()
			os.Chtimes(path, now, now) // the entry's last use, for the eviction
			e.update(func(s *CompileStats) { s.Loaded++; s.LoadTime += time.Since(t0) })
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			keep = true
			e.update(func(s *CompileStats) {
				s.Problem = fmt.Sprintf("reading entry %s: %v; compiled", filepath.Base(path), err)
			})
		}
	}
	t0 := time.Now()
	err := c.compile()
	e.update(func(s *CompileStats) {
		s.CompileTime += time.Since(t0)
		if err == nil {
			s.Compiled++
		}
	})
	if err != nil {
		return err
	}
	if path == "" || noStore || keep {
		return nil
	}
	data, err := c.serialize()
	if err != nil {
		e.mu.Lock()
		e.noStore = true
		e.stats.Problem = fmt.Sprintf("the plugin cannot serialize executables (%v); nothing is cached", err)
		e.mu.Unlock()
		return nil
	}
	if err := writeAtomic(path, encodeEntry(data)); err != nil {
		e.update(func(s *CompileStats) { s.Problem = fmt.Sprintf("storing %s: %v", filepath.Base(path), err) })
		return nil
	}
	e.update(func(s *CompileStats) { s.Stored++ })
	e.evict(dir, path)
	return nil
}

// The entry format: a header, then the plugin's serialized executable (the payload).
//
//	[8]  magic "DDPMEXE\x00"
//	[4]  format version, little-endian uint32 (entryVersion)
//	[4]  zero
//	[8]  payload length, little-endian uint64
//	[32] SHA-256 of the payload
const (
	entryMagic      = "DDPMEXE\x00"
	entryVersion    = 1
	entryHeaderSize = 8 + 4 + 4 + 8 + sha256.Size
)

// encodeEntry returns the entry of a serialized executable.
func encodeEntry(payload []byte) []byte {
	out := make([]byte, entryHeaderSize, entryHeaderSize+len(payload))
	copy(out, entryMagic)
	binary.LittleEndian.PutUint32(out[8:], entryVersion)
	binary.LittleEndian.PutUint64(out[16:], uint64(len(payload)))
	sum := sha256.Sum256(payload)
	copy(out[24:], sum[:])
	return append(out, payload...)
}

// decodeEntry checks an entry's header and returns its payload.
func decodeEntry(data []byte) ([]byte, error) {
	if len(data) < entryHeaderSize || string(data[:8]) != entryMagic {
		return nil, errors.New("not a ddpm cache entry")
	}
	if v := binary.LittleEndian.Uint32(data[8:]); v != entryVersion {
		return nil, fmt.Errorf("entry format version %d, want %d", v, entryVersion)
	}
	payload := data[entryHeaderSize:]
	if n := binary.LittleEndian.Uint64(data[16:]); n != uint64(len(payload)) {
		return nil, fmt.Errorf("%d bytes of payload, the header says %d: truncated", len(payload), n)
	}
	if sum := sha256.Sum256(payload); string(sum[:]) != string(data[24:entryHeaderSize]) {
		return nil, errors.New("checksum mismatch")
	}
	return payload, nil
}

// evict deletes the least recently used entries of dir (by modification time, which a load refreshes)
// until they total at most e.maxBytes, never the entry just written (keep).
func (e *execCache) evict(dir, keep string) {
	e.mu.Lock()
	limit := e.maxBytes
	e.mu.Unlock()
	if limit <= 0 {
		return
	}
	list, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type entry struct {
		path string
		size int64
		used time.Time
	}
	var entries []entry
	var total int64
	for _, d := range list {
		if !strings.HasSuffix(d.Name(), ".pjrt") || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		fi, err := d.Info()
		if err != nil {
			continue
		}
		entries = append(entries, entry{filepath.Join(dir, d.Name()), fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].used.Before(entries[j].used) })
	evicted := 0
	for _, en := range entries {
		if total <= limit {
			break
		}
		if en.path == keep {
			continue
		}
		if os.Remove(en.path) == nil {
			total -= en.size
			evicted++
		}
	}
	if evicted > 0 {
		e.update(func(s *CompileStats) { s.Evicted += evicted })
	}
}

// defaultCacheMax is the executable cache's cap without $DDPM_CACHE_MAX: 4 GiB, some hundred programs
// of the sizes ddpm compiles (tens of MB each).
const defaultCacheMax = 4 << 30

// cacheMax returns the cap $DDPM_CACHE_MAX sets: bytes, or a number with the suffix K, M, G or T
// (powers of 1024; KiB, MB... are read the same way); 0 or "off" for no cap.
func cacheMax() (int64, error) {
	v := strings.TrimSpace(os.Getenv("DDPM_CACHE_MAX"))
	if v == "" {
		return defaultCacheMax, nil
	}
	if v == "off" {
		return 0, nil
	}
	num := strings.TrimRight(strings.ToUpper(v), "IB")
	shift := 0
	if k := len(num); k > 0 {
		if i := strings.IndexByte("KMGT", num[k-1]); i >= 0 {
			shift, num = 10*(i+1), num[:k-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return defaultCacheMax, fmt.Errorf("DDPM_CACHE_MAX=%q: want a size such as 2G, 500M or 1073741824 (using %d bytes)", v, int64(defaultCacheMax))
	}
	return n << shift, nil
}

// writeAtomic writes an entry so that a reader never sees a partial one.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data)
}

// entryKey is the cache key of one compilation.
func entryKey(format, code, options []byte, xlaFlags string) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte("ddpm executable v1"), format, code, options, []byte(xlaFlags)} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// asyncGoXLA is the go-xla version whose internals async execution was checked against: its
// ExecuteAndWait waits on the completion events only when PJRT returns them (execute_hook in
// execcache.c). Another version may wait differently, or free buffers still in use: async is then off.
const asyncGoXLA = "v0.1.4"

// checkAsync reports whether async execution is safe with go-xla at version (from the build info; ""
// when unknown).
func checkAsync(version string) error {
	if version != asyncGoXLA {
		return fmt.Errorf("go-xla %s is not %s, whose internals asynchronous execution depends on; executions wait for the device", cmpOr(version, "(unknown version)"), asyncGoXLA)
	}
	return nil
}

func cmpOr(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// goXLAVersion returns the version of go-xla linked into this binary, "" when unknown.
func goXLAVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range info.Deps {
		if m.Path == "github.com/gomlx/go-xla" {
			if m.Replace != nil {
				return m.Replace.Version
			}
			return m.Version
		}
	}
	return ""
}

// openPlugin dlopens a PJRT plugin and returns its API table; on error the library is closed again.
func openPlugin(path string) (unsafe.Pointer, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg [512]C.char
	api := C.ddpm_open_plugin(cpath, &msg[0], C.size_t(len(msg)))
	if api == nil {
		return nil, fmt.Errorf("loading %s: %s", path, C.GoString(&msg[0]))
	}
	return unsafe.Pointer(api), nil
}

// pluginLoaded reports whether the shared library at path is loaded in this process.
func pluginLoaded(path string) bool {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return C.ddpm_loaded(cpath) != 0
}

// costFromProperties reads "flops" and "bytes accessed" from n PJRT_NamedValues at p (see
// ddpm_cost_from_properties).
func costFromProperties(p unsafe.Pointer, n int) (flops, nbytes float64, err error) {
	var f, b C.double
	if C.ddpm_cost_from_properties(p, C.size_t(n), &f, &b) != 0 {
		return -1, -1, errors.New("PJRT_NamedValue's struct_size is smaller than the fields read")
	}
	return float64(f), float64(b), nil
}

// loadWrappedPlugin loads the PJRT plugin at path and registers it with go-xla under path, so that
// xla.NewWithOptions(path, ...) uses it, with two changes to its API table:
//   - compiling goes through the executable cache in dir ("": no cache);
//   - with async, executing returns once the work is queued on the device instead of waiting for it.
//     go-xla v0.1.4 waits for every execution, so each call would otherwise pay a full host round trip
//     while the GPU idles. PJRT orders the next execution, a transfer to the host or the freeing of a
//     buffer after the work that uses the buffer, as it does for JAX's asynchronous dispatch; errors
//     of an execution surface at the next read of its results.
//
// It can be done once per process.
func loadWrappedPlugin(path, dir string, async bool) error {
	api, err := openPlugin(path)
	if err != nil {
		return err
	}
	wrapped := C.ddpm_wrap_api(api)
	if wrapped == nil {
		return fmt.Errorf("%s: its PJRT API table is too old to wrap, or a plugin is wrapped already", path)
	}
	maxBytes, err := cacheMax()
	theExecCache.mu.Lock()
	theExecCache.dir, theExecCache.maxBytes = dir, maxBytes
	if err != nil {
		theExecCache.stats.Problem = err.Error()
	}
	theExecCache.mu.Unlock()
	if async {
		C.ddpm_set_async(1)
	}
	return pjrt.RegisterPreloadedPlugin(path, uintptr(wrapped))
}

// pjrtCompilation is one PJRT_Client_Compile call.
type pjrtCompilation struct {
	args, client unsafe.Pointer
	err          unsafe.Pointer // the plugin's PJRT_Error from compile, handed back to go-xla
}

func (p *pjrtCompilation) compile() error {
	if p.err = C.ddpm_real_compile(p.args); p.err != nil {
		return errCompile
	}
	return nil
}

func (p *pjrtCompilation) serialize() ([]byte, error) {
	var out *C.char
	var n C.size_t
	if err := C.ddpm_serialize(C.ddpm_get_executable(p.args), &out, &n); err != nil {
		return nil, takeError(err)
	}
	if out == nil {
		return nil, errors.New("out of memory")
	}
	defer C.free(unsafe.Pointer(out))
	// Not C.GoBytes, whose length is a C int: an executable may pass 2 GiB.
	return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(out)), int(n))), nil
}

func (p *pjrtCompilation) load(data []byte) error {
	if len(data) == 0 {
		return errors.New("empty entry")
	}
	var loaded unsafe.Pointer
	if err := C.ddpm_deserialize(p.client, (*C.char)(unsafe.Pointer(&data[0])), C.size_t(len(data)), &loaded); err != nil {
		return takeError(err)
	}
	C.ddpm_set_executable(p.args, loaded)
	return nil
}

// takeError turns a PJRT_Error into a Go error and frees it.
func takeError(err unsafe.Pointer) error {
	var msg [1024]C.char
	C.ddpm_error_take(err, &msg[0], C.size_t(len(msg)))
	return errors.New(C.GoString(&msg[0]))
}

//export ddpmCompileHook
func ddpmCompileHook(args unsafe.Pointer) unsafe.Pointer {
	var client unsafe.Pointer
	var code, format, options *C.char
	var codeN, formatN, optionsN C.size_t
	C.ddpm_compile_args(args, &client, &code, &codeN, &format, &formatN, &options, &optionsN)
	view := func(p *C.char, n C.size_t) []byte {
		if p == nil || n == 0 {
			return nil
		}
		return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
	}
	key := entryKey(view(format, formatN), view(code, codeN), view(options, optionsN), os.Getenv("XLA_FLAGS"))
	c := &pjrtCompilation{args: args, client: client}
	if theExecCache.get(key, c) == nil {
		pc := ProgramCost{Key: key, FLOPs: -1, Bytes: -1}
		var flops, nbytes C.double
		if err := C.ddpm_cost(C.ddpm_get_executable(args), &flops, &nbytes); err != nil {
			takeError(err)
		} else {
			pc.FLOPs, pc.Bytes = float64(flops), float64(nbytes)
		}
		theExecCache.mu.Lock()
		theExecCache.stats.Programs = append(theExecCache.stats.Programs, pc)
		theExecCache.mu.Unlock()
	}
	return c.err
}
