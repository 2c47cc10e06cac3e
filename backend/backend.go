// Package backend picks the compute backend for ddpm: a CUDA PJRT plugin when one is installed and a GPU is
// present, else an XLA CPU plugin, else GoMLX's pure-Go backend.
//
// Plugins are searched, in order, in the directories of $PJRT_PLUGIN_LIBRARY_PATH, go-xla's install
// directories (/usr/local/lib/go-xla, ~/.local/lib/go-xla), and pip's site-packages
// (jax_plugins/xla_cuda*/xla_cuda_plugin.so, the plugin that `pip install "jax[cuda13]"` installs) of the
// active virtual environment and the usual system and user locations. Nothing is ever downloaded: a
// backend that is asked for and not found is an error that lists what was searched.
//
// The pure-Go backend is created with unlimited goroutine parallelism: its default worker pool deadlocked
// in a training step on a 2-core machine (see ../shared/COMPUTE.md).
package backend

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
)

// EnvVar is the environment variable that overrides the automatic choice, as GoMLX defines it.
const EnvVar = "GOMLX_BACKEND"

// Kind says what a backend computes on.
type Kind int

const (
	// Go is GoMLX's pure-Go backend (simplego): no cgo, runs everywhere, slow.
	Go Kind = iota
	// CPU is XLA through a CPU PJRT plugin.
	CPU
	// CUDA is XLA through a CUDA PJRT plugin, on an NVIDIA GPU.
	CUDA
)

