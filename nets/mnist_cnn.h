/* nets/mnist_cnn.h -- DomainBed's MNIST_CNN followed by one linear layer
 * (docs/datasets.md §10; facebookresearch/DomainBed domainbed/networks.py):
 * four 3x3 convs (64, 128 s2, 128, 128) with bias, each followed by ReLU
 * and GroupNorm(8), global average pooling, linear 128 -> K.
 * Tensor names follow DomainBed's ERM: featurizer.conv1..4, featurizer.bn0..3
 * (the GroupNorms), classifier. */
#ifndef DG_MNIST_CNN_H
#define DG_MNIST_CNN_H

#include "nets/network.h"

/* Registers the layers on m->src and m->ps (not yet allocated). */
void dg_mnist_cnn_init(dg_model *m, dg_ctx *ctx);

#endif
