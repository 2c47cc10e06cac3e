package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
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
	// DPMSolverMultistepScheduler is diffusers' DPMSolverMultistepScheduler: sampler.DPMSolver.
	DPMSolverMultistepScheduler
	// EulerDiscreteScheduler is diffusers' EulerDiscreteScheduler: sampler.Euler.
	EulerDiscreteScheduler
	// EulerAncestralDiscreteScheduler is diffusers' EulerAncestralDiscreteScheduler: sampler.EulerAncestral.
	EulerAncestralDiscreteScheduler
	// HeunDiscreteScheduler is diffusers' HeunDiscreteScheduler: sampler.Heun.
	HeunDiscreteScheduler
)

var (
	schedulerNames = [...]string{DDPMScheduler: "DDPMScheduler", DDIMScheduler: "DDIMScheduler",
		DPMSolverMultistepScheduler: "DPMSolverMultistepScheduler", EulerDiscreteScheduler: "EulerDiscreteScheduler",
		EulerAncestralDiscreteScheduler: "EulerAncestralDiscreteScheduler", HeunDiscreteScheduler: "HeunDiscreteScheduler"}
	schedulerShort = [...]string{DDPMScheduler: "ddpm", DDIMScheduler: "ddim", DPMSolverMultistepScheduler: "dpmsolver++",
		EulerDiscreteScheduler: "euler", EulerAncestralDiscreteScheduler: "euler_ancestral", HeunDiscreteScheduler: "heun"}
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
		return nil, fmt.Errorf("pipeline: invalid scheduler %d (valid: %s)", int(s), strings.Join(schedulerNames[:], ", "))
	}
	return []byte(schedulerNames[s]), nil
}

