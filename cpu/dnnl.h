// The subset of oneDNN's C API (version 2.x, libdnnl.so.2) that the engine uses, declared by us and
// loaded with dlopen/dlsym, so that building needs no oneDNN headers and a machine without the library
// still runs the binary. Names follow oneDNN's without the dnnl_ prefix. Sizes of the descriptor
// structs are those of oneDNN 2.6 (x86-64); the library only ever writes inside them.
#ifndef DDPM_CPU_DNNL_H
#define DDPM_CPU_DNNL_H

#include <stddef.h>
#include <stdint.h>

typedef int64_t dnnl_dims[12];
typedef struct { _Alignas(16) unsigned char b[696]; } dnnl_md;       // dnnl_memory_desc_t
typedef struct { _Alignas(16) unsigned char b[8192]; } dnnl_op_desc; // any dnnl_*_desc_t (conv: 5976)
typedef struct { int arg; void *memory; } dnnl_exec_arg;
typedef void *dnnl_handle; // engines, streams, memories, primitives, descriptors, attributes

enum {
	DNNL_F32 = 3,
	DNNL_TAG_ANY = 1,
	DNNL_CPU = 1,
	DNNL_FORWARD_TRAINING = 64,
	DNNL_FORWARD_INFERENCE = 96,
	DNNL_CONV_DIRECT = 1,
	DNNL_CONV_AUTO = 3,
	DNNL_ARG_SRC = 1,
	DNNL_ARG_DST = 17,
	DNNL_ARG_WEIGHTS = 33,
	DNNL_ARG_BIAS = 41,
	DNNL_ARG_SCRATCHPAD = 80,
	DNNL_ARG_DIFF_SRC = 129,
	DNNL_ARG_DIFF_DST = 145,
	DNNL_ARG_DIFF_WEIGHTS = 161,
	DNNL_ARG_DIFF_BIAS = 169,
	DNNL_QUERY_IMPL_INFO_STR = 8,
	DNNL_QUERY_SRC_MD = 129,
	DNNL_QUERY_DIFF_SRC_MD = 130,
	DNNL_QUERY_WEIGHTS_MD = 131,
	DNNL_QUERY_DIFF_WEIGHTS_MD = 132,
	DNNL_QUERY_DST_MD = 133,
	DNNL_QUERY_DIFF_DST_MD = 134,
	DNNL_QUERY_SCRATCHPAD_MD = 136,
	DNNL_SCRATCHPAD_USER = 1,
};

struct ddpm_dnnl_api {
	int (*engine_create)(dnnl_handle *engine, int kind, size_t index);
	int (*stream_create)(dnnl_handle *stream, dnnl_handle engine, unsigned flags);
	int (*stream_wait)(dnnl_handle stream);
	int (*memory_desc_init_by_tag)(dnnl_md *md, int ndims, const int64_t *dims, int dtype, int tag);
	int (*memory_desc_init_by_strides)(dnnl_md *md, int ndims, const int64_t *dims, int dtype, const int64_t *strides);
	size_t (*memory_desc_get_size)(const dnnl_md *md);
	int (*memory_desc_equal)(const dnnl_md *a, const dnnl_md *b);
	int (*memory_create)(dnnl_handle *memory, const dnnl_md *md, dnnl_handle engine, void *handle);
	int (*memory_set_data_handle)(dnnl_handle memory, void *handle);
	int (*memory_destroy)(dnnl_handle memory);
	int (*convolution_forward_desc_init)(dnnl_op_desc *d, int prop, int alg, const dnnl_md *src, const dnnl_md *weights,
	                                     const dnnl_md *bias, const dnnl_md *dst, const int64_t *strides,
	                                     const int64_t *pad_l, const int64_t *pad_r);
	int (*convolution_backward_data_desc_init)(dnnl_op_desc *d, int alg, const dnnl_md *diff_src, const dnnl_md *weights,
	                                           const dnnl_md *diff_dst, const int64_t *strides, const int64_t *pad_l,
	                                           const int64_t *pad_r);
	int (*convolution_backward_weights_desc_init)(dnnl_op_desc *d, int alg, const dnnl_md *src, const dnnl_md *diff_weights,
	                                              const dnnl_md *diff_bias, const dnnl_md *diff_dst, const int64_t *strides,
	                                              const int64_t *pad_l, const int64_t *pad_r);
	int (*matmul_desc_init)(dnnl_op_desc *d, const dnnl_md *src, const dnnl_md *weights, const dnnl_md *bias, const dnnl_md *dst);
	int (*primitive_desc_create)(dnnl_handle *pd, const void *op_desc, dnnl_handle attr, dnnl_handle engine, dnnl_handle hint);
	int (*primitive_desc_destroy)(dnnl_handle pd);
	const dnnl_md *(*primitive_desc_query_md)(dnnl_handle pd, int what, int index);
	int (*primitive_desc_query)(dnnl_handle pd, int what, int index, void *result);
	int (*primitive_create)(dnnl_handle *prim, dnnl_handle pd);
	int (*primitive_execute)(dnnl_handle prim, dnnl_handle stream, int nargs, const dnnl_exec_arg *args);
	int (*primitive_destroy)(dnnl_handle prim);
	int (*reorder_primitive_desc_create)(dnnl_handle *pd, const dnnl_md *src, dnnl_handle src_engine, const dnnl_md *dst,
	                                     dnnl_handle dst_engine, dnnl_handle attr);
	int (*primitive_attr_create)(dnnl_handle *attr);
	int (*primitive_attr_destroy)(dnnl_handle attr);
	int (*primitive_attr_set_post_ops)(dnnl_handle attr, dnnl_handle post_ops);
	int (*primitive_attr_set_scratchpad_mode)(dnnl_handle attr, int mode);
	int (*post_ops_create)(dnnl_handle *post_ops);
	int (*post_ops_destroy)(dnnl_handle post_ops);
	int (*post_ops_append_sum)(dnnl_handle post_ops, float scale);
	const void *(*version)(void);
};

