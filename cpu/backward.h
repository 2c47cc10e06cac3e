// backward.h: the convolution's backward primitives (oneDNN), as ddpm_ops (dnnl.h).
#ifndef DDPM_CPU_BACKWARD_H
#define DDPM_CPU_BACKWARD_H

#include "dnnl.h"

// ddpm_conv_bwd_data makes dx [N,IH,IW,IC] = conv^T(dy [N,OH,OW,OC], w [OC,IC,k,k]) for the convolution
// ddpm_conv_fwd makes with the same arguments. Run with ddpm_op_run(op, {dy, w, dx}); the weights are
// packed by ddpm_op_pack (call it after every change of w).
int ddpm_conv_bwd_data(ddpm_op *op, int nb, int ic, int ih, int iw, int oc, int oh, int ow, int k, int stride,
                       int pt, int pl, int pb, int pr, char *err, size_t n);

// ddpm_conv_bwd_weights makes dw [OC,IC,k,k] (oihw) and db [OC] from x [N,IH,IW,IC] and dy [N,OH,OW,OC];
// run it with ddpm_conv_bwd_weights_run. dw and db are overwritten.
int ddpm_conv_bwd_weights(ddpm_op *op, int nb, int ic, int ih, int iw, int oc, int oh, int ow, int k, int stride,
                          int pt, int pl, int pb, int pr, char *err, size_t n);
int ddpm_conv_bwd_weights_run(ddpm_op *op, void *src, void *diff_dst, void *diff_w, void *diff_b, char *err,
                              size_t n);

#endif
