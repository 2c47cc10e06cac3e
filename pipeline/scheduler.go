package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
)

// Scheduler names a diffusers scheduler class. The zero value is DDPMScheduler.
type Scheduler int

const (
	// DDPMScheduler is diffusers' DDPMScheduler: ancestral sampling, sampler.DDPM.
	DDPMScheduler Scheduler = iota
	// DDIMScheduler is diffusers' DDIMScheduler: sampler.DDIM.
	DDIMScheduler
)

var (
	schedulerNames = [...]string{DDPMScheduler: "DDPMScheduler", DDIMScheduler: "DDIMScheduler"}
	schedulerShort = [...]string{DDPMScheduler: "ddpm", DDIMScheduler: "ddim"}
)

// String returns diffusers' class name.
func (s Scheduler) String() string {
	if s >= 0 && int(s) < len(schedulerNames) {
		return schedulerNames[s]
	}
	return fmt.Sprintf("Scheduler(%d)", int(s))
}

// MarshalText encodes the scheduler as diffusers' class name.
func (s Scheduler) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(schedulerNames) {
		return nil, fmt.Errorf("pipeline: invalid scheduler %d (valid: DDPMScheduler, DDIMScheduler)", int(s))
	}
	return []byte(schedulerNames[s]), nil
}

// UnmarshalText decodes diffusers' class name ("DDPMScheduler", "DDIMScheduler") or the short name a
// command line takes ("ddpm", "ddim").
func (s *Scheduler) UnmarshalText(text []byte) error {
	for i := range schedulerNames {
		if string(text) == schedulerNames[i] || string(text) == schedulerShort[i] {
			*s = Scheduler(i)
			return nil
		}
	}
	return fmt.Errorf("pipeline: unknown scheduler %q (valid: ddpm, ddim, or diffusers' DDPMScheduler, DDIMScheduler)", text)
}

func schedulerClass(name string) (Scheduler, bool) {
	for i, n := range schedulerNames {
		if name == n {
			return Scheduler(i), true
		}
	}
	return 0, false
}

// SchedulerConfig is a diffusers scheduler_config.json of a DDPMScheduler or a DDIMScheduler, decoded into
// the settings of both samplers, so that either can run from one file.
//
// diffusers' from_config builds a scheduler class from any compatible config the same way: a field of the
// file that the class takes is used, a field it does not take is kept aside (and written back on save),
// and a field the file lacks takes the class's default. DDPMScheduler and DDIMScheduler share every field
// and every default except variance_type (DDPM only) and set_alpha_to_one (DDIM only). So DDPM is
// DDPMScheduler.from_config(file) and DDIM is DDIMScheduler.from_config(file): variance_type never reaches
// DDIM, set_alpha_to_one never reaches DDPM, and a DDPMScheduler file without set_alpha_to_one gives DDIM
// DDIMScheduler's default, true.
type SchedulerConfig struct {
	// Class is the file's _class_name (DDPMScheduler when the file has none).
	Class    Scheduler
	Schedule schedule.Config
	// DDPM is DDPMScheduler.from_config(file).
	DDPM sampler.DDPM
	// DDIM is DDIMScheduler.from_config(file), with Eta 0 (eta is an argument of diffusers' step, not
	// a config field; DDIMPipeline's default is 0).
	DDIM sampler.DDIM
}

// DefaultSchedulerConfig returns DDPMScheduler()'s config: schedule.Default, sampler.DefaultDDPM and
// sampler.DefaultDDIM (diffusers' defaults agree on the shared fields).
func DefaultSchedulerConfig() SchedulerConfig {
	return SchedulerConfig{
		Class:    DDPMScheduler,
		Schedule: schedule.Default(),
		DDPM:     sampler.DefaultDDPM(),
		DDIM:     sampler.DefaultDDIM(),
	}
}

// IgnoredField is a field of a diffusers config file that this package reads past, and why that is safe.
type IgnoredField struct {
	File, Name, Reason string
}

