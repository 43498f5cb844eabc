// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* 64-bit FNV-1a, then a final avalanche (splitmix64): short keys hash well. */
uint64_t moat_hash(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ull ^ seed;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h;
}

static uint64_t ent_hash(const void *key, size_t klen)
{
	uint64_t h = moat_hash(key, klen, 0);
	return h < 2 ? h + 2 : h;
}

void hmap_init(struct hmap *m)
{
	memset(m, 0, sizeof(*m));
}

void hmap_free(struct hmap *m)
{
	free(m->e);
	memset(m, 0, sizeof(*m));
}

static struct hmap_ent *find(const struct hmap *m, const void *key, size_t klen, uint64_t h)
{
	size_t mask, i;

	if (!m->cap)
		return NULL;
	mask = m->cap - 1;
	for (i = h & mask;; i = (i + 1) & mask) {
		struct hmap_ent *e = &m->e[i];
		if (e->hash == 0)
			return NULL;
		if (e->hash == h && e->klen == klen && !memcmp(e->key, key, klen))
			return e;
	}
}

void *hmap_get(const struct hmap *m, const void *key, size_t klen)
{
	struct hmap_ent *e = find(m, key, klen, ent_hash(key, klen));
	return e ? e->val : NULL;
}

static int grow(struct hmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 16;
	struct hmap_ent *old = m->e, *ne;
	size_t ocap = m->cap;

	if (m->n * 2 < m->cap)
		ncap = m->cap; /* mostly tombstones: rehash in place */
	ne = calloc(ncap, sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	m->e = ne;
	m->cap = ncap;
	m->used = m->n;
	for (size_t i = 0; i < ocap; i++) {
		if (old[i].hash < 2)
			continue;
		size_t j = old[i].hash & (ncap - 1);
		while (ne[j].hash)
			j = (j + 1) & (ncap - 1);
		ne[j] = old[i];
	}
	free(old);
	return 0;
}

int hmap_put(struct hmap *m, const void *key, size_t klen, void *val, void **old)
{
	uint64_t h = ent_hash(key, klen);
	struct hmap_ent *e = find(m, key, klen, h);
	size_t i, mask;

	if (old)
		*old = NULL;
	if (e) {
		if (old)
			*old = e->val;
		e->val = val;
		e->key = key; /* the new value may own a new copy of the key */
		return 0;
	}
	if ((m->used + 1) * 4 >= m->cap * 3) {
		int err = grow(m);
		if (err)
			return err;
	}
	mask = m->cap - 1;
	for (i = h & mask; m->e[i].hash >= 2; i = (i + 1) & mask)
		;
	if (m->e[i].hash == 0)
		m->used++;
	m->e[i].hash = h;
	m->e[i].key = key;
	m->e[i].klen = klen;
	m->e[i].val = val;
	m->n++;
	return 0;
}

void *hmap_del(struct hmap *m, const void *key, size_t klen)
{
	struct hmap_ent *e = find(m, key, klen, ent_hash(key, klen));
	void *v;

	if (!e)
		return NULL;
	v = e->val;
	e->hash = 1;
	e->key = NULL;
	e->val = NULL;
	m->n--;
	return v;
}

bool hmap_next(const struct hmap *m, size_t *iter, const void **key, size_t *klen, void **val)
{
	for (; *iter < m->cap; (*iter)++) {
		struct hmap_ent *e = &m->e[*iter];
		if (e->hash < 2)
			continue;
		if (key)
			*key = e->key;
		if (klen)
			*klen = e->klen;
		if (val)
			*val = e->val;
		(*iter)++;
		return true;
	}
	return false;
}

int u32vec_push(struct u32vec *v, uint32_t x)
{
	if (v->n == v->cap) {
		size_t nc = v->cap ? v->cap * 2 : 8;
		uint32_t *n = realloc(v->v, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		v->v = n;
		v->cap = nc;
	}
	v->v[v->n++] = x;
	return 0;
}

void u32vec_free(struct u32vec *v)
{
	free(v->v);
	memset(v, 0, sizeof(*v));
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

void u32vec_sort_unique(struct u32vec *v)
{
	size_t j = 0;

	if (v->n < 2)
		return;
	qsort(v->v, v->n, sizeof(uint32_t), cmp_u32);
	for (size_t i = 1; i < v->n; i++)
		if (v->v[i] != v->v[j])
			v->v[++j] = v->v[i];
	v->n = j + 1;
}

bool u32vec_has(const struct u32vec *v, uint32_t x)
{
	size_t lo = 0, hi = v->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v->v[mid] == x)
			return true;
		if (v->v[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

int u32vec_union(struct u32vec *dst, const struct u32vec *src)
{
	for (size_t i = 0; i < src->n; i++) {
		int err = u32vec_push(dst, src->v[i]);
		if (err)
			return err;
	}
	u32vec_sort_unique(dst);
	return 0;
}

int ptrvec_push(struct ptrvec *v, void *p)
{
	if (v->n == v->cap) {
		size_t nc = v->cap ? v->cap * 2 : 8;
		void **n = realloc(v->v, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		v->v = n;
		v->cap = nc;
	}
	v->v[v->n++] = p;
	return 0;
}

void ptrvec_free(struct ptrvec *v)
{
	free(v->v);
	memset(v, 0, sizeof(*v));
}

bool ptrvec_remove(struct ptrvec *v, const void *p)
{
	for (size_t i = 0; i < v->n; i++) {
		if (v->v[i] == p) {
			v->v[i] = v->v[--v->n];
			return true;
		}
	}
	return false;
}

static void oom(void)
{
	fputs("moat: out of memory\n", stderr);
	abort();
}

char *xstrdup(const char *s)
{
	char *r;

	if (!s)
		return NULL;
	r = strdup(s);
	if (!r)
		oom();
	return r;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *r;

	va_start(ap, fmt);
	if (vasprintf(&r, fmt, ap) < 0)
		oom();
	va_end(ap);
	return r;
}

void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p)
		oom();
	return p;
}

void *xrealloc(void *p, size_t sz)
{
	void *r = realloc(p, sz ? sz : 1);
	if (!r)
		oom();
	return r;
}

uint64_t moat_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}
