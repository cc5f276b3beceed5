/* app/config_cmd.c -- see config_cmd.h. Everything printed about a key
 * comes from dg_config_key_describe (the table in app/config.c); this file
 * only lays it out, as wrapped text or as the Markdown of
 * docs/configuration.md. */
#define _POSIX_C_SOURCE 200809L
#include "app/config_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "app/config.h"

#define WRAP_COLS 100 /* the terminal text's width */
#define INDENT 6      /* of a key's values and description under its "key = default" line */

/* The command that writes docs/configuration.md, named in the document
 * itself and in --help (the test that keeps the file current names this
 * build's binary instead). */
#define REGEN_CMD "build/dgseg config --markdown > docs/configuration.md"

static void config_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg config --list | --markdown\n"
            "\n"
            "Prints every configuration key that train, eval, verify, flatness and study\n"
            "read, from the table dgseg reads configurations with: per section, each key\n"
            "with its default, the values it accepts and what it does.\n"
            "\n"
            "  --list      as text, with this build's defaults\n"
            "  --markdown  as the Markdown of docs/configuration.md (a default fixed when\n"
            "              dgseg is built is named, not printed, so the file reads the same\n"
            "              from every checkout); from the source folder:\n"
            "              " REGEN_CMD "\n"
            "\n"
            "Exit codes: 0, 1 the output cannot be written, 2 usage error.\n");
}

__attribute__((format(printf, 3, 4))) static void append(char *out, size_t cap,
        const char *fmt, ...) {
    const size_t used = strlen(out);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + used, cap - used, fmt, ap);
    va_end(ap);
}

/* What key k accepts, in words: "one of a | b", "integer >= 1, or none",
 * "true or false"; in Markdown the literal values are code spans and a
 * choice's values are separated by commas (a bar would split the table
 * cell). */
static void accepts_text(const dg_config_key_info *k, bool md, char *out, size_t cap) {
    const char *q = md ? "`" : "";
    out[0] = '\0';
    if (!strcmp(k->kind, "choice")) {
        append(out, cap, "one of ");
        for (const char *p = k->choices; *p;) {
            const size_t len = strcspn(p, "|");
            append(out, cap, "%s%s%.*s%s", p == k->choices ? "" : md ? ", " : " | ", q,
                    (int)len, p, q);
            p += len + (p[len] == '|');
        }
    } else if (!strcmp(k->kind, "boolean")) {
        append(out, cap, "%strue%s or %sfalse%s", q, q, q, q);
    } else if (!strcmp(k->kind, "list")) {
        append(out, cap, "list, comma separated");
    } else {
        append(out, cap, "%s", k->kind);
        if (k->range[0]) append(out, cap, " %s", k->range);
        if (k->choices[0]) append(out, cap, ", or %s%s%s", q, k->choices, q);
    }
}

/* text wrapped at WRAP_COLS columns (at spaces; a longer word stands on its
 * own line), every line indented by INDENT spaces. */
static void print_wrapped(FILE *f, const char *text) {
    const size_t room = WRAP_COLS - INDENT;
    for (const char *p = text; *p;) {
        while (*p == ' ') p++;
        if (!*p) break;
        size_t take = strlen(p);
        if (take > room) {
            take = room;
            while (take > 0 && p[take] != ' ') take--;
            if (take == 0) take = strcspn(p, " ");
        }
        fprintf(f, "%*s%.*s\n", INDENT, "", (int)take, p);
        p += take;
    }
}

static void print_list(FILE *f) {
    size_t n_sections;
    const char *const *sections = dg_config_sections(&n_sections);
    char accepts[512];
    for (size_t s = 0; s < n_sections; s++) {
        fprintf(f, "%s[%s]\n", s ? "\n" : "", sections[s]);
        for (size_t i = 0; i < dg_config_key_count(); i++) {
            dg_config_key_info k;
            dg_config_key_describe(i, &k);
            if (strcmp(k.section, sections[s])) continue;
            fprintf(f, "  %s =%s%s\n", k.key, k.def[0] ? " " : "", k.def);
            accepts_text(&k, false, accepts, sizeof(accepts));
            if (k.build_default)
                append(accepts, sizeof(accepts), " (default fixed when dgseg was built)");
            print_wrapped(f, accepts);
            print_wrapped(f, k.help);
        }
    }
}

