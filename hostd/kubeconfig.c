// SPDX-License-Identifier: Apache-2.0
/* Where the API server is and how to authenticate: a kubeconfig file or the
 * pod's service account (k8s.h).  Precedence follows client-go: *-data over
 * the file, a tokenFile over a static token. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "k8s.h"
#include "manifest.h"
#include "util.h"

#define MAX_PEM_BYTES (1u << 20)

static int seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void moat_k8s_conf_free(struct moat_k8s_conf *c)
{
	if (!c)
		return;
	free(c->server);
	free(c->ca_file);
	free(c->ca_data);
	free(c->token);
	free(c->token_file);
	free(c->cert_file);
	free(c->key_file);
	free(c->cert_data);
	free(c->key_data);
	free(c->context);
	memset(c, 0, sizeof(*c));
}

/* Standard base64, whitespace ignored; NUL-terminated result for PEM use. */
static int b64_decode(const char *in, char **out, size_t *outlen)
{
	static signed char map[256];
	size_t n = strlen(in), o = 0;
	unsigned acc = 0;
	int bits = 0, pad = 0;
	char *buf;

	if (!map['A']) {
		const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		memset(map, -1, sizeof(map));
		for (int i = 0; a[i]; i++)
			map[(unsigned char)a[i]] = (signed char)i;
	}
	if (n / 4 * 3 > MAX_PEM_BYTES)
		return -E2BIG;
	buf = xcalloc(1, n / 4 * 3 + 4);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)in[i];
		if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
			continue;
		if (ch == '=') {
			pad++;
			continue;
		}
		if (pad || map[ch] < 0)
			goto bad;
		acc = (acc << 6) | (unsigned)map[ch];
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	if (pad > 2)
		goto bad;
	buf[o] = 0;
	*out = buf;
	*outlen = o;
	return 0;
bad:
	free(buf);
	return -EINVAL;
}

/* path as written, or relative to the kubeconfig's directory. */
static char *resolve(const char *dir, const char *p)
{
	if (!p || !*p)
		return NULL;
	if (p[0] == '/' || !dir)
		return xstrdup(p);
	return xasprintf("%s/%s", dir, p);
}

