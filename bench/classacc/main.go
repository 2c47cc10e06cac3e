// Command classacc scores a class-conditional `ddpm sample --class all --cols K --out x.safetensors`
// with a bundled classifier: the fraction of samples recognised as the class of their row (rows are
// classes 0..9, K samples each), overall and per class. docs/guidance.md uses it for the CPU defaults.
//
//	go run ./bench/classacc x.safetensors classifier-mnist
package main

import (
	"fmt"
	"os"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/fid"
	"github.com/ddpm/ddpm/models"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: classacc SAMPLES.safetensors CLASSIFIER (a bundled classifier: classifier-mnist or classifier-fashion-mnist)")
		os.Exit(2)
	}
	path, clfName := os.Args[1], os.Args[2]
	f, err := checkpoint.ReadSafetensors(path)
	if err != nil {
		fail(err)
	}
	x, err := f.Tensors["sample"].Float32()
	if err != nil {
		fail(err)
	}
	for i, v := range x {
		x[i] = min(1, max(-1, v))
	}
	b, _, err := backend.New("go")
	if err != nil {
		fail(err)
	}
	dir, err := models.Dir(clfName)
	if err != nil {
		fail(err)
	}
	clf, err := fid.LoadClassifier(fid.ClassifierPath(dir))
	if err != nil {
		fail(err)
	}
	n := len(x) / 784
	pred, err := clf.Predict(b, &data.Dataset{Images: x, C: 1, H: 28, W: 28}, 500)
	if err != nil {
		fail(err)
	}
	per := n / 10
	right, cls := 0, make([]int, 10)
	for i, p := range pred {
		if p == i/per {
			right++
			cls[i/per]++
		}
	}
	fmt.Printf("%s: %d samples, accuracy %.4f, per class %v (of %d)\n", path, n, float64(right)/float64(n), cls, per)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "classacc:", err)
	os.Exit(1)
}
