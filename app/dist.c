/* app/dist.c -- see dist.h. The MPI calls live in the DG_MPI half of this
 * file; the other half is what a build without MPI runs. */
#define _POSIX_C_SOURCE 200809L
#include "app/dist.h"
#include "nets/core/profile.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DG_MPI
#include <mpi.h>
#endif

/* The job as this process sees it; rank 0 of 1 until MPI starts. */
static struct {
    bool started; /* MPI_Init ran (and MPI_Finalize not yet) */
    int rank, size;
} dist = {false, 0, 1};

/* What this rank has spent in collectives (main thread only). */
static dg_dist_comm comm;

dg_dist_comm dg_dist_comm_total(void) { return comm; }

bool dg_dist_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") != NULL; }

int dg_dist_launched_size(void) {
    const char *s = getenv("OMPI_COMM_WORLD_SIZE");
    const long n = s ? strtol(s, NULL, 10) : 1;
    return n >= 1 && n <= INT_MAX ? (int)n : 1;
}

int dg_dist_rank(void) { return dist.rank; }
int dg_dist_size(void) { return dist.size; }
bool dg_dist_is_root(void) { return dist.rank == 0; }

/* 64-bit FNV-1a over 8-byte words (then the tail's bytes): a weights
 * vector of 10^8 bytes hashes in tens of milliseconds. */
static uint64_t fnv1a(const void *buf, size_t bytes) {
    const unsigned char *p = buf;
    const uint64_t prime = UINT64_C(1099511628211);
    uint64_t h = UINT64_C(14695981039346656037), w;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        memcpy(&w, p + i, 8);
        h = (h ^ w) * prime;
    }
    for (; i < bytes; i++) h = (h ^ p[i]) * prime;
    return h;
}

#ifdef DG_MPI

/* MPI counts are ints: a buffer of more elements goes in pieces. */
#define DG_DIST_CHUNK ((size_t)1 << 30)

/* Ranks after the first keep quiet: errors only, tagged with the rank, and
 * no progress lines or tables on stdout, so the job's output is rank 0's. */
static void quiet_other_ranks(void) {
    char tag[32];
    snprintf(tag, sizeof(tag), "rank %d of %d", dist.rank, dist.size);
    dg_log_set_tag(tag);
    if (dist.rank == 0) return;
    dg_log_set_level(DG_LOG_ERROR);
    if (!freopen("/dev/null", "w", stdout))
        dg_log_error("rank %d: cannot send stdout to /dev/null", dist.rank);
}

dg_status dg_dist_init(int *argc, char ***argv) {
    if (!dg_dist_launched()) return DG_STATUS_OK;
    /* loader workers and OpenMP run beside the main thread, which alone
     * calls MPI */
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        dg_log_error("mpirun started this process but MPI cannot start (MPI_Init_thread failed)");
        return DG_STATUS_ERR_CONFIG;
    }
    dist.started = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &dist.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &dist.size);
    if (dist.size > 1) quiet_other_ranks();
    return DG_STATUS_OK;
}

int dg_dist_finalize(int rc) {
    if (!dist.started) return rc;
    /* a failed rank cannot know whether the others wait in a collective */
    if (rc != 0 && dist.size > 1) dg_dist_abort(rc);
    fflush(stdout);
    MPI_Finalize();
    dist.started = false;
    return rc;
}

/* Sums buf (n elements of type t, elem bytes each) over the ranks in
 * place, in chunks an int count can hold. */
static void allreduce_sum(void *buf, size_t n, MPI_Datatype t, size_t elem) {
    const double t0 = dg_now(), tp = dg_profile_begin();
    for (size_t i = 0; i < n; i += DG_DIST_CHUNK) {
        const size_t k = n - i < DG_DIST_CHUNK ? n - i : DG_DIST_CHUNK;
        MPI_Allreduce(MPI_IN_PLACE, (char *)buf + i * elem, (int)k, t, MPI_SUM, MPI_COMM_WORLD);
    }
    dg_profile_end("allreduce (BN statistics, losses, counts)", tp);
    comm.seconds += dg_now() - t0;
    comm.bytes += n * elem;
    comm.calls++;
}

void dg_dist_allreduce_f64(double *buf, size_t n) {
    if (dist.size == 1) return;
    allreduce_sum(buf, n, MPI_DOUBLE, sizeof(double));
}

/* Buckets of 4 Mi floats (16 MB), fewer and larger for a larger buffer:
 * at most DG_DIST_MAX_BUCKETS pending sums. */
#define DG_DIST_BUCKET ((size_t)1 << 22)
#define DG_DIST_MAX_BUCKETS 64

static MPI_Request pending[DG_DIST_MAX_BUCKETS];
static int n_pending;

void dg_dist_reducer_begin(dg_dist_reducer *r, float *buf, size_t n) {
    size_t b = DG_DIST_BUCKET;
    while ((n + b - 1) / b > DG_DIST_MAX_BUCKETS) b *= 2;
    *r = (dg_dist_reducer){.buf = buf, .n = n, .bucket = b, .next = (n + b - 1) / b};
}

