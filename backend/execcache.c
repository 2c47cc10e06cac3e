// See execcache.h and execcache.go.
#include "execcache.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// PJRT_Api: struct_size, extension_start, PJRT_Api_Version (24 bytes), then function pointers.
typedef void *(*pjrt_fn)(void *args);
typedef struct {
	size_t struct_size;
	void *extension_start;
	size_t version_struct_size;
	void *version_extension_start;
	int major_version;
	int minor_version;
	pjrt_fn fn[];
} api_table;

static const api_table *real_api;
static api_table *wrapped_api;

extern void *ddpmCompileHook(void *args); // Go, execcache.go

static void *compile_hook(void *args) { return ddpmCompileHook(args); }

// PJRT_LoadedExecutable_Execute_Args, up to the field the hook changes.
typedef struct {
	size_t struct_size;
	void *extension_start;
	void *executable;
	void *options;
	void *argument_lists;
	size_t num_devices;
	size_t num_args;
	void *output_lists;
	void **device_complete_events; // in/out
} execute_args;

static atomic_int async_execute;

void ddpm_set_async(int on) { atomic_store(&async_execute, on); }

// execute_hook launches an execution. In async mode it drops the request for completion events: the
// caller (go-xla's ExecuteAndWait) waits on them only when the field is set after the call. PJRT orders
// later executions and transfers after this one by the buffers' own events, as it does for JAX.
static void *execute_hook(void *args) {
	execute_args *a = args;
	if (atomic_load(&async_execute)) {
		a->device_complete_events = NULL;
	}
	return real_api->fn[DDPM_PJRT_LoadedExecutable_Execute](args);
}

const void *ddpm_open_plugin(const char *path, char *err, size_t n) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, n, "dlopen: %s", dlerror());
		return NULL;
	}
	const void *(*get)(void) = (const void *(*)(void))dlsym(h, "GetPjrtApi");
	if (!get) {
		snprintf(err, n, "no GetPjrtApi in %s", path);
		dlclose(h);
		return NULL;
	}
	const void *api = get();
	if (!api) {
		snprintf(err, n, "GetPjrtApi returned NULL");
		dlclose(h);
	}
	return api; // the plugin stays loaded for the life of the process
}

int ddpm_loaded(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (h) {
		dlclose(h);
	}
	return h != NULL;
}

const void *ddpm_wrap_api(const void *real) {
	const api_table *r = (const api_table *)real;
	size_t need = offsetof(api_table, fn) + sizeof(pjrt_fn) * (DDPM_PJRT_Executable_DeserializeAndLoad + 1);
	if (wrapped_api || r->struct_size < need) {
		return NULL;
	}
	wrapped_api = malloc(r->struct_size);
	if (!wrapped_api) {
		return NULL;
	}
	memcpy(wrapped_api, r, r->struct_size);
	real_api = r;
	wrapped_api->fn[DDPM_PJRT_Client_Compile] = compile_hook;
	wrapped_api->fn[DDPM_PJRT_LoadedExecutable_Execute] = execute_hook;
	return wrapped_api;
}

// PJRT_Program and PJRT_Client_Compile_Args.
typedef struct {
	size_t struct_size;
	void *extension_start;
	char *code;
	size_t code_size;
	const char *format;
	size_t format_size;
} program;

typedef struct {
	size_t struct_size;
	void *extension_start;
	void *client;
	const program *program;
	const char *compile_options;
	size_t compile_options_size;
	void *executable; // out
} compile_args;

void ddpm_compile_args(void *a, void **client, const char **code, size_t *code_size, const char **format,
		size_t *format_size, const char **options, size_t *options_size) {
	compile_args *c = a;
	*client = c->client;
	*code = c->program->code;
	*code_size = c->program->code_size;
	*format = c->program->format;
	*format_size = c->program->format_size;
	*options = c->compile_options;
	*options_size = c->compile_options_size;
}

void ddpm_set_executable(void *a, void *loaded) { ((compile_args *)a)->executable = loaded; }

void *ddpm_get_executable(void *a) { return ((compile_args *)a)->executable; }

void *ddpm_real_compile(void *args) { return real_api->fn[DDPM_PJRT_Client_Compile](args); }

typedef struct {
	size_t struct_size;
	void *extension_start;
	void *loaded_executable;
	void *executable; // out
} get_executable_args;

