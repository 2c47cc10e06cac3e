package unet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigLimits checks that absurd sizes are refused with an error naming the field (and the limit
// where there is one) instead of exhausting memory later. Each case edits one field of a small valid
// config.
func TestConfigLimits(t *testing.T) {
	base := `"block_out_channels": [32, 64], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
		"up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8, "sample_size": 16`
	if _, err := ParseConfig([]byte("{" + base + "}")); err != nil {
		t.Fatalf("the base config: %v", err)
	}
	for _, c := range []struct{ field, value, want string }{
		{"sample_size", `[100000, 100000]`, "sample_size[0]: 100000 is beyond the limit of 4096"},
		{"sample_size", `100000`, "sample_size[0]: 100000 is beyond the limit of 4096"},
		{"sample_size", `2e9`, "sample_size"},
		{"layers_per_block", `1e9`, "layers_per_block"},
		{"layers_per_block", `1000000000`, "layers_per_block: 1000000000 is beyond the limit of 64"},
		{"block_out_channels", `[100000]`, "block_out_channels[0]: 100000 is beyond the limit of 8192"},
		{"block_out_channels", `[100000, 100000]`, "block_out_channels[0]: 100000 is beyond the limit of 8192"},
		{"block_out_channels", `[8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8,8]`, "block_out_channels (the number of blocks): 17 is beyond the limit of 16"},
		{"in_channels", `1000000`, "in_channels: 1000000 is beyond the limit of 8192"},
		{"out_channels", `1000000`, "out_channels: 1000000 is beyond the limit of 8192"},
		{"time_embedding_dim", `1000000000`, "time_embedding_dim: 1000000000 is beyond the limit of 8192"},
		{"time_embedding_dim", `0`, "time_embedding_dim: must be positive"},
		{"num_class_embeds", `2000000000`, "num_class_embeds: 2000000000 is beyond the limit of 100000"},
		{"attention_head_dim", `0`, "attention_head_dim: must be positive"},
		{"attn_norm_num_groups", `0`, "attn_norm_num_groups: must be positive"},
	} {
		// A repeated key replaces the base's value (encoding/json keeps the last).
		cfg := "{" + base + `, "` + c.field + `": ` + c.value + "}"
		_, err := ParseConfig([]byte(cfg))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s = %s: error %v; want one containing %q", c.field, c.value, err, c.want)
		}
	}
}

// TestConfigLimitsFromFile checks the limits through LoadConfig, the path every command takes.
func TestConfigLimitsFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"block_out_channels": [100000], "down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), "block_out_channels[0]") || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadConfig: %v; want an error naming block_out_channels[0] and the file", err)
	}
}
