package data

import (
	"fmt"
	"slices"
)

// Classes returns the class names of a labelled data set (mnist: "0".."9"; fashion-mnist: "T-shirt/top",
// ...), in label order, without loading it: the number of classes a class-conditional model needs.
func Classes(name string) ([]string, error) {
	src, err := lookup(name)
	if err != nil {
		return nil, err
	}
	if len(src.classes) == 0 {
		return nil, fmt.Errorf("data: %s has no class labels", name)
	}
	return slices.Clone(src.classes), nil
}
