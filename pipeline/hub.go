package pipeline

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the Hugging Face hub; $HF_ENDPOINT replaces it.
const DefaultEndpoint = "https://huggingface.co"

// Download bounds, as huggingface_hub's defaults: a HEAD must answer within metadataTimeout
// ($HF_HUB_ETAG_TIMEOUT seconds), a transfer that delivers no byte for stallTimeout
// ($HF_HUB_DOWNLOAD_TIMEOUT seconds) is cut, and a cut transfer is resumed at once up to attempts times.
var (
	metadataTimeout = 10 * time.Second
	stallTimeout    = 10 * time.Second
)

const attempts = 3

// Options configures Resolve and Open. The zero value reads the environment as huggingface_hub does.
type Options struct {
	// Revision is a branch, a tag or a commit hash; "" is "main".
	Revision string
	// CacheDir is the hub cache; "" is CacheDir().
	CacheDir string
	// Endpoint is the hub's address; "" is $HF_ENDPOINT, else DefaultEndpoint.
	Endpoint string
	// Offline forbids any network access, as $HF_HUB_OFFLINE=1 (or $TRANSFORMERS_OFFLINE=1) does.
	Offline bool
	// Token, when set, is sent as a bearer token to the endpoint (never to the storage it redirects to),
	// for private or gated repositories.
	Token string
	// Client's Transport makes the requests (nil: http.DefaultTransport); Resolve sets its own redirect
	// policy and timeouts.
	Client *http.Client
	// Progress, when set, is called as a file arrives with the bytes done and the total (-1 if unknown).
	Progress func(file string, done, total int64)
}

