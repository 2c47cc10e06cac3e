package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// --devices is checked before any step runs: the pure-Go backend has one device.
func TestDevicesFlag(t *testing.T) {
	var out, errb bytes.Buffer
	args := []string{"bench", "--what", "train", "--backend", "go", "--steps", "1", "--devices", "2", "--batch", "4"}
	err := run(context.Background(), args, &out, &errb)
	if want := "has 1 (pass --devices 1)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("ddpm %s: err = %v; want it to say %q", strings.Join(args, " "), err, want)
	}
}
