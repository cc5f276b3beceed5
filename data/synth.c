/* data/synth.c -- the `dgseg synth` benchmark generator; see synth.h.
 *
 * A frame is built in three passes: (1) a scene is drawn from the frame's
 * stream (camera, street geometry, facade segments, objects as lists of
 * primitives); (2) every pixel is classified: a ray from the pinhole camera
 * meets the ground plane, the two facade lines of each side or the far
 * facade, nearest first, else the sky; then the object primitives are
 * painted far to near, then the ego hood; each pixel keeps its scene kind,
 * part (main, dark glass/tyre/window, light, accent), face orientation,
 * instance and surface coordinates; (3) the kinds become native label ids
 * through the style's table and the pixels are shaded with the style
 * (palette, per-instance colour, value-noise texture, sun side, haze,
 * exposure, white balance, saturation, contrast), blurred by an OpenCV
 * down/up resize, given sensor noise and written as PNG or JPEG.
 *
 * World units are metres: X to the right, Y up from the ground, Z forward
 * (depth). Pixel (x, y) has its centre at (x + 0.5, y + 0.5).
 * Owns nothing beyond one call. Shape letters: H, W (pixels). */
#define _POSIX_C_SOURCE 200809L
#include "data/synth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/fsutil.h"
#include "data/image_cv.h"
#include "data/png_io.h"

/* ---- scene vocabulary ---------------------------------------------------- */

/* Scene kinds: 0 .. 18 are the trainIds' classes; the others are drawn
 * variants that some datasets label with their own ids. */
enum kind {
    K_ROAD = 0,
    K_SIDEWALK,
    K_BUILDING,
    K_WALL,
    K_FENCE,
    K_POLE,
    K_TLIGHT,
    K_TSIGN,
    K_VEG,
    K_TERRAIN,
    K_SKY,
    K_PERSON,
    K_RIDER,
    K_CAR,
    K_TRUCK,
    K_BUS,
    K_TRAIN,
    K_MOTO,
    K_BICYCLE,
    K_LANE,        /* lane marking on the road */
    K_CURB,        /* curb stone between road and sidewalk */
    K_MANHOLE,     /* manhole cover on the road */
    K_UTILPOLE,    /* wooden utility pole */
    K_RIDER_MOTO,  /* rider on a motorcycle */
    K_RIDER_OTHER, /* rider labelled "other rider" by Mapillary */
    K_VOID,        /* advertising column: unlabeled everywhere */
    K_EGO,         /* ego vehicle hood */
    K_STATIC,      /* bins: static / trash can */
    K_PARKING,     /* parking verge */
    K_N
};
#define K_NONE 255

enum part { P_MAIN = 0, P_DARK, P_LIGHT, P_ACCENT };
enum face { F_GROUND = 0, F_LEFT, F_RIGHT, F_FRONT, F_SKY };

/* Native label value of each kind per style: GTAV palette indices and
 * Cityscapes gray values are labelIds (docs/datasets.md §1.2), SYNTHIA class ids
 * (§3), BDD trainIds (§4), Mapillary v1.2 ids (§5). Ignore-mapped ids:
 * Cityscapes/GTAV 0 unlabeled, 1 ego vehicle, 4 static, 9 parking; SYNTHIA
 * 0 void, 13 parking-slot, 22 lanemarking; BDD 255; Mapillary 10 parking,
 * 51 trash can, 64 ego vehicle, 65 unlabeled. */
static const uint8_t NATIVE[K_N][DG_SYNTH_N_STYLES] = {
    /*                 gtav synthia cityscapes bdd100k mapillary */
    [K_ROAD] =        {   7,      3,         7,       0,       13},
    [K_SIDEWALK] =    {   8,      4,         8,       1,       15},
    [K_BUILDING] =    {  11,      2,        11,       2,       17},
    [K_WALL] =        {  12,     21,        12,       3,        6},
    [K_FENCE] =       {  13,      5,        13,       4,        3},
    [K_POLE] =        {  17,      7,        17,       5,       45},
    [K_TLIGHT] =      {  19,     15,        19,       6,       48},
    [K_TSIGN] =       {  20,      9,        20,       7,       50},
    [K_VEG] =         {  21,      6,        21,       8,       30},
    [K_TERRAIN] =     {  22,     16,        22,       9,       29},
    [K_SKY] =         {  23,      1,        23,      10,       27},
    [K_PERSON] =      {  24,     10,        24,      11,       19},
    [K_RIDER] =       {  25,     17,        25,      12,       20},
    [K_CAR] =         {  26,      8,        26,      13,       55},
    [K_TRUCK] =       {  27,     18,        27,      14,       61},
    [K_BUS] =         {  28,     19,        28,      15,       54},
    [K_TRAIN] =       {  31,     20,        31,      16,       58},
    [K_MOTO] =        {  32,     12,        32,      17,       57},
    [K_BICYCLE] =     {  33,     11,        33,      18,       52},
    [K_LANE] =        {   7,     22,         7,       0,       24},
    [K_CURB] =        {   8,      4,         8,       1,        2},
    [K_MANHOLE] =     {   7,      3,         7,       0,       41},
    [K_UTILPOLE] =    {  17,      7,        17,       5,       47},
    [K_RIDER_MOTO] =  {  25,     17,        25,      12,       21},
    [K_RIDER_OTHER] = {  25,     17,        25,      12,       22},
    [K_VOID] =        {   0,      0,         0,     255,       65},
    [K_EGO] =         {   1,      0,         1,     255,       64},
    [K_STATIC] =      {   4,      0,         4,     255,       51},
    [K_PARKING] =     {   9,     13,         9,     255,       10},
};

/* Kinds whose instances SYNTHIA labels in channel 1. */
static bool kind_is_thing(int k) {
    return (k >= K_PERSON && k <= K_BICYCLE) || k == K_RIDER_MOTO ||
           k == K_RIDER_OTHER;
}

/* Cityscapes labelId colours (docs/datasets.md §1.2): GTAV's label palette. */
static const uint8_t LABELID_PALETTE[34][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0},
        {0, 0, 0}, {0, 0, 0}, {111, 74, 0}, {81, 0, 81}, {128, 64, 128},
        {244, 35, 232}, {250, 170, 160}, {230, 150, 140}, {70, 70, 70},
        {102, 102, 156}, {190, 153, 153}, {180, 165, 180}, {150, 100, 100},
        {150, 120, 90}, {153, 153, 153}, {153, 153, 153}, {250, 170, 30},
        {220, 220, 0}, {107, 142, 35}, {152, 251, 152}, {70, 130, 180},
        {220, 20, 60}, {255, 0, 0}, {0, 0, 142}, {0, 0, 70}, {0, 60, 100},
        {0, 0, 90}, {0, 0, 110}, {0, 80, 100}, {0, 0, 230}, {119, 11, 32}};

/* Mapillary Vistas v1.2 colours of ids 0 .. 65 (config.json as transcribed
 * in facebookresearch/Mask2Former
 * mask2former/data/datasets/register_mapillary_vistas.py). */
static const uint8_t MAPILLARY_PALETTE[66][3] = {{165, 42, 42}, {0, 192, 0},
        {196, 196, 196}, {190, 153, 153}, {180, 165, 180}, {90, 120, 150},
        {102, 102, 156}, {128, 64, 255}, {140, 140, 200}, {170, 170, 170},
        {250, 170, 160}, {96, 96, 96}, {230, 150, 140}, {128, 64, 128},
        {110, 110, 110}, {244, 35, 232}, {150, 100, 100}, {70, 70, 70},
        {150, 120, 90}, {220, 20, 60}, {255, 0, 0}, {255, 0, 100},
        {255, 0, 200}, {200, 128, 128}, {255, 255, 255}, {64, 170, 64},
        {230, 160, 50}, {70, 130, 180}, {190, 255, 255}, {152, 251, 152},
        {107, 142, 35}, {0, 170, 30}, {255, 255, 128}, {250, 0, 30},
        {100, 140, 180}, {220, 220, 220}, {220, 128, 128}, {222, 40, 40},
        {100, 170, 30}, {40, 40, 40}, {33, 33, 33}, {100, 128, 160},
        {142, 0, 0}, {70, 100, 150}, {210, 170, 100}, {153, 153, 153},
        {128, 128, 128}, {0, 0, 80}, {250, 170, 30}, {192, 192, 192},
        {220, 220, 0}, {140, 140, 20}, {119, 11, 32}, {150, 0, 255},
        {0, 60, 100}, {0, 0, 142}, {0, 0, 90}, {0, 0, 230}, {0, 80, 100},
        {128, 64, 64}, {0, 0, 110}, {0, 0, 70}, {0, 0, 192}, {32, 32, 32},
        {120, 10, 10}, {0, 0, 0}};

/* ---- styles -------------------------------------------------------------- */

/* Base colour of each kind per style (gtav, synthia, cityscapes, bdd100k,
 * mapillary), 8-bit RGB before the per-image exposure, white balance,
 * saturation and contrast. Cars take a paint from style_def.car instead; the
 * sky is a gradient (style_def.sky_top, sky_hor). Source and target colours
 * of a class differ on purpose (docs/design.md §7). */
