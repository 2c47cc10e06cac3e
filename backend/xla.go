package backend

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/xla"
)

func init() {
	// Never download a plugin behind the user's back (go-xla's default); New reports what is missing.
	xla.EnableAutoInstall(false)
}

// newXLA loads the PJRT plugin p. For a CUDA plugin installed by pip it points XLA at the NVIDIA
// libraries pip installed beside it (site-packages/nvidia), unless the user set that already: go-xla
// v0.1.4 would otherwise write a path of its author's machine into XLA_FLAGS.
func newXLA(p Plugin) (backends.Backend, Info, error) {
	if p.Kind == CUDA {
		if nv := nvidiaDir(p.Path); nv != "" && !strings.Contains(os.Getenv("XLA_FLAGS"), "--xla_gpu_cuda_data_dir") {
			os.Setenv("XLA_FLAGS", strings.TrimSpace(os.Getenv("XLA_FLAGS")+" --xla_gpu_cuda_data_dir="+nv))
		}
		if os.Getenv("GOPJRT_CUDA_CHECKS") == "" {
			os.Setenv("GOPJRT_CUDA_CHECKS", "0")
		}
	}
	b, err := xla.NewWithOptions(p.Path, nil)
	if err != nil {
		return nil, Info{}, fmt.Errorf("backend: loading PJRT plugin %s: %w", p.Path, err)
	}
	info := Info{Kind: p.Kind, Plugin: p.Path}
	if b.NumDevices() > 0 {
		info.Device = deviceName(b.DeviceDescription(0))
	}
	return b, info, nil
}

// nvidiaDir returns site-packages/nvidia for a plugin at site-packages/jax_plugins/xla_cuda*/..., or "".
func nvidiaDir(pluginPath string) string {
	for d := filepath.Dir(pluginPath); d != "/" && d != "."; d = filepath.Dir(d) {
		nv := filepath.Join(d, "nvidia")
		if fi, err := os.Stat(nv); err == nil && fi.IsDir() {
			return nv
		}
	}
	return ""
}

// deviceName shortens PJRT's device description to the card's name where it can find it.
func deviceName(desc string) string {
	desc = strings.TrimSpace(desc)
	if i := strings.Index(desc, "NVIDIA "); i >= 0 {
		name := desc[i:]
		if j := strings.IndexAny(name, ",)\n["); j > 0 {
			name = name[:j]
		}
		return strings.TrimSpace(name)
	}
	if len(desc) > 80 {
		desc = desc[:80]
	}
	return desc
}
