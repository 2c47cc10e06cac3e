package pipeline

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const testCommit = "0123456789abcdef0123456789abcdef01234567"

// cleanEnv unsets every variable Resolve reads, so that the tests do not depend on the machine's.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, v := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE",
		"TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"} {
		t.Setenv(v, "")
	}
}

// fakeHub serves one repository the way huggingface.co does: HEAD and GET on /<repo>/resolve/<rev>/<file>,
// small files with ETag = git blob sha1, LFS files (weights) as a 302 to /cdn/<sha256> with X-Linked-Etag
// and X-Linked-Size, 404 with X-Error-Code for what is missing.
type fakeHub struct {
	t       *testing.T
	srv     *httptest.Server
	repo    string
	files   map[string][]byte
	corrupt map[string]bool // the CDN serves the file with a byte flipped
	cutOnce map[string]int  // the first GET of the file stops after this many bytes
	offline bool            // any request fails the test
	token   string          // when set, every request to the hub must carry it

	mu     sync.Mutex
	log    []string // "HEAD file", "GET file", "GET file bytes=N-"
	served map[string]int
}

func newFakeHub(t *testing.T, repo string, files map[string][]byte) *fakeHub {
	h := &fakeHub{t: t, repo: repo, files: files, corrupt: map[string]bool{}, cutOnce: map[string]int{}, served: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func isLFS(file string) bool {
	return strings.HasSuffix(file, ".safetensors") || strings.HasSuffix(file, ".bin")
}

func gitSHA1(b []byte) string {
	s := sha1.New()
	fmt.Fprintf(s, "blob %d\x00", len(b))
	s.Write(b)
	return hex.EncodeToString(s.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func etagOf(file string, b []byte) string {
	if isLFS(file) {
		return sha256Hex(b)
	}
	return gitSHA1(b)
}

func (h *fakeHub) record(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, s)
}

func (h *fakeHub) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.log...)
}

func (h *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	if h.offline {
		h.t.Errorf("request %s %s while the cache should have answered", r.Method, r.URL.Path)
		http.Error(w, "offline", http.StatusServiceUnavailable)
		return
	}
	if r.Header.Get("Accept-Encoding") != "identity" {
		h.t.Errorf("%s %s without Accept-Encoding: identity", r.Method, r.URL.Path)
	}
	if sha, ok := strings.CutPrefix(r.URL.Path, "/cdn/"); ok {
		h.serveCDN(w, r, sha)
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/old-name/tiny/"); ok { // a renamed repository
		http.Redirect(w, r, "/"+h.repo+"/"+rest, http.StatusTemporaryRedirect)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/"+h.repo+"/resolve/")
	if !ok {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		http.Error(w, "Repository not found", http.StatusUnauthorized)
		return
	}
	rev, file, _ := strings.Cut(rest, "/")
	if rev != "main" && rev != testCommit {
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		http.Error(w, "Invalid rev id", http.StatusNotFound)
		return
	}
	h.record(r.Method + " " + file)
	if h.token != "" && r.Header.Get("Authorization") != "Bearer "+h.token {
		h.t.Errorf("%s %s: Authorization %q; want the token", r.Method, file, r.Header.Get("Authorization"))
	}
	w.Header().Set("X-Repo-Commit", testCommit)
	b, ok := h.files[file]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.Error(w, "Entry not found", http.StatusNotFound)
		return
	}
	if isLFS(file) {
		w.Header().Set("X-Linked-Etag", `"`+sha256Hex(b)+`"`)
		w.Header().Set("X-Linked-Size", fmt.Sprint(len(b)))
		http.Redirect(w, r, h.srv.URL+"/cdn/"+sha256Hex(b), http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+gitSHA1(b)+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

func (h *fakeHub) serveCDN(w http.ResponseWriter, r *http.Request, sha string) {
	if r.Header.Get("Authorization") != "" {
		h.t.Errorf("the token was sent to the storage (%s)", r.URL)
	}
	for file, b := range h.files {
		if !isLFS(file) || sha256Hex(b) != sha {
			continue
		}
		entry := "CDN " + file
		if rg := r.Header.Get("Range"); rg != "" {
			entry += " " + rg
		}
		h.record(entry)
		if h.corrupt[file] {
			b = append([]byte(nil), b...)
			b[len(b)/2] ^= 1
		}
		h.mu.Lock()
		cut, cutting := h.cutOnce[file]
		delete(h.cutOnce, file)
		h.mu.Unlock()
		if cutting {
			start := 0
			if rg := r.Header.Get("Range"); rg != "" {
				fmt.Sscanf(rg, "bytes=%d-", &start)
				w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(b)-1, len(b)))
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(b)-start))
			if start > 0 {
				w.WriteHeader(http.StatusPartialContent)
			} else {
				w.WriteHeader(http.StatusOK)
			}
			w.Write(b[start : start+cut])
			w.(http.Flusher).Flush()
			h.count(file, cut)
			return // fewer bytes than announced: the server drops the connection
		}
		cw := &countingWriter{ResponseWriter: w}
		http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(b))
		h.count(file, cw.n)
		return
	}
	http.NotFound(w, r)
}

