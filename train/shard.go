package train

// Data parallelism over the devices of one host, through XLA's partitioner (GoMLX AutoSharding, the
// Shardy partitioner, collectives on NCCL):
//
//	mesh   = 1-D, axis "data", n devices
//	idx    [K, B]  sharded along B: device d draws the images of batch columns d*B/n .. (d+1)*B/n - 1
//	params, m, v, ema, rng, step, data, table, labels   replicated
//	outputs (params, m, v, ema, rng, losses)            replicated
//
// The compiled program is the same logical step as on one device (buildStep, on the global batch B):
// the partitioner splits the batch's work over the devices and inserts the all-reduce of the gradient
// and of the loss itself. So the step, the EMA and the loss are those of one device, up to the order of
// the float additions in the reductions. The random draws (t, eps, the label dropout) come from one
// RngBitGenerator on the replicated RNG state; we expect XLA's partitioner to keep its values
// independent of the sharding (not to split the generator), so that a run on n devices draws the noise
// of a run on one. Not verified without GPUs: bench/gpu_multi.sh checks both on real ones.
//
// State: device 0's copies are the State's own fields, so checkpoints (StateFile), weights and EMA read
// there are merged and device-independent: a run trained on 4 GPUs resumes on 1 and the other way round.
// The copies on devices 1..n-1 live in State.copies, and are used only while the State's fields are
// the ones the last call returned.

