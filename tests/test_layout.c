/* tests/test_layout.c -- the source tree's shape (docs/design.md §1,
 * docs/style.md §3): the modules' includes run one way, with no circle
 * anywhere (a file pair x.c/x.h is one module), the engine (nets/,
 * data/, optimizers/, eval/) never includes the application (app/), and
 * every reference a source comment makes to a section of the project's
 * documents ("docs/algorithms.md §5.3") names a file in docs/ with that
 * section. Read from DG_SOURCE_DIR, the checkout the binary was built from. */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "data/fsutil.h"

static const char *const module_dirs[] = {"app", "nets", "nets/core", "data", "optimizers",
        "eval"};

#define MAX_MODULES 512
#define MAX_EDGES 64

/* A module: "app/train" for app/train.c and app/train.h. */
typedef struct module {
    char name[320];
    int edges[MAX_EDGES]; /* modules it includes */
    int n_edges;
} module;

typedef struct tree {
    module m[MAX_MODULES];
    int n;
} tree;

static int module_find(tree *t, const char *name, bool add) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->m[i].name, name)) return i;
    if (!add) return -1;
    ck_assert_int_lt(t->n, MAX_MODULES);
    snprintf(t->m[t->n].name, sizeof(t->m[t->n].name), "%s", name);
    return t->n++;
}

/* "dir/base" of file dir/base.ext. */
static void module_of(const char *dir, const char *file, char *out, size_t size) {
    snprintf(out, size, "%s/%.*s", dir, (int)strcspn(file, "."), file);
}

static bool is_source(const char *f) {
    const char *dot = strrchr(f, '.');
    return dot && (!strcmp(dot, ".c") || !strcmp(dot, ".h") || !strcmp(dot, ".cpp"));
}

/* Adds an edge for every `#include "x"` of dir/file that names a module
 * of the tree ("app/cli.h", or "flatness.h" beside the file). */
static void scan_includes(tree *t, const char *dir, const char *file) {
    char path[512], self[320];
    snprintf(path, sizeof(path), "%s/%s/%s", DG_SOURCE_DIR, dir, file);
    module_of(dir, file, self, sizeof(self));
    const int from = module_find(t, self, true);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f, "%s: cannot read", path);
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        char inc[256];
        if (sscanf(line, " # include \"%255[^\"]\"", inc) != 1) continue;
        char target[300];
        if (strchr(inc, '/'))
            snprintf(target, sizeof(target), "%.*s", (int)strcspn(inc, "."), inc);
        else
            module_of(dir, inc, target, sizeof(target));
        char probe[600];
        snprintf(probe, sizeof(probe), "%s/%s.h", DG_SOURCE_DIR, target);
        if (!dg_is_file(probe)) continue; /* a system or generated header */
        const int to = module_find(t, target, true);
        if (to == from) continue;
        module *m = &t->m[from];
        bool have = false;
        for (int e = 0; e < m->n_edges; e++) have |= m->edges[e] == to;
        if (!have) {
            ck_assert_int_lt(m->n_edges, MAX_EDGES);
            m->edges[m->n_edges++] = to;
        }
    }
    fclose(f);
}

static void scan_tree(tree *t) {
    memset(t, 0, sizeof(*t));
    for (size_t d = 0; d < DG_ARRAY_LEN(module_dirs); d++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", DG_SOURCE_DIR, module_dirs[d]);
        DIR *dir = opendir(path);
        ck_assert_msg(dir, "%s: cannot list", path);
        struct dirent *e;
        while ((e = readdir(dir)) != NULL)
            if (is_source(e->d_name)) scan_includes(t, module_dirs[d], e->d_name);
        closedir(dir);
    }
}

/* Depth-first search; on a back edge writes the circle into `circle`. */
static bool dfs(const tree *t, int v, int *state, int *stack, int depth, char *circle,
        size_t size) {
    state[v] = 1;
    stack[depth] = v;
    for (int e = 0; e < t->m[v].n_edges; e++) {
        const int w = t->m[v].edges[e];
        if (state[w] == 1) { /* back edge: the circle is stack[k .. depth] -> w */
            int k = depth;
            while (stack[k] != w) k--;
            size_t off = 0;
            for (int i = k; i <= depth; i++)
                off += (size_t)snprintf(circle + off, size - off, "%s -> ", t->m[stack[i]].name);
            snprintf(circle + off, size - off, "%s", t->m[w].name);
            return true;
        }
        if (state[w] == 0 && dfs(t, w, state, stack, depth + 1, circle, size)) return true;
    }
    state[v] = 2;
    return false;
}

START_TEST(no_module_includes_one_that_includes_it_back) {
    static tree t;
    scan_tree(&t);
    ck_assert_int_gt(t.n, 50); /* the scan found the tree */
    int state[MAX_MODULES] = {0}, stack[MAX_MODULES];
    char circle[4096] = "";
    for (int v = 0; v < t.n; v++)
        if (state[v] == 0 && dfs(&t, v, state, stack, 0, circle, sizeof(circle)))
            ck_abort_msg("include circle: %s", circle);
}
END_TEST

