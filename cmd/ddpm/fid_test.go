package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/fid"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/unet"
)

// tinyPipeline writes a diffusers pipeline of the tiny 28x28x1 UNet with random weights.
func tinyPipeline(t *testing.T) string {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "unet.json")
	if err := os.WriteFile(cfgPath, []byte(tinyUNet), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := unet.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := unet.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(cfg, nn.InitTensors(m.Specs(), 1), schedule.Default(), sampler.DefaultDDPM())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tiny")
	if err := pipeline.Save(dir, p, checkpoint.F32); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tinyClassifier writes an MNIST classifier with random weights and returns its directory and
// weights hash.
func tinyClassifier(t *testing.T, dataset string) (string, string) {
	t.Helper()
	c, err := fid.NewClassifier(dataset, nn.InitTensors(fid.ClassifierSpecs(), 1))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "classifier-"+dataset)
	if err := c.Save(dir); err != nil {
		t.Fatal(err)
	}
	return dir, c.Extractor().WeightsHash
}

// grayFolder writes n random w x h PNGs (gray, or RGB with rgb) to a new folder.
func grayFolder(t *testing.T, seed uint64, n, w, h int, rgb bool) string {
	t.Helper()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range n {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				g := uint8(r.IntN(256))
				c := color.NRGBA{g, g, g, 255}
				if rgb {
					c.B = uint8(r.IntN(256))
				}
				img.Set(x, y, c)
			}
		}
		f, err := os.Create(filepath.Join(dir, string(rune('a'+i))+".png"))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return dir
}

func jsonLine(t *testing.T, out string) fidResult {
	t.Helper()
	var res fidResult
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				t.Fatalf("JSON line %q: %v", line, err)
			}
			return res
		}
	}
	t.Fatalf("no JSON line in:\n%s", out)
	return res
}

// ddpm fid end to end with the classifier features: a tiny random UNet, 6 samples in calls of 4
// (seeds 0 and 1), against the first 8 MNIST test images; the reference statistics are cached, the
// saved samples score the same FID again, and the first call's samples are those of ddpm sample.
func TestFIDClassifierEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("loads MNIST")
	}
	cache := t.TempDir()
	t.Setenv("DDPM_CACHE", cache)
	model := tinyPipeline(t)
	clf, hash := tinyClassifier(t, "mnist")
	saved := filepath.Join(t.TempDir(), "s.safetensors")
	common := []string{"--features", "classifier", "--classifier", clf, "--ref", "mnist:test[:8]", "--json"}
	out, stderr, err := ddpm(t, append([]string{"fid", "--model", model, "--n", "6", "--batch", "4", "--sampler", "ddim",
		"--steps", "2", "--save-samples", saved}, common...)...)
	if err != nil {
		t.Fatalf("fid: %v\n%s", err, stderr)
	}
	if strings.Contains(stderr, "recomputing") || !strings.Contains(stderr, "cached for next time") {
		t.Errorf("first run: stderr should say the reference statistics were cached, and nothing else of the cache:\n%s", stderr)
	}
	res := jsonLine(t, out)
	if !(res.FID > 0) || math.IsInf(res.FID, 0) || res.N != 6 || res.RefN != 8 || res.RefCached {
		t.Errorf("result %+v; want a positive FID, N 6, reference N 8, computed", res)
	}
	if res.Extractor != "classifier-mnist (ours, not Inception)" || res.WeightsHash != hash {
		t.Errorf("extractor %q %s; want classifier-mnist (ours, not Inception) %s", res.Extractor, res.WeightsHash, hash)
	}
	if res.Sampler != "ddim" || res.Steps != 2 || res.Batch != 4 || res.Ref != "mnist:test[0:8]" {
		t.Errorf("result %+v; want ddim, 2 steps, batch 4, ref mnist:test[0:8]", res)
	}
	for _, want := range []string{"FID ", "sampling ", "features ", "reference ", "distance ", "not comparable"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	cached := filepath.Join(cache, "fid-stats", "mnist-test-0-8-classifier-mnist-"+hash[:12]+".safetensors")
	if _, err := fid.Load(cached, fid.Extractor{Name: fid.ClassifierName("mnist"), WeightsHash: hash}); err != nil {
		t.Errorf("cached reference statistics: %v", err)
	}

	// The saved samples, scored again: the cached reference, the same FID to the last bit.
	out, stderr, err = ddpm(t, append([]string{"fid", "--images", saved}, common...)...)
	if err != nil {
		t.Fatalf("fid --images: %v\n%s", err, stderr)
	}
	again := jsonLine(t, out)
	if again.FID != res.FID || !again.RefCached || again.N != 6 || again.Sampler != "ddim" || again.Steps != 2 {
		t.Errorf("again: %+v; want FID %v from the cache, N 6, ddim 2 steps", again, res.FID)
	}

	// Real images of a split against the same split: FID 0 (to rounding), the reference from the cache.
	out, stderr, err = ddpm(t, append([]string{"fid", "--images", "mnist:test[:8]"}, common...)...)
	if err != nil {
		t.Fatalf("fid --images mnist:test[:8]: %v\n%s", err, stderr)
	}
	if real := jsonLine(t, out); math.Abs(real.FID) > 1e-6 || !real.RefCached || real.N != 8 || !strings.Contains(real.Source, "real images") {
		t.Errorf("real images against themselves: %+v; want FID 0, cached reference, N 8", real)
	}

	// The first call of 4 is ddpm sample --seed 0 --n 4.
	one := filepath.Join(t.TempDir(), "one.safetensors")
	if _, stderr, err := ddpm(t, "sample", "--model", model, "--sampler", "ddim", "--steps", "2", "--n", "4",
		"--seed", "0", "--out", one); err != nil {
		t.Fatalf("sample: %v\n%s", err, stderr)
	}
	a, _ := readSample(t, saved)
	b, _ := readSample(t, one)
	for i := range b {
		if a[i] != b[i] {
			t.Fatalf("fid sample value %d = %g, ddpm sample --seed 0 gives %g", i, a[i], b[i])
		}
	}
}

