/* nets/deeplab.h -- DeepLabv3+ as RobustNet's DeepR50V3PlusD
 * (shachoi/RobustNet network/deepv3.py; docs/datasets.md §7.1, docs/design.md §6):
 * a dilated ResNet trunk (output stride 16 or 8), ASPP with an
 * image-pooling branch, a 1x1 branch and three 3x3 atrous branches (rates
 * 6/12/18 at OS16, 12/24/36 at OS8), concatenated as pool, b0..b3, projected
 * to 256; a decoder that concatenates the upsampled ASPP output with a
 * 48-channel projection of layer1, two 3x3 convs, a 1x1 classifier with
 * bias, and bilinear upsampling (align_corners = true) to the input size;
 * optionally RobustNet's auxiliary head on layer3.
 * Models "deeplabv3plus-r18", "-r50", "-r101". */
#ifndef DG_DEEPLAB_H
#define DG_DEEPLAB_H

#include "nets/network.h"

/* Registers the layers on m->src and m->ps (not yet allocated); depth is
 * the trunk's (18, 50, 101). */
void dg_deeplab_init(dg_model *m, dg_ctx *ctx, int depth);

#endif
