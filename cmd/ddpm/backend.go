package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/cpu"
	"github.com/gomlx/gomlx/backends"
)

// backendFlag adds --backend to fs.
func backendFlag(fs *flag.FlagSet) *string {
	return fs.String("backend", "", "compute backend: auto (CUDA, else the onednn CPU engine where it runs, else XLA CPU, else pure Go), onednn, go, cuda, cpu, or xla:/path/plugin.so (default $GOMLX_BACKEND, else auto)")
}

// openBackend creates the backend and says on stderr which one runs.
func openBackend(name string, stderr io.Writer) (backends.Backend, backend.Info, error) {
	b, info, err := backend.New(name)
	if err != nil {
		return nil, info, err
	}
	fmt.Fprintf(stderr, "backend: %s (%s)\n", info, info.Reason)
	if info.CompileCache != "" {
		fmt.Fprintf(stderr, "compile cache: %s\n", info.CompileCache)
	}
	return b, info, nil
}

// compileNote says, for an XLA backend, how many programs were compiled and how many came from the
// executable cache so far; "" for the pure-Go backend, which compiles nothing.
func compileNote(info backend.Info) string {
	if info.Kind == backend.Go {
		return ""
	}
	return "; programs: " + backend.Compilations().String()
}

func runBackends(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("backends", "[-v]", stderr)
	verbose := fs.Bool("v", false, "also list every place searched for a plugin")
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, k := range []backend.Kind{backend.CUDA, backend.CPU} {
		found, searched := backend.Search(k)
		fmt.Fprintf(stdout, "%s plugins:\n", k)
		switch {
		case *verbose:
			for _, s := range searched {
				fmt.Fprintf(stdout, "  searched %s\n", s)
			}
		case len(found) == 0:
			fmt.Fprintf(stdout, "  none (searched %d places; `ddpm backends -v` lists them)\n", len(searched))
		}
		for _, p := range found {
			fmt.Fprintf(stdout, "  %s\n", p.Path)
		}
	}
	fmt.Fprintln(stdout, engineLine())
	fmt.Fprintln(stdout, "go: always available (pure Go, slow)")
	if use, _ := backend.UseEngine(""); use && cpu.Available() == nil {
		fmt.Fprintln(stdout, "chosen: onednn for the UNet (sample and train), GoMLX below for the rest (FID, classifier, toy)")
	}
	b, info, err := backend.New("")
	if err != nil {
		return err
	}
	_ = b
	fmt.Fprintf(stdout, "chosen: %s (%s)\n", info, info.Reason)
	return nil
}