static const char *str_field(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* The entry named name in a kubeconfig list (clusters, users, contexts). */
static const json_t *named(const json_t *doc, const char *list, const char *name, const char *inner)
{
	const json_t *a = json_object_get(doc, list), *e;
	size_t i;

	json_array_foreach(a, i, e)
	{
		const char *n = str_field(e, "name");
		if (n && !strcmp(n, name))
			return json_object_get(e, inner);
	}
	return NULL;
}

static int pem_field(const json_t *o, const char *key, const char *what, char **data, size_t *len, char *err,
		     size_t errlen, const char *src)
{
	const json_t *v = json_object_get(o, key);
	int rc;

	if (!v)
		return 0;
	if (!json_is_string(v))
		return seterr(err, errlen, -EINVAL, "%s: %s: %s is not a string", src, what, key);
	rc = b64_decode(json_string_value(v), data, len);
	if (rc)
		return seterr(err, errlen, rc, "%s: %s: %s is not valid base64", src, what, key);
	return 0;
}

int moat_k8s_conf_kubeconfig(const char *path, const char *context, struct moat_k8s_conf *out, char *err,
			     size_t errlen)
{
	static const char *const refused_user[] = { "exec", "auth-provider", "username", "password", "as",
						    NULL };
	static const char *const refused_cluster[] = { "proxy-url", "tls-server-name", NULL };
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	const json_t *doc, *ctx, *cl, *us, *v;
	const char *ctxname, *clname, *usname, *server;
	char *dcopy = NULL, *dir;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = moat_manifest_load_file(path, &docs, &errs);
	if (rc) {
		rc = seterr(err, errlen, rc, "%s", errs.n ? errs.v[0] : strerror(-rc));
		goto out;
	}
	if (docs.n != 1) {
		rc = seterr(err, errlen, -EINVAL, "%s: expected one document, found %zu", path, docs.n);
		goto out;
	}
	doc = docs.v[0].json;
	ctxname = context ? context : str_field(doc, "current-context");
	if (!ctxname || !*ctxname) {
		rc = seterr(err, errlen, -EINVAL, "%s: no current-context and no context given", path);
		goto out;
	}
	ctx = named(doc, "contexts", ctxname, "context");
	if (!ctx) {
		rc = seterr(err, errlen, -ENOENT, "%s: no context \"%s\"", path, ctxname);
		goto out;
	}
	clname = str_field(ctx, "cluster");
	usname = str_field(ctx, "user");
	cl = clname ? named(doc, "clusters", clname, "cluster") : NULL;
	if (!cl) {
		rc = seterr(err, errlen, -ENOENT, "%s: context \"%s\": no cluster \"%s\"", path, ctxname,
			    clname ? clname : "");
		goto out;
	}
	us = usname && *usname ? named(doc, "users", usname, "user") : NULL;
	if (usname && *usname && !us) {
		rc = seterr(err, errlen, -ENOENT, "%s: context \"%s\": no user \"%s\"", path, ctxname,
			    usname);
		goto out;
	}
	server = str_field(cl, "server");
	if (!server || (strncmp(server, "https://", 8) && strncmp(server, "http://", 7))) {
		rc = seterr(err, errlen, -EINVAL, "%s: cluster \"%s\": server must be an http(s) URL", path,
			    clname);
		goto out;
	}
	for (int i = 0; refused_cluster[i]; i++)
		if (json_object_get(cl, refused_cluster[i])) {
			rc = seterr(err, errlen, -EOPNOTSUPP, "%s: cluster \"%s\": %s is not supported", path,
				    clname, refused_cluster[i]);
			goto out;
		}
	for (int i = 0; us && refused_user[i]; i++)
		if (json_object_get(us, refused_user[i])) {
			rc = seterr(
				err, errlen, -EOPNOTSUPP,
				"%s: user \"%s\": %s is not supported; use a token, tokenFile or client certificate",
				path, usname, refused_user[i]);
			goto out;
		}

	dcopy = xstrdup(path);
	dir = dirname(dcopy);
	out->server = xstrdup(server);
	while (strlen(out->server) > 8 && out->server[strlen(out->server) - 1] == '/')
		out->server[strlen(out->server) - 1] = 0;
	out->context = xstrdup(ctxname);
	v = json_object_get(cl, "insecure-skip-tls-verify");
	out->insecure = json_is_true(v) || (json_is_string(v) && !strcmp(json_string_value(v), "true"));
	out->ca_file = resolve(dir, str_field(cl, "certificate-authority"));
	if ((rc = pem_field(cl, "certificate-authority-data", "cluster", &out->ca_data, &out->ca_len, err,
			    errlen, path)))
		goto out;
	if (us) {
		const char *tok = str_field(us, "token");
		out->token = tok && *tok ? xstrdup(tok) : NULL;
		out->token_file = resolve(dir, str_field(us, "tokenFile"));
		out->cert_file = resolve(dir, str_field(us, "client-certificate"));
		out->key_file = resolve(dir, str_field(us, "client-key"));
		if ((rc = pem_field(us, "client-certificate-data", "user", &out->cert_data, &out->cert_len,
				    err, errlen, path)) ||
		    (rc = pem_field(us, "client-key-data", "user", &out->key_data, &out->key_len, err, errlen,
				    path)))
			goto out;
		if (!!(out->cert_file || out->cert_data) != !!(out->key_file || out->key_data)) {
			rc = seterr(
				err, errlen, -EINVAL,
				"%s: user \"%s\": a client certificate needs a client key and the other way round",
				path, usname);
			goto out;
		}
	}
	rc = 0;
out:
	if (rc)
		moat_k8s_conf_free(out);
	free(dcopy);
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	return rc;
}

int moat_k8s_conf_in_cluster(const char *sa_dir, struct moat_k8s_conf *out, char *err, size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char *tok = NULL, *ca = NULL;
	struct stat st;

	memset(out, 0, sizeof(*out));
	if (!sa_dir)
		sa_dir = MOAT_K8S_SA_DIR;
	if (!host || !*host || !port || !*port)
		return seterr(
			err, errlen, -ENOENT,
			"not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set");
	for (const char *p = port; *p; p++)
		if (*p < '0' || *p > '9')
			return seterr(err, errlen, -EINVAL, "KUBERNETES_SERVICE_PORT \"%s\" is not a port",
				      port);
	tok = xasprintf("%s/token", sa_dir);
	if (access(tok, R_OK)) {
		int rc = -errno;
		seterr(err, errlen, rc, "%s: %s", tok, strerror(-rc));
		free(tok);
		return rc;
	}
	ca = xasprintf("%s/ca.crt", sa_dir);
	if (stat(ca, &st)) {
		free(ca); /* the system's CAs then, as client-go does */
		ca = NULL;
	}
	/* an IPv6 service address needs brackets */
	out->server = strchr(host, ':') ? xasprintf("https://[%s]:%s", host, port) :
					  xasprintf("https://%s:%s", host, port);
	out->token_file = tok;
	out->ca_file = ca;
	out->context = xstrdup("in-cluster");
	return 0;
}
