/* registry.c - the format drivers compiled in, lookup by name, probing.
 *
 * Probing rule (INTERFACE.md): the best score wins; raw scores 1 for
 * anything, so an image nobody recognises is raw. dk_open then opens a
 * probed raw image read-only: a guest can write any header into a raw
 * disk, so a probed result must never be trusted for writes.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static const struct dk_driver *const drivers[] = {
    &dk_drv_raw,
    &dk_drv_qcow2,
    &dk_drv_vmdk,
    &dk_drv_vdi,
    &dk_drv_vpc,
    &dk_drv_vhdx,
};

static const char *names[DK_ARRAY_SIZE(drivers) + 1];

const char *const *dk_formats(void)
{
    for (size_t i = 0; i < DK_ARRAY_SIZE(drivers); i++)
        names[i] = drivers[i]->name;
    return names;
}

const struct dk_driver *dk_driver_find(const char *name)
{
    for (size_t i = 0; i < DK_ARRAY_SIZE(drivers); i++)
        if (!strcmp(drivers[i]->name, name))
            return drivers[i];
    return NULL;
}

const struct dk_driver *dk_driver_probe(const uint8_t *buf, size_t len, const char *filename)
{
    const struct dk_driver *best = &dk_drv_raw;
    int best_score = 0;
    for (size_t i = 0; i < DK_ARRAY_SIZE(drivers); i++) {
        if (!drivers[i]->probe)
            continue;
        int s = drivers[i]->probe(buf, len, filename);
        if (s > best_score) {
            best_score = s;
            best = drivers[i];
        }
    }
    return best;
}

/* An empty option list for drivers that have none. */
static const struct dk_optdesc no_opts[] = { { 0 } };

const struct dk_optdesc *dk_create_options(const char *format)
{
    const struct dk_driver *d = dk_driver_find(format);
    return !d ? NULL : d->create_opts ? d->create_opts : no_opts;
}

const struct dk_optdesc *dk_amend_options(const char *format)
{
    const struct dk_driver *d = dk_driver_find(format);
    return !d ? NULL : d->amend_opts ? d->amend_opts : no_opts;
}
