/* SPDX-License-Identifier: Apache-2.0 */
/* Who is calling the control API, and what may they see and change.
 *
 * Roles:
 *   platform-admin   everything
 *   namespace-admin  policies, flows, archives and reports of its namespaces;
 *                    may change NetworkPolicies in them
 *   viewer           read-only, its namespaces
 * Authentication: a bearer token.  Standalone: a token file maps tokens (or
 * their SHA-256) to users, roles and namespaces.  In a cluster: Kubernetes
 * TokenReview and SubjectAccessReview (auth_k8s).  Over the unix socket, a
 * caller with uid 0 is platform-admin (it could read the pinned maps
 * anyway); everyone else needs a token. */
#ifndef MOAT_AUTH_H
#define MOAT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum moat_role {
	MOAT_ROLE_NONE = 0,
	MOAT_ROLE_VIEWER,
	MOAT_ROLE_NS_ADMIN,
	MOAT_ROLE_PLATFORM_ADMIN,
};

#define MOAT_AUTH_MAX_NS 256

struct moat_principal {
	char user[128];
	enum moat_role role;
	size_t nns;
	char *ns[MOAT_AUTH_MAX_NS]; /* namespaces (ignored for platform-admin) */
	/* bit i: ns[i] is view-only for a namespace-admin (Kubernetes roles) */
	unsigned long long ns_read_only[MOAT_AUTH_MAX_NS / 64];
};

struct moat_auth;

/* tokens_file NULL: only uid 0 over the unix socket is let in. */
int moat_auth_new(const char *tokens_file, struct moat_auth **ret, char *err, size_t errlen);
void moat_auth_free(struct moat_auth *a);
/* Re-reads the token file; on error the old table stays. */
int moat_auth_reload(struct moat_auth *a, char *err, size_t errlen);
/* 0 and *p filled, or -EACCES (unknown or missing token). peer_uid is the
 * unix-socket peer's uid, or -1 over TCP. */
int moat_auth_check(struct moat_auth *a, const char *authorization, long peer_uid, struct moat_principal *p);
void moat_principal_clear(struct moat_principal *p);

const char *moat_role_name(enum moat_role r);
int moat_role_parse(const char *s, enum moat_role *r);
/* May p see (read) objects and flows of namespace ns? */
bool moat_principal_sees(const struct moat_principal *p, const char *ns);
/* May p change NetworkPolicies of namespace ns? */
bool moat_principal_may_change(const struct moat_principal *p, const char *ns);

/* ---- Kubernetes-backed callers (auth_k8s.c): TokenReview and
 * SubjectAccessReview through the API server; the role mapping is
 * documented there and in docs/kubernetes.md. */
struct moat_k8s_source;
struct moat_auth_k8s;
/* Bearer tokens the token file does not know are asked of the API server. */
void moat_auth_use_k8s(struct moat_auth *a, struct moat_k8s_source *src);
/* max_cache: tokens whose answers are kept (0: 512) */
struct moat_auth_k8s *moat_auth_k8s_new(struct moat_k8s_source *src, size_t max_cache);
void moat_auth_k8s_free(struct moat_auth_k8s *a);
/* 0 with *p; -EACCES (not authenticated), -EPERM (no moat permission),
 * -EAGAIN (the API server could not be asked). */
int moat_auth_k8s_check(struct moat_auth_k8s *a, const char *token, struct moat_principal *p);
void moat_auth_k8s_stats(struct moat_auth_k8s *a, uint64_t *reviews, uint64_t *sars, uint64_t *hits);

#endif
