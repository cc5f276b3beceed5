/* tests/fuzz/fuzz_config.c -- the INI configuration loader (app/config.h):
 * load, validate, write back (config.ini's text) and free. */
#include "fuzz_input.h"

#include "app/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dg_config cfg; /* freed after a failed load too, as dg_config_load_checked does */
    if (dg_config_load(&cfg, fuzz_file(data, size), 0, NULL) == DG_STATUS_OK &&
            dg_config_validate(&cfg) == DG_STATUS_OK)
        free(dg_config_text(&cfg, true));
    dg_config_free(&cfg);
    return 0;
}
