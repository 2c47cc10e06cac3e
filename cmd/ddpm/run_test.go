package main

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
	rundir "github.com/ddpm/ddpm/run"
)

// tiny8 is a UNet of 8x8 gray images small enough to train in a fraction of a second per step on the
// pure-Go backend.
const tiny8 = `{"_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1, "out_channels": 1,
 "block_out_channels": [4, 8], "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": null,
 "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"]}`

// tinyData writes 16 random 8x8 gray PNGs and tiny8's config; it returns the image folder and the
// config file.
func tinyData(t testing.TB) (images, config string) {
	t.Helper()
	dir := t.TempDir()
	images = filepath.Join(dir, "images")
	os.Mkdir(images, 0o755)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 16 {
		img := image.NewGray(image.Rect(0, 0, 8, 8))
		for p := range img.Pix {
			img.Pix[p] = uint8(r.IntN(256))
		}
		f, err := os.Create(filepath.Join(images, "img"+strconv.Itoa(i)+".png"))
		if err != nil {
			t.Fatal(err)
		}
		png.Encode(f, img)
		f.Close()
	}
	config = filepath.Join(dir, "unet.json")
	os.WriteFile(config, []byte(tiny8), 0o644)
	return images, config
}

// tinyTrain is the start of a `ddpm train` of tiny8 that checkpoints every step.
func tinyTrain(t testing.TB, out string, steps int, extra ...string) []string {
	images, cfg := tinyData(t)
	return append([]string{"train", "--data", images, "--out", out, "--unet-config", cfg, "--batch", "4",
		"--max-steps", strconv.Itoa(steps), "--checkpoint-every", "1", "--sample-steps", "1", "--sample-every", "0"}, extra...)
}

// Issue 14.3: a run killed before its first checkpoint resumes from step 0, or starts again with
// --out --force; issue 16.7: resuming a finished run says so instead of a summary of nothing.
func TestRunWithoutCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	args := tinyTrain(t, dir, 2)
	if _, stderr, err := ddpm(t, args...); err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	os.RemoveAll(filepath.Join(dir, "checkpoints")) // as if killed before its first checkpoint
	_, _, err := ddpm(t, args...)
	if err == nil || !strings.Contains(err.Error(), "--resume") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("--out over a run: %v; want both ways out (--resume, --force)", err)
	}
	_, stderr, err := ddpm(t, "train", "--resume", dir)
	if err != nil || !strings.Contains(stderr, "at step 0") {
		t.Fatalf("--resume of a run with no checkpoint: %v\n%s", err, stderr)
	}
	if c := rundir.Checkpoints(dir); len(c) == 0 || c[len(c)-1].Step != 2 {
		t.Errorf("after the resume, checkpoints %v; want step 2", c)
	}
	out, _, err := ddpm(t, "train", "--resume", dir)
	if err != nil || !strings.Contains(out, "at step 2 already") || strings.Contains(out, "NaN") {
		t.Errorf("resuming a finished run: %v, %q; want a clear 'already at step 2'", err, out)
	}
	if _, stderr, err := ddpm(t, append(args, "--force")...); err != nil {
		t.Fatalf("--out --force over a run: %v\n%s", err, stderr)
	}
}

// Issue 14.4: a second training of a folder in use fails at once, naming the holder's PID.
func TestRunFolderLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	args := tinyTrain(t, dir, 1)
	if _, stderr, err := ddpm(t, args...); err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	r, err := rundir.Open(dir) // this process holds the folder, as a running train would
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, a := range [][]string{{"train", "--resume", dir, "--max-steps", "2"}, append(args, "--force")} {
		_, _, err := ddpm(t, a...)
		if !errors.Is(err, rundir.ErrLocked) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
			t.Errorf("ddpm %v on a locked folder: %v; want an error naming PID %d", a, err, os.Getpid())
		}
	}
}

// Issue 14.8: a diverging run stops at the first non-finite loss, saves nothing non-finite and says
// which checkpoint is intact.
func TestDivergingRunKeepsLastFiniteCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if _, stderr, err := ddpm(t, tinyTrain(t, dir, 2, "--lr", "1e6")...); err != nil {
		t.Fatalf("the first two steps at --lr 1e6: %v\n%s", err, stderr)
	}
	_, stderr, err := ddpm(t, "train", "--resume", dir, "--max-steps", "30")
	if err == nil || !strings.Contains(err.Error(), "NaN or infinite at step") {
		t.Fatalf("train --lr 1e6: %v\n%s; want a stop at a non-finite loss", err, stderr)
	}
	cs := rundir.Checkpoints(dir)
	if len(cs) == 0 {
		t.Fatalf("no checkpoint before the divergence (%v); the test wants one", err)
	}
	last := cs[len(cs)-1]
	if !strings.Contains(err.Error(), fmt.Sprintf("last checkpoint, step %d", last.Step)) {
		t.Errorf("the error %q does not name the last checkpoint %s", err, last.Path)
	}
	if _, err := checkpoint.ReadSafetensors(last.Path); err != nil {
		t.Errorf("the last checkpoint does not read back: %v", err)
	}
	_, stderr, err = ddpm(t, "train", "--resume", dir)
	if err == nil {
		t.Errorf("resume diverged again? %v\n%s", err, stderr)
	}
}

// Issue 14.9: resuming past an unreadable newest checkpoint says so.
func TestResumeReportsUnreadableCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if _, stderr, err := ddpm(t, tinyTrain(t, dir, 1, "--keep", "3")...); err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	if _, stderr, err := ddpm(t, "train", "--resume", dir, "--max-steps", "2"); err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	os.WriteFile(rundir.CheckpointPath(dir, 2), []byte("garbage"), 0o644)
	_, stderr, err := ddpm(t, "train", "--resume", dir, "--max-steps", "3")
	if err != nil || !strings.Contains(stderr, "unreadable checkpoint") || !strings.Contains(stderr, "step-00000002") ||
		!strings.Contains(stderr, "at step 1") {
		t.Errorf("resume past a damaged checkpoint: %v\n%s; want a warning naming step-00000002 and a resume at step 1", err, stderr)
	}
}

// Issue 14.10: SIGTERM exits 143 and SIGINT 130, each with a message that says what stopped it.
func TestExitStatusOfSignals(t *testing.T) {
	for _, c := range []struct {
		sig  syscall.Signal
		code int
		msg  string
	}{{syscall.SIGTERM, 143, "stopped by SIGTERM"}, {syscall.SIGINT, 130, "stopped by SIGINT"}} {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(stopSignal{c.sig})
		var b strings.Builder
		if got := exitStatus(ctx, context.Canceled, &b); got != c.code || !strings.Contains(b.String(), c.msg) {
			t.Errorf("%v: exit %d, %q; want %d, %q", c.sig, got, b.String(), c.code, c.msg)
		}
	}
	var b strings.Builder
	if got := exitStatus(context.Background(), usagef("bad flag"), &b); got != 2 || strings.Count(b.String(), "bad flag") != 1 {
		t.Errorf("usage error: exit %d, %q; want 2 and the message once", got, b.String())
	}
}
