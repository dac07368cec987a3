/* lvm-text.c - parser for LVM2 text metadata (the lvm.conf(5) syntax that
 * lvm2 writes into metadata areas and /etc/lvm/backup files).
 *
 * Grammar, as lvm2 lib/config writes it:
 *   items   := ( key '=' value | key '{' items '}' )*
 *   value   := integer | float | string | '[' [ value ( ',' value )* ] ']'
 *   string  := '"' ( char | '\' char )* '"'   (also single quotes)
 *   comment := '#' to the end of the line
 * Keys are runs of letters, digits and "_-.+/@:".
 *
 * The text comes from an untrusted image: nesting depth, node count and
 * string length are capped (lvm.h), integers are range-checked, and every
 * error is one line naming the line number. Never recurses deeper than
 * LVM_TEXT_MAX_DEPTH.
 *
 * Known gaps: floats are recognised but their value is not kept (no
 * metadata field we read is a float).
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lvm.h"

struct lexer {
    const char *p, *end;
    unsigned line;
    size_t nodes;
    bool oom;
    char *err;
    size_t errlen;
};

static int fail(struct lexer *lx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(struct lexer *lx, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(lx->err, lx->errlen, "metadata line %u: %s", lx->line, msg);
    return -EINVAL;
}

void lvm_node_free(struct lvm_node *n)
{
    while (n) {
        struct lvm_node *next = n->next;
        lvm_node_free(n->child);
        free(n->key);
        free(n->str);
        free(n);
        n = next;
    }
}

static struct lvm_node *new_node(struct lexer *lx, enum lvm_type type)
{
    if (++lx->nodes > LVM_TEXT_MAX_NODES) {
        fail(lx, "more than %u values", LVM_TEXT_MAX_NODES);
        return NULL;
    }
    struct lvm_node *n = calloc(1, sizeof(*n));
    if (!n)
        lx->oom = true;
    else
        n->type = type;
    return n;
}

/* Skips blanks and comments; returns the next byte or 0 at the end. */
static int peek(struct lexer *lx)
{
    while (lx->p < lx->end) {
        char c = *lx->p;
        if (c == '\n')
            lx->line++;
        if (c == '#') {
            while (lx->p < lx->end && *lx->p != '\n')
                lx->p++;
            continue;
        }
        if (c == 0) {                   /* lvm2 ends the text with a NUL */
            lx->end = lx->p;
            break;
        }
        if (!isspace((unsigned char)c))
            return (unsigned char)c;
        lx->p++;
    }
    return 0;
}

static bool key_char(int c)
{
    return isalnum(c) || (c && strchr("_-.+/@:", c));
}

static char *read_key(struct lexer *lx)
{
    const char *s = lx->p;
    while (lx->p < lx->end && key_char((unsigned char)*lx->p))
        lx->p++;
    size_t n = (size_t)(lx->p - s);
    if (n == 0 || n >= LVM_TEXT_MAX_STRING) {
        fail(lx, n ? "name too long" : "expected a name");
        return NULL;
    }
    char *k = strndup(s, n);
    lx->oom |= !k;
    return k;
}

static int read_string(struct lexer *lx, struct lvm_node *n)
{
    char q = *lx->p++;
    const char *s = lx->p;
    size_t len = 0;
    for (;; lx->p++, len++) {          /* first pass: find the end */
        if (lx->p >= lx->end)
            return fail(lx, "unterminated string");
        if (*lx->p == q)
            break;
        if (*lx->p == '\n')
            lx->line++;
        if (*lx->p == '\\' && ++lx->p >= lx->end)
            return fail(lx, "unterminated string");
        if (len >= LVM_TEXT_MAX_STRING)
            return fail(lx, "string longer than %u bytes", LVM_TEXT_MAX_STRING);
    }
    lx->p++;
    if (!(n->str = malloc(len + 1))) {
        lx->oom = true;
        return -ENOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        if (*s == '\\')
            s++;
        n->str[i] = *s++;
    }
    n->str[len] = 0;
    return 0;
}

static int read_number(struct lexer *lx, struct lvm_node *n)
{
    const char *s = lx->p;
    bool neg = *lx->p == '-';
    if (neg || *lx->p == '+')
        lx->p++;
    uint64_t v = 0;
    bool digits = false, overflow = false;
    for (; lx->p < lx->end && isdigit((unsigned char)*lx->p); lx->p++) {
        digits = true;
        overflow |= __builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t)(*lx->p - '0'), &v);
    }
    if (lx->p < lx->end && *lx->p == '.') {
        n->type = LVM_FLOAT;
        for (lx->p++; lx->p < lx->end && isdigit((unsigned char)*lx->p); lx->p++)
            digits = true;
    }
    if (!digits || (lx->p < lx->end && key_char((unsigned char)*lx->p)))
        return fail(lx, "bad number '%.*s'", (int)(lx->p - s < 32 ? lx->p - s + 1 : 32), s);
    if (n->type == LVM_FLOAT)
        return 0;
    if (overflow || v > (uint64_t)INT64_MAX)
        return fail(lx, "number out of range");
    n->num = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

