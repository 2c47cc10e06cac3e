package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ddpm/ddpm/internal/atomicfile"
)

// The files and folders of a run folder (see the package doc).
const (
	ConfigFile    = "train.json"
	LossFile      = "loss.csv"
	LossPlotFile  = "loss.png"
	CheckpointDir = "checkpoints"
	SamplesDir    = "samples"
)

// runFiles are the entries a run writes, removed by Create with force.
var runFiles = []string{ConfigFile, LossFile, LossPlotFile, CheckpointDir, SamplesDir,
	"model_index.json", "unet", "scheduler"}

// A Run is a run folder opened for training: its lock is held until Close.
type Run struct {
	Dir    string
	Config Config
	lock   *lock
}

// Create makes a new run in dir, which must be empty or missing, or, with force, a run folder whose
// run files are then removed first (other files are kept). It takes the lock and writes train.json.
func Create(dir string, c Config, force bool) (*Run, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := CheckNew(dir, force); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	l, err := acquire(dir)
	if err != nil {
		return nil, err
	}
	r := &Run{Dir: dir, Config: c, lock: l}
	if force {
		for _, name := range runFiles {
			if err := os.RemoveAll(join(dir, name)); err != nil {
				r.Close()
				return nil, fmt.Errorf("run: --force: %w", err)
			}
		}
		if _, err := removeLeftovers(dir); err != nil {
			r.Close()
			return nil, err
		}
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	if err := atomicfile.WriteFile(join(dir, ConfigFile), append(b, '\n')); err != nil {
		r.Close()
		return nil, fmt.Errorf("run: %w", err)
	}
	return r, nil
}

// CheckNew says whether Create(dir, _, force) may use dir, without changing anything: dir is missing
// or empty, or it is a run folder and force is set, and it is not a file.
func CheckNew(dir string, force bool) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("run: %w (want a folder for the run)", err)
	}
	var other []string
	for _, e := range entries {
		if e.Name() != LockFile {
			other = append(other, e.Name())
		}
	}
	if len(other) == 0 {
		return nil
	}
	_, cerr := os.Stat(join(dir, ConfigFile))
	switch {
	case !force && cerr == nil:
		return fmt.Errorf("run: %s is a run folder already: resume it with --resume %s, or start it again with --out %s --force (which deletes its checkpoints)", dir, dir, dir)
	case !force:
		if len(other) > 3 {
			other = append(other[:3], "...")
		}
		return fmt.Errorf("run: %s exists and is not empty (%s): choose another --out", dir, strings.Join(other, ", "))
	case cerr != nil:
		return fmt.Errorf("run: --force: %s is not a run folder (no %s), so it is left alone: choose another --out", dir, ConfigFile)
	}
	return nil
}

// Open opens the run in dir to train it further: it takes the lock, removes a killed writer's
// leftovers and reads train.json.
func Open(dir string) (*Run, error) {
	if _, err := os.Stat(join(dir, ConfigFile)); err != nil {
		return nil, fmt.Errorf("run: %s has no %s: it is not a run folder made by ddpm train (start one with --out %s)", dir, ConfigFile, dir)
	}
	l, err := acquire(dir)
	if err != nil {
		return nil, err
	}
	r := &Run{Dir: dir, lock: l}
	if _, err := removeLeftovers(dir); err != nil {
		r.Close()
		return nil, err
	}
	if r.Config, err = ReadConfig(dir); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.Config.Validate(); err != nil {
		r.Close()
		return nil, fmt.Errorf("%w (in %s)", err, join(dir, ConfigFile))
	}
	return r, nil
}

// SetConfig replaces the run's config (the settings a resume may change: the length, the checkpoint
// and sample cadence) and writes it to train.json.
func (r *Run) SetConfig(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	r.Config = c
	b, _ := json.MarshalIndent(c, "", "  ")
	if err := atomicfile.WriteFile(join(r.Dir, ConfigFile), append(b, '\n')); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	return nil
}

// Close releases the lock.
func (r *Run) Close() error { return r.lock.release() }

// Clean removes the leftovers of a killed writer from a run folder (see IsLeftover) unless a training
// holds the folder, whose temporary files are its work in progress; it returns the names removed. A
// folder without train.json is not a run folder and is left alone. Every command that reads a run
// folder calls it first.
func Clean(dir string) ([]string, error) {
	if _, err := os.Stat(join(dir, ConfigFile)); err != nil {
		return nil, nil
	}
	l, err := acquire(dir)
	if errors.Is(err, ErrLocked) {
		return nil, nil
	}
	if err != nil {
		return nil, nil // a read-only folder: nothing can have been left by a writer of ours
	}
	defer l.release()
	return removeLeftovers(dir)
}

// IsLeftover reports whether a file name is a temporary or backup file of an interrupted writer:
// ".NAME.tmp-*" (atomicfile), ".NAME.old-*" (pipeline.Save's backups) or "loss.csv.tmp" (older
// versions' loss log rewrite).
func IsLeftover(name string) bool {
	return strings.HasPrefix(name, ".") && (strings.Contains(name, ".tmp-") || strings.Contains(name, ".old-")) ||
		name == LossFile+".tmp"
}

func removeLeftovers(dir string) ([]string, error) {
	var removed []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if rel, _ := filepath.Rel(dir, path); strings.Count(rel, string(filepath.Separator)) >= 2 {
				return filepath.SkipDir // a run folder is two levels deep at most
			}
			return nil
		}
		if IsLeftover(d.Name()) {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("run: removing the leftover %s: %w", path, err)
			}
			rel, _ := filepath.Rel(dir, path)
			removed = append(removed, rel)
		}
		return nil
	})
	return removed, err
}

func join(elem ...string) string { return filepath.Join(elem...) }

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
