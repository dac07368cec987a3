/* error.c - errors on handles and out-parameters, and dk_corrupt.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

int dk_set_verror(struct dk_image *img, int err, const char *fmt, va_list ap)
{
    img->err = err;
    vsnprintf(img->errmsg, sizeof(img->errmsg), fmt, ap);
    return err;
}

int dk_set_error(struct dk_image *img, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dk_set_verror(img, err, fmt, ap);
    va_end(ap);
    return err;
}

int dk_corrupt_at(struct dk_image *img, const char *file, int line, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (void)file; (void)line;   /* kept for debugging builds: see DK_DEBUG_CORRUPT */
#ifdef DK_DEBUG_CORRUPT
    dk_set_error(img, -EIO, "corrupt image: %s [%s:%d]", msg, file, line);
#else
    dk_set_error(img, -EIO, "corrupt image: %s", msg);
#endif
    img->corrupt = true;
    img->read_only = true;
    return -EIO;
}

int dk_error_set(struct dk_error *e, int err, const char *fmt, ...)
{
    if (!e)
        return err;
    va_list ap;
    va_start(ap, fmt);
    e->code = err;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return err;
}

int dk_image_errno(const struct dk_image *img)
{
    return img->err;
}

const char *dk_image_errmsg(const struct dk_image *img)
{
    struct dk_image *m = (struct dk_image *)img;
    if (!img->err && !img->errmsg[0])
        return "no error";
    /* Messages always name the file (the layer of the chain that failed). */
    snprintf(m->errmsg_out, sizeof(m->errmsg_out), "%s: %s", img->filename, img->errmsg);
    return m->errmsg_out;
}