// IgnoredFields lists every field of model_index.json and scheduler_config.json that Load accepts without
// using it. Any other field it does not know is an error naming it. (For config.json, see
// unet.IgnoredFields.)
var IgnoredFields = []IgnoredField{
	{"model_index.json", "_diffusers_version", "provenance only"},
	{"model_index.json", "_name_or_path", "provenance only: where diffusers loaded the pipeline from"},
	{"scheduler_config.json", "_diffusers_version", "provenance only"},
	{"scheduler_config.json", "tensor_format", "early diffusers (\"np\" or \"pt\"): the array library, no effect on the numbers"},
	{"scheduler_config.json", "timestep_values", "early diffusers: stored but never read; accepted only when null"},
	{"scheduler_config.json", "predict_epsilon", "diffusers before prediction_type: true is \"epsilon\"; false without prediction_type is refused"},
	{"scheduler_config.json", "dynamic_thresholding_ratio", "used only with thresholding, which must be false"},
	{"scheduler_config.json", "sample_max_value", "used only with thresholding, which must be false"},
}

func ignored(file, name string) bool {
	for _, f := range IgnoredFields {
		if f.File == file && f.Name == name {
			return true
		}
	}
	return false
}

// unsupportedVariance explains the DDPMScheduler variance types that sampler.DDPM cannot honour.
var unsupportedVariance = map[string]string{
	"learned":         "the model predicts its variance (extra output channels)",
	"learned_range":   "the model predicts its variance (extra output channels)",
	"fixed_large_log": "GLIDE's log variance",
}

// ParseSchedulerConfig decodes a DDPMScheduler or DDIMScheduler scheduler_config.json. Fields absent take
// the class defaults; a field this package cannot honour at its value (thresholding or
// rescale_betas_zero_snr true, a learned variance_type, ...) is an error naming it, as is any field neither
// known nor in IgnoredFields.
func ParseSchedulerConfig(data []byte) (SchedulerConfig, error) {
	c, err := parseSchedulerConfig(data)
	if err != nil {
		return SchedulerConfig{}, fmt.Errorf("pipeline: scheduler config: %w", err)
	}
	return c, nil
}

// LoadSchedulerConfig reads a scheduler_config.json file.
func LoadSchedulerConfig(path string) (SchedulerConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return SchedulerConfig{}, fmt.Errorf("pipeline: %w", err)
	}
	c, err := parseSchedulerConfig(data)
	if err != nil {
		return SchedulerConfig{}, fmt.Errorf("pipeline: %s: %w", path, err)
	}
	return c, nil
}

