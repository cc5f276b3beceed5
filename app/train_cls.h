/* app/train_cls.h -- the classification trainer: leave-one-domain-out runs
 * (one per data.test_domains entry, each in <dir>/test-<domain>/) of the
 * shared loop (app/trainer.h) with DomainBed's evaluation points and
 * training-domain validation, then the results over the test domains. */
#ifndef DG_APP_TRAIN_CLS_H
#define DG_APP_TRAIN_CLS_H

#include "app/config.h"

/* Trains (or resumes) every test domain's run of cfg under dir and writes
 * results.md/json there. Returns the exit code: 0, 1 runtime failure, 2
 * configuration error. */
int dg_train_cls(const dg_config *cfg, const char *dir);

#endif
