package main

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/internal/atomicfile"
	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/pipeline"
	rundir "github.com/ddpm/ddpm/run"
	"github.com/ddpm/ddpm/unet"
)

// The test binary doubles as the ddpm binary: with DDPM_TEST_MAIN=1 it runs main with its arguments,
// and DDPM_TEST_WRITE_DELAY (a duration) slows every file write, widening the moments a kill can land
// in the middle of one.
func TestMain(m *testing.M) {
	if os.Getenv("DDPM_TEST_MAIN") == "1" {
		if d, err := time.ParseDuration(os.Getenv("DDPM_TEST_WRITE_DELAY")); err == nil {
			atomicfile.Delay = d
		}
		main()
		return
	}
	os.Exit(m.Run())
}

// ddpmProcess starts this test binary as ddpm with args.
func ddpmProcess(t *testing.T, delay time.Duration, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], withGoBackend(args)...)
	cmd.Env = append(os.Environ(), "DDPM_TEST_MAIN=1", "DDPM_TEST_WRITE_DELAY="+delay.String(), "GOMLX_BACKEND=go")
	return cmd
}

// The chaos test of issue 14: a checkpointing training is killed (SIGKILL) at >= 20 random moments,
// each time resumed; after every kill the folder holds a readable config, no fewer checkpoints than
// before, each readable, and a loadable pipeline; at the end there are no leftovers and the final
// state is bit for bit the one of an uninterrupted run.
func TestChaosKillAndResume(t *testing.T) {
	const kills = 22
	images, cfg := tinyData(t)
	base := t.TempDir()
	chaos, ref := filepath.Join(base, "chaos"), filepath.Join(base, "ref")
	steps := 24
	common := func(out string, n int) []string {
		return []string{"train", "--data", images, "--out", out, "--unet-config", cfg, "--batch", "4", "--max-steps",
			strconv.Itoa(n), "--checkpoint-every", "1", "--keep", "2", "--sample-steps", "1", "--sample-every", "0"}
	}
	uc, _ := unet.ParseConfig(json.RawMessage(tiny8))
	model, _ := unet.New(uc)
	r := rand.New(rand.NewPCG(14, 1))

	killed, newest, starts := 0, int64(0), 0
	for done := false; !done; starts++ {
		args := common(chaos, steps)
		if _, err := os.Stat(filepath.Join(chaos, rundir.ConfigFile)); err == nil {
			args = []string{"train", "--resume", chaos, "--max-steps", strconv.Itoa(steps)}
		}
		cmd := ddpmProcess(t, 15*time.Millisecond, args...)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wait := make(chan error, 1)
		go func() { wait <- cmd.Wait() }()
		select {
		case err := <-wait: // the run ended before its kill
			if err != nil {
				t.Fatalf("start %d: %v\n%s", starts, err, out.String())
			}
			if killed >= kills {
				done = true
			} else {
				steps += 8 // not enough kills yet: train further
			}
		case <-time.After(time.Duration(r.IntN(1200)) * time.Millisecond):
			cmd.Process.Signal(syscall.SIGKILL)
			<-wait
			killed++
			newest = checkAfterKill(t, chaos, model, newest)
		}
		if starts > 200 {
			t.Fatalf("no end after %d starts", starts)
		}
	}
	t.Logf("%d starts, %d kills, %d steps", starts, killed, steps)

	// Leftovers go at the next start; the finished run's folder has none.
	for _, p := range walk(t, chaos) {
		if rundir.IsLeftover(filepath.Base(p)) {
			t.Errorf("leftover %s", p)
		}
	}
	cmd := ddpmProcess(t, 0, common(ref, steps)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the uninterrupted run: %v\n%s", err, b)
	}
	got, want := readFile(t, rundir.CheckpointPath(chaos, int64(steps))), readFile(t, rundir.CheckpointPath(ref, int64(steps)))
	for _, name := range want.Names() {
		a, _ := got.Tensors[name].Float32()
		b, _ := want.Tensors[name].Float32()
		if !slices.Equal(a, b) {
			t.Errorf("final %s differs from the uninterrupted run's", name)
		}
	}
	if a, b := lossColumn(t, chaos), lossColumn(t, ref); !slices.Equal(a, b) {
		t.Errorf("loss.csv of the killed run:\n%v\nof the uninterrupted one:\n%v", a, b)
	}
}

