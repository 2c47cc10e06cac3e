package unet

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ddpm/ddpm/internal/memcap"
)

// FuzzParseConfig checks that no config.json makes ParseConfig panic or allocate more than 64 times its
// size plus 1 MB, and that what it accepts is within the limits (unet/limits.go) and builds a model
// whose parameter count is bounded by them. Seeds: the configs of testdata/configs.
func FuzzParseConfig(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "configs", "*", "config.json"))
	if len(paths) == 0 {
		f.Fatal("no seed configs in testdata/configs")
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"sample_size": [100000, 100000], "layers_per_block": 1000000000, "block_out_channels": [100000]}`))
	memcap.Harness(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		var c Config
		var err error
		memcap.Within(t, 64*uint64(len(data))+1<<20, func() { c, err = ParseConfig(data) })
		if err != nil {
			return
		}
		if err := c.checkLimits(); err != nil {
			t.Fatalf("accepted a config beyond the limits: %v", err)
		}
		if _, err := New(c); err != nil {
			t.Fatalf("ParseConfig accepted a config that New refuses: %v", err)
		}
	})
}
