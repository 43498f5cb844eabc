// SPDX-License-Identifier: Apache-2.0
/* moatd's Kubernetes mode: client events into the compiler.  See
 * k8s_source.h. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"
#include "k8s_source.h"
#include "util.h"

#define MAX_OBJ_ERRORS 256 /* objects with a decode error, kept for the status */

struct kind_seen {
	char kind[64];
	time_t last_event; /* last change delivered */
	char last_type[8];
	size_t bad; /* objects of this kind in error now */
};

struct moat_k8s_source {
	struct moat_k8s *k;
	struct moat_k8s_conf conf;
	bool synced; /* SYNCED drained */
	/* the main loop's own, read by the API under the daemon lock */
	struct hmap objerr; /* key -> message */
	size_t objerr_dropped;
	size_t nkinds;
	struct kind_seen kinds[64];
	/* namespaces, for the authorizer (another thread) */
	pthread_mutex_t nslock;
	struct hmap ns; /* name -> name */
};

static const char *const required[] = { "Namespace", "Node", "Pod", "Service", "NetworkPolicy", NULL };

int moat_k8s_source_start(const struct moat_k8s_opts *o, struct moat_k8s_source **ret, char *err,
			  size_t errlen)
{
	struct moat_k8s_source *s = xcalloc(1, sizeof(*s));
	struct moat_k8s_opts oo = *o;
	int rc;

	if (o->conf)
		rc = -EINVAL, snprintf(err, errlen, "give a kubeconfig or in-cluster, not a conf");
	else if (o->in_cluster)
		rc = moat_k8s_conf_in_cluster(o->sa_dir, &s->conf, err, errlen);
	else if (o->kubeconfig)
		rc = moat_k8s_conf_kubeconfig(o->kubeconfig, o->context, &s->conf, err, errlen);
	else
		rc = -EINVAL, snprintf(err, errlen, "no kubeconfig and not in-cluster");
	if (rc) {
		moat_k8s_conf_free(&s->conf);
		free(s);
		return rc;
	}
	hmap_init(&s->objerr);
	hmap_init(&s->ns);
	pthread_mutex_init(&s->nslock, NULL);
	oo.conf = &s->conf;
	rc = moat_k8s_start(&oo, &s->k, err, errlen);
	if (rc) {
		moat_k8s_source_stop(s);
		return rc;
	}
	*ret = s;
	return 0;
}

static void strmap_free(struct hmap *m)
{
	size_t it = 0;
	const void *k;
	void *v;

	while (hmap_next(m, &it, &k, NULL, &v)) {
		if (k != v)
			free((void *)k);
		free(v);
	}
	hmap_free(m);
}

void moat_k8s_source_stop(struct moat_k8s_source *s)
{
	if (!s)
		return;
	moat_k8s_stop(s->k);
	strmap_free(&s->objerr);
	strmap_free(&s->ns);
	pthread_mutex_destroy(&s->nslock);
	moat_k8s_conf_free(&s->conf);
	free(s);
}

void moat_k8s_source_resync(struct moat_k8s_source *s)
{
	moat_k8s_resync(s->k);
}

int moat_k8s_source_fd(const struct moat_k8s_source *s)
{
	return moat_k8s_fd(s->k);
}

const struct moat_k8s_conf *moat_k8s_source_conf(const struct moat_k8s_source *s)
{
	return &s->conf;
}

static struct kind_seen *seen(struct moat_k8s_source *s, const char *kind)
{
	for (size_t i = 0; i < s->nkinds; i++)
		if (!strcmp(s->kinds[i].kind, kind))
			return &s->kinds[i];
	if (s->nkinds == sizeof(s->kinds) / sizeof(s->kinds[0]))
		return NULL;
	snprintf(s->kinds[s->nkinds].kind, sizeof(s->kinds[0].kind), "%s", kind);
	return &s->kinds[s->nkinds++];
}

/* The object's current error, or none (msg NULL). */
static void objerr_set(struct moat_k8s_source *s, const char *key, const char *kind, const char *msg)
{
	const void *k;
	size_t it = 0, kl;
	void *v;
	struct kind_seen *ks = seen(s, kind);

	if (hmap_gets(&s->objerr, key)) {
		while (hmap_next(&s->objerr, &it, &k, &kl, &v))
			if (kl == strlen(key) && !memcmp(k, key, kl)) {
				hmap_del(&s->objerr, k, kl);
				free((void *)k);
				free(v);
				if (ks && ks->bad)
					ks->bad--;
				break;
			}
	}
	if (!msg)
		return;
	if (s->objerr.n >= MAX_OBJ_ERRORS) {
		s->objerr_dropped++;
		return;
	}
	k = xstrdup(key);
	hmap_put(&s->objerr, k, strlen(k), xstrdup(msg), NULL);
	if (ks)
		ks->bad++;
}