START_TEST(the_engine_never_includes_the_application) {
    static tree t;
    scan_tree(&t);
    int app_edges = 0;
    for (int v = 0; v < t.n; v++) {
        const bool in_app = !strncmp(t.m[v].name, "app/", 4);
        for (int e = 0; e < t.m[v].n_edges; e++) {
            const bool to_app = !strncmp(t.m[t.m[v].edges[e]].name, "app/", 4);
            ck_assert_msg(in_app || !to_app, "%s includes %s", t.m[v].name,
                    t.m[t.m[v].edges[e]].name);
            app_edges += in_app && to_app;
        }
    }
    ck_assert_int_gt(app_edges, 10); /* includes inside app/ were seen */
}
END_TEST

/* True when docs/<doc> has a heading "## N." or "### N.M" (any depth) for
 * section sec ("5", "5.3"). */
static bool doc_has_section(const char *doc, const char *sec) {
    char path[1100];
    snprintf(path, sizeof(path), "%s/docs/%s", DG_SOURCE_DIR, doc);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[2048];
    bool found = false;
    const size_t n = strlen(sec);
    while (!found && fgets(line, sizeof(line), f)) {
        const char *p = line;
        if (*p != '#') continue;
        while (*p == '#') p++;
        while (*p == ' ') p++;
        found = !strncmp(p, sec, n) && (p[n] == '.' || p[n] == ' ') &&
                !(p[n] == '.' && isdigit((unsigned char)p[n + 1]));
    }
    fclose(f);
    return found;
}

/* Checks every "docs/<name>.md §N[.M]" of one file; counts them. */
static int check_refs_of(const char *rel, char *bad, size_t size) {
    char path[1100];
    snprintf(path, sizeof(path), "%s/%s", DG_SOURCE_DIR, rel);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f, "%s: cannot read", path);
    char line[2048], next[2048] = "";
    int n = 0, lineno = 0;
    bool have_next = fgets(next, sizeof(next), f) != NULL;
    while (have_next) {
        memcpy(line, next, sizeof(line));
        have_next = fgets(next, sizeof(next), f) != NULL;
        lineno++;
        for (const char *p = strstr(line, "docs/"); p; p = strstr(p + 1, "docs/")) {
            char doc[64];
            int used = 0;
            if (sscanf(p, "docs/%63[a-z_-].md%n", doc, &used) != 1 || used == 0) continue;
            strcat(doc, ".md");
            const char *q = p + used;
            char probe[600];
            snprintf(probe, sizeof(probe), "%s/docs/%s", DG_SOURCE_DIR, doc);
            if (!dg_is_file(probe)) {
                snprintf(bad + strlen(bad), size - strlen(bad), "%s:%d: no docs/%s\n", rel,
                        lineno, doc);
                n++;
                continue;
            }
            /* "§N" on the same line, or at the start of the next comment line */
            while (*q == ' ') q++;
            if (*q == '\n' && have_next) {
                q = next;
                while (*q == ' ' || *q == '*' || *q == '/' || *q == '#' || *q == ';') q++;
            }
            if (strncmp(q, "§", strlen("§"))) continue;
            q += strlen("§");
            while (*q == ' ') q++;
            char sec[16];
            int k = 0;
            while (k < 15 && (isdigit((unsigned char)q[k]) ||
                    (q[k] == '.' && isdigit((unsigned char)q[k + 1])))) {
                sec[k] = q[k];
                k++;
            }
            sec[k] = '\0';
            n++;
            if (k && !doc_has_section(doc, sec))
                snprintf(bad + strlen(bad), size - strlen(bad), "%s:%d: docs/%s has no §%s\n",
                        rel, lineno, doc, sec);
        }
    }
    fclose(f);
    return n;
}

static int check_refs_in(const char *dir, char *bad, size_t size) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", DG_SOURCE_DIR, dir);
    DIR *d = opendir(path);
    ck_assert_msg(d, "%s: cannot list", path);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (!is_source(e->d_name)) continue;
        char rel[512];
        snprintf(rel, sizeof(rel), "%s/%s", dir, e->d_name);
        n += check_refs_of(rel, bad, size);
    }
    closedir(d);
    return n;
}

START_TEST(every_section_a_comment_cites_exists_in_docs) {
    static char bad[65536];
    bad[0] = '\0';
    int n = 0;
    for (size_t d = 0; d < DG_ARRAY_LEN(module_dirs); d++)
        n += check_refs_in(module_dirs[d], bad, sizeof(bad));
    n += check_refs_in("tests", bad, sizeof(bad));
    ck_assert_msg(!bad[0], "references that do not resolve:\n%s", bad);
    ck_assert_int_gt(n, 100); /* the references were found */
}
END_TEST

/* The check itself: a section that docs/algorithms.md has and one it has not. */
START_TEST(section_lookup_tells_present_from_absent) {
    ck_assert(doc_has_section("algorithms.md", "5.3"));
    ck_assert(doc_has_section("algorithms.md", "16"));
    ck_assert(!doc_has_section("algorithms.md", "5.9"));
    ck_assert(!doc_has_section("algorithms.md", "99"));
    ck_assert(!doc_has_section("no-such-doc.md", "1"));
}
END_TEST

Suite *layout_suite(void) {
    Suite *s = suite_create("layout");
    TCase *tc = tcase_create("tree");
    tcase_add_test(tc, no_module_includes_one_that_includes_it_back);
    tcase_add_test(tc, the_engine_never_includes_the_application);
    tcase_add_test(tc, every_section_a_comment_cites_exists_in_docs);
    tcase_add_test(tc, section_lookup_tells_present_from_absent);
    suite_add_tcase(s, tc);
    return s;
}
