package viz

import (
	"errors"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	_ "image/png" // image.Decode of PNG
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dirEntries lists the names in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWritePNGRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    int
	}{{"gray", 1}, {"rgb", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]float32, 4*tc.c*3*5)
			for i := range data {
				data[i] = float32(i%7)/3 - 1
			}
			img, err := Grid(data, 4, tc.c, 3, 5, 2, GridOptions{Padding: 1, Scale: 2})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "grid.png")
			if err := WritePNG(path, img); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			back, format, err := image.Decode(f)
			if err != nil {
				t.Fatalf("image.Decode: %v", err)
			}
			if format != "png" || back.Bounds() != img.Bounds() {
				t.Fatalf("decoded %s %v; want png %v", format, back.Bounds(), img.Bounds())
			}
			b := img.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					if got, want := rgbAt(back, x, y), rgbAt(img, x, y); got != want {
						t.Fatalf("decoded (%d,%d) = %v; want %v", x, y, got, want)
					}
				}
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o644 {
				t.Errorf("mode = %v; want -rw-r--r--", st.Mode().Perm())
			}
			if names := dirEntries(t, filepath.Dir(path)); len(names) != 1 {
				t.Errorf("directory holds %v; want only grid.png", names)
			}
		})
	}
}

func TestWriteGIF(t *testing.T) {
	gray := func(v uint8) image.Image {
		img := image.NewRGBA(image.Rect(0, 0, 6, 4))
		fillRect(img, img.Rect, color.RGBA{v, v, v, 0xff})
		return img
	}
	red := image.NewRGBA(image.Rect(0, 0, 6, 4))
	fillRect(red, red.Rect, color.RGBA{0xff, 0, 0, 0xff})
	for _, tc := range []struct {
		name   string
		frames []image.Image
		delay  int
		delays []int
		gray   []uint8 // the decoded gray of each frame, for gray frames
	}{
		{"gray frames exact", []image.Image{gray(0), gray(37), gray(200)}, 10, []int{10, 10, gifHold}, []uint8{0, 37, 200}},
		{"one frame", []image.Image{gray(128)}, 5, []int{gifHold}, []uint8{128}},
		{"long delay kept on the last frame", []image.Image{gray(1), gray(2)}, 300, []int{300, 300}, []uint8{1, 2}},
		{"color frame", []image.Image{red, gray(9)}, 10, []int{10, gifHold}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "anim.gif")
			if err := WriteGIF(path, tc.frames, tc.delay); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			g, err := gif.DecodeAll(f)
			if err != nil {
				t.Fatalf("gif.DecodeAll: %v", err)
			}
			if len(g.Image) != len(tc.frames) {
				t.Fatalf("decoded %d frames; want %d", len(g.Image), len(tc.frames))
			}
			for i, d := range tc.delays {
				if g.Delay[i] != d {
					t.Errorf("delay of frame %d = %d; want %d", i, g.Delay[i], d)
				}
			}
			if len(tc.frames) > 1 && g.LoopCount != 0 {
				t.Errorf("LoopCount = %d; want 0 (forever)", g.LoopCount)
			}
			for i, v := range tc.gray {
				if got := rgbAt(g.Image[i], 3, 2); got != [3]uint8{v, v, v} {
					t.Errorf("frame %d pixel = %v; want gray %d", i, got, v)
				}
			}
			if tc.gray == nil {
				if got := rgbAt(g.Image[0], 3, 2); got[0] < 200 || got[1] > 50 || got[2] > 50 {
					t.Errorf("red frame pixel = %v; want red", got)
				}
			}
		})
	}
}

func TestToPaletted(t *testing.T) {
	rgb := image.NewRGBA(image.Rect(0, 0, 2, 2))
	fillRect(rgb, rgb.Rect, color.RGBA{10, 200, 30, 0xff})
	for _, tc := range []struct {
		name    string
		img     image.Image
		palette int
	}{
		{"gray RGBA uses 256 grays", image.NewRGBA(image.Rect(0, 0, 2, 2)), len(grays)},
		{"image.Gray uses 256 grays", image.NewGray(image.Rect(0, 0, 2, 2)), len(grays)},
		{"color uses Plan 9", rgb, len(palette.Plan9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := toPaletted(tc.img)
			if len(p.Palette) != tc.palette {
				t.Errorf("palette has %d colors; want %d", len(p.Palette), tc.palette)
			}
			if p.Rect != tc.img.Bounds() {
				t.Errorf("bounds %v; want %v", p.Rect, tc.img.Bounds())
			}
		})
	}
}

// TestFailedWriteLeavesNoFile checks that a write that fails leaves no file, temporary or final,
// and that it does not clobber a file already at the path.
func TestFailedWriteLeavesNoFile(t *testing.T) {
	good := image.NewRGBA(image.Rect(0, 0, 2, 2))
	for _, tc := range []struct {
		name  string
		write func(path string) error
	}{
		{"PNG of an empty image", func(path string) error { return WritePNG(path, image.NewRGBA(image.Rect(0, 0, 0, 0))) }},
		{"nil PNG", func(path string) error { return WritePNG(path, nil) }},
		{"GIF without frames", func(path string) error { return WriteGIF(path, nil, 10) }},
		{"GIF of frames of two sizes", func(path string) error {
			return WriteGIF(path, []image.Image{good, image.NewRGBA(image.Rect(0, 0, 3, 2))}, 10)
		}},
		{"encoder failing after a partial write", func(path string) error {
			return writeAtomic(path, func(w io.Writer) error {
				if _, err := w.Write(make([]byte, 1<<16)); err != nil {
					return err
				}
				return errors.New("disk on fire")
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out")
			err := tc.write(path)
			if err == nil || !strings.HasPrefix(err.Error(), "viz: ") {
				t.Fatalf("error = %v; want a viz error", err)
			}
			if names := dirEntries(t, dir); len(names) != 0 {
				t.Errorf("after a failed write the directory holds %v; want nothing", names)
			}
			// The same failure must leave an existing file as it was.
			if err := os.WriteFile(path, []byte("keep"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tc.write(path); err == nil {
				t.Fatal("second write succeeded; want the same error")
			}
			if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
				t.Errorf("existing file = %q, %v; want it untouched, \"keep\"", b, err)
			}
			if names := dirEntries(t, dir); len(names) != 1 {
				t.Errorf("directory holds %v; want only out", names)
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		err := WritePNG(filepath.Join(t.TempDir(), "no", "such", "dir.png"), good)
		if err == nil || !strings.Contains(err.Error(), "does the directory exist") {
			t.Errorf("error = %v; want one that asks whether the directory exists", err)
		}
	})
	t.Run("path is a directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "pic.png"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := WritePNG(filepath.Join(dir, "pic.png"), good); err == nil {
			t.Fatal("WritePNG onto a directory succeeded; want an error")
		}
		if names := dirEntries(t, dir); len(names) != 1 || names[0] != "pic.png" {
			t.Errorf("directory holds %v; want only the directory pic.png", names)
		}
	})
}
