/* optimizers/method_impl.h -- internals shared by the method files of the
 * optimizer module (not part of the public interface, dg_optim.h). Each
 * method file provides one init function that method.c's registry calls
 * after it has created m->base and copied the configuration: it checks its
 * keys (DG_STATUS_ERR_CONFIG with a message on a bad one), sets m->ops and
 * allocates its buffers (m->buf[], m->priv). */
#ifndef DG_OPTIM_METHOD_IMPL_H
#define DG_OPTIM_METHOD_IMPL_H

#include "dg_optim.h"

dg_status dg_method_init_erm(dg_method *m, const dg_param_set *ps);
dg_status dg_method_init_lookahead(dg_method *m, const dg_param_set *ps);
dg_status dg_method_init_sam(dg_method *m, const dg_param_set *ps);
dg_status dg_method_init_asam(dg_method *m, const dg_param_set *ps);
dg_status dg_method_init_swad(dg_method *m, const dg_param_set *ps);
dg_status dg_method_init_dgsam(dg_method *m, const dg_param_set *ps);
dg_status dg_method_init_lookbehind_sam(dg_method *m, const dg_param_set *ps);
dg_status dg_method_init_lookbehind_asam(dg_method *m, const dg_param_set *ps);
dg_status dg_method_init_saf(dg_method *m, const dg_param_set *ps);
dg_status dg_method_init_mesa(dg_method *m, const dg_param_set *ps);

/* The distillation term of SAF (docs/algorithms.md §11 steps 5-7) and MESA (§12
 * step 5) for one unit u (a sample, or a pixel): dg_loss_kl_unit
 * (nets/core/loss.h) with a constant stride, the one KL both take so they
 * never diverge: with p = softmax(zt/tau) (teacher, or the
 * bank's old logits) and q = softmax(zs/tau) (the current logits) over c
 * classes, in double with log-sum-exp, adds (float)(coef*tau*(q_k - p_k)) to
 * diff_k (coef = lambda / denominator) and returns tau^2 * KL(p || q)
 * (unscaled by coef). zt: (c) with stride st; zs, diff: (c) with stride ss
 * (P in the (N, C, P) layout, 1 for a contiguous row). Identical zt and zs
 * give exactly 0 and add exactly 0. */
double dg_method_kl_distill(const float *zt, size_t st, const float *zs, size_t ss,
        float *diff, int c, double tau, double coef);

/* Lookbehind's adaptive alpha (docs/algorithms.md §9): (1 + cos(a, b))/2 with
 * cos = dot / max(sqrt(na2)*sqrt(nb2), 1e-8), clamped to [0, 1]; dot = <a, b>,
 * na2 = ||a||^2, nb2 = ||b||^2 (double). */
/* ASAM's scaling g_i <- T_i * g_i, T_i = |w_i| + eta on the spans of
 * DG_PARAM_ASAM_SCALED tensors (sam.c); w, g: (d). Shared by ASAM and
 * Lookbehind-ASAM so their arithmetic is the same. */
void dg_asam_scale(const dg_optim *o, const float *w, float *g, float eta);
double dg_lookbehind_alpha_from_sums(double dot, double na2, double nb2);
/* The same for one tensor's a = theta1 - phi, b = theta - phi, summed
 * serially in double; phi, theta1, theta: (n). */
double dg_lookbehind_alpha(const float *phi, const float *theta1, const float *theta,
        size_t n);

/* A zeroed (d)-float buffer (at least one element). */
float *dg_method_new_buf(size_t d);

#endif
