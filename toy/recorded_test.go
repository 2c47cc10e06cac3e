package toy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestRecordedDefaultFigures checks the figures the README quotes for `ddpm toy` (the default
// configuration, once per data set) against the samples of those runs, kept in testdata/default-*:
// the recorded config must be DefaultConfig (a changed default must be run and recorded again),
// the ratios recomputed from the recorded samples must be the ones the README prints, and the
// swiss roll's must stay within what the default reaches. Training the default here would take minutes;
// the samples make the figures checkable in milliseconds.
func TestRecordedDefaultFigures(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []Dataset{SwissRoll, Moons, Ring} {
		dir := filepath.Join("testdata", "default-"+d.String())
		b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		var cfg Config
		if err := dec.Decode(&cfg); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		want := DefaultConfig()
		want.Data = d
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("%s records %+v; want DefaultConfig() with data %s, %+v: run `ddpm toy --data %s` again and record it", dir, cfg, d, want, d)
			continue
		}
		rows := readCSV(t, filepath.Join(dir, SamplesFile))
		var samples []float32
		for _, r := range rows[1:] {
			for _, f := range r {
				v, err := strconv.ParseFloat(f, 32)
				if err != nil {
					t.Fatalf("%s: %v", dir, err)
				}
				samples = append(samples, float32(v))
			}
		}
		if len(samples) != 2*cfg.Samples {
			t.Fatalf("%s: %d samples; want %d", dir, len(samples)/2, cfg.Samples)
		}
		train, err := d.Points(cfg.Points, cfg.Seed)
		if err != nil {
			t.Fatal(err)
		}
		res := Result{Config: cfg, Data: train, Samples: samples}
		q, err := res.Quality()
		if err != nil {
			t.Fatal(err)
		}
		line := d.String() + " samples: " + q.String()
		t.Log(line)
		if !strings.Contains(string(readme), line) {
			t.Errorf("README.md does not quote the recorded run's figures %q", line)
		}
		// Issue 18: both ratios within MaxRatio on the swiss roll with the default configuration.
		if d == SwissRoll && (q.PrecisionRatio() > MaxRatio || q.CoverageRatio() > MaxRatio) {
			t.Errorf("the default swiss roll run: %v; want both ratios <= %.1f", q, MaxRatio)
		}
	}
}
