/* vmdk-desc.c - the VMDK descriptor: a small text file (or a text area
 * inside a hosted sparse extent) naming the extents, the content IDs and
 * the parent of a differencing disk.
 *
 * Spec: "Virtual Disk Format 1.1", "The Descriptor File": header lines
 * (version, CID, parentCID, createType, parentFileNameHint), extent lines
 * `ACCESS SECTORS TYPE ["FILE" [OFFSET]]`, then the disk database (ddb.*).
 * Lines may end in CRLF; '#' starts a comment line. File names are quoted
 * and may contain spaces; there is no escaping (a '"' ends the name).
 *
 * The parser is stricter than qemu about extent lines (a malformed one is
 * an error naming the line, not skipped) and keeps the raw text, so a CID
 * update rewrites only the CID line and the ddb entries survive verbatim.
 * Known gaps: the "encoding" key is accepted but names are used as bytes.
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmdk.h"

#define MAX_NAME 4096   /* longest extent file name accepted */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Reads one word (non-blank run) into W (cap N). Returns the end or NULL. */
static const char *word(const char *p, const char *end, char *w, size_t n)
{
    size_t i = 0;
    while (p < end && *p != ' ' && *p != '\t') {
        if (i + 1 >= n)
            return NULL;
        w[i++] = *p++;
    }
    w[i] = '\0';
    return i ? p : NULL;
}

static int parse_type(struct vmdk_desc_extent *x, const char *t, int lineno,
                      struct dk_error *err)
{
    static const char *const unsupported[] = {
        "VMFSSPARSE", "SESPARSE", "VMFSRDM", "VMFSRAW", "VMFSDENSE", NULL };
    if (!strcmp(t, "FLAT")) {
        x->type = VMDK_EXT_FLAT, x->type_name = "FLAT";
    } else if (!strcmp(t, "VMFS")) {
        x->type = VMDK_EXT_FLAT, x->type_name = "VMFS";
    } else if (!strcmp(t, "SPARSE")) {
        x->type = VMDK_EXT_SPARSE, x->type_name = "SPARSE";
    } else if (!strcmp(t, "ZERO")) {
        x->type = VMDK_EXT_ZERO, x->type_name = "ZERO";
    } else {
        for (int i = 0; unsupported[i]; i++)
            if (!strcmp(t, unsupported[i]))
                return dk_error_set(err, -ENOTSUP,
                    "vmdk: descriptor line %d: extent type %s is not supported", lineno, t);
        return dk_error_set(err, -EINVAL,
                            "vmdk: descriptor line %d: unknown extent type '%s'", lineno, t);
    }
    return 0;
}

/* Parses the quoted name at P; returns the end or NULL. */
static const char *quoted(const char *p, const char *end, char **out)
{
    if (p >= end || *p != '"')
        return NULL;
    const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
    if (!q || q == p + 1 || q - p - 1 > MAX_NAME)
        return NULL;
    *out = strndup(p + 1, (size_t)(q - p - 1));
    return *out ? q + 1 : NULL;
}

static int parse_u64(const char *p, const char *end, const char **stop, uint64_t *v)
{
    uint64_t r = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9') {
        if (dk_mul_overflow(r, 10, &r) || dk_add_overflow(r, (uint64_t)(*p - '0'), &r))
            return -ERANGE;
        p++;
    }
    *stop = p;
    *v = r;
    return p == s ? -EINVAL : 0;
}

