/* qcow2-crypt.c - qcow2 encryption: LUKS (crypt_method 2) and legacy AES
 * (crypt_method 1) on top of lib/crypto.h. Opens and unlocks, encrypts and
 * decrypts guest data on its way to and from the host file, creates the
 * LUKS area at create time and describes it for info.
 *
 * Spec: qemu docs/interop/qcow2.txt "Full disk encryption header pointer"
 * and "Data encryption"; FORMATS.md section 2 "Encryption".
 *  - Metadata is never encrypted; only guest data clusters are.
 *  - LUKS: the FDE header extension (u64 offset, u64 length) points at
 *    cluster-aligned space holding a LUKS1 header and its key material;
 *    the IV is the HOST offset's 512-byte sector number.
 *  - AES: AES-128-CBC, IV = plain64 of the GUEST sector, key from the
 *    passphrase (lib/crypto-sector.c dk_qcow_aes_new).
 *
 * Without a secret an encrypted image still opens (info, check, map work,
 * like qemu-img info); reading or writing guest data then fails with a
 * message saying how to give the passphrase. A wrong passphrase fails the
 * open with -EACCES, as qemu does. Compressed clusters are never written
 * to encrypted images (qemu does not either): data goes in plain clusters.
 *
 * Key slot changes (amend -o encrypt.state=...) are in qcow2-crypt-amend.c.
 *
 * Known gaps: preallocation other than off on encrypted images.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "qcow2.h"

#define QCOW2_CRYPT_AES   1u
#define QCOW2_CRYPT_LUKS  2u
/* Bounce buffer for encrypting writes: bounds memory for huge requests. */
#define CRYPT_CHUNK (1u << 20)

struct qcow2_crypt {
    uint32_t method;
    uint64_t fde_off, fde_len;        /* LUKS area (method 2) */
    struct dk_luks_header luks;       /* decoded header, for info */
    struct dk_sector_cipher *cipher;  /* NULL: no secret given */
};

const char qcow2_no_key_msg[] = "image is encrypted: give the passphrase with "
                                "--object secret,... or --passphrase-file";

/* ------------------------------------------------------------------ open */

static const struct qcow2_ext *fde_ext(const struct qcow2_state *s)
{
    for (size_t i = 0; i < s->n_exts; i++)
        if (s->exts[i].type == QCOW2_EXT_CRYPTO)
            return &s->exts[i];
    return NULL;
}

/* Reads the LUKS area of the FDE extension, validates it and, with a
 * secret, unlocks it. */
static int open_luks(struct dk_image *img, struct qcow2_crypt *c, uint64_t fsize)
{
    struct qcow2_state *s = img->priv;
    const struct qcow2_ext *e = fde_ext(s);
    if (!e)
        return dk_set_error(img, -EINVAL, "qcow2: LUKS encryption without a crypto header "
                            "extension");
    if (e->len != 16)
        return dk_set_error(img, -EINVAL, "qcow2: crypto header extension has %u bytes, "
                            "expected 16", e->len);
    c->fde_off = dk_be64(e->data);
    c->fde_len = dk_be64(e->data + 8);
    if (!dk_is_aligned(c->fde_off, s->cluster_size) || c->fde_off < s->cluster_size)
        return dk_set_error(img, -EINVAL, "qcow2: crypto header offset 0x%llx is not a "
                            "cluster-aligned offset past the header",
                            (unsigned long long)c->fde_off);
    if (c->fde_len < DK_LUKS_PHDR_SIZE || c->fde_len > DK_LUKS_MAX_AREA ||
        !dk_range_inside(c->fde_off, c->fde_len, fsize))
        return dk_set_error(img, -EINVAL, "qcow2: crypto header at 0x%llx (%llu bytes) is "
                            "too small, too large or beyond end of file",
                            (unsigned long long)c->fde_off, (unsigned long long)c->fde_len);
    uint8_t *area = malloc(c->fde_len);
    if (!area)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    struct dk_error err = { 0 };
    int r = dk_file_pread(img->file, area, c->fde_len, c->fde_off);
    if (r < 0)
        dk_set_error(img, r, "qcow2: reading the crypto header: %s", strerror(-r));
    else if ((r = dk_luks_decode(area, c->fde_len, c->fde_len, &c->luks, &err)) < 0)
        dk_set_error(img, r, "qcow2: %s", err.msg);
    struct dk_luks *l = NULL;
    if (r >= 0 && img->secret &&
        (r = dk_luks_unlock(area, c->fde_len, img->secret, img->secret_len, &l, &err)) < 0)
        dk_set_error(img, r, "%s", err.msg);   /* qemu's words for -EACCES */
    if (l) {
        c->cipher = l->cipher;   /* keep the payload cipher, wipe the rest */
        l->cipher = NULL;
        dk_luks_free(l);
    }
    free(area);
    return r;
}