static const float PALETTE[K_N][DG_SYNTH_N_STYLES][3] = {
    /*                 gtav             synthia          cityscapes       bdd100k          mapillary */
    [K_ROAD] =        {{112,  96, 128}, {120, 105,  90}, { 98,  92, 104}, { 95,  90,  85}, {155, 152, 145}},
    [K_SIDEWALK] =    {{200, 180, 150}, {150, 195, 200}, {150, 145, 140}, {130, 120, 110}, {165, 110, 100}},
    [K_BUILDING] =    {{185, 125,  85}, {215, 170, 175}, {125, 120, 112}, {140, 115, 100}, {205, 200, 190}},
    [K_WALL] =        {{160, 150, 120}, {200, 200, 150}, {175, 168, 155}, {150, 140, 125}, {120, 125, 130}},
    [K_FENCE] =       {{ 95,  62,  40}, {160,  60,  40}, {105, 110,  95}, {100,  90,  70}, {160, 165, 170}},
    [K_POLE] =        {{ 65,  70,  80}, {190, 170,  60}, {130, 130, 135}, {110, 110, 100}, {175, 175, 170}},
    [K_TLIGHT] =      {{ 45,  45,  35}, { 30,  30,  30}, { 25,  25,  25}, { 20,  20,  20}, {200, 180,  40}},
    [K_TSIGN] =       {{ 40,  90, 210}, {230,  60,  50}, {225, 225, 230}, { 60, 140,  70}, {200,  40,  40}},
    [K_VEG] =         {{ 60, 150,  45}, { 30, 130,  95}, { 78, 118,  42}, { 55,  75,  45}, { 65, 125,  45}},
    [K_TERRAIN] =     {{165, 170,  70}, {190, 150,  90}, {115, 125,  75}, {120, 110,  70}, {135, 110,  75}},
    [K_SKY] =         {{ 95, 165, 240}, {135, 205, 255}, {215, 220, 225}, {200, 150, 120}, {190, 210, 225}},
    [K_PERSON] =      {{175,  60,  75}, { 80,  90, 200}, { 55,  55,  65}, { 70,  60,  60}, { 45,  60, 110}},
    [K_RIDER] =       {{150,  50, 160}, {230, 120,  40}, { 85,  60,  45}, { 90,  70,  60}, { 60,  60,  60}},
    [K_CAR] =         {{150, 100, 100}, {150, 150, 150}, {120, 120, 120}, {120, 120, 120}, {120, 120, 120}},
    [K_TRUCK] =       {{235, 125,  25}, {170,  60, 190}, {215, 215, 210}, {190, 185, 175}, { 60,  90, 150}},
    [K_BUS] =         {{ 40, 165,  70}, {230, 220,  60}, {225, 195,  40}, {200,  60,  40}, {235, 235, 230}},
    [K_TRAIN] =       {{200, 195,  60}, { 70, 180, 220}, {190,  40,  40}, {160, 160, 170}, { 90, 160,  90}},
    [K_MOTO] =        {{205,  40,  40}, { 90, 200,  90}, { 45,  45,  50}, { 60,  60,  60}, { 30,  30,  30}},
    [K_BICYCLE] =     {{245, 205,   0}, {240, 100, 180}, { 35,  35,  40}, { 50,  50,  55}, {150,  30,  30}},
    [K_LANE] =        {{240, 240, 230}, {250, 250, 250}, {200, 200, 195}, {230, 220, 160}, {245, 245, 245}},
    [K_CURB] =        {{215, 205, 190}, {180, 215, 215}, {165, 162, 158}, {150, 140, 130}, {190, 190, 185}},
    [K_MANHOLE] =     {{ 60,  55,  60}, { 50,  50,  60}, { 55,  55,  55}, { 40,  40,  40}, { 50,  50,  45}},
    [K_UTILPOLE] =    {{120,  85,  55}, {150, 110,  70}, {110, 100,  90}, {100,  80,  60}, {105,  80,  60}},
    [K_RIDER_MOTO] =  {{150,  50, 160}, {230, 120,  40}, { 85,  60,  45}, { 90,  70,  60}, { 60,  60,  60}},
    [K_RIDER_OTHER] = {{150,  50, 160}, {230, 120,  40}, { 85,  60,  45}, { 90,  70,  60}, { 60,  60,  60}},
    [K_VOID] =        {{180,  80, 160}, {150, 150, 150}, {200, 190, 160}, {150, 130, 110}, {110, 160, 200}},
    [K_EGO] =         {{ 30,  30,  35}, { 20,  20,  20}, { 40,  45,  50}, { 25,  25,  28}, { 60,  60,  65}},
    [K_STATIC] =      {{ 50, 120,  70}, { 90,  90, 160}, { 90,  95,  85}, { 70,  80,  70}, { 40,  90,  40}},
    [K_PARKING] =     {{135, 120, 140}, {145, 130, 110}, {100,  98,  95}, {110, 100,  95}, {150, 145, 140}},
};

/* Everything else that makes a style; colours as in PALETTE. */
typedef struct style_def {
    float car[6][3];  /* car paints */
    float dark[3];    /* glass, windows, tyres */
    float sky_top[3]; /* sky at the top of the frame */
    float sky_hor[3]; /* sky at the horizon, also the haze colour */
    float var;        /* per-instance colour jitter (fraction) */
    float tex;        /* texture amplitude (fraction) */
    float cloud;      /* cloud amplitude (fraction towards white) */
    float sun;        /* facade light difference between the sides */
    float fog;        /* haze distance (m); 0: none */
    float expo_lo;    /* exposure range */
    float expo_hi;
    float wb;     /* white-balance jitter per channel */
    float sat_lo; /* saturation range */
    float sat_hi;
    float contrast;
    float tint[3]; /* colour cast */
    float noise;   /* sensor noise sigma (8-bit units) */
    float blur;    /* down/up resize factor; 1: no blur */
    int jpeg;      /* JPEG quality; 0: PNG */
    float ego_p;   /* probability of the ego hood */
    int width_num; /* aspect ratio width:height; 0: opts->width */
    int width_den;
} style_def;

static const style_def STYLES[DG_SYNTH_N_STYLES] = {
        /* GTAV-like: sunny video game, saturated, crisp. */
        {.car = {{200, 30, 30}, {30, 60, 180}, {235, 235, 235}, {25, 25, 25},
                 {220, 180, 30}, {40, 150, 140}},
                .dark = {35, 55, 85},
                .sky_top = {40, 110, 225},
                .sky_hor = {150, 200, 250},
                .var = 0.10f,
                .tex = 0.08f,
                .cloud = 0.05f,
                .sun = 0.12f,
                .fog = 400.f,
                .expo_lo = 0.95f,
                .expo_hi = 1.08f,
                .wb = 0.02f,
                .sat_lo = 1.1f,
                .sat_hi = 1.2f,
                .contrast = 1.05f,
                .tint = {1.f, 1.f, 1.f},
                .noise = 1.5f,
                .blur = 1.f,
                .jpeg = 0,
                .ego_p = 0.25f,
                .width_num = 1914,
                .width_den = 1052},
        /* SYNTHIA-like: flat vivid colours, no noise. */
        {.car = {{250, 90, 90}, {90, 140, 250}, {250, 250, 120},
                 {150, 250, 150}, {250, 160, 60}, {200, 120, 250}},
                .dark = {20, 30, 45},
                .sky_top = {120, 195, 255},
                .sky_hor = {160, 215, 255},
                .var = 0.18f,
                .tex = 0.03f,
                .cloud = 0.f,
                .sun = 0.08f,
                .fog = 0.f,
                .expo_lo = 1.f,
                .expo_hi = 1.f,
                .wb = 0.f,
                .sat_lo = 1.2f,
                .sat_hi = 1.3f,
                .contrast = 1.f,
                .tint = {1.f, 1.f, 1.f},
                .noise = 0.f,
                .blur = 1.f,
                .jpeg = 0,
                .ego_p = 0.f,
                .width_num = 1280,
                .width_den = 760},
        /* Cityscapes-like: overcast German street, greyish, soft. */
        {.car = {{160, 162, 165}, {40, 42, 45}, {225, 225, 225}, {50, 60, 90},
                 {110, 30, 35}, {95, 95, 90}},
                .dark = {50, 55, 60},
                .sky_top = {190, 195, 205},
                .sky_hor = {228, 230, 233},
                .var = 0.12f,
                .tex = 0.12f,
                .cloud = 0.08f,
                .sun = 0.03f,
                .fog = 200.f,
                .expo_lo = 0.85f,
                .expo_hi = 1.f,
                .wb = 0.03f,
                .sat_lo = 0.7f,
                .sat_hi = 0.8f,
                .contrast = 0.85f,
                .tint = {1.f, 1.f, 1.f},
                .noise = 4.f,
                .blur = 0.6f,
                .jpeg = 0,
                .ego_p = 1.f,
                .width_num = 0,
                .width_den = 1},
        /* BDD-like: dusk dashcam, dark, warm cast, noisy, JPEG. */
        {.car = {{170, 170, 175}, {30, 30, 35}, {210, 210, 205}, {120, 25, 25},
                 {40, 60, 110}, {150, 130, 100}},
                .dark = {15, 15, 20},
                .sky_top = {55, 60, 105},
                .sky_hor = {235, 150, 95},
                .var = 0.12f,
                .tex = 0.10f,
                .cloud = 0.04f,
                .sun = 0.05f,
                .fog = 140.f,
                .expo_lo = 0.35f,
                .expo_hi = 0.75f,
                .wb = 0.05f,
                .sat_lo = 0.75f,
                .sat_hi = 0.9f,
                .contrast = 0.9f,
                .tint = {1.1f, 0.95f, 0.82f},
                .noise = 9.f,
                .blur = 0.5f,
                .jpeg = 70,
                .ego_p = 0.9f,
                .width_num = 16,
                .width_den = 9},
        /* Mapillary-like: anywhere in the world, random camera settings. */
        {.car = {{190, 190, 195}, {20, 20, 25}, {240, 240, 240}, {160, 30, 30},
                 {30, 90, 60}, {200, 170, 120}},
                .dark = {60, 70, 85},
                .sky_top = {90, 150, 220},
                .sky_hor = {170, 200, 232},
                .var = 0.2f,
                .tex = 0.12f,
                .cloud = 0.06f,
                .sun = 0.15f,
                .fog = 250.f,
                .expo_lo = 0.85f,
                .expo_hi = 1.2f,
                .wb = 0.12f,
                .sat_lo = 0.7f,
                .sat_hi = 1.3f,
                .contrast = 1.f,
                .tint = {1.f, 1.f, 1.f},
                .noise = 5.f,
                .blur = 0.7f,
                .jpeg = 85,
                .ego_p = 0.3f,
                .width_num = 4,
                .width_den = 3},
};

/* Mapillary frame aspect ratios (width:height) and their probabilities. */
static const int MAP_ASPECT[3][2] = {{4, 3}, {16, 9}, {3, 4}};
static const float MAP_ASPECT_P[3] = {0.5f, 0.35f, 0.15f};

/* ---- splits -------------------------------------------------------------- */

typedef struct style_splits {
    int n;
    const char *name[3];
    bool main[3]; /* gets N images; the others max(1, N / 4) */
} style_splits;

static const style_splits SPLITS[DG_SYNTH_N_STYLES] = {
        {3, {"train", "val", "test"}, {true, false, false}},
        {2, {"train", "val"}, {true, false}},
        {2, {"train", "val"}, {false, true}},
        {2, {"train", "val"}, {false, true}},
        {2, {"training", "validation"}, {false, true}},
};

