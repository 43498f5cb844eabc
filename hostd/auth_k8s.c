// SPDX-License-Identifier: Apache-2.0
/* Control-API callers authenticated and authorized by the Kubernetes API
 * server (auth.h): TokenReview says who a bearer token belongs to,
 * SubjectAccessReviews say what that user may do in moat.
 *
 * The mapping (docs/kubernetes.md), all through ordinary RBAC rules:
 *   platform-admin    verb "admin" on flows.moat.io, cluster-wide
 *                     (a ClusterRoleBinding; cluster-admin has it)
 *   viewer of NS      verb "get" on flows.moat.io in NS (a RoleBinding in
 *                     NS, or a ClusterRoleBinding for every namespace)
 *   namespace-admin   viewer of NS and "update" on
 *   of NS             networkpolicies.networking.k8s.io in NS (the built-in
 *                     admin and edit roles have it)
 * flows.moat.io is a virtual resource: no object exists, the rules only
 * name it.  A user who is viewer of some namespaces and namespace-admin of
 * others gets role namespace-admin with the viewer ones marked read-only.
 *
 * Cost: one TokenReview, three cluster-wide SARs, and per namespace the API
 * has (at most MAX_NS_CHECKED) one or two SARs, on a cache miss.  Results
 * are cached per token (SHA-256) for TTL_OK (denials TTL_DENIED), at most
 * max_cache tokens (default MAX_CACHE).  When the API server cannot be asked the answer is
 * -EAGAIN and nothing is cached. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "auth.h"
#include "k8s_source.h"
#include "util.h"

#define MAX_CACHE      512 /* default */
#define TTL_OK_NS      (10ull * 1000000000ull)
#define TTL_DENIED_NS  (5ull * 1000000000ull)
#define MAX_NS_CHECKED 1024
#define MAX_ANSWER     (1u << 20)

struct centry {
	unsigned char sha[SHA256_DIGEST_LENGTH];
	uint64_t expires_ns;
	int rc;
	struct moat_principal p;
};

struct moat_auth_k8s {
	struct moat_k8s_source *src;
	pthread_mutex_t lock;
	struct centry *cache;
	size_t n, max;
	uint64_t reviews, sars, hits;
};

struct moat_auth_k8s *moat_auth_k8s_new(struct moat_k8s_source *src, size_t max_cache)
{
	struct moat_auth_k8s *a = xcalloc(1, sizeof(*a));

	a->src = src;
	a->max = max_cache ? max_cache : MAX_CACHE;
	pthread_mutex_init(&a->lock, NULL);
	a->cache = xcalloc(a->max, sizeof(*a->cache));
	return a;
}

void moat_auth_k8s_free(struct moat_auth_k8s *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++)
		moat_principal_clear(&a->cache[i].p);
	free(a->cache);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

struct answer {
	char *p;
	size_t len;
};

static size_t answer_cb(char *d, size_t sz, size_t n, void *arg)
{
	struct answer *b = arg;

	if (b->len + sz * n > MAX_ANSWER)
		return 0;
	b->p = xrealloc(b->p, b->len + sz * n + 1);
	memcpy(b->p + b->len, d, sz * n);
	b->len += sz * n;
	b->p[b->len] = 0;
	return sz * n;
}

static char *read_token(const char *file)
{
	FILE *f = fopen(file, "re");
	char *t = xcalloc(1, 65537);
	size_t n;

	if (!f) {
		free(t);
		return NULL;
	}
	n = fread(t, 1, 65536, f);
	fclose(f);
	while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
		t[--n] = 0;
	return t;
}

/* POSTs body to path; the parsed answer, or NULL when the server could not
 * be asked (or did not answer 200/201). */
