// Package memcap bounds the memory a reader may use on hostile input, for the fuzz targets and tests of
// the packages that read files (checkpoint, data, unet, pipeline). Only tests import it.
package memcap

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// MaxInput is the largest fuzz input the targets try: larger ones are skipped, so that what a reader
// allocates is measured against a small, known size.
const MaxInput = 1 << 20

// Harness prepares a fuzz target: a soft memory limit of 1 GiB for the whole process (the garbage
// collector works hard before it is reached) so that one runaway input shows as a failure of Within
// rather than as the machine running out of memory.
func Harness(f *testing.F) {
	f.Helper()
	old := debug.SetMemoryLimit(1 << 30)
	f.Cleanup(func() { debug.SetMemoryLimit(old) })
}

// Within runs read and fails t if it allocated more than limit bytes on the heap in total
// (runtime.MemStats.TotalAlloc: every allocation counts, even those freed since). It must not run
// beside other allocating goroutines of the same test.
func Within(t testing.TB, limit uint64, read func()) {
	t.Helper()
	if n := Allocated(read); n > limit {
		t.Fatalf("allocated %d bytes, beyond the bound of %d", n, limit)
	}
}

// Allocated runs read and returns the bytes it allocated on the heap (runtime.MemStats.TotalAlloc).
func Allocated(read func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	read()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
