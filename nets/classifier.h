/* nets/classifier.h -- DomainBed's ResNet classifier
 * (facebookresearch/DomainBed domainbed/networks.py ResNet + a linear head):
 * a torchvision ResNet-18/50 featurizer without fc ("featurizer.network.*"),
 * global average pooling, dropout (hparam resnet_dropout), and a linear
 * "classifier" to K classes. model.freeze_bn runs every BN in frozen mode.
 * Models "resnet18", "resnet50". */
#ifndef DG_CLASSIFIER_H
#define DG_CLASSIFIER_H

#include "nets/network.h"

void dg_classifier_init(dg_model *m, dg_ctx *ctx, int depth);

#endif