static int parse_items(struct lexer *lx, struct lvm_node *sec, unsigned depth);

/* A scalar or an array value into N (its type set here). */
static int parse_value(struct lexer *lx, struct lvm_node *n, bool in_array)
{
    int c = peek(lx);
    if (c == '"' || c == '\'') {
        n->type = LVM_STRING;
        return read_string(lx, n);
    }
    if (isdigit(c) || c == '-' || c == '+') {
        n->type = LVM_INT;
        return read_number(lx, n);
    }
    if (c == 0)
        return fail(lx, "unexpected end of text");
    if (c != '[' || in_array)
        return fail(lx, "unexpected '%c'", c);
    lx->p++;
    n->type = LVM_ARRAY;
    struct lvm_node **tail = &n->child;
    if (peek(lx) == ']') {
        lx->p++;
        return 0;
    }
    for (;;) {
        struct lvm_node *e = new_node(lx, LVM_INT);
        if (!e)
            return lx->oom ? -ENOMEM : -EINVAL;
        *tail = e;
        tail = &e->next;
        int r = parse_value(lx, e, true);
        if (r < 0)
            return r;
        c = peek(lx);
        lx->p += c != 0;
        if (c == ']')
            return 0;
        if (c != ',')
            return fail(lx, "expected ',' or ']' in an array");
    }
}

static int parse_items(struct lexer *lx, struct lvm_node *sec, unsigned depth)
{
    struct lvm_node **tail = &sec->child;
    for (;;) {
        int c = peek(lx);
        if (c == 0 || c == '}')
            return 0;
        struct lvm_node *n = new_node(lx, LVM_SECTION);
        if (!n)
            return lx->oom ? -ENOMEM : -EINVAL;
        *tail = n;
        tail = &n->next;
        if (!(n->key = read_key(lx)))
            return lx->oom ? -ENOMEM : -EINVAL;
        c = peek(lx);
        lx->p += c != 0;
        if (c == '=') {
            int r = parse_value(lx, n, false);
            if (r < 0)
                return r;
            continue;
        }
        if (c != '{')
            return fail(lx, "expected '=' or '{' after '%.40s'", n->key);
        if (depth + 1 >= LVM_TEXT_MAX_DEPTH)
            return fail(lx, "sections nested deeper than %u", LVM_TEXT_MAX_DEPTH);
        int r = parse_items(lx, n, depth + 1);
        if (r < 0)
            return r;
        if (peek(lx) != '}')
            return fail(lx, "missing '}' for section '%.40s'", n->key);
        lx->p++;
    }
}

int lvm_text_parse(const char *text, size_t len, struct lvm_node **root,
                   char *err, size_t errlen)
{
    struct lexer lx = { text, text + len, 1, 0, false, err, errlen };
    err[0] = 0;
    *root = NULL;
    struct lvm_node *top = calloc(1, sizeof(*top));
    if (!top) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int r = parse_items(&lx, top, 0);
    if (r == 0 && peek(&lx) != 0)
        r = fail(&lx, "unexpected '}'");
    if (r < 0) {
        if (lx.oom) {
            snprintf(err, errlen, "out of memory");
            r = -ENOMEM;
        }
        lvm_node_free(top);
        return r;
    }
    *root = top;
    return 0;
}

const struct lvm_node *lvm_node_get(const struct lvm_node *sec, const char *key)
{
    if (!sec || sec->type != LVM_SECTION)
        return NULL;
    for (const struct lvm_node *n = sec->child; n; n = n->next)
        if (n->key && !strcmp(n->key, key))
            return n;
    return NULL;
}

bool lvm_node_int(const struct lvm_node *sec, const char *key, int64_t *out)
{
    const struct lvm_node *n = lvm_node_get(sec, key);
    if (!n || n->type != LVM_INT)
        return false;
    *out = n->num;
    return true;
}

const char *lvm_node_str(const struct lvm_node *sec, const char *key)
{
    const struct lvm_node *n = lvm_node_get(sec, key);
    return n && n->type == LVM_STRING ? n->str : NULL;
}

bool lvm_node_has_flag(const struct lvm_node *sec, const char *key, const char *s)
{
    const struct lvm_node *n = lvm_node_get(sec, key);
    if (!n || n->type != LVM_ARRAY)
        return false;
    for (const struct lvm_node *e = n->child; e; e = e->next)
        if (e->type == LVM_STRING && !strcmp(e->str, s))
            return true;
    return false;
}
