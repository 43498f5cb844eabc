// SPDX-License-Identifier: Apache-2.0
/* The Kubernetes list/watch decoder (hostd/k8s.c) on server bytes, through
 * moat_k8s_test_feed(): the code the kind's thread runs on what libcurl
 * delivers, without curl, threads or a server.
 *
 * Input: byte 0 chooses the kind (Pod, namespaced / Namespace), the size of
 * the write callbacks (all at once, 1, 7, 64 bytes), max_objects (default,
 * 1, 3, 8), a small max_object_bytes (200) and whether a LIST comes first.
 * The rest is up to 8 segments separated by "\0\0", LISTs and watch
 * streams taking turns (a relist after a watch, as after a 410); a LIST's
 * pages are separated by one NUL.
 *
 * Checked on every input (besides ASan/UBSan/LeakSanitizer):
 *   - UPSERT events carry an object of the kind, with kind and apiVersion
 *     set, a resourceVersion of 1..128 bytes, and the key moat_object_key()
 *     gives for its metadata; DELETE names a key that is live (upserted and
 *     not deleted since); ERROR messages start with the kind's label;
 *   - objects held never exceed max_objects (live keys, and the status
 *     "objects" once the decoder records it); a LIST item whose compact
 *     JSON is over max_object_bytes is never delivered; every watch line
 *     the decoder accepted is at most max_object_bytes long;
 *   - a failed feed (garbage line, ERROR event other than 410, bound
 *     exceeded, stream cut inside an event) is counted in the status
 *     "errors"; ERROR events are never more than the errors counted;
 *   - resourceVersion: the decoder treats it as opaque (Kubernetes API
 *     conventions), so "never backwards" is checked as: it moves only to
 *     the resourceVersion of the last line the decoder accepted (the status
 *     "events" says how many lines that is; an independent line splitter
 *     here finds that line), or of a LIST that completed; a refused line,
 *     an ERROR event, a line cut short and a LIST that failed leave it as
 *     it was. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "k8s.h"
#include "util.h"

struct st {
	const char *kind, *label;
	bool namespaced;
	size_t max_objects, max_object_bytes;
	bool list_phase;
	struct hmap live; /* key -> the same string */
	size_t nerr;
};

static const char *sget(const json_t *o, const char *a, const char *b)
{
	const json_t *v = json_object_get(o, a);
	if (b)
		v = json_object_get(v, b);
	return json_string_value(v);
}

static void on_event(void *arg, const struct moat_k8s_event *ev)
{
	struct st *s = arg;

	switch (ev->type) {
	case MOAT_K8S_UPSERT: {
		const char *rv = sget(ev->obj, "metadata", "resourceVersion");
		const char *ns = sget(ev->obj, "metadata", "namespace");
		const char *name = sget(ev->obj, "metadata", "name");
		char *key;

		assert(json_is_object(ev->obj));
		assert(!strcmp(ev->kind, s->kind));
		assert(sget(ev->obj, "kind", NULL) && !strcmp(sget(ev->obj, "kind", NULL), s->kind));
		assert(sget(ev->obj, "apiVersion", NULL));
		assert(rv && *rv && strlen(rv) <= 128);
		assert(name && *name && !strchr(name, '/'));
		key = s->namespaced ? xasprintf("%s/%s/%s", s->kind, ns, name) :
				      xasprintf("%s/%s", s->kind, name);
		assert(!strcmp(key, ev->key));
		free(key);
		if (s->list_phase)
			assert(json_dumpb(ev->obj, NULL, 0, JSON_COMPACT) <= s->max_object_bytes);
		if (!hmap_gets(&s->live, ev->key)) {
			char *k = xstrdup(ev->key);
			hmap_put(&s->live, k, strlen(k), k, NULL);
		}
		assert(s->live.n <= s->max_objects);
		break;
	}
	case MOAT_K8S_DELETE:
		assert(!strcmp(ev->kind, s->kind));
		/* only what was sent is taken back */
		assert(hmap_gets(&s->live, ev->key));
		free(hmap_del(&s->live, ev->key, strlen(ev->key)));
		break;
	case MOAT_K8S_ERROR:
		assert(ev->msg && !strncmp(ev->msg, s->label, strlen(s->label)));
		s->nerr++;
		break;
	case MOAT_K8S_SYNCED:
		break;
	}
}

struct kstat {
	char rv[256];
	long long objects, events, errors;
};

static void kstat(struct moat_k8s *k, struct kstat *out)
{
	json_t *st = moat_k8s_status(k);
	json_t *kd = json_array_get(json_object_get(st, "kinds"), 0);

	/* cppcheck-suppress ctuuninitvar ; *out is written here, not read */
	snprintf(out->rv, sizeof(out->rv), "%s", sget(kd, "resourceVersion", NULL));
	out->objects = json_integer_value(json_object_get(kd, "objects"));
	out->events = json_integer_value(json_object_get(kd, "events"));
	out->errors = json_integer_value(json_object_get(kd, "errors"));
	json_decref(st);
}