void dg_dist_reducer_ready(void *reducer, size_t lo) {
    dg_dist_reducer *r = reducer;
    if (dist.size == 1) return;
    const double t0 = dg_now(), tp = dg_profile_begin();
    while (r->next > 0 && (r->next - 1) * r->bucket >= lo) {
        r->next--;
        const size_t b0 = r->next * r->bucket, b1 = b0 + r->bucket < r->n ? b0 + r->bucket : r->n;
        DG_ASSERT(n_pending < DG_DIST_MAX_BUCKETS);
        MPI_Iallreduce(MPI_IN_PLACE, r->buf + b0, (int)(b1 - b0), MPI_FLOAT, MPI_SUM,
                MPI_COMM_WORLD, &pending[n_pending++]);
        comm.bytes += (b1 - b0) * sizeof(float);
        comm.calls++;
        comm.buckets++;
        comm.early += lo > 0; /* lo = 0: dg_dist_reducer_end, after backward */
    }
    int done = 0;
    if (n_pending) MPI_Testall(n_pending, pending, &done, MPI_STATUSES_IGNORE);
    dg_profile_end("allreduce (gradient buckets: start, progress)", tp);
    comm.seconds += dg_now() - t0;
}

void dg_dist_reducer_end(dg_dist_reducer *r) {
    if (dist.size == 1) return;
    dg_dist_reducer_ready(r, 0);
    const double t0 = dg_now(), tp = dg_profile_begin();
    MPI_Waitall(n_pending, pending, MPI_STATUSES_IGNORE);
    dg_profile_end("allreduce (gradient: waited after backward)", tp);
    n_pending = 0;
    r->waited = dg_now() - t0;
    comm.seconds += r->waited;
    comm.exposed += r->waited;
}

void dg_dist_allreduce_i64(int64_t *buf, size_t n) {
    if (dist.size == 1) return;
    allreduce_sum(buf, n, MPI_INT64_T, sizeof(int64_t));
}

bool dg_dist_any(bool flag) {
    if (dist.size == 1) return flag;
    int v = flag, any = 0;
    const double t0 = dg_now();
    MPI_Allreduce(&v, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
    comm.seconds += dg_now() - t0;
    comm.calls++;
    return any != 0;
}

void dg_dist_bcast(void *buf, size_t bytes) {
    if (dist.size == 1) return;
    for (size_t i = 0; i < bytes; i += DG_DIST_CHUNK) {
        const size_t k = bytes - i < DG_DIST_CHUNK ? bytes - i : DG_DIST_CHUNK;
        MPI_Bcast((char *)buf + i, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
}

void dg_dist_allgather(const void *send, size_t bytes, void *recv) {
    if (dist.size == 1) {
        memcpy(recv, send, bytes);
        return;
    }
    DG_ASSERT(bytes <= INT_MAX);
    const double t0 = dg_now();
    MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    comm.seconds += dg_now() - t0;
    comm.calls++;
}

void dg_dist_barrier(void) {
    if (dist.size > 1) MPI_Barrier(MPI_COMM_WORLD);
}

bool dg_dist_same(const void *buf, size_t bytes, uint64_t *hash) {
    const uint64_t h = fnv1a(buf, bytes);
    *hash = h;
    if (dist.size == 1) return true;
    /* the largest hash and the largest complement (the smallest hash) in
     * one reduction */
    uint64_t v[2] = {h, ~h}, r[2];
    const double t0 = dg_now();
    MPI_Allreduce(v, r, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    uint64_t root = h;
    MPI_Bcast(&root, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    comm.seconds += dg_now() - t0;
    comm.calls += 2;
    *hash = root;
    return r[0] == ~r[1];
}

_Noreturn void dg_dist_abort(int rc) {
    fflush(stdout);
    fflush(stderr);
    if (dist.started) MPI_Abort(MPI_COMM_WORLD, rc);
    exit(rc);
}

#else /* a build without MPI: one process, whatever launched it */

dg_status dg_dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (dg_dist_launched_size() > 1) {
        dg_log_error("this dgseg was built without MPI (cmake -DDG_MPI=OFF) and cannot run as "
                     "one of the %d ranks mpirun started: each would train alone into the same "
                     "run folder; rebuild with libopenmpi-dev installed", dg_dist_launched_size());
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

int dg_dist_finalize(int rc) { return rc; }
void dg_dist_allreduce_f64(double *buf, size_t n) { (void)buf, (void)n; }
void dg_dist_allreduce_i64(int64_t *buf, size_t n) { (void)buf, (void)n; }
void dg_dist_reducer_begin(dg_dist_reducer *r, float *buf, size_t n) {
    *r = (dg_dist_reducer){.buf = buf, .n = n, .bucket = n ? n : 1};
}
void dg_dist_reducer_ready(void *reducer, size_t lo) { (void)reducer, (void)lo; }
void dg_dist_reducer_end(dg_dist_reducer *r) { (void)r; }
bool dg_dist_any(bool flag) { return flag; }
void dg_dist_bcast(void *buf, size_t bytes) { (void)buf, (void)bytes; }
void dg_dist_allgather(const void *send, size_t bytes, void *recv) { memcpy(recv, send, bytes); }
void dg_dist_barrier(void) {}

bool dg_dist_same(const void *buf, size_t bytes, uint64_t *hash) {
    *hash = fnv1a(buf, bytes);
    return true;
}

_Noreturn void dg_dist_abort(int rc) {
    fflush(stdout);
    fflush(stderr);
    exit(rc);
}

#endif
