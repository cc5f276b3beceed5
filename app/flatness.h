/* app/flatness.h -- `dgseg flatness CONFIG --checkpoint FILE [options]
 * [section.key=value ...]`: how flat the minimum a checkpoint sits in is,
 * measured on fixed training-domain data (eval/flatness.h is the engine):
 * expected (random filter-normalised) sharpness at several radii, worst-
 * case (SAM's) sharpness at several rho, per source domain for multi-source
 * runs, the loss and metric along the line to a second checkpoint (--to)
 * and 1-D/2-D landscapes around the first, as JSON, markdown and PLplot
 * figures in one folder. */
#ifndef DG_APP_FLATNESS_H
#define DG_APP_FLATNESS_H

/* Runs the command; argv[0] is "flatness". Returns the exit code: 0, 1
 * runtime failure (a checkpoint or data that does not load), 2 usage or
 * configuration error. */
int dg_flatness_main(int argc, char **argv);

/* Checks the measurement options words[0 .. n-1] (those of a study's
 * `flatness = ...`: everything but CONFIG, --checkpoint, --to and --out,
 * which the study sets): 0, or 2 after a message naming the option. */
int dg_flatness_check_options(const char *const *words, int n);

#endif
