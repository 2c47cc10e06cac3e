// Command ddpm trains, samples and evaluates denoising diffusion models.
//
//	ddpm sample --out digits.png                      8x8 digits from the bundled MNIST model
//	ddpm train --data mnist --out runs/mnist          the lesson's recipe (GPU: minutes; CPU: slow)
//	ddpm sample --run runs/mnist --sampler ddpm       1000 ancestral steps from a run's EMA weights
//	ddpm sample --model google/ddpm-cifar10-32        a diffusers pipeline, local or from the hub
//	ddpm export --run runs/mnist --out model_dir      a run as a diffusers pipeline directory
//	ddpm toy --out runs/toy                           the 2-D swiss roll, trained and sampled
//
// Run `ddpm help COMMAND` for the flags of a command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cancel(stopSignal{sig})
		fmt.Fprintf(os.Stderr, "\nddpm: %s: stopping at the next step (again to quit at once)\n", signalName(sig))
		sig = <-sigs
		os.Exit(signalCode(sig))
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	signal.Stop(sigs)
	os.Exit(exitStatus(ctx, err, os.Stderr))
}

// stopSignal is the cause of the context of a command stopped by a signal.
type stopSignal struct{ sig os.Signal }

func (s stopSignal) Error() string { return "stopped by " + signalName(s.sig) }

func signalName(sig os.Signal) string {
	if sig == syscall.SIGTERM {
		return "SIGTERM"
	}
	return "SIGINT (Ctrl-C)"
}

// signalCode is the shell's status of a process ended by sig: 128 + its number.
func signalCode(sig os.Signal) int {
	if sig == syscall.SIGTERM {
		return 128 + int(syscall.SIGTERM)
	}
	return 128 + int(syscall.SIGINT)
}

// exitStatus prints err once (a usage error's help has been printed by the flag package already) and
// returns the process's exit status: 0, 1, 2 for a usage error, 130 or 143 for SIGINT or SIGTERM.
func exitStatus(ctx context.Context, err error, stderr io.Writer) int {
	var stop stopSignal
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case ctx.Err() != nil && errors.As(context.Cause(ctx), &stop):
		fmt.Fprintf(stderr, "ddpm: %s\n", stop)
		return signalCode(stop.sig)
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "ddpm: stopped")
		return 130
	}
	fmt.Fprintln(stderr, "ddpm:", err)
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// A command is one subcommand of ddpm.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"train":    {"train a diffusion model (MNIST, Fashion-MNIST)", runTrain},
		"sample":   {"generate images from a run, a model directory or a hub model", runSample},
		"export":   {"write a run as a diffusers pipeline directory", runExport},
		"verify":   {"check this machine's backend against diffusers' reference outputs", runVerify},
		"bench":    {"measure training and sampling speed (one JSON line)", runBench},
		"viz":      {"draw a run's training-step panel or loss curve", runViz},
		"backends": {"list the compute backends found on this machine", runBackends},
		"toy":      {"train and sample the 2-D swiss-roll toy", runToy},

		"version": {"print the version of ddpm, its commit, Go and GoMLX", runVersion},

		"fid":        {"FID of generated samples or images against a data split (Inception or our classifier)", runFID},
		"samplers":   {"FID of many samplers and step counts in one process (the quality study); --report writes its tables and plots", runSamplers},
		"classifier": {"train or evaluate the small CNN that is the fast, offline FID extractor", runClassifier},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelpFlag(args[0]) || args[0] == "help" && len(args) == 1 {
		printUsage(stdout)
		return nil
	}
	if args[0] == "--version" || args[0] == "-version" {
		args[0] = "version"
	}
	name := args[0]
	if name == "help" { // ddpm help X [Y] is ddpm X [Y] -h
		name = args[1]
		args = append(args[1:], "-h")
	}
	c, ok := commands[name]
	if !ok {
		return usagef("unknown command %q; run `ddpm help` for the list", name)
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "ddpm: denoising diffusion models in Go (DDPM, DDIM, diffusers-compatible).")
	fmt.Fprintln(w, "\nUsage: ddpm COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun `ddpm help COMMAND` (or `ddpm COMMAND -h`) for its flags. Ctrl-C stops any command at its next step.")
}

// newFlags makes a flag set that returns errors instead of exiting and prints nothing itself: main
// prints an error once, and parse prints the usage for -h.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ddpm "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	helps.Store(fs, func() { printHelp(fs, name, usage, stderr) })
	return fs
}

// helps holds each flag set's help printer.
var helps sync.Map

func printHelp(fs *flag.FlagSet, name, usage string, w io.Writer) {
	fmt.Fprintf(w, "Usage: ddpm %s %s\n", name, usage)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		fmt.Fprintln(w, "\nNo flags.")
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parse parses flags: -h prints the usage; any other failure is a usage error that names the help.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			if h, ok := helps.Load(fs); ok {
				h.(func())()
			}
			return err
		}
		return usagef("%s: %v (see `%s -h`)", strings.TrimPrefix(fs.Name(), "ddpm "), err, fs.Name())
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q (every setting is a flag; see `%s -h`)", strings.TrimPrefix(fs.Name(), "ddpm "), fs.Arg(0), fs.Name())
	}
	return nil
}
