/* app/config.c -- the descriptor table of every configuration key, the
 * libinih reader, command-line overrides, validation and the resolved
 * writer (see config.h; docs/design.md §5, docs/algorithms.md §16). */
#define _POSIX_C_SOURCE 200809L
#include "app/config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "data/fsutil.h"
#include "nets/model.h"

typedef enum key_type {
    K_STR = 0,    /* char * (owned) */
    K_CHOICE,     /* char *, one of `choices` */
    K_INT,        /* long in [lo, hi] */
    K_REAL,       /* double in [lo, hi] (open ends by flags) */
    K_BOOL,       /* bool: true false yes no on off 1 0 */
    K_ENUM,       /* int: index into `choices` */
    K_EPOCH,      /* long: "none" = -1, else >= lo */
    K_LB_ALPHA    /* optim.lb_alpha: "adaptive" or a number in (0, 1] */
} key_type;

/* MODEL_NAMES: the values are dg_model_names (dg_config_validate checks
 * them), listed from there so the reference follows the models dgseg has.
 * BUILD_DEFAULT: the default is a path fixed when dgseg is built, printed
 * by --list but not written into the generated document, which must read
 * the same from every checkout. */
enum { LO_OPEN = 1, HI_OPEN = 2, LIST = 4, MODEL_NAMES = 8, BUILD_DEFAULT = 16 };

typedef struct key_def {
    const char *section;
    const char *key;
    key_type type;
    size_t off;            /* offset in dg_config */
    const char *def;       /* default, as text */
    double lo, hi;
    unsigned flags;
    const char *choices;   /* "a|b|c" for K_CHOICE, K_ENUM */
    const char *help;      /* one sentence: what the key does, its units, what 0 or "" means */
} key_def;

#define OFF(f) offsetof(dg_config, f)
#define OPT(f) (offsetof(dg_config, optim) + offsetof(dg_method_cfg, f))
#define BIG 1e300
#define LBIG 2000000000.0

static const char *const sections[] = {"data", "model", "optim", "train", "eval", "output"};

/* Every key's row: its type, field, default, range and the one sentence that
 * `dgseg config --list / --markdown` prints (docs/configuration.md is made
 * from it, and suite config fails while that file differs or a row has no
 * sentence), so what the keys mean is written once, here, beside what they
 * accept. */
