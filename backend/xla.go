package backend

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gomlx/go-xla/pkg/pjrt"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/xla"
)

func init() {
	// Never download a plugin behind the user's back (go-xla's default); New reports what is missing.
	xla.EnableAutoInstall(false)
}

// newXLA loads the PJRT plugin p. For a CUDA plugin:
//   - it points XLA at the NVIDIA libraries pip installed beside the plugin (site-packages/nvidia),
//     unless the user set that already: go-xla v0.1.4 would otherwise write a path of its author's
//     machine into XLA_FLAGS;
//   - it keeps XLA's autotuning results and the compiled executables in the user's cache directory
//     (CacheDir; execcache.go), so that a second run skips the autotuning and the compilation
//     ($DDPM_EXEC_CACHE=off: no executables);
//   - it launches executions asynchronously (loadWrappedPlugin; $DDPM_XLA_SYNC=1: wait for each);
//   - it asks the client not to preallocate most of the GPU's memory (set DDPM_XLA_PREALLOCATE=1 for
//     XLA's default), so that the memory a run uses is the memory it needs.
func newXLA(p Plugin) (backends.Backend, Info, error) {
	var opts pjrt.NamedValuesMap
	info := Info{Kind: p.Kind, Plugin: p.Path}
	if p.Kind == CUDA {
		addXLAFlag := func(name, value string) {
			if !strings.Contains(os.Getenv("XLA_FLAGS"), name+"=") {
				os.Setenv("XLA_FLAGS", strings.TrimSpace(os.Getenv("XLA_FLAGS")+" "+name+"="+value))
			}
		}
		if nv := nvidiaDir(p.Path); nv != "" {
			addXLAFlag("--xla_gpu_cuda_data_dir", nv)
		}
		if dir, err := CacheDir(p.Path); err == nil {
			addXLAFlag("--xla_gpu_per_fusion_autotune_cache_dir", filepath.Join(dir, "autotune"))
			info.CompileCache = dir
			exeDir := ExecutableDir(dir)
			if os.Getenv("DDPM_EXEC_CACHE") == "off" {
				exeDir = ""
			}
			info.Async = os.Getenv("DDPM_XLA_SYNC") != "1"
			if err := checkAsync(goXLAVersion()); info.Async && err != nil {
				info.Async = false
				info.CompileCache += " (" + err.Error() + ")"
			}
			if err := loadWrappedPlugin(p.Path, exeDir, info.Async); err != nil {
				info.CompileCache += " (autotuning only: " + err.Error() + ")"
				info.Async = false
			}
		}
		if os.Getenv("GOPJRT_CUDA_CHECKS") == "" {
			os.Setenv("GOPJRT_CUDA_CHECKS", "0")
		}
		if os.Getenv("DDPM_XLA_PREALLOCATE") == "" {
			opts = pjrt.NamedValuesMap{"preallocate": false}
		}
	}
	b, err := xla.NewWithOptions(p.Path, opts)
	if err != nil && opts != nil {
		b, err = xla.NewWithOptions(p.Path, nil) // a plugin that does not know the option
	}
	if err != nil {
		return nil, Info{}, fmt.Errorf("backend: loading PJRT plugin %s: %w", p.Path, err)
	}
	if b.NumDevices() > 0 {
		info.Device = deviceName(b.DeviceDescription(0))
		// PJRT's CUDA description is "cuda:0 [processId=0]": name the card, as the driver does.
		if card, _, _ := strings.Cut(gpuModel(), ";"); p.Kind == CUDA && card != "" && !strings.Contains(info.Device, card) {
			info.Device = card + ", " + info.Device
		}
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

// CacheDir is where XLA's per-fusion autotuning results (CacheDir/autotune) and ddpm's compiled
// executables (ExecutableDir) are kept for this plugin and this GPU: $DDPM_CACHE (or the user cache
// dir)/ddpm/xla/<hash>. The hash covers the plugin file and the GPU's model, so that another plugin or
// card never reads these entries. Inside, entries are keyed by their content (the fusion, the program),
// so a new build of ddpm reuses exactly the entries whose programs did not change.
func CacheDir(plugin string) (string, error) {
	root := os.Getenv("DDPM_CACHE")
	if root == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		root = filepath.Join(c, "ddpm")
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", plugin)
	if fi, err := os.Stat(plugin); err == nil {
		fmt.Fprintf(h, "%d %d\n", fi.Size(), fi.ModTime().UnixNano())
	}
	h.Write([]byte(gpuModel()))
	dir := filepath.Join(root, "xla", hex.EncodeToString(h.Sum(nil))[:16])
	for _, d := range []string{filepath.Join(dir, "autotune"), ExecutableDir(dir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// gpuModel reads the model names of the NVIDIA GPUs from the driver, without loading CUDA.
func gpuModel() string {
	files, _ := filepath.Glob("/proc/driver/nvidia/gpus/*/information")
	var out strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "Model:") {
				out.WriteString(strings.TrimSpace(strings.TrimPrefix(line, "Model:")) + ";")
			}
		}
	}
	return out.String()
}