static void ns_update(struct moat_k8s_source *s, const char *key, bool present)
{
	const char *name = key + strlen("Namespace/");
	char *n;

	pthread_mutex_lock(&s->nslock);
	n = hmap_gets(&s->ns, name);
	if (present && !n) {
		n = xstrdup(name);
		hmap_put(&s->ns, n, strlen(n), n, NULL);
	} else if (!present && n) {
		hmap_del(&s->ns, n, strlen(n));
		free(n);
	}
	pthread_mutex_unlock(&s->nslock);
}

struct drain_ctx {
	struct moat_k8s_source *s;
	struct moat_compiler *c;
	moat_src_err_fn err;
	void *arg;
	int changed;
};

static void report(struct drain_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(struct drain_ctx *c, const char *fmt, ...)
{
	va_list ap;
	char *m;

	if (!c->err)
		return;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	if (m)
		c->err(c->arg, m);
	free(m);
}

static void on_event(void *arg, const struct moat_k8s_event *ev)
{
	struct drain_ctx *c = arg;
	struct moat_k8s_source *s = c->s;
	struct kind_seen *ks = ev->kind ? seen(s, ev->kind) : NULL;
	struct moat_object *o = NULL;
	char err[640];
	int rc;

	switch (ev->type) {
	case MOAT_K8S_UPSERT:
		if (ks) {
			ks->last_event = time(NULL);
			snprintf(ks->last_type, sizeof(ks->last_type), "upsert");
		}
		rc = moat_decode(ev->obj, "kubernetes", &o, err, sizeof(err));
		if (rc) {
			/* the compiler keeps the last good version */
			objerr_set(s, ev->key, ev->kind, err);
			report(c, "%s; the last good version of %s stays enforced", err, ev->key);
			return;
		}
		objerr_set(s, ev->key, ev->kind, NULL);
		if (!o)
			return;
		if (ev->kind && !strcmp(ev->kind, "Namespace"))
			ns_update(s, ev->key, true);
		if (!moat_compiler_apply(c->c, o))
			c->changed++;
		return;
	case MOAT_K8S_DELETE:
		if (ks) {
			ks->last_event = time(NULL);
			snprintf(ks->last_type, sizeof(ks->last_type), "delete");
		}
		objerr_set(s, ev->key, ev->kind, NULL);
		if (ev->kind && !strcmp(ev->kind, "Namespace"))
			ns_update(s, ev->key, false);
		if (!moat_compiler_delete(c->c, ev->key))
			c->changed++;
		return;
	case MOAT_K8S_SYNCED:
		s->synced = true;
		return;
	case MOAT_K8S_ERROR:
		report(c, "Kubernetes API: %s", ev->msg);
		return;
	}
}

int moat_k8s_source_drain(struct moat_k8s_source *s, struct moat_compiler *comp, moat_src_err_fn err,
			  void *arg)
{
	struct drain_ctx c = { .s = s, .c = comp, .err = err, .arg = arg };

	moat_k8s_drain(s->k, on_event, &c);
	return c.changed;
}

bool moat_k8s_source_ready(struct moat_k8s_source *s, char *why, size_t whylen)
{
	json_t *st, *kinds, *kd;
	size_t i;
	bool ok = true;

	if (!s->synced) {
		snprintf(why, whylen, "waiting for the first list of every kind");
		return false;
	}
	st = moat_k8s_status(s->k);
	kinds = json_object_get(st, "kinds");
	json_array_foreach(kinds, i, kd)
	{
		const char *kind = json_string_value(json_object_get(kd, "kind"));
		for (int r = 0; ok && kind && required[r]; r++)
			if (!strcmp(kind, required[r]) &&
			    json_integer_value(json_object_get(kd, "lists")) == 0) {
				snprintf(why, whylen, "%s (required) has never been listed: %s", kind,
					 json_string_value(json_object_get(kd, "last_error")) ?:
						 "no answer yet");
				ok = false;
			}
	}
	json_decref(st);
	return ok;
}

json_t *moat_k8s_source_status(struct moat_k8s_source *s, bool detail)
{
	json_t *st = moat_k8s_status(s->k), *kinds = json_object_get(st, "kinds"), *kd, *errs;
	char why[512];
	size_t i;

	json_object_set_new(st, "ready", json_boolean(moat_k8s_source_ready(s, why, sizeof(why))));
	if (!json_is_true(json_object_get(st, "ready")))
		json_object_set_new(st, "waiting_for", json_string(why));
	json_array_foreach(kinds, i, kd)
	{
		const char *state = json_string_value(json_object_get(kd, "state"));
		struct kind_seen *ks = seen(s, json_string_value(json_object_get(kd, "kind")));

		json_object_set_new(kd, "connected", json_boolean(state && !strcmp(state, "watching")));
		if (ks && ks->last_event)
			json_object_set_new(kd, "last_event",
					    json_pack("{s:s,s:I}", "type", ks->last_type, "age_s",
						      (json_int_t)(time(NULL) - ks->last_event)));
		else
			json_object_set_new(kd, "last_event", json_null());
		json_object_set_new(kd, "objects_in_error", json_integer(ks ? (json_int_t)ks->bad : 0));
		if (!detail)
			json_object_del(kd, "last_error");
	}
	if (detail) {
		size_t it = 0;
		void *v;
		errs = json_array();
		while (hmap_next(&s->objerr, &it, NULL, NULL, &v))
			json_array_append_new(errs, json_string(v));
		json_object_set_new(st, "object_errors", errs);
		if (s->objerr_dropped)
			json_object_set_new(st, "object_errors_not_kept",
					    json_integer((json_int_t)s->objerr_dropped));
	} else {
		json_object_del(st, "server");
		json_object_del(st, "context");
	}
	return st;
}

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 256);
		b->p = xrealloc(b->p, b->cap);
	}
}