var (
	repoPart   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$`)
	commitHash = regexp.MustCompile(`^[0-9a-f]{40}$`)
	safeName   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// checkRepoID accepts hub model names as huggingface_hub's validate_repo_id does: "name" or "owner/name",
// letters, digits, '.', '_', '-', no "--" and no "..".
func checkRepoID(name string) error {
	parts := strings.Split(name, "/")
	ok := len(parts) <= 2 && !strings.Contains(name, "--") && !strings.Contains(name, "..")
	for _, p := range parts {
		ok = ok && repoPart.MatchString(p)
	}
	if !ok {
		return fmt.Errorf("pipeline: %q is not a hub model name like google/ddpm-cifar10-32 (nor an existing directory)", name)
	}
	return nil
}

func checkRevision(rev string) error {
	if rev == "" || strings.HasPrefix(rev, "/") || strings.Contains(rev, "..") || strings.ContainsAny(rev, "\\\x00") {
		return fmt.Errorf("pipeline: revision %q is not a branch, tag or commit hash", rev)
	}
	return nil
}

// Open loads a pipeline from a local directory, or when nameOrDir is not one, from the hub model of that
// name through the cache (Resolve), as DiffusionPipeline.from_pretrained does.
func Open(ctx context.Context, nameOrDir string, opts Options) (*Pipeline, error) {
	if fi, err := os.Stat(nameOrDir); err == nil && fi.IsDir() {
		return Load(nameOrDir)
	}
	dir, err := Resolve(ctx, nameOrDir, opts)
	if err != nil {
		return nil, err
	}
	return Load(dir)
}

// Resolve returns the local directory of hub model name (like "google/ddpm-cifar10-32") at opts.Revision,
// a snapshot folder in the Hugging Face cache laid out as huggingface_hub lays it out, so that what Python
// downloaded is found and what Resolve downloads Python finds:
//
//	<cache>/models--google--ddpm-cifar10-32/refs/main                   the commit hash of main
//	<cache>/models--google--ddpm-cifar10-32/snapshots/<commit>/<file>   a relative symlink to a blob
//	<cache>/models--google--ddpm-cifar10-32/blobs/<etag>                the bytes (etag: sha256 or git sha1)
//	<cache>/models--google--ddpm-cifar10-32/.no_exist/<commit>/<file>   empty: the repo has no such file
//
// Online, it asks the hub (HEAD <endpoint>/<name>/resolve/<revision>/<file>) for the files a pipeline needs
// and downloads those missing from the cache: model_index.json; unet/config.json, or config.json in the
// older flat layout; the weights beside it, diffusion_pytorch_model.safetensors or, when the repo has none,
// diffusion_pytorch_model.bin; scheduler/scheduler_config.json or scheduler_config.json, if any. A download
// goes to blobs/<etag>.incomplete, resumes from there (HTTP Range) after an interruption, is checked
// against the etag (the sha256 of an LFS file, the git blob sha1 of a small one) and renamed into place;
// a file that fails the check is deleted. refs/<revision> is written last, once all files are there, so a
// failed download never points the cache at an incomplete snapshot.
//
// Offline (opts.Offline, $HF_HUB_OFFLINE) or when the hub cannot be reached, the cached snapshot of
// refs/<revision> (or of the revision itself, when it is a commit hash) is used if it holds a whole
// pipeline; otherwise the error names the exact cache paths the files must be put at.
func Resolve(ctx context.Context, name string, opts Options) (string, error) {
	if err := checkRepoID(name); err != nil {
		return "", err
	}
	h := &hub{repo: name, revision: opts.Revision, cache: opts.CacheDir, endpoint: opts.Endpoint,
		offline: opts.Offline || OfflineFromEnv(), token: opts.Token, progress: opts.Progress}
	if h.revision == "" {
		h.revision = "main"
	}
	if err := checkRevision(h.revision); err != nil {
		return "", err
	}
	if h.cache == "" {
		h.cache = CacheDir()
	}
	if h.endpoint == "" {
		h.endpoint = os.Getenv("HF_ENDPOINT")
	}
	if h.endpoint == "" {
		h.endpoint = DefaultEndpoint
	}
	h.endpoint = strings.TrimRight(h.endpoint, "/")
	base := http.DefaultTransport
	if opts.Client != nil && opts.Client.Transport != nil {
		base = opts.Client.Transport
	}
	h.client = &http.Client{Transport: base}
	h.head = &http.Client{Transport: base, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	h.storage = RepoDir(h.cache, name)
	if s := os.Getenv("HF_HUB_ETAG_TIMEOUT"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			h.metaTimeout = time.Duration(n) * time.Second
		}
	}
	if s := os.Getenv("HF_HUB_DOWNLOAD_TIMEOUT"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			h.stall = time.Duration(n) * time.Second
		}
	}
	return h.resolve(ctx)
}

type hub struct {
	repo, revision, cache, endpoint, token string
	offline                                bool
	progress                               func(file string, done, total int64)
	client, head                           *http.Client
	storage                                string // RepoDir
	commit                                 string // once the hub named it
	metaTimeout, stall                     time.Duration
}

// errNotFound is a file the repository does not have (HTTP 404).
var errNotFound = errors.New("no such file in the repository")

// unreachableError is a request that got no HTTP answer: no network, DNS, refused, timed out.
type unreachableError struct {
	addr string
	err  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("pipeline: could not reach %s: %v (check the network, or set HF_HUB_OFFLINE=1 to use the cache only)", e.addr, e.err)
}
func (e *unreachableError) Unwrap() error { return e.err }

func (h *hub) resolve(ctx context.Context) (string, error) {
	if commitHash.MatchString(h.revision) {
		// huggingface_hub's shortcut: a commit's snapshot never changes.
		if dir := filepath.Join(h.storage, "snapshots", h.revision); h.complete(dir) {
			return dir, nil
		}
	}
	if h.offline {
		return h.fromCache(nil)
	}
	dir, err := h.download(ctx)
	var ue *unreachableError
	if errors.As(err, &ue) && ctx.Err() == nil {
		return h.fromCache(ue.err)
	}
	return dir, err
}

// download fetches the files of a pipeline into the snapshot of the revision's commit.
func (h *hub) download(ctx context.Context) (string, error) {
	first := func(files ...string) (string, error) {
		for _, f := range files {
			err := h.fetch(ctx, f)
			if err == nil {
				return f, nil
			}
			if !errors.Is(err, errNotFound) {
				return "", err
			}
		}
		return "", errNotFound
	}
	prefix := "unet/"
	index, err := first(ModelIndexFile, UNetConfigFile)
	switch {
	case errors.Is(err, errNotFound):
		return "", fmt.Errorf("pipeline: %s at revision %s has neither %s nor %s: is it a diffusers DDPMPipeline? (%s/%s)",
			h.repo, h.revision, ModelIndexFile, UNetConfigFile, h.endpoint, h.repo)
	case err != nil:
		return "", err
	case index == UNetConfigFile: // a UNet2DModel repository without a pipeline
		prefix = ""
	default:
		got, err := first("unet/"+UNetConfigFile, UNetConfigFile)
		if errors.Is(err, errNotFound) {
			return "", fmt.Errorf("pipeline: %s has %s but neither unet/%s nor %s", h.repo, ModelIndexFile, UNetConfigFile, UNetConfigFile)
		} else if err != nil {
			return "", err
		}
		if got == UNetConfigFile { // the older flat layout
			prefix = ""
		}
	}
	if _, err := first(prefix+SafetensorsFile, prefix+TorchFile); errors.Is(err, errNotFound) {
		return "", fmt.Errorf("pipeline: %s has no UNet weights: neither %s%s nor %s%s", h.repo, prefix, SafetensorsFile, prefix, TorchFile)
	} else if err != nil {
		return "", err
	}
	scheds := []string{SchedulerConfigFile}
	if index == ModelIndexFile { // each component has its own folder or lives at the top
		scheds = []string{"scheduler/" + SchedulerConfigFile, SchedulerConfigFile}
	}
	if _, err := first(scheds...); err != nil && !errors.Is(err, errNotFound) {
		return "", err
	}
	if err := h.writeRef(); err != nil {
		return "", err
	}
	return filepath.Join(h.storage, "snapshots", h.commit), nil
}

// complete reports whether dir holds a whole pipeline by Load's rules.
func (h *hub) complete(dir string) bool {
	_, _, err := findFiles(dir)
	return err == nil
}

// fetch makes sure the snapshot holds file: asks the hub for its commit and etag, and downloads the blob
// unless the cache has it. A file the repository lacks is errNotFound (and a .no_exist marker).
func (h *hub) fetch(ctx context.Context, file string) error {
	rev := h.revision
	if h.commit != "" {
		rev = h.commit // every file from the one commit the first answer named
	}
	meta, err := h.metadata(ctx, h.fileURL(rev, file))
	if errors.Is(err, errNotFound) {
		if c := meta.commit; commitHash.MatchString(c) && (h.commit == "" || h.commit == c) {
			h.commit = c
			marker := filepath.Join(h.storage, ".no_exist", c, filepath.FromSlash(file))
			if os.MkdirAll(filepath.Dir(marker), 0o755) == nil {
				if f, err := os.OpenFile(marker, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
					f.Close()
				}
			}
		}
		return err
	}
	if err != nil {
		return err
	}
	if h.commit == "" {
		h.commit = meta.commit
	} else if meta.commit != h.commit {
		return fmt.Errorf("pipeline: %s: the hub answered commit %s for %s, want %s", h.repo, meta.commit, file, h.commit)
	}
	pointer := filepath.Join(h.storage, "snapshots", h.commit, filepath.FromSlash(file))
	if _, err := os.Stat(pointer); err == nil {
		return nil
	}
	blob := filepath.Join(h.storage, "blobs", meta.etag)
	if _, err := os.Stat(blob); err != nil {
		if err := h.fetchBlob(ctx, file, meta, blob); err != nil {
			return err
		}
	}
	return link(blob, pointer)
}

func (h *hub) fileURL(rev, file string) string {
	parts := strings.Split(file, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return h.endpoint + "/" + h.repo + "/resolve/" + url.PathEscape(rev) + "/" + strings.Join(parts, "/")
}

type fileMeta struct {
	commit, etag string
	url          string // the resolve URL asked
	location     string // where the bytes are: url, or the storage it redirects to
	size         int64  // -1: unknown
}

// metadata is huggingface_hub's get_hf_file_metadata: a HEAD that follows only relative redirects (a
// renamed repository), so that an LFS file's answer is the hub's redirect carrying X-Linked-Etag, not the
// storage's.
func (h *hub) metadata(ctx context.Context, addr string) (fileMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout(h.metaTimeout, metadataTimeout))
	defer cancel()
	for redirects := 0; ; redirects++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, addr, nil)
		if err != nil {
			return fileMeta{}, fmt.Errorf("pipeline: %w", err)
		}
		h.setHeaders(req, true)
		resp, err := h.head.Do(req)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fileMeta{}, fmt.Errorf("pipeline: HEAD %s: %w", addr, ctx.Err())
			}
			return fileMeta{}, &unreachableError{addr, unwrapURLError(err)}
		}
		resp.Body.Close()
		meta := fileMeta{commit: resp.Header.Get("X-Repo-Commit"), url: addr, location: addr, size: -1}
		switch code := resp.StatusCode; {
		case code >= 300 && code < 400:
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				return fileMeta{}, fmt.Errorf("pipeline: HEAD %s: bad redirect %q", addr, resp.Header.Get("Location"))
			}
			if loc.Host == "" && redirects < 10 { // relative: the repository moved
				u, _ := url.Parse(addr)
				addr = u.ResolveReference(loc).String()
				continue
			}
			meta.location = loc.String()
		case code >= 200 && code < 300:
		case code == http.StatusNotFound:
			switch resp.Header.Get("X-Error-Code") {
			case "RepoNotFound":
				return fileMeta{}, h.repoNotFound()
			case "RevisionNotFound":
				return fileMeta{}, fmt.Errorf("pipeline: %s has no revision %q (a branch, tag or commit hash; see %s/%s/tree/main)",
					h.repo, h.revision, h.endpoint, h.repo)
			}
			return meta, errNotFound
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			return fileMeta{}, h.repoNotFound()
		default:
			return fileMeta{}, fmt.Errorf("pipeline: HEAD %s: %s (try again later)", addr, resp.Status)
		}
		meta.etag = resp.Header.Get("X-Linked-Etag")
		if meta.etag == "" {
			meta.etag = resp.Header.Get("ETag")
		}
		meta.etag = strings.Trim(strings.TrimPrefix(meta.etag, "W/"), `"`)
		size := resp.Header.Get("X-Linked-Size")
		if size == "" {
			size = resp.Header.Get("Content-Length")
		}
		if n, err := strconv.ParseInt(size, 10, 64); err == nil && n >= 0 {
			meta.size = n
		}
		if !commitHash.MatchString(meta.commit) {
			return fileMeta{}, fmt.Errorf("pipeline: HEAD %s: no commit hash in X-Repo-Commit (%q): is %s a Hugging Face hub?", addr, meta.commit, h.endpoint)
		}
		if !safeName.MatchString(meta.etag) {
			return fileMeta{}, fmt.Errorf("pipeline: HEAD %s: ETag %q is not a file hash: is %s a Hugging Face hub?", addr, meta.etag, h.endpoint)
		}
		return meta, nil
	}
}

