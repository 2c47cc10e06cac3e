package cpu

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// benchThreads sets the engine's threads from $DDPM_THREADS (default: all cores).
func benchThreads(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("DDPM_THREADS"))
	if err := SetThreads(n); err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the CPU time (user + system) the process has used so far, all threads together: on a machine
// shared with other work it shows the cost of a run better than the wall clock does.
func cpuTime() time.Duration {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// BenchmarkForward times the bundled MNIST UNet's forward pass at batch 1, 16 and 64 (ms per image),
// on $DDPM_THREADS threads (default all cores): go test ./cpu -bench Forward -run X.
func BenchmarkForward(b *testing.B) {
	requireEngine(b)
	benchThreads(b)
	cfg, err := unet.LoadConfig("../models/mnist/unet/config.json")
	if err != nil {
		b.Fatal(err)
	}
	m, _ := unet.New(cfg)
	flatT, _ := nn.Flatten(m.Specs(), nn.InitTensors(m.Specs(), 1))
	net, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer net.Close()
	if err := net.SetWeights(tensors.MustCopyFlatData[float32](flatT)); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			x := make([]float32, n*28*28)
			for i := range x {
				x[i] = float32(math.Sin(float64(i)))
			}
			ts := make([]int32, n)
			if _, err := net.Forward(x, n, 28, 28, ts, nil); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			for i := 0; i < b.N; i++ {
				if _, err := net.Forward(x, n, 28, 28, ts, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N*n), "ms/image")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N*n), "cpu-ms/image")
		})
	}
}
