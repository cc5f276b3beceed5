/* tests/fuzz/fuzz_input.h -- what every fuzz target shares: the readers
 * under test take paths, so each input is written to one in-memory file
 * (memfd) and handed over as /proc/self/fd/N; nothing touches the disk.
 * dgseg's messages are silenced (every refused input would print one);
 * the sanitizers' and libFuzzer's reports are not. */
#ifndef DG_FUZZ_INPUT_H
#define DG_FUZZ_INPUT_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nets/core/common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    dg_log_set_level((dg_log_level)(DG_LOG_ERROR + 1)); /* above every level: silent */
    return 0;
}

/* The input as a file; its path is valid until the next call. A name
 * suffix (".ini", ".png") is not needed: the readers do not look at it. */
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("dgseg-fuzz", 0);
        if (fd < 0) abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) abort();
    return path;
}

#endif