/* s as the text of a Markdown table cell: a bar would end the cell, '<'
 * could open an HTML tag and '*' emphasis; backslash escapes keep the raw
 * file readable. */
static void md_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|' || *s == '<' || *s == '*') fputc('\\', f);
        fputc(*s, f);
    }
}

static void print_markdown(FILE *f) {
    size_t n_sections;
    const char *const *sections = dg_config_sections(&n_sections);
    fprintf(f,
            "# Configuration keys\n"
            "\n"
            "<!-- Generated from the key table in app/config.c; do not edit. Regenerate it with\n"
            "     " REGEN_CMD " -->\n"
            "\n"
            "This file is generated by `dgseg config --markdown` from the key table in\n"
            "`app/config.c`: change the table, then regenerate it from the source folder with\n"
            "`" REGEN_CMD "` (suite `config` fails while the two\n"
            "differ). `dgseg config --list` prints the same reference as text, with the defaults\n"
            "of the build at hand.\n"
            "\n"
            "A configuration is an INI file with the sections `[data]`, `[model]`, `[optim]`,\n"
            "`[train]`, `[eval]` and `[output]`; a key left out takes its default, and any key\n"
            "can be overridden on the command line as `section.key=value`. An unknown section or\n"
            "key, a malformed value or one out of its range is an error naming the file, line\n"
            "and key (exit 2). Lists are comma separated and may continue on indented lines;\n"
            "booleans also read `yes`/`no`, `on`/`off` and `1`/`0`. The `[optim]` keys of\n"
            "methods other than `optim.method` are accepted and ignored. `dgseg train` writes\n"
            "the resolved configuration, every default included, to the run folder's\n"
            "`config.ini`.\n"
            "\n"
            "%zu keys in %zu sections.\n", dg_config_key_count(), n_sections);
    char accepts[512];
    for (size_t s = 0; s < n_sections; s++) {
        fprintf(f, "\n## [%s]\n\n| key | default | accepts | description |\n|---|---|---|---|\n",
                sections[s]);
        for (size_t i = 0; i < dg_config_key_count(); i++) {
            dg_config_key_info k;
            dg_config_key_describe(i, &k);
            if (strcmp(k.section, sections[s])) continue;
            fprintf(f, "| `%s` | ", k.key);
            if (k.build_default) fputs("*set when dgseg is built*", f);
            else if (!k.def[0]) fputs("*(empty)*", f);
            else fprintf(f, "`%s`", k.def);
            accepts_text(&k, true, accepts, sizeof(accepts));
            fprintf(f, " | %s | ", accepts);
            md_text(f, k.help);
            fputs(" |\n", f);
        }
    }
}

/* 0 with *markdown set, -1 after --help, or 2 after a usage error. */
static int parse_args(int argc, char **argv, bool *markdown) {
    static const struct option longopts[] = {
            {"list", no_argument, NULL, 'l'},
            {"markdown", no_argument, NULL, 'm'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
    };
    bool list = false, md = false;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            list = true;
            break;
        case 'm':
            md = true;
            break;
        case 'h':
            config_usage(stdout);
            return -1;
        default:
            fprintf(stderr, "dgseg config: unknown option '%s' (it takes --list or --markdown, "
                    "without a value)\n", argv[optind - 1]);
            config_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dgseg config: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (list == md) {
        fprintf(stderr, list ? "dgseg config: --list and --markdown exclude each other\n"
                             : "dgseg config: give --list or --markdown (see dgseg config "
                               "--help)\n");
        return 2;
    }
    *markdown = md;
    return 0;
}

int dg_config_main(int argc, char **argv) {
    bool markdown = false;
    const int rc = parse_args(argc, argv, &markdown);
    if (rc) return rc < 0 ? 0 : 2;
    errno = 0;
    if (markdown) print_markdown(stdout);
    else print_list(stdout);
    /* a full disk or a closed pipe must not pass for a complete reference
     * (docs/configuration.md is written through a redirection) */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        dg_log_error("standard output: the configuration reference could not be written: %s",
                errno ? strerror(errno) : "write error");
        return 1;
    }
    return 0;
}
