package run

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

const tinyUNet = `{"_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1, "out_channels": 1,
 "block_out_channels": [4, 8], "layers_per_block": 1, "norm_num_groups": 4, "attention_head_dim": null,
 "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"]}`

func tinyConfig() Config {
	return Config{Data: "mnist", Epochs: 1, UNet: json.RawMessage(tinyUNet), Schedule: schedule.Default(),
		Train: train.Default(), SampleSteps: 1, CkptSteps: 1, CkptMinutes: 10, KeepCkpts: 2, LogEvery: 1}
}

func tinyModel(t *testing.T) *unet.Model {
	t.Helper()
	uc, err := unet.ParseConfig(json.RawMessage(tinyUNet))
	if err != nil {
		t.Fatal(err)
	}
	m, err := unet.New(uc)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tinyState is a state of m at step whose every value is v.
func tinyState(m *unet.Model, step int64, v float32) *train.State {
	n := 0
	for _, s := range m.Specs() {
		n += s.Size()
	}
	flat := func() *tensors.Tensor {
		x := make([]float32, n)
		for i := range x {
			x[i] = v
		}
		return tensors.FromFlatDataAndDimensions(x, n)
	}
	return &train.State{Step: step, Params: flat(), EMA: flat(), M: flat(), V: flat(),
		RNG: tensors.FromFlatDataAndDimensions([]uint64{1, 2, 3}, 3)}
}

func batcher() data.BatcherState { return data.BatcherState{N: 8, BatchSize: 4, DropLast: true} }

func names(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// Issue 14.4: one training per folder; the second is told the holder's PID.
func TestLockNamesTheHolder(t *testing.T) {
	dir := t.TempDir()
	r, err := Create(dir, tinyConfig(), false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("Open of a locked run = %v; want ErrLocked naming PID %d", err, os.Getpid())
	}
	if _, err := Create(dir, tinyConfig(), true); !errors.Is(err, ErrLocked) {
		t.Errorf("Create --force of a locked run = %v; want ErrLocked", err)
	}
	r.Close()
	r2, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	r2.Close()
}

// Issue 14.3: a folder with a config and no checkpoint is a run: --out refuses it with both ways out,
// --force starts it again, and a non-run folder is never cleared.
func TestCreateOverAnExistingFolder(t *testing.T) {
	dir := t.TempDir()
	r, err := Create(dir, tinyConfig(), false)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	_, err = Create(dir, tinyConfig(), false)
	if err == nil || !strings.Contains(err.Error(), "--resume") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("Create over a run = %v; want advice to --resume or --force", err)
	}
	os.MkdirAll(filepath.Join(dir, CheckpointDir), 0o755)
	os.WriteFile(filepath.Join(dir, CheckpointDir, "step-00000001.safetensors"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	r, err = Create(dir, tinyConfig(), true)
	if err != nil {
		t.Fatalf("Create --force over a run: %v", err)
	}
	r.Close()
	if len(Checkpoints(dir)) != 0 {
		t.Errorf("--force kept the old checkpoints")
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("--force removed a file that is not the run's: %v", err)
	}

	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "thesis.tex"), []byte("x"), 0o644)
	if _, err := Create(other, tinyConfig(), true); err == nil || !strings.Contains(err.Error(), "not a run folder") {
		t.Errorf("Create --force over a non-run folder = %v; want a refusal", err)
	}
	if got := names(t, other); len(got) != 1 {
		t.Errorf("refused folder now holds %q; want it untouched", got)
	}
}

// Issue 14.2: the leftovers of a killed writer go at the next start, but not while a training runs.
func TestCleanRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	r, err := Create(dir, tinyConfig(), false)
	if err != nil {
		t.Fatal(err)
	}
	left := []string{"checkpoints/.step-00000002.safetensors.tmp-123", "unet/.diffusion_pytorch_model.safetensors.old-ab12",
		"loss.csv.tmp", ".train.json.tmp-9"}
	for _, l := range left {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, l)), 0o755)
		os.WriteFile(filepath.Join(dir, l), []byte("x"), 0o644)
	}
	if got, _ := Clean(dir); len(got) != 0 {
		t.Errorf("Clean during a training removed %q; want nothing (they may be its work in progress)", got)
	}
	r.Close()
	got, err := Clean(dir)
	if err != nil || len(got) != len(left) {
		t.Errorf("Clean = %q, %v; want the %d leftovers", got, err, len(left))
	}
	for _, n := range names(t, dir) {
		if IsLeftover(filepath.Base(n)) {
			t.Errorf("%s is still there", n)
		}
	}
}