int qcow2_crypt_open(struct dk_image *img, uint64_t fsize)
{
    struct qcow2_state *s = img->priv;
    uint32_t m = s->hdr.crypt_method;
    if (m == 0) {
        if (fde_ext(s))
            return dk_set_error(img, -EINVAL, "qcow2: crypto header extension present but "
                                "the image is not LUKS-encrypted");
        return 0;
    }
    struct qcow2_crypt *c = calloc(1, sizeof(*c));
    if (!c)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    s->crypt = c;
    c->method = m;
    if (m == QCOW2_CRYPT_LUKS)
        return open_luks(img, c, fsize);
    if (fde_ext(s))
        return dk_set_error(img, -EINVAL, "qcow2: crypto header extension present but "
                            "the image is not LUKS-encrypted");
    struct dk_error err = { 0 };
    int r = img->secret ? dk_qcow_aes_new(&c->cipher, img->secret, img->secret_len, &err) : 0;
    return r < 0 ? dk_set_error(img, r, "qcow2: %s", err.msg) : 0;
}

void qcow2_crypt_close(struct qcow2_state *s)
{
    if (!s->crypt)
        return;
    dk_sector_cipher_free(s->crypt->cipher);
    explicit_bzero(s->crypt, sizeof(*s->crypt));
    free(s->crypt);
    s->crypt = NULL;
}

bool qcow2_crypt_has_key(const struct qcow2_state *s)
{
    return !s->crypt || s->crypt->cipher;
}

bool qcow2_crypt_area(const struct qcow2_state *s, uint64_t *off, uint64_t *len)
{
    if (!s->crypt || s->crypt->method != QCOW2_CRYPT_LUKS)
        return false;
    *off = s->crypt->fde_off;
    *len = s->crypt->fde_len;
    return true;
}

void qcow2_crypt_set_header(struct qcow2_state *s, const struct dk_luks_header *h)
{
    if (s->crypt && s->crypt->method == QCOW2_CRYPT_LUKS)
        s->crypt->luks = *h;
}

/* ------------------------------------------------------------- data I/O */

/* First sector of the IV: host sector for LUKS, guest sector for AES. */
static uint64_t iv_sector(const struct qcow2_crypt *c, uint64_t host, uint64_t guest)
{
    return (c->method == QCOW2_CRYPT_LUKS ? host : guest) / DK_SECTOR_SIZE;
}

/* Reads and decrypts the whole sectors [HOST, HOST+LEN) (aligned). */
static int read_sectors(struct dk_image *img, uint8_t *buf, size_t len, uint64_t host,
                        uint64_t guest)
{
    struct qcow2_crypt *c = ((struct qcow2_state *)img->priv)->crypt;
    int r = dk_file_pread_eof0(img->file, buf, len, host);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: read: %s", strerror(-r));
    r = dk_sector_decrypt(c->cipher, buf, len, iv_sector(c, host, guest));
    return r < 0 ? dk_set_error(img, r, "qcow2: decryption failed") : 0;
}

