package main

// The references of ddpm fid: DATA:SPLIT[A:B], statistics files and image folders, and the cache of
// their statistics.

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/fid"
	"github.com/gomlx/gomlx/backends"
)

// refSplit is a DATA:SPLIT[A:B] reference: images A..B-1 (End -1: to the end) of a split.
type refSplit struct {
	Dataset, Split string
	Start, End     int
}

var refSplitPattern = regexp.MustCompile(`^([a-z0-9-]+):(train|test|holdout)(?:\[(\d*):(\d*)\])?$`)

func parseRefSplit(s string) (refSplit, error) {
	m := refSplitPattern.FindStringSubmatch(s)
	if m == nil {
		return refSplit{}, usagef("fid: --ref %q: want a statistics .safetensors file, an image folder, or DATA:SPLIT[A:B] with SPLIT train, test or holdout (e.g. mnist:test[:5000])", s)
	}
	r := refSplit{Dataset: m[1], Split: m[2], End: -1}
	known := false
	for _, name := range data.Names() {
		known = known || name == r.Dataset
	}
	if !known {
		return refSplit{}, usagef("fid: --ref %q: unknown data set %q; want one of %s", s, r.Dataset, strings.Join(data.Names(), ", "))
	}
	if m[3] != "" {
		r.Start, _ = strconv.Atoi(m[3])
	}
	if m[4] != "" {
		r.End, _ = strconv.Atoi(m[4])
		if r.End <= r.Start {
			return refSplit{}, usagef("fid: --ref %q: the range [%d:%d] is empty", s, r.Start, r.End)
		}
	}
	return r, nil
}

func (r refSplit) String() string {
	s := r.Dataset + ":" + r.Split
	switch {
	case r.End >= 0:
		s += fmt.Sprintf("[%d:%d]", r.Start, r.End)
	case r.Start > 0:
		s += fmt.Sprintf("[%d:]", r.Start)
	}
	return s
}

// cacheName is the file name of the split's statistics: <split>-<extractor>-<hash>.safetensors.
func (r refSplit) cacheName(e fid.Extractor) string {
	split := r.Dataset + "-" + r.Split
	if r.Start > 0 || r.End >= 0 {
		split += fmt.Sprintf("-%d-%d", r.Start, r.End)
	}
	ext := "inception"
	if e.Name != fid.InceptionName {
		ext, _, _ = strings.Cut(e.Name, " ")
	}
	return fmt.Sprintf("%s-%s-%s.safetensors", split, ext, short(e.WeightsHash))
}

// load returns the split's images, in [-1, 1].
func (r refSplit) load(ctx context.Context, dataDir string, stderr io.Writer) (*data.Dataset, error) {
	split := r.Split
	if split == "holdout" {
		split = "train"
	}
	ds, err := data.Load(ctx, r.Dataset, split, data.Options{Dir: dataDir, Progress: downloadProgress(stderr)})
	if err != nil {
		return nil, err
	}
	if r.Split == "holdout" {
		if _, ds, err = ds.HoldOut(refHoldOutFrac, refHoldOutSeed); err != nil {
			return nil, err
		}
	}
	end := r.End
	if end < 0 {
		end = ds.Len()
	}
	if end > ds.Len() || r.Start >= ds.Len() {
		return nil, fmt.Errorf("fid: --ref %s: %s:%s has %d images", r, r.Dataset, r.Split, ds.Len())
	}
	if r.Start == 0 && end == ds.Len() {
		return ds, nil
	}
	idx := make([]int, end-r.Start)
	for i := range idx {
		idx[i] = r.Start + i
	}
	return ds.Subset(idx), nil
}

// fidRef is the --ref: exactly one of split, statsPath and folder.
type fidRef struct {
	split     refSplit
	statsPath string
	folder    string
}

func parseRef(s string) (*fidRef, error) {
	if fi, err := os.Stat(s); err == nil {
		if fi.IsDir() {
			return &fidRef{folder: s}, nil
		}
		return &fidRef{statsPath: s}, nil
	}
	if strings.EqualFold(filepath.Ext(s), ".safetensors") {
		return nil, fmt.Errorf("fid: --ref %s: %w", s, iofs.ErrNotExist)
	}
	r, err := parseRefSplit(s)
	if err != nil {
		return nil, err
	}
	return &fidRef{split: r}, nil
}

func (r *fidRef) String() string {
	switch {
	case r.statsPath != "":
		return r.statsPath
	case r.folder != "":
		return r.folder
	}
	return r.split.String()
}

