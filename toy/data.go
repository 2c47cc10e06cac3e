package toy

import (
	"fmt"
	"strings"

	"github.com/ddpm/ddpm/data"
)

// Dataset names a 2-D toy distribution. The zero value is SwissRoll.
type Dataset int

const (
	// SwissRoll is the lesson's: scikit-learn's make_swiss_roll with noise 0.5, the x and z
	// coordinates divided by 10 (data.SwissRoll): a spiral of radius 0.47 to 1.41 blurred by
	// N(0, 0.05^2) per coordinate.
	SwissRoll Dataset = iota
	// Moons is scikit-learn's make_moons with noise 0.05 (data.TwoMoons), shifted by (-0.5, -0.25)
	// so that its bounding box [-1.5, 1.5] x [-0.75, 0.75] (before noise) is centred at 0.
	Moons
	// Ring is 8 Gaussians of standard deviation 0.05 centred evenly on the unit circle (data.Ring).
	Ring
)

var datasetNames = [...]string{SwissRoll: "swiss-roll", Moons: "moons", Ring: "ring"}

// DatasetNames lists the names Dataset.UnmarshalText accepts.
func DatasetNames() []string { return append([]string(nil), datasetNames[:]...) }

// String returns the data set's name: "swiss-roll", "moons" or "ring".
func (d Dataset) String() string {
	if d >= 0 && int(d) < len(datasetNames) {
		return datasetNames[d]
	}
	return fmt.Sprintf("Dataset(%d)", int(d))
}

// MarshalText encodes the data set as its name.
func (d Dataset) MarshalText() ([]byte, error) {
	if d < 0 || int(d) >= len(datasetNames) {
		return nil, fmt.Errorf("toy: invalid data set %d (valid: %s)", int(d), quoted(datasetNames[:]))
	}
	return []byte(datasetNames[d]), nil
}

// UnmarshalText decodes a data set's name.
func (d *Dataset) UnmarshalText(text []byte) error {
	for i, n := range datasetNames {
		if string(text) == n {
			*d = Dataset(i)
			return nil
		}
	}
	return fmt.Errorf("toy: unknown data set %q (valid: %s)", text, quoted(datasetNames[:]))
}

// Points returns n points [N,2] of the data set, drawn with seed (the same seed, the same points).
func (d Dataset) Points(n int, seed uint64) ([]float32, error) {
	if n < 0 {
		return nil, fmt.Errorf("toy: %d points of %s: want n >= 0", n, d)
	}
	switch d {
	case SwissRoll:
		return data.SwissRoll(n, 0.5, seed), nil
	case Moons:
		p := data.TwoMoons(n, 0.05, seed)
		for i := 0; i < len(p); i += 2 {
			p[i] -= 0.5
			p[i+1] -= 0.25
		}
		return p, nil
	case Ring:
		return data.Ring(n, 8, 1, 0.05, seed), nil
	}
	return nil, fmt.Errorf("toy: invalid data set %d (valid: %s)", int(d), quoted(datasetNames[:]))
}

func quoted(names []string) string { return `"` + strings.Join(names, `", "`) + `"` }
