package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// commit can be set at build time: go build -ldflags "-X main.commit=$(git rev-parse HEAD)".
var commit string

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionLine())
	return nil
}

// versionLine is "ddpm VERSION (commit C) Go V GoMLX V", from the build information.
func versionLine() string {
	version, rev, gomlx := "(devel)", commit, "unknown"
	dirty := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/gomlx/gomlx" {
				gomlx = d.Version
			}
		}
	}
	switch {
	case rev == "":
		rev = "unknown (built without VCS information: -buildvcs=false)"
	case dirty:
		rev += " with local changes"
	}
	return fmt.Sprintf("ddpm %s, commit %s, %s %s/%s, GoMLX %s", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH, gomlx)
}