func readSample(t *testing.T, path string) ([]float32, []int) {
	t.Helper()
	f, err := checkpoint.ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.Tensors["sample"].Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v, f.Tensors["sample"].Shape
}

// The FID of a set of images against itself is 0 (up to rounding: 1e-6, with features of size ~1).
func TestFIDOfItselfIsZero(t *testing.T) {
	clf, _ := tinyClassifier(t, "mnist")
	folder := grayFolder(t, 1, 5, 28, 28, false)
	out, stderr, err := ddpm(t, "fid", "--images", folder, "--ref", folder, "--features", "classifier", "--classifier", clf, "--json")
	if err != nil {
		t.Fatalf("fid: %v\n%s", err, stderr)
	}
	if res := jsonLine(t, out); math.Abs(res.FID) > 1e-6 || res.N != 5 || res.RefN != 5 {
		t.Errorf("FID of a folder against itself: %+v; want 0, N 5", res)
	}
}

func TestFIDBadInput(t *testing.T) {
	clf, _ := tinyClassifier(t, "mnist")
	gray28 := grayFolder(t, 1, 3, 28, 28, false)
	gray32 := grayFolder(t, 2, 3, 32, 32, false)
	rgb28 := grayFolder(t, 3, 3, 28, 28, true)
	empty := t.TempDir()
	dir := t.TempDir()
	// Statistics made by Inception, used with the classifier.
	inceptionStats := filepath.Join(dir, "inception.safetensors")
	s, err := fid.ComputeStats([]float32{1, 2, 3, 4, 5, 7}, 2)
	if err != nil {
		t.Fatal(err)
	}
	s.Extractor = fid.Extractor{Name: fid.InceptionName, WeightsHash: "6726825d"}
	if err := s.Save(inceptionStats); err != nil {
		t.Fatal(err)
	}
	twoChannels := filepath.Join(dir, "c2.safetensors")
	checkpoint.WriteSafetensors(twoChannels, &checkpoint.File{Tensors: map[string]*checkpoint.Tensor{
		"sample": checkpoint.NewF32([]int{2, 2, 4, 4}, make([]float32, 64))}})
	useClf := []string{"--features", "classifier", "--classifier", clf}
	for _, c := range []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"run and model", []string{"--run", "a", "--model", "b"}, true, "one of --run, --model and --images"},
		{"bad features", []string{"--images", gray28, "--ref", gray28, "--features", "clip"}, true, "inception or classifier"},
		{"bad sampler", []string{"--sampler", "pndm"}, true, "unknown scheduler"},
		{"bad ref", []string{"--images", gray28, "--ref", "mnist:validation"}, true, "DATA:SPLIT"},
		{"unknown data set", []string{"--images", gray28, "--ref", "cifar10:test"}, true, "unknown data set"},
		{"empty range", []string{"--images", gray28, "--ref", "mnist:test[5:5]"}, true, "empty"},
		{"missing stats", []string{"--images", gray28, "--ref", filepath.Join(dir, "none.safetensors")}, false, "does not exist"},
		{"images without ref", []string{"--images", gray28}, true, "give --ref"},
		{"empty folder", []string{"--images", empty, "--ref", gray28}, false, "no .png"},
		{"too few images", []string{"--images", gray28, "--ref", gray28, "--n", "10"}, false, "holds 3 images"},
		{"missing key", []string{"--images", twoChannels + "#x", "--ref", gray28}, false, `no tensor "x"`},
		{"two channels", []string{"--images", twoChannels, "--ref", gray28}, false, "C = 1 or 3"},
		{"classifier on RGB", append([]string{"--images", rgb28, "--ref", rgb28}, useClf...), false, "1x28x28"},
		{"sizes differ", append([]string{"--images", gray28, "--ref", gray32}, useClf...), false, "1x28x28 but the reference"},
		{"other extractor", append([]string{"--images", gray28, "--ref", inceptionStats}, useClf...), false, "made by extractor"},
		{"other data set", append([]string{"--images", gray28, "--ref", "fashion-mnist:test"}, useClf...), false, "trained on mnist"},
		{"steps without sampling", []string{"--images", gray28, "--ref", gray28, "--steps", "10"}, true, "--steps is for sampling"},
		{"save without sampling", []string{"--images", gray28, "--ref", gray28, "--save-samples", "x.safetensors"}, true, "--save-samples"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ddpm(t, append([]string{"fid"}, c.args...)...)
			if err == nil {
				t.Fatalf("ddpm fid %v succeeded", c.args)
			}
			if c.usage != isUsage(err) {
				t.Errorf("ddpm fid %v: %v (usage error: %v, want %v)", c.args, err, isUsage(err), c.usage)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("ddpm fid %v: %v, want it to say %q", c.args, err, c.want)
			}
		})
	}
}

