/* SPDX-License-Identifier: Apache-2.0 */
/* Small containers used across hostd: an open-addressing hash map over byte
 * keys, growable vectors of u32, and string helpers. */
#ifndef MOAT_UTIL_H
#define MOAT_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

uint64_t moat_hash(const void *data, size_t len, uint64_t seed);

/* Keys are not copied: they must stay valid while in the map (store them
 * inside the value).  Values are opaque pointers. */
struct hmap_ent {
	uint64_t hash; /* 0 = empty, 1 = deleted */
	const void *key;
	size_t klen;
	void *val;
};

struct hmap {
	struct hmap_ent *e;
	size_t cap;  /* power of two or 0 */
	size_t n;    /* live entries */
	size_t used; /* live + deleted */
};

void hmap_init(struct hmap *m);
void hmap_free(struct hmap *m); /* frees the table, not the values */
void *hmap_get(const struct hmap *m, const void *key, size_t klen);
/* Inserts or replaces; returns the previous value through *old if given. */
int hmap_put(struct hmap *m, const void *key, size_t klen, void *val, void **old);
void *hmap_del(struct hmap *m, const void *key, size_t klen);
/* Iteration: for (size_t i = 0; hmap_next(m, &i, &k, &kl, &v);) */
bool hmap_next(const struct hmap *m, size_t *iter, const void **key, size_t *klen, void **val);

static inline void *hmap_gets(const struct hmap *m, const char *s)
{
	return hmap_get(m, s, strlen(s));
}

struct u32vec {
	uint32_t *v;
	size_t n, cap;
};

int u32vec_push(struct u32vec *v, uint32_t x);
void u32vec_free(struct u32vec *v);
void u32vec_sort_unique(struct u32vec *v);
bool u32vec_has(const struct u32vec *v, uint32_t x);            /* sorted vectors */
int u32vec_union(struct u32vec *dst, const struct u32vec *src); /* dst sorted after */

struct ptrvec {
	void **v;
	size_t n, cap;
};

int ptrvec_push(struct ptrvec *v, void *p);
void ptrvec_free(struct ptrvec *v);
bool ptrvec_remove(struct ptrvec *v, const void *p);

char *xstrdup(const char *s); /* NULL-safe; aborts on OOM */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t sz);

/* Monotonic clock in nanoseconds. */
uint64_t moat_now_ns(void);

#endif
