/* app/export_cmd.h -- `dgseg export`: a checkpoint's model as an ONNX file. */
#ifndef DG_EXPORT_CMD_H
#define DG_EXPORT_CMD_H

/* argv[0] is "export". Returns the process exit code: 0, 1 (a file that
 * cannot be read or written, or is not a dgseg checkpoint), 2 (usage, a
 * size the output stride cannot divide). */
int dg_export_main(int argc, char **argv);

#endif
