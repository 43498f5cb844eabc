// SPDX-License-Identifier: Apache-2.0
/* Replay of archived flows through a candidate policy set.  See replay.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "archive.h"
#include "compile.h"
#include "replay.h"
#include "srcdir.h"
#include "util.h"

struct rflow {
	char key[256]; /* node|proto|src|sport|dst|dport|first_ns: one per flow */
	json_t *rec;
	int prio; /* start 0 beats end 1 beats evicted 2 */
};

struct rctx {
	struct hmap flows; /* key -> rflow */
	size_t nflows, overflow;
	const char *only_node;
};

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : "";
}

static long long jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_integer(v) ? json_integer_value(v) : 0;
}

static int collect(json_t *rec, void *arg)
{
	struct rctx *x = arg;
	json_t *src = json_object_get(rec, "src"), *dst = json_object_get(rec, "dst");
	const char *state = jstr(rec, "state");
	int prio = !strcmp(state, "start") ? 0 : !strcmp(state, "end") ? 1 : 2;
	struct rflow *f;
	char key[256];

	if (strcmp(jstr(rec, "moat"), "flow"))
		return 0;
	if (x->only_node && strcmp(jstr(rec, "node"), x->only_node))
		return 0;
	snprintf(key, sizeof(key), "%s|%lld|%s|%lld|%s|%lld|%lld", jstr(rec, "node"), jint(rec, "proto_num"),
		 jstr(src, "ip"), jint(src, "port"), jstr(dst, "ip"), jint(dst, "port"),
		 jint(rec, "first_ns"));
	f = hmap_gets(&x->flows, key);
	if (f) {
		/* the same flow from another partition or at its end: keep the
		 * record of its first verdict */
		if (prio < f->prio) {
			json_decref(f->rec);
			f->rec = json_incref(rec);
			f->prio = prio;
		}
		return 0;
	}
	if (x->nflows >= MOAT_REPLAY_MAX_FLOWS) {
		x->overflow++;
		return 0;
	}
	f = xcalloc(1, sizeof(*f));
	snprintf(f->key, sizeof(f->key), "%s", key);
	f->rec = json_incref(rec);
	f->prio = prio;
	hmap_put(&x->flows, f->key, strlen(f->key), f, NULL);
	x->nflows++;
	return 0;
}

/* ---- the candidate, per node ---------------------------------------------------- */
struct cand {
	char node[256];
	struct moat_compiler *c;
	struct hmap local; /* local pod IPs ("ip" strings) */
	struct ptrvec keys;
};

static void load_err(void *arg, const char *msg)
{
	json_array_append_new(arg, json_string(msg));
}

static int local_cb(const struct moat_endpoint_view *v, void *arg)
{
	struct cand *cd = arg;
	char b[64];

	if (!v->local || v->host_network)
		return 0;
	for (size_t i = 0; i < v->nips; i++) {
		char *k = xstrdup(moat_addr_str(&v->ips[i], b));
		ptrvec_push(&cd->keys, k);
		hmap_put(&cd->local, k, strlen(k), k, NULL);
	}
	return 0;
}

static int cand_new(const char *dir, const char *node, json_t *errs, struct cand **ret, char *err,
		    size_t errlen)
{
	struct moat_compiler_opts co = { 0 };
	struct moat_flush_stats st;
	struct moat_tx *tx = NULL;
	struct cand *cd = xcalloc(1, sizeof(*cd));
	char ferr[512];
	int rc;

	/* capacities as a default datapath has them (like policy check) */
	co.cap[MOAT_T_EP] = MOAT_MAX_ENDPOINTS;
	co.cap[MOAT_T_IP4] = co.cap[MOAT_T_IP6] = MOAT_MAX_IPS;
	co.cap[MOAT_T_NET4] = co.cap[MOAT_T_NET6] = MOAT_MAX_NETS;
	co.cap[MOAT_T_SUBJ] = MOAT_MAX_IDENTITIES;
	co.cap[MOAT_T_PORTS] = MOAT_MAX_PORTRANGES;
	co.cap[MOAT_T_POL] = MOAT_MAX_POLICY;
	snprintf(cd->node, sizeof(cd->node), "%s", node);
	co.node = cd->node;
	hmap_init(&cd->local);
	rc = moat_compiler_new(&co, &cd->c);
	if (rc) {
		snprintf(err, errlen, "compiler: %s", strerror(-rc));
		goto fail;
	}
	rc = moat_srcdir_load_once(dir, cd->c, load_err, errs);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", dir, strerror(-rc));
		goto fail;
	}
	/* one generation, as moatd builds it; explain reads what is committed */
	rc = moat_tx_begin(NULL, true, &tx);
	if (!rc)
		rc = moat_compiler_flush(cd->c, tx, &st, ferr, sizeof(ferr));
	if (tx)
		moat_tx_abort(tx);
	if (rc) {
		snprintf(err, errlen, "%s does not compile: %s", dir, rc == -ENOSPC ? ferr : strerror(-rc));
		goto fail;
	}
	moat_compiler_commit(cd->c);
	moat_compiler_endpoints(cd->c, local_cb, cd);
	*ret = cd;
	return 0;
