// SPDX-License-Identifier: Apache-2.0
/* moatd's configuration file: YAML or JSON, table-driven.  Flags given on
 * the command line win over the file; SIGHUP re-reads the file and applies
 * what can change at run time (marked `live` below).
 *
 *   node: n1
 *   manifests: /etc/moat/manifests
 *   logLevel: info
 *   allowLocalNode: true
 *   conntrack: {tcpEstablishedSeconds: 21600, tcpCloseSeconds: 10, otherSeconds: 60, synSeconds: 60}
 *   events: {sampleEvery: 0, denyEventsPerSecond: 1000, denyEventsBurst: 2000, snaplen: 128}
 *   archive: {dir: /var/lib/moat/archive, segmentSize: 64Mi, segmentAge: 1h, maxAge: 7d,
 *             maxSize: 1Gi, totalSize: 20Gi, namespaces: {shop: {maxAge: 30d, maxSize: 5Gi}}}
 *             (docs/archives.md)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "archive.h" /* archive settings */
#include "config.h"
#include "log.h"
#include "manifest.h"
#include "util.h"

enum kind {
	K_STR,
	K_BOOL,
	K_U32,
	K_MODE,
	K_LOG,
	K_OCTAL,
	K_ARCH /* archive.c checks it */
};

struct field {
	const char *path; /* dotted JSON path */
	enum kind kind;
	size_t off;
	bool live;    /* may change on SIGHUP */
	unsigned max; /* K_U32: upper bound */
};

#define F(p, k, m, live, max)                                     \
	{                                                         \
		p, k, offsetof(struct moatd_config, m), live, max \
	}

static const struct field fields[] = {
	F("node", K_STR, node, false, 0), F("manifests", K_STR, manifests, false, 0),
	F("pinDir", K_STR, pin_dir, false, 0), F("socket", K_STR, socket, false, 0),
	F("socketMode", K_OCTAL, socket_mode, false, 0777), F("mode", K_MODE, mode, false, 0),
	F("netnsDirs", K_STR, netns_dirs, false, 0), F("uplink", K_STR, uplink, false, 0),
	F("vethPrefix", K_STR, veth_prefixes, false, 0),
	F("hwProfiles", K_STR, hw_profiles, false, 0),            /* issue 6 */
	F("prefilterShadow", K_BOOL, prefilter_shadow, false, 0), /* issue 6 */
	F("kubeconfig", K_STR, kubeconfig, false, 0), F("inCluster", K_BOOL, in_cluster, false, 0),
	F("serviceAccountDir", K_STR, sa_dir, false, 0),
	F("kubernetes.watchTimeoutSeconds", K_U32, k8s_watch_s, false, 3600),
	F("kubernetes.backoffMaxMs", K_U32, k8s_backoff_max_ms, false, 600000),
	F("kubernetes.idleTimeoutMs", K_U32, k8s_idle_ms, false, 3600000),
	F("tokensFile", K_STR, tokens_file, false, 0), F("auditLog", K_STR, audit_log, false, 0),
	F("apiPort", K_U32, api_port, false, 65535), F("tlsCert", K_STR, tls_cert, false, 0),
	F("tlsKey", K_STR, tls_key, false, 0), F("allowLocalNode", K_BOOL, allow_local_node, true, 0),
	F("revokeEstablished", K_BOOL, revoke, true, 0), F("enforce", K_BOOL, enforce, true, 0),
	F("maxPolicyEntries", K_U32, max_policy, false, 1u << 26), F("logLevel", K_LOG, log_level, true, 0),
	F("conntrack.tcpEstablishedSeconds", K_U32, ct_tcp_s, true, 7 * 86400),
	F("conntrack.tcpCloseSeconds", K_U32, ct_close_s, true, 3600),
	F("conntrack.otherSeconds", K_U32, ct_other_s, true, 86400),
	F("conntrack.synSeconds", K_U32, ct_syn_s, true, 3600),
	F("conntrack.gcIntervalMs", K_U32, gc_interval_ms, true, 3600000),
	F("events.sampleEvery", K_U32, sample_every, true, 1u << 30),
	F("events.denyEventsPerSecond", K_U32, deny_rate, true, 100000000),
	F("events.denyEventsBurst", K_U32, deny_burst, true, 100000000),
	F("events.snaplen", K_U32, snaplen, true, 1024),
	/* ---- archive (flight recorder, archive.c): strings checked there ---- */
	F("archive.dir", K_STR, archive_dir, false, 0),
	F("archive.segmentSize", K_ARCH, archive_segment_size, true, 0),
	F("archive.segmentAge", K_ARCH, archive_segment_age, true, 0),
	F("archive.maxAge", K_ARCH, archive_max_age, true, 0),
	F("archive.maxSize", K_ARCH, archive_max_size, true, 0),
	F("archive.totalSize", K_ARCH, archive_total_size, true, 0),
	F("archive.queueSize", K_ARCH, archive_queue_size, false, 0),
	F("archive.namespaces", K_ARCH, archive_namespaces, true, 0),
	/* ---- end archive ---- */
};

void moatd_config_defaults(struct moatd_config *c)
{
	memset(c, 0, sizeof(*c));
	c->allow_local_node = true;
	c->revoke = true;
	c->enforce = true;
	c->socket_mode = 0660;
	c->gc_interval_ms = 10000;
	c->log_level = MOAT_LOG_INFO;
	c->ct_tcp_s = 21600;
	c->ct_close_s = 10;
	c->ct_other_s = 60;
	c->ct_syn_s = 60;
	c->deny_rate = 1000;
	c->deny_burst = 2000;
	c->snaplen = 128;
}

