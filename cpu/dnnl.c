// See dnnl.h.
#include "dnnl.h"
#include "parallel.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ddpm_dnnl_api dnnl;
dnnl_handle ddpm_engine, ddpm_stream;

static void *lib;

#define SYM(field, name)                                                                                   \
	do {                                                                                               \
		*(void **)&dnnl.field = dlsym(lib, name);                                                  \
		if (!dnnl.field) {                                                                         \
			snprintf(err, n, "%s has no %s (want oneDNN 2.x)", path, name);                    \
			return -1;                                                                         \
		}                                                                                          \
	} while (0)

int ddpm_dnnl_load(const char *path, char *err, size_t n) {
	if (lib) {
		return 0;
	}
	if (!path) {
		path = "libdnnl.so.2";
	}
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, n, "%s", dlerror());
		return -1;
	}
	lib = h;
	SYM(engine_create, "dnnl_engine_create");
	SYM(stream_create, "dnnl_stream_create");
	SYM(stream_wait, "dnnl_stream_wait");
	SYM(memory_desc_init_by_tag, "dnnl_memory_desc_init_by_tag");
	SYM(memory_desc_init_by_strides, "dnnl_memory_desc_init_by_strides");
	SYM(memory_desc_get_size, "dnnl_memory_desc_get_size");
	SYM(memory_desc_equal, "dnnl_memory_desc_equal");
	SYM(memory_create, "dnnl_memory_create");
	SYM(memory_set_data_handle, "dnnl_memory_set_data_handle");
	SYM(memory_destroy, "dnnl_memory_destroy");
	SYM(convolution_forward_desc_init, "dnnl_convolution_forward_desc_init");
	SYM(convolution_backward_data_desc_init, "dnnl_convolution_backward_data_desc_init");
	SYM(convolution_backward_weights_desc_init, "dnnl_convolution_backward_weights_desc_init");
	SYM(matmul_desc_init, "dnnl_matmul_desc_init");
	SYM(primitive_desc_create, "dnnl_primitive_desc_create");
	SYM(primitive_desc_destroy, "dnnl_primitive_desc_destroy");
	SYM(primitive_desc_query_md, "dnnl_primitive_desc_query_md");
	SYM(primitive_desc_query, "dnnl_primitive_desc_query");
	SYM(primitive_create, "dnnl_primitive_create");
	SYM(primitive_execute, "dnnl_primitive_execute");
	SYM(primitive_destroy, "dnnl_primitive_destroy");
	SYM(reorder_primitive_desc_create, "dnnl_reorder_primitive_desc_create");
	SYM(primitive_attr_create, "dnnl_primitive_attr_create");
	SYM(primitive_attr_destroy, "dnnl_primitive_attr_destroy");
	SYM(primitive_attr_set_post_ops, "dnnl_primitive_attr_set_post_ops");
	SYM(primitive_attr_set_scratchpad_mode, "dnnl_primitive_attr_set_scratchpad_mode");
	SYM(post_ops_create, "dnnl_post_ops_create");
	SYM(post_ops_destroy, "dnnl_post_ops_destroy");
	SYM(post_ops_append_sum, "dnnl_post_ops_append_sum");
	SYM(version, "dnnl_version");
	int s = dnnl.engine_create(&ddpm_engine, DNNL_CPU, 0);
	if (s == 0) {
		s = dnnl.stream_create(&ddpm_stream, ddpm_engine, 0);
	}
	if (s != 0) {
		snprintf(err, n, "%s: creating the CPU engine: status %d", path, s);
		lib = NULL;
		return -1;
	}
	ddpm_parallel_init(h);
	return 0;
}

static int check(int s, const char *what, char *err, size_t n) {
	if (s != 0) {
		snprintf(err, n, "oneDNN: %s: status %d", what, s);
		return -1;
	}
	return 0;
}

// finish creates the primitive and one memory object per argument of mds (NULL: none).
static int finish(ddpm_op *op, void *desc, dnnl_handle attr, const int *args, const dnnl_md *const *mds, int nargs,
                  char *err, size_t n) {
	int s = dnnl.primitive_desc_create(&op->pd, desc, attr, ddpm_engine, NULL);
	if (check(s, "primitive descriptor", err, n)) {
		return -1;
	}
	if (check(dnnl.primitive_create(&op->prim, op->pd), "primitive", err, n)) {
		return -1;
	}
	op->nargs = nargs;
	for (int i = 0; i < nargs; i++) {
		op->arg[i] = args[i];
		if (check(dnnl.memory_create(&op->mem[i], mds[i], ddpm_engine, NULL), "memory", err, n)) {
			return -1;
		}
	}
	return 0;
}

