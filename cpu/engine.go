// Package cpu is a CPU engine for the UNet2DModel family, in the style of llm.c: the network written
// out layer by layer, on oneDNN (Debian's libdnnl2, loaded at run time with dlopen) for convolutions and
// matrix products, and plain C loops for the rest (group norm, softmax, upsampling, concatenation).
//
// It computes what unet.Model computes, from the same unet.Config and the same flat weight vector (the
// order of unet.Model.Specs), so checkpoints, EMA weights and samplers are shared with the GoMLX path.
// Activations are float32 in NHWC (channels last) inside; Forward takes and returns NCHW.
//
// Without libdnnl.so.2 the package builds and loads; Available reports why the engine cannot run and how
// to install the library.
package cpu

/*
#cgo CFLAGS: -O3 -std=gnu11
#cgo LDFLAGS: -ldl -lm
#include <stdlib.h>
#include "dnnl.h"
#include "parallel.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"
)

// Install says how to get the library the engine needs.
const Install = "apt-get install libdnnl2"

var (
	loadOnce sync.Once
	loadErr  error
	calls    chan func()
)

// Available loads oneDNN (once) and reports whether the engine can run here: nil, or an error that says
// what is missing and how to install it. $DDPM_DNNL names another path for libdnnl.so.2.
func Available() error {
	loadOnce.Do(func() {
		calls = make(chan func())
		done := make(chan error)
		go engineThread(done)
		loadErr = <-done
	})
	return loadErr
}

// engineThread runs every call into oneDNN and our C loops on one OS thread: OpenMP keeps one team of
// threads per calling thread, so one caller means one team, sized by SetThreads, and no
// oversubscription.
func engineThread(done chan<- error) {
	runtime.LockOSThread()
	// OpenMP threads that wait by spinning hold a core that the other threads of the team (or, on a
	// shared machine, other programs) need: on this 2-core machine under load, passive waiting made the
	// forward pass at batch 1 on 2 threads 50x faster (582 -> 10 ms) and at batch 64 2x faster. libgomp
	// reads this when oneDNN loads it, just below.
	if os.Getenv("OMP_WAIT_POLICY") == "" {
		os.Setenv("OMP_WAIT_POLICY", "PASSIVE")
	}
	var path *C.char
	if p := os.Getenv("DDPM_DNNL"); p != "" {
		path = C.CString(p)
		defer C.free(unsafe.Pointer(path))
	}
	var buf [512]C.char
	if C.ddpm_dnnl_load(path, &buf[0], C.size_t(len(buf))) != 0 {
		done <- fmt.Errorf("cpu: oneDNN not found (%s); to use the CPU engine: %s", C.GoString(&buf[0]), Install)
		return
	}
	C.ddpm_set_threads(0)
	done <- nil
	for f := range calls {
		f()
	}
}

// do runs f on the engine thread and waits for it.
func do(f func()) {
	ch := make(chan struct{})
	calls <- func() {
		defer close(ch)
		f()
	}
	<-ch
}

// SetThreads sets the number of threads of the engine (oneDNN's and ours); n <= 0: all cores.
func SetThreads(n int) error {
	if err := Available(); err != nil {
		return err
	}
	do(func() { C.ddpm_set_threads(C.int(n)) })
	return nil
}

// Threads reports the number of threads the engine runs on.
func Threads() int {
	if Available() != nil {
		return 0
	}
	var n int
	do(func() { n = int(C.ddpm_threads()) })
	return n
}

// Version is oneDNN's version, "" when it is not loaded.
func Version() string {
	if Available() != nil {
		return ""
	}
	var v string
	do(func() {
		p := (*[3]C.int)(unsafe.Pointer(C.ddpm_dnnl_version()))
		v = fmt.Sprintf("%d.%d.%d", p[0], p[1], p[2])
	})
	return v
}
