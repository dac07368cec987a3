/* tool.h - shared pieces of the diskkit CLI (the tools directory).
 *
 * One file per command: tools/cmd_<name>.c defines
 *     int cmd_<name>(int argc, char **argv);
 * with argv[0] the command name; it returns the process exit code. The
 * command table is in tools/main.c. Commands use only include/diskkit.h.
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_TOOL_H
#define DK_TOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "diskkit.h"

/* Name of the running command, for messages ("convert"). */
extern const char *tool_cmd;

/* Prints "diskkit: <cmd>: <message>\n" to stderr. */
void tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, and returns 1 (the usual failure exit code). */
int tool_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Options every image command accepts: secrets (--object,
 * --passphrase-file), --image-opts, -U/--force-share,
 * --allow-external-paths. A command adds TOOL_COMMON_LONGOPTS to its
 * getopt_long table and calls tool_common_option() for unknown codes. */
struct tool_common {
    bool force_share;
    bool image_opts;          /* filenames are driver=...,file.filename=... */
    bool allow_external;
    bool quiet;
    /* secrets from --object secret,id=..,data=|file=.. */
    size_t nsecrets;
    struct { char *id; unsigned char *data; size_t len; } secrets[8];
    unsigned char *passphrase;   /* from --passphrase-file */
    size_t passphrase_len;
    int rw_depth;             /* >0: tool_open opens this backing layer rw */
};
enum {
    TOOL_OPT_OBJECT = 0x1000, TOOL_OPT_IMAGE_OPTS, TOOL_OPT_PASSFILE,
    TOOL_OPT_FORCE_SHARE, TOOL_OPT_ALLOW_EXTERNAL, TOOL_OPT_HELP,
};
#define TOOL_COMMON_LONGOPTS                                              \
    { "object", required_argument, NULL, TOOL_OPT_OBJECT },               \
    { "image-opts", no_argument, NULL, TOOL_OPT_IMAGE_OPTS },             \
    { "passphrase-file", required_argument, NULL, TOOL_OPT_PASSFILE },    \
    { "force-share", no_argument, NULL, TOOL_OPT_FORCE_SHARE },           \
    { "allow-external-paths", no_argument, NULL, TOOL_OPT_ALLOW_EXTERNAL }, \
    { "help", no_argument, NULL, TOOL_OPT_HELP }
/* Handles a common option code C with argument ARG. Returns 1 if handled,
 * 0 if C is not common, -1 on error (message printed). */
int tool_common_option(struct tool_common *tc, int c, const char *arg);
/* Wipes and frees secrets. */
void tool_common_free(struct tool_common *tc);
/* Registers every --object secret on IMG by its id (dk_image_add_secret),
 * for options that name secrets (amend's encrypt.new-secret=ID). Prints
 * the error and returns -1 on failure. */
int tool_add_secrets(struct tool_common *tc, struct dk_image *img);

/* Opens an image the way every command does: FILENAME may be an
 * --image-opts string; FORMAT may be NULL (probe); FLAGS are DK_OPEN_*.
 * The secret comes from the image options' encrypt.key-secret, else
 * --passphrase-file, else the only --object secret. Prints the error and
 * returns NULL on failure. */
struct dk_image *tool_open(struct tool_common *tc, const char *filename,
                           const char *format, unsigned flags);
/* The secret for creating an encrypted image (encrypt.key-secret=ID in
 * OPTS, else the only one given). NULL/0 if none. */
void tool_secret_for(struct tool_common *tc, const char *id,
                     const unsigned char **data, size_t *len);

/* Parses a size argument, printing an error on failure. */
int tool_parse_size(const char *arg, uint64_t *out);

/* Progress bar on stderr (only when stderr is a terminal or forced with
 * -p): "    (42.00/100%)" redrawn in place, as qemu-img does. */
struct tool_progress { bool enabled; int last_centi; };
void tool_progress_cb(void *opaque, uint64_t done, uint64_t total);
void tool_progress_end(struct tool_progress *p);

/* Prints a dk_val tree as JSON (INDENT spaces per level) or in qemu-img's
 * human form ("key: value" lines, nested with 4-space steps). */
void tool_print_json(FILE *f, const struct dk_val *v, int indent, int level);
void tool_json_string(FILE *f, const char *s);
void tool_print_human(FILE *f, const struct dk_val *v, int level);
/* Formats a byte count as qemu-img does: "1 GiB", "64 KiB", "1.5 MiB". */
void tool_human_size(char *buf, size_t len, uint64_t bytes);

/* getopt helpers: commands use an optstring starting with ':' and opterr
 * = 0; on '?' or ':' they return tool_getopt_error(argv, c), which prints
 * "diskkit: CMD: invalid option ..." and returns 1. */
int tool_getopt_error(char **argv, int c);
/* Appends "-o" ARG to *OPTS; prints the error and returns -1 on bad syntax. */
int tool_parse_o(struct dk_opts **opts, const char *arg);
/* True when the options ask for help ("-o help" or "-o ?"). */
bool tool_opts_want_help(const struct dk_opts *opts);
/* Prints qemu-img's "Supported FMT options:" list to stdout; returns the
 * exit code (0, or 1 for an unknown format). */
int tool_print_create_help(const char *format);
/* Prints qemu-img's snapshot table (header plus one line each). */
void tool_print_snapshots(FILE *f, const struct dk_snapshot *s, size_t n);

#endif
