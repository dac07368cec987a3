/* val.c - the small JSON-like value tree used for format-specific info.
 * SPDX-License-Identifier: MIT
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static struct dk_val *val_new(enum dk_val_type t)
{
    struct dk_val *v = calloc(1, sizeof(*v));
    if (v)
        v->type = t;
    return v;
}

struct dk_val *dk_val_new_obj(void) { return val_new(DK_VAL_OBJ); }
struct dk_val *dk_val_new_list(void) { return val_new(DK_VAL_LIST); }

static struct dk_val *val_add(struct dk_val *parent, const char *key, enum dk_val_type t)
{
    if (!parent || (parent->type != DK_VAL_OBJ && parent->type != DK_VAL_LIST))
        return NULL;
    struct dk_val *items = realloc(parent->v.kids.items,
                                   (parent->v.kids.n + 1) * sizeof(*items));
    if (!items)
        return NULL;
    parent->v.kids.items = items;
    struct dk_val *c = &items[parent->v.kids.n];
    memset(c, 0, sizeof(*c));
    c->type = t;
    if (key && !(c->key = strdup(key)))
        return NULL;
    parent->v.kids.n++;
    return c;
}

struct dk_val *dk_val_add_str(struct dk_val *p, const char *key, const char *s)
{
    struct dk_val *c = val_add(p, key, DK_VAL_STR);
    if (c && !(c->v.s = strdup(s ? s : "")))
        return NULL;
    return c;
}
struct dk_val *dk_val_add_int(struct dk_val *p, const char *key, int64_t i)
{
    struct dk_val *c = val_add(p, key, DK_VAL_INT);
    if (c)
        c->v.i = i;
    return c;
}
struct dk_val *dk_val_add_uint(struct dk_val *p, const char *key, uint64_t u)
{
    struct dk_val *c = val_add(p, key, DK_VAL_UINT);
    if (c)
        c->v.u = u;
    return c;
}
struct dk_val *dk_val_add_bool(struct dk_val *p, const char *key, int b)
{
    struct dk_val *c = val_add(p, key, DK_VAL_BOOL);
    if (c)
        c->v.b = !!b;
    return c;
}
struct dk_val *dk_val_add_obj(struct dk_val *p, const char *key) { return val_add(p, key, DK_VAL_OBJ); }
struct dk_val *dk_val_add_list(struct dk_val *p, const char *key) { return val_add(p, key, DK_VAL_LIST); }

const struct dk_val *dk_val_get(const struct dk_val *obj, const char *key)
{
    if (!obj || obj->type != DK_VAL_OBJ)
        return NULL;
    for (size_t i = 0; i < obj->v.kids.n; i++)
        if (obj->v.kids.items[i].key && !strcmp(obj->v.kids.items[i].key, key))
            return &obj->v.kids.items[i];
    return NULL;
}

static void val_clear(struct dk_val *v)
{
    free(v->key);
    if (v->type == DK_VAL_STR)
        free(v->v.s);
    if (v->type == DK_VAL_OBJ || v->type == DK_VAL_LIST) {
        for (size_t i = 0; i < v->v.kids.n; i++)
            val_clear(&v->v.kids.items[i]);
        free(v->v.kids.items);
    }
}

void dk_val_free(struct dk_val *v)
{
    if (!v)
        return;
    val_clear(v);
    free(v);
}
