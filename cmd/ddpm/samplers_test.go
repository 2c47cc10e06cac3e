package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ddpm samplers end to end on a tiny random UNet: two samplers at one and two evaluations and DDPM-2, 4
// samples each against 8 MNIST test images, one JSON line per cell; then the report's table and plot.
func TestSamplersStudy(t *testing.T) {
	if testing.Short() {
		t.Skip("loads MNIST")
	}
	t.Setenv("DDPM_CACHE", t.TempDir())
	model := tinyPipeline(t)
	clf, _ := tinyClassifier(t, "mnist")
	jsonl := filepath.Join(t.TempDir(), "cells.jsonl")
	out, stderr, err := ddpm(t, "samplers", "--model", model, "--samplers", "dpmsolver++:karras,heun", "--evals", "1,3",
		"--ddpm-steps", "2", "--n", "4", "--batch", "4", "--ref", "mnist:test[:8]", "--classifier", clf, "--out", jsonl)
	if err != nil {
		t.Fatalf("samplers: %v\n%s", err, stderr)
	}
	var cells []samplersCell
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var c samplersCell
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		cells = append(cells, c)
	}
	want := []struct {
		sampler string
		evals   int
	}{{"dpmsolver++:karras", 1}, {"dpmsolver++:karras", 3}, {"heun", 1}, {"heun", 3}, {"ddpm", 2}}
	if len(cells) != len(want) {
		t.Fatalf("%d cells; want %d:\n%s", len(cells), len(want), out)
	}
	for i, w := range want {
		c := cells[i]
		if c.Sampler != w.sampler || c.Evals != w.evals || c.N != 4 || c.RefN != 8 || !(c.FID > 0) || c.Dataset != "mnist" {
			t.Errorf("cell %d = %+v; want %s at %d evaluations, N 4 against 8, a positive FID", i, c, w.sampler, w.evals)
		}
	}
	if b, err := os.ReadFile(jsonl); err != nil || strings.Count(string(b), "\n") != len(want) {
		t.Errorf("--out holds %q, %v; want the same %d lines", b, err, len(want))
	}
	md := filepath.Join(t.TempDir(), "samplers.md")
	if _, stderr, err := ddpm(t, "samplers", "--report", jsonl, "--md", md); err != nil {
		t.Fatalf("report: %v\n%s", err, stderr)
	}
	doc, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"| DPM-Solver++ 2M Karras |", "| Heun |", "| 1 evals | 3 evals |", "DDPM, 2 steps", "images/samplers-mnist.png"} {
		if !strings.Contains(string(doc), s) {
			t.Errorf("report lacks %q:\n%s", s, doc)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(md), "images", "samplers-mnist.png")); err != nil {
		t.Errorf("no plot: %v", err)
	}
}