static const char *const NAMES[DG_SYNTH_N_STYLES] = {
        "gtav", "synthia", "cityscapes", "bdd100k", "mapillary"};

/* Invented Cityscapes cities per split (train, val). */
static const char *const CITIES[2][4] = {
        {"ashbourne", "brackwater", "coldharbour", "dunmere"},
        {"eastwick", "foxley", "greyhaven", NULL}};
static const int N_CITIES[2] = {4, 3};

void dg_synth_opts_default(dg_synth_opts *o) {
    memset(o, 0, sizeof(*o));
    o->seed = 0;
    o->height = DG_SYNTH_DEFAULT_HEIGHT;
    o->width = 2 * DG_SYNTH_DEFAULT_HEIGHT;
    o->per_domain = DG_SYNTH_DEFAULT_PER_DOMAIN;
}

const char *dg_synth_style_name(dg_synth_style s) {
    DG_ASSERT((int)s >= 0 && (int)s < DG_SYNTH_N_STYLES);
    return NAMES[s];
}

int dg_synth_n_splits(dg_synth_style s) {
    DG_ASSERT((int)s >= 0 && (int)s < DG_SYNTH_N_STYLES);
    return SPLITS[s].n;
}

const char *dg_synth_split_name(dg_synth_style s, int k) {
    DG_ASSERT(k >= 0 && k < dg_synth_n_splits(s));
    return SPLITS[s].name[k];
}

int dg_synth_split_count(dg_synth_style s, int k, int per_domain) {
    DG_ASSERT(k >= 0 && k < dg_synth_n_splits(s) && per_domain >= 1);
    return SPLITS[s].main[k] ? per_domain : DG_MAX(1, per_domain / 4);
}

/* ---- random draws and value noise ---------------------------------------- */

static float unif(dg_rng *r, float lo, float hi) {
    return lo + (hi - lo) * (float)dg_rng_uniform(r);
}

static bool chance(dg_rng *r, float p) {
    return dg_rng_uniform(r) < p;
}

static int below(dg_rng *r, int n) {
    return (int)dg_rng_below(r, (uint64_t)n);
}

/* Lattice value in [-1, 1] of (ix, iy) for a salt. */
static float lattice(uint64_t salt, int32_t ix, int32_t iy) {
    uint64_t key = salt ^ ((uint64_t)(uint32_t)ix << 32) ^ (uint32_t)iy;
    return (float)(dg_rng_mix(key) >> 40) * (2.f / 16777216.f) - 1.f;
}

/* Smooth value noise in [-1, 1] at (u, v) (lattice spacing 1). */
static float vnoise(uint64_t salt, float u, float v) {
    const float fu = floorf(u), fv = floorf(v);
    const int32_t ix = (int32_t)fu, iy = (int32_t)fv;
    float tx = u - fu, ty = v - fv;
    tx = tx * tx * (3.f - 2.f * tx);
    ty = ty * ty * (3.f - 2.f * ty);
    const float a = lattice(salt, ix, iy), b = lattice(salt, ix + 1, iy);
    const float c = lattice(salt, ix, iy + 1),
                d = lattice(salt, ix + 1, iy + 1);
    return (a + (b - a) * tx) * (1.f - ty) + (c + (d - c) * tx) * ty;
}

/* Two octaves. */
static float fbm(uint64_t salt, float u, float v) {
    return 0.65f * vnoise(salt, u, v) +
           0.35f * vnoise(salt + 1, 2.1f * u, 2.1f * v);
}

static float fracf(float x) {
    return x - floorf(x);
}

/* ---- scene --------------------------------------------------------------- */

#define MAX_SEG 64
#define MAX_PRIM 1024
#define MAX_INST 512

/* A stretch [z0, z1) of one side of the street. */
typedef struct segment {
    float z0;
    float z1;
    uint8_t front; /* kind at the facade line, or K_NONE */
    uint8_t back;  /* kind at the back line, or K_NONE */
    uint8_t verge; /* ground kind between sidewalk and facade line */
    float front_h; /* heights (m) */
    float back_h;
    uint16_t front_inst;
    uint16_t back_inst;
    float win_dz; /* window grid of buildings (m) */
    float win_dy;
} segment;

typedef struct street_side {
    float sw; /* outer sidewalk edge |X| (m) */
    float xf; /* facade line |X| */
    float xb; /* back line |X| */
    int n_seg;
    segment seg[MAX_SEG];
} street_side;

enum shape { SH_RECT = 0, SH_ELLIPSE, SH_RING, SH_LINE, SH_TRI };

/* One object primitive, upright at depth z: a box [x0, x1] x [y0, y1], an
 * ellipse or ring inscribed in it (ring width t as a fraction of the
 * radius), a thick segment (x0, y0)-(x1, y1) of width t, or an upward
 * triangle in the box. */
typedef struct prim {
    float z;
    int order;
    uint8_t shape;
    uint8_t kind;
    uint8_t part;
    uint16_t inst;
    float x0;
    float y0;
    float x1;
    float y1;
    float t;
} prim;

typedef struct instance {
    float col[3];   /* base colour */
    float light[3]; /* colour of its lights */
} instance;

typedef struct frame {
    const style_def *st;
    int style; /* dg_synth_style */
    int h;
    int w;
    float f;             /* focal length (pixels) */
    float yh;            /* horizon row */
    float xv;            /* vanishing column */
    float hc;            /* camera height (m) */
    float rh;            /* road half width (m) */
    street_side side[2]; /* 0: X < 0, 1: X > 0 */
    float zfar;          /* far facade depth */
    uint8_t far_kind;    /* or K_NONE */
    float far_h;
    uint16_t far_inst;
    float far_win;
    int n_manhole;
    float manhole[4][3]; /* X, Z, radius */
    bool tram;
    float tram_x;
    bool ego;
    float ego_h;     /* hood height at the frame edges (pixels) */
    float ego_bulge; /* extra height at the centre (pixels) */
    int sun_side;
    uint64_t salt;
    float expo;
    float wb[3];
    float sat;
    int n_inst;
    instance inst[MAX_INST];
    int n_prim;
    prim prims[MAX_PRIM];
    /* per pixel (H, W) */
    uint8_t *kind;
    uint8_t *part;
    uint8_t *face;
    uint16_t *inst_id;
    float *u; /* surface coordinates (m) */
    float *v;
    float *z; /* depth (m) */
} frame;

/* A new instance of kind k with a jittered colour. */
static uint16_t new_inst(frame *fr, dg_rng *r, int k) {
    DG_ASSERT(fr->n_inst < MAX_INST);
    const style_def *st = fr->st;
    instance *in = &fr->inst[fr->n_inst];
    const float *base =
            k == K_CAR ? st->car[below(r, 6)] : PALETTE[k][fr->style];
    const float b = 1.f + st->var * unif(r, -1.f, 1.f);
    for (int c = 0; c < 3; c++)
        in->col[c] = base[c] * b * (1.f + 0.4f * st->var * unif(r, -1.f, 1.f));
    in->light[0] = 255.f, in->light[1] = 40.f, in->light[2] = 30.f;
    return (uint16_t)fr->n_inst++;
}

static void set_light(frame *fr, uint16_t id, float r, float g, float b) {
    fr->inst[id].light[0] = r;
    fr->inst[id].light[1] = g;
    fr->inst[id].light[2] = b;
}

static void add_prim(frame *fr, int shape, int kind, int part, uint16_t inst,
        float z, float x0, float y0, float x1, float y1, float t) {
    if (fr->n_prim == MAX_PRIM) return; /* a full frame drops late objects */
    prim *p = &fr->prims[fr->n_prim];
    p->z = z;
    p->order = fr->n_prim++;
    p->shape = (uint8_t)shape;
    p->kind = (uint8_t)kind;
    p->part = (uint8_t)part;
    p->inst = inst;
    p->x0 = x0, p->y0 = y0, p->x1 = x1, p->y1 = y1, p->t = t;
}

static void add_rect(frame *fr, int kind, int part, uint16_t inst, float z,
        float x0, float y0, float x1, float y1) {
    add_prim(fr, SH_RECT, kind, part, inst, z, x0, y0, x1, y1, 0.f);
}

/* ---- objects (world metres, X of the object's centre, depth z) ----------- */

static void obj_car(frame *fr, dg_rng *r, float x, float z) {
    const uint16_t id = new_inst(fr, r, K_CAR);
    const float w = unif(r, 1.7f, 1.95f), h = unif(r, 1.35f, 1.6f);
    const float l = x - w / 2, rt = x + w / 2;
    add_rect(fr, K_CAR, P_DARK, id, z, l + 0.05f, 0.f, l + 0.4f, 0.34f);
    add_rect(fr, K_CAR, P_DARK, id, z, rt - 0.4f, 0.f, rt - 0.05f, 0.34f);
    add_rect(fr, K_CAR, P_MAIN, id, z, l, 0.28f, rt, 0.62f * h);
    add_prim(fr, SH_ELLIPSE, K_CAR, P_MAIN, id, z, l + 0.1f * w, 0.45f * h,
            rt - 0.1f * w, 1.02f * h, 0.f);
    add_rect(fr, K_CAR, P_DARK, id, z, l + 0.18f * w, 0.64f * h, rt - 0.18f * w,
            0.9f * h);
    add_rect(fr, K_CAR, P_LIGHT, id, z, l + 0.04f, 0.45f * h, l + 0.3f,
            0.56f * h);
    add_rect(fr, K_CAR, P_LIGHT, id, z, rt - 0.3f, 0.45f * h, rt - 0.04f,
            0.56f * h);
}

static void obj_truck(frame *fr, dg_rng *r, float x, float z) {
    const uint16_t id = new_inst(fr, r, K_TRUCK);
    const float w = unif(r, 2.3f, 2.55f), h = unif(r, 3.0f, 3.9f);
    const float l = x - w / 2, rt = x + w / 2;
    add_rect(fr, K_TRUCK, P_DARK, id, z, l + 0.1f, 0.f, l + 0.6f, 0.5f);
    add_rect(fr, K_TRUCK, P_DARK, id, z, rt - 0.6f, 0.f, rt - 0.1f, 0.5f);
    add_rect(fr, K_TRUCK, P_DARK, id, z, l + 0.05f, 0.35f, rt - 0.05f, 0.6f);
    add_rect(fr, K_TRUCK, P_MAIN, id, z, l, 0.6f, rt, h);
    add_rect(fr, K_TRUCK, P_LIGHT, id, z, l + 0.05f, 0.7f, l + 0.35f, 0.9f);
    add_rect(fr, K_TRUCK, P_LIGHT, id, z, rt - 0.35f, 0.7f, rt - 0.05f, 0.9f);
}