func (k Kind) String() string {
	switch k {
	case Go:
		return "go"
	case CPU:
		return "xla:cpu"
	case CUDA:
		return "xla:cuda"
	case OneDNN:
		return "onednn"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Info describes the backend that New chose, for the user.
type Info struct {
	Kind   Kind
	Plugin string // absolute path of the PJRT plugin; empty for Go
	Device string // the device's description, as the backend reports it
	Reason string // why this one: "asked for", "fastest found", ...
	// CompileCache is the directory of XLA's autotuning results and ddpm's compiled executables (CUDA
	// only; CacheDir).
	CompileCache string
	// Async says that executions return once queued (CUDA; see loadWrappedPlugin).
	Async bool
}

func (i Info) String() string {
	s := i.Kind.String()
	if i.Plugin != "" {
		s += " (" + i.Plugin + ")"
	}
	if i.Device != "" {
		s += " on " + i.Device
	}
	return s
}

// A Plugin is a PJRT plugin found on disk.
type Plugin struct {
	Kind Kind
	Path string
}

var cache struct {
	sync.Mutex
	byName map[string]backends.Backend
	info   map[string]Info
}

// New returns the backend named by name, or by $GOMLX_BACKEND when name is empty, or else the fastest
// one found. Names: "go" (pure Go, optionally "go:config"), "cuda" or "xla:cuda", "cpu" or "xla:cpu",
// "xla:/abs/path/plugin.so", and "auto" (the default: CUDA, else CPU plugin, else Go).
//
// Backends are created once per process and shared: a PJRT client owns the whole GPU.
func New(name string) (backends.Backend, Info, error) {
	reason := "asked for"
	if name == "" {
		name = os.Getenv(EnvVar)
		reason = "$" + EnvVar
	}
	if name == "" {
		name = "auto"
		reason = "fastest found"
	}
	cache.Lock()
	defer cache.Unlock()
	if b, ok := cache.byName[name]; ok {
		return b, cache.info[name], nil
	}
	b, info, err := create(name)
	if err != nil {
		return nil, Info{}, err
	}
	info.Reason = reason
	if cache.byName == nil {
		cache.byName = map[string]backends.Backend{}
		cache.info = map[string]Info{}
	}
	cache.byName[name] = b
	cache.info[name] = info
	return b, info, nil
}

func create(name string) (backends.Backend, Info, error) {
	kindName, config, _ := strings.Cut(name, ":")
	switch kindName {
	case "go", "simplego":
		b, err := newGo(config)
		return b, Info{Kind: Go, Device: fmt.Sprintf("%d CPU cores", runtime.NumCPU())}, err
	case "auto":
		for _, k := range []Kind{CUDA, CPU} {
			found, _ := Search(k)
			if len(found) == 0 || (k == CUDA && !hasNVIDIAGPU()) {
				continue
			}
			b, info, err := newXLA(found[0])
			if err == nil {
				return b, info, nil
			}
			fmt.Fprintf(os.Stderr, "ddpm: %s plugin %s failed to start (%v); trying the next backend\n", k, found[0].Path, err)
		}
		b, err := newGo("")
		return b, Info{Kind: Go, Device: fmt.Sprintf("%d CPU cores", runtime.NumCPU())}, err
	case "cuda", "cpu":
		config = kindName
		fallthrough
	case "xla", "stablehlo", "pjrt":
		var p Plugin
		switch {
		case config == "cuda" || config == "cpu":
			k := map[string]Kind{"cuda": CUDA, "cpu": CPU}[config]
			found, searched := Search(k)
			if len(found) == 0 {
				return nil, Info{}, notFound(k, searched)
			}
			if k == CUDA && !hasNVIDIAGPU() {
				return nil, Info{}, fmt.Errorf("backend: a CUDA plugin is installed (%s) but no NVIDIA GPU is visible "+
					"(no /dev/nvidia*): use --backend go on this machine", found[0].Path)
			}
			p = found[0]
		case filepath.IsAbs(config):
			if _, err := os.Stat(config); err != nil {
				return nil, Info{}, fmt.Errorf("backend: PJRT plugin %q: %w", config, err)
			}
			p = Plugin{Kind: kindOfPlugin(config), Path: config}
		default:
			return nil, Info{}, fmt.Errorf("backend: %q: want xla:cuda, xla:cpu or xla:/absolute/path/to/plugin.so", name)
		}
		return newXLA(p)
	}
	if kindName == "onednn" {
		return nil, Info{}, fmt.Errorf("backend: onednn, the CPU engine, runs the UNet of ddpm sample only: use auto, go, cuda or cpu here")
	}
	return nil, Info{}, fmt.Errorf("backend: unknown backend %q: want auto, go, cuda, cpu or xla:/path/to/pjrt_plugin.so", name)
}

// newGo creates the pure-Go backend. Its constructor prints a line to stdout when given a parallelism;
// stdout is ddpm's output, so that line is swallowed.
func newGo(config string) (backends.Backend, error) {
	if config == "" {
		config = "parallelism=-1"
	}
	var b backends.Backend
	var err error
	withStdoutDiscarded(func() { b, err = simplego.New(config) })
	if err != nil {
		return nil, fmt.Errorf("backend: go: %w", err)
	}
	return b, nil
}

func withStdoutDiscarded(f func()) {
	saved := os.Stdout
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		f()
		return
	}
	os.Stdout = devnull
	defer func() {
		os.Stdout = saved
		devnull.Close()
	}()
	f()
}

func notFound(k Kind, searched []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "backend: no %s PJRT plugin found; searched:\n", k)
	for _, s := range searched {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	switch k {
	case CUDA:
		b.WriteString(`install one with pip (pip install "jax[cuda13]", which brings jax_plugins/xla_cuda13/xla_cuda_plugin.so),
or set PJRT_PLUGIN_LIBRARY_PATH to the directory of a pjrt_c_api_cuda_plugin.so, or use --backend go`)
	case CPU:
		b.WriteString(`put a pjrt_c_api_cpu_plugin.so (from github.com/gomlx/go-xla releases) in /usr/local/lib/go-xla
or ~/.local/lib/go-xla, or set PJRT_PLUGIN_LIBRARY_PATH to its directory, or use --backend go`)
	}
	return errors.New(b.String())
}

func kindOfPlugin(path string) Kind {
	base := strings.ToLower(filepath.Base(path))
	if strings.Contains(base, "cuda") || strings.Contains(base, "nvidia") {
		return CUDA
	}
	return CPU
}

func hasNVIDIAGPU() bool {
	m, _ := filepath.Glob("/dev/nvidia[0-9]*")
	return len(m) > 0
}

// Search lists the plugins of kind k found on this machine, best first, and the places it looked.
func Search(k Kind) (found []Plugin, searched []string) {
	seen := map[string]bool{}
	add := func(pattern string) {
		searched = append(searched, pattern)
		matches, _ := filepath.Glob(pattern)
		sort.Sort(sort.Reverse(sort.StringSlice(matches))) // newest CUDA major version first
		for _, m := range matches {
			real, err := filepath.EvalSymlinks(m)
			if err != nil || seen[real] || kindOfPlugin(m) != k {
				continue
			}
			if fi, err := os.Stat(real); err != nil || fi.IsDir() {
				continue
			}
			seen[real] = true
			found = append(found, Plugin{Kind: k, Path: m})
		}
	}
	var dirs []string
	if env := os.Getenv("PJRT_PLUGIN_LIBRARY_PATH"); env != "" {
		dirs = append(dirs, filepath.SplitList(env)...)
	}
	home, _ := os.UserHomeDir()
	dirs = append(dirs, "/usr/local/lib/go-xla")
	if home != "" {
		dirs = append(dirs, filepath.Join(home, ".local/lib/go-xla"))
	}
	for _, d := range dirs {
		add(filepath.Join(d, "pjrt_c_api_*_plugin.so"))
		add(filepath.Join(d, "pjrt[-_]plugin[-_]*.so"))
	}
	if k == CUDA {
		for _, sp := range sitePackages(home) {
			add(filepath.Join(sp, "jax_plugins", "xla_cuda*", "xla_cuda_plugin.so"))
		}
	}
	return found, searched
}

// sitePackages lists the Python site-packages directories where pip puts jax's plugins.
func sitePackages(home string) []string {
	var roots []string
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		roots = append(roots, v)
	}
	if v := os.Getenv("CONDA_PREFIX"); v != "" {
		roots = append(roots, v)
	}
	if home != "" {
		roots = append(roots, filepath.Join(home, ".local"), filepath.Join(home, ".venv"))
	}
	roots = append(roots, "/opt/*/.venv", "/opt/*/venv", "/opt/conda", "/usr/local", "/usr")
	var out []string
	for _, r := range roots {
		out = append(out,
			filepath.Join(r, "lib", "python3*", "site-packages"),
			filepath.Join(r, "lib", "python3*", "dist-packages"))
	}
	out = append(out, "/usr/lib/python3/dist-packages")
	return out
}