char *moat_k8s_source_metrics(struct moat_k8s_source *s)
{
	json_t *st = moat_k8s_source_status(s, false), *kinds = json_object_get(st, "kinds"), *kd;
	struct sbuf b = { .p = xcalloc(1, 4096), .cap = 4096 };
	static const struct {
		const char *field, *name, *type, *help;
	} m[] = {
		{ "connected", "moat_k8s_watch_connected", "gauge", "1 while the kind's watch is open." },
		{ "objects", "moat_k8s_objects", "gauge", "Objects known per kind." },
		{ "objects_in_error", "moat_k8s_objects_in_error", "gauge",
		  "Objects whose current version does not decode (the last good one is enforced)." },
		{ "events", "moat_k8s_watch_events_total", "counter", "Watch events received." },
		{ "lists", "moat_k8s_lists_total", "counter", "Complete lists." },
		{ "relists", "moat_k8s_relists_total", "counter", "Lists forced by 410 Gone." },
		{ "reconnects", "moat_k8s_reconnects_total", "counter", "Reconnects after a failure." },
		{ "errors", "moat_k8s_errors_total", "counter", "Errors: connection, HTTP, stream, limits." },
		{ "last_error_time", "moat_k8s_last_error_timestamp_seconds", "gauge",
		  "When the last error happened." },
	};
	size_t i;

	sb(&b,
	   "# HELP moat_k8s_synced 1 once every kind has been listed and the first generation may be built.\n"
	   "# TYPE moat_k8s_synced gauge\nmoat_k8s_synced %d\n",
	   json_is_true(json_object_get(st, "ready")));
	for (size_t f = 0; f < sizeof(m) / sizeof(m[0]); f++) {
		sb(&b, "# HELP %s %s\n# TYPE %s %s\n", m[f].name, m[f].help, m[f].name, m[f].type);
		json_array_foreach(kinds, i, kd)
		{
			json_t *v = json_object_get(kd, m[f].field);
			sb(&b, "%s{resource=\"%s\"} %lld\n", m[f].name,
			   json_string_value(json_object_get(kd, "resource")),
			   json_is_boolean(v) ? (long long)json_is_true(v) :
						(long long)json_integer_value(v));
		}
	}
	sb(&b,
	   "# HELP moat_k8s_last_event_age_seconds Seconds since the kind's last change arrived (-1: none yet).\n"
	   "# TYPE moat_k8s_last_event_age_seconds gauge\n");
	json_array_foreach(kinds, i, kd)
	{
		json_t *le = json_object_get(kd, "last_event");
		sb(&b, "moat_k8s_last_event_age_seconds{resource=\"%s\"} %lld\n",
		   json_string_value(json_object_get(kd, "resource")),
		   json_is_object(le) ? (long long)json_integer_value(json_object_get(le, "age_s")) : -1LL);
	}
	json_decref(st);
	return b.p;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t moat_k8s_source_namespaces(struct moat_k8s_source *s, char ***names)
{
	size_t n = 0, it = 0;
	void *v;

	pthread_mutex_lock(&s->nslock);
	*names = xcalloc(s->ns.n + 1, sizeof(char *));
	while (hmap_next(&s->ns, &it, NULL, NULL, &v))
		(*names)[n++] = xstrdup(v);
	pthread_mutex_unlock(&s->nslock);
	qsort(*names, n, sizeof(char *), cmp_str);
	return n;
}