static const key_def keys[] = {
    /* [data] */
    {"data", "sources", K_STR, OFF(sources), "", 0, 0, LIST, NULL,
            "Segmentation training domains as reader:root entries (readers gtav, synthia, "
            "cityscapes, bdd100k, mapillary; at most 16); setting it makes the run a "
            "segmentation run."},
    {"data", "targets", K_STR, OFF(targets), "", 0, 0, LIST, NULL,
            "Segmentation target domains as reader:root entries, each read at its evaluation "
            "split: evaluated after training and by dgseg eval, checked by dgseg verify; "
            "empty: none."},
    {"data", "source_split", K_STR, OFF(source_split), "train", 0, 0, 0, NULL,
            "Split of every source that training reads (gtav and synthia also take all: every "
            "image)."},
    {"data", "source_val_split", K_STR, OFF(source_val_split), "val", 0, 0, 0, NULL,
            "Split of every source that source validation reads: SWAD's loss and "
            "eval.validate = source or both."},
    {"data", "dataset", K_STR, OFF(dataset), "", 0, 0, 0, NULL,
            "Classification dataset, domainbed:/path (one folder per domain) or rotated-fmnist; "
            "setting it makes the run leave-one-domain-out classification."},
    {"data", "test_domains", K_STR, OFF(test_domains), "", 0, 0, LIST, NULL,
            "Classification test domains by name or index, comma separated: train runs one "
            "leave-one-domain-out training per entry and needs at least one."},
    {"data", "seed", K_INT, OFF(data_seed), "0", 0, LBIG, 0, NULL,
            "Seed of the shuffle that deals Fashion-MNIST's images to the six rotated domains "
            "(rotated-fmnist only; train.seed drives training)."},
    {"data", "fmnist_dir", K_STR, OFF(fmnist_dir), "/usr/share/datasets/fashion-mnist", 0, 0, 0,
            NULL, "Folder of the Fashion-MNIST IDX files that rotated-fmnist reads (Debian's "
            "dataset-fashion-mnist installs them here)."},
    {"data", "split_dir", K_STR, OFF(split_dir), DG_SPLIT_DIR, 0, 0, BUILD_DEFAULT, NULL,
            "Folder of the GTAV and SYNTHIA split lists used when a dataset has no split_data/ "
            "folder of its own; the default is data/splits of the source tree dgseg was built "
            "from."},
    {"data", "on_bad_sample", K_ENUM, OFF(on_bad_sample), "fail", 0, 0, 0, "fail|skip",
            "What the training loader does with a corrupt or mismatched sample: fail stops "
            "naming its file, skip takes the next sample instead and counts it."},
    {"data", "workers", K_INT, OFF(workers), "2", 0, 256, 0, NULL,
            "Loader threads that read and augment batches ahead of their use (training and "
            "evaluation); 0 loads each batch on the main thread."},
    {"data", "prefetch", K_INT, OFF(prefetch), "0", 0, 1024, 0, NULL,
            "Batches the training loader may hold ready ahead of their step; 0: two per "
            "worker."},
    {"data", "crop_size", K_INT, OFF(crop_size), "768", 16, 16384, 0, NULL,
            "Side in pixels of the square random crop of segmentation training images, padded "
            "with ignore labels where the scaled image is smaller; the model's training input "
            "size."},
    {"data", "scale_min", K_REAL, OFF(scale_min), "0.5", 0, 16, LO_OPEN, NULL,
            "Smallest random rescale factor of segmentation training images before the crop "
            "(at least 0.001; scale_min = scale_max = 1 turns rescaling off)."},
    {"data", "scale_max", K_REAL, OFF(scale_max), "2.0", 0, 16, LO_OPEN, NULL,
            "Largest random rescale factor of segmentation training images, >= scale_min."},
    {"data", "flip", K_BOOL, OFF(flip), "true", 0, 0, 0, NULL,
            "Mirror segmentation training images left-right with probability 0.5."},
    {"data", "jitter_p", K_REAL, OFF(jitter_p), "0.5", 0, 1, 0, NULL,
            "Probability that a segmentation training image gets the colour jitter "
            "(brightness, contrast, saturation, hue); 0 turns it off."},
    {"data", "brightness", K_REAL, OFF(brightness), "0.4", 0, 1, 0, NULL,
            "Colour jitter's brightness strength x: factor drawn from [max(0, 1 - x), 1 + x]; "
            "0 turns it off."},
    {"data", "contrast", K_REAL, OFF(contrast), "0.4", 0, 1, 0, NULL,
            "Colour jitter's contrast strength x: factor drawn from [max(0, 1 - x), 1 + x]; 0 "
            "turns it off."},
    {"data", "saturation", K_REAL, OFF(saturation), "0.4", 0, 1, 0, NULL,
            "Colour jitter's saturation strength x: factor drawn from [max(0, 1 - x), 1 + x]; "
            "0 turns it off."},
    {"data", "hue", K_REAL, OFF(hue), "0.1", 0, 0.5, 0, NULL,
            "Colour jitter's hue shift bound x, in fractions of the hue circle: shift drawn "
            "from [-x, x]; 0 turns it off."},
    {"data", "blur", K_BOOL, OFF(blur), "true", 0, 0, 0, NULL,
            "Gaussian blur on every segmentation training image, sigma drawn from "
            "[blur_sigma_min, blur_sigma_max]."},
    {"data", "blur_sigma_min", K_REAL, OFF(blur_sigma_min), "0.15", 0, 100, LO_OPEN, NULL,
            "Smallest blur sigma in pixels (with data.blur; the loader takes at most 8)."},
    {"data", "blur_sigma_max", K_REAL, OFF(blur_sigma_max), "1.3", 0, 100, LO_OPEN, NULL,
            "Largest blur sigma in pixels, >= blur_sigma_min (with data.blur; the loader takes "
            "at most 8)."},
    {"data", "class_uniform_pct", K_REAL, OFF(class_uniform_pct), "0.5", 0, 1, 0, NULL,
            "Fraction of each segmentation epoch drawn class-uniformly, as crops around the "
            "centroids of a class; 0: plain shuffled epochs without the centroid scan."},
    {"data", "class_uniform_tile", K_INT, OFF(class_uniform_tile), "1024", 1, 65536, 0, NULL,
            "Side in pixels of the tiles in which the class-uniform scan finds one centroid "
            "per class present."},
    {"data", "eval_height", K_INT, OFF(eval_height), "1536", 16, 16384, 0, NULL,
            "Height in pixels that Mapillary images are resized to, then centre-cropped "
            "square, for evaluation."},
    {"data", "image_size", K_INT, OFF(image_size), "224", 8, 4096, 0, NULL,
            "Side in pixels of DomainBed classification inputs (Rotated Fashion-MNIST stays "
            "28)."},
    {"data", "augment", K_BOOL, OFF(augment), "true", 0, 0, 0, NULL,
            "DomainBed training augmentation (random resized crop, flip, colour jitter, "
            "grayscale); false resizes training images as evaluation does."},
    /* [model] */
    {"model", "name", K_STR, OFF(model), "deeplabv3plus-r50", 0, 0, MODEL_NAMES, NULL,
            "Network to train or evaluate: a deeplabv3plus-* model for segmentation, the "
            "others for classification."},
    {"model", "pretrained", K_STR, OFF(pretrained), "", 0, 0, 0, NULL,
            "Safetensors file of an ImageNet ResNet (torchvision names) loaded into the "
            "model's backbone before training; empty: train from scratch."},
    {"model", "output_stride", K_INT, OFF(output_stride), "16", 8, 16, 0, NULL,
            "DeepLabv3+ output stride, 8 or 16: the input-to-feature-map ratio, the last "
            "stages dilating instead of striding."},
    {"model", "aux", K_BOOL, OFF(aux), "true", 0, 0, 0, NULL,
            "Add DeepLabv3+'s auxiliary head on layer3 for segmentation training."},
    {"model", "aux_weight", K_REAL, OFF(aux_weight), "0.4", 0, BIG, 0, NULL,
            "Weight of the auxiliary head's cross-entropy in the training loss; 0 leaves it "
            "out."},
    {"model", "freeze_bn", K_BOOL, OFF(freeze_bn), "false", 0, 0, 0, NULL,
            "Run every BatchNorm in inference mode during training: running statistics used "
            "and never updated, scale and shift still trained."},
    {"model", "sync_bn", K_BOOL, OFF(sync_bn), "true", 0, 0, 0, NULL,
            "In a data-parallel job (mpirun -np N dgseg train), normalise every BatchNorm "
            "with the statistics of the whole batch, summed over the ranks, so that N ranks "
            "compute what one process computes; false: each rank its own share's (PyTorch "
            "DDP's default). No effect in one process."},
    {"model", "dropout", K_REAL, OFF(dropout), "0", 0, 1, HI_OPEN, NULL,
            "Dropout probability before the classifiers' linear head; 0: none."},
    {"model", "winograd", K_ENUM, OFF(winograd), "auto", 0, 0, 0, "auto|on|off",
            "Dense 3x3 convolutions by Winograd F(4x4, 3x3): auto for evaluation and "
            "prediction of every model and training of the classifiers (DeepLab trains "
            "direct), on or off for all."},
    /* [optim] (docs/algorithms.md §16) */
    {"optim", "method", K_CHOICE, OFF(method), "erm", 0, 0, 0,
            "erm|lookahead|swad|sam|asam|lookbehind-sam|lookbehind-asam|dgsam|saf|mesa",
            "Training method around the base optimizer (saf is classification only)."},
    {"optim", "base", K_CHOICE, OFF(base), "sgd", 0, 0, 0, "sgd|adam|adamw",
            "Base optimizer, as PyTorch's: sgd and adam add weight decay to the gradient, "
            "adamw shrinks the weights apart from it."},
    {"optim", "lr", K_REAL, OFF(lr), "0.01", 0, BIG, LO_OPEN, NULL,
            "Base learning rate: the schedule's peak."},
    {"optim", "momentum", K_REAL, OPT(momentum), "0.9", 0, 1, HI_OPEN, NULL,
            "SGD momentum; 0: plain SGD without a momentum buffer."},
    {"optim", "nesterov", K_BOOL, OPT(nesterov), "false", 0, 0, 0, NULL,
            "Nesterov momentum for SGD (needs momentum > 0)."},
    {"optim", "weight_decay", K_REAL, OPT(weight_decay), "5e-4", 0, BIG, 0, NULL,
            "Weight decay factor of the base optimizer; 0: none."},
    {"optim", "wd_all", K_BOOL, OPT(wd_all), "true", 0, 0, 0, NULL,
            "Decay every tensor; false exempts biases and normalisation scales and shifts."},
    {"optim", "beta1", K_REAL, OPT(beta1), "0.9", 0, 1, LO_OPEN | HI_OPEN, NULL,
            "Adam and AdamW decay rate of the gradient mean."},
    {"optim", "beta2", K_REAL, OPT(beta2), "0.999", 0, 1, LO_OPEN | HI_OPEN, NULL,
            "Adam and AdamW decay rate of the squared-gradient mean."},
    {"optim", "eps", K_REAL, OPT(eps), "1e-8", 0, BIG, LO_OPEN, NULL,
            "Adam and AdamW term added to the root of the squared-gradient mean."},
    {"optim", "schedule", K_CHOICE, OFF(schedule), "poly", 0, 0, 0, "poly|cosine|constant",
            "Learning-rate schedule over train.iterations after the warm-up: poly decays to "
            "0, cosine to lr_min, constant keeps lr."},
    {"optim", "poly_power", K_REAL, OFF(poly_power), "0.9", 0, BIG, LO_OPEN, NULL,
            "Exponent p of the poly schedule, lr (1 - u)^p at progress u."},
    {"optim", "warmup_steps", K_INT, OFF(warmup_steps), "0", 0, LBIG, 0, NULL,
            "Steps of linear warm-up to the base rate before the schedule; 0: none."},
    {"optim", "lr_min", K_REAL, OFF(lr_min), "0", 0, BIG, 0, NULL,
            "Rate the cosine schedule ends at."},
    {"optim", "la_k", K_INT, OPT(la_k), "15", 1, LBIG, 0, NULL,
            "Lookahead: fast steps per cycle before the slow weights are synced."},
    {"optim", "la_alpha", K_REAL, OPT(la_alpha), "0.05", 0, 1, 0, NULL,
            "Lookahead: fraction of the way the slow weights move toward the cycle's endpoint "
            "at each sync."},
    {"optim", "la_endpoint", K_ENUM, OPT(la_endpoint), "mean", 0, 0, 0, "last|mean",
            "Lookahead: the endpoint a sync moves toward, the last fast weights or the mean of "
            "the cycle's fast iterates."},
    {"optim", "la_reg", K_ENUM, OPT(la_reg), "none", 0, 0, 0, "none|average|history",
            "Lookahead: what the fast weights are pulled toward, nothing (LA), the slow "
            "weights (LA+WA) or the cycle's running mean (LA+HA)."},
    {"optim", "la_reg_strength", K_REAL, OPT(la_reg_strength), "0.01", 0, BIG, 0, NULL,
            "Lookahead: strength of la_reg's pull, a mean of squared differences over all "
            "parameters."},
    {"optim", "la_schedule_per_cycle", K_BOOL, OPT(la_schedule_per_cycle), "false", 0, 0, 0,
            NULL, "Lookahead: advance the learning-rate schedule once per cycle (as the "
            "released code) instead of every step."},
    {"optim", "la_momentum", K_ENUM, OPT(la_momentum), "keep", 0, 0, 0, "keep|reset",
            "Lookahead: keep the base optimizer's state across syncs or reset it at each."},
    {"optim", "la_bn_refresh", K_BOOL, OPT(la_bn_refresh), "true", 0, 0, 0, NULL,
            "Lookahead: recompute BatchNorm statistics at the slow weights, 2 la_k batches at "
            "the first sync of each epoch and la_bn_refresh_final at the end."},
    {"optim", "la_bn_refresh_final", K_INT, OPT(la_bn_refresh_final), "500", 0, LBIG, 0, NULL,
            "Lookahead: batches of the BatchNorm refresh at the end of training (with "
            "la_bn_refresh); 0: none."},
    {"optim", "swad_n_converge", K_INT, OPT(swad_n_converge), "3", 1, LBIG, 0, NULL,
            "SWAD: evaluations in the window whose oldest loss must be its minimum for "
            "averaging to start."},
    {"optim", "swad_n_tolerance", K_INT, OPT(swad_n_tolerance), "6", 1, LBIG, 0, NULL,
            "SWAD: evaluations looked back and ahead to decide where the loss valley begins "
            "and ends, >= swad_n_converge."},
    {"optim", "swad_tolerance_ratio", K_REAL, OPT(swad_tolerance_ratio), "0.3", 0, BIG, 0, NULL,
            "SWAD: r in the valley's loss threshold (1 + r) times the convergence window's mean "
            "loss."},
    {"optim", "swad_eval_every", K_INT, OPT(swad_eval_every), "100", 1, LBIG, 0, NULL,
            "SWAD: steps between source-validation evaluations (a classification run's "
            "evaluations follow it instead of train.eval_every)."},
    {"optim", "swad_early_stop", K_BOOL, OPT(swad_early_stop), "true", 0, 0, 0, NULL,
            "SWAD: stop training once the loss valley ends."},
    {"optim", "swad_bn_batches", K_INT, OPT(swad_bn_batches), "500", 0, LBIG, 0, NULL,
            "SWAD: batches that recompute BatchNorm statistics at the averaged weights at the "
            "end; 0: none."},
    {"optim", "swad_val_images", K_INT, OPT(swad_val_images), "200", 1, LBIG, 0, NULL,
            "SWAD on segmentation: images of each source's validation split that its loss is "
            "measured on."},
    {"optim", "sam_rho", K_REAL, OPT(sam_rho), "0.05", 0, BIG, 0, NULL,
            "SAM and Lookbehind-SAM: radius of the ascent step."},
    {"optim", "asam_rho", K_REAL, OPT(asam_rho), "0.5", 0, BIG, 0, NULL,
            "ASAM and Lookbehind-ASAM: radius of the weight-scaled ascent step."},
    {"optim", "asam_eta", K_REAL, OPT(asam_eta), "0.01", 0, BIG, 0, NULL,
            "ASAM and Lookbehind-ASAM: eta in the per-weight scale |w| + eta."},
    {"optim", "lb_k", K_INT, OPT(lb_k), "2", 1, LBIG, 0, NULL,
            "Lookbehind: ascent and descent pairs on each step's batch."},
    {"optim", "lb_alpha", K_LB_ALPHA, OPT(lb_alpha), "adaptive", 0, 1, LO_OPEN, NULL,
            "Lookbehind: how far the slow weights move toward the fast weights, fixed or "
            "(adaptive) per tensor from the cosine of the first and the last fast step."},
    {"optim", "lb_reuse_ascent", K_BOOL, OPT(lb_reuse_ascent), "false", 0, 0, 0, NULL,
            "Lookbehind: reuse each descent gradient as the next ascent gradient (lb_k + 1 "
            "gradient passes instead of twice lb_k)."},
    {"optim", "dgsam_rho", K_REAL, OPT(dgsam_rho), "0.05", 0, BIG, 0, NULL,
            "DGSAM: radius of each domain's step in the sequential perturbation."},
    {"optim", "dgsam_refresh_first", K_BOOL, OPT(dgsam_refresh_first), "true", 0, 0, 0, NULL,
            "DGSAM: take the first domain's gradient again at the fully perturbed point (one "
            "pass more than domains) instead of reusing it."},
    {"optim", "dgsam_order", K_ENUM, OPT(dgsam_order), "shuffle", 0, 0, 0, "shuffle|fixed",
            "DGSAM: perturb the domains in an order shuffled every step, or in their list "
            "order."},
    {"optim", "saf_lambda", K_REAL, OPT(saf_lambda), "0.3", 0, BIG, 0, NULL,
            "SAF: weight of the term that pulls each sample's logits toward its logits of "
            "saf_epochs_back epochs earlier."},
    {"optim", "saf_tau", K_REAL, OPT(saf_tau), "5", 0, BIG, LO_OPEN, NULL,
            "SAF: softmax temperature of that term."},
    {"optim", "saf_epochs_back", K_INT, OPT(saf_epochs_back), "2", 1, LBIG, 0, NULL,
            "SAF: how many epochs back the compared logits are."},
    {"optim", "saf_start_epoch", K_INT, OPT(saf_start_epoch), "5", 0, LBIG, 0, NULL,
            "SAF: the term acts in the epochs after this one (at least saf_epochs_back - 1)."},
    {"optim", "saf_end_epoch", K_EPOCH, OPT(saf_end_epoch), "none", 0, LBIG, 0, NULL,
            "SAF: the term acts in the epochs before this one, > saf_start_epoch; none: to the "
            "end."},
    {"optim", "mesa_lambda", K_REAL, OPT(mesa_lambda), "0.8", 0, BIG, 0, NULL,
            "MESA: weight of the distillation term from the moving-average teacher."},
    {"optim", "mesa_tau", K_REAL, OPT(mesa_tau), "5", 0, BIG, LO_OPEN, NULL,
            "MESA: softmax temperature of that term."},
    {"optim", "mesa_decay", K_REAL, OPT(mesa_decay), "0.9998", 0, 1, 0, NULL,
            "MESA: decay of the teacher's exponential moving average of the weights and "
            "BatchNorm statistics, per step."},
    {"optim", "mesa_start_epoch", K_INT, OPT(mesa_start_epoch), "5", 0, LBIG, 0, NULL,
            "MESA: the term acts in the epochs after this one."},
    {"optim", "mesa_end_epoch", K_EPOCH, OPT(mesa_end_epoch), "none", 0, LBIG, 0, NULL,
            "MESA: the term acts in the epochs before this one, > mesa_start_epoch; none: to "
            "the end."},
    {"optim", "mesa_eval_teacher", K_BOOL, OPT(mesa_eval_teacher), "false", 0, 0, 0, NULL,
            "MESA: report the teacher as the primary model and the student second."},
    /* [train] */
    {"train", "seed", K_INT, OFF(seed), "0", 0, LBIG, 0, NULL,
            "Seed of the initial weights, the batches and their augmentation, the method's "
            "draws and the classification in/out splits (the trial)."},
    {"train", "iterations", K_INT, OFF(iterations), "40000", 1, LBIG, 0, NULL,
            "Training steps (optimizer updates): the schedule's horizon."},
    {"train", "batch_size", K_INT, OFF(batch_size), "16", 1, 65536, 0, NULL,
            "Samples per training domain in each step; a step's batch is this times the "
            "number of domains."},
    {"train", "resume", K_BOOL, OFF(resume), "false", 0, 0, 0, NULL,
            "Continue from the run folder's last checkpoint, exactly (--resume sets it); with "
            "output.dir empty, the newest runs/<config-name>-* with one."},
    {"train", "nan_policy", K_ENUM, OFF(nan_policy), "stop", 0, 0, 0, "stop|rollback",
            "On a non-finite loss: stop ends the run (exit 1) with the last checkpoint intact, "
            "rollback reloads that checkpoint and goes on with the next batch."},
    {"train", "log_every", K_INT, OFF(log_every), "10", 1, LBIG, 0, NULL,
            "Steps between the training lines of metrics.jsonl (and of the log off a "
            "terminal)."},
    {"train", "eval_every", K_INT, OFF(eval_every), "0", 0, LBIG, 0, NULL,
            "Steps N between evaluations: segmentation validates on eval.validate's sets and "
            "keeps best.safetensors, classification scores every domain after steps 1, N + 1, "
            "2 N + 1, ... and the last; 0: none."},
    {"train", "checkpoint_every", K_INT, OFF(checkpoint_every), "1000", 1, LBIG, 0, NULL,
            "Steps between writes of checkpoints/last.safetensors (also written at the end and "
            "on SIGINT or SIGTERM)."},
    {"train", "threads", K_INT, OFF(threads), "0", 0, 4096, 0, NULL,
            "Compute threads of training; 0: OMP_NUM_THREADS or every core (at most 4 per core "
            "are used)."},
    {"train", "dtype", K_ENUM, OFF(dtype), "f32", 0, 0, 0, "f32|bf16",
            "Type the convolutions and inner products compute in; bf16 keeps f32 weights and "
            "needs an AVX-512 CPU."},
    /* [eval] */
    {"eval", "batch_size", K_INT, OFF(eval_batch_size), "1", 1, 65536, 0, NULL,
            "Images per batch of classification evaluation; 1 means 128 (segmentation "
            "evaluates one image at a time)."},
    {"eval", "mode", K_ENUM, OFF(eval_mode), "whole", 0, 0, 0, "whole|slide",
            "Segmentation inference on the whole image at once, or in sliding windows."},
    {"eval", "window", K_INT, OFF(eval_window), "768", 16, 16384, 0, NULL,
            "Side in pixels of the square window of mode = slide."},
    {"eval", "stride", K_INT, OFF(eval_stride), "512", 1, 16384, 0, NULL,
            "Pixels between windows of mode = slide, at most window."},
    {"eval", "flip", K_BOOL, OFF(eval_flip), "false", 0, 0, 0, NULL,
            "Average the segmentation logits with those of the mirrored image."},
    {"eval", "validate", K_ENUM, OFF(val_on), "source", 0, 0, 0, "source|targets|both",
            "Sets that segmentation validation (train.eval_every) scores: the sources' "
            "source_val_split, the targets (oracle selection) or both."},
    {"eval", "val_images", K_INT, OFF(val_images), "500", 0, LBIG, 0, NULL,
            "Images of each validation set that segmentation validation reads, the first in "
            "order; 0: all."},
    /* [output] */
    {"output", "dir", K_STR, OFF(out_dir), "", 0, 0, 0, NULL,
            "Run folder; empty: runs/<config-name>-<timestamp> under the working directory."},
};

