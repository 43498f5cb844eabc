/* SPDX-License-Identifier: Apache-2.0 */
#ifndef MOAT_API_H
#define MOAT_API_H

struct moatd;
struct moat_api;

struct moat_api_opts {
	const char *socket;      /* unix socket path */
	unsigned mode;           /* its permissions (0660) */
	const char *audit_log;   /* append-only JSON lines of changes; NULL: log only */
	unsigned short tcp_port; /* optional: HTTPS on this port (0: none) */
	const char *tls_cert;    /* PEM, contents */
	const char *tls_key;
};

/* Serves the control API on a unix socket (and optionally HTTPS). */
int moat_api_start(struct moatd *d, const struct moat_api_opts *o, struct moat_api **ret);
void moat_api_stop(struct moat_api *api);

#endif
