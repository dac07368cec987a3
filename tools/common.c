/* common.c - helpers shared by the diskkit commands: messages, secrets and
 * image options, opening images, progress, JSON and human printing.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

void tool_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "diskkit: %s: ", tool_cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int tool_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "diskkit: %s: ", tool_cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int tool_parse_size(const char *arg, uint64_t *out)
{
    int r = dk_parse_size(arg, out);
    if (r == -ERANGE)
        tool_error("Image size must be less than 8 EiB: '%s'", arg);
    else if (r < 0)
        tool_error("Invalid size '%s': use a number with an optional suffix "
                   "k, M, G, T, P or E (powers of 1024)", arg);
    return r;
}

/* ------------------------------------------------------------- secrets */

/* Reads a whole small file (secrets); strips one trailing newline when
 * FIRST_LINE (--passphrase-file reads the first line only). */
static int read_secret_file(const char *path, bool first_line, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    unsigned char *buf = malloc(65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (!buf)
        return -ENOMEM;
    if (first_line) {
        unsigned char *nl = memchr(buf, '\n', n);
        if (nl)
            n = (size_t)(nl - buf);
    }
    *out = buf;
    *len = n;
    return 0;
}

static int add_object(struct tool_common *tc, const char *spec)
{
    struct dk_opts *o = NULL;
    struct dk_error e = { 0 };
    /* qemu syntax: "secret,id=x,data=y" - the first item is the type. */
    if (dk_opts_parse(&o, spec, &e) < 0) {
        tool_error("--object: %s", e.msg);
        return -1;
    }
    int rc = -1;
    const char *type = dk_opts_count(o) ? dk_opts_key(o, 0) : "";
    const char *qom = dk_opts_get(o, "qom-type");
    if (strcmp(type, "secret") && !(qom && !strcmp(qom, "secret"))) {
        tool_error("--object: only 'secret' objects are supported");
        goto out;
    }
    const char *id = dk_opts_get(o, "id"), *data = dk_opts_get(o, "data");
    const char *file = dk_opts_get(o, "file"), *fmt = dk_opts_get(o, "format");
    if (!id || (!data == !file)) {
        tool_error("--object secret needs id= and exactly one of data= or file=");
        goto out;
    }
    if (fmt && strcmp(fmt, "raw")) {
        tool_error("--object secret: only format=raw is supported");
        goto out;
    }
    if (tc->nsecrets >= sizeof(tc->secrets) / sizeof(tc->secrets[0])) {
        tool_error("--object: too many secrets");
        goto out;
    }
    size_t i = tc->nsecrets;
    if (data) {
        tc->secrets[i].len = strlen(data);
        tc->secrets[i].data = (unsigned char *)strdup(data);
    } else if (read_secret_file(file, false, &tc->secrets[i].data, &tc->secrets[i].len) < 0) {
        tool_error("--object secret: cannot read '%s': %s", file, strerror(errno));
        goto out;
    }
    tc->secrets[i].id = strdup(id);
    tc->nsecrets++;
    rc = 0;
out:
    /* The spec may hold the secret itself: wipe our copy. */
    for (size_t k = 0; k < dk_opts_count(o); k++) {
        char *v = (char *)dk_opts_value(o, k);
        explicit_bzero(v, strlen(v));
    }
    dk_opts_free(o);
    return rc;
}

int tool_common_option(struct tool_common *tc, int c, const char *arg)
{
    switch (c) {
    case TOOL_OPT_OBJECT:
        return add_object(tc, arg) < 0 ? -1 : 1;
    case TOOL_OPT_IMAGE_OPTS:
        tc->image_opts = true;
        return 1;
    case TOOL_OPT_PASSFILE:
        if (read_secret_file(arg, true, &tc->passphrase, &tc->passphrase_len) < 0) {
            tool_error("--passphrase-file: cannot read '%s': %s", arg, strerror(errno));
            return -1;
        }
        return 1;
    case TOOL_OPT_FORCE_SHARE:
    case 'U':
        tc->force_share = true;
        return 1;
    case TOOL_OPT_ALLOW_EXTERNAL:
        tc->allow_external = true;
        return 1;
    default:
        return 0;
    }
}

void tool_common_free(struct tool_common *tc)
{
    for (size_t i = 0; i < tc->nsecrets; i++) {
        explicit_bzero(tc->secrets[i].data, tc->secrets[i].len);
        free(tc->secrets[i].data);
        free(tc->secrets[i].id);
    }
    if (tc->passphrase) {
        explicit_bzero(tc->passphrase, tc->passphrase_len);
        free(tc->passphrase);
    }
    memset(tc, 0, sizeof(*tc));
}

int tool_add_secrets(struct tool_common *tc, struct dk_image *img)
{
    for (size_t i = 0; i < tc->nsecrets; i++) {
        if (dk_image_add_secret(img, tc->secrets[i].id, tc->secrets[i].data,
                                tc->secrets[i].len) < 0) {
            tool_error("%s", dk_image_errmsg(img));
            return -1;
        }
    }
    return 0;
}

void tool_secret_for(struct tool_common *tc, const char *id,
                     const unsigned char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    /* Without an id, an explicit --passphrase-file wins over a lone
     * --object: with amend the --object is the new key, not the image's. */
    if (!id && tc->passphrase) {
        *data = tc->passphrase;
        *len = tc->passphrase_len;
        return;
    }
    for (size_t i = 0; i < tc->nsecrets; i++) {
        if (!id || !strcmp(tc->secrets[i].id, id)) {
            if (!id && tc->nsecrets > 1)
                break;   /* ambiguous without an id */
            *data = tc->secrets[i].data;
            *len = tc->secrets[i].len;
            return;
        }
    }
}

struct dk_image *tool_open(struct tool_common *tc, const char *filename,
                           const char *format, unsigned flags)
{
    struct dk_open_opts o = { .format = format, .flags = flags };
    struct dk_opts *io = NULL;
    const char *keyid = NULL;
    if (tc->image_opts) {
        struct dk_error e = { 0 };
        if (dk_opts_parse(&io, filename, &e) < 0) {
            tool_error("%s", e.msg);
            return NULL;
        }
        const char *fn = dk_opts_get(io, "file.filename");
        if (!fn)
            fn = dk_opts_get(io, "filename");
        if (!fn) {
            tool_error("--image-opts: missing file.filename=");
            dk_opts_free(io);
            return NULL;
        }
        filename = fn;
        if (dk_opts_get(io, "driver"))
            o.format = dk_opts_get(io, "driver");
        keyid = dk_opts_get(io, "encrypt.key-secret");
    }
    if (tc->force_share)
        o.flags |= DK_OPEN_FORCE_SHARE;
    if (tc->allow_external)
        o.flags |= DK_OPEN_ALLOW_EXTERNAL;
    tool_secret_for(tc, keyid, &o.secret, &o.secret_len);
    if (keyid && !o.secret) {
        tool_error("no secret with id '%s' (give it with --object secret,id=%s,...)",
                   keyid, keyid);
        dk_opts_free(io);
        return NULL;
    }
    struct dk_error err = { 0 };
    struct dk_image *img = tc->rw_depth > 0 ? dk_open_chain_rw(filename, &o, tc->rw_depth, &err)
                                            : dk_open(filename, &o, &err);
    if (!img)
        tool_error("%s", err.msg);
    dk_opts_free(io);
    return img;
}

/* ------------------------------------------------------------ progress */

void tool_progress_cb(void *opaque, uint64_t done, uint64_t total)
{
    struct tool_progress *p = opaque;
    if (!p || !p->enabled)
        return;
    int centi = total ? (int)((done * 10000) / total) : 10000;
    if (centi == p->last_centi)
        return;
    p->last_centi = centi;
    fprintf(stderr, "    (%d.%02d/100%%)\r", centi / 100, centi % 100);
    fflush(stderr);
}

void tool_progress_end(struct tool_progress *p)
{
    if (p && p->enabled) {
        fprintf(stderr, "    (100.00/100%%)\n");
        fflush(stderr);
    }
}

/* ------------------------------------------------------------ printing */

void tool_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

void tool_print_json(FILE *f, const struct dk_val *v, int indent, int level)
{
    switch (v->type) {
    case DK_VAL_NULL: fputs("null", f); break;
    case DK_VAL_BOOL: fputs(v->v.b ? "true" : "false", f); break;
    case DK_VAL_INT: fprintf(f, "%lld", (long long)v->v.i); break;
    case DK_VAL_UINT: fprintf(f, "%llu", (unsigned long long)v->v.u); break;
    case DK_VAL_STR: tool_json_string(f, v->v.s); break;
    case DK_VAL_OBJ:
    case DK_VAL_LIST: {
        bool obj = v->type == DK_VAL_OBJ;
        fputc(obj ? '{' : '[', f);
        for (size_t i = 0; i < v->v.kids.n; i++) {
            const struct dk_val *c = &v->v.kids.items[i];
            fprintf(f, "%s\n%*s", i ? "," : "", indent * (level + 1), "");
            if (obj) {
                tool_json_string(f, c->key ? c->key : "");
                fputs(": ", f);
            }
            tool_print_json(f, c, indent, level + 1);
        }
        if (v->v.kids.n)
            fprintf(f, "\n%*s", indent * level, "");
        fputc(obj ? '}' : ']', f);
        break;
    }
    }
}

/* qemu-img's human form turns "lazy-refcounts" into "lazy refcounts". */
static void human_key(FILE *f, const char *k)
{
    for (; *k; k++)
        fputc(*k == '-' ? ' ' : *k, f);
}

void tool_print_human(FILE *f, const struct dk_val *v, int level)
{
    if (v->type != DK_VAL_OBJ && v->type != DK_VAL_LIST)
        return;
    for (size_t i = 0; i < v->v.kids.n; i++) {
        const struct dk_val *c = &v->v.kids.items[i];
        fprintf(f, "%*s", 4 * level, "");
        if (v->type == DK_VAL_LIST)
            fprintf(f, "[%zu]:\n", i);
        else
            human_key(f, c->key ? c->key : "");
        switch (c->type) {
        case DK_VAL_OBJ:
        case DK_VAL_LIST:
            if (v->type == DK_VAL_OBJ)
                fputs(":\n", f);
            tool_print_human(f, c, level + 1);
            break;
        default:
            if (v->type == DK_VAL_LIST) {
                fprintf(f, "%*s", 4 * (level + 1), "");
            } else {
                fputs(": ", f);
            }
            if (c->type == DK_VAL_BOOL) fputs(c->v.b ? "true" : "false", f);
            else if (c->type == DK_VAL_INT) fprintf(f, "%lld", (long long)c->v.i);
            else if (c->type == DK_VAL_UINT) fprintf(f, "%llu", (unsigned long long)c->v.u);
            else if (c->type == DK_VAL_STR) fputs(c->v.s, f);
            fputc('\n', f);
        }
    }
}

void tool_human_size(char *buf, size_t len, uint64_t bytes)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    int u = 0;
    double v = (double)bytes;
    while (v >= 1024 && u < 6) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
    else if (v == (double)(uint64_t)v)
        snprintf(buf, len, "%llu %s", (unsigned long long)v, units[u]);
    else
        snprintf(buf, len, "%.3g %s", v, units[u]);
}