static void obj_bus(frame *fr, dg_rng *r, float x, float z) {
    const uint16_t id = new_inst(fr, r, K_BUS);
    set_light(fr, id, 255.f, 190.f, 40.f);
    const float w = 2.55f, h = unif(r, 2.9f, 3.3f);
    const float l = x - w / 2, rt = x + w / 2;
    add_rect(fr, K_BUS, P_DARK, id, z, l + 0.15f, 0.f, l + 0.65f, 0.45f);
    add_rect(fr, K_BUS, P_DARK, id, z, rt - 0.65f, 0.f, rt - 0.15f, 0.45f);
    add_rect(fr, K_BUS, P_MAIN, id, z, l, 0.3f, rt, h);
    add_rect(fr, K_BUS, P_DARK, id, z, l + 0.15f, 0.5f * h, rt - 0.15f,
            0.85f * h);
    add_rect(fr, K_BUS, P_LIGHT, id, z, l + 0.4f, 0.88f * h, rt - 0.4f,
            0.96f * h);
}

static void obj_tram(frame *fr, dg_rng *r, float x, float z) {
    const uint16_t id = new_inst(fr, r, K_TRAIN);
    set_light(fr, id, 255.f, 250.f, 220.f);
    const float w = 2.65f, h = unif(r, 3.3f, 3.7f);
    const float l = x - w / 2, rt = x + w / 2;
    add_rect(fr, K_TRAIN, P_DARK, id, z, l + 0.2f, 0.f, rt - 0.2f, 0.45f);
    add_rect(fr, K_TRAIN, P_MAIN, id, z, l, 0.4f, rt, h - 0.3f);
    add_rect(fr, K_TRAIN, P_DARK, id, z, l + 0.2f, 0.45f * h, rt - 0.2f,
            0.8f * h);
    add_rect(fr, K_TRAIN, P_LIGHT, id, z, l + 0.15f, 0.6f, l + 0.45f, 0.8f);
    add_rect(fr, K_TRAIN, P_LIGHT, id, z, rt - 0.45f, 0.6f, rt - 0.15f, 0.8f);
    add_rect(
            fr, K_TRAIN, P_MAIN, id, z, x - 0.4f, h - 0.3f, x + 0.4f, h - 0.1f);
    add_prim(fr, SH_LINE, K_TRAIN, P_DARK, id, z, x - 0.3f, h - 0.1f, x + 0.2f,
            h + 0.6f, 0.08f);
    add_prim(fr, SH_LINE, K_TRAIN, P_DARK, id, z, x + 0.2f, h + 0.6f, x - 0.4f,
            h + 0.9f, 0.08f);
}

/* Side view of a two-wheeler of kind k (K_BICYCLE, K_MOTO) centred at x,
 * facing dir (+1 / -1): two wheels, a frame or a motorcycle's body. */
static void obj_two_wheeler(
        frame *fr, dg_rng *r, int k, float x, float z, float dir) {
    const uint16_t id = new_inst(fr, r, k);
    const bool moto = k == K_MOTO;
    const float rw = moto ? 0.32f : 0.34f, dx = moto ? 0.7f : 0.55f;
    const float rear = x - dir * dx, front = x + dir * dx;
    add_prim(fr, SH_RING, k, P_DARK, id, z, rear - rw, 0.f, rear + rw, 2 * rw,
            moto ? 0.5f : 0.22f);
    add_prim(fr, SH_RING, k, P_DARK, id, z, front - rw, 0.f, front + rw, 2 * rw,
            moto ? 0.5f : 0.22f);
    if (moto) {
        add_prim(fr, SH_ELLIPSE, k, P_MAIN, id, z, x - 0.65f, 0.35f, x + 0.65f,
                0.95f, 0.f);
        add_rect(fr, k, P_DARK, id, z, x - 0.25f, 0.3f, x + 0.25f, 0.6f);
    } else {
        const float seat = x - dir * 0.1f, bar = x + dir * 0.45f;
        add_prim(fr, SH_LINE, k, P_MAIN, id, z, rear, rw, seat, 0.85f, 0.09f);
        add_prim(fr, SH_LINE, k, P_MAIN, id, z, seat, 0.85f, bar, 0.85f, 0.09f);
        add_prim(fr, SH_LINE, k, P_MAIN, id, z, bar, 0.85f, front, rw, 0.09f);
        add_prim(fr, SH_LINE, k, P_MAIN, id, z, seat, 0.85f, x, rw, 0.09f);
        add_prim(fr, SH_LINE, k, P_MAIN, id, z, rear, rw, x, rw, 0.09f);
        add_prim(fr, SH_LINE, k, P_DARK, id, z, bar, 0.85f, bar - dir * 0.05f,
                1.08f, 0.08f);
    }
}

/* Rider of kind k seated on a two-wheeler at x facing dir. */
static void obj_rider(
        frame *fr, dg_rng *r, int k, float x, float z, float dir) {
    const uint16_t id = new_inst(fr, r, k);
    const float seat = x - dir * 0.1f, top = unif(r, 1.45f, 1.6f);
    add_prim(fr, SH_LINE, k, P_DARK, id, z, seat, 0.95f, x + dir * 0.1f, 0.4f,
            0.15f);
    add_prim(fr, SH_LINE, k, P_MAIN, id, z, seat, 0.95f, seat + dir * 0.2f, top,
            0.36f);
    add_prim(fr, SH_LINE, k, P_MAIN, id, z, seat + dir * 0.18f, top - 0.1f,
            x + dir * 0.45f, 1.05f, 0.1f);
    add_prim(fr, SH_ELLIPSE, k, k == K_RIDER_MOTO ? P_DARK : P_ACCENT, id, z,
            seat + dir * 0.2f - 0.12f, top, seat + dir * 0.2f + 0.12f,
            top + 0.28f, 0.f);
}

static void obj_person(frame *fr, dg_rng *r, float x, float z) {
    const uint16_t id = new_inst(fr, r, K_PERSON);
    const float h = unif(r, 1.55f, 1.9f), step = unif(r, 0.f, 0.12f);
    add_rect(fr, K_PERSON, P_DARK, id, z, x - 0.17f - step, 0.f, x - 0.03f,
            0.48f * h);
    add_rect(fr, K_PERSON, P_DARK, id, z, x + 0.03f, 0.f, x + 0.17f + step,
            0.48f * h);
    add_rect(fr, K_PERSON, P_MAIN, id, z, x - 0.22f, 0.46f * h, x + 0.22f,
            0.83f * h);
    add_rect(fr, K_PERSON, P_MAIN, id, z, x - 0.3f, 0.5f * h, x - 0.2f,
            0.8f * h);
    add_rect(fr, K_PERSON, P_MAIN, id, z, x + 0.2f, 0.5f * h, x + 0.3f,
            0.8f * h);
    add_prim(fr, SH_ELLIPSE, K_PERSON, P_ACCENT, id, z, x - 0.1f, 0.83f * h,
            x + 0.1f, h, 0.f);
}

/* A pole at x (road side toward_road = -1 / +1) with optional traffic
 * light and sign. */
static void obj_pole(
        frame *fr, dg_rng *r, float x, float z, float toward_road) {
    const bool util = chance(r, 0.25f);
    const int pk = util ? K_UTILPOLE : K_POLE;
    const uint16_t id = new_inst(fr, r, pk);
    const float h = util ? unif(r, 6.f, 9.f) : unif(r, 3.5f, 7.5f);
    const float pw = util ? 0.3f : 0.18f;
    const bool light = chance(r, 0.45f), sign = chance(r, 0.55f);
    const bool arm = light && chance(r, 0.4f);
    add_rect(fr, pk, P_MAIN, id, z, x - pw / 2, 0.f, x + pw / 2, h);
    if (light) {
        const uint16_t lid = new_inst(fr, r, K_TLIGHT);
        static const float LAMP[3][3] = {
                {255, 40, 30}, {255, 190, 20}, {40, 230, 120}};
        const int lit = below(r, 3);
        set_light(fr, lid, LAMP[lit][0], LAMP[lit][1], LAMP[lit][2]);
        float lx = x + toward_road * 0.35f;
        if (arm) {
            const float reach = unif(r, 2.f, 4.f);
            add_rect(fr, pk, P_MAIN, id, z, DG_MIN(x, x + toward_road * reach),
                    h - 0.25f, DG_MAX(x, x + toward_road * reach), h - 0.1f);
            lx = x + toward_road * (reach - 0.3f);
        }
        const float top = arm ? h - 0.25f : h;
        add_rect(fr, K_TLIGHT, P_MAIN, lid, z, lx - 0.2f, top - 1.0f, lx + 0.2f,
                top);
        for (int j = 0; j < 3; j++)
            add_prim(fr, SH_ELLIPSE, K_TLIGHT, j == lit ? P_LIGHT : P_DARK, lid,
                    z, lx - 0.12f, top - 0.31f * (j + 1) - 0.02f, lx + 0.12f,
                    top - 0.31f * j - 0.06f, 0.f);
    }
    if (sign) {
        const uint16_t sid = new_inst(fr, r, K_TSIGN);
        const float s = unif(r, 0.6f, 0.85f), cy = unif(r, 2.2f, 3.0f);
        const int shape = below(r, 3);
        const int sh = shape == 0 ? SH_RECT : shape == 1 ? SH_ELLIPSE : SH_TRI;
        add_prim(fr, sh, K_TSIGN, P_MAIN, sid, z, x - s / 2, cy - s / 2,
                x + s / 2, cy + s / 2, 0.f);
        add_prim(fr, sh, K_TSIGN, P_ACCENT, sid, z, x - s / 4,
                cy - s / 4 - (shape == 2 ? s / 8 : 0.f), x + s / 4, cy + s / 4,
                0.f);
    }
}

/* A street tree: trunk and crown, both vegetation (as Cityscapes labels
 * them). */
static void obj_tree(frame *fr, dg_rng *r, float x, float z) {
    const uint16_t id = new_inst(fr, r, K_VEG);
    const float cw = unif(r, 2.5f, 4.f), ch = unif(r, 2.5f, 4.f);
    const float base = unif(r, 2.f, 3.f);
    add_rect(fr, K_VEG, P_DARK, id, z, x - 0.15f, 0.f, x + 0.15f, base + 0.5f);
    add_prim(fr, SH_ELLIPSE, K_VEG, P_MAIN, id, z, x - cw / 2, base, x + cw / 2,
            base + ch, 0.f);
}

