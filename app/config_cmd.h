/* app/config_cmd.h -- `dgseg config --list | --markdown`: the reference of
 * every configuration key (section, key, accepted values and range,
 * default, one sentence of meaning), printed from the key table that
 * app/config.c reads configurations with, so that it cannot drift from
 * what dgseg accepts. --list is for a terminal and shows this build's own
 * defaults; --markdown is docs/configuration.md, which must read the same
 * from every checkout (suite config compares the two). */
#ifndef DG_CONFIG_CMD_H
#define DG_CONFIG_CMD_H

/* Entry point; returns the process exit status (0, 1 when standard output
 * cannot be written, 2 usage error: no mode, both modes, an unknown option
 * or an extra argument, each named). */
int dg_config_main(int argc, char **argv);

#endif