/* ---- values ------------------------------------------------------------- */

static void *field(dg_config *cfg, const key_def *k) { return (char *)cfg + k->off; }
static const void *cfield(const dg_config *cfg, const key_def *k) {
    return (const char *)cfg + k->off;
}

static bool parse_bool(const char *v, bool *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = true, true;
        if (!strcasecmp(v, no[i])) return *out = false, true;
    }
    return false;
}

/* Index of v in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *v) {
    int i = 0;
    size_t n = strlen(v);
    for (const char *p = choices; *p; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return i;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

static void choice_name(const char *choices, int idx, char *out, size_t cap) {
    const char *p = choices;
    for (int i = 0; i < idx && p; i++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    size_t len = 0;
    if (p) {
        const char *bar = strchr(p, '|');
        len = bar ? (size_t)(bar - p) : strlen(p);
    }
    if (len >= cap) len = cap - 1;
    memcpy(out, p ? p : "", len);
    out[len] = '\0';
}

static bool in_range(const key_def *k, double x) {
    if (k->flags & LO_OPEN ? x <= k->lo : x < k->lo) return false;
    if (k->flags & HI_OPEN ? x >= k->hi : x > k->hi) return false;
    return true;
}

static void range_text(const key_def *k, char *out, size_t cap) {
    if (k->hi >= LBIG) snprintf(out, cap, "%s %g", k->flags & LO_OPEN ? ">" : ">=", k->lo);
    else snprintf(out, cap, "in %c%g, %g%c", k->flags & LO_OPEN ? '(' : '[', k->lo, k->hi,
            k->flags & HI_OPEN ? ')' : ']');
}

static bool parse_real(const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(x)) return false;
    *out = x;
    return true;
}

static bool parse_long(const char *v, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno) return false;
    *out = x;
    return true;
}

/* Sets key k from text v; on error writes a message into err. */
static bool set_value(dg_config *cfg, const key_def *k, const char *v, char *err, size_t cap) {
    void *f = field(cfg, k);
    char range[64];
    range_text(k, range, sizeof(range));
    switch (k->type) {
    case K_STR:
        dg_free(*(char **)f);
        *(char **)f = dg_xstrdup(v);
        return true;
    case K_CHOICE:
        if (choice_index(k->choices, v) < 0) {
            snprintf(err, cap, "'%s' is not one of %s", v, k->choices);
            return false;
        }
        dg_free(*(char **)f);
        *(char **)f = dg_xstrdup(v);
        return true;
    case K_ENUM: {
        int i = choice_index(k->choices, v);
        if (i < 0) {
            snprintf(err, cap, "'%s' is not one of %s", v, k->choices);
            return false;
        }
        *(int *)f = i;
        return true;
    }
    case K_BOOL:
        if (!parse_bool(v, (bool *)f)) {
            snprintf(err, cap, "'%s' is not a boolean (true/false)", v);
            return false;
        }
        return true;
    case K_INT: {
        long x;
        if (!parse_long(v, &x)) {
            snprintf(err, cap, "'%s' is not an integer", v);
            return false;
        }
        if (!in_range(k, (double)x)) {
            snprintf(err, cap, "%ld is out of range (%s)", x, range);
            return false;
        }
        *(long *)f = x;
        return true;
    }
    case K_REAL: {
        double x;
        if (!parse_real(v, &x)) {
            snprintf(err, cap, "'%s' is not a finite number", v);
            return false;
        }
        if (!in_range(k, x)) {
            snprintf(err, cap, "%g is out of range (%s)", x, range);
            return false;
        }
        *(double *)f = x;
        return true;
    }
    case K_EPOCH: {
        long x;
        if (!strcmp(v, "none")) {
            *(long *)f = -1;
            return true;
        }
        if (!parse_long(v, &x) || x < (long)k->lo) {
            snprintf(err, cap, "'%s' is neither 'none' nor an epoch >= %g", v, k->lo);
            return false;
        }
        *(long *)f = x;
        return true;
    }
    case K_LB_ALPHA: {
        dg_method_cfg *o = &cfg->optim;
        double x;
        if (!strcmp(v, "adaptive")) {
            o->lb_alpha_adaptive = true;
            return true;
        }
        if (!parse_real(v, &x) || !in_range(k, x)) {
            snprintf(err, cap, "'%s' is neither 'adaptive' nor a number in (0, 1]", v);
            return false;
        }
        o->lb_alpha_adaptive = false;
        o->lb_alpha = x;
        return true;
    }
    }
    return false;
}

