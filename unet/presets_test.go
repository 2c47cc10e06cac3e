package unet

import (
	"testing"

	"github.com/ddpm/ddpm/nn"
)

func TestPresets(t *testing.T) {
	for _, c := range []struct {
		name   string
		params int
	}{
		{"mnist", 2734945},
		// google/ddpm-cifar10-32's UNet2DModel has 35,746,307 parameters.
		{"cifar10", 35746307},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Preset(c.name)
			if err != nil {
				t.Fatal(err)
			}
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if n := nn.Count(m.Specs()); n != c.params {
				t.Errorf("%s has %d parameters, want %d", c.name, n, c.params)
			}
		})
	}
	if _, err := Preset("nope"); err == nil {
		t.Error("Preset(\"nope\") succeeded")
	}
}

// The mnist preset's forward pass, counted by hand layer by layer (bench notes): 581,439,488 FLOPs
// per 28x28 image.
func TestFLOPs(t *testing.T) {
	cfg, _ := Preset("mnist")
	m, _ := New(cfg)
	if f := m.FLOPs(28, 28); f != 581439488 {
		t.Errorf("FLOPs(28, 28) = %d, want 581439488", f)
	}
}