/* Depth in [lo, hi) drawn with density falling linearly: more objects
 * near the camera, as in street scenes. */
static float near_depth(dg_rng *r, float lo, float hi) {
    const float u = (float)dg_rng_uniform(r);
    return lo + (hi - lo) * u * u;
}

/* Draws the scene from the frame's stream: geometry, segments, objects. */
static void scene_draw(frame *fr, dg_rng *r) {
    const style_def *st = fr->st;
    const float h = (float)fr->h, w = (float)fr->w;
    fr->f = h * unif(r, 0.85f, 1.1f);
    fr->yh = h * unif(r, 0.40f, 0.50f);
    fr->xv = w / 2 + h * unif(r, -0.12f, 0.12f);
    fr->hc = unif(r, 1.3f, 1.8f);
    fr->rh = unif(r, 3.5f, 7.f);
    fr->n_inst = 1; /* instance 0: none */
    fr->salt = dg_rng_next(r);

    /* Far facade closing the street, or an open street to the horizon. */
    float zmax = 3000.f;
    fr->far_kind = K_NONE;
    fr->zfar = unif(r, 40.f, 150.f);
    if (chance(r, 0.6f)) {
        fr->far_kind = chance(r, 0.7f) ? K_BUILDING : K_VEG;
        fr->far_h = unif(r, 6.f, 30.f);
        fr->far_inst = new_inst(fr, r, fr->far_kind);
        fr->far_win = unif(r, 2.f, 3.5f);
        zmax = fr->zfar;
    }
    for (int s = 0; s < 2; s++) {
        street_side *sd = &fr->side[s];
        sd->sw = fr->rh + 0.2f + unif(r, 1.8f, 4.f);
        sd->xf = sd->sw + (chance(r, 0.5f) ? 0.f : unif(r, 0.5f, 4.f));
        sd->xb = sd->xf + unif(r, 4.f, 15.f);
        float z = 0.5f;
        sd->n_seg = 0;
        while (z < zmax && sd->n_seg < MAX_SEG) {
            segment *g = &sd->seg[sd->n_seg++];
            g->z0 = z;
            z += unif(r, 6.f, 25.f);
            g->z1 = sd->n_seg == MAX_SEG ? zmax : z;
            const float u = (float)dg_rng_uniform(r);
            g->front = u < 0.5f    ? K_BUILDING
                       : u < 0.68f ? K_VEG
                       : u < 0.8f  ? K_WALL
                       : u < 0.9f  ? K_FENCE
                                   : K_NONE;
            switch (g->front) {
            case K_BUILDING:
                g->front_h = unif(r, 6.f, 28.f);
                break;
            case K_VEG:
                g->front_h = unif(r, 3.f, 10.f);
                break;
            case K_WALL:
                g->front_h = unif(r, 1.f, 2.6f);
                break;
            case K_FENCE:
                g->front_h = unif(r, 1.f, 2.f);
                break;
            default:
                g->front_h = 0.f;
                break;
            }
            if (g->front == K_BUILDING)
                g->verge = chance(r, 0.15f) ? K_PARKING : K_SIDEWALK;
            else if (g->front == K_WALL || g->front == K_FENCE)
                g->verge = chance(r, 0.5f) ? K_SIDEWALK : K_TERRAIN;
            else
                g->verge = K_TERRAIN;
            g->back = K_NONE;
            if (chance(r, 0.75f)) {
                g->back = chance(r, 0.65f) ? K_BUILDING : K_VEG;
                g->back_h = g->back == K_BUILDING ? unif(r, 8.f, 35.f)
                                                  : unif(r, 5.f, 14.f);
                g->back_inst = new_inst(fr, r, g->back);
            }
            g->front_inst = g->front == K_NONE ? 0 : new_inst(fr, r, g->front);
            g->win_dz = unif(r, 2.f, 3.5f);
            g->win_dy = unif(r, 2.8f, 3.4f);
        }
    }

    fr->n_manhole = below(r, 3);
    for (int i = 0; i < fr->n_manhole; i++) {
        fr->manhole[i][0] = unif(r, -fr->rh + 0.6f, fr->rh - 0.6f);
        fr->manhole[i][1] = unif(r, 4.f, 30.f);
        fr->manhole[i][2] = 0.35f;
    }
    fr->sun_side = below(r, 2);
    fr->ego = chance(r, st->ego_p);
    fr->ego_h = h * unif(r, 0.06f, 0.12f);
    fr->ego_bulge = h * unif(r, 0.02f, 0.05f);
    fr->expo = unif(r, st->expo_lo, st->expo_hi);
    for (int c = 0; c < 3; c++) fr->wb[c] = 1.f + st->wb * unif(r, -1.f, 1.f);
    fr->sat = unif(r, st->sat_lo, st->sat_hi);

    /* Objects, nearest at least 3 m away, all in front of the far facade. */
    const float zlim = DG_MIN(fr->zfar - 2.f, 80.f), rh = fr->rh;
    fr->tram = chance(r, 0.3f);
    if (fr->tram) {
        fr->tram_x =
                chance(r, 0.5f) ? 0.f : (chance(r, 0.5f) ? -0.5f : 0.5f) * rh;
        obj_tram(fr, r, fr->tram_x, unif(r, 8.f, DG_MIN(50.f, zlim)));
    }
    /* Every draw is its own statement: the order in which C evaluates
     * function arguments or the operands of + is unspecified. */
    const int n_cars = 1 + below(r, 4);
    for (int i = 0; i < n_cars; i++) {
        const float sgn = chance(r, 0.5f) ? -1.f : 1.f;
        const float x = sgn * 0.5f * rh + unif(r, -0.3f, 0.3f);
        obj_car(fr, r, x, near_depth(r, 4.f, zlim));
    }
    for (int s = 0; s < 2; s++) {
        if (!chance(r, 0.5f)) continue;
        const int n = 2 + below(r, 4);
        float z = unif(r, 4.f, 12.f);
        for (int i = 0; i < n && z < zlim; i++, z += unif(r, 5.f, 7.f))
            obj_car(fr, r,
                    (s ? 1.f : -1.f) * (rh - 1.1f) + unif(r, -0.15f, 0.15f), z);
    }
    const int n_trees = below(r, 5);
    for (int i = 0; i < n_trees; i++) {
        const int s = below(r, 2);
        obj_tree(fr, r, (s ? 1.f : -1.f) * (fr->side[s].sw - 0.4f),
                unif(r, 4.f, zlim));
    }
    if (chance(r, 0.45f)) {
        const float x = (chance(r, 0.5f) ? -0.5f : 0.5f) * rh;
        obj_truck(fr, r, x, unif(r, 8.f, zlim));
    }
    if (chance(r, 0.4f)) {
        const float x = (chance(r, 0.5f) ? -0.5f : 0.5f) * rh;
        obj_bus(fr, r, x, unif(r, 8.f, zlim));
    }
    if (chance(r, 0.5f)) {
        const float lane = (chance(r, 0.5f) ? -0.5f : 0.5f) * rh;
        const float x = lane + unif(r, -0.5f, 0.5f);
        const float z = unif(r, 4.f, DG_MIN(40.f, zlim));
        const float dir = chance(r, 0.5f) ? -1.f : 1.f;
        obj_two_wheeler(fr, r, K_MOTO, x, z, dir);
        obj_rider(fr, r, K_RIDER_MOTO, x, z, dir);
    }
    const int n_bikes = below(r, 3);
    for (int i = 0; i < n_bikes; i++) {
        const float sgn = chance(r, 0.5f) ? -1.f : 1.f;
        const float x = sgn * (rh - 0.9f),
                    z = unif(r, 3.5f, DG_MIN(35.f, zlim));
        const float dir = chance(r, 0.5f) ? -1.f : 1.f;
        obj_two_wheeler(fr, r, K_BICYCLE, x, z, dir);
        obj_rider(fr, r, chance(r, 0.2f) ? K_RIDER_OTHER : K_RIDER, x, z, dir);
    }
    if (chance(r, 0.3f)) {
        const int s = below(r, 2);
        const float x = (s ? 1.f : -1.f) * unif(r, rh + 1.f, fr->side[s].sw);
        const float z = unif(r, 3.5f, DG_MIN(30.f, zlim));
        obj_two_wheeler(fr, r, K_BICYCLE, x, z, chance(r, 0.5f) ? -1.f : 1.f);
    }
    const int n_persons = 1 + below(r, 6);
    for (int i = 0; i < n_persons; i++) {
        const int s = below(r, 2);
        float x = (s ? 1.f : -1.f) *
                  unif(r, rh + 0.6f, DG_MAX(rh + 0.7f, fr->side[s].sw - 0.3f));
        if (chance(r, 0.15f)) x = unif(r, -rh, rh);
        obj_person(fr, r, x, near_depth(r, 3.f, DG_MIN(45.f, zlim)));
    }
    const int n_poles = 2 + below(r, 4);
    for (int i = 0; i < n_poles; i++) {
        const int s = below(r, 2);
        const float sgn = s ? 1.f : -1.f;
        obj_pole(fr, r, sgn * (rh + 0.55f), unif(r, 4.f, DG_MIN(60.f, zlim)),
                -sgn);
    }
    const int n_bins = below(r, 3);
    for (int i = 0; i < n_bins; i++) {
        const int s = below(r, 2);
        const float x = (s ? 1.f : -1.f) * (fr->side[s].sw - 0.4f);
        const uint16_t id = new_inst(fr, r, K_STATIC);
        const float z = unif(r, 3.5f, DG_MIN(40.f, zlim));
        add_rect(fr, K_STATIC, P_MAIN, id, z, x - 0.3f, 0.f, x + 0.3f, 0.95f);
        add_rect(fr, K_STATIC, P_DARK, id, z, x - 0.32f, 0.95f, x + 0.32f,
                1.05f);
    }
    if (chance(r, 0.3f)) {
        const int s = below(r, 2);
        const float x = (s ? 1.f : -1.f) * (fr->side[s].sw - 0.8f);
        const uint16_t id = new_inst(fr, r, K_VOID);
        const float z = unif(r, 5.f, DG_MIN(40.f, zlim));
        add_rect(fr, K_VOID, P_MAIN, id, z, x - 0.6f, 0.f, x + 0.6f, 2.8f);
        add_rect(fr, K_VOID, P_DARK, id, z, x - 0.7f, 2.8f, x + 0.7f, 3.1f);
    }
}