static void value_text(const dg_config *cfg, const key_def *k, char *out, size_t cap) {
    const void *f = cfield(cfg, k);
    switch (k->type) {
    case K_STR:
    case K_CHOICE:
        snprintf(out, cap, "%s", *(char *const *)f ? *(char *const *)f : "");
        break;
    case K_ENUM:
        choice_name(k->choices, *(const int *)f, out, cap);
        break;
    case K_BOOL:
        snprintf(out, cap, "%s", *(const bool *)f ? "true" : "false");
        break;
    case K_INT:
        snprintf(out, cap, "%ld", *(const long *)f);
        break;
    case K_REAL:
        snprintf(out, cap, "%.17g", *(const double *)f);
        break;
    case K_EPOCH:
        if (*(const long *)f < 0) snprintf(out, cap, "none");
        else snprintf(out, cap, "%ld", *(const long *)f);
        break;
    case K_LB_ALPHA:
        if (cfg->optim.lb_alpha_adaptive) snprintf(out, cap, "adaptive");
        else snprintf(out, cap, "%.17g", cfg->optim.lb_alpha);
        break;
    }
}

static const key_def *find_key(const char *section, const char *key) {
    for (size_t i = 0; i < DG_ARRAY_LEN(keys); i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, key)) return &keys[i];
    return NULL;
}