// Issue 14.8: a state with a NaN or an infinity is never saved; the last finite checkpoint stays.
func TestSaveRefusesNonFiniteState(t *testing.T) {
	dir := t.TempDir()
	r, err := Create(dir, tinyConfig(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := tinyModel(t)
	if _, err := r.Save(m, tinyState(m, 1, 0.5), batcher()); err != nil {
		t.Fatal(err)
	}
	before := names(t, dir)
	for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		_, err := r.Save(m, tinyState(m, 2, v), batcher())
		var nf *NonFiniteError
		if !errors.As(err, &nf) || nf.Step != 2 || nf.Last == nil || nf.Last.Step != 1 || !strings.Contains(err.Error(), "step 1") {
			t.Errorf("Save of a %v state = %v; want a NonFiniteError at step 2 naming checkpoint 1", v, err)
		}
	}
	if after := names(t, dir); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("a refused save changed the folder: %q; was %q", after, before)
	}
	if err := r.NonFinite(7, []float32{0.1, float32(math.NaN()), 0.2}); err == nil || err.(*NonFiniteError).Step != 6 {
		t.Errorf("NonFinite(losses of steps 5..7 with step 6 NaN) = %v; want step 6", err)
	}
}

// Issue 14.9: a damaged newest checkpoint is reported, left alone, and the one before it used.
func TestLatestReportsDamagedCheckpoints(t *testing.T) {
	dir := t.TempDir()
	r, err := Create(dir, tinyConfig(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m := tinyModel(t)
	if _, err := Latest(dir, m.Specs()); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("Latest of a new run = %v; want ErrNoCheckpoint", err)
	}
	for step := int64(1); step <= 2; step++ {
		if _, err := r.Save(m, tinyState(m, step, 0.25), batcher()); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(CheckpointPath(dir, 2), []byte("garbage"), 0o644)
	got, err := Latest(dir, m.Specs())
	if err != nil {
		t.Fatal(err)
	}
	if got.State.Step != 1 || len(got.Skipped) != 1 || !strings.Contains(got.Skipped[0], "step-00000002") {
		t.Errorf("Latest = step %d, skipped %q; want step 1 and step 2 reported", got.State.Step, got.Skipped)
	}
	if b, _ := os.ReadFile(CheckpointPath(dir, 2)); string(b) != "garbage" {
		t.Errorf("the damaged checkpoint was changed")
	}
}

// Issue 16.7: after a resume, wall_seconds continues from the last kept row; torn and lost rows go.
func TestLossLogContinues(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, LossFile), []byte("step,epoch,loss,wall_seconds\n1,0.1,0.5,1.000\n2,0.2,0.4,2.500\n3,0.3,0.3,4.000\n4,0.4,0.2,5.0"), 0o644)
	l, err := OpenLossLog(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(3, 0.3, 0.35, 1)
	l.Close()
	b, _ := os.ReadFile(filepath.Join(dir, LossFile))
	want := "step,epoch,loss,wall_seconds\n1,0.1,0.5,1.000\n2,0.2,0.4,2.500\n3,0.3000,0.35,3.500\n"
	if string(b) != want {
		t.Errorf("loss.csv = %q; want %q", b, want)
	}
	os.WriteFile(filepath.Join(dir, LossFile), []byte("step,epoch,loss,wall_seconds\n1,0.1,0.5,1.000\n2,0.2,0.4"), 0o644)
	s, err := ReadLoss(filepath.Join(dir, LossFile))
	if err != nil || len(s.Loss) != 1 {
		t.Errorf("ReadLoss of a torn file = %v, %v; want the one whole row", s, err)
	}
}