/* ---- rasterisation ------------------------------------------------------- */

/* The segment holding depth z (segments are contiguous and sorted), or
 * NULL beyond them. */
static const segment *find_seg(const street_side *sd, float z) {
    if (sd->n_seg == 0 || z < sd->seg[0].z0) return NULL;
    int lo = 0, hi = sd->n_seg - 1; /* seg[lo].z0 <= z */
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (sd->seg[mid].z0 <= z)
            lo = mid;
        else
            hi = mid - 1;
    }
    return z < sd->seg[lo].z1 ? &sd->seg[lo] : NULL;
}

/* Height of a layer of kind k and nominal height h at coordinate t:
 * vegetation gets bumpy crowns. */
static float layer_height(const frame *fr, int k, float h, float t) {
    if (k != K_VEG) return h;
    return h * (0.75f + 0.25f * vnoise(fr->salt ^ 0x5eedu, 0.35f * t, 0.f));
}

static bool is_window(float u, float y, float dz, float dy) {
    if (y < 0.6f) return false;
    const float fu = fracf(u / dz);
    if (y < 2.6f) return fu > 0.1f && fu < 0.9f && y > 0.9f;
    const float fv = fracf(y / dy);
    return fu > 0.28f && fu < 0.72f && fv > 0.3f && fv < 0.78f;
}

static void set_px(frame *fr, size_t i, int kind, int part, int face,
        uint16_t inst, float u, float v, float z) {
    fr->kind[i] = (uint8_t)kind;
    fr->part[i] = (uint8_t)part;
    fr->face[i] = (uint8_t)face;
    fr->inst_id[i] = inst;
    fr->u[i] = u;
    fr->v[i] = v;
    fr->z[i] = z;
}

/* Ground kind and part at (X, Z). */
static void ground_kind(
        const frame *fr, float gx, float gz, int *kind, int *part) {
    const float a = fabsf(gx), rh = fr->rh;
    const street_side *sd = &fr->side[gx < 0.f ? 0 : 1];
    *part = P_MAIN;
    if (a < rh) {
        *kind = K_ROAD;
        if ((a < 0.08f && fmodf(gz, 9.f) < 4.f) ||
                fabsf(a - (rh - 0.3f)) < 0.07f)
            *kind = K_LANE;
        for (int i = 0; i < fr->n_manhole; i++) {
            const float dx = gx - fr->manhole[i][0],
                        dz = gz - fr->manhole[i][1];
            if (dx * dx + dz * dz < fr->manhole[i][2] * fr->manhole[i][2])
                *kind = K_MANHOLE;
        }
        if (fr->tram && *kind == K_ROAD &&
                (fabsf(gx - fr->tram_x - 0.72f) < 0.05f ||
                        fabsf(gx - fr->tram_x + 0.72f) < 0.05f))
            *part = P_DARK;
    } else if (a < rh + 0.2f) {
        *kind = K_CURB;
    } else if (a < sd->sw) {
        *kind = K_SIDEWALK;
    } else {
        const segment *g = find_seg(sd, gz);
        *kind = g && a < sd->xf ? g->verge : K_TERRAIN;
    }
}

/* Pass 2a: ground, facades, far facade and sky by ray casting. */
static void raster_background(frame *fr) {
    const float f = fr->f, hc = fr->hc;
    for (int y = 0; y < fr->h; y++) {
        const float dy = (float)y + 0.5f - fr->yh;
        for (int x = 0; x < fr->w; x++) {
            const size_t i = (size_t)y * (size_t)fr->w + (size_t)x;
            const float dx = (float)x + 0.5f - fr->xv;
            float best = INFINITY;
            int kind = K_SKY, part = P_MAIN, face = F_SKY;
            uint16_t inst = 0;
            float u = (float)x / (float)fr->h, v = (float)y / (float)fr->h;
            if (dy > 0.f) {
                best = f * hc / dy;
                const float gx = dx * best / f;
                ground_kind(fr, gx, best, &kind, &part);
                face = F_GROUND;
                u = gx, v = best;
            }
            if (fabsf(dx) > 1e-3f) {
                const int s = dx < 0.f ? 0 : 1;
                const street_side *sd = &fr->side[s];
                for (int layer = 0; layer < 2; layer++) {
                    const float zp = f * (layer ? sd->xb : sd->xf) / fabsf(dx);
                    if (zp >= best) continue;
                    const segment *g = find_seg(sd, zp);
                    if (!g) continue;
                    const int k = layer ? g->back : g->front;
                    if (k == K_NONE) continue;
                    const float yp = hc - dy * zp / f;
                    const float lh = layer_height(
                            fr, k, layer ? g->back_h : g->front_h, zp);
                    if (yp < 0.f || yp >= lh) continue;
                    best = zp;
                    kind = k;
                    inst = layer ? g->back_inst : g->front_inst;
                    face = s == 0 ? F_LEFT : F_RIGHT;
                    part = k == K_BUILDING && is_window(zp, yp, g->win_dz,
                                                      g->win_dy)
                                   ? P_DARK
                                   : P_MAIN;
                    u = zp, v = yp;
                }
            }
            if (fr->far_kind != K_NONE && fr->zfar < best) {
                const float yp = hc - dy * fr->zfar / f, xp = dx * fr->zfar / f;
                if (yp >= 0.f &&
                        yp < layer_height(fr, fr->far_kind, fr->far_h, xp)) {
                    best = fr->zfar;
                    kind = fr->far_kind;
                    inst = fr->far_inst;
                    face = F_FRONT;
                    part = kind == K_BUILDING && is_window(xp + 100.f, yp,
                                                         fr->far_win, 3.f)
                                   ? P_DARK
                                   : P_MAIN;
                    u = xp, v = yp;
                }
            }
            set_px(fr, i, kind, part, face, inst, u, v,
                    isinf(best) ? 1e4f : best);
        }
    }
}

static int cmp_prim(const void *a, const void *b) {
    const prim *p = a, *q = b;
    if (p->z != q->z) return p->z > q->z ? -1 : 1; /* far first */
    return p->order < q->order ? -1 : p->order > q->order;
}

static bool prim_inside(const prim *p, float X, float Y) {
    switch (p->shape) {
    case SH_RECT:
        return X >= p->x0 && X < p->x1 && Y >= p->y0 && Y < p->y1;
    case SH_ELLIPSE:
    case SH_RING: {
        const float rx = 0.5f * (p->x1 - p->x0), ry = 0.5f * (p->y1 - p->y0);
        const float ex = (X - 0.5f * (p->x0 + p->x1)) / rx;
        const float ey = (Y - 0.5f * (p->y0 + p->y1)) / ry;
        const float d = ex * ex + ey * ey;
        if (d > 1.f) return false;
        return p->shape == SH_ELLIPSE || d >= (1.f - p->t) * (1.f - p->t);
    }
    case SH_LINE: {
        const float vx = p->x1 - p->x0, vy = p->y1 - p->y0;
        const float l2 = vx * vx + vy * vy;
        float t = l2 > 0.f ? ((X - p->x0) * vx + (Y - p->y0) * vy) / l2 : 0.f;
        t = t < 0.f ? 0.f : t > 1.f ? 1.f : t;
        const float ex = X - p->x0 - t * vx, ey = Y - p->y0 - t * vy;
        return ex * ex + ey * ey <= 0.25f * p->t * p->t;
    }
    case SH_TRI: {
        if (Y < p->y0 || Y >= p->y1) return false;
        const float half =
                0.5f * (p->x1 - p->x0) * (p->y1 - Y) / (p->y1 - p->y0);
        return fabsf(X - 0.5f * (p->x0 + p->x1)) <= half;
    }
    }
    return false;
}

/* Pass 2b: objects far to near, then the ego hood. */
static void raster_objects(frame *fr) {
    qsort(fr->prims, (size_t)fr->n_prim, sizeof(*fr->prims), cmp_prim);
    const float f = fr->f, hc = fr->hc;
    for (int k = 0; k < fr->n_prim; k++) {
        const prim *p = &fr->prims[k];
        float x0 = p->x0, x1 = p->x1, y0 = p->y0, y1 = p->y1;
        if (p->shape == SH_LINE) {
            x0 = DG_MIN(p->x0, p->x1) - p->t, x1 = DG_MAX(p->x0, p->x1) + p->t;
            y0 = DG_MIN(p->y0, p->y1) - p->t, y1 = DG_MAX(p->y0, p->y1) + p->t;
        }
        const float s = f / p->z;
        int px0 = (int)floorf(fr->xv + x0 * s),
            px1 = (int)ceilf(fr->xv + x1 * s);
        int py0 = (int)floorf(fr->yh + (hc - y1) * s);
        int py1 = (int)ceilf(fr->yh + (hc - y0) * s);
        px0 = DG_MAX(px0, 0), py0 = DG_MAX(py0, 0);
        px1 = DG_MIN(px1, fr->w - 1), py1 = DG_MIN(py1, fr->h - 1);
        for (int y = py0; y <= py1; y++) {
            const float Y = hc - ((float)y + 0.5f - fr->yh) / s;
            for (int x = px0; x <= px1; x++) {
                const float X = ((float)x + 0.5f - fr->xv) / s;
                if (!prim_inside(p, X, Y)) continue;
                set_px(fr, (size_t)y * (size_t)fr->w + (size_t)x, p->kind,
                        p->part, F_FRONT, p->inst, X, Y, p->z);
            }
        }
    }
    if (!fr->ego) return;
    for (int x = 0; x < fr->w; x++) {
        const float c =
                ((float)x + 0.5f - 0.5f * (float)fr->w) / (0.5f * (float)fr->w);
        const float top =
                (float)fr->h - fr->ego_h - fr->ego_bulge * (1.f - c * c);
        for (int y = DG_MAX(0, (int)ceilf(top - 0.5f)); y < fr->h; y++)
            set_px(fr, (size_t)y * (size_t)fr->w + (size_t)x, K_EGO, P_MAIN,
                    F_FRONT, 0, c, (float)y / (float)fr->h, 1.f);
    }
}

/* ---- shading ------------------------------------------------------------- */