func (h *fakeHub) count(file string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.served[file] += n
}

type countingWriter struct {
	http.ResponseWriter
	n int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += n
	return n, err
}

// tinyRepo returns the fixture's files under the repository paths given (repo path -> fixture path).
func tinyRepo(t *testing.T, paths map[string]string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for repoPath, rel := range paths {
		files[repoPath] = []byte(readTiny(t, rel))
	}
	return files
}

var standardRepo = map[string]string{
	"model_index.json":                         "model_index.json",
	"unet/config.json":                         "unet/config.json",
	"unet/diffusion_pytorch_model.safetensors": "unet/diffusion_pytorch_model.safetensors",
	"scheduler/scheduler_config.json":          "scheduler/scheduler_config.json",
	"README.md":                                "model_index.json", // not a pipeline file: never fetched
}

func TestResolveDownload(t *testing.T) {
	cleanEnv(t)
	files := tinyRepo(t, standardRepo)
	hub := newFakeHub(t, "google/tiny", files)
	hub.token = "secret"
	cache := t.TempDir()
	var mu sync.Mutex
	last := map[string][2]int64{}
	opts := Options{CacheDir: cache, Endpoint: hub.srv.URL + "/", Token: "secret", Progress: func(file string, done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		last[file] = [2]int64{done, total}
	}}
	dir, err := Resolve(context.Background(), "google/tiny", opts)
	if err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(cache, "models--google--tiny")
	if want := filepath.Join(repoDir, "snapshots", testCommit); dir != want {
		t.Fatalf("Resolve = %s; want %s", dir, want)
	}
	if ref, err := os.ReadFile(filepath.Join(repoDir, "refs", "main")); err != nil || string(ref) != testCommit {
		t.Fatalf("refs/main = %q, %v; want the commit %s", ref, err, testCommit)
	}
	for file, b := range files {
		pointer := filepath.Join(dir, filepath.FromSlash(file))
		if file == "README.md" {
			if _, err := os.Lstat(pointer); err == nil {
				t.Errorf("%s was downloaded; a pipeline does not need it", file)
			}
			continue
		}
		target, err := os.Readlink(pointer)
		if err != nil {
			t.Fatalf("%s: %v; want a symlink into blobs/", file, err)
		}
		depth := strings.Repeat("../", strings.Count(file, "/")+2)
		if want := depth + "blobs/" + etagOf(file, b); target != filepath.FromSlash(want) {
			t.Errorf("%s -> %s; want %s (relative, as huggingface_hub links)", file, target, want)
		}
		if got, err := os.ReadFile(pointer); err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: content differs from the hub's (%v)", file, err)
		}
	}
	weights := "unet/diffusion_pytorch_model.safetensors"
	if n := int64(len(files[weights])); last[weights] != [2]int64{n, n} {
		t.Errorf("last progress of %s = %v; want [%d %d]", weights, last[weights], n, n)
	}
	if left := findSuffix(t, cache, ".incomplete"); len(left) > 0 {
		t.Errorf("left behind: %q", left)
	}
	p, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkWeights(t, p, tinyWeights(t))

	t.Run("cached: HEAD only", func(t *testing.T) {
		before := len(hub.requests())
		if again, err := Resolve(context.Background(), "google/tiny", opts); err != nil || again != dir {
			t.Fatalf("second Resolve = %s, %v; want %s", again, err, dir)
		}
		for _, r := range hub.requests()[before:] {
			if !strings.HasPrefix(r, "HEAD ") {
				t.Errorf("second Resolve made request %q; want only HEADs, the files are cached", r)
			}
		}
	})
	t.Run("offline", func(t *testing.T) {
		hub.offline = true
		defer func() { hub.offline = false }()
		t.Setenv("HF_HUB_OFFLINE", "1")
		if again, err := Resolve(context.Background(), "google/tiny", opts); err != nil || again != dir {
			t.Fatalf("offline Resolve = %s, %v; want %s", again, err, dir)
		}
	})
	t.Run("renamed repository", func(t *testing.T) {
		got, err := Resolve(context.Background(), "old-name/tiny", Options{CacheDir: cache, Endpoint: hub.srv.URL, Token: "secret"})
		if want := filepath.Join(cache, "models--old-name--tiny", "snapshots", testCommit); err != nil || got != want {
			t.Fatalf("Resolve through a relative redirect = %s, %v; want %s", got, err, want)
		}
	})
}

