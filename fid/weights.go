package fid

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// InceptionWeightsFile is the name of pytorch-fid's Inception weights; the 8 hex digits before .pth
// are the start of the file's SHA-256 (torch hub's convention).
const InceptionWeightsFile = "pt_inception-2015-12-05-6726825d.pth"

// InceptionWeightsURL is where pytorch-fid downloads InceptionWeightsFile from.
const InceptionWeightsURL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + InceptionWeightsFile

const inceptionWeightsHashPrefix = "6726825d"

// FileSHA256 returns the SHA-256 of the file at path, in lowercase hex.
func FileSHA256(path string) (string, error) {
	h, err := fileSHA256(path)
	if err != nil {
		return "", fmt.Errorf("fid: hashing: %w", err)
	}
	return h, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FindInceptionWeights returns the path of pytorch-fid's Inception weights, InceptionWeightsFile
// (91 MB). It looks, in order:
//
//   - at explicit, when it is not empty (the file must exist);
//   - in our cache: $DDPM_CACHE/fid/, else ddpm/fid/ in os.UserCacheDir() (~/.cache/ddpm/fid/ on Linux);
//   - in torch hub's cache, where pytorch-fid keeps it: $TORCH_HOME/hub/checkpoints/, else
//     $XDG_CACHE_HOME/torch/hub/checkpoints/, else ~/.cache/torch/hub/checkpoints/;
//
// and else downloads InceptionWeightsURL into our cache: to a ".part" file first, which a later call
// resumes if the transfer breaks, renamed only once its SHA-256 is checked to start with the
// 6726825d of its name. Without a network the error says what to download and where to put it.
func FindInceptionWeights(explicit string) (string, error) {
	f := weightsFinder{
		getenv:       os.Getenv,
		userCacheDir: os.UserCacheDir,
		homeDir:      os.UserHomeDir,
		url:          InceptionWeightsURL,
		hashPrefix:   inceptionWeightsHashPrefix,
		client:       http.DefaultClient,
		stall:        30 * time.Second,
	}
	return f.find(context.Background(), explicit)
}

// weightsFinder is FindInceptionWeights with its environment, for tests.
type weightsFinder struct {
	getenv       func(string) string
	userCacheDir func() (string, error)
	homeDir      func() (string, error)
	url          string
	hashPrefix   string // of the SHA-256 of the file at url
	client       *http.Client
	stall        time.Duration // a transfer that delivers nothing for this long is cut
}

func (f weightsFinder) find(ctx context.Context, explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("fid: Inception weights: %w (pytorch-fid's %s is at %s)", err, InceptionWeightsFile, InceptionWeightsURL)
		}
		return explicit, nil
	}
	cache, cacheErr := f.cacheDir()
	var looked []string
	for _, dir := range []string{cache, f.torchDir()} {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, InceptionWeightsFile)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		looked = append(looked, p)
	}
	if cacheErr != nil {
		return "", fmt.Errorf("fid: Inception weights not found at %s, and %w: download %s and pass its path",
			strings.Join(looked, " or "), cacheErr, f.url)
	}
	dst := filepath.Join(cache, InceptionWeightsFile)
	if err := download(ctx, f.client, f.url, dst, f.hashPrefix, f.stall); err != nil {
		return "", fmt.Errorf("fid: Inception weights not found at %s, and downloading them failed: %w; "+
			"download %s yourself to %s (or anywhere, and pass its path)",
			strings.Join(looked, " or "), err, f.url, dst)
	}
	return dst, nil
}

// cacheDir is our cache's directory for FID files: $DDPM_CACHE/fid, else <user cache>/ddpm/fid.
func (f weightsFinder) cacheDir() (string, error) {
	if d := f.getenv("DDPM_CACHE"); d != "" {
		return filepath.Join(d, "fid"), nil
	}
	d, err := f.userCacheDir()
	if err != nil {
		return "", fmt.Errorf("there is no cache directory (set DDPM_CACHE): %w", err)
	}
	return filepath.Join(d, "ddpm", "fid"), nil
}

// torchDir is where torch.hub.load_state_dict_from_url keeps files: $TORCH_HOME/hub/checkpoints, with
// TORCH_HOME defaulting to $XDG_CACHE_HOME/torch and XDG_CACHE_HOME to ~/.cache. Empty when there is
// no home directory to start from.
func (f weightsFinder) torchDir() string {
	home := f.getenv("TORCH_HOME")
	if home == "" {
		xdg := f.getenv("XDG_CACHE_HOME")
		if xdg == "" {
			h, err := f.homeDir()
			if err != nil || h == "" {
				return ""
			}
			xdg = filepath.Join(h, ".cache")
		}
		home = filepath.Join(xdg, "torch")
	}
	return filepath.Join(home, "hub", "checkpoints")
}

// downloadAttempts is how many times download tries a transfer, resuming where the last one broke.
const downloadAttempts = 3

// download fetches url to dst through dst+".part", resuming a part left by an earlier attempt with an
// HTTP range request, and renames it to dst once the SHA-256 of the whole file starts with hashPrefix;
// a part with another hash is removed. A transfer that delivers nothing for stall is cut and resumed.
func download(ctx context.Context, client *http.Client, url, dst, hashPrefix string, stall time.Duration) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	part := dst + ".part"
	var err error
	for range downloadAttempts {
		var complete bool
		if complete, err = transfer(ctx, client, url, part, stall); complete {
			break
		}
		if ctx.Err() != nil {
			return err
		}
	}
	if err != nil {
		if fi, serr := os.Stat(part); serr == nil && fi.Size() == 0 {
			os.Remove(part)
			return err
		}
		return fmt.Errorf("%w (the part fetched so far, %s, is resumed next time)", err, part)
	}
	hash, err := fileSHA256(part)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(hash, hashPrefix) {
		os.Remove(part)
		return fmt.Errorf("the file from %s has SHA-256 %s, not starting with %s: removed it", url, hash, hashPrefix)
	}
	return os.Rename(part, dst)
}

// transfer appends to part what url has past part's current size, and says whether part is then
// complete (a server that ignores the range request sends everything, and part starts over).
func transfer(ctx context.Context, client *http.Client, url, part string, stall time.Duration) (complete bool, err error) {
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			complete, err = false, cerr
		}
	}()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	var stalled atomic.Bool
	timer := time.AfterFunc(stall, func() { stalled.Store(true); cancel() })
	defer timer.Stop()
	explain := func(err error) error {
		if stalled.Load() {
			return fmt.Errorf("GET %s: nothing arrived for %v: %w", url, stall, err)
		}
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, explain(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && contentRangeStart(resp.Header.Get("Content-Range")) == have:
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		return true, nil // part already holds the whole file; the hash decides
	case resp.StatusCode == http.StatusOK:
		if err := f.Truncate(0); err != nil {
			return false, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return false, err
		}
	default:
		return false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	n, err := io.Copy(f, &stallReader{r: resp.Body, timer: timer, stall: stall})
	if err != nil {
		if stalled.Load() {
			return false, explain(err)
		}
		return false, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return false, fmt.Errorf("GET %s: got %d bytes of %d", url, n, resp.ContentLength)
	}
	return true, f.Sync()
}

// contentRangeStart returns the first byte position of a Content-Range "bytes a-b/n", or -1.
func contentRangeStart(s string) int64 {
	s, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return -1
	}
	a, _, ok := strings.Cut(s, "-")
	if !ok {
		return -1
	}
	v, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// stallReader pushes timer back by stall on every read that delivers data.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	stall time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.stall)
	}
	return n, err
}