typedef struct {
	size_t struct_size;
	void *extension_start;
	void *executable;
} destroy_args; // PJRT_Executable_Destroy_Args and PJRT_LoadedExecutable_Destroy_Args

typedef struct {
	size_t struct_size;
	void *extension_start;
	const void *executable;
	const char *serialized_bytes;         // out
	size_t serialized_bytes_size;         // out
	void *serialized_executable;          // out
	void (*serialized_executable_deleter)(void *); // out
} serialize_args;

typedef struct {
	size_t struct_size;
	void *extension_start;
	void *client;
	const char *serialized_executable;
	size_t serialized_executable_size;
	void *loaded_executable; // out
	const char *overridden_serialized_compile_options;
	size_t overridden_serialized_compile_options_size;
} deserialize_args;

void *ddpm_serialize(void *loaded, char **out, size_t *size) {
	*out = NULL;
	*size = 0;
	get_executable_args g = {sizeof g, NULL, loaded, NULL};
	void *err = real_api->fn[DDPM_PJRT_LoadedExecutable_GetExecutable](&g);
	if (err) {
		return err;
	}
	serialize_args s;
	memset(&s, 0, sizeof s);
	s.struct_size = sizeof s;
	s.executable = g.executable;
	err = real_api->fn[DDPM_PJRT_Executable_Serialize](&s);
	if (!err) {
		*out = malloc(s.serialized_bytes_size ? s.serialized_bytes_size : 1);
		if (*out) {
			memcpy(*out, s.serialized_bytes, s.serialized_bytes_size);
			*size = s.serialized_bytes_size;
		}
		if (s.serialized_executable_deleter) {
			s.serialized_executable_deleter(s.serialized_executable);
		}
	}
	destroy_args d = {sizeof d, NULL, g.executable};
	void *derr = real_api->fn[DDPM_PJRT_Executable_Destroy](&d);
	if (derr && !err) {
		return derr;
	}
	return err;
}

void *ddpm_deserialize(void *client, const char *data, size_t size, void **loaded) {
	deserialize_args a;
	memset(&a, 0, sizeof a);
	a.struct_size = sizeof a;
	a.client = client;
	a.serialized_executable = data;
	a.serialized_executable_size = size;
	void *err = real_api->fn[DDPM_PJRT_Executable_DeserializeAndLoad](&a);
	*loaded = err ? NULL : a.loaded_executable;
	return err;
}

typedef struct {
	size_t struct_size;
	void *extension_start;
	const void *executable;
	size_t num_properties;   // out
	const void *properties;  // out: PJRT_NamedValue[num_properties]
} cost_args;

typedef struct { // PJRT_NamedValue
	size_t struct_size;
	void *extension_start;
	const char *name;
	size_t name_size;
	int type; // PJRT_NamedValue_Type: 0 string, 1 int64, 2 int64 list, 3 float, 4 bool
	union {
		const char *string_value;
		long long int64_value;
		const long long *int64_array_value;
		float float_value;
		_Bool bool_value;
	};
	size_t value_size;
} named_value;

int ddpm_cost_from_properties(const void *properties, size_t n, double *flops, double *bytes) {
	*flops = -1;
	*bytes = -1;
	if (n == 0) {
		return 0;
	}
	// The plugin's PJRT_NamedValue may be larger than ours (structs grow at their end): step by the
	// struct_size it states, and read only fields that it covers.
	size_t stride = ((const named_value *)properties)->struct_size;
	if (stride < offsetof(named_value, value_size)) {
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const named_value *v = (const named_value *)((const char *)properties + i * stride);
		double x = v->type == 3 ? v->float_value : v->type == 1 ? (double)v->int64_value : -1;
		if (v->name_size == 5 && memcmp(v->name, "flops", 5) == 0) {
			*flops = x;
		} else if (v->name_size == 14 && memcmp(v->name, "bytes accessed", 14) == 0) {
			*bytes = x;
		}
	}
	return 0;
}

void *ddpm_cost(void *loaded, double *flops, double *bytes) {
	*flops = -1;
	*bytes = -1;
	get_executable_args g = {sizeof g, NULL, loaded, NULL};
	void *err = real_api->fn[DDPM_PJRT_LoadedExecutable_GetExecutable](&g);
	if (err) {
		return err;
	}
	cost_args c = {sizeof c, NULL, g.executable, 0, NULL};
	err = real_api->fn[DDPM_PJRT_Executable_GetCostAnalysis](&c);
	if (!err && c.properties) {
		ddpm_cost_from_properties(c.properties, c.num_properties, flops, bytes);
	}
	destroy_args d = {sizeof d, NULL, g.executable};
	void *derr = real_api->fn[DDPM_PJRT_Executable_Destroy](&d);
	if (derr && !err) {
		return derr;
	}
	return err;
}