static json_t *post(const struct moat_k8s_conf *c, CURL *h, const char *path, json_t *body)
{
	struct curl_slist *hdrs = NULL;
	struct answer b = { 0 };
	char *url = xasprintf("%s%s", c->server, path), *data = json_dumps(body, JSON_COMPACT);
	char *tok = c->token_file ? read_token(c->token_file) : NULL;
	json_t *ret = NULL;
	long code = 0;

	if (!tok && c->token)
		tok = xstrdup(c->token);
	curl_easy_reset(h);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (tok) {
		char *a = xasprintf("Authorization: Bearer %s", tok);
		hdrs = curl_slist_append(hdrs, a);
		OPENSSL_cleanse(a, strlen(a));
		free(a);
		OPENSSL_cleanse(tok, strlen(tok));
		free(tok);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, data);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "moatd");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, answer_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	if (c->ca_data) {
		struct curl_blob bl = { .data = c->ca_data, .len = c->ca_len, .flags = CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &bl);
	} else if (c->ca_file) {
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	}
	if (c->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (c->cert_data) {
		struct curl_blob bl = { .data = c->cert_data, .len = c->cert_len, .flags = CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &bl);
		curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
	} else if (c->cert_file) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
	}
	if (c->key_data) {
		struct curl_blob bl = { .data = c->key_data, .len = c->key_len, .flags = CURL_BLOB_COPY };
		curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &bl);
		curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	} else if (c->key_file) {
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
	}
	if (curl_easy_perform(h) == CURLE_OK &&
	    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && (code == 200 || code == 201) &&
	    b.p)
		ret = json_loadb(b.p, b.len, 0, NULL);
	curl_slist_free_all(hdrs);
	OPENSSL_cleanse(data, strlen(data));
	free(data);
	free(url);
	free(b.p);
	return ret;
}

/* 1 allowed, 0 not, -EAGAIN unanswered. */
static int sar(struct moat_auth_k8s *a, CURL *h, json_t *user, const char *ns, const char *verb,
	       const char *group, const char *resource)
{
	json_t *ra = json_pack("{s:s,s:s,s:s}", "verb", verb, "group", group, "resource", resource);
	json_t *spec = json_deep_copy(user), *body, *ans;
	int rc;

	if (ns)
		json_object_set_new(ra, "namespace", json_string(ns));
	json_object_set_new(spec, "resourceAttributes", ra);
	body = json_pack("{s:s,s:s,s:o}", "apiVersion", "authorization.k8s.io/v1", "kind",
			 "SubjectAccessReview", "spec", spec);
	ans = post(moat_k8s_source_conf(a->src), h, "/apis/authorization.k8s.io/v1/subjectaccessreviews",
		   body);
	__atomic_add_fetch(&a->sars, 1, __ATOMIC_RELAXED);
	json_decref(body);
	if (!ans)
		return -EAGAIN;
	rc = json_is_true(json_object_get(json_object_get(ans, "status"), "allowed"));
	json_decref(ans);
	return rc;
}

/* Asks the API server; fills p. */
static int review(struct moat_auth_k8s *a, const char *token, struct moat_principal *p)
{
	CURL *h = curl_easy_init();
	json_t *body, *ans = NULL, *st, *u, *user = NULL;
	const char *name;
	char **names = NULL;
	size_t nn = 0;
	bool all_view, all_change, any_change = false;
	int rc, r;

	if (!h)
		return -ENOMEM;
	body = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "authentication.k8s.io/v1", "kind", "TokenReview",
			 "spec", "token", token);
	ans = post(moat_k8s_source_conf(a->src), h, "/apis/authentication.k8s.io/v1/tokenreviews", body);
	__atomic_add_fetch(&a->reviews, 1, __ATOMIC_RELAXED);
	json_decref(body);
	if (!ans) {
		rc = -EAGAIN;
		goto out;
	}
	st = json_object_get(ans, "status");
	u = json_object_get(st, "user");
	name = json_string_value(json_object_get(u, "username"));
	if (!json_is_true(json_object_get(st, "authenticated")) || !name || !*name ||
	    strlen(name) >= sizeof(p->user)) {
		rc = -EACCES;
		goto out;
	}
	snprintf(p->user, sizeof(p->user), "%s", name);
	/* the SARs ask about this user exactly as the server knows them */
	user = json_pack("{s:s}", "user", name);
	if (json_is_string(json_object_get(u, "uid")))
		json_object_set(user, "uid", json_object_get(u, "uid"));
	if (json_is_array(json_object_get(u, "groups")))
		json_object_set(user, "groups", json_object_get(u, "groups"));
	if (json_is_object(json_object_get(u, "extra")))
		json_object_set(user, "extra", json_object_get(u, "extra"));

	if ((r = sar(a, h, user, NULL, "admin", "moat.io", "flows")) < 0) {
		rc = r;
		goto out;
	}
	if (r) {
		p->role = MOAT_ROLE_PLATFORM_ADMIN;
		rc = 0;
		goto out;
	}
	if ((r = sar(a, h, user, NULL, "get", "moat.io", "flows")) < 0) {
		rc = r;
		goto out;
	}
	all_view = r;
	if ((r = sar(a, h, user, NULL, "update", "networking.k8s.io", "networkpolicies")) < 0) {
		rc = r;
		goto out;
	}
	all_change = r && all_view;
	nn = moat_k8s_source_namespaces(a->src, &names);
	for (size_t i = 0; i < nn && i < MAX_NS_CHECKED && p->nns < MOAT_AUTH_MAX_NS; i++) {
		bool change;
		if (!all_view) {
			if ((r = sar(a, h, user, names[i], "get", "moat.io", "flows")) < 0) {
				rc = r;
				goto out;
			}
			if (!r)
				continue;
		}
		change = all_change;
		if (!change) {
			if ((r = sar(a, h, user, names[i], "update", "networking.k8s.io",
				     "networkpolicies")) < 0) {
				rc = r;
				goto out;
			}
			change = r;
		}
		if (!change)
			p->ns_read_only[p->nns / 64] |= 1ull << (p->nns % 64);
		any_change |= change;
		p->ns[p->nns++] = xstrdup(names[i]);
	}
	p->role = any_change ? MOAT_ROLE_NS_ADMIN : p->nns ? MOAT_ROLE_VIEWER : MOAT_ROLE_NONE;
	rc = p->nns ? 0 : -EPERM;
