package data

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer serves files with Range support (http.ServeContent) and records the Range header of
// every request. breakAt > 0 cuts the first response after that many bytes; stallAt > 0 sends that
// many bytes of the first response and then nothing until the client gives up.
type testServer struct {
	files       map[string][]byte // URL path -> content
	breakAt     int
	stallAt     int
	ignoreRange bool
	badRange    bool // answer a Range request with 206 and the whole file

	mu     sync.Mutex
	ranges []string
}

func (s *testServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	first := len(s.ranges) == 0
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	s.mu.Unlock()
	body, ok := s.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if first && (s.breakAt > 0 || s.stallAt > 0) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if s.breakAt > 0 {
			w.Write(body[:s.breakAt])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // closes the connection mid-body
		}
		w.Write(body[:s.stallAt])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	if s.ignoreRange {
		r.Header.Del("Range")
	}
	if s.badRange && r.Header.Get("Range") != "" {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(body)-1, len(body)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(body)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func (s *testServer) gotRanges() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ranges)
}

func testContent(n int) []byte {
	b := make([]byte, n)
	r := splitMix64{state: 77}
	for i := range b {
		b[i] = byte(r.next())
	}
	return b
}

func TestFetch(t *testing.T) {
	content := testContent(5000)
	sum := md5Hex(content)
	garbage := bytes.Repeat([]byte{0xaa}, 300)
	tests := []struct {
		name       string
		breakAt    int
		ignore     bool   // the server ignores Range
		badRange   bool   // the server answers another range
		part       []byte // an existing .part file
		path       string // URL path fetched; default /f.gz
		md5        string // default sum
		wantRanges []string
		wantErr    []string
	}{
		{name: "whole file", wantRanges: []string{""}},
		{name: "interrupted, resumed", breakAt: 1234, wantRanges: []string{"", "bytes=1234-"}},
		{name: "resume a .part", part: content[:300], wantRanges: []string{"bytes=300-"}},
		{name: "server ignores Range", ignore: true, part: content[:300], wantRanges: []string{"bytes=300-"}},
		{name: "server answers another range", badRange: true, part: content[:300], wantRanges: []string{"bytes=300-", ""}},
		{name: "complete .part", part: content, wantRanges: []string{"bytes=5000-"}},
		{name: "stale .part of another file", part: garbage, wantRanges: []string{"bytes=300-", ""}},
		{name: "checksum mismatch", md5: "0123456789abcdef0123456789abcdef", wantRanges: []string{""},
			wantErr: []string{"MD5 " + sum + ", want 0123456789abcdef0123456789abcdef", "deleted"}},
		{name: "404", path: "/missing.gz", wantRanges: []string{""}, wantErr: []string{"/missing.gz: 404 Not Found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := &testServer{files: map[string][]byte{"/f.gz": content}, breakAt: tt.breakAt, ignoreRange: tt.ignore, badRange: tt.badRange}
			srv := httptest.NewServer(server)
			defer srv.Close()
			dst := filepath.Join(t.TempDir(), "f.gz")
			if tt.part != nil {
				writeFile(t, filepath.Dir(dst), "f.gz.part", tt.part)
			}
			path, want := "/f.gz", sum
			if tt.path != "" {
				path = tt.path
			}
			if tt.md5 != "" {
				want = tt.md5
			}
			var last [2]int64
			err := fetch(context.Background(), srv.Client(), srv.URL+path, dst, want, func(done, total int64) {
				last = [2]int64{done, total}
			})
			if got := server.gotRanges(); !slices.Equal(got, tt.wantRanges) {
				t.Errorf("Range headers %q; want %q", got, tt.wantRanges)
			}
			if _, perr := os.Stat(dst + ".part"); !os.IsNotExist(perr) {
				t.Errorf("%s.part is left behind (stat: %v); want it gone", dst, perr)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("fetch: no error; want one with %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("fetch error %q; want it to contain %q", err, w)
					}
				}
				if _, serr := os.Stat(dst); !os.IsNotExist(serr) {
					t.Errorf("%s exists after a failed fetch; want no file", dst)
				}
				return
			}
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			got, err := os.ReadFile(dst)
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("fetched file: %d bytes (err %v), equal %v; want the 5000 served bytes", len(got), err, bytes.Equal(got, content))
			}
			if tt.name != "complete .part" && last != [2]int64{5000, 5000} {
				t.Errorf("last progress (done, total) = %v; want [5000 5000]", last)
			}
		})
	}
}

func TestFetchTimeouts(t *testing.T) {
	content := testContent(4000)
	t.Run("stalled transfer resumes", func(t *testing.T) {
		old := stallTimeout
		stallTimeout = 200 * time.Millisecond
		defer func() { stallTimeout = old }()
		ts := &testServer{files: map[string][]byte{"/f": content}, stallAt: 1000}
		srv := httptest.NewServer(ts)
		defer srv.Close()
		dst := filepath.Join(t.TempDir(), "f")
		if err := fetch(context.Background(), srv.Client(), srv.URL+"/f", dst, md5Hex(content), nil); err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if got := ts.gotRanges(); !slices.Equal(got, []string{"", "bytes=1000-"}) {
			t.Errorf("Range headers %q; want [\"\" \"bytes=1000-\"]", got)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ts := &testServer{files: map[string][]byte{"/f": content}, stallAt: 1000}
		srv := httptest.NewServer(ts)
		defer srv.Close()
		dst := filepath.Join(t.TempDir(), "f")
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := fetch(ctx, srv.Client(), srv.URL+"/f", dst, md5Hex(content), nil)
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("fetch error %v; want one saying it timed out", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("fetch took %v after a 300 ms deadline; want it to stop at the deadline", el)
		}
		if fi, err := os.Stat(dst + ".part"); err != nil || fi.Size() != 1000 {
			t.Errorf("the .part file after a timeout: %v, %v; want 1000 bytes kept for resuming", fi, err)
		}
	})
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in          string
		start, size int64
		ok          bool
	}{
		{"bytes 300-4999/5000", 300, 5000, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes */5000", 0, 0, false},
		{"300-4999/5000", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			start, size, ok := parseContentRange(tt.in)
			if start != tt.start || size != tt.size || ok != tt.ok {
				t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, %v", tt.in, start, size, ok, tt.start, tt.size, tt.ok)
			}
		})
	}
}
