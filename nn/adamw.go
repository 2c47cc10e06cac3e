package nn

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// AdamW holds the settings of torch.optim.AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101v3,
// Algorithm 2); WeightDecay 0 is torch.optim.Adam.
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
}

// Update is one AdamW step at 1-based step n (a float32 scalar), in torch.optim.AdamW's order:
//
//	p = p (1 - lr wd);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//	p = p - lr (m / (1 - b1^n)) / (sqrt(v / (1 - b2^n)) + eps)
//
// on float32 nodes of any one shape (the trainers pass flat vectors of every weight: one fused
// elementwise update).
func (a AdamW) Update(p, grad, m, v, n *graph.Node) (p2, m2, v2 *graph.Node) {
	return a.UpdateScaled(p, grad, m, v, n, nil)
}

// UpdateScaled is Update with the learning rate LR * scale, scale a float32 scalar node (a learning-rate
// schedule's factor at this step; nil: 1, and the graph is Update's). As in torch, the decoupled weight
// decay follows the scheduled rate: p = p (1 - lr scale wd).
func (a AdamW) UpdateScaled(p, grad, m, v, n, scale *graph.Node) (p2, m2, v2 *graph.Node) {
	g := n.Graph()
	bc1 := graph.OneMinus(graph.Pow(graph.Scalar(g, dtypes.Float32, a.Beta1), n))
	bc2 := graph.OneMinus(graph.Pow(graph.Scalar(g, dtypes.Float32, a.Beta2), n))
	if a.WeightDecay > 0 {
		if scale == nil {
			p = graph.MulScalar(p, 1-a.LR*a.WeightDecay)
		} else {
			p = graph.Mul(p, graph.OneMinus(graph.MulScalar(scale, a.LR*a.WeightDecay)))
		}
	}
	m2 = graph.Add(graph.MulScalar(m, a.Beta1), graph.MulScalar(grad, 1-a.Beta1))
	v2 = graph.Add(graph.MulScalar(v, a.Beta2), graph.MulScalar(graph.Square(grad), 1-a.Beta2))
	den := graph.AddScalar(graph.Sqrt(graph.Div(v2, bc2)), a.Eps)
	step := graph.Div(graph.Div(m2, bc1), den)
	if scale == nil {
		step = graph.MulScalar(step, a.LR)
	} else {
		step = graph.Mul(step, graph.MulScalar(scale, a.LR))
	}
	p2 = graph.Sub(p, step)
	return p2, m2, v2
}
