// SPDX-License-Identifier: Apache-2.0
/* Token-file authentication and role checks.  See auth.h.
 *
 *   tokens:
 *   - user: alice
 *     role: namespace-admin
 *     namespaces: [shop, shop-staging]
 *     tokenSha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
 *   - user: ci
 *     role: viewer
 *     namespaces: [shop]
 *     token: plain-text-token      # accepted, but prefer tokenSha256
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "auth.h"
#include "manifest.h"
#include "util.h"

#define MAX_TOKENS 10000

struct tok {
	unsigned char sha[SHA256_DIGEST_LENGTH];
	struct moat_principal p;
};

struct moat_auth {
	char *file;
	pthread_mutex_t lock;
	struct tok *toks;
	size_t n;
	struct moat_auth_k8s *k8s; /* Kubernetes mode: TokenReview/SAR */
};

static const char *const role_names[] = {
	[MOAT_ROLE_NONE] = "none",
	[MOAT_ROLE_VIEWER] = "viewer",
	[MOAT_ROLE_NS_ADMIN] = "namespace-admin",
	[MOAT_ROLE_PLATFORM_ADMIN] = "platform-admin",
};

const char *moat_role_name(enum moat_role r)
{
	return r <= MOAT_ROLE_PLATFORM_ADMIN ? role_names[r] : "none";
}

int moat_role_parse(const char *s, enum moat_role *r)
{
	for (int i = MOAT_ROLE_VIEWER; i <= MOAT_ROLE_PLATFORM_ADMIN; i++)
		if (!strcmp(s, role_names[i])) {
			*r = i;
			return 0;
		}
	return -EINVAL;
}

void moat_principal_clear(struct moat_principal *p)
{
	for (size_t i = 0; i < p->nns; i++)
		free(p->ns[i]);
	memset(p, 0, sizeof(*p));
}

static void principal_copy(struct moat_principal *dst, const struct moat_principal *src)
{
	*dst = *src;
	for (size_t i = 0; i < src->nns; i++)
		dst->ns[i] = xstrdup(src->ns[i]);
}

bool moat_principal_sees(const struct moat_principal *p, const char *ns)
{
	if (p->role == MOAT_ROLE_PLATFORM_ADMIN)
		return true;
	if (p->role == MOAT_ROLE_NONE || !ns)
		return false;
	for (size_t i = 0; i < p->nns; i++)
		if (!strcmp(p->ns[i], ns))
			return true;
	return false;
}

bool moat_principal_may_change(const struct moat_principal *p, const char *ns)
{
	if (p->role == MOAT_ROLE_PLATFORM_ADMIN)
		return true;
	if (p->role != MOAT_ROLE_NS_ADMIN || !ns)
		return false;
	for (size_t i = 0; i < p->nns; i++)
		if (!strcmp(p->ns[i], ns))
			return !(p->ns_read_only[i / 64] & (1ull << (i % 64)));
	return false;
}

void moat_auth_use_k8s(struct moat_auth *a, struct moat_k8s_source *src)
{
	a->k8s = moat_auth_k8s_new(src, 0);
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' :
	       c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 :
				      -1;
}

static void toks_free(struct tok *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		moat_principal_clear(&t[i].p);
	free(t);
}