func (h *hub) repoNotFound() error {
	return fmt.Errorf("pipeline: repository %s not found on %s (is the name right? a private or gated one needs Options.Token)", h.repo, h.endpoint)
}

func (h *hub) timeout(set, def time.Duration) time.Duration {
	if set > 0 {
		return set
	}
	return def
}

// setHeaders adds the user agent and, for the endpoint's own host only, the token.
func (h *hub) setHeaders(req *http.Request, endpoint bool) {
	req.Header.Set("User-Agent", "ddpm-go/pipeline")
	// Identity: the ETag of a compressed answer would not be the file's hash.
	req.Header.Set("Accept-Encoding", "identity")
	if h.token != "" && endpoint {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
}

// fetchBlob downloads file into blob: bytes go to blob.incomplete (resumed with a Range request where an
// earlier transfer stopped), are checked against meta's size and etag, and only then renamed to blob. A
// file that fails the check is removed; if it was resumed, fetchBlob starts once more from zero.
func (h *hub) fetchBlob(ctx context.Context, file string, meta fileMeta, blob string) error {
	if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
		return fmt.Errorf("pipeline: %w (set HF_HUB_CACHE or Options.CacheDir to a writable directory)", err)
	}
	part := blob + ".incomplete"
	fresh := false
	for try := 1; ; try++ {
		resumed, got, err := h.transfer(ctx, file, meta, part)
		if err != nil {
			if got > 0 && try < attempts && ctx.Err() == nil {
				continue // cut mid-way: resume
			}
			return fmt.Errorf("pipeline: downloading %s of %s: %w (what arrived is kept in %s; run again to resume)", file, h.repo, err, part)
		}
		if err := verify(part, meta); err != nil {
			os.Remove(part)
			if resumed && !fresh {
				fresh = true
				continue
			}
			return fmt.Errorf("pipeline: downloading %s of %s: %w; the download was deleted (run again; if it persists, the hub or a proxy serves a wrong file)", file, h.repo, err)
		}
		if err := os.Chmod(part, 0o644); err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
		if err := os.Rename(part, blob); err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
		return nil
	}
}

