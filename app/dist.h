/* app/dist.h -- the processes of a data-parallel `dgseg train` (issue 26):
 * this process's rank among the job's ranks and the few collectives the
 * trainer needs, over Open MPI (docs/usage.md "Data-parallel training").
 *
 * MPI is started only when mpirun launched the process (Open MPI puts
 * OMPI_COMM_WORLD_SIZE in every rank's environment). A process started
 * any other way never touches the MPI runtime: it is rank 0 of 1 and every
 * collective below returns at once with its input unchanged, so plain
 * `dgseg train` computes exactly what it computed before MPI existed.
 * The same holds for a job of one rank (`mpirun -np 1`): with nothing to
 * reduce, no collective runs, which makes it bitwise identical to the
 * plain process.
 *
 * A build without MPI (cmake -DDG_MPI=OFF) has the same interface; under
 * an mpirun of N > 1 ranks dg_dist_init refuses to run, because N copies
 * of one process would each train alone into the same run folder.
 *
 * Collectives run on the main thread only, and every rank must call the
 * same ones in the same order: the trainer makes each decision that ends
 * or branches a loop (a non-finite loss, a stop signal) on a value every
 * rank shares. A rank that fails alone ends the whole job through
 * dg_dist_abort, so the others never wait on a collective it skipped. */
#ifndef DG_APP_DIST_H
#define DG_APP_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nets/core/common.h"

/* True when mpirun (Open MPI) started this process: its launch
 * environment is set. Reads the environment only. */
bool dg_dist_launched(void);
/* The job's size as mpirun announced it (1 when not launched by mpirun),
 * read from the environment without starting MPI. */
int dg_dist_launched_size(void);

/* Starts MPI when dg_dist_launched(); otherwise nothing. Ranks after the
 * first then log errors only (tagged with their rank) and write nothing
 * to stdout, so the job reads like one process. Returns DG_STATUS_OK or
 * DG_STATUS_ERR_CONFIG (logged: a build without MPI under an mpirun of
 * N > 1 ranks, or MPI that cannot start). */
dg_status dg_dist_init(int *argc, char ***argv);
/* Ends this process's part of the job with exit code rc: MPI_Finalize
 * when every rank can reach it (rc == 0, or a job of one rank), otherwise
 * dg_dist_abort(rc). Returns rc; nothing when MPI was never started. */
int dg_dist_finalize(int rc);

int dg_dist_rank(void); /* 0 .. size-1; 0 without MPI */
int dg_dist_size(void); /* N; 1 without MPI */
/* Rank 0: the one rank that writes the run folder, logs and reports. */
bool dg_dist_is_root(void);

/* In place: buf[i] <- sum over ranks of buf[i], (n) doubles, the same
 * bits on every rank. No-op with one rank. */
void dg_dist_allreduce_f64(double *buf, size_t n);
/* A gradient summed over the ranks while backward still runs: the buffer
 * (n floats) is cut into fixed buckets (the same on every rank); once
 * backward says that buf[lo, n) is final (dg_dist_reducer_ready, from
 * dg_pass.grad_ready), every bucket inside it starts its non-blocking sum
 * (MPI_Iallreduce, in place), and every call lets the started ones
 * advance (Open MPI progresses them inside MPI calls); dg_dist_reducer_end
 * starts the rest and waits for all. Elementwise the sums are those of
 * one MPI_Allreduce of the whole buffer. With one rank nothing happens. */
typedef struct dg_dist_reducer {
    float *buf;
    size_t n, bucket;  /* elements; bucket k is [k*bucket, min((k+1)*bucket, n)) */
    size_t next;       /* buckets at and above this index have started */
    double waited;     /* seconds dg_dist_reducer_end waited (the part not
                          hidden behind backward) */
} dg_dist_reducer;
void dg_dist_reducer_begin(dg_dist_reducer *r, float *buf, size_t n);
void dg_dist_reducer_ready(void *reducer, size_t lo); /* a dg_pass.grad_ready */
void dg_dist_reducer_end(dg_dist_reducer *r);

/* The same for 64-bit integers (exact: counts, confusion matrices). */
void dg_dist_allreduce_i64(int64_t *buf, size_t n);
/* True on every rank when `flag` is true on any. */
bool dg_dist_any(bool flag);
/* Rank 0's `bytes` bytes of buf into every rank's buf. */
void dg_dist_bcast(void *buf, size_t bytes);
/* Every rank's `bytes` bytes of send, rank after rank, into every rank's
 * recv (N * bytes); send may not overlap recv. One rank: a copy. */
void dg_dist_allgather(const void *send, size_t bytes, void *recv);
/* Waits for every rank. */
void dg_dist_barrier(void);
/* True when buf (bytes) holds the same bytes on every rank, compared by a
 * 64-bit FNV-1a-style hash of 8-byte words (into *hash: rank 0's). Always
 * true with one rank. */
bool dg_dist_same(const void *buf, size_t bytes, uint64_t *hash);
/* Time this rank has spent in collectives since it started: waiting for
 * the other ranks included, so a rank that computes faster than the
 * others shows its idle time here. Zero without MPI or with one rank. */
typedef struct dg_dist_comm {
    double seconds;  /* wall time inside the collectives above */
    double exposed;  /* of the reducers' sums, the time waited for them
                        after backward (the rest ran behind it) */
    uint64_t buckets, early; /* the reducers' buckets, and those of them
                                started while backward still ran */
    uint64_t bytes;  /* bytes summed by the allreduces (this rank's buffers) */
    uint64_t calls;  /* collectives called */
} dg_dist_comm;
dg_dist_comm dg_dist_comm_total(void);

/* Ends every rank of the job with exit code rc (MPI_Abort) after flushing
 * this rank's output; this rank has logged why. Without MPI: exit(rc). */
_Noreturn void dg_dist_abort(int rc);

#endif