static int load(const char *file, struct tok **ret, size_t *retn, char *err, size_t errlen)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	struct tok *t = NULL;
	size_t n = 0, i;
	json_t *list, *e;
	int rc;

	rc = moat_manifest_load_file(file, &docs, &errs);
	if (rc) {
		snprintf(err, errlen, "%s", errs.n ? errs.v[0] : strerror(-rc));
		goto out;
	}
	rc = -EINVAL;
	if (docs.n != 1 || !json_is_array(list = json_object_get(docs.v[0].json, "tokens"))) {
		snprintf(err, errlen, "%s: expected one document with a tokens list", file);
		goto out;
	}
	if (json_array_size(list) > MAX_TOKENS) {
		snprintf(err, errlen, "%s: more than %d tokens", file, MAX_TOKENS);
		goto out;
	}
	t = xcalloc(json_array_size(list) ? json_array_size(list) : 1, sizeof(*t));
	json_array_foreach(list, i, e)
	{
		struct tok *k = &t[n];
		const char *user = json_string_value(json_object_get(e, "user"));
		const char *role = json_string_value(json_object_get(e, "role"));
		const char *plain = json_string_value(json_object_get(e, "token"));
		const char *sha = json_string_value(json_object_get(e, "tokenSha256"));
		json_t *nss = json_object_get(e, "namespaces"), *nsv;
		size_t j;

		if (!user || !*user || strlen(user) >= sizeof(k->p.user)) {
			snprintf(err, errlen, "%s: tokens[%zu].user: a name is required", file, i);
			goto out;
		}
		if (!role || moat_role_parse(role, &k->p.role)) {
			snprintf(err, errlen,
				 "%s: tokens[%zu].role: platform-admin, namespace-admin or viewer", file, i);
			goto out;
		}
		if (!!plain == !!sha) {
			snprintf(err, errlen, "%s: tokens[%zu]: exactly one of token and tokenSha256", file,
				 i);
			goto out;
		}
		if (plain) {
			if (strlen(plain) < 16) {
				snprintf(err, errlen, "%s: tokens[%zu].token: at least 16 characters", file,
					 i);
				goto out;
			}
			SHA256((const unsigned char *)plain, strlen(plain), k->sha);
		} else {
			if (strlen(sha) != 64) {
				snprintf(err, errlen, "%s: tokens[%zu].tokenSha256: 64 hex digits", file, i);
				goto out;
			}
			for (int b = 0; b < 32; b++) {
				int hi = hexval(sha[2 * b]), lo = hexval(sha[2 * b + 1]);
				if (hi < 0 || lo < 0) {
					snprintf(err, errlen, "%s: tokens[%zu].tokenSha256: 64 hex digits",
						 file, i);
					goto out;
				}
				k->sha[b] = (unsigned char)(hi << 4 | lo);
			}
		}
		snprintf(k->p.user, sizeof(k->p.user), "%s", user);
		if (k->p.role != MOAT_ROLE_PLATFORM_ADMIN) {
			if (!json_is_array(nss) || !json_array_size(nss)) {
				snprintf(err, errlen, "%s: tokens[%zu].namespaces: required for %s", file, i,
					 role);
				goto out;
			}
			if (json_array_size(nss) > MOAT_AUTH_MAX_NS) {
				snprintf(err, errlen, "%s: tokens[%zu].namespaces: at most %d", file, i,
					 MOAT_AUTH_MAX_NS);
				goto out;
			}
			json_array_foreach(nss, j, nsv)
			{
				if (!json_is_string(nsv)) {
					snprintf(err, errlen, "%s: tokens[%zu].namespaces[%zu]: a name", file,
						 i, j);
					goto out;
				}
				k->p.ns[k->p.nns++] = xstrdup(json_string_value(nsv));
			}
		}
		n++;
	}
	*ret = t;
	*retn = n;
	t = NULL;
	rc = 0;
out:
	if (t)
		toks_free(t, n + 1);
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	return rc;
}

int moat_auth_new(const char *tokens_file, struct moat_auth **ret, char *err, size_t errlen)
{
	struct moat_auth *a = xcalloc(1, sizeof(*a));
	int rc;

	pthread_mutex_init(&a->lock, NULL);
	if (tokens_file) {
		a->file = xstrdup(tokens_file);
		rc = load(tokens_file, &a->toks, &a->n, err, errlen);
		if (rc) {
			moat_auth_free(a);
			return rc;
		}
	}
	*ret = a;
	return 0;
}

void moat_auth_free(struct moat_auth *a)
{
	if (!a)
		return;
	toks_free(a->toks, a->n);
	moat_auth_k8s_free(a->k8s);
	free(a->file);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

int moat_auth_reload(struct moat_auth *a, char *err, size_t errlen)
{
	struct tok *t;
	size_t n;
	int rc;

	if (!a->file)
		return 0;
	rc = load(a->file, &t, &n, err, errlen);
	if (rc)
		return rc;
	pthread_mutex_lock(&a->lock);
	toks_free(a->toks, a->n);
	a->toks = t;
	a->n = n;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

int moat_auth_check(struct moat_auth *a, const char *authorization, long peer_uid, struct moat_principal *p)
{
	unsigned char sha[SHA256_DIGEST_LENGTH];
	const char *tok;
	int rc = -EACCES;

	memset(p, 0, sizeof(*p));
	if (authorization && !strncasecmp(authorization, "Bearer ", 7)) {
		tok = authorization + 7;
		SHA256((const unsigned char *)tok, strlen(tok), sha);
		pthread_mutex_lock(&a->lock);
		for (size_t i = 0; i < a->n; i++)
			/* constant time per comparison: no timing oracle on tokens */
			if (!CRYPTO_memcmp(a->toks[i].sha, sha, sizeof(sha))) {
				principal_copy(p, &a->toks[i].p);
				rc = 0;
				break;
			}
		pthread_mutex_unlock(&a->lock);
		if (rc && a->k8s && *tok)
			rc = moat_auth_k8s_check(a->k8s, tok, p);
		return rc;
	}
	if (peer_uid == 0) {
		snprintf(p->user, sizeof(p->user), "uid:0");
		p->role = MOAT_ROLE_PLATFORM_ADMIN;
		return 0;
	}
	return rc;
}