int qcow2_data_pread(struct dk_image *img, void *buf, size_t n, uint64_t host, uint64_t guest)
{
    struct qcow2_crypt *c = ((struct qcow2_state *)img->priv)->crypt;
    if (!c) {
        int r = dk_file_pread_eof0(img->file, buf, n, host);
        return r < 0 ? dk_set_error(img, r, "qcow2: read: %s", strerror(-r)) : 0;
    }
    if (!c->cipher)
        return dk_set_error(img, -EACCES, "%s", qcow2_no_key_msg);
    if (dk_is_aligned(host | n, DK_SECTOR_SIZE))
        return read_sectors(img, buf, n, host, guest);
    /* Guest and host offsets share their in-cluster (so in-sector) part. */
    uint64_t head = host % DK_SECTOR_SIZE;
    size_t span = (size_t)dk_round_up(head + n, DK_SECTOR_SIZE);
    uint8_t *tmp = malloc(span);
    if (!tmp)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    int r = read_sectors(img, tmp, span, host - head, guest - head);
    if (r >= 0)
        memcpy(buf, tmp + head, n);
    explicit_bzero(tmp, span);
    free(tmp);
    return r;
}

/* Encrypts a copy of whole sectors and writes it. */
static int write_sectors(struct dk_image *img, uint8_t *tmp, const uint8_t *buf, size_t len,
                         uint64_t host, uint64_t guest)
{
    struct qcow2_crypt *c = ((struct qcow2_state *)img->priv)->crypt;
    if (buf)
        memcpy(tmp, buf, len);
    int r = dk_sector_encrypt(c->cipher, tmp, len, iv_sector(c, host, guest));
    if (r < 0)
        return dk_set_error(img, r, "qcow2: encryption failed");
    r = dk_file_pwrite(img->file, tmp, len, host);
    return r < 0 ? dk_set_error(img, r, "qcow2: write at 0x%llx: %s",
                                (unsigned long long)host, strerror(-r)) : 0;
}

/* Unaligned write: read-modify-write of the sectors it touches. */
static int write_rmw(struct dk_image *img, const uint8_t *buf, size_t n, uint64_t host,
                     uint64_t guest)
{
    uint64_t head = host % DK_SECTOR_SIZE;
    size_t span = (size_t)dk_round_up(head + n, DK_SECTOR_SIZE);
    uint8_t *tmp = malloc(span);
    if (!tmp)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    int r = read_sectors(img, tmp, span, host - head, guest - head);
    if (r >= 0) {
        memcpy(tmp + head, buf, n);
        r = write_sectors(img, tmp, NULL, span, host - head, guest - head);
    }
    explicit_bzero(tmp, span);
    free(tmp);
    return r;
}

int qcow2_data_pwrite(struct dk_image *img, const void *buf, size_t n, uint64_t host,
                      uint64_t guest)
{
    struct qcow2_crypt *c = ((struct qcow2_state *)img->priv)->crypt;
    if (!c) {
        int r = dk_file_pwrite(img->file, buf, n, host);
        return r < 0 ? dk_set_error(img, r, "qcow2: write at 0x%llx: %s",
                                    (unsigned long long)host, strerror(-r)) : 0;
    }
    if (!c->cipher)
        return dk_set_error(img, -EACCES, "%s", qcow2_no_key_msg);
    if (!dk_is_aligned(host | n, DK_SECTOR_SIZE))
        return write_rmw(img, buf, n, host, guest);
    size_t chunk = DK_MIN(n, (size_t)CRYPT_CHUNK);
    uint8_t *tmp = malloc(chunk);
    if (!tmp)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    int r = 0;
    for (size_t done = 0; r >= 0 && done < n; done += chunk) {
        size_t k = DK_MIN(chunk, n - done);
        r = write_sectors(img, tmp, (const uint8_t *)buf + done, k, host + done, guest + done);
    }
    free(tmp);   /* holds ciphertext only */
    return r;
}

