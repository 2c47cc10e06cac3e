package pipeline

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/ddpm/ddpm/internal/atomicfile"
	"io"
	"os"
	"path/filepath"

	"github.com/ddpm/ddpm/checkpoint"
)

// DiffusersVersion is the _diffusers_version that Save writes (the same as unet.Config.MarshalJSON).
const DiffusersVersion = "0.30.0"

// Save writes p as a diffusers DDPMPipeline directory that DDPMPipeline.from_pretrained(dir) loads
// unchanged, with the weights stored as dtype (F32, F16 or BF16):
//
//	model_index.json                           DDPMPipeline; unet UNet2DModel; scheduler DDPMScheduler
//	unet/config.json                           unet.Config.MarshalJSON
//	unet/diffusion_pytorch_model.safetensors   metadata {"format": "pt"}, as diffusers writes it
//	scheduler/scheduler_config.json            every DDPMScheduler field (SchedulerConfig.MarshalJSON)
//
// A DDIMPipeline is saved as a DDPMPipeline too; its set_alpha_to_one, when false, rides along in the
// scheduler config, where DDIMScheduler.from_config finds it.
//
// Every file is first written complete under a temporary name beside its target; only when all are
// written is each renamed over its target, one atomic rename per file, so no file is ever missing. If a
// rename fails the earlier ones are undone (from hard-linked backups), so an error never leaves a mix of
// old and new files; a kill between two renames can (each file whole), and a kill leaves temporary and
// backup files (".NAME.tmp-*", ".NAME.old-*") that the next writer of a run folder removes. Other files
// in dir are left alone.
func Save(dir string, p *Pipeline, dtype checkpoint.DType) error {
	if p == nil || p.UNet == nil {
		return fmt.Errorf("pipeline: Save: no pipeline or no UNet; make one with Load or New")
	}
	weights, err := p.UNet.File(p.Weights, dtype)
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	weights.Metadata = map[string]string{"format": "pt"}
	unetConfig, err := p.UNet.Config.MarshalJSON()
	if err != nil {
		return fmt.Errorf("pipeline: unet config: %w", err)
	}
	unetConfig = append(unetConfig, '\n')
	schedConfig, err := p.SchedulerConfig(DDPMScheduler).MarshalJSON()
	if err != nil {
		return err
	}
	index, err := marshalConfig(map[string]any{
		"_class_name":        DDPMPipeline,
		"_diffusers_version": DiffusersVersion,
		"scheduler":          []string{"diffusers", DDPMScheduler.String()},
		"unet":               []string{"diffusers", "UNet2DModel"},
	})
	if err != nil {
		return err
	}
	return writeFiles(dir, []outFile{
		{"unet/" + SafetensorsFile, func(w io.Writer) error { return checkpoint.EncodeSafetensors(w, weights) }},
		{"unet/" + UNetConfigFile, writeBytes(unetConfig)},
		{"scheduler/" + SchedulerConfigFile, writeBytes(schedConfig)},
		{ModelIndexFile, writeBytes(index)},
	})
}

type outFile struct {
	rel   string // slash-separated, relative to the directory
	write func(io.Writer) error
}

func writeBytes(b []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := io.Copy(w, bytes.NewReader(b))
		return err
	}
}

// rename is os.Rename (slowed by atomicfile.Delay in kill tests); tests replace it to make a rename fail.
var rename = atomicfile.Rename

// writeFiles writes files into dir as one change: all written under temporary names first, then each
// renamed over its target (the old file hard-linked aside first), undone on the first failure, and the
// backups removed last.
func writeFiles(dir string, files []outFile) (err error) {
	targets := make([]string, len(files))
	for i, f := range files {
		targets[i] = filepath.Join(dir, filepath.FromSlash(f.rel))
		if fi, err := os.Lstat(targets[i]); err == nil && fi.IsDir() {
			return fmt.Errorf("pipeline: %s is a directory; remove it or save elsewhere", targets[i])
		}
	}

	// 1. The new files, complete and synced, beside their targets.
	tmps := make([]string, len(files))
	defer func() {
		if err != nil {
			for _, t := range tmps {
				if t != "" {
					os.Remove(t)
				}
			}
		}
	}()
	for i, f := range files {
		if err := os.MkdirAll(filepath.Dir(targets[i]), 0o755); err != nil {
			return fmt.Errorf("pipeline: %w (is %s writable?); nothing in it was changed", err, dir)
		}
		if tmps[i], err = writeTemp(targets[i], f.write); err != nil {
			return fmt.Errorf("pipeline: writing %s: %w; nothing in %s was changed", targets[i], err, dir)
		}
	}

	// 2. Each new file renamed over its target in one step, so the target never goes missing (a kill
	// between two renames leaves some files new and some old, each whole). An existing target is first
	// hard-linked to a backup name, which puts it back if a later rename fails.
	type step struct{ target, backup string }
	var done []step
	undo := func() {
		for j := len(done) - 1; j >= 0; j-- {
			if s := done[j]; s.backup != "" {
				rename(s.backup, s.target)
			} else {
				os.Remove(s.target)
			}
		}
	}
	for i, target := range targets {
		s := step{target: target}
		if _, err := os.Lstat(target); err == nil {
			s.backup = backupName(target)
			if err := os.Link(target, s.backup); err != nil {
				s.backup = "" // a file system without hard links: no undo for this file
			}
		}
		if err := rename(tmps[i], target); err != nil {
			if s.backup != "" {
				os.Remove(s.backup)
			}
			undo()
			return fmt.Errorf("pipeline: renaming into %s: %w; %s was left as it was", target, err, dir)
		}
		done, tmps[i] = append(done, s), ""
	}

	// 3. The backups go.
	for _, s := range done {
		if s.backup != "" {
			os.Remove(s.backup)
		}
	}
	syncDirs(targets)
	return nil
}

// writeTemp writes a file through write into a new temporary file beside target and syncs it.
func writeTemp(target string, write func(io.Writer) error) (string, error) {
	return atomicfile.Temp(target, write)
}

func backupName(target string) string {
	var b [6]byte
	rand.Read(b[:])
	dir, base := filepath.Split(target)
	return filepath.Join(dir, "."+base+".old-"+hex.EncodeToString(b[:]))
}

// syncDirs makes the renames durable; not every platform can sync a directory, so failures are ignored.
func syncDirs(paths []string) {
	seen := map[string]bool{}
	for _, p := range paths {
		d := filepath.Dir(p)
		if seen[d] {
			continue
		}
		seen[d] = true
		atomicfile.SyncDir(d)
	}
}