fail:
	moat_compiler_free(cd->c);
	hmap_free(&cd->local);
	free(cd);
	return rc ? rc : -EINVAL;
}

static void cand_free(struct cand *cd)
{
	if (!cd)
		return;
	moat_compiler_free(cd->c);
	for (size_t i = 0; i < cd->keys.n; i++)
		free(cd->keys.v[i]);
	ptrvec_free(&cd->keys);
	hmap_free(&cd->local);
	free(cd);
}

/* ---- results ------------------------------------------------------------------------- */
struct group {
	char key[600];
	json_t *obj;    /* {namespace, rule, was?, flows, examples} */
	struct hmap ex; /* example key -> json example */
	struct ptrvec exkeys;
};

struct results {
	struct hmap groups[4];
	struct ptrvec order[4];
};

enum {
	R_DENIED,
	R_ALLOWED,
	R_AUDITED,
	R_UNAUDITED
};

static void side_text(json_t *s, char *out, size_t len)
{
	const char *ns = jstr(s, "namespace"), *pod = jstr(s, "pod"), *ip = jstr(s, "ip");

	if (*pod)
		snprintf(out, len, "%s/%s", ns, pod);
	else if (*ns)
		snprintf(out, len, "%s (%s)", ip, ns);
	else
		snprintf(out, len, "%s", ip);
}

static void add_result(struct results *r, int which, const char *ns, const char *rule, const char *was,
		       json_t *rec)
{
	struct group *g;
	char key[600], ek[1200], s[300], d[300];
	json_t *src = json_object_get(rec, "src"), *dst = json_object_get(rec, "dst"), *ex;

	snprintf(key, sizeof(key), "%s|%s", ns, rule);
	g = hmap_gets(&r->groups[which], key);
	if (!g) {
		g = xcalloc(1, sizeof(*g));
		snprintf(g->key, sizeof(g->key), "%s", key);
		g->obj = json_pack("{s:s,s:s,s:i,s:[]}", "namespace", ns, "rule", rule, "flows", 0,
				   "examples");
		hmap_init(&g->ex);
		hmap_put(&r->groups[which], g->key, strlen(g->key), g, NULL);
		ptrvec_push(&r->order[which], g);
	}
	json_object_set_new(g->obj, "flows", json_integer(jint(g->obj, "flows") + 1));
	side_text(src, s, sizeof(s));
	side_text(dst, d, sizeof(d));
	snprintf(ek, sizeof(ek), "%s|%s|%s|%lld|%s", s, d, jstr(rec, "proto"), jint(dst, "port"), was);
	ex = hmap_gets(&g->ex, ek);
	if (ex) {
		json_object_set_new(ex, "flows", json_integer(jint(ex, "flows") + 1));
		return;
	}
	if (g->exkeys.n >= MOAT_REPLAY_EXAMPLES)
		return;
	ex = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:i,s:s}", "src", s, "dst", d, "proto", jstr(rec, "proto"),
		       "port", (json_int_t)jint(dst, "port"), "was", jstr(rec, "verdict"), "was_rule", was,
		       "flows", 1, "first_seen", jstr(rec, "first"));
	json_array_append_new(json_object_get(g->obj, "examples"), ex);
	{
		char *k = xstrdup(ek);
		ptrvec_push(&g->exkeys, k);
		hmap_put(&g->ex, k, strlen(k), ex, NULL);
	}
}

static int group_cmp(const void *a, const void *b)
{
	const struct group *x = *(const struct group *const *)a, *y = *(const struct group *const *)b;
	return strcmp(x->key, y->key);
}

