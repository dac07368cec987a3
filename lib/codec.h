/* codec.h - cluster compression used by the drivers (qcow2, VMDK stream)
 * and the copy engine. Thread-safe (per-thread codec state), no handle, no lock.
 *
 * Formats:
 *  - DK_CODEC_DEFLATE_RAW: raw deflate (no zlib header), window bits 12,
 *    as qemu writes qcow2 compressed clusters (qcow2.txt "Compressed
 *    Clusters Descriptor").
 *  - DK_CODEC_ZLIB: zlib stream (RFC 1950), as VMDK streamOptimized grains.
 *  - DK_CODEC_ZSTD: one or more complete zstd frames, no length prefix
 *    (qcow2 compression_type=zstd).
 * SPDX-License-Identifier: MIT
 */
#ifndef DK_CODEC_H
#define DK_CODEC_H

#include <stddef.h>
#include <sys/types.h>

enum dk_codec { DK_CODEC_DEFLATE_RAW, DK_CODEC_ZLIB, DK_CODEC_ZSTD };

/* Compresses IN into OUT (capacity CAP). LEVEL 0 means the codec's
 * default. Returns the compressed length, or 0 when the result would not
 * fit in CAP (the caller stores the data uncompressed), or -errno. */
ssize_t dk_compress(enum dk_codec c, int level, const void *in, size_t in_len,
                    void *out, size_t cap);

/* Decompresses IN into exactly OUT_LEN bytes of OUT. Input after the end of
 * the compressed data is ignored (qcow2 may store trailing bytes of the next
 * sector). Returns 0, or -EIO when the data is corrupt or too short. */
int dk_decompress(enum dk_codec c, const void *in, size_t in_len, void *out, size_t out_len);

/* Like dk_decompress, but OUT_LEN is a maximum: returns the number of bytes
 * produced (the stream may end earlier), or -EIO. *CONSUMED gets the input
 * bytes used when not NULL (for streams of concatenated grains). */
ssize_t dk_decompress_partial(enum dk_codec c, const void *in, size_t in_len,
                              void *out, size_t out_len, size_t *consumed);

#endif
