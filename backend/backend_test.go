package backend

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGoBackend(t *testing.T) {
	b, info, err := New("go")
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != Go || b == nil {
		t.Fatalf("New(go) = %v, %+v", b, info)
	}
	b2, _, _ := New("go")
	if b2 != b {
		t.Error("New(go) twice made two backends; want one per process")
	}
}

// Asking for what is not there is an error that says what was searched and what to do; never a
// download, never a hang.
func TestMissingBackends(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
	t.Setenv("HOME", dir)
	t.Setenv("VIRTUAL_ENV", "")
	for _, c := range []struct{ name, want string }{
		{"nope", "unknown backend"},
		{"xla:relative/plugin.so", "xla:/absolute/path"},
		{"xla:/nonexistent/pjrt_c_api_cpu_plugin.so", "/nonexistent/pjrt_c_api_cpu_plugin.so"},
		{"cpu", "no xla:cpu PJRT plugin found; searched:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := New(c.name)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New(%q) = %v, want an error containing %q", c.name, err, c.want)
			}
		})
	}
	_, _, err := New("cpu")
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "--backend go") {
		t.Errorf("New(cpu): %v; want the searched directory and advice", err)
	}
}

func TestSearchFindsPlugins(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"pjrt_c_api_cuda_plugin.so", "pjrt_c_api_cpu_plugin.so"} {
		os.WriteFile(filepath.Join(dir, f), []byte("not really a plugin"), 0o644)
	}
	sp := filepath.Join(dir, "venv", "lib", "python3.12", "site-packages", "jax_plugins", "xla_cuda13")
	os.MkdirAll(sp, 0o755)
	os.WriteFile(filepath.Join(sp, "xla_cuda_plugin.so"), []byte("x"), 0o644)
	t.Setenv("PJRT_PLUGIN_LIBRARY_PATH", dir)
	t.Setenv("VIRTUAL_ENV", filepath.Join(dir, "venv"))
	cuda, _ := Search(CUDA)
	if len(cuda) != 2 || filepath.Base(cuda[0].Path) != "pjrt_c_api_cuda_plugin.so" || filepath.Base(cuda[1].Path) != "xla_cuda_plugin.so" {
		t.Errorf("Search(CUDA) = %v, want the PJRT_PLUGIN_LIBRARY_PATH plugin, then pip's", cuda)
	}
	cpu, _ := Search(CPU)
	if len(cpu) != 1 || filepath.Base(cpu[0].Path) != "pjrt_c_api_cpu_plugin.so" {
		t.Errorf("Search(CPU) = %v", cpu)
	}
	if nv := nvidiaDir(cuda[1].Path); nv != "" {
		t.Errorf("nvidiaDir without site-packages/nvidia = %q, want none", nv)
	}
	os.MkdirAll(filepath.Join(dir, "venv", "lib", "python3.12", "site-packages", "nvidia"), 0o755)
	if nv := nvidiaDir(cuda[1].Path); filepath.Base(nv) != "nvidia" {
		t.Errorf("nvidiaDir = %q, want site-packages/nvidia", nv)
	}
}

func TestCacheDirIsKeyed(t *testing.T) {
	t.Setenv("DDPM_CACHE", t.TempDir())
	a, err := CacheDir("/a/plugin.so")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := CacheDir("/b/plugin.so")
	a2, _ := CacheDir("/a/plugin.so")
	if a == b || a != a2 {
		t.Errorf("cache dirs %q, %q, %q: want one per plugin, stable", a, b, a2)
	}
	for _, d := range []string{filepath.Join(a, "autotune"), ExecutableDir(a)} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("cache dir %s not created: %v", d, err)
		}
	}
}
