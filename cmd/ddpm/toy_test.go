package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestToyWritesEveryFile runs `ddpm toy` briefly (5 steps, 50 samples: the files, not the quality,
// are under test here; package toy tests the quality).
func TestToyWritesEveryFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "toy")
	stdout, stderr, err := ddpm(t, "toy", "--out", dir, "--steps", "5", "--samples", "50", "--data", "moons", "--seed", "3")
	if err != nil {
		t.Fatalf("ddpm toy: %v\n%s", err, stderr)
	}
	for _, name := range toyFiles() {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was not written: %v", name, err)
		}
		if !strings.Contains(stdout, "wrote "+p+"\n") {
			t.Errorf("stdout does not say it wrote %s:\n%s", p, stdout)
		}
	}
	for _, want := range []string{"trained 5 steps in", "sampled 50 points with DDPM (200 steps)", "moons samples: precision ", "x a fresh draw of the data"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	for _, c := range []struct {
		name, header string
		rows         int
	}{{"data.csv", "x,y", 10000}, {"samples.csv", "x,y", 50}, {"loss.csv", "step,loss", 5}} {
		rows := readCSV(t, filepath.Join(dir, c.name))
		if len(rows) != c.rows+1 || strings.Join(rows[0], ",") != c.header {
			t.Errorf("%s: header %v and %d rows; want %q and %d rows", c.name, rows[0], len(rows)-1, c.header, c.rows)
		}
	}
	for _, c := range []struct {
		name       string
		minW, minH int
	}{{"scatter.png", 640, 320}, {"trajectory.png", 1000, 400}, {"loss.png", 720, 440}} {
		f, err := os.Open(filepath.Join(dir, c.name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if b := img.Bounds(); b.Dx() < c.minW || b.Dy() < c.minH || b.Dx() > 2*c.minW || b.Dy() > 2*c.minH {
			t.Errorf("%s is %dx%d; want at least %dx%d and at most twice that", c.name, b.Dx(), b.Dy(), c.minW, c.minH)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "config.json")); err != nil || !strings.Contains(string(b), `"data": "moons"`) || !strings.Contains(string(b), `"seed": 3`) {
		t.Errorf("config.json does not record --data moons --seed 3 (%v):\n%s", err, b)
	}
}

func TestToyBadFlags(t *testing.T) {
	out := filepath.Join(t.TempDir(), "toy")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{"toy"}, "--out"},
		{"unknown data", []string{"toy", "--out", out, "--data", "spiral"}, `"swiss-roll", "moons", "ring"`},
		{"zero steps", []string{"toy", "--out", out, "--steps", "0"}, "--steps 0"},
		{"negative samples", []string{"toy", "--out", out, "--samples", "-1"}, "--samples -1"},
		{"not a number", []string{"toy", "--out", out, "--steps", "many"}, "invalid value"},
		{"unknown flag", []string{"toy", "--out", out, "--epochs", "3"}, "not defined: -epochs"},
		{"stray argument", []string{"toy", "--out", out, "extra"}, `"extra"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ddpm(t, c.args...)
			if err == nil {
				t.Fatalf("ddpm %v succeeded", c.args)
			}
			if !isUsage(err) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ddpm %v: %v (usage error: %v); want a usage error saying %q", c.args, err, isUsage(err), c.want)
			}
		})
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed command created %s", out)
	}
}