static int parse_extent(struct vmdk_desc *d, const char *p, const char *end, int lineno,
                        struct dk_error *err)
{
    struct vmdk_desc_extent x = { 0 };
    char acc[16], typ[16];
    const char *q;
    if (d->n_ext >= VMDK_MAX_EXTENTS)
        return dk_error_set(err, -EFBIG, "vmdk: descriptor has more than %d extents",
                            VMDK_MAX_EXTENTS);
    p = word(p, end, acc, sizeof(acc));
    x.access = !strcmp(acc, "RW") ? VMDK_RW : !strcmp(acc, "RDONLY") ? VMDK_RDONLY
                                                                     : VMDK_NOACCESS;
    p = skip_ws(p, end);
    int r = parse_u64(p, end, &q, &x.sectors);
    if (r == -ERANGE || (r == 0 && x.sectors > VMDK_MAX_SECTORS))
        return dk_error_set(err, -EFBIG, "vmdk: descriptor line %d: extent size too large",
                            lineno);
    if (r < 0 || x.sectors == 0 || q == end || (*q != ' ' && *q != '\t'))
        goto bad;
    p = skip_ws(q, end);
    if (!(p = word(p, end, typ, sizeof(typ))))
        goto bad;
    if ((r = parse_type(&x, typ, lineno, err)) < 0)
        return r;
    p = skip_ws(p, end);
    if (p < end) {
        if (!(p = quoted(p, end, &x.fname)))
            goto bad;
        p = skip_ws(p, end);
        if (p < end) {
            if (x.type != VMDK_EXT_FLAT || !strcmp(x.type_name, "VMFS") ||
                parse_u64(p, end, &q, &x.offset) < 0 || x.offset > VMDK_MAX_SECTORS)
                goto bad;
            if (skip_ws(q, end) != end)
                goto bad;
        } else if (!strcmp(x.type_name, "FLAT")) {
            goto bad;   /* qemu too requires the offset of a FLAT extent */
        }
    } else if (x.type != VMDK_EXT_ZERO) {
        goto bad;
    }
    if ((d->n_ext & (d->n_ext - 1)) == 0) {   /* grow at powers of two */
        void *n = realloc(d->ext, (d->n_ext ? d->n_ext * 2 : 1) * sizeof(*d->ext));
        if (!n) {
            free(x.fname);
            return dk_error_set(err, -ENOMEM, "out of memory");
        }
        d->ext = n;
    }
    d->ext[d->n_ext++] = x;
    return 0;
bad:
    free(x.fname);
    return dk_error_set(err, -EINVAL, "vmdk: descriptor line %d: invalid extent line", lineno);
}

static int set_str(char **dst, const char *v, size_t n)
{
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"')
        v++, n -= 2;
    free(*dst);
    *dst = strndup(v, n);
    return *dst ? 0 : -ENOMEM;
}

static int parse_hex32(const char *v, size_t n, uint32_t *out)
{
    uint64_t r = 0;
    if (n == 0 || n > 8)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int c = tolower((unsigned char)v[i]);
        if (!isxdigit(c))
            return -EINVAL;
        r = r * 16 + (uint64_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
    }
    *out = (uint32_t)r;
    return 0;
}

static int parse_kv(struct vmdk_desc *d, const char *p, const char *eq, const char *end,
                    int lineno, struct dk_error *err)
{
    const char *ke = eq;
    while (ke > p && (ke[-1] == ' ' || ke[-1] == '\t'))
        ke--;
    const char *v = skip_ws(eq + 1, end);
    size_t kl = (size_t)(ke - p), vl = (size_t)(end - v);
    int r = 0;
    if (kl == 3 && !memcmp(p, "CID", 3))
        r = parse_hex32(v, vl, &d->cid);
    else if (kl == 9 && !memcmp(p, "parentCID", 9))
        r = parse_hex32(v, vl, &d->parent_cid);
    else if (kl == 10 && !memcmp(p, "createType", 10))
        r = set_str(&d->create_type, v, vl);
    else if (kl == 18 && !memcmp(p, "parentFileNameHint", 18))
        r = set_str(&d->parent_hint, v, vl);
    if (r == -ENOMEM)
        return dk_error_set(err, r, "out of memory");
    if (r < 0)
        return dk_error_set(err, r, "vmdk: descriptor line %d: invalid value for %.*s",
                            lineno, (int)kl, p);
    return 0;
}

static bool is_extent_line(const char *p, const char *end)
{
    static const char *const acc[] = { "RW", "RDONLY", "NOACCESS" };
    for (size_t i = 0; i < DK_ARRAY_SIZE(acc); i++) {
        size_t n = strlen(acc[i]);
        if ((size_t)(end - p) > n && !memcmp(p, acc[i], n) && (p[n] == ' ' || p[n] == '\t'))
            return true;
    }
    return false;
}