/* The resourceVersion of the n-th (1-based) non-empty complete line. */
static char *nth_line_rv(const char *p, size_t len, long long n, size_t *linelen)
{
	while (len) {
		const char *nl = memchr(p, '\n', len);
		size_t l;
		if (!nl)
			return NULL; /* an unfinished line is never decoded */
		l = (size_t)(nl - p);
		while (l && (p[l - 1] == '\r' || p[l - 1] == ' '))
			l--;
		if (l && --n == 0) {
			json_t *j = json_loadb(p, l, 0, NULL);
			const char *rv = sget(json_object_get(j, "object"), "metadata", "resourceVersion");
			char *r = rv ? xstrdup(rv) : NULL;
			*linelen = l;
			json_decref(j);
			return r;
		}
		len -= (size_t)(nl - p) + 1;
		p = nl + 1;
	}
	return NULL;
}

/* The resourceVersion of the last page of a LIST (the first without a
 * continue token). */
static char *list_rv(const char *p, size_t len)
{
	for (;;) {
		const char *nul = memchr(p, 0, len);
		size_t seg = nul ? (size_t)(nul - p) : len;
		json_t *j = json_loadb(p, seg, 0, NULL);
		const char *c = sget(j, "metadata", "continue");
		char *r = NULL;
		if (!c || !*c || !nul) {
			const char *rv = sget(j, "metadata", "resourceVersion");
			r = rv ? xstrdup(rv) : NULL;
			json_decref(j);
			return r;
		}
		json_decref(j);
		len -= seg + 1;
		p = nul + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = { 0, 1, 7, 64 };
	static const size_t maxobj[] = { 300000, 1, 3, 8 };
	static const struct moat_k8s_kind pods = { "Pod", "", "v1", "pods", true };
	static const struct moat_k8s_kind nss = { "Namespace", "", "v1", "namespaces", false };
	struct moat_k8s_opts o = { 0 };
	struct moat_k8s *k = NULL;
	struct st s = { 0 };
	struct kstat a, b;
	const char *p;
	size_t chunk;
	uint8_t f;
	int rc;

	if (size < 1)
		return 0;
	f = data[0];
	p = (const char *)data + 1;
	size--;
	o.kinds = (f & 1) ? &nss : &pods;
	o.nkinds = 1;
	o.max_objects = maxobj[(f >> 3) & 3];
	o.max_object_bytes = (f & 0x20) ? 200 : 0;
	chunk = chunks[(f >> 1) & 3];
	s.kind = o.kinds->kind;
	s.label = (f & 1) ? "Namespace (v1 namespaces): " : "Pod (v1 pods): ";
	s.namespaced = o.kinds->namespaced;
	s.max_objects = o.max_objects;
	s.max_object_bytes = o.max_object_bytes ? o.max_object_bytes : 3u << 20;
	hmap_init(&s.live);
	rc = moat_k8s_test_new(&o, &k);
	assert(rc == 0);
	kstat(k, &a);
	assert(a.rv[0] == 0);
	/* segments separated by "\0\0", lists and watches taking turns (a
	 * relist after a watch, as after a 410 or an overflow) */
	for (int seg = 0; seg < 8 && size; seg++) {
		const char *end = memmem(p, size, "\0\0", 2);
		size_t len = end ? (size_t)(end - p) : size;
		bool list = (seg & 1) == !(f & 0x40);

		s.list_phase = list;
		if (list) {
			char *want = list_rv(p, len);
			rc = moat_k8s_test_feed(k, 0, true, p, len, chunk);
			assert(rc == 0 || rc == -EPROTO || rc == -EPIPE);
			moat_k8s_drain(k, on_event, &s);
			kstat(k, &b);
			assert((size_t)b.errors >= s.nerr);
			if (rc == 0) {
				assert(want && !strcmp(b.rv, want));
				assert((size_t)b.objects == s.live.n);
			} else {
				assert(!strcmp(b.rv, a.rv));
				if (rc == -EPROTO)
					assert(b.errors > a.errors);
			}
			free(want);
		} else {
			rc = moat_k8s_test_feed(k, 0, false, p, len, chunk);
			assert(rc == 0 || rc == -EPROTO || rc == -EPIPE || rc == -ESTALE);
			moat_k8s_drain(k, on_event, &s);
			kstat(k, &b);
			assert((size_t)b.errors >= s.nerr);
			assert(b.events >= a.events);
			if (rc == -EPROTO || rc == -EPIPE)
				assert(b.errors > a.errors);
			if (b.events > a.events) {
				size_t ll = 0;
				char *want = nth_line_rv(p, len, b.events - a.events, &ll);
				assert(want && !strcmp(b.rv, want));
				assert(ll <= s.max_object_bytes);
				assert((size_t)b.objects == s.live.n);
				free(want);
			} else {
				assert(!strcmp(b.rv, a.rv));
			}
		}
		assert(s.live.n <= s.max_objects);
		a = b;
		if (!end)
			break;
		size -= len + 2;
		p = end + 2;
	}
	moat_k8s_stop(k);
	{
		size_t it = 0;
		void *v;
		while (hmap_next(&s.live, &it, NULL, NULL, &v))
			free(v);
		hmap_free(&s.live);
	}
	return 0;
}
