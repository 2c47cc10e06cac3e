package fid

import (
	"fmt"
	"strconv"

	"github.com/ddpm/ddpm/checkpoint"
)

// statsFormat marks a statistics file in its safetensors metadata.
const statsFormat = "ddpm-fid-stats/1"

// Save writes s to path as a safetensors file: F64 tensors "mu" [D] and "sigma" [D,D], and in
// __metadata__ the format ("ddpm-fid-stats/1"), "n", "extractor", "weights_hash" and "source".
// The file is written to a temporary name in the same directory and renamed
// (checkpoint.WriteSafetensors), so an existing file is replaced only by a complete one.
func (s *Stats) Save(path string) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("fid: not saving statistics to %s: %w", path, err)
	}
	d := s.Dim()
	f := &checkpoint.File{
		Tensors: map[string]*checkpoint.Tensor{
			"mu":    checkpoint.NewF64([]int{d}, s.Mu),
			"sigma": checkpoint.NewF64([]int{d, d}, s.Sigma),
		},
		Metadata: map[string]string{
			"format":       statsFormat,
			"n":            strconv.Itoa(s.N),
			"extractor":    s.Extractor.Name,
			"weights_hash": s.Extractor.WeightsHash,
			"source":       s.Source,
		},
	}
	if err := checkpoint.WriteSafetensors(path, f); err != nil {
		return fmt.Errorf("fid: saving statistics: %w", err)
	}
	return nil
}

// Load reads statistics written by Save and validates them (see Stats.Validate). Each non-empty
// field of want must match the file: statistics made by another extractor or with other weights are
// refused, so that a cached reference is never compared with features of a different network.
// Leave want empty only to inspect a file.
func Load(path string, want Extractor) (*Stats, error) {
	f, err := checkpoint.ReadSafetensors(path)
	if err != nil {
		return nil, fmt.Errorf("fid: reading statistics: %w", err)
	}
	if f.Metadata["format"] != statsFormat {
		return nil, fmt.Errorf("fid: %s is not a statistics file written by fid.Stats.Save (metadata format %q, want %q)", path, f.Metadata["format"], statsFormat)
	}
	mu, sigma := f.Tensors["mu"], f.Tensors["sigma"]
	if mu == nil || sigma == nil || len(f.Tensors) != 2 {
		return nil, fmt.Errorf("fid: statistics file %s: want exactly the tensors mu and sigma, have %v", path, f.Names())
	}
	if mu.DType != checkpoint.F64 || sigma.DType != checkpoint.F64 {
		return nil, fmt.Errorf("fid: statistics file %s: mu is %s and sigma is %s, want F64", path, mu.DType, sigma.DType)
	}
	if len(mu.Shape) != 1 || len(sigma.Shape) != 2 || sigma.Shape[0] != mu.Shape[0] || sigma.Shape[1] != mu.Shape[0] {
		return nil, fmt.Errorf("fid: statistics file %s: mu has shape %v and sigma %v, want [D] and [D D]", path, mu.Shape, sigma.Shape)
	}
	n, err := strconv.Atoi(f.Metadata["n"])
	if err != nil {
		return nil, fmt.Errorf("fid: statistics file %s: metadata n = %q is not a sample count", path, f.Metadata["n"])
	}
	s := &Stats{
		N:         n,
		Extractor: Extractor{Name: f.Metadata["extractor"], WeightsHash: f.Metadata["weights_hash"]},
		Source:    f.Metadata["source"],
	}
	if s.Mu, err = mu.Float64(); err == nil {
		s.Sigma, err = sigma.Float64()
	}
	if err != nil {
		return nil, fmt.Errorf("fid: statistics file %s: %w", path, err)
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("fid: statistics file %s: %w", path, err)
	}
	if want.Name != "" && s.Extractor.Name != want.Name {
		return nil, fmt.Errorf("fid: statistics file %s was made by extractor %q, want %q: recompute the reference statistics with this extractor", path, s.Extractor.Name, want.Name)
	}
	if want.WeightsHash != "" && s.Extractor.WeightsHash != want.WeightsHash {
		return nil, fmt.Errorf("fid: statistics file %s was made with weights %q, want %q: recompute the reference statistics with these weights", path, s.Extractor.WeightsHash, want.WeightsHash)
	}
	return s, nil
}
