/* cmd_convert.c - diskkit convert: copy one or more images (concatenated)
 * into a new image of any format (qemu-img convert).
 *
 *   diskkit convert [-f FMT] [-O FMT] [-o OPTS] [-c] [-p] [-q] [-S SIZE] [-n]
 *                   [--target-is-zero] [-B BACKING [-F BACKING_FMT]] [-m N]
 *                   [-W] [-C] [-r RATE] [--salvage] [-l SNAPSHOT] [-U]
 *                   [--image-opts] [--target-image-opts] INPUT... OUTPUT
 *
 * Safety (INTERFACE.md): the output is created under a temporary name in
 * the output's directory and renamed over OUTPUT only when everything
 * succeeded; on failure, SIGINT, SIGTERM or SIGHUP the temporary file is
 * removed. Exceptions, written in place: -n (the target exists), block
 * devices, and multi-file outputs (VMDK flat/split subformats name their
 * extent files after the descriptor), which are removed on failure.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

#define MAX_INPUTS 1024

struct convert_cmd {
    const char *in_fmt, *out_fmt, *backing, *backing_fmt, *snapshot;
    bool compress, no_create, target_zero_opt, out_of_order, quiet, out_fmt_given;
    bool offload, salvage, target_opts;
    const char *target_keyid;   /* --target-image-opts encrypt.key-secret */
    struct dk_opts *target;     /* --target-image-opts, parsed */
    uint64_t sparse, rate;
    bool sparse_given;
    unsigned threads;
    struct dk_opts *opts;
    struct tool_progress prog;
    struct tool_common tc;
};

/* The temporary output, removed by the signal handler (async-signal-safe:
 * only unlink and _exit-like re-raise on a fixed buffer). */
static char tmp_path[4096];
static volatile sig_atomic_t tmp_active;

static void on_signal(int sig)
{
    if (tmp_active)
        unlink(tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: diskkit convert [-f FMT] [-O FMT] [-o OPTS] [-c] [-p] [-q] [-S SIZE] [-n]\n"
        "                       [--target-is-zero] [-B BACKING [-F BACKING_FMT]] [-m N]\n"
        "                       [-W] [-C] [-r RATE] [--salvage] [-l SNAPSHOT] [-U]\n"
        "                       [--image-opts] [--target-image-opts] INPUT... OUTPUT\n\n"
        "Copies the guest content of INPUT (several inputs are concatenated) into\n"
        "OUTPUT, a new image of format -O (default raw).\n"
        "  -f FMT            format of the inputs (default: probed)\n"
        "  -O FMT            output format;  -o OPTS  its creation options (-o help)\n"
        "  -c                compress the output (formats with compression: qcow2)\n"
        "  -S SIZE           zero runs of SIZE bytes become holes (default 4k; 0: none)\n"
        "  -n                do not create OUTPUT: write into the existing image\n"
        "  --target-is-zero  with -n: the existing target reads as zeros\n"
        "  -B BACKING        make OUTPUT an overlay of BACKING, writing only what\n"
        "                    differs from it;  -F FMT  the backing file's format\n"
        "  -m N              parallel workers, 1-16 (default: CPUs + 2, 4 to 8)\n"
        "  -W                allow out-of-order writes\n"
        "  -C                copy offloading (copy_file_range into a raw OUTPUT)\n"
        "  -r RATE           copy at most RATE bytes of data per second (e.g. 50M)\n"
        "  --salvage         read errors become zeros (reported), the copy goes on\n"
        "  --image-opts      INPUTs are option strings (driver=...,file.filename=...)\n"
        "  --target-image-opts  OUTPUT is an option string (needs -n)\n"
        "  -l SNAPSHOT       read internal snapshot (ID, NAME, snapshot.id=ID or\n"
        "                    snapshot.name=NAME) of the single input\n"
        "  -p                progress on stderr;  -q  quiet;  -U  force share\n");
}

static int parse_snapshot(struct convert_cmd *c, const char *arg)
{
    static const char *const keys[] = { "snapshot.id=", "snapshot.name=", "id=", "name=" };
    c->snapshot = arg;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        size_t n = strlen(keys[i]);
        if (!strncmp(arg, keys[i], n)) {
            const char *v = arg + n;
            const char *comma = strchr(v, ',');
            if (comma)   /* "snapshot.id=1,snapshot.name=x": the id is enough */
                return tool_fail("-l: give either snapshot.id= or snapshot.name=");
            c->snapshot = v;
        }
    }
    if (!*c->snapshot)
        return tool_fail("-l: empty snapshot name");
    return 0;
}

