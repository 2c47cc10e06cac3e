// backward.c: the convolution's two backward primitives on oneDNN, in the ddpm_op style of dnnl.c.
// Activations nhwc, weights in the user layout [OC,IC,k,k] (oihw) outside, oneDNN's chosen layout
// inside (packed by ddpm_op_pack for backward-data; reordered out after backward-weights).
#include "backward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bcheck(int s, const char *what, char *err, size_t n) {
  if (s != 0) {
    snprintf(err, n, "oneDNN: %s: status %d", what, s);
    return -1;
  }
  return 0;
}

enum { TAG_NHWC = 20, TAG_OIHW = 5, TAG_X = 2 };

typedef struct {
  dnnl_md src, wany, wuser, bias, dst;
  int64_t st[2], padl[2], padr[2];
} conv_mds;

static void conv_init_mds(conv_mds *m, int nb, int ic, int ih, int iw, int oc, int oh, int ow, int k,
                          int stride, int pt, int pl, int pb, int pr) {
  int64_t sd[4] = {nb, ic, ih, iw}, wd[4] = {oc, ic, k, k}, bd[1] = {oc}, dd[4] = {nb, oc, oh, ow};
  dnnl.memory_desc_init_by_tag(&m->src, 4, sd, DNNL_F32, TAG_NHWC);
  dnnl.memory_desc_init_by_tag(&m->wany, 4, wd, DNNL_F32, DNNL_TAG_ANY);
  dnnl.memory_desc_init_by_tag(&m->wuser, 4, wd, DNNL_F32, TAG_OIHW);
  dnnl.memory_desc_init_by_tag(&m->bias, 1, bd, DNNL_F32, TAG_X);
  dnnl.memory_desc_init_by_tag(&m->dst, 4, dd, DNNL_F32, TAG_NHWC);
  m->st[0] = m->st[1] = stride;
  m->padl[0] = pt, m->padl[1] = pl, m->padr[0] = pb, m->padr[1] = pr;
}

// hint makes the forward-training primitive descriptor the backward ones are derived from.
static int hint(dnnl_handle *pd, conv_mds *m, char *err, size_t n) {
  dnnl_op_desc d;
  if (bcheck(dnnl.convolution_forward_desc_init(&d, DNNL_FORWARD_TRAINING, DNNL_CONV_DIRECT, &m->src, &m->wany,
                                                &m->bias, &m->dst, m->st, m->padl, m->padr),
             "convolution forward descriptor", err, n))
    return -1;
  return bcheck(dnnl.primitive_desc_create(pd, &d, NULL, ddpm_engine, NULL), "convolution forward hint", err, n);
}

// finish_op creates op's primitive from desc (with the hint) and one memory per argument.
static int finish_op(ddpm_op *op, void *desc, dnnl_handle hpd, const int *args, const dnnl_md *const *mds,
                     int nargs, char *err, size_t n) {
  if (bcheck(dnnl.primitive_desc_create(&op->pd, desc, NULL, ddpm_engine, hpd), "primitive descriptor", err, n))
    return -1;
  if (bcheck(dnnl.primitive_create(&op->prim, op->pd), "primitive", err, n)) return -1;
  op->nargs = nargs;
  for (int i = 0; i < nargs; i++) {
    op->arg[i] = args[i];
    if (bcheck(dnnl.memory_create(&op->mem[i], mds[i], ddpm_engine, NULL), "memory", err, n)) return -1;
  }
  return 0;
}

// packed sets slot up with oneDNN's layout for the (diff) weights (query what) and a reorder between
// it and the user layout: user -> packed (to_packed) or packed -> user.
static int packed(ddpm_op *op, int slot, const dnnl_md *user, int what, int to_packed, char *err, size_t n) {
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
  int s = to_packed ? dnnl.reorder_primitive_desc_create(&rpd, user, ddpm_engine, pmd, ddpm_engine, NULL)
                    : dnnl.reorder_primitive_desc_create(&rpd, pmd, ddpm_engine, user, ddpm_engine, NULL);
  if (bcheck(s, "weights reorder", err, n)) return -1;
  s = dnnl.primitive_create(&op->wreorder, rpd);
  dnnl.primitive_desc_destroy(rpd);
  if (bcheck(s, "weights reorder primitive", err, n)) return -1;
  if (bcheck(dnnl.memory_create(&op->wuser_mem, user, ddpm_engine, NULL), "memory", err, n)) return -1;
  dnnl.memory_destroy(op->mem[slot]);
  return bcheck(dnnl.memory_create(&op->mem[slot], pmd, ddpm_engine, op->wpacked), "memory", err, n);
}

