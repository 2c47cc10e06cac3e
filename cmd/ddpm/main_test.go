package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/internal/shared"
	rundir "github.com/ddpm/ddpm/run"
)

// ddpm runs the CLI in-process on the pure-Go backend and returns stdout, stderr and the error.
func ddpm(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	args = withGoBackend(args)
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

// withGoBackend adds --backend go to the commands that take it.
func withGoBackend(args []string) []string {
	at := 0
	switch {
	case len(args) == 0:
	case args[0] == "classifier" && len(args) > 1 && !strings.HasPrefix(args[1], "-"):
		at = 2
	case args[0] == "viz" && slices.Contains(args, "step"):
		return append(append([]string{}, args...), "--backend", "go")
	case slices.Contains([]string{"train", "sample", "fid", "bench", "toy", "verify"}, args[0]):
		at = 1
	}
	if at == 0 {
		return args
	}
	return append(append(append([]string{}, args[:at]...), "--backend", "go"), args[at:]...)
}

func TestVerifyAgainstDiffusers(t *testing.T) {
	dir := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	out, stderr, err := ddpm(t, "verify", "--fixture", dir)
	if err != nil {
		t.Fatalf("verify: %v\n%s%s", err, out, stderr)
	}
	// Three weights files (safetensors, legacy attention names, torch .bin) x four checks.
	if n := strings.Count(out, " ok\n"); n != 12 {
		t.Errorf("verify passed %d checks, want 12:\n%s", n, out)
	}
}

// The command of issue 4: DDPM from a recorded x_T with diffusers' recorded step noise, from a
// directory that has only the .bin weights, to a raw safetensors file.
func TestSampleReproducesDiffusersDDPM(t *testing.T) {
	src := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	dir := t.TempDir()
	for _, f := range []string{"model_index.json", "scheduler/scheduler_config.json", "unet/config.json", "unet/diffusion_pytorch_model.bin"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ref := filepath.Join(src, "reference_io.safetensors")
	outPath := filepath.Join(t.TempDir(), "x0.safetensors")
	if _, stderr, err := ddpm(t, "sample", "--model", dir, "--scheduler", "ddpm", "--steps", "20",
		"--init", ref+"#ddpm20_x_T", "--noise", ref+"#ddpm20_noise", "--out", outPath); err != nil {
		t.Fatalf("sample: %v\n%s", err, stderr)
	}
	got, err := checkpoint.ReadSafetensors(outPath)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := checkpoint.ReadSafetensors(ref)
	a, _ := got.Tensors["sample"].Float32()
	b, _ := r.Tensors["ddpm20_x_0"].Float32()
	if len(a) != len(b) {
		t.Fatalf("sample has %d values, want %d", len(a), len(b))
	}
	for i := range a {
		if d := a[i] - b[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("sample[%d] = %g, diffusers %g", i, a[i], b[i])
		}
	}
}

const tinyUNet = `{"_class_name": "UNet2DModel", "sample_size": 28, "in_channels": 1, "out_channels": 1,
 "block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": null,
 "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}`

// Train a tiny UNet on MNIST for 2 steps, resume to 4; a damaged newest checkpoint is skipped, not
// deleted, and bad flags are usage errors.
func TestTrainResume(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on MNIST")
	}
	cfg := filepath.Join(t.TempDir(), "unet.json")
	os.WriteFile(cfg, []byte(tinyUNet), 0o644)
	dir := filepath.Join(t.TempDir(), "run")
	common := []string{"--sample-steps", "1", "--checkpoint-every", "2", "--keep", "5"}
	_, stderr, err := ddpm(t, append([]string{"train", "--data", "mnist", "--out", dir, "--unet-config", cfg,
		"--batch", "4", "--max-steps", "2"}, common...)...)
	if err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	for _, f := range []string{"train.json", "loss.csv", "loss.png", "model_index.json", "unet/config.json",
		"unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json", "samples/final.png",
		"checkpoints/step-00000002.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("run directory lacks %s", f)
		}
	}
	if _, _, err := ddpm(t, "train", "--data", "mnist", "--out", dir); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("training into a non-empty --out: err = %v, want advice to --resume", err)
	}
	if _, stderr, err = ddpm(t, "train", "--resume", dir, "--max-steps", "4"); err != nil {
		t.Fatalf("resume: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "at step 2") {
		t.Errorf("resume did not start at step 2:\n%s", stderr)
	}
	rows := readCSV(t, filepath.Join(dir, "loss.csv"))
	if len(rows) != 5 || rows[4][0] != "4" {
		t.Errorf("loss.csv after resume: %v, want a header and steps 1..4", rows)
	}
	// Damage the newest checkpoint: resuming must fall back to step 2 and leave the file alone.
	newest := filepath.Join(dir, "checkpoints", "step-00000004.safetensors")
	if err := os.WriteFile(newest, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err = ddpm(t, "train", "--resume", dir, "--max-steps", "3"); err != nil {
		t.Fatalf("resume past a damaged checkpoint: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "at step 2") {
		t.Errorf("resume with a damaged newest checkpoint did not fall back to step 2:\n%s", stderr)
	}
	if b, _ := os.ReadFile(newest); string(b) != "garbage" {
		t.Errorf("the damaged checkpoint was modified or removed")
	}
	if _, _, err := ddpm(t, "train", "--resume", dir, "--lr", "1"); !isUsage(err) {
		t.Errorf("changing --lr on resume: err = %v, want a usage error", err)
	}
}

// --lr-scheduler and --lr-warmup-steps: recorded in train.json, the decay spanning the run's planned
// steps (not written there: recomputed from --max-steps, as on resume), fixed on resume, and bad values
// refused before any work.
func TestTrainLRScheduler(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "unet.json")
	os.WriteFile(cfg, []byte(tinyUNet), 0o644)
	dir := filepath.Join(t.TempDir(), "run")
	_, stderr, err := ddpm(t, "train", "--data", "mnist", "--out", dir, "--unet-config", cfg, "--batch", "4",
		"--max-steps", "3", "--sample-steps", "1", "--lr-scheduler", "cosine", "--lr-warmup-steps", "1")
	if err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "cosine schedule to 0 at step 3, warmup 1 steps") {
		t.Errorf("train does not announce the schedule over its 3 steps:\n%s", stderr)
	}
	rc, err := rundir.ReadConfig(dir)
	if err != nil || rc.Train.LRScheduler != "cosine" || rc.Train.LRWarmupSteps != 1 || rc.Train.LRTotalSteps != 0 {
		t.Errorf("train.json: lr_scheduler %q, warmup %d, total %d (%v); want cosine, 1 and 0 (the run's steps)",
			rc.Train.LRScheduler, rc.Train.LRWarmupSteps, rc.Train.LRTotalSteps, err)
	}
	if _, stderr, err := ddpm(t, "train", "--resume", dir, "--max-steps", "5"); err != nil || !strings.Contains(stderr, "to 0 at step 5") {
		t.Errorf("resume to 5 steps: %v; want the schedule stretched to step 5:\n%s", err, stderr)
	}
	if _, _, err := ddpm(t, "train", "--resume", dir, "--lr-scheduler", "linear"); !isUsage(err) {
		t.Errorf("changing --lr-scheduler on resume: err = %v; want a usage error", err)
	}
	for _, bad := range [][]string{{"--lr-scheduler", "cosine_with_restarts"}, {"--lr-warmup-steps", "-1", "--lr-scheduler", "linear"}, {"--lr-warmup-steps", "5"}} {
		args := append([]string{"train", "--data", "mnist", "--out", filepath.Join(t.TempDir(), "r"), "--max-steps", "1"}, bad...)
		if _, _, err := ddpm(t, args...); !isUsage(err) {
			t.Errorf("train %v: err = %v; want a usage error", bad, err)
		}
	}
}

