// Package checkpoint reads and writes tensor files: safetensors (read and write) and PyTorch's
// torch.save archives (read only), both into the same in-memory File of named tensors.
//
// # Tensors
//
// A Tensor is an element type, a shape and the raw little-endian bytes of its elements in C (row-major)
// order, exactly as safetensors stores them. Conversions to float32, float64 and int64 are methods;
// NewF32, NewF16, NewBF16, NewF64, NewI64 and NewI32 build tensors from Go slices. The float16 and
// bfloat16 encodings are exposed as Float16ToFloat32, Float32ToFloat16, BFloat16ToFloat32 and
// Float32ToBFloat16; narrowing rounds to nearest, ties to even, as PyTorch's .half() and
// .bfloat16() do.
//
// # safetensors
//
// The format (github.com/huggingface/safetensors):
//
//	[8 bytes: N, little-endian uint64] [N bytes: JSON header] [data area]
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end)} (byte offsets
// into the data area) and the optional key "__metadata__" to a map of strings. Reading checks that the
// tensors tile the data area exactly (no gap, no overlap, nothing left over) and that every byte range
// holds product(shape) * size(dtype) bytes. Writing follows the reference implementation byte for byte:
// tensors sorted by descending dtype (the Rust enum's order, which keeps every tensor aligned to its
// element size) then by name, compact JSON with "__metadata__" first, the header padded with spaces to
// a multiple of 8 bytes.
//
// # torch.save
//
// Since PyTorch 1.6, torch.save writes a zip archive (entries stored, not compressed) whose entries
// sit under one top folder:
//
//	<name>/data.pkl       the pickled object; tensors refer to storages by persistent id
//	<name>/data/<key>     the raw little-endian bytes of each storage
//	<name>/byteorder      "little" (written by PyTorch 2.x; big-endian archives are refused)
//	<name>/version, <name>/.data/...   format version and ids, ignored
//
// ReadTorch reads state dicts: a dict or OrderedDict from names to tensors. Its pickle reader is a
// small stack machine that knows only the opcodes such a pickle uses and builds only dicts, lists,
// tuples, strings, numbers, storages and tensors: a GLOBAL or REDUCE outside a short allow-list
// (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and _rebuild_parameter, the typed
// storage classes) is an error, and nothing is ever executed. Each tensor is materialized in C order
// from its storage, storage offset, shape and strides:
//
//	element (i_0, ..., i_{n-1}) = storage[offset + i_0*stride_0 + ... + i_{n-1}*stride_{n-1}]
//
// so transposed views, slices and tensors sharing one storage come out as independent contiguous
// tensors.
//
// # Bounded memory
//
// No reader trusts a size it has not checked against the bytes present. ReadSafetensors reads the
// 8-byte header length, checks it against the file size and a 100 MB limit, parses the header and checks
// that the tensors tile the rest of the file exactly, and only then allocates the data (a sparse 30 GB
// file with a 2-byte header costs nothing). ReadTorch checks the sizes the zip directory declares
// before decompressing anything: together at most 8 times the archive's size (torch.save stores its
// entries, so a real archive declares about its own size; a 2 MB zip bomb declaring 2 GB is refused),
// and at most what the caller expects with ReadTorchLimit (pipeline.Load passes 8 bytes a parameter of
// the UNet config); tensors copied out of the storages are bounded the same way. The fuzz targets
// (fuzz_test.go) check these bounds on every input they try.
package checkpoint
