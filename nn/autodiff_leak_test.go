package nn

import (
	"runtime"
	"testing"
	"weak"

	"github.com/ddpm/ddpm/internal/shared"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// TestSideTableReleasesGraphs builds many graphs whose nodes are in the side table (a dot and a slice
// each, the gradient taken so that the VJPs read the table), drops them, and checks that every graph
// is collected and the table emptied. Before, the table held every node, hence every graph, forever.
func TestSideTableReleasesGraphs(t *testing.T) {
	b := shared.GoBackend(t)
	start := sideTableLen()
	const n = 50
	graphs := make([]weak.Pointer[graph.Graph], n)
	for i := range graphs {
		g := graph.NewGraph(b, "leak")
		x := graph.Parameter(g, "x", shapes.Make(dtypes.Float32, 64, 64))
		y := slice(dot(x, []int{1}, nil, x, []int{0}, nil), []int{1, 2}, []int{33, 34})
		loss := graph.ReduceAllSum(y)
		if grads := graph.Gradient(loss, x); len(grads) != 1 {
			t.Fatal("no gradient")
		}
		graphs[i] = weak.Make(g)
	}
	if got := sideTableLen() - start; got < n {
		t.Fatalf("the side table grew by %d entries for %d graphs; want at least %d", got, n, n)
	}
	for range 5 { // cleanups run after a collection; give them a few
		runtime.GC()
		if sideTableLen() <= start {
			break
		}
	}
	alive := 0
	for _, w := range graphs {
		if w.Value() != nil {
			alive++
		}
	}
	if alive > 0 {
		t.Errorf("%d of %d graphs still reachable after GC", alive, n)
	}
	if got := sideTableLen(); got > start {
		t.Errorf("side table holds %d entries after the graphs were dropped; want %d", got, start)
	}
}
