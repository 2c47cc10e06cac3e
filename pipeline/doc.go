// Package pipeline reads and writes Hugging Face diffusers pipeline directories (DDPMPipeline,
// DDIMPipeline) and finds them in, or downloads them into, the Hugging Face hub cache.
//
// # Directories
//
// A pipeline directory, as DDPMPipeline.save_pretrained writes it:
//
//	model_index.json                           {"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
//	                                            "scheduler": ["diffusers", "DDPMScheduler"], ...}
//	unet/config.json                           UNet2DModel config (package unet)
//	unet/diffusion_pytorch_model.safetensors   weights (or, in older directories, diffusion_pytorch_model.bin)
//	scheduler/scheduler_config.json            a DDPM, DDIM, DPM-Solver, Euler, Euler ancestral or Heun config
//
// diffusers reads a component from its subfolder when that is a directory and from the top of the pipeline
// directory otherwise; the early google/ddpm-* repositories rely on that flat layout (config.json,
// diffusion_pytorch_model.bin and scheduler_config.json beside model_index.json). Load follows the same rule
// (Load), and Save writes the subfolder layout.
//
// # Schedulers
//
// A scheduler_config.json is decoded once into the settings of both samplers (SchedulerConfig), the way
// diffusers' ConfigMixin.from_config (configuration_utils.py, extract_init_dict) builds a class from the
// config of another: the fields the target class's __init__ takes are used; the fields only a compatible
// class takes (DDPMScheduler's variance_type for DDIMScheduler, DDIMScheduler's set_alpha_to_one for
// DDPMScheduler) are dropped, though kept in the config for a later conversion back; absent fields take the
// target class's defaults. So `--scheduler ddim` on a DDPM pipeline is exactly
// DDIMScheduler.from_config(ddpm.config): set_alpha_to_one and steps_offset absent from a DDPMScheduler
// config become true and 0. Fields this package cannot honour at a non-default value are refused by name
// (thresholding, rescale_betas_zero_snr, learned variances); any other field a class does not take is
// ignored, as diffusers does.
//
// The other scheduler classes (DPMSolverMultistepScheduler, EulerDiscreteScheduler,
// EulerAncestralDiscreteScheduler, HeunDiscreteScheduler, package sampler) are built the same way by a
// Choice: Choice.Plan reads a scheduler_config.json of any supported class, takes the fields the chosen
// class has (by their diffusers names), applies the command line's settings (--scheduler-config key=value,
// --karras) and returns the plan of steps with diffusers' timesteps and sigmas; Run.ConfigJSON writes the
// chosen class's config back, and SetScheduler puts it in an exported pipeline.
//
// # The hub cache
//
// Resolve finds a hub model ("google/ddpm-cifar10-32") where huggingface_hub (file_download.py,
// constants.py) puts it, so that a model a Python user downloaded is used in place:
//
//	$HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub
//	  models--google--ddpm-cifar10-32/
//	    refs/main                           the commit hash main points at
//	    snapshots/<commit>/model_index.json -> ../../blobs/<etag>
//	    snapshots/<commit>/unet/config.json -> ../../../blobs/<etag>
//	    blobs/<etag>                        the bytes; etag = sha256 (LFS files) or git blob sha1 (others)
//
// and downloads what is missing the same way hf_hub_download does (see Resolve), unless $HF_HUB_OFFLINE
// forbids it.
package pipeline
