package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ddpm/ddpm/internal/shared"
)

// Tests of issue 16: the CLI a newcomer meets.

// cancelOn is a writer that cancels a context when what it is given contains a string.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	cancel context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if strings.Contains(c.buf.String(), c.marker) {
		c.cancel()
	}
	return len(p), nil
}

// 16.1: progress with an estimate of the time left; 16.8: the wrote line names the trajectory.
func TestSampleShowsProgress(t *testing.T) {
	defer func(d time.Duration) { progressEvery = d }(progressEvery)
	progressEvery = 0
	src := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	dir := t.TempDir()
	out, stderr, err := ddpm(t, "sample", "--model", src, "--sampler", "ddim", "--steps", "4", "--n", "2",
		"--out", filepath.Join(dir, "g.png"), "--trajectory", filepath.Join(dir, "t.png"))
	if err != nil {
		t.Fatalf("sample: %v\n%s", err, stderr)
	}
	for _, want := range []string{"sampling: 1/4 steps", "sampling: 4/4 steps (100%)", "left"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(out, "trajectory "+filepath.Join(dir, "t.png")) {
		t.Errorf("the wrote line does not name the trajectory: %q", out)
	}
}

// 16.1: Ctrl-C stops sample at the next step and writes nothing.
func TestSampleStopsOnCancel(t *testing.T) {
	defer func(d time.Duration) { progressEvery = d }(progressEvery)
	progressEvery = 0
	src := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	outPath := filepath.Join(t.TempDir(), "g.png")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelOn{marker: "sampling: 1/", cancel: cancel}
	err := run(ctx, []string{"sample", "--backend", "go", "--model", src, "--sampler", "ddim", "--steps", "20", "--n", "2", "--out", outPath}, &bytes.Buffer{}, w)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("sample after a cancel = %v; want context.Canceled\n%s", err, w.buf.String())
	}
	if _, err := os.Stat(outPath); err == nil {
		t.Errorf("a cancelled sample wrote %s", outPath)
	}
	if s := w.buf.String(); strings.Contains(s, "sampling: 20/20") || !strings.Contains(s, "nothing was written") {
		t.Errorf("sample did not stop early or did not say so:\n%s", s)
	}
}

// 16.3 and 16.5: every flag and output path is checked before any model is loaded, in the flags' words.
func TestChecksBeforeWork(t *testing.T) {
	src := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	exported := filepath.Join(dir, "exported")
	os.Mkdir(exported, 0o755)
	os.WriteFile(filepath.Join(exported, "model_index.json"), []byte("{}"), 0o644)
	png := filepath.Join(dir, "x.png")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sample", "--n", "0"}, "--n 0: want between 1"},
		{[]string{"sample", "--n", "-3"}, "--n -3"},
		{[]string{"sample", "--cols", "-2"}, "--cols -2"},
		{[]string{"sample", "--scale", "-1"}, "--scale -1"},
		{[]string{"sample", "--eta", "-1"}, "--eta -1"},
		{[]string{"sample", "--variance", "learned"}, "fixed_large, fixed_small or fixed_small_log"},
		{[]string{"sample", "--out", dir}, "is a folder"},
		{[]string{"sample", "--out", filepath.Join(file, "x.png")}, "is a file"},
		{[]string{"sample", "--out", png, "--trajectory", filepath.Join(dir, "t.jpg")}, "--trajectory"},
		{[]string{"sample", "--out", png, "--trajectory", filepath.Join(file, "t.png")}, "is a file"},
		{[]string{"sample", "--init", "x.safetensors"}, "FILE.safetensors#KEY"},
		{[]string{"sample", "--run", filepath.Join(dir, "missing")}, "no such folder"},
		{[]string{"export", "--run", src, "--out", exported}, "--force"},
		{[]string{"export", "--run", src, "--out", file}, "is a file"},
		{[]string{"viz", "loss", "--run", dir, "--out", filepath.Join(file, "l.png")}, "is a file"},
		{[]string{"fid", "--save-samples", filepath.Join(file, "s.safetensors")}, "is a file"},
		{[]string{"train", "--out", filepath.Join(dir, "r"), "--batch", "0"}, "--batch 0"},
		{[]string{"train", "--out", filepath.Join(dir, "r"), "--sample-steps", "5000"}, "--sample-steps 5000"},
		{[]string{"train", "--out", file}, "is a file"},
		{[]string{"toy", "--out", file}, "is a file"},
	} {
		_, stderr, err := ddpm(t, c.args...)
		switch {
		case err == nil:
			t.Errorf("ddpm %v succeeded", c.args)
		case !isUsage(err) || !strings.Contains(err.Error(), c.want):
			t.Errorf("ddpm %v: %v; want a usage error saying %q", c.args, err, c.want)
		case strings.Contains(stderr, "backend:"):
			t.Errorf("ddpm %v opened a backend before failing:\n%s", c.args, stderr)
		}
		if strings.Contains(err.Error(), "Options.") || strings.Contains(err.Error(), "batch_size") {
			t.Errorf("ddpm %v: %v speaks the code's language", c.args, err)
		}
	}
	_, _, err := ddpm(t, "sample", "--model", src, "--steps", "5000", "--out", png)
	if err == nil || !strings.Contains(err.Error(), "--steps 5000: want between 1 and 1000") {
		t.Errorf("sample --steps 5000: %v; want the flag and the range named", err)
	}
	_, _, err = ddpm(t, "sample", "--run", src, "--online", "--out", png)
	if err == nil || !strings.Contains(err.Error(), "no checkpoints") || strings.Contains(err.Error(), "train:") {
		t.Errorf("sample --online of a pipeline folder: %v; want a message about --online, not train's", err)
	}
}

