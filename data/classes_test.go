package data

import "testing"

func TestClasses(t *testing.T) {
	for _, name := range []string{"mnist", "fashion-mnist"} {
		c, err := Classes(name)
		if err != nil || len(c) != 10 {
			t.Errorf("Classes(%q) = %v, %v; want 10 classes", name, c, err)
		}
	}
	if _, err := Classes("imagenet"); err == nil {
		t.Errorf("Classes(imagenet) = nil error; want unknown data set")
	}
}