/* Texture frequency (1/m) per kind. */
static float tex_freq(int k) {
    switch (k) {
    case K_VEG:
        return 2.5f;
    case K_TERRAIN:
        return 3.f;
    case K_ROAD:
    case K_PARKING:
        return 1.5f;
    case K_SKY:
        return 4.f;
    default:
        return 1.f;
    }
}

/* Clean colour (0 .. 255 floats) of pixel i in row y. */
static void shade_px(const frame *fr, size_t i, int y, float out[3]) {
    const style_def *st = fr->st;
    const int k = fr->kind[i], part = fr->part[i], face = fr->face[i];
    const float u = fr->u[i], v = fr->v[i];
    float col[3];
    if (k == K_SKY) {
        const float t = DG_MIN(1.f, DG_MAX(0.f, ((float)y + 0.5f) / fr->yh));
        const float cl = DG_MAX(0.f, fbm(fr->salt ^ 0xc10d, 3.f * u, 6.f * v));
        for (int c = 0; c < 3; c++) {
            col[c] = st->sky_top[c] + (st->sky_hor[c] - st->sky_top[c]) * t;
            col[c] += (245.f - col[c]) * st->cloud * 6.f * cl;
        }
    } else {
        const float *base = fr->inst_id[i] ? fr->inst[fr->inst_id[i]].col
                                           : PALETTE[k][fr->style];
        for (int c = 0; c < 3; c++) col[c] = base[c];
        if (part == P_DARK) {
            for (int c = 0; c < 3; c++)
                col[c] = 0.3f * col[c] + 0.7f * st->dark[c];
        } else if (part == P_LIGHT) {
            const float *l = fr->inst[fr->inst_id[i]].light;
            /* lights are emissive: exposure barely dims them */
            for (int c = 0; c < 3; c++)
                out[c] = l[c] * (0.8f + 0.2f * fr->expo);
            return;
        } else if (part == P_ACCENT) {
            static const float SKIN[3] = {220, 180, 150},
                               WHITE[3] = {240, 240, 240};
            const float *a = k == K_TSIGN ? WHITE : SKIN;
            for (int c = 0; c < 3; c++) col[c] = a[c];
        }
        const float fq = tex_freq(k);
        float n = fbm(fr->salt + (uint64_t)k, fq * u, fq * v);
        if (k == K_SIDEWALK &&
                (fracf(2.f * u) < 0.06f || fracf(2.f * v) < 0.06f))
            n -= 1.2f;
        if (k == K_FENCE && fracf(4.f * u) < 0.3f) n -= 1.5f;
        if (k == K_EGO) n = 1.5f * (0.5f - v) + 0.5f * u * u;
        float light = 1.f;
        if (face == F_LEFT || face == F_RIGHT)
            light += ((face == F_LEFT) == (fr->sun_side == 0) ? 1.f : -1.f) *
                     st->sun;
        else if (face == F_FRONT)
            light -= 0.3f * st->sun;
        for (int c = 0; c < 3; c++) col[c] *= light * (1.f + st->tex * n);
        if (st->fog > 0.f) {
            const float a = 1.f - expf(-fr->z[i] / st->fog);
            for (int c = 0; c < 3; c++) col[c] += (st->sky_hor[c] - col[c]) * a;
        }
    }
    for (int c = 0; c < 3; c++) col[c] *= fr->expo * fr->wb[c] * st->tint[c];
    const float g = 0.299f * col[0] + 0.587f * col[1] + 0.114f * col[2];
    for (int c = 0; c < 3; c++) {
        float val = g + fr->sat * (col[c] - g);
        out[c] = 128.f + st->contrast * (val - 128.f);
    }
}

/* Sensor noise draw, approximately standard normal: the Irwin-Hall sum of
 * the four 16-bit uniforms of one draw, centred and scaled to unit
 * variance (one draw per sample instead of Box-Muller's log and cos). */
static float noise_draw(dg_rng *r) {
    uint64_t x = dg_rng_next(r);
    float s = 0.f;
    for (int k = 0; k < 4; k++, x >>= 16) s += (float)(x & 0xffffu);
    return (s * (1.f / 65536.f) - 2.f) * 1.7320508f;
}

static uint8_t to_u8(float v) {
    return v <= 0.f ? 0 : v >= 255.f ? 255 : (uint8_t)lrintf(v);
}

/* Pass 3: shading into img (H, W, 3), blur, sensor noise. */
static dg_status render_image(const frame *fr, dg_rng *r, dg_image *img) {
    const style_def *st = fr->st;
    dg_image_init(img, fr->h, fr->w, 3);
    for (int y = 0; y < fr->h; y++)
        for (int x = 0; x < fr->w; x++) {
            const size_t i = (size_t)y * (size_t)fr->w + (size_t)x;
            float rgb[3];
            shade_px(fr, i, y, rgb);
            for (int c = 0; c < 3; c++)
                img->data[3 * i + (size_t)c] = to_u8(rgb[c]);
        }
    if (st->blur < 1.f) {
        dg_image small, back;
        const int sh = DG_MAX(1, (int)lrintf(st->blur * (float)fr->h));
        const int sw = DG_MAX(1, (int)lrintf(st->blur * (float)fr->w));
        dg_status s = dg_image_resize(img, sh, sw, DG_INTERP_AREA, &small);
        if (s != DG_STATUS_OK) return s;
        s = dg_image_resize(&small, fr->h, fr->w, DG_INTERP_BILINEAR, &back);
        dg_image_free(&small);
        if (s != DG_STATUS_OK) return s;
        dg_image_free(img);
        *img = back;
    }
    if (st->noise > 0.f) {
        const size_t n = (size_t)fr->h * (size_t)fr->w * 3;
        for (size_t i = 0; i < n; i++)
            img->data[i] =
                    to_u8((float)img->data[i] + st->noise * noise_draw(r));
    }
    return DG_STATUS_OK;
}

/* ---- one frame ----------------------------------------------------------- */

static int style_width(dg_synth_style s, const dg_synth_opts *o, int aspect) {
    if (s == DG_SYNTH_CITYSCAPES) return o->width;
    const int num = s == DG_SYNTH_MAPILLARY ? MAP_ASPECT[aspect][0]
                                            : STYLES[s].width_num;
    const int den = s == DG_SYNTH_MAPILLARY ? MAP_ASPECT[aspect][1]
                                            : STYLES[s].width_den;
    return DG_MAX(1, (int)lround((double)o->height * num / den));
}

/* A rendered frame: RGB image and native labels. */
typedef struct rendered {
    dg_image img;      /* (H, W, 3) */
    uint8_t *label8;   /* (H, W) native ids; 8-bit styles */
    uint16_t *label16; /* (H, W, 3) class, instance, 0; SYNTHIA */
} rendered;

static void rendered_free(rendered *rd) {
    dg_image_free(&rd->img);
    dg_free(rd->label8);
    dg_free(rd->label16);
    memset(rd, 0, sizeof(*rd));
}

static dg_status render_frame(const dg_synth_opts *o, dg_synth_style s,
        uint32_t index, rendered *rd) {
    memset(rd, 0, sizeof(*rd));
    dg_rng r;
    dg_rng_init(&r, o->seed, DG_RNG_SYNTH, ((uint32_t)s << 24) | index);
    frame *fr = dg_xcalloc(1, sizeof(*fr));
    fr->st = &STYLES[s];
    fr->style = (int)s;
    fr->h = o->height;
    int aspect = 0;
    if (s == DG_SYNTH_MAPILLARY) {
        const float u = (float)dg_rng_uniform(&r);
        aspect = u < MAP_ASPECT_P[0]                     ? 0
                 : u < MAP_ASPECT_P[0] + MAP_ASPECT_P[1] ? 1
                                                         : 2;
    }
    fr->w = style_width(s, o, aspect);
    const size_t n = (size_t)fr->h * (size_t)fr->w;
    fr->kind = dg_xmalloc(n);
    fr->part = dg_xmalloc(n);
    fr->face = dg_xmalloc(n);
    fr->inst_id = dg_xmalloc(n * sizeof(*fr->inst_id));
    fr->u = dg_xmalloc(n * sizeof(*fr->u));
    fr->v = dg_xmalloc(n * sizeof(*fr->v));
    fr->z = dg_xmalloc(n * sizeof(*fr->z));

    scene_draw(fr, &r);
    raster_background(fr);
    raster_objects(fr);
    dg_status st = render_image(fr, &r, &rd->img);
    if (st == DG_STATUS_OK) {
        if (s == DG_SYNTH_SYNTHIA) {
            rd->label16 = dg_xmalloc(3 * n * sizeof(*rd->label16));
            for (size_t i = 0; i < n; i++) {
                const int k = fr->kind[i];
                rd->label16[3 * i] = NATIVE[k][s];
                rd->label16[3 * i + 1] = kind_is_thing(k) ? fr->inst_id[i] : 0;
                rd->label16[3 * i + 2] = 0;
            }
        } else {
            rd->label8 = dg_xmalloc(n);
            for (size_t i = 0; i < n; i++)
                rd->label8[i] = NATIVE[fr->kind[i]][s];
        }
    }
    dg_free(fr->kind);
    dg_free(fr->part);
    dg_free(fr->face);
    dg_free(fr->inst_id);
    dg_free(fr->u);
    dg_free(fr->v);
    dg_free(fr->z);
    dg_free(fr);
    if (st != DG_STATUS_OK) rendered_free(rd);
    return st;
}

/* ---- files --------------------------------------------------------------- */

/* One image to write. */
typedef struct job {
    dg_synth_style style;
    int split;      /* index into SPLITS[style] */
    int j;          /* index within the split */
    uint32_t index; /* frame number within the style */
} job;

/* BDD-like name "xxxxxxxx-xxxxxxxx" of frame k (independent of the seed). */
static void bdd_name(uint32_t k, char out[32]) {
    const uint64_t h = dg_rng_mix(UINT64_C(0x6264643130306b) ^ k);
    snprintf(out, 32, "%08x-%08x", (unsigned)(h >> 32),
            (unsigned)(h & 0xffffffffu));
}

