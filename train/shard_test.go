package train

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/nn"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/notimplemented"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// linModel is the smallest denoiser: eps_hat = W x_t + b on 2x2 single-channel images.
type linModel struct{}

func (linModel) Specs() []nn.Spec {
	return []nn.Spec{{Name: "w", Shape: []int{4, 4}, Init: nn.FanIn, FanIn: 4}, {Name: "b", Shape: []int{4}, Init: nn.FanIn, FanIn: 4}}
}

func (linModel) Forward(w nn.Scope, xt, t, y *graph.Node) *graph.Node {
	n := xt.Shape().Dimensions[0]
	return graph.Reshape(nn.Linear(graph.Reshape(xt, n, 4), w.Get("w"), w.Get("b")), xt.Shape().Dimensions...)
}

// linTrainer trains linModel on 32 fixed 2x2 images, batch bsz.
func linTrainer(t *testing.T, b backends.Backend, bsz int) *Trainer {
	t.Helper()
	cfg := Default()
	cfg.BatchSize = bsz
	cfg.LR = 1e-3
	imgs := make([]float32, 32*4)
	for i := range imgs {
		imgs[i] = float32(math.Sin(float64(i)*0.7)) * 0.9
	}
	tr, err := New(b, cfg, linModel{}, linearSchedule(t, 50), imgs, []int{32, 1, 2, 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// testBatches are 3 steps' batches of bsz indices.
func testBatches(bsz int) [][]int {
	out := make([][]int, 3)
	for s := range out {
		for i := 0; i < bsz; i++ {
			out[s] = append(out[s], (s*7+i*5)%32)
		}
	}
	return out
}

func flat(t *testing.T, x *tensors.Tensor) []float32 {
	t.Helper()
	v, err := tensors.CopyFlatData[float32](x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMeshSpecs(t *testing.T) {
	mesh, in, out, err := meshSpecs(4, 10)
	if err != nil {
		t.Fatal(err)
	}
	if mesh.NumDevices() != 4 || !slices.Equal(mesh.AxesNames(), []string{DataAxis}) || !slices.Equal(mesh.AxesSizes(), []int{4}) {
		t.Fatalf("mesh = %s; want 1-D \"data\" of 4 devices", mesh)
	}
	if len(in) != 10 || len(out) != stateInputs+1 {
		t.Fatalf("%d input and %d output specs; want 10 and 6", len(in), len(out))
	}
	for i, s := range in {
		if i == 6 {
			continue
		}
		if !s.IsReplicated() || s.Mesh != mesh {
			t.Errorf("input %d: %s; want replicated on the mesh", i, s)
		}
	}
	for i, s := range out {
		if !s.IsReplicated() || s.Mesh != mesh {
			t.Errorf("output %d: %s; want replicated", i, s)
		}
	}
	idx := in[6]
	if idx.IsReplicated() || idx.NumDevicesShardingAxis(0) != 1 || idx.NumDevicesShardingAxis(1) != 4 {
		t.Fatalf("idx spec %s; want [K, B] sharded along B over \"data\"", idx)
	}
	if got := idx.ShardShape(shapes.Make(dtypes.Int32, 3, 64)); !slices.Equal(got.Dimensions, []int{3, 16}) {
		t.Errorf("shard of idx [3, 64] = %v; want [3 16]", got.Dimensions)
	}
	if got := idx.LogicalShapeForShard(shapes.Make(dtypes.Int32, 3, 16)); !slices.Equal(got.Dimensions, []int{3, 64}) {
		t.Errorf("logical shape of an idx shard [3, 16] = %v; want [3 64]", got.Dimensions)
	}
}

func TestSplitBatches(t *testing.T) {
	_, in, _, err := meshSpecs(4, 9)
	if err != nil {
		t.Fatal(err)
	}
	const k, bsz = 2, 8
	idx := make([]int32, k*bsz)
	for i := range idx {
		idx[i] = int32(100 + i)
	}
	parts, err := splitBatches(in[6], idx, k, bsz)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 4 {
		t.Fatalf("%d shards; want 4", len(parts))
	}
	for d, p := range parts {
		if !slices.Equal(p.Shape().Dimensions, []int{k, bsz / 4}) {
			t.Fatalf("shard %d has shape %v; want [2 2]", d, p.Shape().Dimensions)
		}
		got, _ := tensors.CopyFlatData[int32](p)
		want := []int32{100 + 2*int32(d), 101 + 2*int32(d), 108 + 2*int32(d), 109 + 2*int32(d)}
		if !slices.Equal(got, want) {
			t.Errorf("shard %d = %v; want %v (columns %d..%d of each batch)", d, got, want, 2*d, 2*d+1)
		}
	}
	if _, err := splitBatches(in[6], idx[:k*6], k, 6); err == nil {
		t.Error("a batch of 6 split over 4 devices: no error")
	}
}

func TestCheckDivides(t *testing.T) {
	for _, c := range []struct {
		batch, n int
		want     string // "" = no error
	}{
		{64, 1, ""}, {64, 2, ""}, {64, 8, ""}, {256, 4, ""},
		{100, 3, "pass --batch 99 or 102 (a multiple of 3), or --devices 2"},
		{64, 3, "pass --batch 63 or 66 (a multiple of 3), or --devices 2"},
		{2, 4, "pass --batch 4 (a multiple of 4), or --devices 2"},
		{7, 2, "pass --batch 6 or 8 (a multiple of 2), or --devices 1"},
	} {
		err := CheckDivides(c.batch, c.n)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckDivides(%d, %d) = %v; want nil", c.batch, c.n, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CheckDivides(%d, %d) = %v; want it to say %q", c.batch, c.n, err, c.want)
		}
	}
}

// SetDevices(1) must leave the single-device program as it is: the same losses and state, bit for bit.
func TestSetDevicesOneIsBitForBit(t *testing.T) {
	b := shared.GoBackend(t)
	run := func(set bool) ([]float32, []float32, []float32) {
		tr := linTrainer(t, b, 8)
		if set {
			if err := tr.SetDevices(1); err != nil {
				t.Fatal(err)
			}
			if tr.Devices() != 1 || tr.shard != nil {
				t.Fatalf("SetDevices(1): %d devices, sharded %v; want the plain program", tr.Devices(), tr.shard != nil)
			}
		}
		st, err := tr.Init(3)
		if err != nil {
			t.Fatal(err)
		}
		l, err := tr.Step(st, testBatches(8))
		if err != nil {
			t.Fatal(err)
		}
		return l, flat(t, st.Params), flat(t, st.EMA)
	}
	l0, p0, e0 := run(false)
	l1, p1, e1 := run(true)
	if !slices.Equal(l0, l1) || !slices.Equal(p0, p1) || !slices.Equal(e0, e1) {
		t.Fatalf("SetDevices(1) changed the step: losses %v vs %v", l1, l0)
	}
}

func TestSetDevicesErrors(t *testing.T) {
	b := shared.GoBackend(t)
	tr := linTrainer(t, b, 8)
	if err := tr.SetDevices(2); err == nil || !strings.Contains(err.Error(), "has 1") {
		t.Errorf("SetDevices(2) on the pure-Go backend (1 device) = %v; want an error naming its 1 device", err)
	}
	if err := tr.SetDevices(0); err == nil {
		t.Error("SetDevices(0): no error")
	}
}

func TestReplicasFollowTheState(t *testing.T) {
	mk := func(v float32) *tensors.Tensor { return tensors.FromValue([]float32{v, v}) }
	st := &State{Params: mk(1), M: mk(2), V: mk(3), EMA: mk(4), RNG: tensors.FromValue([]uint64{1, 2, 3})}
	r, err := st.replicas(3)
	if err != nil {
		t.Fatal(err)
	}
	if r[0][0] != st.Params || r[1][0] == st.Params || r[2][3] == st.EMA {
		t.Fatal("device 0 must use the State's own tensors, the others copies")
	}
	for d := 1; d < 3; d++ {
		if got := flat(t, r[d][3]); got[0] != 4 {
			t.Errorf("device %d's EMA copy = %v; want [4 4]", d, got)
		}
	}
	// Copies left by a call are used while the State's fields are that call's.
	own := [stateInputs]*tensors.Tensor{mk(5), mk(6), mk(7), mk(8), mk(9)}
	st.copies = &deviceCopies{of: st.Params, bufs: [][stateInputs]*tensors.Tensor{own, own}}
	if r, _ = st.replicas(3); r[1][0] != own[0] || r[2][4] != own[4] {
		t.Error("the copies of the last call were not used")
	}
	// A State whose weights were replaced (a loaded checkpoint, fine-tuning) is copied afresh.
	st.Params = mk(10)
	if r, _ = st.replicas(3); r[1][0] == own[0] || flat(t, r[1][0])[0] != 10 {
		t.Error("stale copies used after the State's weights were replaced")
	}
}

// The sharded program itself, on a mesh of 1 (and of every device, where there are several), against the
// plain step. GoMLX v0.26's pure-Go backend cannot compile a sharded program, even for one device: its
// Builder embeds notimplemented.Builder, whose DistributedAutoSharding returns NotImplementedError (and
// its Parameter and Compile reject sharding specs). On it the test checks that error, so a GoMLX upgrade
// that implements it turns this into the real comparison. DDPM_SHARD_BACKEND=cuda (or any --backend
// value) runs the comparison on that backend: bench/gpu_multi.sh does, with the test binary.
func TestShardedStepMatchesPlain(t *testing.T) {
	b, isGo := shared.GoBackend(t), true
	if name := os.Getenv("DDPM_SHARD_BACKEND"); name != "" {
		var info backend.Info
		var err error
		if b, info, err = backend.New(name); err != nil {
			t.Fatal(err)
		}
		isGo = info.Kind == backend.Go
	}
	const bsz = 8
	tr := linTrainer(t, b, bsz)
	st, _ := tr.Init(5)
	wantL, err := tr.Step(st, testBatches(bsz))
	if err != nil {
		t.Fatal(err)
	}
	wantP, wantE := flat(t, st.Params), flat(t, st.EMA)
	counts := []int{1}
	for n := 2; n <= b.NumDevices(); n *= 2 {
		counts = append(counts, n)
	}
	for _, n := range counts {
		tr := linTrainer(t, b, bsz)
		if err := tr.useMesh(n); err != nil {
			t.Fatal(err)
		}
		st, _ := tr.Init(5)
		l, err := tr.Step(st, testBatches(bsz))
		if isGo {
			if err == nil || !errors.Is(err, notimplemented.NotImplementedError) || !strings.Contains(err.Error(), "DistributedAutoSharding") {
				t.Fatalf("mesh of %d on the pure-Go backend: err = %v; want GoMLX's NotImplementedError from DistributedAutoSharding (if GoMLX now implements it, compare with the plain step here)", n, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("mesh of %d: %v", n, err)
		}
		// Float noise only: the partitioned reductions add in another order. TF32 matmuls on a GPU
		// are ~1e-3 relative; one Adam step moves a weight by at most lr = 1e-3.
		for i := range wantL {
			if math.Abs(float64(l[i]-wantL[i])) > 2e-3*math.Abs(float64(wantL[i])) {
				t.Errorf("mesh of %d: loss of step %d = %v; want %v", n, i+1, l[i], wantL[i])
			}
		}
		for name, pair := range map[string][2][]float32{"params": {flat(t, st.Params), wantP}, "ema": {flat(t, st.EMA), wantE}} {
			for i := range pair[1] {
				if math.Abs(float64(pair[0][i]-pair[1][i])) > 2e-4 {
					t.Errorf("mesh of %d: %s[%d] = %v; want %v", n, name, i, pair[0][i], pair[1][i])
					break
				}
			}
		}
		if st.copies == nil && n > 1 {
			t.Errorf("mesh of %d: no device copies kept", n)
		}
	}
}

func TestChooseDevices(t *testing.T) {
	for _, c := range []struct{ asked, accel, batch, want int }{
		{0, 1, 64, 1}, {0, 0, 64, 1}, {0, 8, 64, 8}, {0, 4, 256, 4}, {0, 3, 64, 2}, {0, 8, 100, 5},
		{2, 8, 64, 2}, {3, 1, 64, 3}, // asked: as is, SetDevices checks it
	} {
		if got := ChooseDevices(c.asked, c.accel, c.batch); got != c.want {
			t.Errorf("ChooseDevices(%d, %d, %d) = %d; want %d", c.asked, c.accel, c.batch, got, c.want)
		}
	}
}

// shardShim is the pure-Go backend with the sharding annotations of a one-device program accepted and
// dropped: on one device they change nothing. It lets the host side of the sharded path (the batch
// split, the argument layout, the state copies, GoMLX's checks of the specs against the graph) run here.
type shardShim struct{ backends.Backend }

func (s shardShim) Builder(name string) backends.Builder { return shimBuilder{s.Backend.Builder(name)} }

type shimBuilder struct{ backends.Builder }

func (shimBuilder) DistributedAutoSharding(meshes ...backends.Mesh) error {
	if len(meshes) != 1 || len(meshes[0].AxesSizes) != 1 || meshes[0].AxesSizes[0] != 1 {
		return errors.New("shardShim: only a mesh of one device")
	}
	return nil
}

func (b shimBuilder) Parameter(name string, shape shapes.Shape, _ *backends.ShardingSpec) (backends.Op, error) {
	return b.Builder.Parameter(name, shape, nil)
}

func (b shimBuilder) Compile(outputs []backends.Op, shardings []*backends.ShardingSpec) (backends.Executable, error) {
	if len(shardings) != 0 && len(shardings) != stateInputs+1 {
		return nil, fmt.Errorf("shardShim: %d output shardings, want %d", len(shardings), stateInputs+1)
	}
	return b.Builder.Compile(outputs, nil)
}

// The sharded path on a mesh of one device, through the shim, gives the plain step bit for bit.
func TestShardedPathMeshOfOne(t *testing.T) {
	b := shardShim{shared.GoBackend(t)}
	plain := linTrainer(t, b, 8)
	st0, _ := plain.Init(7)
	wantL, err := plain.Step(st0, testBatches(8))
	if err != nil {
		t.Fatal(err)
	}
	tr := linTrainer(t, b, 8)
	if err := tr.useMesh(1); err != nil {
		t.Fatal(err)
	}
	st, _ := tr.Init(7)
	tr.cfg.StepsPerCall = 2 // two calls: the second starts from the first's outputs
	l, err := tr.Step(st, testBatches(8))
	if err != nil {
		t.Fatal(err)
	}
	if tr.exec.DistributionStrategy().String() != "AutoSharding" {
		t.Fatalf("strategy %s; want AutoSharding", tr.exec.DistributionStrategy())
	}
	if !slices.Equal(l, wantL) || !slices.Equal(flat(t, st.Params), flat(t, st0.Params)) ||
		!slices.Equal(flat(t, st.EMA), flat(t, st0.EMA)) || !slices.Equal(flat(t, st.V), flat(t, st0.V)) || st.Step != st0.Step {
		t.Fatalf("sharded path on one device: losses %v, want %v (and the same state)", l, wantL)
	}
	// Its checkpoint is the plain run's.
	f, err := StateFile(st, linModel{}.Specs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := StateFromFile(f, linModel{}.Specs())
	if err != nil || !slices.Equal(flat(t, back.EMA), flat(t, st0.EMA)) {
		t.Fatalf("checkpoint of the sharded run: %v", err)
	}
}
