/* app/synth_cmd.h -- `dgseg synth` (docs/design.md §4, §7): writes the embedded
 * multi-domain street-scene benchmark of data/synth.h under --out DIR and
 * prints per domain and split the image count and frame size, then the wall
 * time. */
#ifndef DG_SYNTH_CMD_H
#define DG_SYNTH_CMD_H

/* Entry point; returns the process exit status (0, 1 runtime failure,
 * 2 usage error: a bad option or value, or --out naming an existing path
 * that is not a folder). */
int dg_synth_main(int argc, char **argv);

#endif