static bool known_section(const char *s) {
    for (size_t i = 0; i < DG_ARRAY_LEN(sections); i++)
        if (!strcmp(sections[i], s)) return true;
    return false;
}

void dg_config_defaults(dg_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    char err[256]; /* every default from the table, [optim] included */
    for (size_t i = 0; i < DG_ARRAY_LEN(keys); i++) {
        bool ok = set_value(cfg, &keys[i], keys[i].def, err, sizeof(err));
        DG_ASSERT(ok);
    }
    cfg->path = dg_xstrdup("");
    cfg->name = dg_xstrdup("config");
}

void dg_config_free(dg_config *cfg) {
    for (size_t i = 0; i < DG_ARRAY_LEN(keys); i++)
        if (keys[i].type == K_STR || keys[i].type == K_CHOICE) dg_free(*(char **)field(cfg, &keys[i]));
    dg_free(cfg->path);
    dg_free(cfg->name);
    memset(cfg, 0, sizeof(*cfg));
}

/* ---- reading ------------------------------------------------------------ */

typedef struct parse_ctx {
    dg_config *cfg;
    bool seen[DG_ARRAY_LEN(keys)];
    char err[512]; /* first problem, without the line */
    bool failed;
    dg_config_key_filter want; /* NULL: every key */
} parse_ctx;