func parseSchedulerConfig(data []byte) (SchedulerConfig, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return SchedulerConfig{}, fmt.Errorf("not a JSON object: %w", err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	c := DefaultSchedulerConfig()
	ddpm, ddim := &c.DDPM, &c.DDIM
	var (
		unknown        []string
		predictEpsilon *bool
		hasPrediction  bool
	)
	for _, k := range keys {
		v := raw[k]
		var err error
		switch k {
		case "_class_name":
			var name string
			if err = decodeField(v, &name); err == nil {
				cls, ok := schedulerClass(name)
				if !ok {
					return SchedulerConfig{}, fmt.Errorf("_class_name %q: only DDPMScheduler and DDIMScheduler configs are supported", name)
				}
				c.Class = cls
			}
		case "num_train_timesteps":
			err = decodeField(v, &c.Schedule.T)
		case "beta_start":
			err = decodeField(v, &c.Schedule.BetaStart)
		case "beta_end":
			err = decodeField(v, &c.Schedule.BetaEnd)
		case "beta_schedule":
			err = decodeText(v, &c.Schedule.BetaSchedule)
		case "trained_betas":
			if string(v) != "null" {
				err = decodeField(v, &c.Schedule.TrainedBetas)
			}
		case "variance_type":
			var name string
			if err = decodeField(v, &name); err == nil {
				if why, ok := unsupportedVariance[name]; ok {
					return SchedulerConfig{}, fmt.Errorf("variance_type %q (%s) is not supported; use fixed_small, fixed_small_log or fixed_large", name, why)
				}
				err = ddpm.Variance.UnmarshalText([]byte(name))
			}
		case "clip_sample":
			if err = decodeField(v, &ddpm.ClipSample); err == nil {
				ddim.ClipSample = ddpm.ClipSample
			}
		case "clip_sample_range":
			if err = decodeField(v, &ddpm.ClipSampleRange); err == nil {
				ddim.ClipSampleRange = ddpm.ClipSampleRange
			}
		case "prediction_type":
			if err = decodeText(v, &ddpm.Prediction); err == nil {
				ddim.Prediction, hasPrediction = ddpm.Prediction, true
			}
		case "timestep_spacing":
			if err = decodeText(v, &ddpm.Spacing); err == nil {
				ddim.Spacing = ddpm.Spacing
			}
		case "steps_offset":
			if err = decodeField(v, &ddpm.StepsOffset); err == nil {
				ddim.StepsOffset = ddpm.StepsOffset
			}
		case "set_alpha_to_one":
			err = decodeField(v, &ddim.SetAlphaToOne)
		case "thresholding":
			var on bool
			if err = decodeField(v, &on); err == nil && on {
				return SchedulerConfig{}, fmt.Errorf("thresholding true (dynamic thresholding, Saharia et al. 2022) is not supported; set it to false")
			}
		case "rescale_betas_zero_snr":
			var on bool
			if err = decodeField(v, &on); err == nil && on {
				return SchedulerConfig{}, fmt.Errorf("rescale_betas_zero_snr true (zero terminal SNR, Lin et al. 2023) is not supported; set it to false")
			}
		case "timestep_values":
			if string(v) != "null" {
				return SchedulerConfig{}, fmt.Errorf("timestep_values %s: only null is supported (diffusers never used it)", v)
			}
		case "predict_epsilon":
			var on bool
			if err = decodeField(v, &on); err == nil {
				predictEpsilon = &on
			}
		case "dynamic_thresholding_ratio", "sample_max_value":
			var x float64
			err = decodeField(v, &x)
		default:
			if !ignored("scheduler_config.json", k) {
				unknown = append(unknown, k)
			}
		}
		if err != nil {
			return SchedulerConfig{}, fmt.Errorf("%s: %w", k, err)
		}
	}
	if len(unknown) > 0 {
		return SchedulerConfig{}, fmt.Errorf("unknown field(s) %s: not DDPMScheduler or DDIMScheduler options (known: %s; ignored: %s)",
			strings.Join(unknown, ", "), strings.Join(knownSchedulerFields(), ", "), strings.Join(ignoredNames("scheduler_config.json"), ", "))
	}
	if predictEpsilon != nil && !*predictEpsilon && !hasPrediction {
		return SchedulerConfig{}, fmt.Errorf("predict_epsilon false: the model predicts x0; current diffusers ignores this old field, so add \"prediction_type\": \"sample\"")
	}
	if err := c.Validate(); err != nil {
		return SchedulerConfig{}, err
	}
	return c, nil
}

// decodeField decodes one JSON value strictly: null is an error (diffusers would pass None on).
func decodeField(v json.RawMessage, dst any) error {
	if string(v) == "null" {
		return fmt.Errorf("null is not a valid value")
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("%s: want a JSON %s", v, jsonKind(dst))
	}
	return nil
}

// decodeText decodes a JSON string through dst's UnmarshalText.
func decodeText(v json.RawMessage, dst interface{ UnmarshalText([]byte) error }) error {
	var s string
	if err := decodeField(v, &s); err != nil {
		return err
	}
	return dst.UnmarshalText([]byte(s))
}

func jsonKind(dst any) string {
	switch dst.(type) {
	case *bool:
		return "boolean"
	case *int:
		return "integer"
	case *float64:
		return "number"
	case *string:
		return "string"
	case *[]float64:
		return "array of numbers"
	}
	return "value"
}

func knownSchedulerFields() []string {
	return []string{"_class_name", "beta_end", "beta_schedule", "beta_start", "clip_sample", "clip_sample_range",
		"num_train_timesteps", "prediction_type", "rescale_betas_zero_snr", "set_alpha_to_one", "steps_offset",
		"thresholding", "timestep_spacing", "trained_betas", "variance_type"}
}

func ignoredNames(file string) []string {
	var names []string
	for _, f := range IgnoredFields {
		if f.File == file {
			names = append(names, f.Name)
		}
	}
	return names
}

// Validate reports whether the schedule and both samplers are usable, and whether the file's own class can
// be built from it (Check).
func (c SchedulerConfig) Validate() error {
	if err := c.Schedule.Validate(); err != nil {
		return err
	}
	if err := c.DDPM.Validate(); err != nil {
		return err
	}
	if err := c.DDIM.Validate(); err != nil {
		return err
	}
	return c.Check(c.Class)
}

// Check reports whether diffusers can build scheduler class s from this config: DDIMScheduler does not
// implement the sigmoid beta schedule (DDPMScheduler does).
func (c SchedulerConfig) Check(s Scheduler) error {
	if s == DDIMScheduler && len(c.Schedule.TrainedBetas) == 0 && c.Schedule.BetaSchedule == schedule.Sigmoid {
		return fmt.Errorf("pipeline: beta_schedule \"sigmoid\": diffusers' DDIMScheduler does not implement it; sample with the DDPM scheduler")
	}
	return nil
}

// MarshalJSON writes the config as diffusers' save_config writes a scheduler_config.json of class c.Class:
// every field of that class, keys sorted, two-space indent, floats as Python prints them, a final newline.
// The field only the other class takes is added when it differs from its default (set_alpha_to_one in a
// DDPMScheduler file, variance_type in a DDIMScheduler file), as diffusers keeps it for from_config, so
// that the file gives back both DDPM and DDIM. The fields the two classes share must agree between c.DDPM
// and c.DDIM: a file holds one value.
func (c SchedulerConfig) MarshalJSON() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d, i := c.DDPM, c.DDIM
	if d.Prediction != i.Prediction || d.ClipSample != i.ClipSample || d.ClipSampleRange != i.ClipSampleRange ||
		d.Spacing != i.Spacing || d.StepsOffset != i.StepsOffset {
		return nil, fmt.Errorf("pipeline: scheduler config: DDPM %+v and DDIM %+v disagree on a shared field; a scheduler_config.json holds one value", d, i)
	}
	var betas any
	if len(c.Schedule.TrainedBetas) > 0 {
		b := make([]pyFloat, len(c.Schedule.TrainedBetas))
		for k, x := range c.Schedule.TrainedBetas {
			b[k] = pyFloat(x)
		}
		betas = b
	}
	m := map[string]any{
		"_class_name":                c.Class.String(),
		"_diffusers_version":         DiffusersVersion,
		"num_train_timesteps":        c.Schedule.T,
		"beta_start":                 pyFloat(c.Schedule.BetaStart),
		"beta_end":                   pyFloat(c.Schedule.BetaEnd),
		"beta_schedule":              c.Schedule.BetaSchedule,
		"trained_betas":              betas,
		"clip_sample":                d.ClipSample,
		"clip_sample_range":          pyFloat(d.ClipSampleRange),
		"prediction_type":            d.Prediction,
		"timestep_spacing":           d.Spacing,
		"steps_offset":               d.StepsOffset,
		"thresholding":               false,
		"dynamic_thresholding_ratio": pyFloat(0.995),
		"sample_max_value":           pyFloat(1),
		"rescale_betas_zero_snr":     false,
	}
	switch c.Class {
	case DDPMScheduler:
		m["variance_type"] = d.Variance
		if !i.SetAlphaToOne {
			m["set_alpha_to_one"] = false
		}
	case DDIMScheduler:
		m["set_alpha_to_one"] = i.SetAlphaToOne
		if d.Variance != sampler.FixedSmall {
			m["variance_type"] = d.Variance
		}
	}
	return marshalConfig(m)
}

// marshalConfig writes m as Python's json.dumps(m, indent=2, sort_keys=True) + "\n", which is how diffusers
// writes its config files.
func marshalConfig(m map[string]any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	return b.Bytes(), nil
}

// pyFloat is a float64 that JSON-encodes as Python's repr does: shortest round-trip digits, always with a
// decimal point or an exponent ("1.0", "0.0001", "1e-06", "1e+16").
type pyFloat float64

func (f pyFloat) MarshalJSON() ([]byte, error) {
	x := float64(f)
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return nil, fmt.Errorf("pipeline: %g cannot be written to JSON", x)
	}
	e := strconv.FormatFloat(x, 'e', -1, 64) // "d.ddde±XX"
	mant, expText, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expText)
	if exp < -4 || exp >= 16 {
		return fmt.Appendf(nil, "%se%+03d", mant, exp), nil
	}
	s := strconv.FormatFloat(x, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return []byte(s), nil
}