func TestParseRefSplit(t *testing.T) {
	e := fid.Extractor{Name: fid.ClassifierName("fashion-mnist"), WeightsHash: "0123456789abcdef"}
	for _, c := range []struct{ in, canonical, cache string }{
		{"mnist:test", "mnist:test", "mnist-test-classifier-fashion-mnist-0123456789ab.safetensors"},
		{"mnist:test[:5000]", "mnist:test[0:5000]", "mnist-test-0-5000-classifier-fashion-mnist-0123456789ab.safetensors"},
		{"fashion-mnist:holdout", "fashion-mnist:holdout", "fashion-mnist-holdout-classifier-fashion-mnist-0123456789ab.safetensors"},
		{"mnist:train[100:]", "mnist:train[100:]", "mnist-train-100--1-classifier-fashion-mnist-0123456789ab.safetensors"},
	} {
		r, err := parseRefSplit(c.in)
		if err != nil {
			t.Errorf("parseRefSplit(%q): %v", c.in, err)
			continue
		}
		if r.String() != c.canonical || r.cacheName(e) != c.cache {
			t.Errorf("parseRefSplit(%q) = %q, cache %q; want %q, %q", c.in, r, r.cacheName(e), c.canonical, c.cache)
		}
	}
	inc := fid.Extractor{Name: fid.InceptionName, WeightsHash: "6726825dabcdef0123"}
	if r, _ := parseRefSplit("mnist:test"); r.cacheName(inc) != "mnist-test-inception-6726825dabcd.safetensors" {
		t.Errorf("cache name with Inception: %q", r.cacheName(inc))
	}
}

// toUnit maps the data package's [-1, 1] pixels back to exactly p/255, and clamps.
func TestToUnit(t *testing.T) {
	x := make([]float32, 256)
	want := make([]float32, 256)
	for p := range 256 {
		x[p] = (float32(p)/255 - 0.5) / 0.5 // data's pixelTable
		want[p] = float32(p) / 255
	}
	x = append(x, -3, 1.5, 0.001)
	want = append(want, 0, 1, 128.0/255)
	got := toUnit(x)
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("toUnit(%g) = %g; want %g", x[i], got[i], want[i])
		}
	}
}

// classifier runs ddpm classifier SUB [args] on the pure-Go backend.
func classifier(t *testing.T, sub string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"classifier", sub, "--backend", "go"}, args...), &out, &errb)
	return out.String(), errb.String(), err
}

// ddpm classifier train on 2 steps, then eval; a second train into the same directory is refused.
func TestClassifierCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("loads MNIST")
	}
	dir := filepath.Join(t.TempDir(), "classifier-mnist")
	out, stderr, err := classifier(t, "train", "--data", "mnist", "--out", dir, "--max-steps", "2", "--batch", "8", "--test-n", "40")
	if err != nil {
		t.Fatalf("classifier train: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "test accuracy ") || !strings.Contains(out, "40 images") {
		t.Errorf("output lacks the test accuracy on 40 images:\n%s", out)
	}
	c, err := fid.LoadClassifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata["steps"] != "2" || c.Metadata["holdout_seed"] != "1234" || c.Metadata["test_images"] != "40" {
		t.Errorf("metadata %v; want 2 steps, hold-out seed 1234, 40 test images", c.Metadata)
	}
	out, stderr, err = classifier(t, "eval", "--classifier", dir, "--test-n", "40")
	if err != nil {
		t.Fatalf("classifier eval: %v\n%s", err, stderr)
	}
	// The same weights on the same images: the accuracy recorded at training.
	if want := "test accuracy " + c.Metadata["test_accuracy"] + " ("; !strings.Contains(out, want) {
		t.Errorf("eval output %q; want it to start %q", out, want)
	}
	if _, _, err := classifier(t, "train", "--data", "mnist", "--out", dir, "--max-steps", "1"); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("training into an existing classifier: err = %v; want advice to pass --force", err)
	}
	if _, _, err := classifier(t, "fit"); !isUsage(err) {
		t.Errorf("classifier fit: err = %v; want a usage error", err)
	}
}
