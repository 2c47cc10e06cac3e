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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "ddpm:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	var u usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &u):
		return 2
	case errors.Is(err, context.Canceled):
		return 130
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

		"fid":        {"FID of generated samples or images against a data split (Inception or our classifier)", runFID},
		"samplers":   {"FID of many samplers and step counts in one process (the quality study); --report writes its tables and plots", runSamplers},
		"classifier": {"train or evaluate the small CNN that is the fast, offline FID extractor", runClassifier},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" && len(args) == 1 {
		printUsage(stdout)
		return nil
	}
	name := args[0]
	if name == "help" {
		name = args[1]
		args = []string{name, "-h"}
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
	fmt.Fprintln(w, "\nRun `ddpm help COMMAND` for its flags.")
}

// newFlags makes a flag set that reports errors as usage errors instead of exiting.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ddpm "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ddpm %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; a parse failure is a usage error (the flag package already printed it).
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q (flags go before nothing; see `%s -h`)", fs.Name(), fs.Arg(0), fs.Name())
	}
	return nil
}
