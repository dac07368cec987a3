/* codec.c - zlib (raw deflate and zlib streams) and zstd compression of
 * whole clusters. See codec.h for the formats.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "codec.h"

/* qemu's qcow2 writer: raw deflate, window bits 12, memLevel 9. */
#define QCOW2_WINDOW_BITS (-12)

static ssize_t zlib_compress(int raw, int level, const void *in, size_t in_len,
                             void *out, size_t cap)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    int wbits = raw ? QCOW2_WINDOW_BITS : 15;
    if (deflateInit2(&s, level ? level : Z_DEFAULT_COMPRESSION, Z_DEFLATED, wbits, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    s.next_in = (Bytef *)in;
    s.avail_in = (uInt)in_len;
    s.next_out = out;
    s.avail_out = (uInt)cap;
    int r = deflate(&s, Z_FINISH);
    size_t n = cap - s.avail_out;
    deflateEnd(&s);
    if (r == Z_STREAM_END)
        return (ssize_t)n;
    return r == Z_OK || r == Z_BUF_ERROR ? 0 : -EIO;
}

static ssize_t zlib_decompress(int raw, const void *in, size_t in_len, void *out,
                               size_t out_len, size_t *consumed)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    if (inflateInit2(&s, raw ? QCOW2_WINDOW_BITS : 15) != Z_OK)
        return -ENOMEM;
    s.next_in = (Bytef *)in;
    s.avail_in = (uInt)in_len;
    s.next_out = out;
    s.avail_out = (uInt)out_len;
    int r = inflate(&s, Z_FINISH);
    size_t produced = out_len - s.avail_out;
    if (consumed)
        *consumed = in_len - s.avail_in;
    inflateEnd(&s);
    /* A full output buffer is success even if the stream continues: qcow2
     * readers stop once a whole cluster is produced. */
    if (r == Z_STREAM_END || produced == out_len)
        return (ssize_t)produced;
    return -EIO;
}

static ssize_t zstd_decompress(const void *in, size_t in_len, void *out, size_t out_len,
                               size_t *consumed)
{
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d)
        return -ENOMEM;
    ZSTD_inBuffer ib = { in, in_len, 0 };
    ZSTD_outBuffer ob = { out, out_len, 0 };
    ssize_t ret = -EIO;
    /* Frames may follow each other; stop at a full buffer or the end of
     * the input. Trailing garbage after a complete frame is tolerated. */
    while (ob.pos < ob.size && ib.pos < ib.size) {
        size_t r = ZSTD_decompressStream(d, &ob, &ib);
        if (ZSTD_isError(r)) {
            if (ob.pos > 0 && r && ib.pos > 0)
                break;
            goto out;
        }
        if (r == 0 && ob.pos < ob.size && ib.pos < ib.size)
            continue;   /* frame done, another may follow */
        if (r != 0 && ib.pos == ib.size)
            break;      /* truncated frame */
    }
    ret = (ssize_t)ob.pos;
    if (consumed)
        *consumed = ib.pos;
out:
    ZSTD_freeDCtx(d);
    return ret;
}

ssize_t dk_compress(enum dk_codec c, int level, const void *in, size_t in_len,
                    void *out, size_t cap)
{
    switch (c) {
    case DK_CODEC_DEFLATE_RAW:
        return zlib_compress(1, level, in, in_len, out, cap);
    case DK_CODEC_ZLIB:
        return zlib_compress(0, level, in, in_len, out, cap);
    case DK_CODEC_ZSTD: {
        size_t r = ZSTD_compress(out, cap, in, in_len, level ? level : ZSTD_CLEVEL_DEFAULT);
        if (ZSTD_isError(r))
            return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? 0 : -EIO;
        return (ssize_t)r;
    }
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