static int parse_line(struct vmdk_desc *d, const char *p, const char *end, int lineno,
                      struct dk_error *err)
{
    while (end > p && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    p = skip_ws(p, end);
    if (p == end || *p == '#')
        return 0;
    if (is_extent_line(p, end))
        return parse_extent(d, p, end, lineno, err);
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (eq && eq > p)
        return parse_kv(d, p, eq, end, lineno, err);
    return dk_error_set(err, -EINVAL, "vmdk: descriptor line %d: cannot parse '%.40s'",
                        lineno, p);
}

int vmdk_desc_parse(struct vmdk_desc *d, const char *text, size_t len, struct dk_error *err)
{
    memset(d, 0, sizeof(*d));
    d->cid = d->parent_cid = UINT32_MAX;
    len = strnlen(text, len);   /* an embedded descriptor is NUL padded */
    if (len > VMDK_MAX_DESC_BYTES)
        return dk_error_set(err, -EFBIG, "vmdk: descriptor larger than %u bytes",
                            VMDK_MAX_DESC_BYTES);
    if (!(d->text = strndup(text, len)))
        return dk_error_set(err, -ENOMEM, "out of memory");
    d->len = len;
    const char *p = d->text, *end = d->text + len;
    int lineno = 1, r = 0;
    while (p < end && r == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        r = parse_line(d, p, le, lineno++, err);
        p = nl ? nl + 1 : end;
    }
    uint64_t total = 0;
    for (size_t i = 0; r == 0 && i < d->n_ext; i++)
        if (dk_add_overflow(total, d->ext[i].sectors, &total) || total > VMDK_MAX_SECTORS)
            r = dk_error_set(err, -EFBIG, "vmdk: descriptor: extents add up to more than "
                             "%llu sectors", (unsigned long long)VMDK_MAX_SECTORS);
    if (r < 0)
        vmdk_desc_free(d);
    return r;
}

void vmdk_desc_free(struct vmdk_desc *d)
{
    for (size_t i = 0; i < d->n_ext; i++)
        free(d->ext[i].fname);
    free(d->ext);
    free(d->text);
    free(d->create_type);
    free(d->parent_hint);
    memset(d, 0, sizeof(*d));
}

char *vmdk_desc_with_cid(const struct vmdk_desc *d, uint32_t cid, size_t *len)
{
    const char *p = d->text, *end = d->text + d->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *s = skip_ws(p, le);
        if (le - s > 4 && !memcmp(s, "CID", 3) && skip_ws(s + 3, le) < le &&
            *skip_ws(s + 3, le) == '=') {
            const char *v = skip_ws(skip_ws(s + 3, le) + 1, le);
            const char *ve = v;
            while (ve < le && isxdigit((unsigned char)*ve))
                ve++;
            /* Unpadded hex, as qemu writes it. */
            char hex[9];
            size_t hl = (size_t)snprintf(hex, sizeof(hex), "%" PRIx32, cid);
            size_t head = (size_t)(v - d->text), tail = (size_t)(end - ve);
            char *out = malloc(head + hl + tail + 1);
            if (!out)
                return NULL;
            memcpy(out, d->text, head);
            memcpy(out + head, hex, hl);
            memcpy(out + head + hl, ve, tail);
            out[head + hl + tail] = '\0';
            *len = head + hl + tail;
            return out;
        }
        p = nl ? nl + 1 : end;
    }
    return NULL;
}

char *vmdk_desc_generate(const struct vmdk_desc_gen *g, const char *extent_lines)
{
    int heads = !strcmp(g->adapter, "ide") ? 16 : 255;
    uint64_t cyl = g->total_sectors / (63u * (uint64_t)heads);
    char hint[MAX_NAME + 32] = "";
    if (g->parent_hint)
        snprintf(hint, sizeof(hint), "parentFileNameHint=\"%s\"\n", g->parent_hint);
    char *out = NULL;
    int n = asprintf(&out,
        "# Disk DescriptorFile\n"
        "version=1\n"
        "CID=%" PRIx32 "\n"
        "parentCID=%" PRIx32 "\n"
        "createType=\"%s\"\n"
        "%s"
        "\n"
        "# Extent description\n"
        "%s"
        "\n"
        "# The Disk Data Base\n"
        "#DDB\n"
        "\n"
        "ddb.virtualHWVersion = \"%s\"\n"
        "ddb.geometry.cylinders = \"%" PRIu64 "\"\n"
        "ddb.geometry.heads = \"%d\"\n"
        "ddb.geometry.sectors = \"63\"\n"
        "ddb.adapterType = \"%s\"\n"
        "ddb.toolsVersion = \"%s\"\n",
        g->cid, g->parent_cid, g->create_type, hint, extent_lines, g->hw_version,
        cyl, heads, g->adapter, g->tools_version);
    return n < 0 ? NULL : out;
}