static int on_entry(void *user, const char *section, const char *name, const char *value) {
    parse_ctx *pc = user;
    if (pc->failed) return 1; /* report only the first problem */
    if (pc->want && !pc->want(section, name)) return 1;
    char err[384] = "";
    if (!known_section(section)) {
        snprintf(pc->err, sizeof(pc->err), "unknown section [%s] (sections: data, model, optim, "
                 "train, eval, output)", section);
        pc->failed = true;
        return 0;
    }
    const key_def *k = find_key(section, name);
    if (!k) {
        snprintf(pc->err, sizeof(pc->err), "[%s] unknown key '%s'", section, name);
        pc->failed = true;
        return 0;
    }
    size_t idx = (size_t)(k - keys);
    if (pc->seen[idx]) {
        if (!(k->flags & LIST)) {
            snprintf(pc->err, sizeof(pc->err), "[%s] %s is given twice", section, name);
            pc->failed = true;
            return 0;
        }
        /* an indented continuation line of a list: append */
        char **s = field(pc->cfg, k);
        char *joined = dg_xasprintf("%s%s%s", *s, **s && *value ? ", " : "", value);
        dg_free(*s);
        *s = joined;
        return 1;
    }
    pc->seen[idx] = true;
    if (!set_value(pc->cfg, k, value, err, sizeof(err))) {
        snprintf(pc->err, sizeof(pc->err), "[%s] %s: %s", section, name, err);
        pc->failed = true;
        return 0;
    }
    return 1;
}

/* The longest config line libinih holds (INI_MAX_LINE 200 with its
 * newline and NUL). */
#define LINE_MAX_CHARS 198
#define CONT_INDENT "    " /* a list's continuation line */

/* What libinih does not tell apart, checked on the raw lines first: a line
 * too long for it, a key before any [section] (libinih reports it as
 * section "") and a key given again on an unindented line (libinih joins
 * it to the first like an indented continuation of a list). */
static dg_status scan_lines(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        dg_log_error("%s: cannot read the configuration: %s", path, strerror(errno));
        return DG_STATUS_ERR_IO;
    }
    enum { MAX_SEEN = 256 };
    char section[64] = "", *seen[MAX_SEEN];
    int seen_line[MAX_SEEN], n_seen = 0, line = 0;
    dg_status st = DG_STATUS_OK;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    while (st == DG_STATUS_OK && (len = getline(&buf, &cap, f)) >= 0) {
        line++;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = '\0';
        if (len > LINE_MAX_CHARS) {
            dg_log_error("%s:%d: line longer than %d characters; continue a long list on "
                         "indented lines", path, line, LINE_MAX_CHARS);
            st = DG_STATUS_ERR_CONFIG;
            break;
        }
        if (buf[0] == ' ' || buf[0] == '\t') continue; /* a continuation */
        char *t = dg_str_trim(buf), *eq = strchr(t, '=');
        if (*t == '[') {
            snprintf(section, sizeof(section), "%.*s", (int)strcspn(t + 1, "]"), t + 1);
            continue;
        }
        if (!*t || *t == ';' || *t == '#' || !eq) continue;
        *eq = '\0';
        const char *key = dg_str_trim(t);
        if (!section[0]) {
            dg_log_error("%s:%d: key '%s' before any [section] (sections: data, model, optim, "
                         "train, eval, output)", path, line, key);
            st = DG_STATUS_ERR_CONFIG;
            break;
        }
        char *id = dg_xasprintf("[%s] %s", section, key);
        for (int i = 0; i < n_seen && st == DG_STATUS_OK; i++)
            if (!strcmp(seen[i], id)) {
                dg_log_error("%s:%d: %s is given twice (first at line %d); continue a list on "
                             "indented lines", path, line, id, seen_line[i]);
                st = DG_STATUS_ERR_CONFIG;
            }
        if (n_seen < MAX_SEEN) {
            seen_line[n_seen] = line;
            seen[n_seen++] = id;
        } else {
            dg_free(id);
        }
    }
    for (int i = 0; i < n_seen; i++) dg_free(seen[i]);
    free(buf);
    fclose(f);
    return st;
}

static char *stem_of(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *s = dg_xstrdup(base);
    char *dot = strrchr(s, '.');
    if (dot && dot != s) *dot = '\0';
    return s;
}

