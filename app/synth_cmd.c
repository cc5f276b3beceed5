/* app/synth_cmd.c -- see synth_cmd.h. Options are parsed with getopt_long
 * and range-checked here; data/synth.c does the work. */
#define _POSIX_C_SOURCE 200809L
#include "app/synth_cmd.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "app/cli.h"
#include "data/synth.h"

static void synth_usage(FILE *f) {
    fprintf(f,
            "usage: dgseg synth --out DIR [--seed N] [--width W] [--height H]\n"
            "                   [--per-domain N]\n"
            "\n"
            "Writes a small street-scene benchmark (the 19 Cityscapes\n"
            "classes) in five visual styles, each in its dataset's native\n"
            "layout and label encoding, so that the gtav, synthia,\n"
            "cityscapes, bdd100k and mapillary readers read it unchanged:\n"
            "  DIR/gtav/        source: train N, val n, test n\n"
            "                   (PNG, paletted labelIds, split_data lists)\n"
            "  DIR/synthia/     source: train N, val n\n"
            "                   (PNG, 16-bit class and instance ids, lists)\n"
            "  DIR/cityscapes/  target: val N, train n (PNG, gray labelIds)\n"
            "  DIR/bdd100k/     target: val N, train n (JPEG, gray trainIds)\n"
            "  DIR/mapillary/   target: validation N, training n\n"
            "                   (JPEG, paletted v1.2 ids)\n"
            "with n = max(1, N/4). Sources (GTAV-, SYNTHIA-like) and targets\n"
            "(Cityscapes-, BDD-, Mapillary-like) share the scene layout and\n"
            "differ in palette, texture, noise, blur, lighting and aspect.\n"
            "\n"
            "  --out DIR       output folder, created with its parents; files\n"
            "                  of the same names are replaced (folders are\n"
            "                  scanned: use a fresh DIR for a smaller N)\n"
            "  --seed N        scene seed, 0 .. 2^63-1 (default 0)\n"
            "  --height H      height of every frame, %d .. %d (default %d)\n"
            "  --width W       width of the Cityscapes-like frames, %d .. %d\n"
            "                  (default 2*H)\n"
            "  --per-domain N  training images per source, evaluation\n"
            "                  images per target, 1 .. %d (default %d)\n"
            "\n"
            "Frame sizes: every style has height H; the Cityscapes-like\n"
            "frames are W wide, the others follow their dataset's aspect\n"
            "ratio at height H: gtav round(H*1914/1052), synthia\n"
            "round(H*1280/760), bdd100k round(H*16/9), mapillary per image\n"
            "round(H*4/3), round(H*16/9) or round(H*3/4) (portrait).\n"
            "The same seed and sizes give the same bytes; images are made in\n"
            "parallel (OMP_NUM_THREADS) and do not depend on the thread\n"
            "count.\n",
            DG_SYNTH_MIN_SIDE, DG_SYNTH_MAX_SIDE, DG_SYNTH_DEFAULT_HEIGHT,
            DG_SYNTH_MIN_SIDE, DG_SYNTH_MAX_SIDE, DG_SYNTH_MAX_PER_DOMAIN,
            DG_SYNTH_DEFAULT_PER_DOMAIN);
}

/* 0 ok, 2 usage error, -1 after --help. */
static int parse_args(
        int argc, char **argv, dg_synth_opts *o, const char **out) {
    static const struct option longopts[] = {
            {"out", required_argument, NULL, 'o'},
            {"seed", required_argument, NULL, 's'},
            {"width", required_argument, NULL, 'w'},
            {"height", required_argument, NULL, 'H'},
            {"per-domain", required_argument, NULL, 'n'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
    };
    dg_synth_opts_default(o);
    *out = NULL;
    int64_t v, width = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            *out = optarg;
            break;
        case 's':
            if (!dg_cli_parse_int("synth", "--seed", optarg, 0, INT64_MAX, &v))
                return 2;
            o->seed = (uint64_t)v;
            break;
        case 'w':
            if (!dg_cli_parse_int("synth", "--width", optarg, DG_SYNTH_MIN_SIDE,
                        DG_SYNTH_MAX_SIDE, &width))
                return 2;
            break;
        case 'H':
            if (!dg_cli_parse_int("synth", "--height", optarg,
                        DG_SYNTH_MIN_SIDE, DG_SYNTH_MAX_SIDE, &v))
                return 2;
            o->height = (int)v;
            break;
        case 'n':
            if (!dg_cli_parse_int("synth", "--per-domain", optarg, 1,
                        DG_SYNTH_MAX_PER_DOMAIN, &v))
                return 2;
            o->per_domain = (int)v;
            break;
        case 'h':
            synth_usage(stdout);
            return -1;
        default:
            fprintf(stderr, "dgseg synth: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            synth_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dgseg synth: unexpected argument '%s'\n",
                argv[optind]);
        return 2;
    }
    if (!*out || !**out) {
        fprintf(stderr, "dgseg synth: --out DIR is required (see dgseg synth "
                        "--help)\n");
        return 2;
    }
    o->width = width ? (int)width : 2 * o->height;
    if (o->width > DG_SYNTH_MAX_SIDE) {
        fprintf(stderr,
                "dgseg synth: the default width 2*H = %d exceeds %d; give "
                "--width\n",
                o->width, DG_SYNTH_MAX_SIDE);
        return 2;
    }
    struct stat st;
    if (stat(*out, &st) == 0 && !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "dgseg synth: --out '%s' exists and is not a folder\n",
                *out);
        return 2;
    }
    return 0;
}

static void print_summary(
        const char *out, const dg_synth_summary *sum, double seconds) {
    printf("dgseg synth: %d images under %s\n", sum->n_images, out);
    printf("  %-11s %-11s %7s  %s\n", "domain", "split", "images",
            "size (W x H)");
    for (int i = 0; i < sum->n_splits; i++) {
        const dg_synth_split_info *si = &sum->splits[i];
        char size[48];
        if (si->min_width == si->max_width)
            snprintf(size, sizeof(size), "%dx%d", si->min_width, si->height);
        else
            snprintf(size, sizeof(size), "%d..%dx%d", si->min_width,
                    si->max_width, si->height);
        printf("  %-11s %-11s %7d  %s\n", dg_synth_style_name(si->style),
                si->split, si->count, size);
    }
    printf("wall time %.2f s\n", seconds);
}

int dg_synth_main(int argc, char **argv) {
    dg_synth_opts o;
    const char *out;
    const int rc = parse_args(argc, argv, &o, &out);
    if (rc) return rc < 0 ? 0 : 2;
    const double t0 = dg_now();
    dg_synth_summary sum;
    if (dg_synth_generate(out, &o, &sum) != DG_STATUS_OK) return 1;
    print_summary(out, &sum, dg_now() - t0);
    return 0;
}