void ddpm_destroy_loaded(void *loaded) {
	destroy_args d = {sizeof d, NULL, loaded};
	void *err = real_api->fn[DDPM_PJRT_LoadedExecutable_Destroy](&d);
	if (err) {
		ddpm_error_take(err, NULL, 0);
	}
}

typedef struct {
	size_t struct_size;
	void *extension_start;
	const void *error;
	const char *message; // out
	size_t message_size; // out
} error_message_args;

typedef struct {
	size_t struct_size;
	void *extension_start;
	void *error;
} error_destroy_args;

void ddpm_error_take(void *err, char *buf, size_t n) {
	if (buf && n > 0) {
		error_message_args m = {sizeof m, NULL, err, NULL, 0};
		((void (*)(void *))real_api->fn[DDPM_PJRT_Error_Message])(&m);
		size_t k = m.message_size < n - 1 ? m.message_size : n - 1;
		if (m.message) {
			memcpy(buf, m.message, k);
		}
		buf[k] = 0;
	}
	error_destroy_args d = {sizeof d, NULL, err};
	((void (*)(void *))real_api->fn[DDPM_PJRT_Error_Destroy])(&d);
}

// The layouts above against the vendored pjrt_c_api.h (a copy of go-xla v0.1.4's; execcache_test.go
// checks that it is the same file): a field that moves fails the build, not a run on a GPU.
#include "pjrt_c_api.h"

