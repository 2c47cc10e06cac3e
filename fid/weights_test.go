package fid

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// weightsServer serves content at /w.pth with http.ServeContent (which honours Range), or with
// handle when set; it records the Range header of every request.
type weightsServer struct {
	*httptest.Server
	content []byte
	mu      sync.Mutex
	ranges  []string
	handle  func(w http.ResponseWriter, r *http.Request, call int) bool // true: handled
}

func newWeightsServer(t *testing.T, content []byte) *weightsServer {
	s := &weightsServer{content: content}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		call := len(s.ranges) - 1
		s.mu.Unlock()
		if r.URL.Path != "/w.pth" {
			http.NotFound(w, r)
			return
		}
		if s.handle != nil && s.handle(w, r, call) {
			return
		}
		http.ServeContent(w, r, "w.pth", time.Time{}, bytes.NewReader(s.content))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *weightsServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

func testContent(n int) (content []byte, prefix string) {
	r := rand.New(rand.NewPCG(7, 7))
	content = make([]byte, n)
	for i := range content {
		content[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(content)
	return content, hex.EncodeToString(sum[:])[:8]
}

// TestDownload checks fresh, resumed, broken and refused transfers against a local server.
func TestDownload(t *testing.T) {
	content, prefix := testContent(200_000)
	wrongPrefix := "0" + prefix[1:]
	if prefix[0] == '0' {
		wrongPrefix = "1" + prefix[1:]
	}
	for _, c := range []struct {
		name       string
		part       []byte // left by an earlier attempt
		prefix     string
		handle     func(w http.ResponseWriter, r *http.Request, call int) bool
		wantRanges []string
		wantErr    string
	}{
		{name: "fresh", prefix: prefix, wantRanges: []string{""}},
		{name: "resume", part: content[:70_000], prefix: prefix, wantRanges: []string{"bytes=70000-"}},
		{name: "part already complete", part: content, prefix: prefix, wantRanges: []string{"bytes=200000-"}},
		{name: "server ignores range", part: []byte("junk that is not the start of the file"), prefix: prefix,
			handle: func(w http.ResponseWriter, r *http.Request, _ int) bool {
				w.Write(content)
				return true
			},
			wantRanges: []string{"bytes=38-"}},
		{name: "cut, then resumed", prefix: prefix,
			handle: func(w http.ResponseWriter, r *http.Request, call int) bool {
				if call > 0 {
					return false
				}
				w.Header().Set("Content-Length", "200000")
				w.Write(content[:50_000])
				panic(http.ErrAbortHandler) // drops the connection mid-body
			},
			wantRanges: []string{"", "bytes=50000-"}},
		{name: "stalled, then resumed", prefix: prefix,
			handle: func(w http.ResponseWriter, r *http.Request, call int) bool {
				if call > 0 {
					return false
				}
				w.Header().Set("Content-Length", "200000")
				w.Write(content[:60_000])
				w.(http.Flusher).Flush()
				<-r.Context().Done() // until the client gives up
				return true
			},
			wantRanges: []string{"", "bytes=60000-"}},
		{name: "wrong hash", prefix: wrongPrefix, wantRanges: []string{""}, wantErr: "not starting with " + wrongPrefix},
		{name: "not found", prefix: prefix,
			handle: func(w http.ResponseWriter, r *http.Request, _ int) bool {
				http.NotFound(w, r)
				return true
			},
			wantRanges: []string{"", "", ""}, wantErr: "404"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newWeightsServer(t, content)
			s.handle = c.handle
			dst := filepath.Join(t.TempDir(), "cache", "w.pth")
			if c.part != nil {
				os.MkdirAll(filepath.Dir(dst), 0o755)
				if err := os.WriteFile(dst+".part", c.part, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := download(context.Background(), s.Client(), s.URL+"/w.pth", dst, c.prefix, 200*time.Millisecond)
			if got := s.requests(); strings.Join(got, ",") != strings.Join(c.wantRanges, ",") {
				t.Errorf("requests with Range %q; want %q", got, c.wantRanges)
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("download = %v; want an error with %q", err, c.wantErr)
				}
				if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("after a failed download %s exists (%v); want no file", dst, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dst)
			if err != nil || !bytes.Equal(got, content) {
				t.Errorf("downloaded %d bytes (%v), equal to the served file: %v", len(got), err, bytes.Equal(got, content))
			}
			if _, err := os.Stat(dst + ".part"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s.part left behind (%v)", dst, err)
			}
		})
	}
}

// TestFindInceptionWeights checks the order of the places looked at, and the download into our
// cache when the file is in none of them.
func TestFindInceptionWeights(t *testing.T) {
	content, prefix := testContent(1000)
	for _, c := range []struct {
		name     string
		env      map[string]string // values are made absolute under the test's directory
		explicit string
		files    []string // relative to the test's directory
		offline  bool
		want     string // relative to the test's directory; "" with wantErr
		wantErr  string
	}{
		{name: "explicit", explicit: "mine.pth", files: []string{"mine.pth", "user/ddpm/fid/" + InceptionWeightsFile}, want: "mine.pth"},
		{name: "explicit missing", explicit: "mine.pth", files: []string{"user/ddpm/fid/" + InceptionWeightsFile}, wantErr: "mine.pth"},
		{name: "DDPM_CACHE", env: map[string]string{"DDPM_CACHE": "dc"}, files: []string{"dc/fid/" + InceptionWeightsFile},
			want: "dc/fid/" + InceptionWeightsFile},
		{name: "user cache", files: []string{"user/ddpm/fid/" + InceptionWeightsFile}, want: "user/ddpm/fid/" + InceptionWeightsFile},
		{name: "ours before torch's", env: map[string]string{"TORCH_HOME": "th"},
			files: []string{"th/hub/checkpoints/" + InceptionWeightsFile, "user/ddpm/fid/" + InceptionWeightsFile},
			want:  "user/ddpm/fid/" + InceptionWeightsFile},
		{name: "TORCH_HOME", env: map[string]string{"TORCH_HOME": "th", "XDG_CACHE_HOME": "xdg"},
			files: []string{"th/hub/checkpoints/" + InceptionWeightsFile, "xdg/torch/hub/checkpoints/" + InceptionWeightsFile},
			want:  "th/hub/checkpoints/" + InceptionWeightsFile},
		{name: "XDG_CACHE_HOME", env: map[string]string{"XDG_CACHE_HOME": "xdg"},
			files: []string{"xdg/torch/hub/checkpoints/" + InceptionWeightsFile}, want: "xdg/torch/hub/checkpoints/" + InceptionWeightsFile},
		{name: "home", files: []string{"home/.cache/torch/hub/checkpoints/" + InceptionWeightsFile},
			want: "home/.cache/torch/hub/checkpoints/" + InceptionWeightsFile},
		{name: "download", env: map[string]string{"DDPM_CACHE": "dc"}, want: "dc/fid/" + InceptionWeightsFile},
		{name: "offline", offline: true, wantErr: "download " + "URL/w.pth yourself to DIR/user/ddpm/fid/" + InceptionWeightsFile},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range c.files {
				p := filepath.Join(dir, f)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s := newWeightsServer(t, content)
			if c.offline {
				s.Close()
			}
			f := weightsFinder{
				getenv: func(k string) string {
					if v, ok := c.env[k]; ok {
						return filepath.Join(dir, v)
					}
					return ""
				},
				userCacheDir: func() (string, error) { return filepath.Join(dir, "user"), nil },
				homeDir:      func() (string, error) { return filepath.Join(dir, "home"), nil },
				url:          s.URL + "/w.pth",
				hashPrefix:   prefix,
				client:       s.Client(),
				stall:        time.Second,
			}
			explicit := c.explicit
			if explicit != "" {
				explicit = filepath.Join(dir, explicit)
			}
			got, err := f.find(context.Background(), explicit)
			if c.wantErr != "" {
				want := strings.NewReplacer("URL", s.URL, "DIR", dir).Replace(c.wantErr)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("find = %q, %v; want an error with %q", got, err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, c.want); got != want {
				t.Errorf("find = %s; want %s", got, want)
			}
			if n := len(s.requests()); (c.name == "download") != (n > 0) {
				t.Errorf("%d requests to the server", n)
			}
			if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, content) {
				t.Errorf("%s does not hold the file (%v)", got, err)
			}
		})
	}
}