/* ------------------------------------------------------------------ info */

static bool add_slots(struct dk_val *enc, const struct dk_luks_header *h)
{
    struct dk_val *list = dk_val_add_list(enc, "slots");
    bool ok = list != NULL;
    for (int i = 0; ok && i < DK_LUKS_NUM_SLOTS; i++) {
        const struct dk_luks_slot *k = &h->slots[i];
        bool on = k->active == DK_LUKS_SLOT_ACTIVE;
        struct dk_val *o = dk_val_add_obj(list, NULL);
        ok = o && dk_val_add_bool(o, "active", on);
        if (ok && on)
            ok = dk_val_add_uint(o, "iters", k->iterations) &&
                 dk_val_add_uint(o, "key-offset", (uint64_t)k->key_offset * DK_SECTOR_SIZE) &&
                 dk_val_add_uint(o, "stripes", k->stripes);
        else if (ok)
            ok = dk_val_add_uint(o, "key-offset", (uint64_t)k->key_offset * DK_SECTOR_SIZE);
    }
    return ok;
}

/* Adds "encrypt" to the format-specific DATA object, with qemu-img's keys
 * (QAPI QCryptoBlockInfoLUKS). Returns false on ENOMEM. */
bool qcow2_crypt_info(struct dk_image *img, struct dk_val *data)
{
    struct qcow2_crypt *c = ((struct qcow2_state *)img->priv)->crypt;
    if (!c)
        return true;
    struct dk_val *e = dk_val_add_obj(data, "encrypt");
    if (!e)
        return false;
    if (c->method != QCOW2_CRYPT_LUKS)
        return dk_val_add_str(e, "format", "aes") != NULL;
    const struct dk_luks_header *h = &c->luks;
    const struct dk_cipher_spec *sp = &h->spec;
    bool ok = dk_val_add_str(e, "ivgen-alg", dk_ivgen_name(sp->ivgen));
    if (ok && sp->ivgen == DK_IVGEN_ESSIV)
        ok = dk_val_add_str(e, "ivgen-hash-alg", dk_hash_name(sp->ivgen_hash));
    return ok && dk_val_add_str(e, "hash-alg", dk_hash_name(h->hash)) &&
           dk_val_add_str(e, "cipher-alg", dk_cipher_alg_name(sp->alg)) &&
           dk_val_add_str(e, "uuid", h->uuid) && dk_val_add_str(e, "format", "luks") &&
           dk_val_add_str(e, "cipher-mode", dk_cipher_mode_name(sp->mode)) &&
           add_slots(e, h) &&
           dk_val_add_uint(e, "payload-offset", (uint64_t)h->payload_offset * DK_SECTOR_SIZE) &&
           dk_val_add_uint(e, "master-key-iters", h->mk_digest_iter);
}

/* ---------------------------------------------------------------- create */

static int bad_opt(struct dk_error *err, const char *key, const char *v)
{
    return dk_error_set(err, -EINVAL, "qcow2: invalid value '%s' for %s", v, key);
}

