/* codec.c - zlib (raw deflate and zlib streams) and zstd compression of
 * whole clusters. See codec.h for the formats.
 *
 * Speed: each thread keeps its own deflate/inflate streams and zstd
 * contexts (struct codec_ctx, freed at thread exit by a pthread key
 * destructor) and resets them per call instead of allocating and
 * initialising them per cluster; the copy engine calls these from its
 * workers for every cluster. Nothing is shared between threads.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "codec.h"

/* qemu's qcow2 writer: raw deflate, window bits 12, memLevel 9. */
#define QCOW2_WINDOW_BITS (-12)

/* Per-thread codec state. DEF_KEY names how DEF was set up (0: not). */
struct codec_ctx {
    z_stream def, inf;
    int def_key;
    bool inf_ok;
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
};

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static bool ctx_key_ok;

static void ctx_free(void *opaque)
{
    struct codec_ctx *c = opaque;
    if (c->def_key)
        deflateEnd(&c->def);
    if (c->inf_ok)
        inflateEnd(&c->inf);
    ZSTD_freeCCtx(c->zc);
    ZSTD_freeDCtx(c->zd);
    free(c);
}

static void ctx_key_init(void)
{
    ctx_key_ok = pthread_key_create(&ctx_key, ctx_free) == 0;
}

/* This thread's codec state, created on first use; NULL without memory. */
static struct codec_ctx *ctx_get(void)
{
    pthread_once(&ctx_once, ctx_key_init);
    if (!ctx_key_ok)
        return NULL;
    struct codec_ctx *c = pthread_getspecific(ctx_key);
    if (c)
        return c;
    if (!(c = calloc(1, sizeof(*c))))
        return NULL;
    if (pthread_setspecific(ctx_key, c) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

/* Deflate stream for (RAW, LEVEL), reset or set up anew. */
static z_stream *deflater(struct codec_ctx *c, int raw, int level)
{
    int key = (raw << 8) | (level + 2);   /* level is -1..9: key never 0 */
    if (c->def_key == key)
        return deflateReset(&c->def) == Z_OK ? &c->def : NULL;
    if (c->def_key)
        deflateEnd(&c->def);
    c->def_key = 0;
    memset(&c->def, 0, sizeof(c->def));
    if (deflateInit2(&c->def, level, Z_DEFLATED, raw ? QCOW2_WINDOW_BITS : 15, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    c->def_key = key;
    return &c->def;
}

static ssize_t zlib_compress(int raw, int level, const void *in, size_t in_len,
                             void *out, size_t cap)
{
    struct codec_ctx *c = ctx_get();
    z_stream *s = c ? deflater(c, raw, level ? level : Z_DEFAULT_COMPRESSION) : NULL;
    if (!s)
        return -ENOMEM;
    s->next_in = (Bytef *)in;
    s->avail_in = (uInt)in_len;
    s->next_out = out;
    s->avail_out = (uInt)cap;
    int r = deflate(s, Z_FINISH);
    size_t n = cap - s->avail_out;
    if (r == Z_STREAM_END)
        return (ssize_t)n;
    return r == Z_OK || r == Z_BUF_ERROR ? 0 : -EIO;
}

static ssize_t zlib_decompress(int raw, const void *in, size_t in_len, void *out,
                               size_t out_len, size_t *consumed)
{
    struct codec_ctx *c = ctx_get();
    if (!c)
        return -ENOMEM;
    int wbits = raw ? QCOW2_WINDOW_BITS : 15;
    z_stream *s = &c->inf;
    if (c->inf_ok && inflateReset2(s, wbits) != Z_OK) {
        inflateEnd(s);
        c->inf_ok = false;
    }
    if (!c->inf_ok) {
        memset(s, 0, sizeof(*s));
        if (inflateInit2(s, wbits) != Z_OK)
            return -ENOMEM;
        c->inf_ok = true;
    }
    s->next_in = (Bytef *)in;
    s->avail_in = (uInt)in_len;
    s->next_out = out;
    s->avail_out = (uInt)out_len;
    int r = inflate(s, Z_FINISH);
    size_t produced = out_len - s->avail_out;
    if (consumed)
        *consumed = in_len - s->avail_in;
    /* A full output buffer is success even if the stream continues: qcow2
     * readers stop once a whole cluster is produced. */
    if (r == Z_STREAM_END || produced == out_len)
        return (ssize_t)produced;
    return -EIO;
}

static ssize_t zstd_decompress(const void *in, size_t in_len, void *out, size_t out_len,
                               size_t *consumed)
{
    struct codec_ctx *c = ctx_get();
    if (c && !c->zd)
        c->zd = ZSTD_createDCtx();
    if (!c || !c->zd)
        return -ENOMEM;
    ZSTD_DCtx *d = c->zd;
    ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    ZSTD_inBuffer ib = { in, in_len, 0 };
    ZSTD_outBuffer ob = { out, out_len, 0 };
    /* Frames may follow each other; stop at a full buffer or the end of
     * the input. Trailing garbage after a complete frame is tolerated. */
    while (ob.pos < ob.size && ib.pos < ib.size) {
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r)) {
            if (ob.pos > 0 && r && ib.pos > 0)
                break;
            return -EIO;
        }
        if (r == 0 && ob.pos < ob.size && ib.pos < ib.size)
            continue;   /* frame done, another may follow */
        if (r != 0 && ib.pos == ib.size)
            break;      /* truncated frame */
    }
    if (consumed)
        *consumed = ib.pos;
    return (ssize_t)ob.pos;
}

static ssize_t zstd_compress(int level, const void *in, size_t in_len, void *out, size_t cap)
{
    struct codec_ctx *c = ctx_get();
    if (c && !c->zc)
        c->zc = ZSTD_createCCtx();
    if (!c || !c->zc)
        return -ENOMEM;
    size_t r = ZSTD_compressCCtx(c->zc, out, cap, in, in_len,
                                 level ? level : ZSTD_CLEVEL_DEFAULT);
    if (ZSTD_isError(r))
        return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? 0 : -EIO;
    return (ssize_t)r;
}

ssize_t dk_compress(enum dk_codec c, int level, const void *in, size_t in_len,
                    void *out, size_t cap)
{
    switch (c) {
    case DK_CODEC_DEFLATE_RAW:
        return zlib_compress(1, level, in, in_len, out, cap);
    case DK_CODEC_ZLIB:
        return zlib_compress(0, level, in, in_len, out, cap);
    case DK_CODEC_ZSTD:
        return zstd_compress(level, in, in_len, out, cap);
    }
    return -EINVAL;
}

ssize_t dk_decompress_partial(enum dk_codec c, const void *in, size_t in_len,
                              void *out, size_t out_len, size_t *consumed)
{
    switch (c) {
    case DK_CODEC_DEFLATE_RAW:
        return zlib_decompress(1, in, in_len, out, out_len, consumed);
    case DK_CODEC_ZLIB:
        return zlib_decompress(0, in, in_len, out, out_len, consumed);
    case DK_CODEC_ZSTD:
        return zstd_decompress(in, in_len, out, out_len, consumed);
    }
    return -EINVAL;
}

int dk_decompress(enum dk_codec c, const void *in, size_t in_len, void *out, size_t out_len)
{
    ssize_t n = dk_decompress_partial(c, in, in_len, out, out_len, NULL);
    if (n < 0)
        return (int)n;
    return (size_t)n == out_len ? 0 : -EIO;
}
