// Package run owns a training run on disk: its folder layout, its configuration, checkpoints and
// resuming, the loss log, sample grids, and the lock that keeps two trainings out of one folder.
//
// A run folder holds:
//
//	train.json                              the Config, written once when the run is created
//	train.lock                              locked (flock) by the process training the run; holds its PID
//	loss.csv                                step,epoch,loss,wall_seconds, one row per logged step
//	loss.png                                the loss curve, drawn at the end
//	checkpoints/step-00001234.safetensors   the whole training state (train.StateFile), newest Keep kept
//	samples/epoch-005.png, samples/final.png  8x8 grids of EMA samples (DDIM, seed 1)
//	model_index.json, unet/, scheduler/     a diffusers pipeline of the newest checkpoint's EMA weights
//
// Guarantees (see docs/guarantees.md): every file is replaced by one atomic rename of a complete, synced
// temporary file over the old one, so a kill at any moment leaves each file old or new, never missing
// or partial; the temporary and backup files a kill leaves behind (".*.tmp-*", ".*.old-*",
// "loss.csv.tmp") are removed by the next command that opens the folder; a state with a NaN or an
// infinity is never saved.
package run