static int parse_one(struct convert_cmd *c, int ch, char **argv)
{
    switch (ch) {
    case 'f': c->in_fmt = optarg; return 0;
    case 'O': c->out_fmt = optarg; c->out_fmt_given = true; return 0;
    case 'o': return tool_parse_o(&c->opts, optarg) < 0;
    case 'c': c->compress = true; return 0;
    case 'p': c->prog.enabled = true; return 0;
    case 'q': c->quiet = true; return 0;
    case 'n': c->no_create = true; return 0;
    case 'W': c->out_of_order = true; return 0;
    case 'C': c->offload = true; return 0;
    case 'r':
        if (tool_parse_size(optarg, &c->rate) < 0)
            return 1;
        return 0;
    case 'B': c->backing = optarg; return 0;
    case 'F': c->backing_fmt = optarg; return 0;
    case 'l': return parse_snapshot(c, optarg);
    case 'S':
        if (tool_parse_size(optarg, &c->sparse) < 0)
            return 1;
        if (c->sparse % 512 || c->sparse > (1u << 30))
            return tool_fail("-S: sparse size must be a multiple of 512 up to 1G, not '%s'",
                             optarg);
        c->sparse_given = true;
        return 0;
    case 'm': {
        char *end;
        long n = strtol(optarg, &end, 10);
        if (*end || n < 1 || n > 16)
            return tool_fail("Invalid number of coroutines. Allowed number of coroutines "
                             "is between 1 and 16");
        c->threads = (unsigned)n;
        return 0;
    }
    case 't': case 'T':
        return 0;   /* cache modes: diskkit has no host cache layer to tune */
    default:
        return tool_getopt_error(argv, ch);
    }
}

static int parse(struct convert_cmd *c, int argc, char **argv)
{
    enum { OPT_TZ = 1, OPT_SALVAGE, OPT_TARGET_OPTS };
    static const struct option lo[] = {
        { "target-is-zero", no_argument, NULL, OPT_TZ },
        { "salvage", no_argument, NULL, OPT_SALVAGE },
        { "target-image-opts", no_argument, NULL, OPT_TARGET_OPTS },
        TOOL_COMMON_LONGOPTS, { 0 }
    };
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":f:O:o:cpqnWCr:B:F:l:S:m:t:T:Uh", lo, NULL)) != -1) {
        int r = tool_common_option(&c->tc, ch, optarg);
        if (r < 0)
            return 1;
        if (r > 0)
            continue;
        if (ch == 'h' || ch == TOOL_OPT_HELP) {
            usage(stdout);
            return -1;
        }
        if (ch == OPT_TZ)
            c->target_zero_opt = true;
        else if (ch == OPT_SALVAGE)
            c->salvage = true;
        else if (ch == OPT_TARGET_OPTS)
            c->target_opts = true;
        else if (parse_one(c, ch, argv))
            return 1;
    }
    if (c->quiet)
        c->prog.enabled = false;
    if (c->target_zero_opt && !c->no_create)
        return tool_fail("--target-is-zero requires use of -n flag");
    if (c->target_opts && !c->no_create)
        return tool_fail("--target-image-opts requires use of -n flag");
    if (c->offload && c->compress)
        return tool_fail("Cannot enable copy offloading when -c is used");
    if (c->offload && c->sparse_given)
        return tool_fail("Cannot enable copy offloading when -S is used");
    if (c->offload && c->salvage)
        return tool_fail("Cannot use copy offloading in salvaging mode");
    if (c->backing && c->no_create)
        return tool_fail("-B and -n cannot be used together (the existing target "
                         "keeps its own backing file)");
    if (c->snapshot && argc - optind > 2)
        return tool_fail("No support for concatenating multiple snapshot");
    if (argc - optind - 1 > MAX_INPUTS)
        return tool_fail("too many inputs (at most %d)", MAX_INPUTS);
    return 0;
}

/* ---------------------------------------------------------- the output */

struct output {
    const char *final;          /* the user's name */
    char *path;                 /* where we create/write (tmp or final) */
    bool in_place;              /* writing under the final name */
    bool ours;                  /* we created it: remove on failure */
    char **extra;               /* extra files of the created image */
};