import (
	"errors"
	"fmt"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/distributed"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// DataAxis is the name of the mesh axis the batch is split along.
const DataAxis = "data"

// stateInputs is the number of replicated state inputs (and outputs) of a step: params, m, v, ema, rng.
const stateInputs = 5

// sharding is a Trainer's data-parallel setup.
type sharding struct {
	n      int
	mesh   *distributed.DeviceMesh
	in     []*distributed.ShardingSpec // per input of buildStep
	out    []*distributed.ShardingSpec // per output
	consts [][]*tensors.Tensor         // [device-1]: data, table[, labels] for devices 1..n-1
}

// deviceCopies are the replicated state's tensors on devices 1..n-1, as the last call returned them.
type deviceCopies struct {
	of   *tensors.Tensor // st.Params when they were made
	bufs [][stateInputs]*tensors.Tensor
}

// Devices is the number of devices a step runs on (1 unless SetDevices chose more).
func (tr *Trainer) Devices() int {
	if tr.shard == nil {
		return 1
	}
	return tr.shard.n
}

// SetDevices splits every batch of BatchSize over the first n devices of the backend (data parallelism;
// see the top of shard.go). n = 1 keeps the single-device program, bit for bit. BatchSize must be a
// multiple of n. Call it before the first step.
func (tr *Trainer) SetDevices(n int) error {
	if n < 1 {
		return fmt.Errorf("train: %d devices: want at least 1", n)
	}
	if have := tr.b.NumDevices(); n > have {
		fewer := ""
		if have > 1 {
			fewer = " or fewer"
		}
		return fmt.Errorf("train: %d devices asked for, the backend %s has %d (pass --devices %d%s)", n, tr.b.Name(), have, have, fewer)
	}
	if err := CheckDivides(tr.cfg.BatchSize, n); err != nil {
		return err
	}
	if n == 1 {
		tr.shard = nil
		return tr.newExec()
	}
	return tr.useMesh(n)
}

// CheckDivides says what to pass when a batch of batch does not split evenly over n devices.
func CheckDivides(batch, n int) error {
	if n < 1 || batch%n == 0 {
		return nil
	}
	lo, hi := batch/n*n, (batch/n+1)*n
	var divs []int
	for d := n - 1; d >= 1 && len(divs) < 3; d-- {
		if batch%d == 0 {
			divs = append(divs, d)
		}
	}
	alt := ""
	if len(divs) > 0 {
		alt = fmt.Sprintf(", or --devices %d", divs[0])
	}
	if lo == 0 {
		return fmt.Errorf("train: batch %d does not split over %d devices: pass --batch %d (a multiple of %d)%s", batch, n, hi, n, alt)
	}
	return fmt.Errorf("train: batch %d does not split over %d devices: pass --batch %d or %d (a multiple of %d)%s", batch, n, lo, hi, n, alt)
}

// newExec (re)builds the single-device program.
func (tr *Trainer) newExec() error {
	exec, err := graph.NewExec(tr.b, tr.buildStep)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	tr.exec = exec.WithName("train_step")
	return nil
}

// meshSpecs builds the mesh of n devices and the sharding of buildStep's inputs (numInputs of them: 9,
// or 10 with labels) and of its 6 outputs.
func meshSpecs(n, numInputs int) (*distributed.DeviceMesh, []*distributed.ShardingSpec, []*distributed.ShardingSpec, error) {
	mesh, err := distributed.NewDeviceMesh([]int{n}, []string{DataAxis})
	if err != nil {
		return nil, nil, nil, err
	}
	rep := distributed.NewReplicatedShardingSpec(mesh)
	batch, err := distributed.NewShardingSpec(mesh, distributed.ReplicatedAxis, distributed.AxisSpec{DataAxis})
	if err != nil {
		return nil, nil, nil, err
	}
	in := make([]*distributed.ShardingSpec, numInputs)
	for i := range in {
		in[i] = rep
	}
	in[6] = batch // idx [K, B]
	out := make([]*distributed.ShardingSpec, stateInputs+1)
	for i := range out {
		out[i] = rep
	}
	return mesh, in, out, nil
}

// useMesh compiles the step for a mesh of n devices, n >= 1 (n = 1 only in tests: SetDevices keeps the
// plain program for one device).
func (tr *Trainer) useMesh(n int) error {
	numIn := 9
	if tr.labels != nil {
		numIn = 10
	}
	mesh, in, out, err := meshSpecs(n, numIn)
	if err != nil {
		return fmt.Errorf("train: device mesh: %w", err)
	}
	sh := &sharding{n: n, mesh: mesh, in: in, out: out}
	for d := 1; d < n; d++ {
		var c []*tensors.Tensor
		for _, t := range []*tensors.Tensor{tr.data, tr.table, tr.labels} {
			if t == nil {
				continue
			}
			// A tensor lives on one device: each device gets its own copy of the constant inputs.
			cl, err := t.LocalClone()
			if err != nil {
				return fmt.Errorf("train: copying the dataset for device %d: %w", d, err)
			}
			c = append(c, cl)
		}
		sh.consts = append(sh.consts, c)
	}
	exec, err := graph.NewExec(tr.b, tr.buildStep)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	// The devices explicitly, even for a mesh of 1: GoMLX v0.26 sets a device assignment only for n > 1,
	// and go-xla's WithShardy(1) followed by an empty assignment fails ("no device assignment ... not
	// portable").
	devs := make([]backends.DeviceNum, n)
	for i := range devs {
		devs[i] = backends.DeviceNum(i)
	}
	tr.exec = exec.WithName(fmt.Sprintf("train_step_%ddev", n)).AutoSharding(mesh).WithDeviceAssignment(devs).
		WithInputShardingSpecs(in...).WithOutputShardingSpecs(out...)
	tr.shard = sh
	return nil
}

// launchSharded is launch on a mesh: idx holds the K batches of the call, row-major [K, B].
func (tr *Trainer) launchSharded(st *State, idx []int32, k int) (*tensors.Tensor, error) {
	sh := tr.shard
	parts, err := splitBatches(sh.in[6], idx, k, tr.cfg.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	reps, err := st.replicas(sh.n)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var args []any
	for d := 0; d < sh.n; d++ {
		for _, t := range reps[d] {
			args = append(args, tr.donateOn(t, d))
		}
		args = append(args, int32(st.Step), parts[d])
		if d == 0 {
			args = append(args, tr.data, tr.table)
			if tr.labels != nil {
				args = append(args, tr.labels)
			}
		} else {
			for _, c := range sh.consts[d-1] {
				args = append(args, c)
			}
		}
	}
	out, err := tr.exec.Exec(args...)
	if err != nil {
		return nil, fmt.Errorf("train: step %d on %d devices: %w", st.Step+1, sh.n, err)
	}
	per := len(out) / sh.n
	if per != stateInputs+1 || len(out)%sh.n != 0 {
		return nil, fmt.Errorf("train: step %d: %d outputs from %d devices", st.Step+1, len(out), sh.n)
	}
	st.Params, st.M, st.V, st.EMA, st.RNG = out[0], out[1], out[2], out[3], out[4]
	cp := &deviceCopies{of: st.Params}
	for d := 1; d < sh.n; d++ {
		o := out[d*per:]
		cp.bufs = append(cp.bufs, [stateInputs]*tensors.Tensor{o[0], o[1], o[2], o[3], o[4]})
		o[5].FinalizeAll() // the loss is replicated: device 0's is read
	}
	st.copies = cp
	st.Step += int64(k)
	return out[5], nil
}

// replicas returns the state's tensors for each of n devices: device 0's are the State's fields; the
// others are the copies the last sharded call left, or host copies of the fields (a fresh or loaded
// State, or one whose fields were replaced).
func (st *State) replicas(n int) ([][stateInputs]*tensors.Tensor, error) {
	own := [stateInputs]*tensors.Tensor{st.Params, st.M, st.V, st.EMA, st.RNG}
	for _, t := range own {
		if t == nil {
			return nil, errors.New("the state is missing a tensor")
		}
	}
	out := make([][stateInputs]*tensors.Tensor, n)
	out[0] = own
	if c := st.copies; c != nil && c.of == st.Params && len(c.bufs) == n-1 {
		copy(out[1:], c.bufs)
		return out, nil
	}
	for d := 1; d < n; d++ {
		for i, t := range own {
			cl, err := t.LocalClone()
			if err != nil {
				return nil, fmt.Errorf("copying the state to device %d: %w", d, err)
			}
			out[d][i] = cl
		}
	}
	return out, nil
}

// splitBatches cuts the K batches of a call [K, B] into the per-device shards [K, B/n] that spec
// (idx's sharding) describes: device d gets columns d*B/n .. (d+1)*B/n - 1 of every batch.
func splitBatches(spec *distributed.ShardingSpec, idx []int32, k, bsz int) ([]*tensors.Tensor, error) {
	dt, err := distributed.ShardTensor(spec, tensors.FromFlatDataAndDimensions(idx, k, bsz))
	if err != nil {
		return nil, err
	}
	return dt.Shards(), nil
}

// donateOn is donate for device d.
func (tr *Trainer) donateOn(t *tensors.Tensor, d int) any {
	if d == 0 {
		return tr.donate(t)
	}
	if dev, err := t.Device(); err == nil && int(dev) == d && !t.IsLocal() {
		if buf, err := graph.DonateTensorBuffer(t, tr.b, dev); err == nil {
			return buf
		}
	}
	return t
}

// ChooseDevices is the device count for a batch of batch: asked if asked > 0 (SetDevices then checks
// it); else all of the accelerators found (accelerators: the GPUs of a CUDA backend, 1 elsewhere),
// lowered to the largest count that divides the batch.
func ChooseDevices(asked, accelerators, batch int) int {
	if asked > 0 {
		return asked
	}
	n := max(1, accelerators)
	for n > 1 && batch%n != 0 {
		n--
	}
	return n
}
