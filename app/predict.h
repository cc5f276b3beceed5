/* app/predict.h -- `dgseg predict` (docs/design.md §4): segmentation maps of
 * images as paletted PNGs (Cityscapes colours) and, with --logits, the
 * float32 logits (C, H, W) at input resolution as .npy. */
#ifndef DG_PREDICT_H
#define DG_PREDICT_H

/* Entry point; returns the process exit status (0, 1 runtime, 2 usage). */
int dg_predict_main(int argc, char **argv);

#endif
