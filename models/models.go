// Package models bundles small pretrained models with the binary, so that `ddpm sample` and `ddpm fid`
// work on a fresh machine without a download:
//
//	mnist              a diffusers pipeline directory (model_index.json, unet/, scheduler/), loadable by
//	                   diffusers' DDPMPipeline.from_pretrained as it is
//	classifier-mnist   our MNIST classifier, the extractor of `ddpm fid --features classifier`
//	fashion-mnist      the same recipe on 90% of Fashion-MNIST's training split (the other 10%, seed
//	                   1234, is the hold-out that `fid --ref fashion-mnist:holdout` scores against)
//	classifier-fashion-mnist  our classifier on the same 90% of Fashion-MNIST (15 epochs, 91.5% test accuracy)
//	tiny-ddpm-cifar10  the reference of `ddpm verify`: a copy of ../shared/testdata/diffusers/
//	                   tiny-ddpm-cifar10 (a random-weight UNet2DModel, its safetensors weights and
//	                   diffusers' recorded outputs, reference_io.safetensors), so that verify needs
//	                   no source tree
//
//	mnist-cond         the recipe plus labels and label dropout (p_uncond 0.1, num_class_embeds 11, null
//	                   label 10) on MNIST's whole training split, 40 epochs on one H200 (2026-12-03); what
//	                   `ddpm sample --class N` uses without --run or --model
//	fashion-mnist-cond the same on Fashion-MNIST's whole training split (40 epochs on one H200,
//	                   2026-12-03): `ddpm sample --model fashion-mnist-cond --class 7` draws sneakers
package models

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

//go:embed mnist mnist-cond classifier-mnist fashion-mnist fashion-mnist-cond classifier-fashion-mnist tiny-ddpm-cifar10
var bundled embed.FS

// Names lists the bundled models.
func Names() []string {
	entries, _ := bundled.ReadDir(".")
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// Dir returns a directory holding the bundled model name: the copy in the user's cache directory
// (written once, keyed by the content's hash, so a new binary with new weights never reads stale ones).
func Dir(name string) (string, error) {
	if fi, err := fs.Stat(bundled, name); err != nil || !fi.IsDir() || name == "." {
		return "", fmt.Errorf("models: no bundled model %q (have %v)", name, Names())
	}
	h := sha256.New()
	var files []string
	err := fs.WalkDir(bundled, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := bundled.ReadFile(p)
		if err != nil {
			return err
		}
		h.Write([]byte(p))
		h.Write(b)
		files = append(files, p)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("models: %w", err)
	}
	root, err := cacheRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, name+"-"+hex.EncodeToString(h.Sum(nil))[:12])
	if _, err := os.Stat(dir); err == nil {
		return dir, nil // complete: directories appear by rename only
	}
	tmp, err := os.MkdirTemp(root, "."+name+"-*")
	if err != nil {
		return "", fmt.Errorf("models: %w", err)
	}
	for _, p := range files {
		b, _ := bundled.ReadFile(p)
		dst := filepath.Join(tmp, filepath.FromSlash(p[len(name)+1:]))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("models: %w", err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("models: %w", err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if _, statErr := os.Stat(dir); statErr == nil {
			return dir, nil // another process won the race
		}
		return "", fmt.Errorf("models: %w", err)
	}
	return dir, nil
}

func cacheRoot() (string, error) {
	root := os.Getenv("DDPM_CACHE")
	if root == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("models: no cache directory (set DDPM_CACHE): %w", err)
		}
		root = filepath.Join(c, "ddpm")
	}
	root = filepath.Join(root, "models")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("models: %w", err)
	}
	return root, nil
}