// want_packed sets up the weights reorder when the primitive's weights layout (query what) differs
// from the user layout.
static int want_packed(ddpm_op *op, int slot, const dnnl_md *user, int what, char *err, size_t n) {
	op->wslot = slot;
	op->wuser = *user;
	const dnnl_md *pmd = dnnl.primitive_desc_query_md(op->pd, what, 0);
	size_t size = dnnl.memory_desc_get_size(pmd);
	op->wpacked = aligned_alloc(64, (size + 63) / 64 * 64);
	if (!op->wpacked) {
		snprintf(err, n, "out of memory for %zu bytes of weights", size);
		return -1;
	}
	memset(op->wpacked, 0, size);
	dnnl_handle rpd;
	if (check(dnnl.reorder_primitive_desc_create(&rpd, user, ddpm_engine, pmd, ddpm_engine, NULL), "weights reorder", err, n)) {
		return -1;
	}
	int s = dnnl.primitive_create(&op->wreorder, rpd);
	dnnl.primitive_desc_destroy(rpd);
	if (check(s, "weights reorder primitive", err, n)) {
		return -1;
	}
	if (check(dnnl.memory_create(&op->wuser_mem, user, ddpm_engine, NULL), "memory", err, n)) {
		return -1;
	}
	// The op's weights memory keeps the packed buffer.
	dnnl.memory_destroy(op->mem[slot]);
	if (check(dnnl.memory_create(&op->mem[slot], pmd, ddpm_engine, op->wpacked), "memory", err, n)) {
		return -1;
	}
	return 0;
}

