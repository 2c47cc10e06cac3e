package run

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/ddpm/ddpm/unet"
)

// A class-conditional run's pipeline is saved without clip_sample (clamping the x0 of a guided
// prediction sends DDPM and DDIM to other classes); an unconditional one keeps it.
func TestWritePipelineClipSample(t *testing.T) {
	plain := tinyModel(t)
	uc, err := plain.Config.Conditional(10)
	if err != nil {
		t.Fatal(err)
	}
	cond, err := unet.New(uc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		m    *unet.Model
		want bool
	}{{"unconditional", plain, true}, {"conditional", cond, false}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := WritePipeline(dir, tt.m, tinyState(tt.m, 1, 0.01).EMA, tinyConfig()); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "scheduler", "scheduler_config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				ClipSample bool `json:"clip_sample"`
			}
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			if c.ClipSample != tt.want {
				t.Errorf("clip_sample = %v; want %v", c.ClipSample, tt.want)
			}
		})
	}
}
