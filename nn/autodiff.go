package nn

import (
	"runtime"
	"slices"
	"sync"
	"weak"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// GoMLX v0.26.0 builds two gradients we cannot use as shipped:
//
//   - graph.DotGeneral's VJP broadcasts v against the other operand and reduces: for a conv as a matmul
//     [N*H*W, 9C] x [9C, O] that materializes an [N*H*W, 9C, O] tensor (30 s a step on 2 cores).
//     The VJP of a matmul is two matmuls: dA = v B^T, dB = A^T v (contracting the other axes).
//   - Slice's VJP pads v back with Pad, which the pure-Go backend lacks. For unit-stride slices the
//     same zeros can be placed with Concatenate, which every backend has.
//
// GoMLX looks VJPs up in the exported table graph.VJPRegistration, but a node's parameters (axes,
// slice starts) are private. So the functions of this package that create such nodes record their
// parameters in a side table, and the VJPs registered here use them; nodes created elsewhere (inside
// GoMLX) are not in the table and get GoMLX's own VJP.

type dotParams struct {
	lhsContracting, lhsBatch, rhsContracting, rhsBatch []int
}

type sliceParams struct {
	starts []int // unit strides only
}

// sideTable maps a node to its parameters (dotParams or sliceParams). It holds the node only weakly,
// so that a graph no longer used is collected with its nodes, and a node's entry is deleted once the
// node is collected (runtime.AddCleanup): the table holds the entries of live nodes only.
var sideTable struct {
	mu      sync.Mutex
	entries map[weak.Pointer[graph.Node]]any
}

// record stores the parameters of node.
func record(node *graph.Node, params any) {
	key := weak.Make(node)
	sideTable.mu.Lock()
	if sideTable.entries == nil {
		sideTable.entries = make(map[weak.Pointer[graph.Node]]any)
	}
	sideTable.entries[key] = params
	sideTable.mu.Unlock()
	runtime.AddCleanup(node, func(key weak.Pointer[graph.Node]) {
		sideTable.mu.Lock()
		delete(sideTable.entries, key)
		sideTable.mu.Unlock()
	}, key)
}

// lookup returns the parameters record stored for node.
func lookup(node *graph.Node) (any, bool) {
	sideTable.mu.Lock()
	defer sideTable.mu.Unlock()
	p, ok := sideTable.entries[weak.Make(node)]
	return p, ok
}

// sideTableLen is the number of entries, for the tests.
func sideTableLen() int {
	sideTable.mu.Lock()
	defer sideTable.mu.Unlock()
	return len(sideTable.entries)
}

var stockDotGeneralVJP, stockSliceVJP graph.VJP

func init() {
	stockDotGeneralVJP = graph.VJPRegistration[graph.NodeTypeDotGeneral]
	stockSliceVJP = graph.VJPRegistration[graph.NodeTypeSlice]
	graph.VJPRegistration[graph.NodeTypeDotGeneral] = dotGeneralVJP
	graph.VJPRegistration[graph.NodeTypeSlice] = sliceVJP
}

// dot is graph.DotGeneral with a matmul-shaped gradient (see the top of this file).
func dot(lhs *graph.Node, lhsContracting, lhsBatch []int, rhs *graph.Node, rhsContracting, rhsBatch []int) *graph.Node {
	return threePass(lhs, rhs, func(lhs, rhs *graph.Node) *graph.Node {
		return dot1(lhs, lhsContracting, lhsBatch, rhs, rhsContracting, rhsBatch)
	})
}

func dot1(lhs *graph.Node, lhsContracting, lhsBatch []int, rhs *graph.Node, rhsContracting, rhsBatch []int) *graph.Node {
	out := graph.DotGeneral(lhs, lhsContracting, lhsBatch, rhs, rhsContracting, rhsBatch)
	record(out, dotParams{
		slices.Clone(lhsContracting), slices.Clone(lhsBatch),
		slices.Clone(rhsContracting), slices.Clone(rhsBatch)})
	return out
}

// crossAxes returns the axes of a rank-r operand that are neither contracted nor batch, in order.
func crossAxes(rank int, contracting, batch []int) []int {
	var out []int
	for a := 0; a < rank; a++ {
		if !slices.Contains(contracting, a) && !slices.Contains(batch, a) {
			out = append(out, a)
		}
	}
	return out
}

// dotGeneralVJP: the output of graph.DotGeneral has axes [batch..., lhsCross..., rhsCross...]. The gradient
// with respect to lhs contracts v's rhsCross axes with rhs's cross axes (batch axes stay batch), which
// gives [batch..., lhsCross..., rhsContracting (in rhs axis order)...]; a transpose puts those axes back
// where lhs had them. Symmetrically for rhs.
func dotGeneralVJP(node *graph.Node, vjps []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	p, ok := lookup(node)
	if !ok {
		return stockDotGeneralVJP(node, vjps, outputShape)
	}
	d := p.(dotParams)
	v := vjps[0]
	lhs, rhs := node.Inputs()[0], node.Inputs()[1]
	nb := len(d.lhsBatch)
	lhsCross := crossAxes(lhs.Rank(), d.lhsContracting, d.lhsBatch)
	rhsCross := crossAxes(rhs.Rank(), d.rhsContracting, d.rhsBatch)
	vBatch := seq(0, nb)
	vLhsCross := seq(nb, len(lhsCross))
	vRhsCross := seq(nb+len(lhsCross), len(rhsCross))

	grad := func(v *graph.Node, vOtherCross []int, other *graph.Node, otherCross, otherBatch, otherContracting []int,
		thisRank int, thisBatch, thisCross, thisContracting []int) *graph.Node {
		if len(thisCross) == 0 && len(thisContracting) == 0 && len(thisBatch) == 0 {
			return nil
		}
		t := graph.DotGeneral(v, vOtherCross, vBatch, other, otherCross, otherBatch)
		// t axes: [batch..., thisCross..., otherContracting sorted by other's axis...].
		sortedOther := slices.Sorted(slices.Values(otherContracting))
		perm := make([]int, thisRank)
		for i, a := range thisBatch {
			perm[a] = i
		}
		for j, a := range thisCross {
			perm[a] = nb + j
		}
		for k, a := range thisContracting {
			perm[a] = nb + len(thisCross) + slices.Index(sortedOther, otherContracting[k])
		}
		if !isIdentity(perm) {
			t = graph.TransposeAllAxes(t, perm...)
		}
		return t
	}
	dLhs := grad(v, vRhsCross, rhs, rhsCross, d.rhsBatch, d.rhsContracting,
		lhs.Rank(), d.lhsBatch, lhsCross, d.lhsContracting)
	dRhs := grad(v, vLhsCross, lhs, lhsCross, d.lhsBatch, d.lhsContracting,
		rhs.Rank(), d.rhsBatch, rhsCross, d.rhsContracting)
	return []*graph.Node{dLhs, dRhs}
}

// slice is Slice with unit strides, start and limit per axis, whose gradient avoids Pad.
func slice(x *graph.Node, starts, limits []int) *graph.Node {
	specs := make([]graph.SliceAxisSpec, x.Rank())
	for a := range specs {
		specs[a] = graph.AxisRange(starts[a], limits[a])
	}
	out := graph.Slice(x, specs...)
	record(out, sliceParams{starts: slices.Clone(starts)})
	return out
}

// sliceVJP places v inside zeros of x's shape, one axis at a time, with Concatenate.
func sliceVJP(node *graph.Node, vjps []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	p, ok := lookup(node)
	if !ok {
		return stockSliceVJP(node, vjps, outputShape)
	}
	starts := p.(sliceParams).starts
	x := node.Inputs()[0]
	v := vjps[0]
	for a := 0; a < x.Rank(); a++ {
		v = padAxis(v, a, starts[a], x.Shape().Dimensions[a]-starts[a]-v.Shape().Dimensions[a])
	}
	return []*graph.Node{v}
}

// padAxis puts before and after zeros around x on axis a, with Concatenate (no Pad op needed).
func padAxis(x *graph.Node, a, before, after int) *graph.Node {
	if before == 0 && after == 0 {
		return x
	}
	parts := make([]*graph.Node, 0, 3)
	zeros := func(n int) *graph.Node {
		dims := slices.Clone(x.Shape().Dimensions)
		dims[a] = n
		return graph.Zeros(x.Graph(), shapes.Make(x.DType(), dims...))
	}
	if before > 0 {
		parts = append(parts, zeros(before))
	}
	parts = append(parts, x)
	if after > 0 {
		parts = append(parts, zeros(after))
	}
	return graph.Concatenate(parts, a)
}

func seq(start, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = start + i
	}
	return out
}

func isIdentity(perm []int) bool {
	for i, p := range perm {
		if i != p {
			return false
		}
	}
	return true
}