/* LUKS parameters from the encrypt.* options (qemu's defaults). */
static int parse_luks(const struct dk_opts *o, struct dk_luks_create_params *lp,
                      struct dk_error *err)
{
    const char *v;
    *lp = (struct dk_luks_create_params){
        .spec = { DK_CIPHER_AES_256, DK_CMODE_XTS, DK_IVGEN_PLAIN64, DK_HASH_SHA256 },
        .hash = DK_HASH_SHA256, .iter_time_ms = 2000,
    };
    if ((v = dk_opts_get(o, "encrypt.cipher-alg")) && dk_cipher_alg_parse(v, &lp->spec.alg))
        return bad_opt(err, "encrypt.cipher-alg", v);
    if ((v = dk_opts_get(o, "encrypt.cipher-mode")) && dk_cipher_mode_parse(v, &lp->spec.mode))
        return bad_opt(err, "encrypt.cipher-mode", v);
    if ((v = dk_opts_get(o, "encrypt.ivgen-alg")) && dk_ivgen_parse(v, &lp->spec.ivgen))
        return bad_opt(err, "encrypt.ivgen-alg", v);
    if ((v = dk_opts_get(o, "encrypt.ivgen-hash-alg")) &&
        dk_hash_parse(v, &lp->spec.ivgen_hash))
        return bad_opt(err, "encrypt.ivgen-hash-alg", v);
    if ((v = dk_opts_get(o, "encrypt.hash-alg")) && dk_hash_parse(v, &lp->hash))
        return bad_opt(err, "encrypt.hash-alg", v);
    if ((v = dk_opts_get(o, "encrypt.iter-time"))) {
        char *end;
        unsigned long ms = strtoul(v, &end, 10);
        if (*end || !*v || ms == 0 || ms > 3600000)
            return bad_opt(err, "encrypt.iter-time", v);
        lp->iter_time_ms = (uint32_t)ms;
    }
    size_t klen = dk_cipher_alg_key_len(lp->spec.alg) * (lp->spec.mode == DK_CMODE_XTS ? 2 : 1);
    struct dk_error e = { 0 };
    int r = dk_sector_cipher_check(&lp->spec, klen, &e);
    return r < 0 ? dk_error_set(err, r, "qcow2: %s", e.msg) : 0;
}

int qcow2_crypt_parse(const struct dk_create_ctx *ctx, const char *prealloc,
                      struct qcow2_crypt_params *p)
{
    const struct dk_opts *o = ctx->opts;
    const char *fmt = dk_opts_get(o, "encrypt.format");
    const char *old = dk_opts_get(o, "encryption");
    memset(p, 0, sizeof(*p));
    if (!fmt && old && dk_parse_bool(old) == 1)
        fmt = "aes";
    static const char *const luks_only[] = {
        "encrypt.cipher-alg", "encrypt.cipher-mode", "encrypt.ivgen-alg",
        "encrypt.ivgen-hash-alg", "encrypt.hash-alg", "encrypt.iter-time",
    };
    if (!fmt) {
        if (dk_opts_get(o, "encrypt.key-secret"))
            return dk_error_set(ctx->err, -EINVAL, "qcow2: encrypt.key-secret needs "
                                "encrypt.format (luks or aes)");
        return 0;
    }
    if (!strcmp(fmt, "luks"))
        p->method = QCOW2_CRYPT_LUKS;
    else if (!strcmp(fmt, "aes"))
        p->method = QCOW2_CRYPT_AES;
    else
        return dk_error_set(ctx->err, -EINVAL, "qcow2: invalid encrypt.format '%s' (use luks "
                            "or aes)", fmt);
    for (size_t i = 0; p->method == QCOW2_CRYPT_AES && i < DK_ARRAY_SIZE(luks_only); i++)
        if (dk_opts_get(o, luks_only[i]))
            return dk_error_set(ctx->err, -EINVAL, "qcow2: %s is only valid with "
                                "encrypt.format=luks", luks_only[i]);
    if (!ctx->secret)
        return dk_error_set(ctx->err, -EINVAL, "qcow2: an encrypted image needs a passphrase: "
                            "give --object secret,id=ID,... with encrypt.key-secret=ID, or "
                            "--passphrase-file");
    if (prealloc && strcmp(prealloc, "off"))
        return dk_error_set(ctx->err, -ENOTSUP, "qcow2: preallocation=%s is not supported "
                            "with encryption", prealloc);
    return p->method == QCOW2_CRYPT_LUKS ? parse_luks(o, &p->luks, ctx->err) : 0;
}