dg_status dg_config_set(dg_config *cfg, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq) {
        dg_log_error("command line: '%s' is not section.key=value", assignment);
        return DG_STATUS_ERR_CONFIG;
    }
    char section[32], key[64];
    size_t ls = (size_t)(dot - assignment), lk = (size_t)(eq - dot - 1);
    if (ls >= sizeof(section) || lk >= sizeof(key)) {
        dg_log_error("command line: '%s': unknown key", assignment);
        return DG_STATUS_ERR_CONFIG;
    }
    memcpy(section, assignment, ls);
    section[ls] = '\0';
    memcpy(key, dot + 1, lk);
    key[lk] = '\0';
    const char *value = eq + 1;
    if (!known_section(section)) {
        dg_log_error("command line: '%s': unknown section [%s]", assignment, section);
        return DG_STATUS_ERR_CONFIG;
    }
    const key_def *k = find_key(section, key);
    if (!k) {
        dg_log_error("command line: '%s': [%s] has no key '%s'", assignment, section, key);
        return DG_STATUS_ERR_CONFIG;
    }
    char err[384];
    if (!set_value(cfg, k, value, err, sizeof(err))) {
        dg_log_error("command line: %s.%s: %s", section, key, err);
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

dg_status dg_config_load(dg_config *cfg, const char *path, int n_over, char *const *over) {
    dg_config_defaults(cfg);
    dg_free(cfg->path);
    dg_free(cfg->name);
    cfg->path = dg_xstrdup(path);
    cfg->name = stem_of(path);
    dg_status st = dg_check_regular_file(path, "configuration");
    if (st == DG_STATUS_OK) st = scan_lines(path);
    if (st != DG_STATUS_OK) return st;
    parse_ctx *pc = dg_xcalloc(1, sizeof(*pc));
    pc->cfg = cfg;
    int line = ini_parse(path, on_entry, pc);
    if (line < 0) {
        dg_log_error("%s: cannot read the configuration: %s", path, strerror(errno));
        st = DG_STATUS_ERR_IO;
    } else if (line > 0) {
        dg_log_error("%s:%d: %s", path, line,
                pc->failed ? pc->err : "malformed line (expected key = value or [section])");
        st = DG_STATUS_ERR_CONFIG;
    }
    dg_free(pc);
    for (int i = 0; st == DG_STATUS_OK && i < n_over; i++) st = dg_config_set(cfg, over[i]);
    return st;
}

dg_status dg_config_load_text(dg_config *cfg, const char *text, const char *name,
        dg_config_key_filter want) {
    dg_config_defaults(cfg);
    parse_ctx *pc = dg_xcalloc(1, sizeof(*pc));
    pc->cfg = cfg;
    pc->want = want;
    const int line = ini_parse_string(text, on_entry, pc);
    dg_status st = DG_STATUS_OK;
    if (line != 0) {
        dg_log_error("%s:%d: %s", name, line,
                pc->failed ? pc->err : "malformed line (expected key = value or [section])");
        st = DG_STATUS_ERR_CONFIG;
    }
    dg_free(pc);
    return st;
}

/* ---- validation and output --------------------------------------------- */

/* Every string value must fit the config line the run folder's config.ini
 * writes it on (a list: each item on its own continuation line at worst),
 * or that file could not be read back. */
static dg_status check_string_lengths(const dg_config *cfg) {
    for (size_t i = 0; i < DG_ARRAY_LEN(keys); i++) {
        const key_def *k = &keys[i];
        if (k->type != K_STR && k->type != K_CHOICE) continue;
        const char *v = *(char *const *)cfield(cfg, k);
        if (!v) continue;
        size_t longest = strlen(v), room = LINE_MAX_CHARS - strlen(k->key) - 3;
        if (k->flags & LIST) {
            longest = 0;
            room = LINE_MAX_CHARS - strlen(CONT_INDENT);
            for (const char *p = v; *p;) {
                size_t n = strcspn(p, ",");
                while (n && (*p == ' ' || *p == '\t')) p++, n--;
                if (n > longest) longest = n;
                p += n + (p[n] == ',');
            }
        }
        if (longest > room) {
            dg_log_error("%s: [%s] %s: %s of %zu characters; a config line holds %d, so at "
                         "most %zu fit", cfg->path, k->section, k->key,
                    k->flags & LIST ? "an entry" : "a value", longest, LINE_MAX_CHARS, room);
            return DG_STATUS_ERR_CONFIG;
        }
    }
    return DG_STATUS_OK;
}

/* The number of entries of dataset list `key` = list (-1 after a message
 * when it does not parse). */
static int list_entries(const char *key, const char *list) {
    dg_dataset_spec *specs;
    int n;
    if (dg_dataset_specs_parse(key, list, &specs, &n) != DG_STATUS_OK) return -1;
    dg_dataset_specs_free(specs, n);
    return n;
}

/* What train would only find out after making its run folder: a model
 * dgseg does not have or that does not fit the task, and dataset lists
 * that name nothing or do not parse. */
static dg_status check_model_and_lists(const dg_config *cfg, bool seg) {
    bool known = false;
    for (size_t i = 0; dg_model_names[i]; i++) known = known || !strcmp(cfg->model, dg_model_names[i]);
    if (!known) {
        char list[256] = "";
        for (size_t i = 0; dg_model_names[i]; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                    dg_model_names[i]);
        dg_log_error("%s: model.name = %s: no such model (%s)", cfg->path, cfg->model, list);
        return DG_STATUS_ERR_CONFIG;
    }
    if (seg != dg_model_is_segmentation(cfg->model)) {
        dg_log_error("%s: model.name = %s does not fit a %s run (data.%s)", cfg->path, cfg->model,
                seg ? "segmentation" : "classification", seg ? "sources" : "dataset");
        return DG_STATUS_ERR_CONFIG;
    }
    const int n = list_entries(seg ? "data.sources" : "data.dataset", seg ? cfg->sources
                                                                          : cfg->dataset);
    if (n == 0) dg_log_error("%s: data.%s = '%s' names no dataset", cfg->path,
            seg ? "sources" : "dataset", seg ? cfg->sources : cfg->dataset);
    if (n <= 0 || (cfg->targets[0] && list_entries("data.targets", cfg->targets) < 0))
        return DG_STATUS_ERR_CONFIG;
    return DG_STATUS_OK;
}

dg_status dg_config_validate(dg_config *cfg) {
    const bool seg = cfg->sources[0] != '\0', cls = cfg->dataset[0] != '\0';
    if (seg == cls) {
        dg_log_error("%s: set data.sources (segmentation) or data.dataset (classification)%s",
                cfg->path, seg ? ", not both" : "");
        return DG_STATUS_ERR_CONFIG;
    }
    cfg->task = seg ? DG_TASK_SEGMENTATION : DG_TASK_CLASSIFICATION;
    if (check_model_and_lists(cfg, seg) != DG_STATUS_OK || check_string_lengths(cfg) != DG_STATUS_OK)
        return DG_STATUS_ERR_CONFIG;
    if (cfg->scale_min > cfg->scale_max) {
        dg_log_error("%s: data.scale_min %g > data.scale_max %g", cfg->path, cfg->scale_min,
                cfg->scale_max);
        return DG_STATUS_ERR_CONFIG;
    }
    if (cfg->blur_sigma_min > cfg->blur_sigma_max) {
        dg_log_error("%s: data.blur_sigma_min %g > data.blur_sigma_max %g", cfg->path,
                cfg->blur_sigma_min, cfg->blur_sigma_max);
        return DG_STATUS_ERR_CONFIG;
    }
    const dg_method_cfg *o = &cfg->optim;
    dg_method_cfg rules = *o; /* the rules between [optim] keys: the optimizer module's */
    rules.segmentation = seg;
    if (dg_method_cfg_check_rules(cfg->method, &rules, cfg->path) != DG_STATUS_OK)
        return DG_STATUS_ERR_CONFIG;
    if (cfg->eval_stride > cfg->eval_window) {
        dg_log_error("%s: eval.stride %ld > eval.window %ld would leave pixels uncovered",
                cfg->path, cfg->eval_stride, cfg->eval_window);
        return DG_STATUS_ERR_CONFIG;
    }
    if (cfg->output_stride != 8 && cfg->output_stride != 16) {
        dg_log_error("%s: model.output_stride = %ld: DeepLabv3+ runs at output stride 8 or 16",
                cfg->path, cfg->output_stride);
        return DG_STATUS_ERR_CONFIG;
    }
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores > 0 && cfg->threads > 4 * cores) { /* oversubscribed: every step crawls */
        dg_log_warn("%s: train.threads = %ld on %ld cores would slow every step down; using %ld",
                cfg->path, cfg->threads, cores, 4 * cores);
        cfg->threads = 4 * cores;
    }
    if (o->nesterov && o->momentum == 0) {
        dg_log_error("%s: optim.nesterov needs optim.momentum > 0 (as PyTorch's SGD)", cfg->path);
        return DG_STATUS_ERR_CONFIG;
    }
    return DG_STATUS_OK;
}

