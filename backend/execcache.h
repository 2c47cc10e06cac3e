// The part of PJRT's C API (pjrt_c_api.h, API 0.83 and later) that the executable cache uses, declared
// by field position. Structs of the API only grow at their end, so these layouts and the function
// indices hold for newer plugins too; execcache.c asserts them (_Static_assert) against pjrt_c_api.h, a
// copy of go-xla's header that execcache_test.go keeps identical to it.
#ifndef DDPM_EXECCACHE_H
#define DDPM_EXECCACHE_H

#include <stddef.h>

// Indices of the function pointers in PJRT_Api, after its 40-byte head.
enum {
	DDPM_PJRT_Error_Destroy = 0,
	DDPM_PJRT_Error_Message = 1,
	DDPM_PJRT_Client_Compile = 20,
	DDPM_PJRT_Executable_Destroy = 40,
	DDPM_PJRT_Executable_GetCostAnalysis = 46,
	DDPM_PJRT_Executable_Serialize = 49,
	DDPM_PJRT_LoadedExecutable_Destroy = 50,
	DDPM_PJRT_LoadedExecutable_GetExecutable = 51,
	DDPM_PJRT_LoadedExecutable_Execute = 55,
	DDPM_PJRT_Executable_DeserializeAndLoad = 56,
};

// ddpm_open_plugin dlopens a PJRT plugin and returns its API table (GetPjrtApi), or NULL with a message
// in err (of size n).
const void *ddpm_open_plugin(const char *path, char *err, size_t n);

// ddpm_loaded reports whether the library at path is loaded (dlopen RTLD_NOLOAD), for the tests.
int ddpm_loaded(const char *path);

// ddpm_wrap_api returns a copy of the plugin's API table whose PJRT_Client_Compile goes through
// ddpmCompileHook (Go) and whose PJRT_LoadedExecutable_Execute obeys ddpm_set_async. Only one plugin may be wrapped per process; a second call returns NULL.
const void *ddpm_wrap_api(const void *real);

// ddpm_set_async: with on != 0, executions launched through the wrapped table ask PJRT for no completion
// events, so go-xla's ExecuteAndWait returns once the work is queued instead of waiting for the device.
void ddpm_set_async(int on);

// The fields of PJRT_Client_Compile_Args the hook reads and writes.
void ddpm_compile_args(void *args, void **client, const char **code, size_t *code_size,
		const char **format, size_t *format_size, const char **options, size_t *options_size);
void ddpm_set_executable(void *args, void *loaded);
void *ddpm_get_executable(void *args);

// The real PJRT_Client_Compile. Returns a PJRT_Error* or NULL.
void *ddpm_real_compile(void *args);

// ddpm_serialize serializes a loaded executable into a malloc'ed copy (*out, *size; free it with free).
void *ddpm_serialize(void *loaded, char **out, size_t *size);

// ddpm_deserialize loads a serialized executable on client.
void *ddpm_deserialize(void *client, const char *data, size_t size, void **loaded);

// ddpm_cost_from_properties reads "flops" and "bytes accessed" from n PJRT_NamedValues, stepping by the
// struct_size the first one states; -1 for those absent. Returns -1 when that struct_size is too small.
int ddpm_cost_from_properties(const void *properties, size_t n, double *flops, double *bytes);

// ddpm_cost reads XLA's cost analysis of a loaded executable: its "flops" and "bytes accessed" (-1 when
// the plugin does not report one).
void *ddpm_cost(void *loaded, double *flops, double *bytes);

// ddpm_destroy_loaded frees a loaded executable.
void ddpm_destroy_loaded(void *loaded);

// ddpm_error_message copies a PJRT_Error's message into buf (of size n) and destroys the error.
void ddpm_error_take(void *err, char *buf, size_t n);

#endif