void moatd_config_free(struct moatd_config *c)
{
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i].kind == K_STR || fields[i].kind == K_ARCH) {
			char **p = (char **)((char *)c + fields[i].off);
			free(*p);
			*p = NULL;
		}
	free(c->config_file);
	c->config_file = NULL;
}

static json_t *lookup(json_t *root, const char *path)
{
	char buf[128], *save = NULL, *tok;
	json_t *cur = root;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save))
		cur = json_is_object(cur) ? json_object_get(cur, tok) : NULL;
	return cur;
}

/* Unknown keys are errors: a typo must not silently do nothing. */
static int check_known(json_t *obj, const char *prefix, char *err, size_t errlen)
{
	const char *k;
	json_t *v;

	json_object_foreach(obj, k, v)
	{
		char path[128];
		bool known = false, parent = false;
		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", k);
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			size_t l = strlen(path);
			known |= !strcmp(fields[i].path, path);
			parent |= !strncmp(fields[i].path, path, l) && fields[i].path[l] == '.';
		}
		if (parent && json_is_object(v)) {
			int rc = check_known(v, path, err, errlen);
			if (rc)
				return rc;
			continue;
		}
		if (!known) {
			snprintf(err, errlen, "%s: unknown setting", path);
			return -EINVAL;
		}
	}
	return 0;
}

int moatd_config_load(const char *file, struct moatd_config *c, bool only_live, char *err, size_t errlen)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	struct moatd_config n = *c;
	json_t *root;
	char arch_err[256] = ""; /* archive settings' own message */
	int rc;

	rc = moat_manifest_load_file(file, &docs, &errs);
	if (rc) {
		snprintf(err, errlen, "%s", errs.n ? errs.v[0] : strerror(-rc));
		goto out;
	}
	if (docs.n != 1) {
		snprintf(err, errlen, "%s: expected one document, found %zu", file, docs.n);
		rc = -EINVAL;
		goto out;
	}
	root = docs.v[0].json;
	{
		char e2[256];
		rc = check_known(root, "", e2, sizeof(e2));
		if (rc) {
			snprintf(err, errlen, "%s: %s", file, e2);
			goto out;
		}
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const struct field *f = &fields[i];
		json_t *v = lookup(root, f->path);
		void *dst = (char *)&n + f->off;

		if (!v || json_is_null(v) || (only_live && !f->live))
			continue;
		switch (f->kind) {
		case K_STR:
			if (!json_is_string(v) || !*json_string_value(v))
				goto bad;
			/* the old string still belongs to *c until we succeed */
			*(char **)dst = xstrdup(json_string_value(v));
			break;
		case K_ARCH: /* archive settings: archive.c checks them */
			if (moat_archive_setting(f->path, v, (char **)dst, arch_err, sizeof(arch_err)))
				goto bad;
			break;
		case K_BOOL:
			if (!json_is_boolean(v))
				goto bad;
			*(bool *)dst = json_is_true(v);
			break;
		case K_U32:
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > (json_int_t)f->max)
				goto bad;
			*(__u32 *)dst = (__u32)json_integer_value(v);
			break;
		case K_OCTAL: {
			unsigned long m;
			char *end;
			if (!json_is_string(v))
				goto bad;
			m = strtoul(json_string_value(v), &end, 8);
			if (*end || m > f->max)
				goto bad;
			*(unsigned *)dst = (unsigned)m;
			break;
		}
		case K_MODE:
			if (!json_is_string(v) ||
			    moat_mode_parse(json_string_value(v), (enum moat_mode *)dst))
				goto bad;
			break;
		case K_LOG: {
			int l = json_is_string(v) ? moat_log_parse_level(json_string_value(v)) : -1;
			if (l < 0)
				goto bad;
			*(int *)dst = l;
			break;
		}
		}
		continue;
bad:
		if (f->kind == K_ARCH)
			snprintf(err, errlen, "%s: %s", file, arch_err);
		else
			snprintf(err, errlen, "%s: %s: %s", file, f->path,
				 f->kind == K_BOOL  ? "must be true or false" :
				 f->kind == K_U32   ? "must be a non-negative integer within bounds" :
				 f->kind == K_MODE  ? "must be auto, hw, native or generic" :
				 f->kind == K_LOG   ? "must be error, warn, info, debug or verbose" :
				 f->kind == K_OCTAL ? "must be an octal mode string like \"0660\"" :
						      "must be a non-empty string");
		rc = -EINVAL;
		/* strings duplicated into n before the error */
		for (size_t k = 0; k < i; k++)
			if (fields[k].kind == K_STR || fields[k].kind == K_ARCH) {
				char **a = (char **)((char *)&n + fields[k].off),
				     **b = (char **)((char *)c + fields[k].off);
				if (*a != *b)
					free(*a);
			}
		goto out;
	}
	/* replace: free strings that were replaced */
	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++)
		if (fields[k].kind == K_STR || fields[k].kind == K_ARCH) {
			char **a = (char **)((char *)&n + fields[k].off),
			     **b = (char **)((char *)c + fields[k].off);
			if (*a != *b)
				free(*b);
		}
	*c = n;
out:
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	return rc;
}
