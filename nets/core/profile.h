/* nets/core/profile.h -- where a step's time goes, without a profiler
 * (`dgseg bench --profile`).
 *
 * While profiling is on, every primitive created through dnnl_util gets a
 * slot keyed by its kind ("convolution backward-weights", "reorder", ...)
 * and, for convolutions and inner products, its shape and FLOPs; each
 * execution adds its wall time to the slot. Code outside oneDNN (the loss,
 * the optimizer's loops) times itself into named regions. One process-wide
 * table, used from the thread that runs the network; off by default, and
 * when off it costs one branch per primitive execution. */
#ifndef DG_PROFILE_H
#define DG_PROFILE_H

#include <stdio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Turns slot creation and timing on or off; primitives created while it is
 * off are never timed. */
void dg_profile_enable(bool on);
bool dg_profile_enabled(void);

/* The slot of (kind, shape), created on first use; shape may be "" and
 * flops (per execution) 0. Returns a slot number >= 1, or 0 when
 * profiling is off. */
int dg_profile_slot(const char *kind, const char *shape, double flops);
/* Adds one execution of `seconds` to slot (0: ignored). */
void dg_profile_add(int slot, double seconds);

/* Times a region of code outside oneDNN into the slot named `kind`:
 * t = dg_profile_begin(); ...; dg_profile_end("loss", t). Exclusive of the
 * primitives timed inside it; regions do not nest. */
double dg_profile_begin(void);
void dg_profile_end(const char *kind, double t0);
/* The same into a slot of dg_profile_slot (an operation of dgseg's own that
 * reports as a primitive kind and shape: dg_wino's convolutions). */
void dg_profile_end_slot(int slot, double t0);

/* Zeroes every slot's time and count (after the warm-up steps). */
void dg_profile_reset(void);
/* Frees the table and turns profiling off. */
void dg_profile_free(void);

/* One slot as reported. */
typedef struct dg_profile_row {
    const char *kind;
    const char *shape;
    double seconds; /* total over the counted executions */
    double flops;   /* per execution */
    long calls;
} dg_profile_row;

/* The slots in creation order; *n gets their number. Valid until the next
 * dg_profile_slot or dg_profile_free. */
const dg_profile_row *dg_profile_rows(int *n);

/* The phase a kind belongs to: "forward", "backward-data",
 * "backward-weights", "reorder", "bn/relu/elementwise", "communication"
 * (regions whose kind starts with "allreduce": a data-parallel job's
 * collectives), or the kind itself for other regions ("loss",
 * "optimizer"). */
const char *dg_profile_phase(const char *kind);

/* Prints the per-phase, per-kind and per-convolution-shape tables for
 * `steps` steps that took `wall` seconds in all. */
void dg_profile_print(FILE *f, int steps, double wall);

#ifdef __cplusplus
}
#endif

#endif