// TestResolveResume: an .incomplete blob left by an earlier run is resumed with a Range request, and a
// transfer cut mid-way is resumed within the same call.
func TestResolveResume(t *testing.T) {
	cleanEnv(t)
	weights := "unet/diffusion_pytorch_model.safetensors"
	for _, tc := range []struct {
		name    string
		partial int // bytes already in .incomplete
		cut     int // the first GET stops after this many bytes
	}{
		{"earlier run", 1 << 20, 0},
		{"cut mid-way", 0, 3 << 20},
		{"earlier run, then cut", 1 << 20, 2 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := tinyRepo(t, standardRepo)
			hub := newFakeHub(t, "google/tiny", files)
			if tc.cut > 0 {
				hub.cutOnce[weights] = tc.cut
			}
			cache := t.TempDir()
			blob := filepath.Join(cache, "models--google--tiny", "blobs", sha256Hex(files[weights]))
			if tc.partial > 0 {
				if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(blob+".incomplete", files[weights][:tc.partial], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			dir, err := Resolve(context.Background(), "google/tiny", Options{CacheDir: cache, Endpoint: hub.srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(weights))); err != nil || !bytes.Equal(got, files[weights]) {
				t.Fatalf("resumed weights differ from the hub's (%v)", err)
			}
			var gets []string
			for _, r := range hub.requests() {
				if strings.HasPrefix(r, "CDN ") {
					gets = append(gets, r)
				}
			}
			var want []string
			if tc.partial > 0 {
				want = append(want, fmt.Sprintf("CDN %s bytes=%d-", weights, tc.partial))
			} else {
				want = append(want, "CDN "+weights)
			}
			if tc.cut > 0 {
				want = append(want, fmt.Sprintf("CDN %s bytes=%d-", weights, tc.partial+tc.cut))
			}
			if !reflect.DeepEqual(gets, want) {
				t.Fatalf("storage requests %q; want %q", gets, want)
			}
			if served, total := hub.served[weights], len(files[weights]); served != total-tc.partial {
				t.Errorf("the storage sent %d bytes of %s; want %d (the %d missing ones)", served, weights, total-tc.partial, total-tc.partial)
			}
		})
	}
}

// TestResolveWrongHash: a file whose bytes do not match the etag is an error and leaves nothing behind.
func TestResolveWrongHash(t *testing.T) {
	cleanEnv(t)
	files := tinyRepo(t, standardRepo)
	hub := newFakeHub(t, "google/tiny", files)
	weights := "unet/diffusion_pytorch_model.safetensors"
	hub.corrupt[weights] = true
	cache := t.TempDir()
	_, err := Resolve(context.Background(), "google/tiny", Options{CacheDir: cache, Endpoint: hub.srv.URL})
	checkErr(t, err, weights, "sha256", "want "+sha256Hex(files[weights]), "deleted")
	repoDir := filepath.Join(cache, "models--google--tiny")
	for _, p := range []string{
		filepath.Join(repoDir, "blobs", sha256Hex(files[weights])),
		filepath.Join(repoDir, "blobs", sha256Hex(files[weights])+".incomplete"),
		filepath.Join(repoDir, "snapshots", testCommit, filepath.FromSlash(weights)),
		filepath.Join(repoDir, "refs", "main"),
	} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists after a failed download; want nothing left", p)
		}
	}
}