/* Reports MSG naming the user's file, not our temporary one. */
static int output_fail(const struct output *o, const char *msg)
{
    const char *p = o->in_place ? NULL : strstr(msg, o->path);
    if (p)
        return tool_fail("%s: %s", o->final, p + strlen(o->path) +
                         (p[strlen(o->path)] == ':' ? 2 : 0));
    return tool_fail("%s", msg);
}

static bool multi_file(const char *fmt, const struct dk_opts *opts)
{
    /* Every VMDK names its files: flat/split descriptors their extents, and
     * the embedded descriptor of monolithicSparse/streamOptimized the file
     * itself (libvmdk and VMware open that name), so no temporary name. */
    (void)opts;
    return !strcmp(fmt, "vmdk");
}

/* Picks the path to create: a fresh hidden name next to the final one. */
static int choose_path(struct output *o, const char *fmt, const struct dk_opts *opts)
{
    struct stat st;
    bool exists = stat(o->final, &st) == 0;
    if ((exists && S_ISBLK(st.st_mode)) || multi_file(fmt, opts)) {
        o->in_place = true;
        o->ours = !exists;
        o->path = strdup(o->final);
        return o->path ? 0 : -ENOMEM;
    }
    const char *slash = strrchr(o->final, '/');
    int dirlen = slash ? (int)(slash - o->final) + 1 : 0;
    const char *base = slash ? slash + 1 : o->final;
    for (unsigned i = 0; i < 100; i++) {
        char name[4096];
        int n = snprintf(name, sizeof(name), "%.*s.%s.diskkit-%ld-%u", dirlen, o->final,
                         base, (long)getpid(), i);
        if (n < 0 || (size_t)n >= sizeof(name))
            return -ENAMETOOLONG;
        if (lstat(name, &st) == 0)
            continue;
        o->path = strdup(name);
        o->ours = true;
        return o->path ? 0 : -ENOMEM;
    }
    return -EEXIST;
}

static void arm_signals(const struct output *o)
{
    if (!o->ours)
        return;
    snprintf(tmp_path, sizeof(tmp_path), "%s", o->path);
    tmp_active = 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
}

static void remove_output(struct output *o)
{
    if (!o->ours)
        return;
    tmp_active = 0;
    unlink(o->path);
    for (size_t i = 0; o->extra && o->extra[i]; i++)
        unlink(o->extra[i]);
}

static void output_free(struct output *o)
{
    for (size_t i = 0; o->extra && o->extra[i]; i++)
        free(o->extra[i]);
    free(o->extra);
    free(o->path);
}

/* Remembers the extra files (extents, data file) a created image made. */
static void note_extra_files(struct output *o, struct dk_image *dst)
{
    struct dk_info in;
    if (!o->ours)
        return;
    if (dk_info(dst, &in) == 0) {
        o->extra = in.files;
        in.files = NULL;
    }
    dk_info_free(&in);
}

/* -------------------------------------------------------------- stages */

static int open_inputs(struct convert_cmd *c, char **names, size_t n, struct dk_image **src,
                       uint64_t *total)
{
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        /* dk_open_opts.snapshot goes through tool_open's flags-only API:
         * open snapshots directly. */
        if (c->snapshot) {
            struct dk_open_opts o = { .format = c->in_fmt, .snapshot = c->snapshot,
                .flags = (c->tc.force_share ? DK_OPEN_FORCE_SHARE : 0) |
                         (c->tc.allow_external ? DK_OPEN_ALLOW_EXTERNAL : 0) };
            tool_secret_for(&c->tc, NULL, &o.secret, &o.secret_len);
            struct dk_error e = { 0 };
            src[i] = dk_open(names[i], &o, &e);
            if (!src[i])
                return tool_fail("%s", e.msg);
        } else if (!(src[i] = tool_open(&c->tc, names[i], c->in_fmt, 0))) {
            return 1;
        }
        *total += dk_image_size(src[i]);
    }
    return 0;
}

/* Refuses an OUTPUT that is one of the inputs or of their backing files:
 * replacing it would destroy data the copy still reads (-n would write
 * into it while reading it). */