// transfer makes one GET of meta.location, appending to part where an earlier transfer stopped. It
// reports whether it resumed from existing bytes, and how many bytes it received.
func (h *hub) transfer(ctx context.Context, file string, meta fileMeta, part string) (resumed bool, got int64, err error) {
	var off int64
	if fi, err := os.Stat(part); err == nil {
		off = fi.Size()
	}
	if meta.size >= 0 && off > meta.size {
		os.Remove(part)
		off = 0
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := h.timeout(h.stall, stallTimeout)
	timer := time.AfterFunc(stall, func() { cancel(fmt.Errorf("no data for %v", stall)) })
	defer timer.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, meta.location, nil)
	if err != nil {
		return false, 0, err
	}
	// As huggingface_hub: the token goes to the hub, not to the storage an LFS file redirects to.
	h.setHeaders(req, meta.location == meta.url)
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return false, 0, cause(ctx, unwrapURLError(err))
	}
	defer resp.Body.Close()
	flag := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	switch resp.StatusCode {
	case http.StatusOK:
		off, flag = 0, os.O_WRONLY|os.O_CREATE|os.O_TRUNC
	case http.StatusPartialContent:
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != off {
			os.Remove(part)
			return false, 0, fmt.Errorf("the server sent Content-Range %q, want bytes from %d", resp.Header.Get("Content-Range"), off)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if off > 0 {
			return true, 0, nil // the partial file may be whole already; verify decides
		}
		return false, 0, fmt.Errorf("GET %s: %s", meta.location, resp.Status)
	default:
		return false, 0, fmt.Errorf("GET %s: %s", meta.location, resp.Status)
	}
	f, err := os.OpenFile(part, flag, 0o644)
	if err != nil {
		return false, 0, err
	}
	done := off
	if h.progress != nil {
		h.progress(file, done, meta.size)
	}
	buf := make([]byte, 1<<20)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			timer.Reset(stall)
			if _, err := f.Write(buf[:n]); err != nil {
				f.Close()
				return false, done - off, err
			}
			done += int64(n)
			if h.progress != nil {
				h.progress(file, done, meta.size)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return false, done - off, fmt.Errorf("interrupted after %d bytes: %w", done, cause(ctx, rerr))
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, done - off, err
	}
	return off > 0, done - off, f.Close()
}

