package main

import (
	"fmt"
	"io"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/train"
	"github.com/gomlx/gomlx/backends"
)

// devicesUsage is the help of --devices, for train and bench.
const devicesUsage = "GPUs to split each batch over, data parallel (0: all GPUs found, as many as divide the batch; 1: one device)"

// useDevices applies --devices to tr (asked 0: every GPU of a CUDA backend that the batch divides by;
// 1 on other backends) and returns the device count; it says on stderr when a batch is split.
func useDevices(tr *train.Trainer, b backends.Backend, info backend.Info, asked, batch int, stderr io.Writer) (int, error) {
	gpus := 1
	if info.Kind == backend.CUDA {
		gpus = b.NumDevices()
	}
	n := train.ChooseDevices(asked, gpus, batch)
	if err := tr.SetDevices(n); err != nil {
		return 0, err
	}
	switch {
	case n > 1:
		fmt.Fprintf(stderr, "devices: %d of %d GPUs, batch %d split into %d per device\n", n, gpus, batch, batch/n)
	case gpus > 1 && asked == 0:
		fmt.Fprintf(stderr, "devices: 1 of %d GPUs (batch %d; %v)\n", gpus, batch, train.CheckDivides(batch, gpus))
	}
	return n, nil
}
