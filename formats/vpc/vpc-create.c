/* vpc-create.c - creating VHD images (dynamic and fixed) and the info hook.
 *
 * create writes what qemu-img 7.2 writes for `-f vpc`:
 *  - size: rounded up to a sector, then up to the first CHS geometry of the
 *    spec's algorithm that holds it (so convert never truncates), creator
 *    app "qemu" (readers size the disk by CHS). With force_size=on the size
 *    is kept (rounded to a sector), the geometry is 65535/16/255 and the
 *    creator app "qem2" (readers, Hyper-V and Azure included, use
 *    current_size). Sizes CHS cannot reach (~127 GiB and up) get the
 *    maximum geometry too. At most 2040 GiB.
 *  - footer: features 2, version 1.0, creator version 5.3 (Virtual PC
 *    2007), creator OS "Wi2k", original = current size, a random UUID.
 *  - dynamic: footer copy at 0, dynamic header at 512 (2 MiB blocks, data
 *    offset ~0), BAT at 1536 filled with 0xFF to a whole sector, footer
 *    after it. fixed: the sparse guest area, then the footer.
 *
 * Resize, check, measure: qemu-img 7.2 supports none of them for vpc and
 * neither do we (resize fails, check exits 63).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vpc.h"

static int new_footer(struct vpc_footer *f, uint64_t size, bool fixed, bool force_size,
                      uint16_t c, uint8_t h, uint8_t s)
{
    memset(f, 0, sizeof(*f));
    memcpy(f->cookie, VPC_COOKIE, 8);
    f->features = VPC_FEATURES_RESERVED;
    f->version = VPC_VERSION;
    f->data_offset = fixed ? UINT64_MAX : VPC_FOOTER_SIZE;
    time_t now = time(NULL);
    f->timestamp = (uint32_t)((uint64_t)now - VPC_TIMESTAMP_BASE);
    memcpy(f->creator_app, force_size ? "qem2" : "qemu", 4);
    f->creator_version = 0x00050003u;
    memcpy(f->creator_os, "Wi2k", 4);
    f->original_size = size;
    f->current_size = size;
    f->cylinders = c;
    f->heads = h;
    f->sectors = s;
    f->disk_type = fixed ? VPC_TYPE_FIXED : VPC_TYPE_DYNAMIC;
    return dk_random_uuid(f->uuid, false);
}

static int write_dynamic(struct dk_file *file, const uint8_t *footer, uint64_t size)
{
    uint32_t entries = (uint32_t)dk_div_round_up(size / VPC_SECTOR,
                                                 VPC_BLOCK_SIZE_DEFAULT / VPC_SECTOR);
    uint64_t bat_off = VPC_FOOTER_SIZE + VPC_DYN_HEADER_SIZE;
    uint64_t bat_len = dk_round_up((uint64_t)entries * 4, VPC_SECTOR);
    struct vpc_dyn_header h = {
        .data_offset = UINT64_MAX,
        .table_offset = bat_off,
        .version = VPC_VERSION,
        .max_table_entries = entries,
        .block_size = VPC_BLOCK_SIZE_DEFAULT,
    };
    memcpy(h.cookie, VPC_DYN_COOKIE, 8);
    uint8_t hdr[VPC_DYN_HEADER_SIZE];
    vpc_dyn_header_encode(&h, hdr);
    uint8_t *bat = malloc(bat_len ? bat_len : 1);
    if (!bat)
        return -ENOMEM;
    memset(bat, 0xff, bat_len);
    int r = dk_file_pwrite(file, footer, VPC_FOOTER_SIZE, 0);
    if (r == 0)
        r = dk_file_pwrite(file, hdr, sizeof(hdr), VPC_FOOTER_SIZE);
    if (r == 0 && bat_len)
        r = dk_file_pwrite(file, bat, bat_len, bat_off);
    if (r == 0)
        r = dk_file_pwrite(file, footer, VPC_FOOTER_SIZE, bat_off + bat_len);
    free(bat);
    return r;
}

static int parse_opts(const struct dk_create_ctx *c, bool *fixed, bool *force)
{
    const char *sub = dk_opts_get(c->opts, "subformat");
    const char *fs = dk_opts_get(c->opts, "force_size");
    *fixed = sub && !strcmp(sub, "fixed");
    if (sub && !*fixed && strcmp(sub, "dynamic"))
        return dk_error_set(c->err, -EINVAL, "Parameter 'subformat' does not accept value "
                            "'%s' (dynamic or fixed)", sub);
    int b = fs ? dk_parse_bool(fs) : 0;
    if (b < 0)
        return dk_error_set(c->err, -EINVAL, "Parameter 'force_size' expects 'on' or "
                            "'off', not '%s'", fs);
    *force = b == 1;
    return 0;
}

int vpc_create(const struct dk_create_ctx *c)
{
    bool fixed = false, force = false;
    int r = parse_opts(c, &fixed, &force);
    if (r < 0)
        return r;
    uint64_t size;
    uint16_t cyl;
    uint8_t heads, spt;
    if (vpc_rounded_size(c->size, force, &size, &cyl, &heads, &spt) < 0)
        return dk_error_set(c->err, -EFBIG, "Disk size is too large, max size is 2040 GiB");
    struct vpc_footer f;
    if ((r = new_footer(&f, size, fixed, force, cyl, heads, spt)) < 0)
        return dk_error_set(c->err, r, "cannot generate a UUID: %s", strerror(-r));
    uint8_t footer[VPC_FOOTER_SIZE];
    vpc_footer_encode(&f, footer);
    int fd = open(c->filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return dk_error_set(c->err, -errno, "%s: %s", c->filename, strerror(errno));
    close(fd);
    struct dk_file *file;
    if ((r = dk_file_open(&file, c->filename, true, c->err)) < 0)
        return r;
    r = file->is_blockdev ? 0 : dk_file_truncate(file, 0);
    if (r == 0 && fixed) {
        if (!file->is_blockdev)
            r = dk_file_truncate(file, size + VPC_FOOTER_SIZE);
        if (r == 0)
            r = dk_file_pwrite(file, footer, VPC_FOOTER_SIZE, size);
    } else if (r == 0) {
        r = write_dynamic(file, footer, size);
    }
    if (r == 0)
        r = dk_file_flush(file);
    if (r < 0)
        dk_error_set(c->err, r, "%s: %s", c->filename, strerror(-r));
    dk_file_close(file);
    return r;
}

int vpc_info(struct dk_image *img, struct dk_info *info)
{
    struct vpc_state *s = img->priv;
    /* qemu-img 7.2: the block size as cluster size for dynamic disks, no
     * format-specific section. */
    info->cluster_size = s->fixed ? 0 : s->block_size;
    return 0;
}
