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