// dataset returns the data set the reference is of, when it says: the split's, or the one in the
// name of a statistics file's classifier extractor.
func (r *fidRef) dataset() string {
	if r.split.Dataset != "" {
		return r.split.Dataset
	}
	if r.statsPath != "" {
		if s, err := fid.Load(r.statsPath, fid.Extractor{}); err == nil {
			if rest, ok := strings.CutPrefix(s.Extractor.Name, "classifier-"); ok {
				name, _, _ := strings.Cut(rest, " ")
				return name
			}
		}
	}
	return ""
}

// statsCacheDir is where reference statistics of data splits are cached: $DDPM_CACHE/fid-stats,
// else ddpm/fid-stats in os.UserCacheDir().
func statsCacheDir() (string, error) {
	if d := os.Getenv("DDPM_CACHE"); d != "" {
		return filepath.Join(d, "fid-stats"), nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("fid: no cache directory for reference statistics (set DDPM_CACHE): %w", err)
	}
	return filepath.Join(d, "ddpm", "fid-stats"), nil
}

// stats returns the reference statistics for ext: read from a statistics file (refused when made by
// another extractor), computed from a folder, or for a split read from the cache or computed and
// cached. The reference images must have the generated images' shape, when known.
func (r *fidRef) stats(ctx context.Context, b backends.Backend, ext featureExtractor, dataDir string, batch int, shape [3]int, noCache bool, stderr io.Writer) (*fid.Stats, bool, error) {
	want := ext.Extractor()
	if r.statsPath != "" {
		s, err := fid.Load(r.statsPath, want)
		if err != nil {
			return nil, false, err
		}
		return s, true, checkShape(shape, s.Source, r)
	}
	var ds *data.Dataset
	var cache string
	if r.folder != "" {
		var err error
		if ds, err = data.LoadFolder(r.folder); err != nil {
			return nil, false, fmt.Errorf("fid: --ref: %w", err)
		}
	} else {
		dir, err := statsCacheDir()
		if err != nil {
			return nil, false, err
		}
		cache = filepath.Join(dir, r.split.cacheName(want))
		if !noCache {
			if s, err := fid.Load(cache, want); err == nil {
				fmt.Fprintf(stderr, "reference statistics: %s (cached)\n", cache)
				if err := checkShape(shape, s.Source, r); err != nil {
					return nil, false, err
				}
				return s, true, nil
			} else if !errors.Is(err, iofs.ErrNotExist) {
				fmt.Fprintf(stderr, "note: recomputing the cached reference statistics: %v\n", err)
			}
		}
		if ds, err = r.split.load(ctx, dataDir, stderr); err != nil {
			return nil, false, err
		}
	}
	refShape := [3]int{ds.C, ds.H, ds.W}
	if refShape != shape {
		return nil, false, fmt.Errorf("fid: the images are %s but the reference %s is %s: FID compares images of one size and channel count",
			shapeString(shape), r, shapeString(refShape))
	}
	if ds.Len() < 2 {
		return nil, false, fmt.Errorf("fid: the reference %s has %d image; want at least 2", r, ds.Len())
	}
	feats, err := extractFeatures(ctx, b, ext, toUnit(ds.Images), ds.Len(), refShape, batch, "reference", stderr)
	if err != nil {
		return nil, false, err
	}
	s, err := fid.ComputeStats(feats, len(feats)/ds.Len())
	if err != nil {
		return nil, false, err
	}
	s.Extractor = want
	s.Source = fmt.Sprintf("%s, %d images %s", r, ds.Len(), shapeString(refShape))
	if cache != "" {
		if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
			return nil, false, fmt.Errorf("fid: caching reference statistics: %w", err)
		}
		if err := s.Save(cache); err != nil {
			return nil, false, err
		}
		fmt.Fprintf(stderr, "reference statistics: %s (cached for next time)\n", cache)
	}
	return s, false, nil
}

// checkShape compares the images' shape with the one a cached statistics file's source records.
func checkShape(shape [3]int, source string, r *fidRef) error {
	want := shapeString(shape)
	if i := strings.LastIndex(source, " images "); i >= 0 && source[i+len(" images "):] != want {
		return fmt.Errorf("fid: the images are %s but the reference %s is %s: FID compares images of one size and channel count",
			want, r, source[i+len(" images "):])
	}
	return nil
}

func shapeString(s [3]int) string { return fmt.Sprintf("%dx%dx%d", s[0], s[1], s[2]) }
