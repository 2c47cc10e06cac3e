package backend

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "execcache.h"
*/
import "C"

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/ddpm/ddpm/internal/atomicfile"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unsafe"

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
// name is keyed by the plugin file and the GPU model, so another plugin or card never reads them. An entry
// that fails to load is deleted and compiled again; a failure to store one only costs the next run the
// compile.

// CompileStats counts what the executable cache did in this process.
type CompileStats struct {
	Loaded, Compiled, Stored int           // executables loaded from the cache, compiled, written to it
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
	mu      sync.Mutex
	dir     string // "": compile only
	noStore bool   // the plugin cannot serialize: stop trying
	stats   CompileStats
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

// get sets the result of c from the entry key, or compiles it and stores the entry.
func (e *execCache) get(key string, c compilation) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	path := ""
	if e.dir != "" {
		path = filepath.Join(e.dir, key+".pjrt")
		t0 := time.Now()
		if data, err := os.ReadFile(path); err == nil {
			if err := c.load(data); err == nil {
				e.stats.Loaded++
				e.stats.LoadTime += time.Since(t0)
				return nil
			} else {
				e.stats.Problem = fmt.Sprintf("entry %s did not load (%v); compiled again", filepath.Base(path), err)
				os.Remove(path)
			}
		}
	}
	t0 := time.Now()
	defer func() { e.stats.CompileTime += time.Since(t0) }()
	if err := c.compile(); err != nil {
		return err
	}
	e.stats.Compiled++
	if path == "" || e.noStore {
		return nil
	}
	data, err := c.serialize()
	if err != nil {
		e.noStore = true
		e.stats.Problem = fmt.Sprintf("the plugin cannot serialize executables (%v); nothing is cached", err)
		return nil
	}
	if err := writeAtomic(path, data); err != nil {
		e.stats.Problem = fmt.Sprintf("storing %s: %v", filepath.Base(path), err)
		return nil
	}
	e.stats.Stored++
	return nil
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
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg [512]C.char
	api := C.ddpm_open_plugin(cpath, &msg[0], C.size_t(len(msg)))
	if api == nil {
		return fmt.Errorf("loading %s: %s", path, C.GoString(&msg[0]))
	}
	wrapped := C.ddpm_wrap_api(api)
	if wrapped == nil {
		return fmt.Errorf("%s: its PJRT API table is too old to wrap, or a plugin is wrapped already", path)
	}
	theExecCache.mu.Lock()
	theExecCache.dir = dir
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
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), nil
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
	bytes := func(p *C.char, n C.size_t) []byte {
		if p == nil || n == 0 {
			return nil
		}
		return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
	}
	key := entryKey(bytes(format, formatN), bytes(code, codeN), bytes(options, optionsN), os.Getenv("XLA_FLAGS"))
	c := &pjrtCompilation{args: args, client: client}
	if theExecCache.get(key, c) == nil {
		pc := ProgramCost{Key: key, FLOPs: -1, Bytes: -1}
		var flops, bytes C.double
		if err := C.ddpm_cost(C.ddpm_get_executable(args), &flops, &bytes); err != nil {
			takeError(err)
		} else {
			pc.FLOPs, pc.Bytes = float64(flops), float64(bytes)
		}
		theExecCache.mu.Lock()
		theExecCache.stats.Programs = append(theExecCache.stats.Programs, pc)
		theExecCache.mu.Unlock()
	}
	return c.err
}