func TestSampleWritesGridAndTrajectory(t *testing.T) {
	src := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	dir := t.TempDir()
	grid, traj := filepath.Join(dir, "g.png"), filepath.Join(dir, "t.gif")
	if _, stderr, err := ddpm(t, "sample", "--model", src, "--sampler", "ddim", "--steps", "4", "--n", "4",
		"--out", grid, "--trajectory", traj); err != nil {
		t.Fatalf("sample: %v\n%s", err, stderr)
	}
	f, err := os.Open(grid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// 2x2 cells of 16x16 at scale 2 with padding 2: 2*32 + 3*2 = 70.
	if b := img.Bounds(); b.Dx() != 70 || b.Dy() != 70 {
		t.Errorf("grid is %v, want 70x70", b)
	}
	if fi, err := os.Stat(traj); err != nil || fi.Size() == 0 {
		t.Errorf("no trajectory GIF: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	src := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	for _, c := range []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"unknown command", []string{"frobnicate"}, true, "unknown command"},
		{"bad output type", []string{"sample", "--model", src, "--out", "x.jpg"}, true, ".png or .safetensors"},
		{"run and model", []string{"sample", "--run", "a", "--model", "b"}, true, "not both"},
		{"missing key", []string{"sample", "--model", src, "--init", filepath.Join(src, "reference_io.safetensors") + "#nope", "--out", filepath.Join(t.TempDir(), "x.png")}, false, "has no tensor \"nope\""},
		{"bad sampler", []string{"sample", "--model", src, "--sampler", "pndm", "--out", filepath.Join(t.TempDir(), "x.png")}, true, "unknown scheduler"},
		{"train without out", []string{"train"}, true, "--out"},
		{"bad holdout", []string{"train", "--out", t.TempDir() + "/r", "--holdout", "2"}, true, "--holdout"},
		{"missing model dir", []string{"sample", "--model", "/nonexistent/dir", "--out", "x.png"}, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ddpm(t, c.args...)
			if err == nil {
				t.Fatalf("ddpm %v succeeded", c.args)
			}
			if c.usage != isUsage(err) {
				t.Errorf("ddpm %v: %v (usage error: %v, want %v)", c.args, err, isUsage(err), c.usage)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("ddpm %v: %v, want it to say %q", c.args, err, c.want)
			}
		})
	}
}

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestVizStepAndLoss(t *testing.T) {
	dir := t.TempDir()
	step := filepath.Join(dir, "step.png")
	if _, stderr, err := ddpm(t, "viz", "step", "--out", step, "--t", "10,900"); err != nil {
		t.Fatalf("viz step: %v\n%s", err, stderr)
	}
	f, err := os.Open(step)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 5*28 || b.Dy() < 2*28 {
		t.Errorf("step panel is %v, too small for 2 rows of 5 images", b)
	}
	os.WriteFile(filepath.Join(dir, "loss.csv"), []byte("step,epoch,loss,wall_seconds\n1,0.1,0.9,1\n2,0.2,0.5,2\n3,0.3,0.2,3\n"), 0o644)
	if _, stderr, err := ddpm(t, "viz", "loss", "--run", dir); err != nil {
		t.Fatalf("viz loss: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "loss.png")); err != nil {
		t.Error(err)
	}
	// Two runs on one plot, each with the mean of its last tenth.
	other := filepath.Join(dir, "bf16")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, "loss.csv"), []byte("step,epoch,loss,wall_seconds\n1,0.1,0.8,1\n2,0.2,0.4,2\n3,0.3,0.25,3\n"), 0o644)
	both := filepath.Join(dir, "both.png")
	out, stderr, err := ddpm(t, "viz", "loss", "--run", dir+","+other, "--out", both)
	if err != nil {
		t.Fatalf("viz loss of two runs: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "mean of the last 1: 0.20000") || !strings.Contains(out, "mean of the last 1: 0.25000") {
		t.Errorf("viz loss of two runs printed %q; want each run's final mean (0.2 and 0.25)", out)
	}
	if _, err := os.Stat(both); err != nil {
		t.Error(err)
	}
	if _, _, err := ddpm(t, "viz", "step", "--t", "5000", "--out", step); !isUsage(err) {
		t.Errorf("viz step --t 5000: %v, want a usage error", err)
	}
}

// bench --what sample reports its times apart, and with --repeat the later runs' wall time.
func TestBenchSample(t *testing.T) {
	src := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	out, stderr, err := ddpm(t, "bench", "--what", "sample", "--preset", src, "--steps", "4", "--batch", "1",
		"--steps-per-call", "2", "--repeat", "2", "--out", filepath.Join(t.TempDir(), "s.png"))
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench printed %q: %v", out, err)
	}
	num := func(k string) float64 { v, _ := res[k].(float64); return v }
	for _, k := range []string{"wall_s", "load_s", "first_call_s", "steps_s", "steady_step_ms", "repeat_wall_s"} {
		if num(k) <= 0 {
			t.Errorf("bench: %s = %v; want a positive number\n%s", k, res[k], out)
		}
	}
	if !(num("wall_s") > num("load_s")+num("steps_s") && num("steps_s") >= num("first_call_s")) {
		t.Errorf("bench: want wall_s > load_s + steps_s and steps_s >= first_call_s: %s", out)
	}
	t.Log(out)
}
