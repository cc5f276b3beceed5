/* data/fsutil.c -- see fsutil.h. */
#define _DEFAULT_SOURCE /* flock, pread, pwrite */
#include "data/fsutil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

void dg_strvec_push(dg_strvec *s, char *str) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = dg_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = str;
}

void dg_strvec_free(dg_strvec *s) {
    for (size_t i = 0; i < s->n; i++) dg_free(s->v[i]);
    dg_free(s->v);
    memset(s, 0, sizeof(*s));
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void dg_strvec_sort(dg_strvec *s) {
    if (s->n > 1) qsort(s->v, s->n, sizeof(*s->v), cmp_str);
}

void dg_split_list(const char *list, dg_strvec *out) {
    const char *p = list;
    while (*p) {
        const char *end = p;
        while (*end && *end != ',' && *end != '\n') end++;
        const char *a = p, *b = end;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        if (b > a) dg_strvec_push(out, dg_xasprintf("%.*s", (int)(b - a), a));
        p = *end ? end + 1 : end;
    }
}

char *dg_str_trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

char *dg_str_cat3(const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = dg_xmalloc(la + lb + lc + 1);
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
    return s;
}

char *dg_path_join(const char *dir, const char *name) { return dg_str_cat3(dir, "/", name); }

char *dg_xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    DG_ASSERT(n >= 0);
    char *s = dg_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

bool dg_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool dg_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* "a FIFO, not a regular file" and the like for a mode that is not a
 * regular file (static text). */
static const char *mode_words(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO, not a regular file";
    if (S_ISSOCK(m)) return "a socket, not a regular file";
    if (S_ISCHR(m)) return "a character device, not a regular file";
    if (S_ISBLK(m)) return "a block device, not a regular file";
    return "not a regular file";
}

/* The text of symbolic link path (dg_free), or "?" when it cannot be read. */
static char *link_text(const char *path, const struct stat *lst) {
    size_t cap = lst->st_size > 0 ? (size_t)lst->st_size + 1 : 256;
    for (;;) {
        char *buf = dg_xmalloc(cap);
        const ssize_t n = readlink(path, buf, cap);
        if (n >= 0 && (size_t)n < cap) {
            buf[n] = '\0';
            return buf;
        }
        dg_free(buf);
        if (n < 0 || cap > 65536) return dg_xstrdup("?");
        cap *= 2;
    }
}

dg_path_kind dg_path_examine(const char *path, char **what) {
    if (what) *what = NULL;
    struct stat lst, st;
    if (lstat(path, &lst) != 0) {
        const int err = errno;
        if (err == ENOENT || err == ENOTDIR) {
            if (what) *what = dg_xstrdup("does not exist");
            return DG_PATH_MISSING;
        }
        if (what) *what = dg_xasprintf("cannot be examined: %s", strerror(err));
        return DG_PATH_NOT_A_FILE;
    }
    if (!S_ISLNK(lst.st_mode)) {
        if (S_ISREG(lst.st_mode)) return DG_PATH_REGULAR;
        if (what) *what = dg_xasprintf("is %s", mode_words(lst.st_mode));
        return DG_PATH_NOT_A_FILE;
    }
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return DG_PATH_REGULAR;
    const int err = errno;
    if (what) {
        char *to = link_text(path, &lst);
        if (stat(path, &st) == 0)
            *what = dg_xasprintf("is a symbolic link (to %s) to %s", to, mode_words(st.st_mode));
        else if (err == ELOOP)
            *what = dg_xasprintf("is a symbolic link loop (to %s)", to);
        else if (err == ENOENT || err == ENOTDIR)
            *what = dg_xasprintf("is a dangling symbolic link (to %s)", to);
        else
            *what = dg_xasprintf("is a symbolic link (to %s) that cannot be followed: %s", to,
                    strerror(err));
        dg_free(to);
    }
    return DG_PATH_NOT_A_FILE;
}

bool dg_ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls > lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

char *dg_file_read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        dg_log_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = dg_xmalloc(cap);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            buf = dg_xrealloc(buf, cap);
        }
        size_t got = fread(buf + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        dg_log_error("%s: read error", path);
        dg_free(buf);
        return NULL;
    }
    buf[len] = '\0';
    if (n) *n = len;
    return buf;
}

dg_status dg_make_dirs(const char *path) {
    if (path[0] == '\0') {
        dg_log_error("cannot create a folder with an empty name");
        return DG_STATUS_ERR_IO;
    }
    char *buf = dg_xstrdup(path);
    dg_status st = DG_STATUS_OK;
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        const char save = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            dg_log_error("%s: cannot create folder: %s", buf, strerror(errno));
            st = DG_STATUS_ERR_IO;
        } else if (!dg_is_dir(buf)) {
            dg_log_error("%s: cannot create folder: a file of that name exists",
                    buf);
            st = DG_STATUS_ERR_IO;
        }
        *p = save;
        if (st != DG_STATUS_OK || save == '\0') break;
    }
    dg_free(buf);
    return st;
}

dg_status dg_folder_lock(const char *dir, const char *what, int *fd) {
    *fd = -1;
    char *path = dg_path_join(dir, ".dgseg.lock");
    const int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) {
        dg_log_error("%s: cannot open the %s's lock: %s", path, what, strerror(errno));
        dg_free(path);
        return DG_STATUS_ERR_IO;
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        char owner[32] = "";
        const ssize_t n = pread(f, owner, sizeof(owner) - 1, 0);
        owner[n > 0 ? n : 0] = '\0';
        owner[strcspn(owner, "\n")] = '\0';
        if (err == EWOULDBLOCK)
            dg_log_error("%s: this %s is in use by process %s (its lock %s); wait for it to end "
                         "or choose another folder", dir, what, owner[0] ? owner : "?", path);
        else
            dg_log_error("%s: cannot lock the %s: %s", path, what, strerror(err));
        close(f);
        dg_free(path);
        return DG_STATUS_ERR_IO;
    }
    char pid[32];
    const int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, pid, (size_t)n, 0) != n)
        dg_log_warn("%s: cannot record this process in the lock: %s", path, strerror(errno));
    dg_free(path);
    *fd = f;
    return DG_STATUS_OK;
}

void dg_folder_unlock(int fd) {
    if (fd < 0) return;
    flock(fd, LOCK_UN);
    close(fd);
}