// TestResolveLayouts: the hub's 404s decide the layout, as diffusers' loading does: .bin when the repo has
// no .safetensors, the flat layout when it has no unet/ folder.
func TestResolveLayouts(t *testing.T) {
	cleanEnv(t)
	for _, tc := range []struct {
		name     string
		repo     map[string]string
		noExist  []string // .no_exist markers, as huggingface_hub leaves them
		weights  string
		notes    int
		variance string
	}{
		{"bin fallback", map[string]string{
			"model_index.json":                 "model_index.json",
			"unet/config.json":                 "unet/config.json",
			"unet/diffusion_pytorch_model.bin": "unet/diffusion_pytorch_model.bin",
			"scheduler/scheduler_config.json":  "scheduler/scheduler_config.json",
		}, []string{"unet/diffusion_pytorch_model.safetensors"}, "unet/" + TorchFile, 1, "fixed_large"},
		{"flat layout", map[string]string{
			"model_index.json":            "model_index.json",
			"config.json":                 "unet/config.json",
			"diffusion_pytorch_model.bin": "unet/diffusion_pytorch_model.bin",
			"scheduler_config.json":       "scheduler/scheduler_config.json",
		}, []string{"unet/config.json", "diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"}, TorchFile, 2, "fixed_large"},
		{"unet repository", map[string]string{
			"config.json":                         "unet/config.json",
			"diffusion_pytorch_model.safetensors": "unet/diffusion_pytorch_model.safetensors",
		}, []string{"model_index.json", "scheduler_config.json"}, SafetensorsFile, 2, "fixed_small"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := newFakeHub(t, "google/tiny", tinyRepo(t, tc.repo))
			cache := t.TempDir()
			dir, err := Resolve(context.Background(), "google/tiny", Options{CacheDir: cache, Endpoint: hub.srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.noExist {
				marker := filepath.Join(cache, "models--google--tiny", ".no_exist", testCommit, filepath.FromSlash(f))
				if _, err := os.Stat(marker); err != nil {
					t.Errorf("no .no_exist marker for %s: %v", f, err)
				}
			}
			p, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if rel, _ := filepath.Rel(dir, p.Files.Weights); filepath.ToSlash(rel) != tc.weights || len(p.Notes) != tc.notes || p.DDPM.Variance.String() != tc.variance {
				t.Fatalf("Load: weights %s, notes %q, variance %s; want %s, %d notes, %s", rel, p.Notes, p.DDPM.Variance, tc.weights, tc.notes, tc.variance)
			}
			checkWeights(t, p, tinyWeights(t))
		})
	}
}

// TestResolveNotCached: offline or unreachable with nothing usable cached, the error says where to put
// which files.
func TestResolveNotCached(t *testing.T) {
	cleanEnv(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name     string
		env      map[string]string
		endpoint string
		cached   []string // fixture files put in the snapshot, with refs/main
		want     []string
		notWant  []string
	}{
		{name: "offline, empty cache", env: map[string]string{"HF_HUB_OFFLINE": "1"},
			want: []string{"offline mode (HF_HUB_OFFLINE)", "refs/main  (a file holding the commit hash",
				"snapshots/<commit>/model_index.json", "snapshots/<commit>/unet/config.json",
				"snapshots/<commit>/unet/diffusion_pytorch_model.safetensors  (or diffusion_pytorch_model.bin)",
				"snapshots/<commit>/scheduler/scheduler_config.json", "local DDPMPipeline directory"}},
		{name: "transformers offline", env: map[string]string{"TRANSFORMERS_OFFLINE": "yes"}, want: []string{"offline mode"}},
		{name: "unreachable", endpoint: closed.URL, want: []string{"could not reach " + closed.URL, "snapshots/<commit>/model_index.json"},
			notWant: []string{"HF_HUB_OFFLINE"}},
		{name: "offline, weights missing", env: map[string]string{"HF_HUB_OFFLINE": "1"},
			cached:  []string{"model_index.json", "unet/config.json", "scheduler/scheduler_config.json"},
			want:    []string{"snapshots/" + testCommit + "/unet/diffusion_pytorch_model.safetensors"},
			notWant: []string{"refs/main  (a file", "model_index.json\n", "unet/config.json\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			t.Setenv("HF_HUB_CACHE", cache)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			repoDir := filepath.Join(cache, "models--google--ddpm-cifar10-32")
			if len(tc.cached) > 0 {
				fakeCache(t, repoDir, "main", tc.cached)
			}
			endpoint := tc.endpoint
			if endpoint == "" {
				hub := newFakeHub(t, "google/ddpm-cifar10-32", nil)
				hub.offline = true
				endpoint = hub.srv.URL
			}
			_, err := Resolve(context.Background(), "google/ddpm-cifar10-32", Options{Endpoint: endpoint})
			checkErr(t, err, append(tc.want, repoDir)...)
			for _, w := range tc.notWant {
				if strings.Contains(err.Error()+"\n", w) {
					t.Errorf("error %q mentions %q", err, w)
				}
			}
		})
	}
}

// fakeCache lays out the fixture's files as huggingface_hub caches them: blobs named by hash, relative
// symlinks in snapshots/<testCommit>, and refs/<ref> when ref is not empty.
func fakeCache(t *testing.T, repoDir, ref string, files []string) string {
	t.Helper()
	snap := filepath.Join(repoDir, "snapshots", testCommit)
	for _, f := range files {
		b := []byte(readTiny(t, f))
		blob := filepath.Join(repoDir, "blobs", etagOf(f, b))
		pointer := filepath.Join(snap, filepath.FromSlash(f))
		for _, d := range []string{filepath.Dir(blob), filepath.Dir(pointer)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(blob, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(filepath.Dir(pointer), blob)
		if err := os.Symlink(rel, pointer); err != nil {
			t.Fatal(err)
		}
	}
	if ref != "" {
		if err := os.MkdirAll(filepath.Join(repoDir, "refs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repoDir, "refs", ref), []byte(testCommit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// TestResolveFromCache: a model that Python downloaded is found where huggingface_hub put it, for each
// way of naming the cache, without a request.
func TestResolveFromCache(t *testing.T) {
	pipelineFiles := []string{"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"}
	for _, tc := range []struct {
		name     string
		env      map[string]string // "" values are temp dirs named by the key's tree below
		cacheAt  string            // which of the env dirs holds the cache, and the path under it
		revision string
		ref      string
		found    bool
	}{
		{name: "HF_HUB_CACHE", env: map[string]string{"HF_HUB_CACHE": "a"}, cacheAt: "a", ref: "main", found: true},
		{name: "HUGGINGFACE_HUB_CACHE", env: map[string]string{"HUGGINGFACE_HUB_CACHE": "a"}, cacheAt: "a", ref: "main", found: true},
		{name: "HF_HOME", env: map[string]string{"HF_HOME": "h"}, cacheAt: "h/hub", ref: "main", found: true},
		{name: "HF_HUB_CACHE over HF_HOME", env: map[string]string{"HF_HUB_CACHE": "a", "HF_HOME": "h"}, cacheAt: "h/hub", ref: "main"},
		{name: "HF_HOME over XDG_CACHE_HOME", env: map[string]string{"HF_HOME": "h", "XDG_CACHE_HOME": "x"}, cacheAt: "x/huggingface/hub", ref: "main"},
		{name: "XDG_CACHE_HOME", env: map[string]string{"XDG_CACHE_HOME": "x"}, cacheAt: "x/huggingface/hub", ref: "main", found: true},
		{name: "HOME", env: map[string]string{"HOME": "y"}, cacheAt: "y/.cache/huggingface/hub", ref: "main", found: true},
		{name: "commit revision without refs", env: map[string]string{"HF_HUB_CACHE": "a"}, cacheAt: "a", revision: testCommit, found: true},
		{name: "tag", env: map[string]string{"HF_HUB_CACHE": "a"}, cacheAt: "a", revision: "v1.0", ref: "v1.0", found: true},
		{name: "other revision", env: map[string]string{"HF_HUB_CACHE": "a"}, cacheAt: "a", revision: "v2", ref: "main"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cleanEnv(t)
			root := t.TempDir()
			for k, v := range tc.env {
				t.Setenv(k, filepath.Join(root, v))
			}
			t.Setenv("HF_HUB_OFFLINE", "1")
			hub := newFakeHub(t, "google/ddpm-cifar10-32", nil)
			hub.offline = true
			repoDir := filepath.Join(root, filepath.FromSlash(tc.cacheAt), "models--google--ddpm-cifar10-32")
			snap := fakeCache(t, repoDir, tc.ref, pipelineFiles)
			dir, err := Resolve(context.Background(), "google/ddpm-cifar10-32", Options{Revision: tc.revision, Endpoint: hub.srv.URL})
			if !tc.found {
				checkErr(t, err, "is not in the Hugging Face cache "+CacheDir())
				return
			}
			if err != nil || dir != snap {
				t.Fatalf("Resolve = %q, %v; want %s", dir, err, snap)
			}
			if _, err := Load(dir); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("commit revision online makes no request", func(t *testing.T) {
		cleanEnv(t)
		cache := t.TempDir()
		hub := newFakeHub(t, "google/tiny", nil)
		hub.offline = true
		snap := fakeCache(t, filepath.Join(cache, "models--google--tiny"), "", pipelineFiles)
		if dir, err := Resolve(context.Background(), "google/tiny", Options{CacheDir: cache, Endpoint: hub.srv.URL, Revision: testCommit}); err != nil || dir != snap {
			t.Fatalf("Resolve = %q, %v; want %s", dir, err, snap)
		}
	})
}

func TestCacheDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"default", map[string]string{"HOME": "/home/u"}, "/home/u/.cache/huggingface/hub"},
		{"XDG_CACHE_HOME", map[string]string{"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"}, "/xdg/huggingface/hub"},
		{"HF_HOME", map[string]string{"HF_HOME": "/hf", "XDG_CACHE_HOME": "/xdg"}, "/hf/hub"},
		{"HUGGINGFACE_HUB_CACHE", map[string]string{"HUGGINGFACE_HUB_CACHE": "/legacy", "HF_HOME": "/hf"}, "/legacy"},
		{"HF_HUB_CACHE", map[string]string{"HF_HUB_CACHE": "/c", "HUGGINGFACE_HUB_CACHE": "/legacy", "HF_HOME": "/hf"}, "/c"},
		{"tilde", map[string]string{"HOME": "/home/u", "HF_HOME": "~/hf"}, "/home/u/hf/hub"},
		{"variables", map[string]string{"DATA": "/data", "HF_HUB_CACHE": "$DATA/${DATA}x/$UNSET_VAR/$"}, "/data//datax/$UNSET_VAR/$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cleanEnv(t)
			t.Setenv("UNSET_VAR", "")
			os.Unsetenv("UNSET_VAR")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if got := CacheDir(); got != filepath.FromSlash(tc.want) {
				t.Fatalf("CacheDir() = %s; want %s", got, tc.want)
			}
		})
	}
}

func TestOfflineFromEnv(t *testing.T) {
	for _, tc := range []struct {
		hf, tr string
		want   bool
	}{{"", "", false}, {"1", "", true}, {"true", "", true}, {"ON", "", true}, {"0", "1", false}, {"", "1", true}, {"no", "", false}} {
		t.Setenv("HF_HUB_OFFLINE", tc.hf)
		t.Setenv("TRANSFORMERS_OFFLINE", tc.tr)
		if got := OfflineFromEnv(); got != tc.want {
			t.Errorf("HF_HUB_OFFLINE=%q TRANSFORMERS_OFFLINE=%q: OfflineFromEnv() = %v; want %v", tc.hf, tc.tr, got, tc.want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	cleanEnv(t)
	hub := newFakeHub(t, "google/tiny", map[string][]byte{"README.md": []byte("# nothing")})
	for _, tc := range []struct {
		name, repo, revision string
		want                 []string
	}{
		{"path-like name", "../tiny", "", []string{`"../tiny" is not a hub model name`}},
		{"three parts", "a/b/c", "", []string{"not a hub model name"}},
		{"double dash", "a--b/c", "", []string{"not a hub model name"}},
		{"empty", "", "", []string{"not a hub model name"}},
		{"bad revision", "google/tiny", "../../etc", []string{"not a branch, tag or commit hash"}},
		{"repository not found", "google/nope", "", []string{"repository google/nope not found", "Options.Token"}},
		{"revision not found", "google/tiny", "v9", []string{`no revision "v9"`}},
		{"not a pipeline", "google/tiny", "", []string{"neither model_index.json nor config.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(context.Background(), tc.repo, Options{CacheDir: t.TempDir(), Endpoint: hub.srv.URL, Revision: tc.revision})
			checkErr(t, err, tc.want...)
		})
	}
}

func TestOpen(t *testing.T) {
	cleanEnv(t)
	if _, err := Open(context.Background(), tinyDir(t), Options{Offline: true}); err != nil {
		t.Fatalf("Open(local directory): %v", err)
	}
	hub := newFakeHub(t, "google/tiny", tinyRepo(t, standardRepo))
	p, err := Open(context.Background(), "google/tiny", Options{CacheDir: t.TempDir(), Endpoint: hub.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	checkWeights(t, p, tinyWeights(t))
	_, err = Open(context.Background(), filepath.Join(t.TempDir(), "missing"), Options{Offline: true})
	checkErr(t, err, "not a hub model name", "nor an existing directory")
}

func findSuffix(t *testing.T, dir, suffix string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(path, suffix) {
			out = append(out, path)
		}
		return nil
	})
	sort.Strings(out)
	return out
}
