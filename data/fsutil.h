/* data/fsutil.h -- small file-system and string helpers shared by the
 * dataset readers (data/seg_dataset.c, data/domainbed.c): a growable array
 * of owned strings, path joining, formatted allocation and stat tests.
 * Every returned string is owned by the caller (dg_free). */
#ifndef DG_DATA_FSUTIL_H
#define DG_DATA_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "nets/core/common.h"

/* A growable array of owned strings. Zero-initialise before use. */
typedef struct dg_strvec {
    char **v; /* (n) */
    size_t n;
    size_t cap;
} dg_strvec;

/* Appends str, taking ownership of it. */
void dg_strvec_push(dg_strvec *s, char *str);
/* Frees every string and the array; zeroes s. */
void dg_strvec_free(dg_strvec *s);
/* Sorts by strcmp (byte order = code-point order for UTF-8, Python's
 * sorted()). */
void dg_strvec_sort(dg_strvec *s);

/* a + b + c concatenated. */
char *dg_str_cat3(const char *a, const char *b, const char *c);
/* Appends to out the comma-separated items of list (new lines also
 * separate), each trimmed of surrounding white space; empty items are
 * dropped. Items may contain inner spaces ("Real World"). */
void dg_split_list(const char *list, dg_strvec *out);

/* Trims s in place of leading and trailing white space; returns its first
 * non-space character. */
char *dg_str_trim(char *s);
/* dir + "/" + name. */
char *dg_path_join(const char *dir, const char *name);
/* printf into a new string. */
char *dg_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The whole file at path, NUL-terminated, size in *n (when not NULL); NULL
 * (logged, naming the file) when it cannot be read. */
char *dg_file_read_all(const char *path, size_t *n);

/* mkdir -p: creates path and its missing parents. Returns DG_STATUS_OK or
 * DG_STATUS_ERR_IO (the folder that cannot be made, or a file in the way,
 * logged). */
dg_status dg_make_dirs(const char *path);

/* True when path exists and is a folder (links followed). */
bool dg_is_dir(const char *path);
/* True when path exists and is a regular file (links followed). */
bool dg_is_file(const char *path);
/* Takes the folder `dir` for this process: an exclusive flock on
 * dir/.dgseg.lock holding this process's pid. *fd gets the lock's
 * descriptor (dg_folder_unlock releases it; the kernel does when the
 * process ends, so a lock left by a killed process is free again). When
 * another process holds it: DG_STATUS_ERR_IO after a message naming the
 * folder, `what` it is ("run folder") and the owner's pid. */
dg_status dg_folder_lock(const char *dir, const char *what, int *fd);
void dg_folder_unlock(int fd);

/* What a path is, examined without opening it (a FIFO would block an
 * open until a writer comes). */
typedef enum dg_path_kind {
    DG_PATH_REGULAR = 0,   /* a regular file (through links too) */
    DG_PATH_MISSING = 1,   /* nothing of that name */
    DG_PATH_NOT_A_FILE = 2 /* something else: a directory, a dangling link,
                              a link loop, a FIFO, a socket, a device, or a
                              path that cannot be examined */
} dg_path_kind;

/* Examines path with lstat and stat (never open). When it is not a regular
 * file and `what` is not NULL, *what gets the words a message needs after
 * the path (dg_free them): "does not exist", "is a directory", "is a
 * dangling symbolic link (to T)", "is a symbolic link loop (to T)",
 * "is a FIFO, not a regular file", "is a socket, not a regular file",
 * "is a character device, not a regular file", "is a block device, not a
 * regular file", "is a symbolic link (to T) to a directory" (or to any of
 * the others), "cannot be examined: REASON"; T is the link's own text.
 * *what is NULL for a regular file. */
dg_path_kind dg_path_examine(const char *path, char **what);

/* True when s ends with suffix and is longer than it. */
bool dg_ends_with(const char *s, const char *suffix);

#endif