/* ------------------------------------------------------------ grow */

/* Value of `KEY = "VALUE"` (quotes optional) in the text of D, as a
 * number; DEF when absent or not a number. */
static uint64_t ddb_number(const struct vmdk_desc *d, const char *key, uint64_t def)
{
    const char *p = d->text, *end = d->text + d->len;
    size_t kl = strlen(key);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *s = skip_ws(p, le);
        if ((size_t)(le - s) > kl && !memcmp(s, key, kl)) {
            const char *v = skip_ws(s + kl, le), *stop;
            uint64_t n;
            if (v < le && *v == '=') {
                v = skip_ws(v + 1, le);
                v += v < le && *v == '"';
                return parse_u64(v, le, &stop, &n) == 0 && n ? n : def;
            }
        }
        p = nl ? nl + 1 : end;
    }
    return def;
}

/* True when the line at S (trimmed, ending at LE) sets KEY. */
static bool line_key_is(const char *s, const char *le, const char *key)
{
    size_t kl = strlen(key);
    if ((size_t)(le - s) <= kl || memcmp(s, key, kl))
        return false;
    const char *v = skip_ws(s + kl, le);
    return v < le && *v == '=';
}

/* Writes line [S, LE) of an extent line with its sectors set to SECTORS. */
static void put_extent_sectors(FILE *out, const char *p, const char *le, uint64_t sectors)
{
    const char *s = skip_ws(p, le);
    while (s < le && *s != ' ' && *s != '\t')
        s++;
    s = skip_ws(s, le);
    const char *e = s;
    while (e < le && *e >= '0' && *e <= '9')
        e++;
    fprintf(out, "%.*s%" PRIu64 "%.*s", (int)(s - p), p, sectors, (int)(le - e), e);
}

char *vmdk_desc_grown(const struct vmdk_desc *d, uint32_t cid, uint64_t last_sectors,
                      const char *new_lines, uint64_t total, size_t *len)
{
    /* The geometry the descriptor already gives (qemu-img create: 63
     * sectors, 16 heads for ide adapters, else 255). */
    uint64_t heads = ddb_number(d, "ddb.geometry.heads", 16);
    uint64_t secs = ddb_number(d, "ddb.geometry.sectors", 63);
    if (heads > 255)   /* CHS limits: also keeps heads * secs from wrapping */
        heads = 16;
    if (secs > 63)
        secs = 63;
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (!out)
        return NULL;
    const char *p = d->text, *end = d->text + d->len;
    size_t ext = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end, *s = skip_ws(p, le);
        bool cr = le > p && le[-1] == '\r';
        const char *eol = cr ? "\r\n" : "\n", *body_end = cr ? le - 1 : le;
        if (is_extent_line(s, body_end) && ++ext == d->n_ext) {
            put_extent_sectors(out, p, body_end, last_sectors);
            fputs(eol, out);
            for (const char *q = new_lines; q && *q;) {
                const char *qe = strchr(q, '\n');
                fprintf(out, "%.*s%s", (int)(qe - q), q, eol);
                q = qe + 1;
            }
        } else if (line_key_is(s, body_end, "CID")) {
            fprintf(out, "%.*sCID=%" PRIx32 "%s", (int)(s - p), p, cid, eol);
        } else if (line_key_is(s, body_end, "ddb.geometry.cylinders")) {
            fprintf(out, "%.*sddb.geometry.cylinders = \"%" PRIu64 "\"%s", (int)(s - p), p,
                    total / (heads * secs), eol);
        } else {
            fwrite(p, 1, (size_t)(le - p) + (nl ? 1 : 0), out);
        }
        p = nl ? nl + 1 : end;
    }
    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}
