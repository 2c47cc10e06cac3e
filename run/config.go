package run

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
)

// Config is everything that defines a training run; it is saved as train.json in the run folder and
// inside every checkpoint, so a run can be resumed and reproduced.
type Config struct {
	Data         string           `json:"data"`
	DataDir      string           `json:"data_dir,omitempty"`
	HoldOut      float64          `json:"holdout"`
	HoldOutSeed  uint64           `json:"holdout_seed"`
	Epochs       int              `json:"epochs"`
	MaxSteps     int64            `json:"max_steps"`
	Seed         uint64           `json:"seed"`
	UNet         json.RawMessage  `json:"unet"`
	Schedule     schedule.Config  `json:"schedule"`
	Train        train.Config     `json:"train"`
	SampleEvery  int              `json:"sample_every_epochs"`
	SampleSteps  int              `json:"sample_steps"`
	CkptSteps    int64            `json:"checkpoint_every_steps"`
	CkptMinutes  float64          `json:"checkpoint_every_minutes"`
	KeepCkpts    int              `json:"keep_checkpoints"`
	LogEvery     int              `json:"log_every_steps"`
	DDPMVariance sampler.Variance `json:"ddpm_variance"`
}

// Validate checks the run's own settings and the schedule's; the errors name the field.
func (c Config) Validate() error {
	switch {
	case c.Epochs < 1 && c.MaxSteps < 1:
		return fmt.Errorf("run: epochs %d: want at least 1 (or max_steps)", c.Epochs)
	case c.MaxSteps < 0:
		return fmt.Errorf("run: max_steps %d: want >= 0", c.MaxSteps)
	case c.HoldOut < 0 || c.HoldOut >= 1:
		return fmt.Errorf("run: holdout %g: want a fraction in [0, 1)", c.HoldOut)
	case c.SampleEvery < 0:
		return fmt.Errorf("run: sample_every_epochs %d: want >= 0", c.SampleEvery)
	case c.SampleSteps < 1:
		return fmt.Errorf("run: sample_steps %d: want >= 1", c.SampleSteps)
	case c.CkptSteps < 1:
		return fmt.Errorf("run: checkpoint_every_steps %d: want >= 1", c.CkptSteps)
	case c.CkptMinutes <= 0:
		return fmt.Errorf("run: checkpoint_every_minutes %g: want > 0", c.CkptMinutes)
	case c.KeepCkpts < 1:
		return fmt.Errorf("run: keep_checkpoints %d: want >= 1", c.KeepCkpts)
	case c.LogEvery < 1:
		return fmt.Errorf("run: log_every_steps %d: want >= 1", c.LogEvery)
	case c.Train.StepsPerCall < 0:
		return fmt.Errorf("run: steps_per_call %d: want >= 0", c.Train.StepsPerCall)
	}
	t := c.Train
	if t.StepsPerCall == 0 {
		t.StepsPerCall = 1
	}
	if t.LRTotalSteps == 0 {
		t.LRTotalSteps = 1 // 0: the run's planned steps, known once the data is loaded (Run.Start)
	}
	if err := t.Validate(); err != nil {
		return err
	}
	return c.Schedule.Validate()
}

// UNetConfig parses the UNet's config.
func (c Config) UNetConfig() (unet.Config, error) { return unet.ParseConfig(c.UNet) }

// ReadConfig reads a run folder's train.json; unknown fields are an error.
func ReadConfig(dir string) (Config, error) {
	var c Config
	path := join(dir, ConfigFile)
	b, err := readFile(path)
	if err != nil {
		return c, fmt.Errorf("run: %w (is %s a run folder made by ddpm train?)", err, dir)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return c, fmt.Errorf("run: %s: %w", path, err)
	}
	return c, nil
}
