package backend

import "os"

// OneDNN is ddpm's own CPU engine (package cpu: the UNet written out on oneDNN, libdnnl.so.2), named
// "onednn" in --backend. It is not a GoMLX backend: New does not create it; commands that can run on it
// ask UseEngine.
const OneDNN Kind = 100

// UseEngine says whether the backend named name (as New takes it: "" means $GOMLX_BACKEND, else
// "auto") is the CPU engine: named ("onednn"), or under "auto" when there is no NVIDIA GPU with a CUDA
// plugin (the order is CUDA, then the engine, then a GoMLX CPU backend). explicit reports that it was
// named, so that its absence is an error rather than a fallback.
func UseEngine(name string) (use, explicit bool) {
	if name == "" {
		name = os.Getenv(EnvVar)
	}
	switch name {
	case "onednn":
		return true, true
	case "", "auto":
		found, _ := Search(CUDA)
		return len(found) == 0 || !hasNVIDIAGPU(), false
	}
	return false, false
}
