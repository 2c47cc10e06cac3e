package main

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ddpm/ddpm/cpu"
)

// `train --backend onednn` runs the same steps as the GoMLX path: the same batches and noise (the same
// seed and RNG state), so loss.csv agrees to float32 noise; a run on the engine resumes from its own
// checkpoint.
func TestTrainOnEngineMatchesGoMLX(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on MNIST")
	}
	if err := cpu.Available(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	cfg := filepath.Join(t.TempDir(), "unet.json")
	os.WriteFile(cfg, []byte(tinyUNet), 0o644)
	losses := func(backendName, dir string, extra ...string) []float64 {
		args := append([]string{"train", "--data", "mnist", "--out", dir, "--unet-config", cfg, "--batch", "4",
			"--max-steps", "3", "--sample-steps", "1", "--seed", "5", "--backend", backendName}, extra...)
		if _, stderr, err := ddpm(t, args...); err != nil {
			t.Fatalf("train --backend %s: %v\n%s", backendName, err, stderr)
		}
		var out []float64
		for _, row := range readCSV(t, filepath.Join(dir, "loss.csv"))[1:] {
			v, err := strconv.ParseFloat(row[2], 64)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		return out
	}
	engDir := filepath.Join(t.TempDir(), "eng")
	want, got := losses("go", filepath.Join(t.TempDir(), "go")), losses("onednn", engDir, "--checkpoint-every", "3")
	if len(got) != 3 || len(want) != 3 {
		t.Fatalf("losses: engine %v, GoMLX %v; want 3 each", got, want)
	}
	for i := range want {
		if d := math.Abs(got[i]-want[i]) / want[i]; d > 1e-4 {
			t.Errorf("loss at step %d: engine %v, GoMLX %v", i+1, got[i], want[i])
		}
	}
	if _, stderr, err := ddpm(t, "train", "--resume", engDir, "--max-steps", "5", "--backend", "onednn"); err != nil {
		t.Fatalf("resume on the engine: %v\n%s", err, stderr)
	}
	if rows := readCSV(t, filepath.Join(engDir, "loss.csv")); len(rows) != 6 || rows[5][0] != "5" {
		t.Errorf("loss.csv after resume: %v, want a header and steps 1..5", rows)
	}
}
