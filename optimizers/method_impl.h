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

/* A zeroed (d)-float buffer (at least one element). */
float *dg_method_new_buf(size_t d);

#endif