// 16.8: an ignored flag is said to be ignored.
func TestFIDWarnsIgnoredInceptionWeights(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o644)
	_, stderr, err := ddpm(t, "fid", "--features", "classifier", "--inception-weights", "w.pth", "--save-samples", filepath.Join(file, "s.safetensors"))
	if err == nil || !strings.Contains(stderr, "--inception-weights is ignored with --features classifier") {
		t.Errorf("fid --features classifier --inception-weights: %v\n%s; want a warning", err, stderr)
	}
}

// 16.4: help for every command and subcommand, ddpm help X = ddpm X -h, each flag once; flag errors
// printed once; ddpm version.
func TestHelpForEveryCommand(t *testing.T) {
	var names [][]string
	for n := range commands {
		names = append(names, []string{n})
	}
	names = append(names, []string{"classifier", "train"}, []string{"classifier", "eval"}, []string{"viz", "step"}, []string{"viz", "loss"})
	sort.Slice(names, func(i, j int) bool { return strings.Join(names[i], " ") < strings.Join(names[j], " ") })
	for _, n := range names {
		var o1, e1, o2, e2 bytes.Buffer
		err1 := run(context.Background(), append([]string{"help"}, n...), &o1, &e1)
		err2 := run(context.Background(), append(append([]string{}, n...), "-h"), &o2, &e2)
		if err1 != nil && !errors.Is(err1, flag.ErrHelp) || err2 != nil && !errors.Is(err2, flag.ErrHelp) {
			t.Errorf("help %v: %v; %v -h: %v", n, err1, n, err2)
			continue
		}
		help := e1.String()
		if help == "" || help != e2.String() {
			t.Errorf("ddpm help %v (%q) differs from ddpm %v -h (%q)", n, help, n, e2.String())
		}
		if !strings.HasPrefix(help, "Usage: ddpm "+n[0]) {
			t.Errorf("ddpm help %v: %q; want a usage line", n, help)
		}
		if strings.HasSuffix(help, "Flags:\n") {
			t.Errorf("ddpm help %v has an empty Flags section", n)
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(help, "\n") {
			if f, ok := strings.CutPrefix(line, "  -"); ok {
				f = strings.Fields(f)[0]
				if seen[f] {
					t.Errorf("ddpm help %v lists -%s twice", n, f)
				}
				seen[f] = true
			}
		}
	}
	var errb bytes.Buffer
	err := run(context.Background(), []string{"sample", "--bogus"}, &bytes.Buffer{}, &errb)
	if !isUsage(err) || errb.Len() != 0 || !strings.Contains(err.Error(), "ddpm sample -h") {
		t.Errorf("a bad flag: %v, and %q on stderr; want one usage error pointing to -h and nothing printed", err, errb.String())
	}
	out, _, err := ddpm(t, "version")
	if err != nil || !strings.Contains(out, "GoMLX v") || !strings.Contains(out, "go1.") || !strings.Contains(out, "commit") {
		t.Errorf("ddpm version: %v, %q", err, out)
	}
}

// 16.6: classifier eval finds the bundled classifier from any directory, and its errors are its own.
func TestClassifierEvalFromAnyDirectory(t *testing.T) {
	t.Chdir(t.TempDir())
	out, stderr, err := ddpm(t, "classifier", "eval", "--test-n", "20", "--batch", "20")
	if err != nil || !strings.Contains(out, "test accuracy") {
		t.Fatalf("classifier eval outside the repository: %v\n%s%s", err, out, stderr)
	}
	_, _, err = ddpm(t, "classifier", "eval", "--classifier", "nowhere")
	if err == nil || strings.HasPrefix(err.Error(), "fid:") || strings.Contains(err.Error(), "--data  ") {
		t.Errorf("classifier eval of a missing classifier: %v; want its own prefix and a complete command", err)
	}
}