static int check_not_input(struct dk_image **src, size_t n, const char *final)
{
    struct stat out, in;
    if (stat(final, &out) < 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        for (struct dk_image *l = src[i]; l; l = dk_image_backing(l))
            if (stat(dk_image_filename(l), &in) == 0 && in.st_dev == out.st_dev &&
                in.st_ino == out.st_ino)
                return tool_fail("the output '%s' is also an input image (or a backing "
                                 "file of one)", final);
    return 0;
}

static bool format_has_opt(const char *fmt, const char *name)
{
    for (const struct dk_optdesc *d = dk_create_options(fmt); d && d->name; d++)
        if (!strcmp(d->name, name))
            return true;
    return false;
}

/* Adds backing_file/backing_fmt for -B (probing the format the user named
 * on the command line only when -F is missing). */
static int backing_options(struct convert_cmd *c, const char *final)
{
    if (!c->backing)
        return 0;
    if (!format_has_opt(c->out_fmt, "backing_file"))
        return tool_fail("Backing file not supported for file format '%s'", c->out_fmt);
    const char *bfmt = c->backing_fmt;
    if (!bfmt) {
        /* Relative backing names are relative to the output's directory. */
        const char *slash = strrchr(final, '/');
        char path[4096];
        if (c->backing[0] == '/' || !slash)
            snprintf(path, sizeof(path), "%s", c->backing);
        else
            snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - final), final, c->backing);
        struct dk_error e = { 0 };
        if (dk_probe(path, &bfmt, &e) < 0)
            return tool_fail("Could not open backing file: %s", e.msg);
    }
    if (dk_opts_set(&c->opts, "backing_file", c->backing) < 0 ||
        dk_opts_set(&c->opts, "backing_fmt", bfmt) < 0)
        return tool_fail("out of memory");
    return 0;
}

static int create_output(struct convert_cmd *c, struct output *o, uint64_t total)
{
    dk_opts_del(c->opts, "size");
    int r = backing_options(c, o->final);
    if (r)
        return r;
    r = choose_path(o, c->out_fmt, c->opts);
    if (r < 0)
        return tool_fail("%s: cannot pick a temporary name: %s", o->final, strerror(-r));
    arm_signals(o);
    struct dk_create_args a = {
        .filename = o->path, .format = c->out_fmt, .size = total, .opts = c->opts,
        .flags = c->tc.allow_external ? DK_CREATE_ALLOW_EXTERNAL : 0,
    };
    tool_secret_for(&c->tc, dk_opts_get(c->opts, "encrypt.key-secret"), &a.secret,
                    &a.secret_len);
    struct dk_error e = { 0 };
    if (dk_create(&a, &e) < 0) {
        remove_output(o);
        return output_fail(o, e.msg);
    }
    return 0;
}

static struct dk_image *open_output(struct convert_cmd *c, struct output *o)
{
    /* -n without -O: probe the target; a probed raw image opens read-only
     * (INTERFACE.md), so writing into it needs an explicit -O raw. */
    const char *fmt = c->no_create && !c->out_fmt_given ? NULL : c->out_fmt;
    struct dk_open_opts oo = { .format = fmt, .flags = DK_OPEN_RDWR |
        (c->tc.allow_external ? DK_OPEN_ALLOW_EXTERNAL : 0) };
    const char *keyid = c->target_keyid ? c->target_keyid
                                        : dk_opts_get(c->opts, "encrypt.key-secret");
    tool_secret_for(&c->tc, keyid, &oo.secret, &oo.secret_len);
    if (c->target_keyid && !oo.secret) {
        tool_error("no secret with id '%s' (give it with --object secret,id=%s,...)",
                   keyid, keyid);
        return NULL;
    }
    struct dk_error e = { 0 };
    struct dk_image *dst = dk_open(o->path, &oo, &e);
    if (!dst)
        tool_error("%s", e.msg);
    return dst;
}

static bool stream_vmdk(struct dk_image *dst, const struct dk_opts *opts)
{
    const char *sub = dk_opts_get(opts, "subformat");
    return !strcmp(dk_image_format(dst), "vmdk") && sub && !strcmp(sub, "streamOptimized");
}

/* --salvage: one line per unreadable range (qemu-img prints them too). */
static void salvage_line(void *opaque, const char *line)
{
    (void)opaque;
    tool_error("warning: %s", line);
}