// UnmarshalText decodes diffusers' class name ("DDPMScheduler", ...) or the short name a command line
// takes ("ddpm", "ddim", "dpmsolver++", "euler", "euler_ancestral", "heun"; "sde-dpmsolver++" is
// DPMSolverMultistepScheduler too, see Choice).
func (s *Scheduler) UnmarshalText(text []byte) error {
	for i := range schedulerNames {
		if string(text) == schedulerNames[i] || string(text) == schedulerShort[i] {
			*s = Scheduler(i)
			return nil
		}
	}
	if string(text) == "sde-dpmsolver++" {
		*s = DPMSolverMultistepScheduler
		return nil
	}
	return fmt.Errorf("pipeline: unknown scheduler %q (valid: %s, sde-dpmsolver++, or diffusers' %s)", text,
		strings.Join(schedulerShort[:], ", "), strings.Join(schedulerNames[:], ", "))
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

// IgnoredFields lists fields of model_index.json and scheduler_config.json that Load accepts without
// using them, and why. In model_index.json any other unknown field is an error naming it; in
// scheduler_config.json unknown fields are ignored, as diffusers' from_config ignores them. (For
// config.json, see unet.IgnoredFields.)
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

// ParseSchedulerConfig decodes the schedule and the DDPM and DDIM settings of a scheduler_config.json of
// any supported class (Scheduler). Fields absent take the class defaults and fields neither class takes
// are ignored, as diffusers' from_config does (Choice.Plan reads the other classes' fields); a field this
// package cannot honour at its value (thresholding or rescale_betas_zero_snr true, a learned
// variance_type, ...) is an error naming it.
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
	raw, err := rawConfig(data)
	if err != nil {
		return SchedulerConfig{}, err
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	c := DefaultSchedulerConfig()
	ddpm, ddim := &c.DDPM, &c.DDIM
	var (
		predictEpsilon *bool
		hasPrediction  bool
	)
	for _, k := range keys {
		v := raw[k]
		var err error
		if string(v) == "null" && k == "variance_type" { // DPMSolverMultistepScheduler writes None
			continue
		}
		switch k {
		case "_class_name":
			var name string
			if err = decodeField(v, &name); err == nil {
				cls, ok := schedulerClass(name)
				if !ok {
					return SchedulerConfig{}, fmt.Errorf("_class_name %q: not a supported scheduler (supported: %s)", name, strings.Join(schedulerNames[:], ", "))
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
			// from_config semantics: a field this class does not take is ignored (the other classes'
			// fields are read by Choice.Plan).
		}
		if err != nil {
			return SchedulerConfig{}, fmt.Errorf("%s: %w", k, err)
		}
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
	betas := trainedBetasJSON(c.Schedule.TrainedBetas)
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

// nonFinite matches the bare Infinity, -Infinity and NaN that Python's json writes (lambda_min_clipped of
// DPMSolverMultistepScheduler is -Infinity by default) and Go's encoding/json refuses.
var nonFinite = regexp.MustCompile(`([:\[,]\s*)(-?Infinity|NaN)(\s*[,}\]])`)

// rawConfig decodes a scheduler_config.json into its fields, accepting Python's non-finite numbers (as
// the strings "Infinity", "-Infinity", "NaN").
func rawConfig(data []byte) (map[string]json.RawMessage, error) {
	data = nonFinite.ReplaceAll(data, []byte(`$1"$2"$3`))
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return raw, nil
}

// A Choice picks a scheduler class and its settings for a run, the way diffusers switches schedulers:
// Class.from_config(scheduler.config), then set_timesteps(Steps).
type Choice struct {
	// Class is diffusers' class name or a short name: ddpm, ddim, dpmsolver++, sde-dpmsolver++ (the
	// DPMSolverMultistepScheduler with algorithm_type sde-dpmsolver++), euler, euler_ancestral, heun.
	// Empty: the config's own class.
	Class string
	// Steps is the number of inference steps (set_timesteps); Heun evaluates the model 2 Steps - 1 times.
	Steps int
	// Eta is DDIM's eta (a step argument in diffusers).
	Eta float64
	// Karras sets use_karras_sigmas (DPM-Solver, Euler, Heun).
	Karras bool
	// Overrides are key=value settings applied over the file's, as --scheduler-config takes them: value
	// is JSON (1, true, "trailing") or else a bare string (trailing).
	Overrides []string
}

// A Run is a chosen scheduler ready to sample: its plan and what diffusers would list for it.
type Run struct {
	Class Scheduler
	// Config is the sampler's configuration: a sampler.DDPM, DDIM, DPMSolver, Euler, EulerAncestral or Heun.
	Config any
	Plan   sampler.Plan
	// Timesteps are scheduler.timesteps (one per model evaluation), Sigmas scheduler.sigmas (nil for
	// DDPM and DDIM).
	Timesteps, Sigmas []float64
	// Schedule is the noise schedule of the config.
	Schedule schedule.Config
	// Desc names the run for people: "DPM-Solver++ 2M, 20 steps (20 model evaluations)".
	Desc string
}

// Plan builds the chosen scheduler from a scheduler_config.json (nil: DDPMScheduler's defaults) with
// from_config semantics: the fields the class takes are read, others ignored, absent ones at the class's
// defaults; then c.Overrides, c.Karras and, for sde-dpmsolver++, algorithm_type apply.
func (c Choice) Plan(config []byte) (Run, error) {
	if config == nil {
		config = []byte("{}")
	}
	raw, err := rawConfig(config)
	if err != nil {
		return Run{}, fmt.Errorf("pipeline: scheduler config: %w", err)
	}
	for _, kv := range c.Overrides {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return Run{}, fmt.Errorf("pipeline: scheduler setting %q: want key=value, e.g. timestep_spacing=trailing", kv)
		}
		if !json.Valid([]byte(v)) {
			b, _ := json.Marshal(v)
			v = string(b)
		}
		raw[strings.TrimSpace(k)] = json.RawMessage(v)
	}
	var class Scheduler
	switch c.Class {
	case "":
		class = DDPMScheduler
		if v, ok := raw["_class_name"]; ok {
			var name string
			if err := json.Unmarshal(v, &name); err == nil {
				if cls, ok := schedulerClass(name); ok {
					class = cls
				}
			}
		}
	default:
		if err := class.UnmarshalText([]byte(c.Class)); err != nil {
			return Run{}, err
		}
	}
	if c.Class == "sde-dpmsolver++" {
		raw["algorithm_type"] = json.RawMessage(`"sde-dpmsolver++"`)
	}
	if c.Karras {
		if class != DPMSolverMultistepScheduler && class != EulerDiscreteScheduler && class != HeunDiscreteScheduler {
			return Run{}, fmt.Errorf("pipeline: Karras sigmas: %s has no use_karras_sigmas (DPM-Solver, Euler and Heun have)", class)
		}
		raw["use_karras_sigmas"] = json.RawMessage("true")
	}
	raw["_class_name"], _ = json.Marshal(class.String())
	merged, err := json.Marshal(raw)
	if err != nil {
		return Run{}, fmt.Errorf("pipeline: %w", err)
	}
	sc, err := parseSchedulerConfig(merged)
	if err != nil {
		return Run{}, fmt.Errorf("pipeline: scheduler config: %w", err)
	}
	s, err := schedule.New(sc.Schedule)
	if err != nil {
		return Run{}, err
	}
	r := Run{Class: class, Schedule: sc.Schedule}
	n := c.Steps
	if n < 1 {
		return Run{}, fmt.Errorf("pipeline: %d inference steps; want at least 1", n)
	}
	switch class {
	case DDPMScheduler:
		r.Config = sc.DDPM
		r.Plan, err = sc.DDPM.Plan(s, n)
		r.Desc = fmt.Sprintf("DDPM, %d steps, variance %s", n, sc.DDPM.Variance)
	case DDIMScheduler:
		if err = sc.Check(DDIMScheduler); err != nil {
			return Run{}, err
		}
		d := sc.DDIM
		d.Eta = c.Eta
		r.Config = d
		r.Plan, err = d.Plan(s, n)
		r.Desc = fmt.Sprintf("DDIM, %d steps, eta %g", n, d.Eta)
	case DPMSolverMultistepScheduler:
		d := sampler.DefaultDPMSolver()
		if err = fromConfig(raw, &d); err == nil {
			err = dpmExtras(raw, &d)
		}
		if err != nil {
			return Run{}, err
		}
		r.Config = d
		if r.Timesteps, r.Sigmas, err = d.Sigmas(s, n); err == nil {
			r.Plan, err = d.Plan(s, n)
		}
		name := "DPM-Solver++"
		if d.Algorithm == sampler.SDEDPMSolverPP {
			name = "SDE-DPM-Solver++"
		}
		r.Desc = fmt.Sprintf("%s %dM%s, %d steps", name, d.Order, karras(d.Karras), n)
	case EulerDiscreteScheduler:
		d := sampler.DefaultEuler()
		if err = fromConfig(raw, &d); err != nil {
			return Run{}, err
		}
		r.Config = d
		if r.Timesteps, r.Sigmas, err = d.Sigmas(s, n); err == nil {
			r.Plan, err = d.Plan(s, n)
		}
		r.Desc = fmt.Sprintf("Euler%s, %d steps", karras(d.Karras), n)
	case EulerAncestralDiscreteScheduler:
		d := sampler.DefaultEulerAncestral()
		if err = fromConfig(raw, &d); err != nil {
			return Run{}, err
		}
		r.Config = d
		if r.Timesteps, r.Sigmas, err = d.Sigmas(s, n); err == nil {
			r.Plan, err = d.Plan(s, n)
		}
		r.Desc = fmt.Sprintf("Euler ancestral, %d steps", n)
	case HeunDiscreteScheduler:
		d := sampler.DefaultHeun()
		if err = fromConfig(raw, &d); err != nil {
			return Run{}, err
		}
		r.Config = d
		var ts, sg []float64
		if ts, sg, err = d.Sigmas(s, n); err == nil {
			// diffusers repeats every timestep but the first, and every sigma but the first and the last.
			r.Timesteps = append(r.Timesteps, ts[0])
			r.Sigmas = append(r.Sigmas, sg[0])
			for i := 1; i < len(ts); i++ {
				r.Timesteps = append(r.Timesteps, ts[i], ts[i])
				r.Sigmas = append(r.Sigmas, sg[i], sg[i])
			}
			r.Sigmas = append(r.Sigmas, sg[len(sg)-1])
			r.Plan, err = d.Plan(s, n)
		}
		r.Desc = fmt.Sprintf("Heun%s, %d steps", karras(d.Karras), n)
	}
	if err != nil {
		return Run{}, err
	}
	if r.Timesteps == nil {
		for _, st := range r.Plan {
			r.Timesteps = append(r.Timesteps, float64(st.T))
		}
	}
	r.Desc += fmt.Sprintf(" (%d model evaluations)", len(r.Plan))
	return r, nil
}

func karras(on bool) string {
	if on {
		return " Karras"
	}
	return ""
}

// unsupportedAt lists fields of the newer classes whose non-default values this package does not
// implement, with the default it does.
var unsupportedAt = map[string]string{
	"use_lu_lambdas":         "false",
	"use_exponential_sigmas": "false",
	"use_beta_sigmas":        "false",
	"use_flow_sigmas":        "false",
	"interpolation_type":     `"linear"`,
	"timestep_type":          `"discrete"`,
	"thresholding":           "false",
	"rescale_betas_zero_snr": "false",
}

// fromConfig sets the fields of dst (a sampler config with diffusers' JSON names) that raw holds, as
// from_config does: the others keep dst's defaults, raw's other fields are ignored, null is absent.
func fromConfig(raw map[string]json.RawMessage, dst any) error {
	for k, def := range unsupportedAt {
		if v, ok := raw[k]; ok && string(v) != "null" && !jsonEqual(v, def) {
			return fmt.Errorf("pipeline: scheduler config: %s %s is not supported (only %s)", k, v, def)
		}
	}
	if v, ok := raw["variance_type"]; ok && (jsonEqual(v, `"learned"`) || jsonEqual(v, `"learned_range"`)) {
		return fmt.Errorf("pipeline: scheduler config: variance_type %s is not supported", v)
	}
	keep := map[string]json.RawMessage{}
	rt := reflect.TypeOf(dst).Elem()
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if v, ok := raw[name]; ok && name != "-" && string(v) != "null" {
			keep[name] = v
		}
	}
	b, err := json.Marshal(keep)
	if err == nil {
		err = json.Unmarshal(b, dst)
	}
	if err != nil {
		return fmt.Errorf("pipeline: scheduler config: %w", err)
	}
	if v, ok := dst.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return nil
}

// dpmExtras reads lambda_min_clipped, which Python writes as -Infinity by default.
func dpmExtras(raw map[string]json.RawMessage, d *sampler.DPMSolver) error {
	v, ok := raw["lambda_min_clipped"]
	if !ok || string(v) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		x, err := strconv.ParseFloat(strings.Replace(s, "Infinity", "Inf", 1), 64)
		if err != nil {
			return fmt.Errorf("pipeline: scheduler config: lambda_min_clipped %s: want a number", v)
		}
		d.LambdaMinClipped = x
		return nil
	}
	if err := json.Unmarshal(v, &d.LambdaMinClipped); err != nil {
		return fmt.Errorf("pipeline: scheduler config: lambda_min_clipped %s: want a number", v)
	}
	return nil
}

func jsonEqual(a json.RawMessage, b string) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal([]byte(b), &y) == nil && reflect.DeepEqual(x, y)
}

// ConfigJSON writes the run's scheduler as diffusers' save_config writes a scheduler_config.json of its
// class: the schedule, every field of the class (the unsupported options at their only value), keys
// sorted, floats as Python prints them.
func (r Run) ConfigJSON() ([]byte, error) {
	switch d := r.Config.(type) {
	case sampler.DDPM:
		return SchedulerConfig{Class: DDPMScheduler, Schedule: r.Schedule, DDPM: d, DDIM: ddimFrom(d, true)}.MarshalJSON()
	case sampler.DDIM:
		p := sampler.DefaultDDPM()
		p.Prediction, p.ClipSample, p.ClipSampleRange, p.Spacing, p.StepsOffset = d.Prediction, d.ClipSample, d.ClipSampleRange, d.Spacing, d.StepsOffset
		return SchedulerConfig{Class: DDIMScheduler, Schedule: r.Schedule, DDPM: p, DDIM: d}.MarshalJSON()
	case nil:
		return nil, fmt.Errorf("pipeline: no scheduler chosen")
	}
	betas := trainedBetasJSON(r.Schedule.TrainedBetas)
	m := map[string]any{
		"_class_name":            r.Class.String(),
		"_diffusers_version":     DiffusersVersion,
		"num_train_timesteps":    r.Schedule.T,
		"beta_start":             pyFloat(r.Schedule.BetaStart),
		"beta_end":               pyFloat(r.Schedule.BetaEnd),
		"beta_schedule":          r.Schedule.BetaSchedule,
		"trained_betas":          betas,
		"rescale_betas_zero_snr": false,
	}
	switch r.Class {
	case DPMSolverMultistepScheduler:
		m["thresholding"], m["dynamic_thresholding_ratio"], m["sample_max_value"] = false, pyFloat(0.995), pyFloat(1)
		m["use_lu_lambdas"], m["use_exponential_sigmas"], m["use_beta_sigmas"], m["use_flow_sigmas"] = false, false, false, false
		m["variance_type"] = nil
		m["lambda_min_clipped"] = "-Infinity" // written bare below, as Python does
		if d, ok := r.Config.(sampler.DPMSolver); ok && !math.IsInf(d.LambdaMinClipped, -1) {
			m["lambda_min_clipped"] = pyFloat(d.LambdaMinClipped)
		}
	case EulerDiscreteScheduler:
		m["interpolation_type"], m["timestep_type"] = "linear", "discrete"
		m["use_exponential_sigmas"], m["use_beta_sigmas"] = false, false
		m["sigma_min"], m["sigma_max"] = nil, nil
	case HeunDiscreteScheduler:
		m["use_exponential_sigmas"], m["use_beta_sigmas"] = false, false
	}
	rv := reflect.ValueOf(r.Config)
	for i := 0; i < rv.NumField(); i++ {
		name, opt, _ := strings.Cut(rv.Type().Field(i).Tag.Get("json"), ",")
		if name == "-" || name == "" {
			continue
		}
		f := rv.Field(i)
		switch {
		case f.Kind() == reflect.Float64 && opt == "omitempty" && f.Float() == 0:
			// an unset sigma_min / sigma_max: None, written above
		case f.Kind() == reflect.Float64:
			m[name] = pyFloat(f.Float())
		default:
			m[name] = f.Interface()
		}
	}
	b, err := marshalConfig(m)
	if err != nil {
		return nil, err
	}
	return bytes.Replace(b, []byte(`"-Infinity"`), []byte("-Infinity"), 1), nil
}

// SetScheduler makes the pipeline directory dir, as Save wrote it, sample with the run's scheduler:
// scheduler/scheduler_config.json becomes r.ConfigJSON and model_index.json names the class.
func SetScheduler(dir string, r Run) error {
	cfg, err := r.ConfigJSON()
	if err != nil {
		return err
	}
	indexPath := filepath.Join(dir, ModelIndexFile)
	data, err := os.ReadFile(indexPath)
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	var index map[string]any
	if err := json.Unmarshal(data, &index); err != nil {
		return fmt.Errorf("pipeline: %s: %w", indexPath, err)
	}
	index["scheduler"] = []string{"diffusers", r.Class.String()}
	out, err := marshalConfig(index)
	if err != nil {
		return err
	}
	return writeFiles(dir, []outFile{
		{"scheduler/" + SchedulerConfigFile, writeBytes(cfg)},
		{ModelIndexFile, writeBytes(out)},
	})
}

// SchedulerJSON returns the pipeline's scheduler_config.json as read (every field, for Choice.Plan to
// build any class from it), or for a pipeline without one, its DDPMScheduler config.
func (p *Pipeline) SchedulerJSON() ([]byte, error) {
	if p.Files.SchedulerConfig != "" {
		b, err := os.ReadFile(p.Files.SchedulerConfig)
		if err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		return b, nil
	}
	return p.SchedulerConfig(DDPMScheduler).MarshalJSON()
}

// DefaultSampler is the sampler that `ddpm sample` uses for the bundled model when neither --scheduler
// nor --steps is given, on a CPU (the oneDNN engine or pure Go) or on an accelerator. From the quality
// study (docs/samplers.md: 10,000 samples of the bundled MNIST model, classifier FID against MNIST's test
// split, one H200, 2026-12-03; DDPM-1000 scores 20.50):
//   - CPU: the fewest model evaluations within 1.3x of DDPM-1000: DPM-Solver++ 2M, 10 steps, FID 25.12
//     (1.23x), where DDIM-10, the default before, scores 90.60 in the same time;
//   - GPU: the best at <= 20 evaluations: SDE-DPM-Solver++ 2M, 20 steps, FID 20.73 (1.01x), where
//     DDIM-50, the default before, scores 29.97 in 2.5x the evaluations.
func DefaultSampler(cpu bool) Choice {
	if cpu {
		return Choice{Class: "dpmsolver++", Steps: 10}
	}
	return Choice{Class: "sde-dpmsolver++", Steps: 20}
}

// DefaultSamplerFor is DefaultSampler for the bundled model of that name (models.Names). The
// Fashion-MNIST models rank the samplers differently (docs/samplers.md, the same study on
// models/fashion-mnist, DDPM-1000 127.9): DPM-Solver++ 2M with Karras sigmas is the fewest evaluations
// within 1.3x of DDPM-1000 (10 steps, 158.8, 1.24x; plain DPM-Solver++ 2M 10 scores 196.9) and the
// best at <= 20 (20 steps, 111.5, better than DDPM-1000; SDE-DPM-Solver++ 2M 20 scores 169.2). The
// conditional fashion-mnist-cond, not in that study, takes the same by analogy.
func DefaultSamplerFor(model string, cpu bool) Choice {
	if model == "fashion-mnist" || model == "fashion-mnist-cond" {
		c := Choice{Class: "dpmsolver++", Steps: 20, Karras: true}
		if cpu {
			c.Steps = 10
		}
		return c
	}
	return DefaultSampler(cpu)
}

// trainedBetasJSON is trained_betas as diffusers writes it: null when absent, else Python floats.
func trainedBetasJSON(betas []float64) any {
	if len(betas) == 0 {
		return nil
	}
	b := make([]pyFloat, len(betas))
	for k, x := range betas {
		b[k] = pyFloat(x)
	}
	return b
}