int ddpm_conv_fwd(ddpm_op *op, int nb, int ic, int ih, int iw, int oc, int oh, int ow, int k, int stride, int pt,
                  int pl, int pb, int pr, int sum, char *err, size_t n) {
	memset(op, 0, sizeof *op);
	op->wslot = -1;
	dnnl_md src, wany, wuser, bias, dst;
	int64_t sd[4] = {nb, ic, ih, iw}, wd[4] = {oc, ic, k, k}, bd[1] = {oc}, dd[4] = {nb, oc, oh, ow};
	int64_t st[2] = {stride, stride}, padl[2] = {pt, pl}, padr[2] = {pb, pr};
	const int nhwc = 20, oihw = 5, x = 2;
	dnnl.memory_desc_init_by_tag(&src, 4, sd, DNNL_F32, nhwc);
	dnnl.memory_desc_init_by_tag(&wany, 4, wd, DNNL_F32, DNNL_TAG_ANY);
	dnnl.memory_desc_init_by_tag(&wuser, 4, wd, DNNL_F32, oihw);
	dnnl.memory_desc_init_by_tag(&bias, 1, bd, DNNL_F32, x);
	dnnl.memory_desc_init_by_tag(&dst, 4, dd, DNNL_F32, nhwc);
	dnnl_op_desc d;
	if (check(dnnl.convolution_forward_desc_init(&d, DNNL_FORWARD_INFERENCE, DNNL_CONV_DIRECT, &src, &wany, &bias, &dst,
	                                             st, padl, padr),
	          "convolution descriptor", err, n)) {
		return -1;
	}
	dnnl_handle attr = NULL, po = NULL;
	if (sum) {
		dnnl.primitive_attr_create(&attr);
		dnnl.post_ops_create(&po);
		dnnl.post_ops_append_sum(po, 1.0f);
		dnnl.primitive_attr_set_post_ops(attr, po);
	}
	const int args[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
	const dnnl_md *mds[4] = {&src, &wuser, &bias, &dst};
	int r = finish(op, &d, attr, args, mds, 4, err, n);
	if (attr) {
		dnnl.post_ops_destroy(po);
		dnnl.primitive_attr_destroy(attr);
	}
	if (r) {
		return r;
	}
	return want_packed(op, 1, &wuser, DNNL_QUERY_WEIGHTS_MD, err, n);
}

int ddpm_matmul(ddpm_op *op, int nd, const int64_t *sd, const int64_t *ss, const int64_t *wd, const int64_t *ws,
                const int64_t *dd, const int64_t *ds, int bias, int sum, int pack, char *err, size_t n) {
	memset(op, 0, sizeof *op);
	op->wslot = -1;
	dnnl_md src, wei, wany, bmd, dst;
	dnnl.memory_desc_init_by_strides(&src, nd, sd, DNNL_F32, ss);
	dnnl.memory_desc_init_by_strides(&wei, nd, wd, DNNL_F32, ws);
	dnnl.memory_desc_init_by_strides(&dst, nd, dd, DNNL_F32, ds);
	if (pack) {
		dnnl.memory_desc_init_by_tag(&wany, nd, wd, DNNL_F32, DNNL_TAG_ANY);
	}
	if (bias) {
		int64_t bd[4], bs[4];
		for (int i = 0; i < nd; i++) {
			bd[i] = i == nd - 1 ? dd[i] : 1;
		}
		int64_t stride = 1;
		for (int i = nd - 1; i >= 0; i--) {
			bs[i] = stride;
			stride *= bd[i];
		}
		dnnl.memory_desc_init_by_strides(&bmd, nd, bd, DNNL_F32, bs);
	}
	dnnl_op_desc d;
	if (check(dnnl.matmul_desc_init(&d, &src, pack ? &wany : &wei, bias ? &bmd : NULL, &dst), "matmul descriptor", err, n)) {
		return -1;
	}
	dnnl_handle attr = NULL, po = NULL;
	if (sum) {
		dnnl.primitive_attr_create(&attr);
		dnnl.post_ops_create(&po);
		dnnl.post_ops_append_sum(po, 1.0f);
		dnnl.primitive_attr_set_post_ops(attr, po);
	}
	int args[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
	const dnnl_md *mds[4] = {&src, &wei, &bmd, &dst};
	if (!bias) {
		args[2] = DNNL_ARG_DST;
		mds[2] = &dst;
	}
	int r = finish(op, &d, attr, args, mds, bias ? 4 : 3, err, n);
	if (attr) {
		dnnl.post_ops_destroy(po);
		dnnl.primitive_attr_destroy(attr);
	}
	if (r || !pack) {
		return r;
	}
	return want_packed(op, 1, &wei, DNNL_QUERY_WEIGHTS_MD, err, n);
}

int ddpm_op_pack(ddpm_op *op, const float *w, char *err, size_t n) {
	if (!op->wreorder) {
		snprintf(err, n, "op has no packed weights");
		return -1;
	}
	dnnl.memory_set_data_handle(op->wuser_mem, (void *)w);
	dnnl_exec_arg a[2] = {{DNNL_ARG_SRC, op->wuser_mem}, {DNNL_ARG_DST, op->mem[op->wslot]}};
	if (check(dnnl.primitive_execute(op->wreorder, ddpm_stream, 2, a), "weights reorder", err, n)) {
		return -1;
	}
	return check(dnnl.stream_wait(ddpm_stream), "stream", err, n);
}

int ddpm_op_run(ddpm_op *op, void *const *ptrs, char *err, size_t n) {
	dnnl_exec_arg a[DDPM_OP_MAXARGS];
	for (int i = 0; i < op->nargs; i++) {
		if (i != op->wslot || !op->wpacked) {
			dnnl.memory_set_data_handle(op->mem[i], ptrs[i]);
		}
		a[i].arg = op->arg[i];
		a[i].memory = op->mem[i];
	}
	if (check(dnnl.primitive_execute(op->prim, ddpm_stream, op->nargs, a), "execute", err, n)) {
		return -1;
	}
	return check(dnnl.stream_wait(ddpm_stream), "stream", err, n);
}

void ddpm_op_free(ddpm_op *op) {
	for (int i = 0; i < op->nargs; i++) {
		if (op->mem[i]) {
			dnnl.memory_destroy(op->mem[i]);
		}
	}
	if (op->wuser_mem) {
		dnnl.memory_destroy(op->wuser_mem);
	}
	if (op->wreorder) {
		dnnl.primitive_destroy(op->wreorder);
	}
	if (op->prim) {
		dnnl.primitive_destroy(op->prim);
	}
	if (op->pd) {
		dnnl.primitive_desc_destroy(op->pd);
	}
	free(op->wpacked);
	memset(op, 0, sizeof *op);
}

const char *ddpm_op_impl(ddpm_op *op) {
	const char *s = NULL;
	if (op->pd) {
		dnnl.primitive_desc_query(op->pd, DNNL_QUERY_IMPL_INFO_STR, 0, &s);
	}
	return s ? s : "";
}

const int *ddpm_dnnl_version(void) { return (const int *)dnnl.version(); }