/* Mapillary-like 22-character key of frame k (independent of the seed). */
static void mapillary_key(uint32_t k, char out[32]) {
    static const char ALPHA[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint64_t a = dg_rng_mix(UINT64_C(0x6d61706b6579) ^ k), b = dg_rng_mix(a);
    for (int i = 0; i < 22; i++) {
        uint64_t *src = i < 11 ? &a : &b;
        out[i] = ALPHA[*src % 62u];
        *src /= 62u;
    }
    out[22] = '\0';
}

/* Image and label paths of a job (dg_free both). */
static void job_paths(const char *root, const job *jb, char **img, char **lbl) {
    const char *split = SPLITS[jb->style].name[jb->split];
    char name[32];
    *img = *lbl = NULL;
    switch (jb->style) {
    case DG_SYNTH_GTAV:
        *img = dg_xasprintf("%s/gtav/images/%05u.png", root, jb->index + 1);
        *lbl = dg_xasprintf("%s/gtav/labels/%05u.png", root, jb->index + 1);
        break;
    case DG_SYNTH_SYNTHIA:
        *img = dg_xasprintf("%s/synthia/RGB/%07u.png", root, jb->index + 1);
        *lbl = dg_xasprintf(
                "%s/synthia/GT/LABELS/%07u.png", root, jb->index + 1);
        break;
    case DG_SYNTH_CITYSCAPES: {
        const int v = jb->split;
        const char *city = CITIES[v][jb->j % N_CITIES[v]];
        const int fno = jb->j / N_CITIES[v];
        *img = dg_xasprintf("%s/cityscapes/leftImg8bit/%s/%s/"
                            "%s_000000_%06d_leftImg8bit.png",
                root, split, city, city, fno);
        *lbl = dg_xasprintf(
                "%s/cityscapes/gtFine/%s/%s/%s_000000_%06d_gtFine_labelIds.png",
                root, split, city, city, fno);
        break;
    }
    case DG_SYNTH_BDD100K:
        bdd_name(jb->index, name);
        *img = dg_xasprintf(
                "%s/bdd100k/images/10k/%s/%s.jpg", root, split, name);
        *lbl = dg_xasprintf(
                "%s/bdd100k/labels/sem_seg/masks/%s/%s.png", root, split, name);
        break;
    case DG_SYNTH_MAPILLARY:
        mapillary_key(jb->index, name);
        *img = dg_xasprintf("%s/mapillary/%s/images/%s.jpg", root, split, name);
        *lbl = dg_xasprintf(
                "%s/mapillary/%s/v1.2/labels/%s.png", root, split, name);
        break;
    }
}

/* Renders and writes one frame; *width gets its width. */
static dg_status job_run(
        const char *root, const dg_synth_opts *o, const job *jb, int *width) {
    rendered rd;
    dg_status st = render_frame(o, jb->style, jb->index, &rd);
    if (st != DG_STATUS_OK) return st;
    const int h = rd.img.h, w = rd.img.w;
    *width = w;
    char *img, *lbl;
    job_paths(root, jb, &img, &lbl);
    const int q = STYLES[jb->style].jpeg;
    st = q ? dg_image_write_jpeg(img, &rd.img, q)
           : dg_image_write_png(img, &rd.img);
    if (st == DG_STATUS_OK) {
        switch (jb->style) {
        case DG_SYNTH_GTAV:
            st = dg_png_write_paletted(
                    lbl, rd.label8, h, w, LABELID_PALETTE, 34);
            break;
        case DG_SYNTH_SYNTHIA:
            st = dg_png_write_gray16_rgb(lbl, rd.label16, h, w);
            break;
        case DG_SYNTH_CITYSCAPES:
        case DG_SYNTH_BDD100K:
            st = dg_png_write_gray8(lbl, rd.label8, h, w);
            break;
        case DG_SYNTH_MAPILLARY:
            st = dg_png_write_paletted(
                    lbl, rd.label8, h, w, MAPILLARY_PALETTE, 66);
            break;
        }
    }
    dg_free(img);
    dg_free(lbl);
    rendered_free(&rd);
    return st;
}


/* Every folder of the benchmark. */
static dg_status make_tree(const char *root, const dg_synth_opts *o) {
    dg_strvec dirs = {0};
    dg_strvec_push(&dirs, dg_xasprintf("%s/gtav/images", root));
    dg_strvec_push(&dirs, dg_xasprintf("%s/gtav/labels", root));
    dg_strvec_push(&dirs, dg_xasprintf("%s/gtav/split_data", root));
    dg_strvec_push(&dirs, dg_xasprintf("%s/synthia/RGB", root));
    dg_strvec_push(&dirs, dg_xasprintf("%s/synthia/GT/LABELS", root));
    dg_strvec_push(&dirs, dg_xasprintf("%s/synthia/split_data", root));
    for (int k = 0; k < 2; k++) {
        const char *sp = SPLITS[DG_SYNTH_CITYSCAPES].name[k];
        const int n = DG_MIN(N_CITIES[k],
                dg_synth_split_count(DG_SYNTH_CITYSCAPES, k, o->per_domain));
        for (int c = 0; c < n; c++) {
            dg_strvec_push(
                    &dirs, dg_xasprintf("%s/cityscapes/leftImg8bit/%s/%s", root,
                                   sp, CITIES[k][c]));
            dg_strvec_push(&dirs, dg_xasprintf("%s/cityscapes/gtFine/%s/%s",
                                          root, sp, CITIES[k][c]));
        }
        sp = SPLITS[DG_SYNTH_BDD100K].name[k];
        dg_strvec_push(
                &dirs, dg_xasprintf("%s/bdd100k/images/10k/%s", root, sp));
        dg_strvec_push(&dirs,
                dg_xasprintf("%s/bdd100k/labels/sem_seg/masks/%s", root, sp));
        sp = SPLITS[DG_SYNTH_MAPILLARY].name[k];
        dg_strvec_push(&dirs, dg_xasprintf("%s/mapillary/%s/images", root, sp));
        dg_strvec_push(
                &dirs, dg_xasprintf("%s/mapillary/%s/v1.2/labels", root, sp));
    }
    dg_status st = DG_STATUS_OK;
    for (size_t i = 0; i < dirs.n && st == DG_STATUS_OK; i++)
        st = dg_make_dirs(dirs.v[i]);
    dg_strvec_free(&dirs);
    return st;
}

/* RobustNet-style split lists of the flat GTAV and SYNTHIA layouts. */
static dg_status write_split_lists(const char *root, const dg_synth_opts *o) {
    static const dg_synth_style FLAT[2] = {DG_SYNTH_GTAV, DG_SYNTH_SYNTHIA};
    dg_status st = DG_STATUS_OK;
    for (int f = 0; f < 2 && st == DG_STATUS_OK; f++) {
        const dg_synth_style s = FLAT[f];
        uint32_t index = 0;
        for (int k = 0; k < SPLITS[s].n && st == DG_STATUS_OK; k++) {
            const int n = dg_synth_split_count(s, k, o->per_domain);
            const int digits = s == DG_SYNTH_GTAV ? 5 : 7;
            char *text = dg_xmalloc((size_t)n * 16 + 1);
            size_t len = 0;
            for (int j = 0; j < n; j++, index++)
                len += (size_t)snprintf(
                        text + len, 16, "%0*u.png\n", digits, index + 1);
            char *path = dg_xasprintf("%s/%s/split_data/%s_split_%s.txt", root,
                    NAMES[s], NAMES[s], SPLITS[s].name[k]);
            const dg_file_part part = {text, len};
            st = dg_file_write_atomic(path, &part, 1);
            dg_free(path);
            dg_free(text);
        }
    }
    return st;
}

dg_status dg_synth_generate(
        const char *out_dir, const dg_synth_opts *o, dg_synth_summary *sum) {
    DG_ASSERT(o->height >= DG_SYNTH_MIN_SIDE && o->height <= DG_SYNTH_MAX_SIDE);
    DG_ASSERT(o->width >= DG_SYNTH_MIN_SIDE && o->width <= DG_SYNTH_MAX_SIDE);
    DG_ASSERT(o->per_domain >= 1 && o->per_domain <= DG_SYNTH_MAX_PER_DOMAIN);
    dg_status st = dg_make_dirs(out_dir);
    if (st == DG_STATUS_OK) st = make_tree(out_dir, o);
    if (st != DG_STATUS_OK) return st;

    size_t n_jobs = 0;
    for (int s = 0; s < DG_SYNTH_N_STYLES; s++)
        for (int k = 0; k < SPLITS[s].n; k++)
            n_jobs += (size_t)dg_synth_split_count(
                    (dg_synth_style)s, k, o->per_domain);
    job *jobs = dg_xmalloc(n_jobs * sizeof(*jobs));
    int *widths = dg_xcalloc(n_jobs, sizeof(*widths));
    dg_status *res = dg_xcalloc(n_jobs, sizeof(*res));
    size_t t = 0;
    for (int s = 0; s < DG_SYNTH_N_STYLES; s++) {
        uint32_t index = 0;
        for (int k = 0; k < SPLITS[s].n; k++) {
            const int n =
                    dg_synth_split_count((dg_synth_style)s, k, o->per_domain);
            for (int j = 0; j < n; j++, t++, index++)
                jobs[t] = (job){(dg_synth_style)s, k, j, index};
        }
    }

    /* One frame per iteration; a failure stops the frames not yet begun. */
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1)
    for (long long q = 0; q < (long long)n_jobs; q++) {
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop) continue;
        res[q] = job_run(out_dir, o, &jobs[q], &widths[q]);
        if (res[q] != DG_STATUS_OK) {
#pragma omp atomic write
            failed = 1;
        }
    }
    for (size_t q = 0; q < n_jobs && st == DG_STATUS_OK; q++) st = res[q];
    if (st == DG_STATUS_OK) st = write_split_lists(out_dir, o);

    if (st == DG_STATUS_OK && sum) {
        memset(sum, 0, sizeof(*sum));
        t = 0;
        for (int s = 0; s < DG_SYNTH_N_STYLES; s++)
            for (int k = 0; k < SPLITS[s].n; k++) {
                DG_ASSERT(sum->n_splits < DG_SYNTH_MAX_SPLITS);
                dg_synth_split_info *si = &sum->splits[sum->n_splits++];
                si->style = (dg_synth_style)s;
                si->split = SPLITS[s].name[k];
                si->count = dg_synth_split_count(
                        (dg_synth_style)s, k, o->per_domain);
                si->height = o->height;
                si->min_width = INT32_MAX;
                for (int j = 0; j < si->count; j++, t++) {
                    si->min_width = DG_MIN(si->min_width, widths[t]);
                    si->max_width = DG_MAX(si->max_width, widths[t]);
                }
                sum->n_images += si->count;
            }
    }
    dg_free(jobs);
    dg_free(widths);
    dg_free(res);
    return st;
}