static json_t *results_json(struct results *r, int which)
{
	json_t *a = json_array();

	if (r->order[which].n)
		qsort(r->order[which].v, r->order[which].n, sizeof(void *), group_cmp);

	for (size_t i = 0; i < r->order[which].n; i++) {
		struct group *g = r->order[which].v[i];
		json_array_append(a, g->obj);
	}
	return a;
}

static void results_free(struct results *r)
{
	for (int w = 0; w < 4; w++) {
		for (size_t i = 0; i < r->order[w].n; i++) {
			struct group *g = r->order[w].v[i];
			for (size_t k = 0; k < g->exkeys.n; k++)
				free(g->exkeys.v[k]);
			ptrvec_free(&g->exkeys);
			hmap_free(&g->ex);
			json_decref(g->obj);
			free(g);
		}
		ptrvec_free(&r->order[w]);
		hmap_free(&r->groups[w]);
	}
}

static void skip(json_t *skipped, const char *why)
{
	json_object_set_new(skipped, why, json_integer(jint(skipped, why) + 1));
}

static int verdict_of(const char *v)
{
	return !strcmp(v, "allow") ? MOAT_VERDICT_ALLOW :
	       !strcmp(v, "deny")  ? MOAT_VERDICT_DENY :
	       !strcmp(v, "audit") ? MOAT_VERDICT_AUDIT :
				     -1;
}

/* One flow on its node: the candidate's verdict for the sides that node
 * judges (its local pods), compared with what was recorded. */
static void replay_one(struct cand *cd, json_t *rec, struct results *r, json_t *skipped, size_t *unchanged,
		       size_t *replayed)
{
	json_t *src = json_object_get(rec, "src"), *dst = json_object_get(rec, "dst");
	const char *sip = jstr(src, "ip"), *dip = jstr(dst, "ip"), *tier = jstr(rec, "tier");
	int proto = (int)jint(rec, "proto_num"), was = verdict_of(jstr(rec, "verdict")), now;
	bool sl = hmap_gets(&cd->local, sip) != NULL, dl = hmap_gets(&cd->local, dip) != NULL;
	struct moat_explain x;
	const struct moat_explain_side *deny = NULL;
	char err[256], *rule = NULL;
	const char *ns;
	uint16_t port = (uint16_t)jint(dst, "port");

	if (!*sip || !*dip) {
		skip(skipped, "no addresses");
		return;
	}
	if (!strcmp(tier, "datapath") || !strcmp(tier, "established")) {
		/* not a policy decision: malformed, spoofed, unknown endpoint,
		 * or a flow first seen in the middle */
		skip(skipped, !strcmp(tier, "datapath") ? "datapath verdict" : "seen established");
		return;
	}
	if (was < 0) {
		skip(skipped, "no verdict");
		return;
	}
	if (!sl && !dl) {
		skip(skipped, "no local pod in the candidate");
		return;
	}
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		port = 0;
	if (moat_compiler_explain(cd->c, sip, dip, (uint8_t)proto, port, &x, err, sizeof(err))) {
		skip(skipped, "not explainable");
		return;
	}
	(*replayed)++;
	if (sl && x.egress.judged && x.egress.verdict == MOAT_VERDICT_DENY)
		deny = &x.egress;
	else if (dl && x.ingress.judged && x.ingress.verdict == MOAT_VERDICT_DENY)
		deny = &x.ingress;
	if (deny)
		now = MOAT_VERDICT_DENY;
	else if ((sl && x.egress.judged && x.egress.audit_deny) ||
		 (dl && x.ingress.judged && x.ingress.audit_deny))
		now = MOAT_VERDICT_AUDIT;
	else
		now = MOAT_VERDICT_ALLOW;

	if (now == MOAT_VERDICT_DENY && was != MOAT_VERDICT_DENY) {
		rule = moat_rule_describe(cd->c, deny->rule);
		ns = jstr(deny == &x.egress ? src : dst, "namespace");
		add_result(r, R_DENIED, *ns ? ns : "-", rule, jstr(rec, "rule"), rec);
	} else if (now != MOAT_VERDICT_DENY && was == MOAT_VERDICT_DENY) {
		/* grouped by the rule that denied it and the side it guarded */
		const char *dir = jstr(rec, "rule_dir");
		ns = jstr(!strcmp(dir, "egress") ? src : dst, "namespace");
		add_result(r, R_ALLOWED, *ns ? ns : "-", jstr(rec, "rule"), jstr(rec, "rule"), rec);
	} else if (now == MOAT_VERDICT_AUDIT && was == MOAT_VERDICT_ALLOW) {
		const struct moat_explain_side *s = sl && x.egress.judged && x.egress.audit_deny ? &x.egress :
												   &x.ingress;
		rule = moat_rule_describe(cd->c, s->audit_rule);
		ns = jstr(s == &x.egress ? src : dst, "namespace");
		add_result(r, R_AUDITED, *ns ? ns : "-", rule, jstr(rec, "rule"), rec);
	} else if (now == MOAT_VERDICT_ALLOW && was == MOAT_VERDICT_AUDIT) {
		ns = jstr(dst, "namespace");
		add_result(r, R_UNAUDITED, *ns ? ns : "-", jstr(rec, "rule"), jstr(rec, "rule"), rec);
	} else {
		(*unchanged)++;
	}
	free(rule);
}