// checkAfterKill checks a run folder just after a SIGKILL and returns its newest checkpoint step.
func checkAfterKill(t *testing.T, dir string, model *unet.Model, newest int64) int64 {
	t.Helper()
	if _, err := rundir.ReadConfig(dir); err != nil {
		if newest > 0 || !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "no such file") {
			t.Fatalf("after a kill: %v", err)
		}
		return newest // killed before train.json was written
	}
	cs := rundir.Checkpoints(dir)
	if len(cs) == 0 {
		if newest > 0 {
			t.Fatalf("after a kill: the checkpoints are gone (had step %d)", newest)
		}
		return 0
	}
	last := cs[len(cs)-1].Step
	if last < newest {
		t.Fatalf("after a kill: newest checkpoint step %d, before it %d: a checkpoint was lost", last, newest)
	}
	for _, c := range cs {
		if _, err := checkpoint.ReadSafetensors(c.Path); err != nil {
			t.Fatalf("after a kill: checkpoint %s does not read back: %v", c.Path, err)
		}
	}
	if got, err := rundir.Latest(dir, model.Specs()); err != nil || len(got.Skipped) > 0 {
		t.Fatalf("after a kill: the newest checkpoint does not restore: %v %v", err, got)
	}
	if _, err := pipeline.Load(dir); err != nil {
		t.Fatalf("after a kill at checkpoint %d: the run folder's pipeline does not load: %v", last, err)
	}
	return last
}

func walk(t *testing.T, dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func readFile(t *testing.T, path string) *checkpoint.File {
	t.Helper()
	f, err := checkpoint.ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// lossColumn is loss.csv's step,loss pairs (the wall time differs, of course).
func lossColumn(t *testing.T, dir string) []string {
	rows := readCSV(t, filepath.Join(dir, rundir.LossFile))
	var out []string
	for _, r := range rows[1:] {
		out = append(out, r[0]+","+r[2])
	}
	return out
}

// Issue 14.10 with real signals: SIGTERM stops train with 143 after saving a checkpoint; SIGINT stops
// sample with 130, writing nothing.
func TestSignalsStopCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	cmd := ddpmProcess(t, 0, tinyTrain(t, dir, 100000, "--checkpoint-every", "1000")...)
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !strings.Contains(out.String(), "first call"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			cmd.Process.Kill()
			t.Fatalf("train did not start:\n%s", out.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 143 || !strings.Contains(out.String(), "stopped by SIGTERM") ||
		!strings.Contains(out.String(), "checkpoint saved") {
		t.Errorf("train after SIGTERM: exit %d (%v); want 143, a checkpoint and a clear message:\n%s", code, err, out.String())
	}
	if len(rundir.Checkpoints(dir)) != 1 {
		t.Errorf("checkpoints after SIGTERM: %v; want the one saved on the way out", rundir.Checkpoints(dir))
	}

	src := shared.Path(t, "diffusers/tiny-ddpm-cifar10")
	png := filepath.Join(t.TempDir(), "x.png")
	cmd = ddpmProcess(t, 0, "sample", "--model", src, "--sampler", "ddpm", "--steps", "1000", "--n", "2", "--out", png)
	out.Reset()
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !strings.Contains(out.String(), "sampling "); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			cmd.Process.Kill()
			t.Fatalf("sample did not start:\n%s", out.String())
		}
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(out.String(), "stopped by SIGINT") {
		t.Errorf("sample after SIGINT: exit %d; want 130 and a clear message:\n%s", code, out.String())
	}
	if _, err := os.Stat(png); err == nil {
		t.Errorf("an interrupted sample wrote %s", png)
	}
}

// syncBuf is a buffer that a process writes and a test reads at once.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuf) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}