/* ------------------------------------------------- option parsing aids */

int tool_getopt_error(char **argv, int c)
{
    const char *what = c == ':' ? "missing argument for option" : "invalid option";
    if (optopt)
        tool_error("%s -%c; see 'diskkit %s --help'", what, optopt, tool_cmd);
    else
        tool_error("%s '%s'; see 'diskkit %s --help'", what, argv[optind - 1], tool_cmd);
    return 1;
}

int tool_parse_o(struct dk_opts **opts, const char *arg)
{
    struct dk_error e = { 0 };
    if (dk_opts_parse(opts, arg, &e) < 0) {
        tool_error("Invalid option list '%s': %s", arg, e.msg);
        return -1;
    }
    return 0;
}

bool tool_opts_want_help(const struct dk_opts *opts)
{
    for (size_t i = 0; i < dk_opts_count(opts); i++) {
        const char *k = dk_opts_key(opts, i), *v = dk_opts_value(opts, i);
        if (!strcmp(k, "help") || !strcmp(k, "?") ||
            (v && (!strcmp(v, "help") || !strcmp(v, "?"))))
            return true;
    }
    return false;
}

static int optdesc_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct dk_optdesc *const *)a)->name,
                  (*(const struct dk_optdesc *const *)b)->name);
}

int tool_print_create_help(const char *format)
{
    const struct dk_optdesc *d = dk_create_options(format);
    if (!d)
        return tool_fail("Unknown file format '%s'", format);
    size_t n = 0;
    while (d[n].name)
        n++;
    const struct dk_optdesc **sorted = calloc(n + 1, sizeof(*sorted));
    if (!sorted)
        return tool_fail("out of memory");
    for (size_t i = 0; i < n; i++)
        sorted[i] = &d[i];
    qsort(sorted, n, sizeof(*sorted), optdesc_cmp);
    static const char *const tnames[] = { "str", "size", "bool (on/off)", "num" };
    printf("Supported %s options:\n", format);
    for (size_t i = 0; i < n; i++) {
        char col[128];
        snprintf(col, sizeof(col), "%s=<%s>", sorted[i]->name, tnames[sorted[i]->type]);
        printf("  %-22s - %s\n", col, sorted[i]->help ? sorted[i]->help : "");
    }
    free(sorted);
    return 0;
}

void tool_print_snapshots(FILE *f, const struct dk_snapshot *s, size_t n)
{
    fprintf(f, "%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
            "VM CLOCK", "ICOUNT");
    for (size_t i = 0; i < n; i++) {
        char date[64] = "", clk[64], size[32], icount[32] = "";
        time_t t = (time_t)s[i].date_sec;
        struct tm tm;
        if (localtime_r(&t, &tm))
            strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
        uint64_t secs = s[i].vm_clock_nsec / 1000000000ull;
        snprintf(clk, sizeof(clk), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
                 (int)((secs / 60) % 60), (int)(secs % 60),
                 (int)((s[i].vm_clock_nsec / 1000000) % 1000));
        tool_human_size(size, sizeof(size), s[i].vm_state_size);
        if (s[i].icount != UINT64_MAX)
            snprintf(icount, sizeof(icount), "%llu", (unsigned long long)s[i].icount);
        fprintf(f, "%-9s %-17s %7s%20s%13s%11s\n", s[i].id ? s[i].id : "",
                s[i].name ? s[i].name : "", size, date, clk, icount);
    }
}
