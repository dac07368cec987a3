/* vhdx-log.c - detecting a VHDX log that needs replay.
 *
 * Spec: MS-VHDX 1.0 section 2.4 (log entries: 64-byte header "loge",
 * u32 checksum, u32 entry length, u32 tail, u64 sequence number, u32
 * descriptor count, u32 reserved, log GUID at 32, u64 flushed file
 * offset, u64 last file offset; CRC-32C over the whole entry with the
 * checksum field zeroed; the log is a circular buffer).
 *
 * qemu 7.2's rule for a read-only open, which diskkit follows: a log is
 * in use when the active header's log GUID is non-zero and its log length
 * is non-zero; then, if the log holds a valid sequence of entries written
 * under that GUID, the open fails ("opened read-only, but contains a log
 * that needs to be replayed"); a GUID with no valid entry behind it is
 * harmless. qemu replays only on a read-write open (or check -r all).
 *
 * Known gap: diskkit counts any single entry whose header and checksum
 * are valid for the active GUID as "needs replay"; qemu also requires the
 * entry's descriptors and data sectors to agree on the sequence number.
 * Replay itself (into the file or into memory for reads) is not done.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vhdx.h"

static bool guid_is_zero(const uint8_t *g)
{
    for (int i = 0; i < 16; i++)
        if (g[i])
            return false;
    return true;
}

/* CRC-32C of the LEN-byte entry at log position POS (wrapping at the end
 * of the log), checksum field taken as zero. */
static int entry_crc(struct dk_image *img, uint64_t pos, uint32_t len, uint32_t *out)
{
    struct vhdx_state *s = img->priv;
    const uint32_t chunk = 64u << 10;
    uint8_t *buf = malloc(chunk);
    if (!buf)
        return dk_set_error(img, -ENOMEM, "out of memory");
    uint32_t crc = 0;
    for (uint32_t done = 0; done < len;) {
        uint64_t p = (pos + done) % s->hdr.log_length;
        uint32_t n = (uint32_t)DK_MIN((uint64_t)DK_MIN(chunk, len - done),
                                      s->hdr.log_length - p);
        int r = dk_file_pread(img->file, buf, n, s->hdr.log_offset + p);
        if (r < 0) {
            free(buf);
            return dk_set_error(img, r, "vhdx: cannot read the log: %s", strerror(-r));
        }
        if (done == 0)
            memset(buf + 4, 0, 4);
        crc = vhdx_crc32c(crc, buf, n);
        done += n;
    }
    free(buf);
    *out = crc;
    return 0;
}

int vhdx_log_check(struct dk_image *img)
{
    struct vhdx_state *s = img->priv;
    const struct vhdx_header *h = &s->hdr;
    if (guid_is_zero(h->log_guid) || h->log_length == 0)
        return 0;
    for (uint64_t pos = 0; pos < h->log_length; pos += VHDX_LOG_SECTOR) {
        uint8_t e[VHDX_LOG_ENTRY_HDR];
        int r = dk_file_pread(img->file, e, sizeof(e), h->log_offset + pos);
        if (r < 0)
            return dk_set_error(img, r, "vhdx: cannot read the log: %s", strerror(-r));
        uint32_t len = dk_le32(e + 8);
        if (dk_le32(e) != VHDX_LOG_SIG || len == 0 || len % VHDX_LOG_SECTOR ||
            len > h->log_length || dk_le64(e + 16) == 0 || memcmp(e + 32, h->log_guid, 16))
            continue;
        uint32_t crc = 0;
        if ((r = entry_crc(img, pos, len, &crc)) < 0)
            return r;
        if (crc == dk_le32(e + 4))
            return dk_set_error(img, -EPERM, "vhdx: the image contains a log that needs to "
                                "be replayed (log entry at 0x%" PRIx64 "); diskkit cannot "
                                "replay it: run 'qemu-img check -r all' on a copy first",
                                h->log_offset + pos);
    }
    return 0;
}