static int copy(struct convert_cmd *c, struct dk_image **src, size_t n, struct dk_image *dst,
                const struct output *o)
{
    struct dk_copy_args a = {
        .src = src, .nsrc = n, .dst = dst,
        .dst_backing = c->backing ? dk_image_backing(dst) : NULL,
        /* A streamOptimized VMDK is always compressed: let the engine
         * compress its grains on the worker threads even without -c. */
        .flags = (c->compress || stream_vmdk(dst, c->opts) ? DK_COPY_COMPRESS : 0) |
                 (!c->no_create || c->target_zero_opt ? DK_COPY_TARGET_ZERO : 0) |
                 (c->out_of_order ? DK_COPY_OUT_OF_ORDER : 0) |
                 (c->sparse_given && c->sparse == 0 ? DK_COPY_NO_SPARSE : 0) |
                 (c->offload ? DK_COPY_OFFLOAD : 0) | (c->salvage ? DK_COPY_SALVAGE : 0),
        .sparse_size = c->sparse_given ? c->sparse : 0,
        .threads = c->threads,
        .progress = tool_progress_cb, .progress_opaque = &c->prog,
        .rate_limit = c->rate,
        .report = c->quiet ? NULL : salvage_line,
    };
    if (c->backing && !a.dst_backing)
        return tool_fail("%s: the new image did not open its backing file",
                         dk_image_filename(dst));
    tool_progress_cb(&c->prog, 0, 1);
    struct dk_error e = { 0 };
    if (dk_copy(&a, &e) < 0)
        return output_fail(o, e.msg);
    tool_progress_end(&c->prog);
    return 0;
}

static int run(struct convert_cmd *c, char **names, size_t n, struct output *o)
{
    struct dk_image **src = calloc(n, sizeof(*src));
    struct dk_image *dst = NULL;
    uint64_t total = 0;
    int rc = src ? open_inputs(c, names, n, src, &total) : tool_fail("out of memory");
    if (rc == 0)
        rc = check_not_input(src, n, o->final);
    if (rc == 0 && c->no_create) {
        o->path = strdup(o->final);
        o->in_place = true;
        rc = o->path ? 0 : tool_fail("out of memory");
    } else if (rc == 0) {
        rc = create_output(c, o, total);
    }
    if (rc == 0 && !(dst = open_output(c, o)))
        rc = 1;
    if (rc == 0) {
        note_extra_files(o, dst);
        rc = copy(c, src, n, dst, o);
    }
    if (dst && dk_close(dst) < 0 && rc == 0)
        rc = tool_fail("%s: flushing the output failed", o->final);
    for (size_t i = 0; src && i < n; i++)
        dk_close(src[i]);
    free(src);
    if (rc == 0 && !o->in_place && rename(o->path, o->final) < 0)
        rc = tool_fail("cannot rename the new image to '%s': %s", o->final, strerror(errno));
    if (rc != 0)
        remove_output(o);
    tmp_active = 0;
    return rc;
}

/* --target-image-opts: OUTPUT is "driver=FMT,file.filename=PATH[,
 * encrypt.key-secret=ID]" naming an existing image (-n). */
static int target_options(struct convert_cmd *c, struct output *o)
{
    struct dk_error e = { 0 };
    if (dk_opts_parse(&c->target, o->final, &e) < 0)
        return tool_fail("%s", e.msg);
    const char *fn = dk_opts_get(c->target, "file.filename");
    if (!fn)
        fn = dk_opts_get(c->target, "filename");
    if (!fn)
        return tool_fail("--target-image-opts: missing file.filename=");
    o->final = fn;
    const char *drv = dk_opts_get(c->target, "driver");
    if (drv) {
        if (c->out_fmt_given && strcmp(drv, c->out_fmt))
            return tool_fail("-O %s and driver=%s of --target-image-opts disagree",
                             c->out_fmt, drv);
        c->out_fmt = drv;
        c->out_fmt_given = true;
    }
    c->target_keyid = dk_opts_get(c->target, "encrypt.key-secret");
    return 0;
}

int cmd_convert(int argc, char **argv)
{
    struct convert_cmd c = { .out_fmt = "raw", .prog = { .last_centi = -1 } };
    struct output o = { 0 };
    int rc = parse(&c, argc, argv);
    if (rc == 0 && !dk_create_options(c.out_fmt))
        rc = tool_fail("Unknown file format '%s'", c.out_fmt);
    if (rc == 0 && tool_opts_want_help(c.opts))
        rc = tool_print_create_help(c.out_fmt) ? 1 : -1;
    if (rc == 0 && argc - optind < 2)
        rc = tool_fail("expected INPUT... OUTPUT; see 'diskkit convert --help'");
    if (rc == 0) {
        o.final = argv[argc - 1];
        if (c.target_opts)
            rc = target_options(&c, &o);
    }
    if (rc == 0)
        rc = run(&c, argv + optind, (size_t)(argc - optind - 1), &o);
    output_free(&o);
    dk_opts_free(c.target);
    dk_opts_free(c.opts);
    tool_common_free(&c.tc);
    return rc < 0 ? 0 : rc;
}