/* "key = value" of a string key; a list too long for one config line is
 * continued on indented lines, items whole (every item fits a line:
 * dg_config_validate checks it), so the file reads back the same. */
static void write_string(FILE *f, const key_def *k, const char *v) {
    const size_t head = strlen(k->key) + 3;
    if (!(k->flags & LIST) || head + strlen(v) <= LINE_MAX_CHARS) {
        fprintf(f, "%s = %s\n", k->key, v);
        return;
    }
    fprintf(f, "%s =", k->key);
    size_t used = head - 1, n_line = 0; /* characters on this line, items on it */
    char *copy = dg_xstrdup(v), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        const char *item = dg_str_trim(t);
        if (!*item) continue;
        const size_t need = strlen(item) + (n_line ? 2 : 1);
        if (n_line && used + need > LINE_MAX_CHARS) {
            fprintf(f, "\n" CONT_INDENT "%s", item);
            used = strlen(CONT_INDENT) + strlen(item);
            n_line = 1;
        } else {
            fprintf(f, "%s%s", n_line ? ", " : " ", item);
            used += need;
            n_line++;
        }
    }
    fputc('\n', f);
    dg_free(copy);
}

void dg_config_write(const dg_config *cfg, FILE *f) {
    char v[256]; /* numbers, booleans, enum names */
    for (size_t s = 0; s < DG_ARRAY_LEN(sections); s++) {
        fprintf(f, "%s[%s]\n", s ? "\n" : "", sections[s]);
        for (size_t i = 0; i < DG_ARRAY_LEN(keys); i++) {
            if (strcmp(keys[i].section, sections[s])) continue;
            const key_def *k = &keys[i];
            if (k->type == K_STR || k->type == K_CHOICE) {
                const char *str = *(char *const *)cfield(cfg, k);
                write_string(f, k, str ? str : "");
                continue;
            }
            value_text(cfg, k, v, sizeof(v));
            fprintf(f, "%s = %s\n", k->key, v);
        }
    }
}

/* ---- the key reference ------------------------------------------------- */

size_t dg_config_key_count(void) { return DG_ARRAY_LEN(keys); }

const char *const *dg_config_sections(size_t *n) {
    *n = DG_ARRAY_LEN(sections);
    return sections;
}

void dg_config_key_describe(size_t i, dg_config_key_info *info) {
    DG_ASSERT(i < DG_ARRAY_LEN(keys));
    const key_def *k = &keys[i];
    memset(info, 0, sizeof(*info));
    info->section = k->section;
    info->key = k->key;
    info->def = k->def;
    info->build_default = (k->flags & BUILD_DEFAULT) != 0;
    info->help = k->help;
    switch (k->type) {
    case K_STR:
        info->kind = k->flags & LIST ? "list" : k->flags & MODEL_NAMES ? "choice" : "text";
        for (size_t m = 0; (k->flags & MODEL_NAMES) && dg_model_names[m]; m++) {
            const size_t used = strlen(info->choices);
            const int n = snprintf(info->choices + used, sizeof(info->choices) - used, "%s%s",
                    m ? "|" : "", dg_model_names[m]);
            DG_ASSERT(n > 0 && (size_t)n < sizeof(info->choices) - used);
        }
        break;
    case K_CHOICE:
    case K_ENUM:
        info->kind = "choice";
        snprintf(info->choices, sizeof(info->choices), "%s", k->choices);
        break;
    case K_BOOL:
        info->kind = "boolean";
        break;
    case K_INT:
    case K_EPOCH:
        info->kind = "integer";
        range_text(k, info->range, sizeof(info->range));
        if (k->type == K_EPOCH) snprintf(info->choices, sizeof(info->choices), "none");
        break;
    case K_REAL:
    case K_LB_ALPHA:
        info->kind = "number";
        range_text(k, info->range, sizeof(info->range));
        if (k->type == K_LB_ALPHA) snprintf(info->choices, sizeof(info->choices), "adaptive");
        break;
    }
}

/* ---- dataset lists ------------------------------------------------------ */

dg_status dg_dataset_specs_parse(const char *key, const char *list, dg_dataset_spec **out,
        int *n) {
    *out = NULL;
    *n = 0;
    char *copy = dg_xstrdup(list);
    dg_dataset_spec *v = NULL;
    int cnt = 0;
    dg_status st = DG_STATUS_OK;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *e = dg_str_trim(tok);
        if (!*e) continue;
        char *colon = strchr(e, ':');
        if (!colon && strcmp(e, "rotated-fmnist") != 0) {
            dg_log_error("%s: entry '%s' is not reader:root", key, e);
            st = DG_STATUS_ERR_CONFIG;
            break;
        }
        v = dg_xrealloc(v, (size_t)(cnt + 1) * sizeof(*v));
        if (colon) *colon = '\0';
        v[cnt].reader = dg_xstrdup(dg_str_trim(e));
        v[cnt].root = dg_xstrdup(colon ? dg_str_trim(colon + 1) : "");
        cnt++;
    }
    dg_free(copy);
    if (st != DG_STATUS_OK) {
        dg_dataset_specs_free(v, cnt);
        return st;
    }
    *out = v;
    *n = cnt;
    return DG_STATUS_OK;
}

void dg_dataset_specs_free(dg_dataset_spec *specs, int n) {
    for (int i = 0; i < n; i++) {
        dg_free(specs[i].reader);
        dg_free(specs[i].root);
    }
    dg_free(specs);
}

char *dg_config_text(const dg_config *cfg, bool portable) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    DG_ASSERT(f != NULL);
    if (portable) {
        dg_config c = *cfg; /* shallow: only two fields change, nothing is freed */
        c.out_dir = "";
        c.resume = false;
        dg_config_write(&c, f);
    } else {
        dg_config_write(cfg, f);
    }
    fclose(f);
    char *out = dg_xstrdup(buf);
    free(buf);
    return out;
}

int dg_config_load_checked(dg_config *cfg, const char *path, int n_over, char *const *over) {
    dg_status st = dg_config_load(cfg, path, n_over, over);
    if (st == DG_STATUS_OK) st = dg_config_validate(cfg);
    if (st == DG_STATUS_OK) return 0;
    dg_config_free(cfg);
    return st == DG_STATUS_ERR_IO ? 1 : 2;
}
