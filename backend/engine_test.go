package backend

import "testing"

func TestUseEngine(t *testing.T) {
	t.Setenv(EnvVar, "")
	for _, c := range []struct {
		name          string
		use, explicit bool
	}{
		{"onednn", true, true},
		{"go", false, false},
		{"cuda", false, false},
		{"xla:/some/plugin.so", false, false},
	} {
		if use, explicit := UseEngine(c.name); use != c.use || explicit != c.explicit {
			t.Errorf("UseEngine(%q) = %v, %v; want %v, %v", c.name, use, explicit, c.use, c.explicit)
		}
	}
	// Auto picks the engine unless a CUDA plugin and an NVIDIA GPU are both present.
	found, _ := Search(CUDA)
	want := len(found) == 0 || !hasNVIDIAGPU()
	if use, explicit := UseEngine(""); use != want || explicit {
		t.Errorf("UseEngine(auto) = %v, %v; want %v, false", use, explicit, want)
	}
	t.Setenv(EnvVar, "onednn")
	if use, explicit := UseEngine(""); !use || !explicit {
		t.Errorf("UseEngine with $%s=onednn = %v, %v; want true, true", EnvVar, use, explicit)
	}
}
