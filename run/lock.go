package run

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file that the process training a run holds an exclusive flock on.
const LockFile = "train.lock"

// A lock is an exclusive flock on a run folder's train.lock. The kernel releases it when the process
// ends, however it ends, so a killed training never leaves a folder locked.
type lock struct{ f *os.File }

// ErrLocked is wrapped by the error of a lock held by another process.
var ErrLocked = errors.New("run folder in use")

// acquire takes the lock of dir without waiting and writes this process's PID into the lock file.
func acquire(dir string) (*lock, error) {
	path := join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("run: %w (is %s writable?)", err, dir)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("run: %s: %w: %s is training it; wait for it to end or stop it (kill %s)",
				dir, ErrLocked, holder(path), pidOf(path))
		}
		return nil, fmt.Errorf("run: locking %s: %w", path, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &lock{f}, nil
}

func pidOf(path string) string {
	b, _ := os.ReadFile(path)
	if p := strings.TrimSpace(string(b)); p != "" {
		return p
	}
	return "PID"
}

func holder(path string) string {
	if p := pidOf(path); p != "PID" {
		return "process " + p
	}
	return "another process"
}

// release unlocks; the lock file stays (removing it would race with a process about to lock it).
func (l *lock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}
