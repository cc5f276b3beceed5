/* app/main.c -- the dgseg command line. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("dgseg %s\n", DG_VERSION);
        return 0;
    }
    fprintf(stderr, "usage: dgseg --version\n");
    return 2;
}
