package pipeline

import (
	"testing"

	"github.com/ddpm/ddpm/internal/memcap"
	"github.com/ddpm/ddpm/schedule"
)

// FuzzParseSchedulerConfig checks that no scheduler_config.json makes the parser panic or allocate more
// than 64 times its size plus 1 MB, and that what it accepts has T within schedule.MaxT.
func FuzzParseSchedulerConfig(f *testing.F) {
	f.Add([]byte(`{"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear", "variance_type": "fixed_large", "clip_sample": true}`))
	f.Add([]byte(`{"_class_name": "DDIMScheduler", "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction", "set_alpha_to_one": false, "steps_offset": 1}`))
	f.Add([]byte(`{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2, 0.3]}`))
	f.Add([]byte(`{"num_train_timesteps": 2000000000}`))
	memcap.Harness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		var c SchedulerConfig
		var err error
		memcap.Within(t, 64*uint64(len(data))+1<<20, func() { c, err = ParseSchedulerConfig(data) })
		if err != nil {
			return
		}
		if c.Schedule.T > schedule.MaxT {
			t.Fatalf("accepted num_train_timesteps %d, beyond %d", c.Schedule.T, schedule.MaxT)
		}
		// New may still refuse betas whose alphaBar underflows; it must not panic.
		_, _ = schedule.New(c.Schedule)
	})
}

// FuzzParseModelIndex checks model_index.json's parser the same way.
func FuzzParseModelIndex(f *testing.F) {
	f.Add([]byte(`{"_class_name": "DDPMPipeline", "_diffusers_version": "0.30.0", "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}`))
	f.Add([]byte(`{"_class_name": "DDIMPipeline", "scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", "UNet2DModel"]}`))
	memcap.Harness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		memcap.Within(t, 64*uint64(len(data))+1<<20, func() { _, _ = parseModelIndex(data) })
	})
}
