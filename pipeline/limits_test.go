package pipeline

import (
	"strings"
	"testing"
)

// TestSchedulerConfigLimits checks that num_train_timesteps beyond schedule.MaxT is an error naming the
// field and the limit, not 48 GB of tables.
func TestSchedulerConfigLimits(t *testing.T) {
	for _, c := range []struct{ value, want string }{
		{`2000000000`, "num_train_timesteps is 2000000000, beyond the limit of 1000000"},
		{`2e9`, "num_train_timesteps"},
		{`1000001`, "beyond the limit of 1000000"},
	} {
		_, err := ParseSchedulerConfig([]byte(`{"_class_name": "DDPMScheduler", "num_train_timesteps": ` + c.value + `}`))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("num_train_timesteps %s: error %v; want one containing %q", c.value, err, c.want)
		}
	}
	if _, err := ParseSchedulerConfig([]byte(`{"num_train_timesteps": 4000}`)); err != nil {
		t.Errorf("num_train_timesteps 4000: %v", err)
	}
}

// TestLoadTorchBeyondTheConfig loads the fixture's .bin (6.6 MB, block_out_channels [32, 64, 64]) with a
// config of fewer channels: the archive declares more than that config's weights can take, so it is
// refused before any entry is decompressed.
func TestLoadTorchBeyondTheConfig(t *testing.T) {
	config := strings.Replace(readTiny(t, "unet/config.json"), "64,\n    64\n", "8,\n    8\n", 1)
	config = strings.Replace(config, `"norm_num_groups": 8`, `"norm_num_groups": 4`, 1)
	config = strings.Replace(config, "    32,\n", "    8,\n", 1)
	dir := makeDir(t, map[string]entry{
		"model_index.json":                 fixture("model_index.json"),
		"scheduler/scheduler_config.json":  fixture("scheduler/scheduler_config.json"),
		"unet/config.json":                 literal(config),
		"unet/diffusion_pytorch_model.bin": fixture("unet/diffusion_pytorch_model.bin"),
	})
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "beyond the limit of") {
		t.Fatalf("Load: %v; want the .bin refused for declaring more than the config's weights", err)
	}
}
