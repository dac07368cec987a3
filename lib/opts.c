/* opts.c - "key=value,key=value" option lists in qemu syntax.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct dk_opts {
    size_t n, cap;
    char **keys, **vals;
};

/* Cap on pairs: no real option string has more; bounds allocation. */
#define DK_OPTS_MAX 256

static int opts_find(const struct dk_opts *o, const char *key)
{
    for (size_t i = 0; o && i < o->n; i++)
        if (!strcmp(o->keys[i], key))
            return (int)i;
    return -1;
}

int dk_opts_set(struct dk_opts **opts, const char *key, const char *value)
{
    if (!*opts && !(*opts = calloc(1, sizeof(**opts))))
        return -ENOMEM;
    struct dk_opts *o = *opts;
    char *v = strdup(value ? value : "");
    if (!v)
        return -ENOMEM;
    int i = opts_find(o, key);
    if (i >= 0) {
        free(o->vals[i]);
        o->vals[i] = v;
        return 0;
    }
    if (o->n >= DK_OPTS_MAX) {
        free(v);
        return -E2BIG;
    }
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        char **k = realloc(o->keys, cap * sizeof(*k));
        if (!k) { free(v); return -ENOMEM; }
        o->keys = k;
        char **vv = realloc(o->vals, cap * sizeof(*vv));
        if (!vv) { free(v); return -ENOMEM; }
        o->vals = vv;
        o->cap = cap;
    }
    if (!(o->keys[o->n] = strdup(key))) {
        free(v);
        return -ENOMEM;
    }
    o->vals[o->n++] = v;
    return 0;
}

/* Copies one item of S (up to an unescaped comma) into a new string,
 * turning ",," into ",". Advances *S past the item and its comma. */
static char *next_item(const char **s)
{
    const char *p = *s;
    size_t len = strlen(p);
    char *out = malloc(len + 1), *q = out;
    if (!out)
        return NULL;
    while (*p) {
        if (*p == ',') {
            if (p[1] == ',') { *q++ = ','; p += 2; continue; }
            p++;
            break;
        }
        *q++ = *p++;
    }
    *q = '\0';
    *s = p;
    return out;
}

int dk_opts_parse(struct dk_opts **opts, const char *str, struct dk_error *err)
{
    const char *s = str;
    if (!*s)
        return dk_error_set(err, -EINVAL, "empty option string");
    while (*s) {
        char *item = next_item(&s);
        if (!item)
            return dk_error_set(err, -ENOMEM, "out of memory");
        char *eq = strchr(item, '=');
        const char *val = "on";
        if (eq) { *eq = '\0'; val = eq + 1; }
        if (!*item) {
            free(item);
            return dk_error_set(err, -EINVAL, "Invalid option string '%s': empty key", str);
        }
        int r = dk_opts_set(opts, item, val);
        free(item);
        if (r < 0)
            return dk_error_set(err, r, "too many options in '%s'", str);
    }
    return 0;
}

const char *dk_opts_get(const struct dk_opts *o, const char *key)
{
    int i = opts_find(o, key);
    return i >= 0 ? o->vals[i] : NULL;
}

void dk_opts_del(struct dk_opts *o, const char *key)
{
    int i = opts_find(o, key);
    if (i < 0)
        return;
    free(o->keys[i]);
    free(o->vals[i]);
    memmove(&o->keys[i], &o->keys[i + 1], (o->n - (size_t)i - 1) * sizeof(char *));
    memmove(&o->vals[i], &o->vals[i + 1], (o->n - (size_t)i - 1) * sizeof(char *));
    o->n--;
}

size_t dk_opts_count(const struct dk_opts *o) { return o ? o->n : 0; }
const char *dk_opts_key(const struct dk_opts *o, size_t i) { return i < o->n ? o->keys[i] : NULL; }
const char *dk_opts_value(const struct dk_opts *o, size_t i) { return i < o->n ? o->vals[i] : NULL; }

void dk_opts_free(struct dk_opts *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        free(o->keys[i]);
        free(o->vals[i]);
    }
    free(o->keys);
    free(o->vals);
    free(o);
}
