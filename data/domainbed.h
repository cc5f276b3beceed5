/* data/domainbed.h -- DomainBed image-folder datasets (docs/datasets.md §9.1):
 * <root>/<domain>/<class>/<image>. Domains are the sorted sub-folders of
 * root (environment index = position); classes are the sorted class
 * folders. Images are found the way torchvision's ImageFolder finds them:
 * every file below a class folder (sub-folders included, links followed)
 * whose extension is one of .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp
 * (any case), ordered by (folder path, file name) as Python's sorted()
 * orders them. PACS, VLCS, OfficeHome, TerraIncognita and DomainNet are
 * read the same way.
 *
 * All domains share one class list, the sorted union of their class
 * folders; a domain that lacks a class is warned about (ImageFolder would
 * renumber its classes silently). Loading only reads the dataset, so
 * several threads may load at once. Owns every string and array. */
#ifndef DG_DATA_DOMAINBED_H
#define DG_DATA_DOMAINBED_H

#include <stdint.h>

#include "data/image_cv.h"
#include "nets/core/common.h"

typedef struct dg_domainbed_domain {
    char *name;      /* folder name */
    int64_t n;       /* images */
    char **paths;    /* (n) full paths */
    int32_t *labels; /* (n) class index into dg_domainbed.classes */
} dg_domainbed_domain;

typedef struct dg_domainbed {
    char *root;
    int n_domains;
    dg_domainbed_domain *domains; /* (n_domains) sorted by name */
    int n_classes;
    char **classes;               /* (n_classes) sorted names */
} dg_domainbed;

/* Scans root. ds is overwritten; zeroed on error. Returns DG_STATUS_OK;
 * DG_STATUS_ERR_MISSING when root is not a folder, has no domain folders,
 * or a domain holds no image (the folder is named); DG_STATUS_ERR_IO when a
 * folder cannot be listed (named, with the system's reason). */
dg_status dg_domainbed_open(const char *root, dg_domainbed *ds);

/* Releases everything and zeroes ds; safe on a zeroed struct. */
void dg_domainbed_free(dg_domainbed *ds);

/* Index of the domain called name, or -1. */
int dg_domainbed_find_domain(const dg_domainbed *ds, const char *name);

/* Decodes image k of domain d to RGB8 (dg_image_read's statuses and
 * messages: the file is named). */
dg_status dg_domainbed_load(const dg_domainbed *ds, int d, int64_t k, dg_image *img);

#endif