// verify checks a downloaded file against the hub's size and etag: an LFS file's etag is the sha256 of its
// bytes, a small file's the git blob sha1 (sha1 of "blob <size>\x00" and the bytes).
func verify(file string, meta fileMeta) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if meta.size >= 0 && fi.Size() != meta.size {
		return fmt.Errorf("got %d bytes, want %d", fi.Size(), meta.size)
	}
	var sum hash.Hash
	kind := "sha256"
	switch {
	case len(meta.etag) == 64 && isHex(meta.etag):
		sum = sha256.New()
	case len(meta.etag) == 40 && isHex(meta.etag):
		sum, kind = sha1.New(), "git sha1"
		fmt.Fprintf(sum, "blob %d\x00", fi.Size())
	default:
		return fmt.Errorf("ETag %q is neither a sha256 nor a git sha1, so the download cannot be checked", meta.etag)
	}
	if _, err := io.Copy(sum, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != strings.ToLower(meta.etag) {
		return fmt.Errorf("%s %s, want %s (the ETag)", kind, got, meta.etag)
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// cause names why a request's context ended, if it did, instead of a bare "context canceled".
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return err
}

// unwrapURLError drops the "Get URL:" that net/http's errors repeat.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// contentRangeStart parses the start of "bytes start-end/size".
func contentRangeStart(s string) (int64, bool) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, false
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(start, 10, 64)
	return n, err == nil
}