#define SAME_OFFSET(ours, field, theirs, their_field)                                            \
	_Static_assert(offsetof(ours, field) == offsetof(theirs, their_field),                        \
		#ours "." #field " is not at the offset of " #theirs "." #their_field " in pjrt_c_api.h")
#define FN_INDEX(name)                                                                          \
	_Static_assert(offsetof(api_table, fn) + DDPM_##name * sizeof(pjrt_fn) == offsetof(PJRT_Api, name), \
		"DDPM_" #name " is not the index of " #name " in pjrt_c_api.h's PJRT_Api")

SAME_OFFSET(api_table, version_struct_size, PJRT_Api, pjrt_api_version);
_Static_assert(offsetof(api_table, major_version) == offsetof(PJRT_Api, pjrt_api_version) + offsetof(PJRT_Api_Version, major_version), "PJRT_Api_Version.major_version");
_Static_assert(offsetof(api_table, minor_version) == offsetof(PJRT_Api, pjrt_api_version) + offsetof(PJRT_Api_Version, minor_version), "PJRT_Api_Version.minor_version");
_Static_assert(offsetof(api_table, fn) == offsetof(PJRT_Api, PJRT_Error_Destroy), "the function table starts at PJRT_Error_Destroy");
FN_INDEX(PJRT_Error_Destroy);
FN_INDEX(PJRT_Error_Message);
FN_INDEX(PJRT_Client_Compile);
FN_INDEX(PJRT_Executable_Destroy);
FN_INDEX(PJRT_Executable_GetCostAnalysis);
FN_INDEX(PJRT_Executable_Serialize);
FN_INDEX(PJRT_LoadedExecutable_Destroy);
FN_INDEX(PJRT_LoadedExecutable_GetExecutable);
FN_INDEX(PJRT_LoadedExecutable_Execute);
FN_INDEX(PJRT_Executable_DeserializeAndLoad);

SAME_OFFSET(execute_args, executable, PJRT_LoadedExecutable_Execute_Args, executable);
SAME_OFFSET(execute_args, options, PJRT_LoadedExecutable_Execute_Args, options);
SAME_OFFSET(execute_args, argument_lists, PJRT_LoadedExecutable_Execute_Args, argument_lists);
SAME_OFFSET(execute_args, num_devices, PJRT_LoadedExecutable_Execute_Args, num_devices);
SAME_OFFSET(execute_args, num_args, PJRT_LoadedExecutable_Execute_Args, num_args);
SAME_OFFSET(execute_args, output_lists, PJRT_LoadedExecutable_Execute_Args, output_lists);
SAME_OFFSET(execute_args, device_complete_events, PJRT_LoadedExecutable_Execute_Args, device_complete_events);

SAME_OFFSET(program, code, PJRT_Program, code);
SAME_OFFSET(program, code_size, PJRT_Program, code_size);
SAME_OFFSET(program, format, PJRT_Program, format);
SAME_OFFSET(program, format_size, PJRT_Program, format_size);

SAME_OFFSET(compile_args, client, PJRT_Client_Compile_Args, client);
SAME_OFFSET(compile_args, program, PJRT_Client_Compile_Args, program);
SAME_OFFSET(compile_args, compile_options, PJRT_Client_Compile_Args, compile_options);
SAME_OFFSET(compile_args, compile_options_size, PJRT_Client_Compile_Args, compile_options_size);
SAME_OFFSET(compile_args, executable, PJRT_Client_Compile_Args, executable);

SAME_OFFSET(get_executable_args, loaded_executable, PJRT_LoadedExecutable_GetExecutable_Args, loaded_executable);
SAME_OFFSET(get_executable_args, executable, PJRT_LoadedExecutable_GetExecutable_Args, executable);
SAME_OFFSET(destroy_args, executable, PJRT_Executable_Destroy_Args, executable);
SAME_OFFSET(destroy_args, executable, PJRT_LoadedExecutable_Destroy_Args, executable);

SAME_OFFSET(serialize_args, executable, PJRT_Executable_Serialize_Args, executable);
SAME_OFFSET(serialize_args, serialized_bytes, PJRT_Executable_Serialize_Args, serialized_bytes);
SAME_OFFSET(serialize_args, serialized_bytes_size, PJRT_Executable_Serialize_Args, serialized_bytes_size);
SAME_OFFSET(serialize_args, serialized_executable, PJRT_Executable_Serialize_Args, serialized_executable);
SAME_OFFSET(serialize_args, serialized_executable_deleter, PJRT_Executable_Serialize_Args, serialized_executable_deleter);

SAME_OFFSET(deserialize_args, client, PJRT_Executable_DeserializeAndLoad_Args, client);
SAME_OFFSET(deserialize_args, serialized_executable, PJRT_Executable_DeserializeAndLoad_Args, serialized_executable);
SAME_OFFSET(deserialize_args, serialized_executable_size, PJRT_Executable_DeserializeAndLoad_Args, serialized_executable_size);
SAME_OFFSET(deserialize_args, loaded_executable, PJRT_Executable_DeserializeAndLoad_Args, loaded_executable);
SAME_OFFSET(deserialize_args, overridden_serialized_compile_options, PJRT_Executable_DeserializeAndLoad_Args, overridden_serialized_compile_options);
SAME_OFFSET(deserialize_args, overridden_serialized_compile_options_size, PJRT_Executable_DeserializeAndLoad_Args, overridden_serialized_compile_options_size);
_Static_assert(sizeof(deserialize_args) <= sizeof(PJRT_Executable_DeserializeAndLoad_Args), "deserialize_args is larger than the header's struct");

SAME_OFFSET(cost_args, executable, PJRT_Executable_GetCostAnalysis_Args, executable);
SAME_OFFSET(cost_args, num_properties, PJRT_Executable_GetCostAnalysis_Args, num_properties);
SAME_OFFSET(cost_args, properties, PJRT_Executable_GetCostAnalysis_Args, properties);

SAME_OFFSET(named_value, name, PJRT_NamedValue, name);
SAME_OFFSET(named_value, name_size, PJRT_NamedValue, name_size);
SAME_OFFSET(named_value, type, PJRT_NamedValue, type);
SAME_OFFSET(named_value, int64_value, PJRT_NamedValue, int64_value);
SAME_OFFSET(named_value, float_value, PJRT_NamedValue, float_value);
SAME_OFFSET(named_value, value_size, PJRT_NamedValue, value_size);
_Static_assert(sizeof(named_value) == sizeof(PJRT_NamedValue), "named_value's size");
_Static_assert(PJRT_NamedValue_kFloat == 3 && PJRT_NamedValue_kInt64 == 1, "PJRT_NamedValue_Type's values");

SAME_OFFSET(error_message_args, error, PJRT_Error_Message_Args, error);
SAME_OFFSET(error_message_args, message, PJRT_Error_Message_Args, message);
SAME_OFFSET(error_message_args, message_size, PJRT_Error_Message_Args, message_size);
SAME_OFFSET(error_destroy_args, error, PJRT_Error_Destroy_Args, error);
