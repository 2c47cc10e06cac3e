package pipeline

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CacheDir returns the Hugging Face hub cache directory as huggingface_hub computes it: $HF_HUB_CACHE,
// else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub, with ~ and $VARS expanded. (An empty variable counts as unset.)
func CacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return expandPath(d)
	}
	if d := os.Getenv("HUGGINGFACE_HUB_CACHE"); d != "" {
		return expandPath(d)
	}
	home := os.Getenv("HF_HOME")
	if home == "" {
		xdg := os.Getenv("XDG_CACHE_HOME")
		if xdg == "" {
			xdg = filepath.Join("~", ".cache")
		}
		home = filepath.Join(xdg, "huggingface")
	}
	return filepath.Join(expandPath(home), "hub")
}

// expandPath is Python's os.path.expandvars(os.path.expanduser(p)): a leading ~ is $HOME, and $NAME or
// ${NAME} is the variable's value, left as written when the variable is not set.
func expandPath(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = home + p[1:]
		}
	}
	var b strings.Builder
	for i := 0; i < len(p); {
		if p[i] != '$' {
			b.WriteByte(p[i])
			i++
			continue
		}
		name, end := "", i+1
		if end < len(p) && p[end] == '{' {
			if j := strings.IndexByte(p[end:], '}'); j > 0 {
				name, end = p[end+1:end+j], end+j+1
			}
		} else {
			for end < len(p) && (p[end] == '_' || isAlnum(p[end])) {
				end++
			}
			name = p[i+1 : end]
		}
		if v, ok := os.LookupEnv(name); ok && name != "" {
			b.WriteString(v)
		} else {
			b.WriteString(p[i:end])
			if end == i+1 {
				end++ // a lone '$'
			}
		}
		i = end
	}
	return b.String()
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// envTrue is huggingface_hub's _is_true.
func envTrue(v string) bool {
	switch strings.ToUpper(v) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// OfflineFromEnv reports whether the environment forbids downloads, as huggingface_hub reads it:
// $HF_HUB_OFFLINE, or when that is empty $TRANSFORMERS_OFFLINE, is 1, ON, YES or TRUE.
func OfflineFromEnv() bool {
	v := os.Getenv("HF_HUB_OFFLINE")
	if v == "" {
		v = os.Getenv("TRANSFORMERS_OFFLINE")
	}
	return envTrue(v)
}

// RepoDir returns the cache folder of model repository repo: cacheDir/models--owner--name.
func RepoDir(cacheDir, repo string) string {
	return filepath.Join(cacheDir, "models--"+strings.ReplaceAll(repo, "/", "--"))
}

// link makes pointer a relative symlink to blob, as huggingface_hub does, replacing it atomically.
func link(blob, pointer string) error {
	if err := os.MkdirAll(filepath.Dir(pointer), 0o755); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	rel, err := filepath.Rel(filepath.Dir(pointer), blob)
	if err != nil {
		rel = blob
	}
	var b [6]byte
	rand.Read(b[:])
	tmp := filepath.Join(filepath.Dir(pointer), "."+filepath.Base(pointer)+".tmp-"+hex.EncodeToString(b[:]))
	if err := os.Symlink(rel, tmp); err != nil {
		return fmt.Errorf("pipeline: %w (symlinks are needed in the hub cache)", err)
	}
	if err := os.Rename(tmp, pointer); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pipeline: %w", err)
	}
	return nil
}

// writeRef records the revision's commit in refs/<revision>, through a temporary file.
func (h *hub) writeRef() error {
	if h.revision == h.commit {
		return nil
	}
	ref := filepath.Join(h.storage, "refs", filepath.FromSlash(h.revision))
	if b, err := os.ReadFile(ref); err == nil && string(b) == h.commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(ref), 0o755); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	tmp, err := writeTemp(ref, writeBytes([]byte(h.commit)))
	if err != nil {
		return fmt.Errorf("pipeline: writing %s: %w", ref, err)
	}
	if err := os.Rename(tmp, ref); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pipeline: %w", err)
	}
	return nil
}

// fromCache returns the cached snapshot of the revision if it holds a whole pipeline, or an error that says
// where the files must go. why is the network error that sent it here (nil: offline by choice).
func (h *hub) fromCache(why error) (string, error) {
	commit, badRef := "", ""
	ref := filepath.Join(h.storage, "refs", filepath.FromSlash(h.revision))
	if commitHash.MatchString(h.revision) {
		commit = h.revision
	} else if b, err := os.ReadFile(ref); err == nil {
		// The ref is only trusted as a snapshot's name: anything else (a path, garbage) is reported as
		// what it is, never joined into a path.
		if c := strings.TrimSpace(string(b)); safeName.MatchString(c) {
			commit = c
		} else {
			badRef = c
		}
	}
	if commit != "" {
		if dir := filepath.Join(h.storage, "snapshots", commit); h.complete(dir) {
			return dir, nil
		}
	}
	var msg strings.Builder
	if why != nil {
		fmt.Fprintf(&msg, "pipeline: could not reach %s (%v), and %s (revision %s) is not in the Hugging Face cache %s.",
			h.endpoint, why, h.repo, h.revision, h.cache)
	} else {
		fmt.Fprintf(&msg, "pipeline: %s (revision %s) is not in the Hugging Face cache %s, and offline mode (HF_HUB_OFFLINE) forbids downloading it.",
			h.repo, h.revision, h.cache)
	}
	msg.WriteString(" Pass a local DDPMPipeline directory instead of a hub name, or put the files where huggingface_hub keeps them:")
	snap := filepath.Join(h.storage, "snapshots", "<commit>")
	if commit == "" {
		fmt.Fprintf(&msg, "\n  %s  (a file holding the commit hash, 40 hex digits)", ref)
		if badRef != "" {
			if len(badRef) > 60 {
				badRef = badRef[:60] + "..."
			}
			fmt.Fprintf(&msg, "; it now holds %q, which is not a commit hash: delete it or write the hash", badRef)
		}
	} else {
		snap = filepath.Join(h.storage, "snapshots", commit)
	}
	for _, f := range []string{ModelIndexFile, "unet/" + UNetConfigFile, "unet/" + SafetensorsFile, "scheduler/" + SchedulerConfigFile} {
		p := filepath.Join(snap, filepath.FromSlash(f))
		if _, err := os.Stat(p); err == nil {
			continue
		}
		fmt.Fprintf(&msg, "\n  %s", p)
		if f == "unet/"+SafetensorsFile {
			msg.WriteString("  (or " + TorchFile + ")")
		}
	}
	msg.WriteString("\n(the older flat layout, config.json, the weights and scheduler_config.json beside model_index.json, works too)")
	if why == nil {
		msg.WriteString("\nor unset HF_HUB_OFFLINE to download them.")
	}
	return "", errors.New(msg.String())
}