int moat_replay(const struct moat_replay_opts *o, json_t **out, char *err, size_t errlen)
{
	struct rctx x = { .only_node = o->node };
	struct results res;
	struct cand *cands[MOAT_REPLAY_MAX_NODES] = { 0 };
	size_t ncands = 0, files = 0, bad = 0, unchanged = 0, replayed = 0, it = 0;
	json_t *errs = json_array(), *skipped = json_object(), *nodes = json_array(), *j;
	void *v;
	int rc;

	memset(&res, 0, sizeof(res));
	for (int w = 0; w < 4; w++)
		hmap_init(&res.groups[w]);
	hmap_init(&x.flows);
	rc = moat_archive_records(o->archive, collect, &x, &files, &bad);
	if (rc) {
		snprintf(err, errlen, "%s: %s", o->archive, strerror(-rc));
		goto out;
	}
	if (!files) {
		snprintf(err, errlen, "%s: no archive segments found", o->archive);
		rc = -ENOENT;
		goto out;
	}
	while (hmap_next(&x.flows, &it, NULL, NULL, &v)) {
		struct rflow *f = v;
		const char *node = jstr(f->rec, "node");
		struct cand *cd = NULL;

		for (size_t i = 0; i < ncands; i++)
			if (!strcmp(cands[i]->node, node))
				cd = cands[i];
		if (!cd) {
			if (ncands == MOAT_REPLAY_MAX_NODES) {
				skip(skipped, "too many nodes");
				continue;
			}
			/* load errors are the same for every node: keep one copy */
			rc = cand_new(o->policies, node, ncands ? NULL : errs, &cd, err, errlen);
			if (rc)
				goto out;
			cands[ncands++] = cd;
			json_array_append_new(nodes, json_string(node));
		}
		replay_one(cd, f->rec, &res, skipped, &unchanged, &replayed);
	}
	if (x.overflow)
		json_object_set_new(skipped, "beyond the flow limit", json_integer((json_int_t)x.overflow));
	j = json_pack("{s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:O,s:O}", "archive", o->archive, "policies",
		      o->policies, "nodes", nodes, "files", (json_int_t)files, "bad_files", (json_int_t)bad,
		      "flows", (json_int_t)x.nflows, "replayed", (json_int_t)replayed, "unchanged",
		      (json_int_t)unchanged, "skipped", skipped, "load_errors", errs);
	nodes = NULL;
	json_object_set_new(j, "newly_denied", results_json(&res, R_DENIED));
	json_object_set_new(j, "newly_allowed", results_json(&res, R_ALLOWED));
	json_object_set_new(j, "newly_audited", results_json(&res, R_AUDITED));
	json_object_set_new(j, "no_longer_audited", results_json(&res, R_UNAUDITED));
	*out = j;
	rc = 0;
out:
	json_decref(nodes);
	json_decref(errs);
	json_decref(skipped);
	for (size_t i = 0; i < ncands; i++)
		cand_free(cands[i]);
	it = 0;
	while (hmap_next(&x.flows, &it, NULL, NULL, &v)) {
		json_decref(((struct rflow *)v)->rec);
		free(v);
	}
	hmap_free(&x.flows);
	results_free(&res);
	return rc;
}
