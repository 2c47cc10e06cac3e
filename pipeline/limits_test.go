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