int qcow2_crypt_measure(const struct dk_opts *opts, uint64_t cs, uint64_t *bytes,
                        struct dk_error *err)
{
    const char *fmt = dk_opts_get(opts, "encrypt.format");
    *bytes = 0;
    if (!fmt || strcmp(fmt, "luks"))
        return 0;
    struct dk_luks_create_params lp;
    int r = parse_luks(opts, &lp, err);
    if (r < 0)
        return r;
    /* dk_luks_create's layout: 8 header sectors, 8 slots of key-bytes *
     * 4000 rounded up to 4 KiB. */
    uint64_t kb = dk_cipher_alg_key_len(lp.spec.alg) * (lp.spec.mode == DK_CMODE_XTS ? 2 : 1);
    uint64_t area = 4096 + DK_LUKS_NUM_SLOTS * dk_round_up(kb * DK_LUKS_STRIPES, 4096);
    *bytes = dk_round_up(area, cs);
    return 0;
}

/* Inserts the FDE extension first, where qemu writes it. */
static int insert_fde_ext(struct dk_image *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = img->priv;
    if (s->n_exts >= QCOW2_MAX_EXTS)
        return dk_set_error(img, -EINVAL, "qcow2: too many header extensions");
    struct qcow2_ext *x = realloc(s->exts, (s->n_exts + 1) * sizeof(*x));
    if (!x)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    s->exts = x;
    uint8_t *d = malloc(16);
    if (!d)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    dk_put_be64(d, off);
    dk_put_be64(d + 8, len);
    memmove(x + 1, x, s->n_exts * sizeof(*x));
    x[0] = (struct qcow2_ext){ .type = QCOW2_EXT_CRYPTO, .len = 16, .data = d };
    s->n_exts++;
    return 0;
}

/* Makes the LUKS area, stores it in new clusters and points the header
 * extension at it. */
static int create_luks(struct dk_image *img, const struct qcow2_crypt_params *p,
                       struct qcow2_crypt *c, const struct dk_create_ctx *ctx)
{
    struct qcow2_state *s = img->priv;
    uint8_t *area = NULL;
    size_t alen = 0;
    struct dk_luks *l = NULL;
    struct dk_error e = { 0 };
    int r = dk_luks_create(&p->luks, ctx->secret, ctx->secret_len, &area, &alen, &l, &e);
    if (r < 0)
        return dk_set_error(img, r, "qcow2: %s", e.msg);
    uint64_t off;
    r = qcow2_alloc_clusters(img, dk_div_round_up(alen, s->cluster_size), &off);
    if (r >= 0 && (r = dk_file_pwrite(img->file, area, alen, off)) < 0)
        dk_set_error(img, r, "qcow2: writing the LUKS header: %s", strerror(-r));
    if (r >= 0)
        r = insert_fde_ext(img, off, alen);
    if (r >= 0 && (r = dk_luks_decode(area, alen, alen, &c->luks, &e)) < 0)
        dk_set_error(img, r, "qcow2: %s", e.msg);
    c->fde_off = off;
    c->fde_len = alen;
    c->cipher = l->cipher;
    l->cipher = NULL;
    dk_luks_free(l);
    free(area);
    return r;
}

int qcow2_crypt_create(struct dk_image *img, const struct qcow2_crypt_params *p,
                       const struct dk_create_ctx *ctx)
{
    struct qcow2_state *s = img->priv;
    if (!p->method)
        return 0;
    struct qcow2_crypt *c = calloc(1, sizeof(*c));
    if (!c)
        return dk_set_error(img, -ENOMEM, "qcow2: out of memory");
    qcow2_crypt_close(s);
    s->crypt = c;
    c->method = p->method;
    struct dk_error e = { 0 };
    int r = p->method == QCOW2_CRYPT_LUKS ? create_luks(img, p, c, ctx)
            : dk_qcow_aes_new(&c->cipher, ctx->secret, ctx->secret_len, &e);
    if (r < 0)
        return e.code ? dk_set_error(img, r, "qcow2: %s", e.msg) : r;
    s->hdr.crypt_method = p->method;
    s->encrypted = true;
    if ((r = qcow2_flush_all(img, true)) < 0)
        return r;
    return qcow2_header_write(img);
}
