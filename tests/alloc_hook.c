/* tests/alloc_hook.c -- see alloc_hook.h. glibc exports its allocator as
 * __libc_malloc & co., so the wrappers below forward without dlsym. */
#include "alloc_hook.h"

#include <stdatomic.h>
#include <stddef.h>
#include <errno.h>

static atomic_bool counting;
static _Atomic uint64_t count, count_own;

void dg_alloc_hook_begin(void) {
    atomic_store(&count, 0);
    atomic_store(&count_own, 0);
    atomic_store(&counting, true);
}

dg_alloc_counts dg_alloc_hook_end(void) {
    atomic_store(&counting, false);
    dg_alloc_counts c = {atomic_load(&count), atomic_load(&count_own)};
    return c;
}

#if defined(__SANITIZE_ADDRESS__)
bool dg_alloc_hook_available(void) { return false; }
#else
bool dg_alloc_hook_available(void) { return true; }

/* The linker's bounds of this executable's code: dgseg's library is linked
 * statically into it, oneDNN, libstdc++ and libgomp are shared objects. */
extern char __executable_start, etext;

static void note_from(const void *caller) {
    if (!atomic_load_explicit(&counting, memory_order_relaxed)) return;
    atomic_fetch_add(&count, 1);
    if ((const char *)caller >= &__executable_start && (const char *)caller < &etext)
        atomic_fetch_add(&count_own, 1);
}
#define note() note_from(__builtin_return_address(0))

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

void *malloc(size_t n) { note(); return __libc_malloc(n); }
void *calloc(size_t n, size_t s) { note(); return __libc_calloc(n, s); }
void *realloc(void *p, size_t n) { note(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t a, size_t n) { note(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { note(); return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n) {
    note();
    void *q = __libc_memalign(a, n);
    if (!q) return ENOMEM;
    *p = q;
    return 0;
}
#endif