// dnnl is the loaded API table; its entries are valid after ddpm_dnnl_load returned 0.
extern struct ddpm_dnnl_api dnnl;
extern dnnl_handle ddpm_engine, ddpm_stream;

// ddpm_dnnl_load opens libdnnl.so.2 (path NULL) or path, fills dnnl, creates the CPU engine and stream,
// and finds the OpenMP runtime oneDNN uses (for ddpm_parallel_for). 0 on success, else -1 with a
// message in err.
int ddpm_dnnl_load(const char *path, char *err, size_t n);

// A ddpm_op is one oneDNN primitive with its memory objects (one per argument, data pointers set at
// each run) and, when the primitive wants its weights in another layout, the packed weights.
#define DDPM_OP_MAXARGS 6
typedef struct {
	dnnl_handle pd, prim;
	int nargs;
	int arg[DDPM_OP_MAXARGS];
	dnnl_handle mem[DDPM_OP_MAXARGS];
	// weights: the argument index of the weights (-1: none), the user layout, the packed buffer
	int wslot;
	dnnl_md wuser;
	dnnl_handle wreorder, wuser_mem;
	float *wpacked; // NULL: weights are used in place, in the user layout
} ddpm_op;

// ddpm_conv_fwd makes a 2-D convolution x [N,H,W,IC] (nhwc) * w [OC,IC,k,k] (+ b [OC]) -> y [N,OH,OW,OC]
// (nhwc). sum = 1 adds the convolution to what y holds (a residual). Weights are packed by ddpm_op_pack.
int ddpm_conv_fwd(ddpm_op *op, int n, int ic, int ih, int iw, int oc, int oh, int ow, int k, int stride,
                  int pt, int pl, int pb, int pr, int sum, char *err, size_t errn);

// ddpm_matmul makes dst = src @ weights (+ bias) (+ dst if sum), each a strided tensor of rank nd (<= 4):
// dims and strides per operand; bias broadcast over all but the last axis (rank nd, ones elsewhere).
// pack = 1: the weights are constant (a layer's) and may be packed by ddpm_op_pack.
int ddpm_matmul(ddpm_op *op, int nd, const int64_t *sd, const int64_t *ss, const int64_t *wd, const int64_t *ws,
                const int64_t *dd, const int64_t *ds, int bias, int sum, int pack, char *err, size_t errn);

// ddpm_op_pack copies weights (in the user layout given at creation) into the primitive's layout.
int ddpm_op_pack(ddpm_op *op, const float *w, char *err, size_t errn);

// ddpm_op_run executes op with data pointers ptrs, one per argument in the order of creation
// (conv: src, weights, bias, dst; matmul: src, weights, [bias], dst); the weights pointer is
// ignored when the op holds packed weights.
int ddpm_op_run(ddpm_op *op, void *const *ptrs, char *err, size_t errn);

void ddpm_op_free(ddpm_op *op);

// ddpm_dnnl_version points at oneDNN's major, minor and patch numbers.
const int *ddpm_dnnl_version(void);

// ddpm_op_impl is oneDNN's name for the implementation the op runs ("brg:avx2", "gemm:jit", ...).
const char *ddpm_op_impl(ddpm_op *op);

#endif