out:
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	free(names);
	json_decref(user);
	json_decref(ans);
	curl_easy_cleanup(h);
	return rc;
}

static void principal_dup(struct moat_principal *dst, const struct moat_principal *src)
{
	*dst = *src;
	for (size_t i = 0; i < src->nns; i++)
		dst->ns[i] = xstrdup(src->ns[i]);
}

int moat_auth_k8s_check(struct moat_auth_k8s *a, const char *token, struct moat_principal *p)
{
	unsigned char sha[SHA256_DIGEST_LENGTH];
	uint64_t now = moat_now_ns();
	struct centry *slot = NULL;
	int rc;

	memset(p, 0, sizeof(*p));
	SHA256((const unsigned char *)token, strlen(token), sha);
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n; i++)
		if (!CRYPTO_memcmp(a->cache[i].sha, sha, sizeof(sha)) && a->cache[i].expires_ns > now) {
			rc = a->cache[i].rc;
			if (!rc)
				principal_dup(p, &a->cache[i].p);
			a->hits++;
			pthread_mutex_unlock(&a->lock);
			return rc;
		}
	pthread_mutex_unlock(&a->lock);

	rc = review(a, token, p);
	if (rc == -EAGAIN || rc == -ENOMEM) {
		moat_principal_clear(p);
		return rc;
	}
	pthread_mutex_lock(&a->lock);
	/* the same token again, an expired entry, a free one, or the oldest.
	 * (NOLINTs: a->cache has max >= 1 entries from moat_auth_k8s_new; clang's
	 * analyzer forgets the pointer across pthread_mutex_lock.) */
	for (size_t i = 0; i < a->n && !slot; i++)
		if (!CRYPTO_memcmp(a->cache[i].sha, sha, sizeof(sha)) ||
		    a->cache[i].expires_ns <= now) /* NOLINT(clang-analyzer-core.NullDereference) */
			slot = &a->cache[i];
	if (!slot && a->n < a->max)
		slot = &a->cache[a->n++];
	if (!slot) {
		slot = &a->cache[0];
		for (size_t i = 1; i < a->n; i++) {
			/* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
			if (a->cache[i].expires_ns < slot->expires_ns)
				slot = &a->cache[i];
		}
	}
	moat_principal_clear(&slot->p);
	memcpy(slot->sha, sha, sizeof(sha)); /* NOLINT(clang-analyzer-core.NonNullParamChecker) */
	slot->rc = rc;
	slot->expires_ns = now + (rc ? TTL_DENIED_NS : TTL_OK_NS);
	if (!rc)
		principal_dup(&slot->p, p);
	pthread_mutex_unlock(&a->lock);
	if (rc)
		moat_principal_clear(p);
	return rc;
}

void moat_auth_k8s_stats(struct moat_auth_k8s *a, uint64_t *reviews, uint64_t *sars, uint64_t *hits)
{
	*reviews = __atomic_load_n(&a->reviews, __ATOMIC_RELAXED);
	*sars = __atomic_load_n(&a->sars, __ATOMIC_RELAXED);
	pthread_mutex_lock(&a->lock);
	*hits = a->hits;
	pthread_mutex_unlock(&a->lock);
}
