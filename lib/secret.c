/* secret.c - named secrets registered on an image handle
 * (dk_image_add_secret), looked up by drivers for options that name a
 * secret by id, as qemu's --object secret,id=ID is referenced by
 * encrypt.new-secret=ID.
 *
 * The handle owns copies: ids and bytes are copied in, wiped with
 * explicit_bzero and freed when the handle is closed. Messages name the
 * id only, never the bytes. At most DK_MAX_SECRETS (a command line gives
 * two or three).
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct dk_named_secret {
    char *id;
    unsigned char *data;
    size_t len;
};

static void wipe(struct dk_named_secret *s)
{
    if (s->data)
        explicit_bzero(s->data, s->len);
    free(s->data);
    free(s->id);
    memset(s, 0, sizeof(*s));
}

static int add_locked(struct dk_image *img, const char *id, const void *data, size_t len)
{
    if (!id || !*id || (!data && len))
        return dk_set_error(img, -EINVAL, "a secret needs an id and data");
    size_t i = 0;
    while (i < img->n_secrets && strcmp(img->secrets[i].id, id))
        i++;
    if (i == img->n_secrets && i >= DK_MAX_SECRETS)
        return dk_set_error(img, -E2BIG, "too many secrets (at most %d)", DK_MAX_SECRETS);
    if (!img->secrets) {
        img->secrets = calloc(DK_MAX_SECRETS, sizeof(*img->secrets));
        if (!img->secrets)
            return dk_set_error(img, -ENOMEM, "out of memory");
    }
    /* One spare byte: the copy is never empty for malloc. */
    struct dk_named_secret n = { strdup(id), malloc(len + 1), len };
    if (!n.id || !n.data) {
        wipe(&n);
        return dk_set_error(img, -ENOMEM, "out of memory");
    }
    if (len)
        memcpy(n.data, data, len);
    if (i < img->n_secrets)
        wipe(&img->secrets[i]);
    else
        img->n_secrets++;
    img->secrets[i] = n;
    return 0;
}

int dk_image_add_secret(struct dk_image *img, const char *id, const void *data, size_t len)
{
    pthread_mutex_lock(&img->lock);
    int r = add_locked(img, id, data, len);
    pthread_mutex_unlock(&img->lock);
    return r;
}

int dk_image_secret(struct dk_image *img, const char *id, const unsigned char **data,
                    size_t *len)
{
    for (size_t i = 0; i < img->n_secrets; i++) {
        if (!strcmp(img->secrets[i].id, id)) {
            *data = img->secrets[i].data;
            *len = img->secrets[i].len;
            return 0;
        }
    }
    return dk_set_error(img, -ENOENT, "No secret with id '%s'", id);
}

void dk_image_secrets_free(struct dk_image *img)
{
    for (size_t i = 0; i < img->n_secrets; i++)
        wipe(&img->secrets[i]);
    free(img->secrets);
    img->secrets = NULL;
    img->n_secrets = 0;
}
