/* path.c - resolving names found inside images (backing files, extent and
 * data files) relative to the image that names them, and the trust policy
 * (INTERFACE.md): such names must stay inside the image's directory unless
 * the user allows external paths.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

char *dk_path_rel(const char *base, const char *name)
{
    if (name[0] == '/')
        return strdup(name);
    const char *slash = strrchr(base, '/');
    if (!slash)
        return strdup(name);
    size_t dl = (size_t)(slash - base) + 1;
    char *out = malloc(dl + strlen(name) + 1);
    if (!out)
        return NULL;
    memcpy(out, base, dl);
    strcpy(out + dl, name);
    return out;
}

/* Directory of BASE, resolved (caller frees). */
static char *base_dir_real(const char *base)
{
    char *copy = strdup(base);
    if (!copy)
        return NULL;
    char *slash = strrchr(copy, '/');
    const char *dir = ".";
    if (slash == copy)
        dir = "/";
    else if (slash) {
        *slash = '\0';
        dir = copy;
    }
    char *real = realpath(dir, NULL);
    free(copy);
    return real;
}

int dk_path_check_inside(const char *base, const char *name, struct dk_error *err)
{
    if (name[0] == '/')
        return dk_error_set(err, -EPERM,
            "refusing absolute path '%s' named inside the image "
            "(use --allow-external-paths to allow it)", name);
    char *dir = base_dir_real(base);
    char *full = dk_path_rel(base, name);
    char *real = full ? realpath(full, NULL) : NULL;
    int r = 0;
    if (!dir || !full) {
        r = dk_error_set(err, -ENOMEM, "out of memory");
    } else if (!real) {
        r = dk_error_set(err, -errno, "%s: %s", full, strerror(errno));
    } else {
        size_t dl = strlen(dir);
        bool inside = !strncmp(real, dir, dl) &&
                      (real[dl] == '/' || (dl == 1 && dir[0] == '/'));
        if (!inside)
            r = dk_error_set(err, -EPERM,
                "refusing '%s' named inside the image: it resolves outside the "
                "image's directory (use --allow-external-paths to allow it)", name);
    }
    free(dir);
    free(full);
    free(real);
    return r;
}

int dk_file_open_rel(struct dk_image *img, const char *name, bool writable,
                     struct dk_file **out)
{
    struct dk_error e = { 0 };
    if (!(img->flags & DK_OPEN_ALLOW_EXTERNAL)) {
        int r = dk_path_check_inside(img->filename, name, &e);
        if (r < 0)
            return dk_set_error(img, r, "%s", e.msg);
    }
    char *full = dk_path_rel(img->filename, name);
    if (!full)
        return dk_set_error(img, -ENOMEM, "out of memory");
    int r = dk_file_open(out, full, writable, &e);
    free(full);
    if (r < 0)
        return dk_set_error(img, r, "%s", e.msg);
    return 0;
}
