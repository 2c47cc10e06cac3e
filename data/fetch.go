package data

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Download bounds: a whole file must arrive within Options.Timeout (default defaultTimeout), and
// a transfer that delivers no byte for stallTimeout is cut and resumed.
const (
	defaultTimeout = 10 * time.Minute
	attempts       = 3
)

var stallTimeout = time.Minute

// fileMD5 returns the hex MD5 of the file at path.
func fileMD5(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checksumError is a downloaded file whose MD5 is not the published one.
type checksumError struct {
	addr, got, want string
}

func (e *checksumError) Error() string {
	return fmt.Sprintf("data: %s: MD5 %s, want %s; the download was deleted (the server sent a different file; try another mirror)",
		e.addr, e.got, e.want)
}

// statusError is an HTTP answer other than 200, 206 or 416.
type statusError struct {
	addr   string
	status string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("data: GET %s: %s (is the URL right? the mirror may have moved)", e.addr, e.status)
}

// fetch downloads the file that addr names into dst and checks its MD5. Bytes arrive in dst+".part",
// which a later call resumes with an HTTP Range request; only a file with the right MD5 is renamed
// to dst. A transfer cut after some bytes is resumed at once, up to attempts times. A wrong MD5
// removes the .part file; if the bad file was resumed from an earlier partial download, fetch starts
// once more from zero before it gives up. progress, if not nil, gets the bytes done and the total
// (-1 while unknown).
func fetch(ctx context.Context, client *http.Client, addr, dst, wantMD5 string, progress func(done, total int64)) error {
	part := dst + ".part"
	fresh := false
	for try := 1; ; try++ {
		resumed, got, err := transfer(ctx, client, addr, part, progress)
		if err != nil {
			if (got > 0 || errors.Is(err, errRangeMismatch)) && try < attempts && ctx.Err() == nil {
				continue // cut mid-way: resume; or a bad range: start again
			}
			return err
		}
		sum, err := fileMD5(part)
		if err != nil {
			return fmt.Errorf("data: %w", err)
		}
		if sum != wantMD5 {
			if err := os.Remove(part); err != nil {
				return fmt.Errorf("data: %s: MD5 %s, want %s, and removing it failed: %w", part, sum, wantMD5, err)
			}
			if resumed && !fresh {
				fresh = true
				continue
			}
			return &checksumError{addr: addr, got: sum, want: wantMD5}
		}
		if err := os.Rename(part, dst); err != nil {
			return fmt.Errorf("data: %w", err)
		}
		return nil
	}
}

// transfer makes one GET of addr, appending to part where a previous transfer stopped. It reports
// whether it resumed from existing bytes, and how many bytes it received.
func transfer(ctx context.Context, client *http.Client, addr, part string, progress func(done, total int64)) (resumed bool, got int64, err error) {
	var off int64
	if fi, err := os.Stat(part); err == nil {
		off = fi.Size()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr, nil)
	if err != nil {
		return false, 0, fmt.Errorf("data: %w", err)
	}
	// Identity: a .gz served with Content-Encoding gzip must not be unpacked on the way.
	req.Header.Set("Accept-Encoding", "identity")
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, 0, fmt.Errorf("data: GET %s: %w", addr, timeoutCause(ctx, unwrapURLError(err)))
	}
	defer resp.Body.Close()

	total := int64(-1)
	flag := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	switch resp.StatusCode {
	case http.StatusOK:
		off, flag = 0, os.O_WRONLY|os.O_CREATE|os.O_TRUNC
		if resp.ContentLength >= 0 {
			total = resp.ContentLength
		}
	case http.StatusPartialContent:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != off {
			// Not the range asked for: drop the partial file, and the next try starts from zero.
			if err := os.Remove(part); err != nil {
				return false, 0, fmt.Errorf("data: %w", err)
			}
			return false, 0, fmt.Errorf("data: GET %s: Content-Range %q, want bytes from %d: %w",
				addr, resp.Header.Get("Content-Range"), off, errRangeMismatch)
		}
		total = size
	case http.StatusRequestedRangeNotSatisfiable:
		if off == 0 {
			return false, 0, &statusError{addr: addr, status: resp.Status}
		}
		// The partial file already holds the whole file (or more); the MD5 check decides.
		return true, 0, nil
	default:
		return false, 0, &statusError{addr: addr, status: resp.Status}
	}

	f, err := os.OpenFile(part, flag, 0o644)
	if err != nil {
		return false, 0, fmt.Errorf("data: %w", err)
	}
	if progress != nil {
		progress(off, total)
	}
	stall := time.AfterFunc(stallTimeout, func() { cancel(fmt.Errorf("no data for %v", stallTimeout)) })
	defer stall.Stop()
	done := off
	buf := make([]byte, 1<<16)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			stall.Reset(stallTimeout)
			if _, err := f.Write(buf[:n]); err != nil {
				f.Close()
				return false, done - off, fmt.Errorf("data: %w", err)
			}
			done += int64(n)
			if progress != nil {
				progress(done, total)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return false, done - off, fmt.Errorf("data: GET %s: interrupted after %d bytes: %w", addr, done, timeoutCause(ctx, rerr))
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, done - off, fmt.Errorf("data: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, done - off, fmt.Errorf("data: %w", err)
	}
	if total >= 0 && done != total {
		return false, done - off, fmt.Errorf("data: GET %s: got %d bytes, want %d", addr, done, total)
	}
	return off > 0, done - off, nil
}

var errRangeMismatch = errors.New("the server answered another range")

// timeoutCause names why a request's context ended, if it did, instead of a bare "context canceled".
func timeoutCause(ctx context.Context, err error) error {
	switch cause := context.Cause(ctx); {
	case cause == nil:
		return err
	case errors.Is(cause, context.DeadlineExceeded):
		return fmt.Errorf("%w (timed out; a slow network? raise Options.Timeout, or put the file in place by hand)", cause)
	default:
		return cause
	}
}

// unwrapURLError drops the "Get URL:" that net/http's errors repeat.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// parseContentRange parses "bytes start-end/size" ("*" size: -1).
func parseContentRange(s string) (start, size int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	span, sizeStr, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	startStr, _, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(startStr, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if sizeStr == "*" {
		return start, -1, true
	}
	size, err = strconv.ParseInt(sizeStr, 10, 64)
	return start, size, err == nil
}

// mkdirFor creates the directory of path.
func mkdirFor(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("data: %w (set $DDPM_CACHE or Options.CacheDir to a writable directory)", err)
	}
	return nil
}