int ddpm_conv_bwd_data(ddpm_op *op, int nb, int ic, int ih, int iw, int oc, int oh, int ow, int k, int stride,
                       int pt, int pl, int pb, int pr, char *err, size_t n) {
  memset(op, 0, sizeof *op);
  op->wslot = -1;
  conv_mds m;
  conv_init_mds(&m, nb, ic, ih, iw, oc, oh, ow, k, stride, pt, pl, pb, pr);
  dnnl_handle hpd = NULL;
  if (hint(&hpd, &m, err, n)) return -1;
  dnnl_op_desc d;
  int r = bcheck(dnnl.convolution_backward_data_desc_init(&d, DNNL_CONV_DIRECT, &m.src, &m.wany, &m.dst, m.st,
                                                         m.padl, m.padr),
                 "convolution backward-data descriptor", err, n);
  if (!r) {
    const int args[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
    const dnnl_md *mds[3] = {&m.dst, &m.wuser, &m.src};
    r = finish_op(op, &d, hpd, args, mds, 3, err, n);
  }
  dnnl.primitive_desc_destroy(hpd);
  if (r) return r;
  return packed(op, 1, &m.wuser, DNNL_QUERY_WEIGHTS_MD, 1, err, n);
}

int ddpm_conv_bwd_weights(ddpm_op *op, int nb, int ic, int ih, int iw, int oc, int oh, int ow, int k, int stride,
                          int pt, int pl, int pb, int pr, char *err, size_t n) {
  memset(op, 0, sizeof *op);
  op->wslot = -1;
  conv_mds m;
  conv_init_mds(&m, nb, ic, ih, iw, oc, oh, ow, k, stride, pt, pl, pb, pr);
  dnnl_handle hpd = NULL;
  if (hint(&hpd, &m, err, n)) return -1;
  dnnl_op_desc d;
  int r = bcheck(dnnl.convolution_backward_weights_desc_init(&d, DNNL_CONV_DIRECT, &m.src, &m.wany, &m.bias, &m.dst,
                                                            m.st, m.padl, m.padr),
                 "convolution backward-weights descriptor", err, n);
  if (!r) {
    const int args[4] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
    const dnnl_md *mds[4] = {&m.src, &m.dst, &m.wuser, &m.bias};
    r = finish_op(op, &d, hpd, args, mds, 4, err, n);
  }
  dnnl.primitive_desc_destroy(hpd);
  if (r) return r;
  const dnnl_md *pmd = dnnl.primitive_desc_query_md(op->pd, DNNL_QUERY_DIFF_WEIGHTS_MD, 0);
  if (dnnl.memory_desc_equal(pmd, &m.wuser)) return 0; // oneDNN writes the user layout itself
  return packed(op, 2, &m.wuser, DNNL_QUERY_DIFF_WEIGHTS_MD, 0, err, n);
}

int ddpm_conv_bwd_weights_run(ddpm_op *op, void *src, void *diff_dst, void *diff_w, void *diff_b, char *err,
                              size_t n) {
  void *ptrs[4] = {src, diff_dst, diff_w, diff_b};
  if (ddpm_op_run(op, ptrs, err, n)) return -1;
  if (!op->wreorder) return 0;
  dnnl.memory_set_data_handle(op->wuser_mem, diff_w);
  dnnl_exec_arg a[2] = {{DNNL_ARG_SRC, op->mem[op->wslot]}, {DNNL_ARG_DST, op->wuser_mem}};
  if (bcheck(dnnl.primitive_execute(op->wreorder, ddpm_stream, 2, a), "diff weights reorder", err, n)) return -1;
  return bcheck(dnnl.stream_wait(ddpm_stream), "stream", err, n);
}
