// SPDX-License-Identifier: Apache-2.0
/* The control API: HTTP with JSON over a unix socket (libmicrohttpd).
 *   GET /v1/status              attach modes and why, generation, tables
 *   GET /v1/endpoints           pods known, local ones with interfaces
 *   GET /v1/identities
 *   GET /v1/policies            with subjects and compiled entries
 *   GET /v1/explain?from=&to=&port=&proto=
 *   GET /v1/sources             manifest files, digests, errors
 *   GET /metrics                Prometheus text
 *   GET /v1/archives[/query]    flight recorder (api_archive.c)
 * Every handler holds the daemon lock while it reads state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include "log.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include <jansson.h>

#include "api.h"
#include "pfmgr.h"
#include "api_archive.h"
#include "archive.h"
#include "blueprint.h"
#include "auth.h"
#include "daemon.h"
#include "decode.h"
#include "events.h"
#include "k8s_source.h"
#include "manifest.h"
#include "report.h"
#include "srcdir.h"
#include "util.h"
#include "yamledit.h"

struct moat_api {
	struct MHD_Daemon *mhd;
	struct MHD_Daemon *mhd_tcp;
	struct moatd *d;
	int fd;
	char *path;
	pthread_mutex_t audit_lock;
	FILE *audit;
};

/* Per connection: who is asking, and a request body being received. */
struct conn_ctx {
	int auth_rc;
	struct moat_principal who;
	char *body;
	size_t blen;
	bool too_big;
};

#define MAX_BODY (1u << 20)

static bool admin(const struct moat_principal *w)
{
	return w->role == MOAT_ROLE_PLATFORM_ADMIN;
}

/* A rule's description, without naming what the caller may not see: a
 * NetworkPolicy of a namespace outside theirs stays anonymous. */
static char *describe_for(struct moatd *d, const struct moat_principal *w, __u32 ref)
{
	const struct moat_rule_info *ri = moat_compiler_rule(d->comp, ref);

	if (ri && ri->kind == MOAT_K_NETPOL && ri->ns && !moat_principal_sees(w, ri->ns))
		return xstrdup("a NetworkPolicy of another namespace");
	return moat_rule_describe(d->comp, ref);
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned code, const char *ctype, char *body)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result ret;

	MHD_add_response_header(r, "Content-Type", ctype);
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned code, json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);

	json_decref(j);
	if (!s) /* an answer jansson could not build: still an answer */
		return send_text(conn, 500, "application/json",
				 xstrdup("{\"error\": \"the reply could not be encoded\"}"));
	return send_text(conn, code, "application/json", s);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned code, const char *msg)
{
	json_t *j = json_pack("{s:s}", "error", msg);

	if (!j) {
		/* the message quotes request bytes that are not UTF-8 */
		char *m = xstrdup(msg);
		for (char *p = m; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		j = json_pack("{s:s}", "error", m);
		free(m);
	}
	return send_json(conn, code, j);
}

static json_t *labels_json(const struct moat_labels *l)
{
	json_t *o = json_object();

	for (size_t i = 0; l && i < l->n; i++)
		json_object_set_new(o, l->kv[i].key, json_string(l->kv[i].value));
	return o;
}

static const char *class_name(int c)
{
	switch (c) {
	case MOAT_CLASS_POD:
		return "pod";
	case MOAT_CLASS_NODE:
		return "node";
	case MOAT_CLASS_VIP:
		return "service";
	default:
		return "world";
	}
}

static const char *hook_name(int h)
{
	switch (h) {
	case MOAT_HOOK_FROM_POD:
		return "from-pod";
	case MOAT_HOOK_TO_POD:
		return "to-pod";
	default:
		return "uplink";
	}
}

struct vis {
	json_t *a;
	const struct moat_principal *who;
};

static int iface_cb(const struct moat_iface_status *s, void *arg)
{
	struct vis *v = arg;
	json_t *why;

	if (!admin(v->who)) {
		char ns[128];
		const char *slash = s->pod ? strchr(s->pod, '/') : NULL;
		if (!slash)
			return 0;
		snprintf(ns, sizeof(ns), "%.*s", (int)(slash - s->pod), s->pod);
		if (!moat_principal_sees(v->who, ns))
			return 0;
	}
	why = json_object();

	for (int m = MOAT_MODE_HW; m < MOAT_MODE_MAX; m++)
		if (s->why[m][0])
			json_object_set_new(why, moat_mode_name(m), json_string(s->why[m]));
	json_array_append_new(v->a,
			      json_pack("{s:s,s:s?,s:s,s:i,s:b,s:s,s:o,s:s?}", "name", s->name, "pod", s->pod,
					"hook", hook_name(s->hook), "ifindex", s->ifindex, "attached",
					s->attached, "mode", s->attached ? moat_mode_name(s->mode) : "none",
					"rejected", why, "error", s->error[0] ? s->error : NULL));
	if (s->plan && s->plan->valid) { /* the attach plan and its reasons (issue 6) */
		json_t *pw = json_object(), *o = json_array_get(v->a, json_array_size(v->a) - 1);
		for (int k = 0; k < MOAT_PLAN_KIND_MAX; k++)
			if (s->plan->why[k][0])
				json_object_set_new(pw, moat_plan_kind_name(k), json_string(s->plan->why[k]));
		json_object_set_new(
			o, "plan",
			json_pack("{s:s,s:s,s:s,s:o,s:o}", "kind", moat_iface_plan_kind(s->plan), "driver",
				  s->plan->driver, "profile", s->plan->profile, "xdp_features",
				  s->plan->have_features ? json_integer((json_int_t)s->plan->xdp_features) :
							   json_null(),
				  "rejected", pw));
	}
	return 0;
}

static json_t *status_json(struct moatd *d, const struct moat_principal *who)
{
	json_t *j = json_object(), *ifs = json_array(), *tbl = json_object(), *errs = json_array();
	struct moat_config *cfg = moat_dp_config(d->dp);

	json_object_set_new(j, "node", json_string(d->cfg.node));
	json_object_set_new(j, "abi", json_integer(MOAT_ABI_VERSION));
	json_object_set_new(j, "generation", json_integer(moat_dp_generation(d->dp)));
	json_object_set_new(j, "adopted", json_boolean(d->adopted));
	/* an ABI upgrade whose old programs still enforce (the first generation is pending) */
	if (moat_dp_upgrading(d->dp))
		json_object_set_new(j, "upgrading_from_abi", json_integer(moat_dp_upgrading(d->dp)));
	if (admin(who))
		json_object_set_new(j, "pin_dir", json_string(moat_dp_pin_dir(d->dp)));
	json_object_set_new(j, "user", json_string(who->user));
	json_object_set_new(j, "role", json_string(moat_role_name(who->role)));
	json_object_set_new(j, "enforce", json_boolean(cfg->flags & MOAT_CFG_ENFORCE));
	json_object_set_new(j, "uptime_s", json_real((double)(moat_now_ns() - d->start_ns) / 1e9));
	if (d->ifaces) {
		struct vis v = { ifs, who };
		moat_ifaces_status(d->ifaces, iface_cb, &v);
	}
	json_object_set_new(j, "interfaces", ifs);
	if (admin(who)) /* node-wide: the NIC's pre-filter (issue 6) */
		json_object_set_new(j, "prefilter", moat_pfmgr_status(d->pfmgr));
	{
		__u32 used[MOAT_T_MAX];
		/* the compiler's committed counts are what the live slot holds */
		moat_compiler_counts(d->comp, used);
		for (int t = 0; t < MOAT_T_MAX; t++)
			json_object_set_new(tbl, moat_tbl_name(t),
					    json_pack("{s:i,s:i}", "capacity",
						      (json_int_t)moat_dp_tbl_capacity(d->dp, t), "entries",
						      (json_int_t)used[t]));
	}
	json_object_set_new(j, "tables", tbl);
	json_object_set_new(j, "last_apply",
			    json_pack("{s:i,s:f,s:f,s:i,s:i,s:s}", "generation", d->last.generation,
				      "compile_ms", d->last.compile_ns / 1e6, "commit_ms",
				      d->last.commit_ns / 1e6, "ops", (json_int_t)d->last.ops, "error",
				      d->last.error, "message", d->last.message));
	/* errors name files and objects of every tenant */
	for (size_t i = 0; admin(who) && i < d->nerrors; i++)
		json_array_append_new(errs, json_string(d->errors[i]));
	json_object_set_new(j, "recent_errors", errs);
	/* Kubernetes mode: watch state per kind (errors naming objects: admins) */
	if (d->k8s)
		json_object_set_new(j, "kubernetes", moat_k8s_source_status(d->k8s, admin(who)));
	if (!admin(who))
		json_object_set_new(j, "last_apply", json_pack("{s:i}", "generation", d->last.generation));
	return j;
}

static int ep_cb(const struct moat_endpoint_view *v, void *arg)
{
	struct vis *vi = arg;
	json_t *ips;
	char buf[64];

	if (!moat_principal_sees(vi->who, v->ns))
		return 0;
	ips = json_array();
	for (size_t i = 0; i < v->nips; i++)
		json_array_append_new(ips, json_string(moat_addr_str(&v->ips[i], buf)));
	json_array_append_new(vi->a,
			      json_pack("{s:s,s:s,s:s?,s:i,s:b,s:i,s:o,s:b}", "namespace", v->ns, "name",
					v->name, "node", v->node, "identity", v->identity, "local", v->local,
					"ifindex", v->ifindex, "ips", ips, "hostNetwork", v->host_network));
	return 0;
}

static int id_cb(const struct moat_ident_view *v, void *arg)
{
	struct vis *vi = arg;

	if (!admin(vi->who) && (!v->ns || v->cls != MOAT_CLASS_POD || !moat_principal_sees(vi->who, v->ns)))
		return 0;
	json_array_append_new(vi->a,
			      json_pack("{s:i,s:s,s:s?,s:s?,s:o,s:i}", "id", v->id, "class",
					class_name(v->cls), "namespace", v->ns, "node", v->node, "labels",
					labels_json(v->labels), "members", (json_int_t)v->npods));
	return 0;
}

static const char *pkind(enum moat_policy_kind k)
{
	switch (k) {
	case MOAT_K_NETPOL:
		return "NetworkPolicy";
	case MOAT_K_ANP:
		return "AdminNetworkPolicy";
	case MOAT_K_BANP:
		return "BaselineAdminNetworkPolicy";
	default:
		return "ClusterNetworkPolicy";
	}
}

static int pol_cb(const struct moat_policy_view *v, void *arg)
{
	struct vis *vi = arg;
	const struct moat_policy *p = v->p;

	/* tenants see their NetworkPolicies; cluster policies are the
	 * platform's and listed for platform admins */
	if (!admin(vi->who) && (p->kind != MOAT_K_NETPOL || !moat_principal_sees(vi->who, p->ns)))
		return 0;
	json_array_append_new(vi->a,
			      json_pack("{s:s,s:s,s:s?,s:s,s:s,s:i,s:b,s:i,s:i,s:i,s:i}", "key", v->key,
					"kind", pkind(p->kind), "namespace", p->ns, "name", p->name, "tier",
					moat_tier_name(p->tier), "priority", p->priority, "audit", p->audit,
					"subjects", (json_int_t)v->nsubjects, "entries",
					(json_int_t)v->entries, "ingressRules", (json_int_t)p->nrules[0],
					"egressRules", (json_int_t)p->nrules[1]));
	return 0;
}

static json_t *side_json(struct moatd *d, const struct moat_principal *who, const struct moat_explain_side *s)
{
	char *desc;
	json_t *j;

	if (!s->judged)
		return json_null();
	desc = describe_for(d, who, s->rule);
	j = json_pack("{s:s,s:s,s:i,s:s}", "verdict", moat_verdict_name(s->verdict), "tier",
		      moat_tier_name(s->tier), "rule", s->rule, "decided_by", desc);
	free(desc);
	if (s->audit_deny) {
		desc = describe_for(d, who, s->audit_rule);
		json_object_set_new(j, "audit_would_deny", json_string(desc));
		free(desc);
	}
	return j;
}

/* The namespace of "ns/pod" or of the pod owning an address. */
static bool endpoint_ns(struct moatd *d, const char *what, char *ns, size_t len)
{
	struct moat_addr a;
	const char *key;

	if (moat_addr_parse(what, &a) == 0) {
		key = moat_compiler_pod_by_ip(d->comp, &a, NULL);
		if (!key)
			return false;
		what = key;
	}
	if (!strchr(what, '/'))
		return false;
	snprintf(ns, len, "%.*s", (int)(strchr(what, '/') - what), what);
	return true;
}

static enum MHD_Result h_explain(struct MHD_Connection *conn, struct moatd *d,
				 const struct moat_principal *who)
{
	const char *from = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "from");
	const char *to = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "to");
	const char *ps = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "port");
	const char *pr = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "proto");
	struct moat_explain x;
	uint8_t proto = IPPROTO_TCP;
	char err[256], *desc;
	long port = 0;
	json_t *j;

	if (!from || !to)
		return send_error(conn, 400, "explain needs from= and to=");
	if (ps) {
		char *end;
		port = strtol(ps, &end, 10);
		if (*end || port < 0 || port > 65535)
			return send_error(conn, 400, "port must be 0..65535");
	}
	if (pr && moat_proto_parse(pr, &proto))
		return send_error(conn, 400, "proto must be TCP, UDP, SCTP, ICMP or ICMPv6");
	if (!admin(who)) {
		char a[128], b[128];
		bool sa = endpoint_ns(d, from, a, sizeof(a)) && moat_principal_sees(who, a);
		bool sb = endpoint_ns(d, to, b, sizeof(b)) && moat_principal_sees(who, b);
		if (!sa && !sb)
			return send_error(conn, 403, "neither endpoint is in your namespaces");
	}
	if (moat_compiler_explain(d->comp, from, to, proto, (uint16_t)port, &x, err, sizeof(err)))
		return send_error(conn, 404, err);
	desc = describe_for(d, who, x.rule);
	j = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:i,s:s,s:i,s:s,s:i,s:s,s:o,s:o}", "from", from, "to", to,
		      "proto", moat_proto_name(proto), "port", (int)port, "verdict",
		      moat_verdict_name(x.verdict), "tier", moat_tier_name(x.tier), "direction",
		      x.dir == MOAT_DIR_EGRESS ? "egress" : "ingress", "rule", x.rule, "decided_by", desc,
		      "src_identity", x.src_identity, "src_class", class_name(x.src_class), "dst_identity",
		      x.dst_identity, "dst_class", class_name(x.dst_class), "egress",
		      side_json(d, who, &x.egress), "ingress", side_json(d, who, &x.ingress));
	free(desc);
	return send_json(conn, 200, j);
}

static void metric(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void metric(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < *cap - *len) {
			*len += (size_t)n;
			return;
		}
		*cap = *cap * 2 + (size_t)(n > 0 ? n : 256);
		*buf = xrealloc(*buf, *cap);
	}
}

static char *metrics_text(struct moatd *d)
{
	size_t cap = 8192, len = 0;
	char *b = xcalloc(1, cap);
	__u64 pk, by;
	static const double bounds[12] = {
		0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 5
	};

	metric(&b, &len, &cap,
	       "# HELP moat_packets_total Packets judged, by verdict.\n"
	       "# TYPE moat_packets_total counter\n");
	for (int v = MOAT_VERDICT_ALLOW; v <= MOAT_VERDICT_AUDIT; v++)
		if (!moat_dp_stat(d->dp, MOAT_STAT_VERDICT(v), &pk, &by))
			metric(&b, &len, &cap, "moat_packets_total{verdict=\"%s\"} %llu\n",
			       moat_verdict_name(v), (unsigned long long)pk);
	metric(&b, &len, &cap,
	       "# HELP moat_bytes_total Bytes judged, by verdict.\n"
	       "# TYPE moat_bytes_total counter\n");
	for (int v = MOAT_VERDICT_ALLOW; v <= MOAT_VERDICT_AUDIT; v++)
		if (!moat_dp_stat(d->dp, MOAT_STAT_VERDICT(v), &pk, &by))
			metric(&b, &len, &cap, "moat_bytes_total{verdict=\"%s\"} %llu\n",
			       moat_verdict_name(v), (unsigned long long)by);
	metric(&b, &len, &cap,
	       "# HELP moat_drops_total Dropped packets, by reason.\n"
	       "# TYPE moat_drops_total counter\n");
	for (int r = 1; r < MOAT_DROP_MAX; r++)
		if (!moat_dp_stat(d->dp, MOAT_STAT_DROP(r), &pk, &by))
			metric(&b, &len, &cap, "moat_drops_total{reason=\"%s\"} %llu\n",
			       moat_drop_reason_name(r), (unsigned long long)pk);
	metric(&b, &len, &cap,
	       "# HELP moat_rule_packets_total Packets decided by each rule.\n"
	       "# TYPE moat_rule_packets_total counter\n");
	for (__u32 ref = MOAT_RULE_DEFAULT_ALLOW; ref < MOAT_MAX_RULES; ref++) {
		const struct moat_rule_info *ri = moat_compiler_rule(d->comp, ref);
		char *desc;
		if (!ri)
			continue;
		if (moat_dp_rule_stat(d->dp, ref, &pk, &by) || !pk)
			continue;
		desc = moat_rule_describe(d->comp, ref);
		for (char *q = desc; *q; q++)
			if (*q == '"' || *q == '\\')
				*q = '\'';
		metric(&b, &len, &cap, "moat_rule_packets_total{rule=\"%u\",tier=\"%s\",desc=\"%s\"} %llu\n",
		       ref, moat_tier_name(ri->tier), desc, (unsigned long long)pk);
		free(desc);
	}
	metric(&b, &len, &cap,
	       "# HELP moat_conntrack_events_total Connection tracking events.\n"
	       "# TYPE moat_conntrack_events_total counter\n");
	{
		static const struct {
			int idx;
			const char *n;
		} ct[] = {
			{ MOAT_STAT_CT_NEW, "new" },
			{ MOAT_STAT_CT_ESTABLISHED, "established" },
			{ MOAT_STAT_CT_REPLY, "reply" },
			{ MOAT_STAT_CT_REVALIDATED, "revalidated" },
			{ MOAT_STAT_CT_REVOKED, "revoked" },
			{ MOAT_STAT_RELATED, "related" },
			{ MOAT_STAT_DEFERRED, "service-deferred" },
			{ MOAT_STAT_DENY_CACHED, "deny-cached" },
		};
		for (size_t i = 0; i < sizeof(ct) / sizeof(ct[0]); i++)
			if (!moat_dp_stat(d->dp, ct[i].idx, &pk, &by))
				metric(&b, &len, &cap, "moat_conntrack_events_total{event=\"%s\"} %llu\n",
				       ct[i].n, (unsigned long long)pk);
	}
	metric(&b, &len, &cap,
	       "# HELP moat_events_total Verdict events: emitted, failed (ring full), suppressed (rate limit).\n"
	       "# TYPE moat_events_total counter\n");
	{
		static const char *const n[] = { "emitted", "failed", "suppressed" };
		for (int i = 0; i < 3; i++) {
			__u64 v;
			if (!moat_dp_event_stat(d->dp, (__u32)i, &v))
				metric(&b, &len, &cap, "moat_events_total{outcome=\"%s\"} %llu\n", n[i],
				       (unsigned long long)v);
		}
	}
	if (d->events) {
		struct moat_events_stats es;
		moat_events_stats(d->events, &es);
		metric(&b, &len, &cap,
		       "# HELP moat_events_delivered_total Verdict events received by moatd.\n"
		       "# TYPE moat_events_delivered_total counter\nmoat_events_delivered_total %llu\n"
		       "# HELP moat_events_lost_total Verdict events lost, by where.\n"
		       "# TYPE moat_events_lost_total counter\n"
		       "moat_events_lost_total{where=\"perf-ring\"} %llu\n"
		       "moat_events_lost_total{where=\"output-failed\"} %llu\n"
		       "moat_events_lost_total{where=\"rate-limit\"} %llu\n"
		       "# HELP moat_events_seq_gaps_total Events missing by sequence number (cross-check).\n"
		       "# TYPE moat_events_seq_gaps_total counter\nmoat_events_seq_gaps_total %llu\n"
		       "# HELP moat_flows Flow records held.\n# TYPE moat_flows gauge\nmoat_flows %llu\n"
		       "# HELP moat_flows_ended_total Flows that ended.\n# TYPE moat_flows_ended_total counter\n"
		       "moat_flows_ended_total %llu\n",
		       (unsigned long long)es.delivered, (unsigned long long)es.perf_lost,
		       (unsigned long long)es.failed, (unsigned long long)es.suppressed,
		       (unsigned long long)es.seq_gaps, (unsigned long long)es.flows_active,
		       (unsigned long long)es.flows_ended);
	}
	if (d->archive) { /* archive.h */
		char *as = moat_archive_metrics(d->archive);
		metric(&b, &len, &cap, "%s", as);
		free(as);
	}
	metric(&b, &len, &cap,
	       "# HELP moat_generation The policy generation live in the datapath.\n"
	       "# TYPE moat_generation gauge\nmoat_generation %u\n",
	       moat_dp_generation(d->dp));
	metric(&b, &len, &cap,
	       "# HELP moat_table_capacity Entries each datapath table can hold.\n"
	       "# TYPE moat_table_capacity gauge\n");
	for (int t = 0; t < MOAT_T_MAX; t++)
		metric(&b, &len, &cap, "moat_table_capacity{table=\"%s\"} %u\n", moat_tbl_name(t),
		       moat_dp_tbl_capacity(d->dp, t));
	metric(&b, &len, &cap,
	       "# HELP moat_policy_apply_seconds Time from a change to its generation being live.\n"
	       "# TYPE moat_policy_apply_seconds histogram\n");
	{
		uint64_t cum = 0;
		for (int i = 0; i < 12; i++) {
			cum += d->lat_bucket[i];
			metric(&b, &len, &cap, "moat_policy_apply_seconds_bucket{le=\"%g\"} %llu\n",
			       bounds[i], (unsigned long long)cum);
		}
		metric(&b, &len, &cap,
		       "moat_policy_apply_seconds_bucket{le=\"+Inf\"} %llu\n"
		       "moat_policy_apply_seconds_sum %g\nmoat_policy_apply_seconds_count %llu\n",
		       (unsigned long long)d->applies, d->lat_sum, (unsigned long long)d->applies);
	}
	metric(&b, &len, &cap,
	       "# HELP moat_policy_apply_errors_total Changes refused (bad input, capacity).\n"
	       "# TYPE moat_policy_apply_errors_total counter\nmoat_policy_apply_errors_total %llu\n",
	       (unsigned long long)d->apply_errors);
	metric(&b, &len, &cap,
	       "# HELP moat_netlink_resyncs_total Link and route notifications lost "
	       "(netlink receive buffer overrun), answered by re-reading them all.\n"
	       "# TYPE moat_netlink_resyncs_total counter\nmoat_netlink_resyncs_total %llu\n",
	       (unsigned long long)moat_ifaces_resyncs(d->ifaces));
	{
		struct moat_ifaces_nlstats nl;
		moat_ifaces_nlstats(d->ifaces, &nl);
		metric(&b, &len, &cap,
		       "# HELP moat_netlink_refused_total Route notifications skipped before "
		       "libnl parsed them (next hop or via lengths it would follow out of the "
		       "message or forever).\n"
		       "# TYPE moat_netlink_refused_total counter\nmoat_netlink_refused_total %llu\n",
		       (unsigned long long)nl.refused);
	}
	metric(&b, &len, &cap,
	       "# HELP moat_pins_restored_total Pins (maps, links) removed from outside "
	       "and pinned again by moatd.\n"
	       "# TYPE moat_pins_restored_total counter\nmoat_pins_restored_total %llu\n",
	       (unsigned long long)d->pins_restored);
	{
		__u32 used[MOAT_T_MAX];
		moat_compiler_counts(d->comp, used);
		metric(&b, &len, &cap,
		       "# HELP moat_table_entries Entries each datapath table holds.\n"
		       "# TYPE moat_table_entries gauge\n");
		for (int t = 0; t < MOAT_T_MAX; t++)
			metric(&b, &len, &cap, "moat_table_entries{table=\"%s\"} %u\n", moat_tbl_name(t),
			       used[t]);
	}
	if (d->k8s) { /* Kubernetes API watch state */
		char *k = moat_k8s_source_metrics(d->k8s);
		metric(&b, &len, &cap, "%s", k);
		free(k);
	}
	return b;
}

/* ---- observe: newline-delimited JSON, optionally following ------------- */
struct obs {
	struct moatd *d;
	struct moat_principal who;
	struct moat_ev_filter f;
	char *strs[8]; /* owned filter strings */
	bool follow;
	uint64_t cursor;
	char *pending;
	size_t plen, poff;
	struct moat_ev *batch;
	int idle_ms;
};

static const char *arg(struct MHD_Connection *conn, const char *k)
{
	return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, k);
}

static void filter_free(struct moat_ev_filter *f)
{
	moat_selector_free(f->label_sel);
	free(f->ids_owned);
	f->label_sel = NULL;
	f->ids_owned = NULL;
}

struct idcollect {
	const struct moat_selector *sel;
	uint32_t *ids;
	size_t n;
};

static int label_id_cb(const struct moat_ident_view *v, void *arg)
{
	struct idcollect *c = arg;

	if (v->cls == MOAT_CLASS_POD && v->labels && moat_selector_matches(c->sel, v->labels)) {
		c->ids = xrealloc(c->ids, (c->n + 1) * sizeof(*c->ids));
		c->ids[c->n++] = v->id; /* ascending: the compiler walks ids in order */
	}
	return 0;
}

/* A label filter becomes the identities whose labels match, as they are
 * now (called under the daemon lock; observe calls it per batch, so pods
 * labelled later are seen). */
static void filter_resolve(struct moatd *d, struct moat_ev_filter *f)
{
	struct idcollect c = { .sel = f->label_sel };

	if (!f->label_sel)
		return;
	moat_compiler_identities(d->comp, label_id_cb, &c);
	free(f->ids_owned);
	f->ids_owned = c.ids;
	f->ids = c.ids;
	f->nids = c.n;
	f->by_ids = true;
}

static int filter_parse_args(struct MHD_Connection *conn, struct moat_ev_filter *f, char **strs, char *err,
			     size_t errlen)
{
	const char *v;
	size_t ns = 0;

	memset(f, 0, sizeof(*f));
	f->port = f->proto = f->verdict = f->type = -1;
#define STR(field, name)               \
	if ((v = arg(conn, name))) {   \
		strs[ns] = xstrdup(v); \
		f->field = strs[ns++]; \
	}
	STR(ns, "namespace");
	STR(pod, "pod");
	STR(ip, "ip");
	STR(policy, "policy");
#undef STR
	if ((v = arg(conn, "label"))) {
		char e[100];
		if (moat_selector_parse(v, &f->label_sel, e, sizeof(e))) {
			snprintf(err, errlen, "label: %.100s", e);
			return -EINVAL;
		}
	}
	if ((v = arg(conn, "port"))) {
		char *end;
		long p = strtol(v, &end, 10);
		if (*end || p < 0 || p > 65535) {
			snprintf(err, errlen, "port must be 0..65535");
			return -EINVAL;
		}
		f->port = (int)p;
	}
	if ((v = arg(conn, "proto"))) {
		uint8_t pr;
		if (moat_proto_parse(v, &pr)) {
			snprintf(err, errlen, "proto must be TCP, UDP, SCTP, ICMP or ICMPv6");
			return -EINVAL;
		}
		f->proto = pr;
	}
	if ((v = arg(conn, "verdict"))) {
		if (!strcmp(v, "allow"))
			f->verdict = MOAT_VERDICT_ALLOW;
		else if (!strcmp(v, "deny"))
			f->verdict = MOAT_VERDICT_DENY;
		else if (!strcmp(v, "audit"))
			f->verdict = MOAT_VERDICT_AUDIT;
		else {
			snprintf(err, errlen, "verdict must be allow, deny or audit");
			return -EINVAL;
		}
	}
	if ((v = arg(conn, "type"))) {
		static const char *const t[] = { "", "deny", "new-flow", "flow-end", "sample", "audit" };
		for (int i = 1; i <= 5; i++)
			if (!strcmp(v, t[i]))
				f->type = i;
		if (f->type < 0) {
			snprintf(err, errlen, "type must be deny, new-flow, flow-end, sample or audit");
			return -EINVAL;
		}
	}
	if ((v = arg(conn, "rule")))
		f->rule = (uint32_t)strtoul(v, NULL, 10);
	return 0;
}

/* An observe/flows/report filter from the query; on an error nothing stays
 * allocated in f (the caller frees strs either way). */
static int filter_parse(struct MHD_Connection *conn, struct moat_ev_filter *f, char **strs, char *err,
			size_t errlen)
{
	int rc = filter_parse_args(conn, f, strs, err, errlen);

	if (rc)
		filter_free(f);
	return rc;
}

static void obs_free(void *cls)
{
	struct obs *o = cls;

	for (int i = 0; i < 8; i++)
		free(o->strs[i]);
	filter_free(&o->f);
	moat_principal_clear(&o->who);
	free(o->pending);
	free(o->batch);
	free(o);
}

static void obs_append(struct obs *o, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	size_t l;

	json_decref(j);
	if (!s)
		return;
	l = strlen(s);
	o->pending = xrealloc(o->pending, o->plen + l + 2);
	memcpy(o->pending + o->plen, s, l);
	o->pending[o->plen + l] = '\n';
	o->plen += l + 1;
	free(s);
}

#define OBS_BATCH 512

static ssize_t obs_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct obs *o = cls;
	uint64_t last;
	size_t n;

	(void)pos;
	while (o->poff >= o->plen) {
		o->plen = o->poff = 0;
		n = moat_events_read(o->d->events, o->cursor, o->batch, OBS_BATCH, o->follow ? 1000 : 0,
				     &last);
		o->cursor = last;
		if (!n) {
			if (!o->follow)
				return MHD_CONTENT_READER_END_OF_STREAM;
			/* keep the connection alive; a client that left shows up as
			 * a write error and MHD ends the stream */
			if ((o->idle_ms += 1000) >= 15000) {
				o->idle_ms = 0;
				buf[0] = '\n';
				return 1;
			}
			continue;
		}
		o->idle_ms = 0;
		pthread_mutex_lock(&o->d->lock);
		filter_resolve(o->d, &o->f);
		for (size_t i = 0; i < n; i++) {
			char *desc = describe_for(o->d, &o->who, o->batch[i].raw.rule);
			if (moat_ev_match(&o->batch[i], &o->f, desc))
				obs_append(o, moat_ev_json(&o->batch[i], desc));
			free(desc);
		}
		pthread_mutex_unlock(&o->d->lock);
	}
	n = o->plen - o->poff < max ? o->plen - o->poff : max;
	memcpy(buf, o->pending + o->poff, n);
	o->poff += n;
	return (ssize_t)n;
}

/* Tenancy: a caller who is not platform-admin sees flows with at least one
 * side in its namespaces, filtered here, on the server. */
static void scope_filter(struct moat_ev_filter *f, const struct moat_principal *who)
{
	if (admin(who))
		return;
	f->allowed_ns = (char **)who->ns;
	f->nallowed_ns = who->nns;
	if (!who->nns) {
		static char *none[] = { "" };
		f->allowed_ns = none;
		f->nallowed_ns = 0;
	}
}

static enum MHD_Result h_observe(struct MHD_Connection *conn, struct moatd *d,
				 const struct moat_principal *who)
{
	struct obs *o;
	struct MHD_Response *r;
	enum MHD_Result ret;
	const char *v;
	char err[128];
	long lastn = 0;
	uint64_t head;

	if (!d->events)
		return send_error(conn, 503, "verdict events are not available on this node");
	o = xcalloc(1, sizeof(*o));
	o->d = d;
	o->batch = xcalloc(OBS_BATCH, sizeof(*o->batch));
	if (filter_parse(conn, &o->f, o->strs, err, sizeof(err))) {
		obs_free(o);
		return send_error(conn, 400, err);
	}
	o->who = *who;
	for (size_t i = 0; i < who->nns; i++)
		o->who.ns[i] = xstrdup(who->ns[i]);
	scope_filter(&o->f, &o->who);
	o->follow = (v = arg(conn, "follow")) && strcmp(v, "0") && strcmp(v, "false");
	if ((v = arg(conn, "last")))
		lastn = strtol(v, NULL, 10);
	head = moat_events_head(d->events);
	if (lastn > 100000)
		lastn = 100000;
	if (lastn > 0) {
		/* the last N matching events still in the ring, oldest first */
		struct moat_ev *keep = xcalloc((size_t)lastn, sizeof(*keep));
		size_t kn = 0, n;
		uint64_t cur = 0, l;

		pthread_mutex_lock(&d->lock);
		filter_resolve(d, &o->f);
		while (cur < head && (n = moat_events_read(d->events, cur, o->batch, OBS_BATCH, 0, &l)) > 0) {
			for (size_t i = 0; i < n && o->batch[i].seq <= head; i++) {
				char *desc = describe_for(d, &o->who, o->batch[i].raw.rule);
				if (moat_ev_match(&o->batch[i], &o->f, desc))
					keep[kn++ % (size_t)lastn] = o->batch[i];
				free(desc);
			}
			cur = l;
		}
		for (size_t i = kn > (size_t)lastn ? kn - (size_t)lastn : 0; i < kn; i++) {
			const struct moat_ev *ev = &keep[i % (size_t)lastn];
			char *desc = describe_for(d, &o->who, ev->raw.rule);
			obs_append(o, moat_ev_json(ev, desc));
			free(desc);
		}
		pthread_mutex_unlock(&d->lock);
		free(keep);
		o->cursor = head;
	} else {
		o->cursor = o->follow ? head : 0;
	}
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, obs_read, o, obs_free);
	MHD_add_response_header(r, "Content-Type", "application/x-ndjson");
	ret = MHD_queue_response(conn, 200, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result h_flows(struct MHD_Connection *conn, struct moatd *d, const struct moat_principal *who)
{
	struct moat_ev_filter f;
	char *strs[8] = { 0 }, err[128];
	struct moat_flow *fl;
	size_t n, max = 100000;
	json_t *a;

	if (!d->events)
		return send_error(conn, 503, "verdict events are not available on this node");
	if (filter_parse(conn, &f, strs, err, sizeof(err))) {
		for (int i = 0; i < 8; i++)
			free(strs[i]);
		return send_error(conn, 400, err);
	}
	a = json_array();
	scope_filter(&f, who);
	filter_resolve(d, &f);
	fl = xcalloc(max, sizeof(*fl));
	n = moat_events_flows(d->events, fl, max);
	for (size_t i = 0; i < n; i++) {
		char *desc = describe_for(d, who, fl[i].rule);
		if (moat_flow_match(&fl[i], &f, desc))
			json_array_append_new(a, moat_flow_json(&fl[i], desc));
		free(desc);
	}
	free(fl);
	for (int i = 0; i < 8; i++)
		free(strs[i]);
	filter_free(&f);
	return send_json(conn, 200, a);
}

struct rdesc {
	struct moatd *d;
	const struct moat_principal *who;
};

static char *report_describe(void *arg, __u32 rule)
{
	struct rdesc *r = arg;
	return describe_for(r->d, r->who, rule);
}

static enum MHD_Result h_report(struct MHD_Connection *conn, struct moatd *d,
				const struct moat_principal *who)
{
	struct rdesc rd = { d, who };
	struct moat_ev_filter f;
	char *strs[8] = { 0 }, err[128];
	struct moat_flow *fl = NULL;
	size_t n = 0, max = 100000;
	json_t *j;

	if (filter_parse(conn, &f, strs, err, sizeof(err))) {
		for (int i = 0; i < 8; i++)
			free(strs[i]);
		return send_error(conn, 400, err);
	}
	scope_filter(&f, who);
	filter_resolve(d, &f);
	if (d->events) {
		size_t all;
		fl = xcalloc(max, sizeof(*fl));
		all = moat_events_flows(d->events, fl, max);
		/* the flow filters (pod, ip, port, protocol, verdict, policy)
		 * choose the observed side; the matrix keeps its namespaces */
		for (size_t i = 0; i < all; i++) {
			char *desc = describe_for(d, who, fl[i].rule);
			if (moat_flow_match(&fl[i], &f, desc))
				fl[n++] = fl[i];
			free(desc);
		}
	}
	j = moat_report_build(d->comp, fl, n, &f, report_describe, &rd);
	json_object_set_new(j, "node", json_string(d->cfg.node));
	free(fl);
	for (int i = 0; i < 8; i++)
		free(strs[i]);
	filter_free(&f);
	return send_json(conn, 200, j);
}

/* ---- changes: manifests through the API, with an audit log ------------------ */
static void audit(struct moat_api *api, const struct moat_principal *who, const char *action,
		  const char *what, const char *result)
{
	char ts[64];
	time_t now = time(NULL);
	struct tm tm;
	json_t *j;
	char *line;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "time", ts, "user", who->user, "role",
		      moat_role_name(who->role), "action", action, "object", what, "result", result);
	line = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!line)
		return;
	pthread_mutex_lock(&api->audit_lock);
	if (api->audit) {
		fprintf(api->audit, "%s\n", line);
		fflush(api->audit);
	}
	pthread_mutex_unlock(&api->audit_lock);
	moat_log(MOAT_LOG_INFO, "audit: %s", line);
	free(line);
}

static bool safe_name(const char *n)
{
	size_t l = strlen(n);

	if (!l || l > 100 || n[0] == '.')
		return false;
	for (size_t i = 0; i < l; i++)
		if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '-' ||
		      n[i] == '.' || n[i] == '_'))
			return false;
	return true;
}

/* PUT /v1/manifests/NAME: every document must decode, and every object must
 * be one the caller may change; then the file is written (atomically) into
 * the manifest directory, where moatd picks it up like any other. */
static enum MHD_Result h_put_manifest(struct moat_api *api, struct MHD_Connection *conn,
				      const struct moat_principal *who, const char *name, const char *body,
				      size_t blen)
{
	struct moatd *d = api->d;
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	char path[4096], tmp[4200], err[4400], what[256];
	int rc;
	FILE *f;

	snprintf(what, sizeof(what), "manifest %s", name);
	if (!safe_name(name)) {
		audit(api, who, "put", what, "refused: bad name");
		return send_error(conn, 400, "manifest names are [a-z0-9._-], at most 100");
	}
	if (moat_manifest_parse(body, blen, name, &docs, &errs)) {
		snprintf(err, sizeof(err), "%s", errs.n ? errs.v[0] : "unparsable");
		moat_docs_free(&docs);
		moat_errs_free(&errs);
		audit(api, who, "put", what, err);
		return send_error(conn, 400, err);
	}
	for (size_t i = 0; i < docs.n; i++) {
		struct moat_object *o = NULL;
		rc = moat_decode(docs.v[i].json, name, &o, err, sizeof(err));
		if (!rc && !o)
			snprintf(err, sizeof(err), "%s: document %zu: not a kind moat reads", name, i + 1),
				rc = -EINVAL;
		if (!rc && !(o->kind == MOAT_O_POLICY && o->ns ? moat_principal_may_change(who, o->ns) :
								 admin(who))) {
			snprintf(err, sizeof(err), "%s: %s %s%s%s: %s may not change it", name, o->api_kind,
				 o->ns ? o->ns : "", o->ns ? "/" : "", o->name, who->user);
			rc = -EPERM;
		}
		moat_object_free(o);
		if (rc) {
			moat_docs_free(&docs);
			moat_errs_free(&errs);
			audit(api, who, "put", what, err);
			return send_error(conn, rc == -EPERM ? 403 : 400, err);
		}
	}
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	snprintf(path, sizeof(path), "%s/api-%s", d->cfg.manifests, name);
	snprintf(tmp, sizeof(tmp), "%s/.api-%s.tmp", d->cfg.manifests, name);
	f = fopen(tmp, "wb");
	if (!f || fwrite(body, 1, blen, f) != blen || fclose(f) || rename(tmp, path)) {
		snprintf(err, sizeof(err), "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		audit(api, who, "put", what, err);
		return send_error(conn, 500, err);
	}
	audit(api, who, "put", what, "written");
	return send_json(conn, 200,
			 json_pack("{s:s,s:s}", "written", path, "note",
				   "applied by moatd within milliseconds; see GET /v1/sources"));
}

static enum MHD_Result h_delete_manifest(struct moat_api *api, struct MHD_Connection *conn,
					 const struct moat_principal *who, const char *name)
{
	struct moatd *d = api->d;
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	char path[4096], what[256], err[512];

	snprintf(what, sizeof(what), "manifest %s", name);
	if (!safe_name(name))
		return send_error(conn, 400, "manifest names are [a-z0-9._-], at most 100");
	snprintf(path, sizeof(path), "%s/api-%s", d->cfg.manifests, name);
	/* deleting needs the right to change everything the file holds */
	if (!admin(who)) {
		if (moat_manifest_load_file(path, &docs, &errs)) {
			moat_docs_free(&docs);
			moat_errs_free(&errs);
			audit(api, who, "delete", what, "refused: no such manifest");
			return send_error(conn, 404, "no such manifest");
		}
		for (size_t i = 0; i < docs.n; i++) {
			struct moat_object *o = NULL;
			bool ok = !moat_decode(docs.v[i].json, name, &o, err, sizeof(err)) && o &&
				  o->kind == MOAT_O_POLICY && o->ns && moat_principal_may_change(who, o->ns);
			moat_object_free(o);
			if (!ok) {
				moat_docs_free(&docs);
				moat_errs_free(&errs);
				audit(api, who, "delete", what, "refused: not allowed");
				return send_error(conn, 403, "the manifest holds objects you may not change");
			}
		}
		moat_docs_free(&docs);
		moat_errs_free(&errs);
	}
	if (unlink(path)) {
		audit(api, who, "delete", what, errno == ENOENT ? "no such manifest" : strerror(errno));
		return send_error(conn, errno == ENOENT ? 404 : 500, strerror(errno));
	}
	audit(api, who, "delete", what, "deleted");
	return send_json(conn, 200, json_pack("{s:s}", "deleted", path));
}

/* ---- blueprints: status, diff, rollback ------------------------------------------ */
/* Keeps the items of arr whose field names a namespace the caller sees;
 * items without the field only for platform admins. */
static void keep_visible(json_t *arr, const char *field, const struct moat_principal *who)
{
	for (size_t i = json_array_size(arr); i-- > 0;) {
		json_t *ns = json_object_get(json_array_get(arr, i), field);
		bool ok = json_is_string(ns) ? moat_principal_sees(who, json_string_value(ns)) : admin(who);
		if (!ok)
			json_array_remove(arr, i);
	}
}

static json_t *diff_for(json_t *diff, const struct moat_principal *who)
{
	json_t *ch = json_object_get(diff, "changes"), *c;
	size_t i;

	if (admin(who))
		return diff;
	keep_visible(json_object_get(diff, "namespaces"), "namespace", who);
	keep_visible(json_object_get(diff, "errors"), "namespace", who);
	json_array_foreach(ch, i, c)
	{
		json_t *nss = json_object_get(c, "namespaces");
		for (size_t k = json_array_size(nss); k-- > 0;)
			if (!moat_principal_sees(who, json_string_value(json_array_get(nss, k))))
				json_array_remove(nss, k);
	}
	for (size_t k = json_array_size(ch); k-- > 0;)
		if (!json_array_size(json_object_get(json_array_get(ch, k), "namespaces")))
			json_array_remove(ch, k);
	return diff;
}

static enum MHD_Result h_blueprints(struct MHD_Connection *conn, struct moatd *d,
				    const struct moat_principal *who)
{
	json_t *st = moat_compiler_blueprints(d->comp), *b;
	size_t i;

	json_array_foreach(st, i, b)
	{
		keep_visible(json_object_get(b, "namespaces"), "namespace", who);
		keep_visible(json_object_get(b, "errors"), "namespace", who);
		json_object_set_new(b, "source", json_string("kubernetes"));
		if (d->src) {
			char key[300];
			const char *f;
			snprintf(key, sizeof(key), "Blueprint/%s",
				 json_string_value(json_object_get(b, "name")));
			f = moat_srcdir_owner(d->src, key);
			json_object_set_new(b, "source", f && admin(who) ? json_string(f) : json_null());
		}
	}
	return send_json(conn, 200, st);
}

/* The blueprint `name` as it is, with spec.version set to `to`. */
static int bp_candidate(struct moatd *d, const char *name, const char *to, struct moat_object **ret,
			char *err, size_t errlen)
{
	const struct moat_blueprint *bp = moat_compiler_blueprint(d->comp, name);
	json_t *doc;
	int rc;

	if (!bp) {
		snprintf(err, errlen, "no Blueprint %s", name);
		return -ENOENT;
	}
	if (!moat_bp_find_version(bp, to)) {
		snprintf(err, errlen, "Blueprint %s has no version \"%s\" in spec.versions", name, to);
		return -EINVAL;
	}
	doc = json_deep_copy(bp->doc);
	json_object_set_new(json_object_get(doc, "spec"), "version", json_string(to));
	rc = moat_decode(doc, "candidate", ret, err, errlen);
	json_decref(doc);
	return rc;
}

/* POST /v1/blueprints/diff with Blueprint manifests as the body. */
static enum MHD_Result h_bp_diff_body(struct MHD_Connection *conn, struct moatd *d,
				      const struct moat_principal *who, const char *body, size_t blen)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	json_t *out = json_array();
	char err[1024];

	if (moat_manifest_parse(body, blen, "request", &docs, &errs)) {
		snprintf(err, sizeof(err), "%s", errs.n ? errs.v[0] : "unparsable");
		moat_docs_free(&docs);
		moat_errs_free(&errs);
		json_decref(out);
		return send_error(conn, 400, err);
	}
	for (size_t i = 0; i < docs.n; i++) {
		struct moat_object *o = NULL;
		int rc = moat_decode(docs.v[i].json, "request", &o, err, sizeof(err));
		if (!rc && (!o || o->kind != MOAT_O_BLUEPRINT)) {
			snprintf(err, sizeof(err), "request: document %zu is not a Blueprint", i + 1);
			rc = -EINVAL;
		}
		if (rc) {
			moat_object_free(o);
			moat_docs_free(&docs);
			moat_errs_free(&errs);
			json_decref(out);
			return send_error(conn, 400, err);
		}
		json_array_append_new(out,
				      diff_for(moat_compiler_blueprint_diff(d->comp, o->u.blueprint), who));
		moat_object_free(o);
	}
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	return send_json(conn, 200, out);
}

static const char *qarg(struct MHD_Connection *conn, const char *k)
{
	return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, k);
}

/* POST /v1/blueprints/NAME/diff?to=V and /v1/blueprints/NAME/rollback[?to=V][&dryRun=true] */
static enum MHD_Result h_bp_action(struct moat_api *api, struct MHD_Connection *conn,
				   const struct moat_principal *who, const char *name, const char *action)
{
	struct moatd *d = api->d;
	const struct moat_blueprint *bp = moat_compiler_blueprint(d->comp, name);
	const char *to = qarg(conn, "to"), *dry = qarg(conn, "dryRun");
	bool rollback = !strcmp(action, "rollback");
	struct moat_object *cand = NULL;
	char err[5000], what[300], path[4096], tmp[4200], *buf = NULL, *nb = NULL;
	const char *file;
	json_t *diff, *res;
	size_t len = 0, nlen = 0;
	FILE *f;
	int rc;

	snprintf(what, sizeof(what), "Blueprint %s", name);
	if (rollback && !admin(who) && !(dry && !strcmp(dry, "true"))) {
		audit(api, who, "rollback", what, "refused: platform-admin only");
		return send_error(conn, 403, "rolling back a blueprint is for platform admins");
	}
	if (!bp)
		return send_error(conn, 404, "no such Blueprint");
	if (!to && rollback) {
		const struct moat_bp_version *prev = moat_bp_previous(bp, bp->version);
		if (!prev) {
			snprintf(err, sizeof(err), "Blueprint %s: no version before \"%s\" in spec.versions",
				 name, bp->version);
			return send_error(conn, 409, err);
		}
		to = prev->version;
	}
	if (!to)
		return send_error(conn, 400, "say which version: ?to=VERSION");
	if ((rc = bp_candidate(d, name, to, &cand, err, sizeof(err))))
		return send_error(conn, rc == -ENOENT ? 404 : 400, err);
	diff = diff_for(moat_compiler_blueprint_diff(d->comp, cand->u.blueprint), who);
	moat_object_free(cand);
	if (!rollback || (dry && !strcmp(dry, "true")))
		return send_json(conn, 200, diff);
	if (!strcmp(to, bp->version)) {
		json_decref(diff);
		snprintf(err, sizeof(err), "Blueprint %s already runs version \"%s\"", name, to);
		return send_error(conn, 409, err);
	}
	if (!d->src) {
		json_decref(diff);
		snprintf(
			err, sizeof(err),
			"Blueprint %s comes from the Kubernetes API, which moatd only reads; run: "
			"kubectl patch blueprints.moat.io %s --type merge -p '{\"spec\":{\"version\":\"%s\"}}'",
			name, name, to);
		audit(api, who, "rollback", what, "refused: not in the manifest directory");
		return send_error(conn, 409, err);
	}
	snprintf(tmp, sizeof(tmp), "Blueprint/%s", name);
	file = moat_srcdir_owner(d->src, tmp);
	if (!file) {
		json_decref(diff);
		return send_error(conn, 409, "the Blueprint's manifest file is not known");
	}
	snprintf(path, sizeof(path), "%s/%s", moat_srcdir_dir(d->src), file);
	snprintf(tmp, sizeof(tmp), "%s/.rollback-%s.tmp", moat_srcdir_dir(d->src), name);
	{
		struct moat_docs docs = { 0 };
		struct moat_errs errs = { 0 };
		f = fopen(path, "rb");
		if (f) {
			buf = xcalloc(1, MOAT_MANIFEST_MAX_BYTES + 1);
			len = fread(buf, 1, MOAT_MANIFEST_MAX_BYTES, f);
			fclose(f);
		}
		rc = buf ? moat_yaml_set_scalar(buf, len, "Blueprint", name,
						(const char *const[]){ "spec", "version" }, 2, to, &nb,
						&nlen) :
			   -errno;
		/* the edited file must still say what we mean */
		if (!rc && moat_manifest_parse(nb, nlen, file, &docs, &errs))
			rc = -EINVAL;
		moat_docs_free(&docs);
		moat_errs_free(&errs);
	}
	if (!rc) {
		f = fopen(tmp, "wb");
		if (!f || fwrite(nb, 1, nlen, f) != nlen || fclose(f) || rename(tmp, path)) {
			rc = -errno;
			unlink(tmp);
		}
	}
	free(buf);
	free(nb);
	if (rc) {
		json_decref(diff);
		snprintf(err, sizeof(err), "cannot change spec.version in %s: %s", path, strerror(-rc));
		audit(api, who, "rollback", what, err);
		return send_error(conn, 500, err);
	}
	snprintf(err, sizeof(err), "spec.version %s -> %s in %s", bp->version, to, path);
	audit(api, who, "rollback", what, err);
	res = json_pack("{s:s,s:s,s:s,s:o}", "written", path, "from", bp->version, "to", to, "diff", diff);
	return send_json(conn, 200, res);
}

static long peer_uid(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct ucred uc;
	socklen_t l = sizeof(uc);

	if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &uc, &l))
		return -1;
	return (long)uc.uid;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	struct conn_ctx *cc = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (!cc)
		return;
	moat_principal_clear(&cc->who);
	free(cc->body);
	free(cc);
	*con_cls = NULL;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			       const char *version, const char *upload_data, size_t *upload_size,
			       void **con_cls)
{
	struct moat_api *api = cls;
	struct moatd *d = api->d;
	struct conn_ctx *cc = *con_cls;
	const struct moat_principal *who;
	enum MHD_Result ret;
	json_t *j;

	(void)version;
	if (!cc) {
		/* first call of a request: authenticate once */
		cc = xcalloc(1, sizeof(*cc));
		*con_cls = cc;
		cc->auth_rc = moat_auth_check(
			d->auth, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"),
			api->mhd_tcp && MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON)->daemon ==
						api->mhd_tcp ?
				-1 :
				peer_uid(conn),
			&cc->who);
		return MHD_YES;
	}
	if (*upload_size) {
		if (cc->blen + *upload_size > MAX_BODY)
			cc->too_big = true;
		else {
			cc->body = xrealloc(cc->body, cc->blen + *upload_size + 1);
			memcpy(cc->body + cc->blen, upload_data, *upload_size);
			cc->blen += *upload_size;
			cc->body[cc->blen] = 0;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (cc->auth_rc == -EAGAIN) /* Kubernetes roles: TokenReview/SAR unanswered */
		return send_error(conn, 503,
				  "cannot check the token: the Kubernetes API server does not answer");
	if (cc->auth_rc == -EPERM)
		return send_error(conn, 403, "no moat permission in any namespace (RBAC: get flows.moat.io)");
	if (cc->auth_rc)
		return send_error(conn, 401,
				  "authentication required: a bearer token (or uid 0 on the unix socket)");
	who = &cc->who;

	if (!strcmp(method, "PUT") || !strcmp(method, "DELETE")) {
		if (strncmp(url, "/v1/manifests/", 14))
			return send_error(conn, 404, "no such endpoint");
		if (who->role < MOAT_ROLE_NS_ADMIN) {
			audit(api, who, method, url, "refused: read-only role");
			return send_error(conn, 403, "viewers may not change anything");
		}
		if (!d->src) /* Kubernetes mode: the API server owns the objects */
			return send_error(conn, 409,
					  "moatd reads the Kubernetes API: change objects with kubectl");
		if (cc->too_big)
			return send_error(conn, 413, "manifests are limited to 1 MiB");
		if (!strcmp(method, "PUT"))
			return h_put_manifest(api, conn, who, url + 14, cc->body ? cc->body : "", cc->blen);
		return h_delete_manifest(api, conn, who, url + 14);
	}
	if (!strcmp(method, "POST")) {
		const char *rest = url + strlen("/v1/blueprints/"), *slash;
		char name[128];
		if (strncmp(url, "/v1/blueprints/", strlen("/v1/blueprints/")))
			return send_error(conn, 404, "no such endpoint");
		if (cc->too_big)
			return send_error(conn, 413, "requests are limited to 1 MiB");
		pthread_mutex_lock(&d->lock);
		if (!strcmp(rest, "diff")) {
			ret = h_bp_diff_body(conn, d, who, cc->body ? cc->body : "", cc->blen);
		} else if ((slash = strchr(rest, '/')) && (size_t)(slash - rest) < sizeof(name) &&
			   (!strcmp(slash + 1, "diff") || !strcmp(slash + 1, "rollback"))) {
			snprintf(name, sizeof(name), "%.*s", (int)(slash - rest), rest);
			ret = h_bp_action(api, conn, who, name, slash + 1);
		} else {
			ret = send_error(conn, 404, "no such endpoint");
		}
		pthread_mutex_unlock(&d->lock);
		return ret;
	}
	if (strcmp(method, "GET"))
		return send_error(conn, 405, "GET, POST, PUT or DELETE");

	/* streaming takes the lock per batch, not for its whole life */
	if (!strncmp(url, "/v1/archives", 12)) /* api_archive.c: reads the disk, no lock */
		return moat_api_archives(conn, d, who, url);
	if (!strcmp(url, "/v1/observe"))
		return h_observe(conn, d, who);

	pthread_mutex_lock(&d->lock);
	if (!strcmp(url, "/v1/flows")) {
		ret = h_flows(conn, d, who);
	} else if (!strcmp(url, "/v1/report")) {
		ret = h_report(conn, d, who);
	} else if (!strcmp(url, "/v1/status")) {
		ret = send_json(conn, 200, status_json(d, who));
	} else if (!strcmp(url, "/v1/endpoints")) {
		struct vis v = { json_array(), who };
		moat_compiler_endpoints(d->comp, ep_cb, &v);
		ret = send_json(conn, 200, v.a);
	} else if (!strcmp(url, "/v1/identities")) {
		struct vis v = { json_array(), who };
		moat_compiler_identities(d->comp, id_cb, &v);
		ret = send_json(conn, 200, v.a);
	} else if (!strcmp(url, "/v1/policies")) {
		struct vis v = { json_array(), who };
		moat_compiler_policies(d->comp, pol_cb, &v);
		ret = send_json(conn, 200, v.a);
	} else if (!strcmp(url, "/v1/blueprints")) {
		ret = h_blueprints(conn, d, who);
	} else if (!strcmp(url, "/v1/explain")) {
		ret = h_explain(conn, d, who);
	} else if (!strcmp(url, "/v1/whoami")) {
		j = json_pack("{s:s,s:s,s:o}", "user", who->user, "role", moat_role_name(who->role),
			      "namespaces", json_array());
		for (size_t i = 0; i < who->nns; i++)
			json_array_append_new(json_object_get(j, "namespaces"), json_string(who->ns[i]));
		/* Kubernetes roles: namespaces a namespace-admin only views */
		json_object_set_new(j, "read_only_namespaces", json_array());
		for (size_t i = 0; who->role == MOAT_ROLE_NS_ADMIN && i < who->nns; i++)
			if (!moat_principal_may_change(who, who->ns[i]))
				json_array_append_new(json_object_get(j, "read_only_namespaces"),
						      json_string(who->ns[i]));
		ret = send_json(conn, 200, j);
	} else if (!strcmp(url, "/v1/sources") || !strcmp(url, "/metrics")) {
		/* file names and node-wide counters of every tenant */
		if (!admin(who))
			ret = send_error(conn, 403, "platform-admin only");
		else if (!strcmp(url, "/metrics"))
			ret = send_text(conn, 200, "text/plain; version=0.0.4", metrics_text(d));
		else
			ret = send_json(conn, 200, d->src ? moat_srcdir_json(d->src) : json_array());
	} else {
		ret = send_error(conn, 404, "no such endpoint");
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int moat_api_start(struct moatd *d, const struct moat_api_opts *o, struct moat_api **ret)
{
	struct moat_api *api = xcalloc(1, sizeof(*api));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int err;

	api->d = d;
	api->fd = -1;
	pthread_mutex_init(&api->audit_lock, NULL);
	if (o->audit_log) {
		api->audit = fopen(o->audit_log, "a");
		if (!api->audit) {
			err = -errno;
			goto fail;
		}
	}
	if (strlen(o->socket) >= sizeof(sa.sun_path)) {
		err = -ENAMETOOLONG;
		goto fail;
	}
	strcpy(sa.sun_path, o->socket);
	api->path = xstrdup(o->socket);
	api->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (api->fd < 0) {
		err = -errno;
		goto fail;
	}
	unlink(o->socket);
	if (bind(api->fd, (struct sockaddr *)&sa, sizeof(sa)) || chmod(o->socket, o->mode) ||
	    listen(api->fd, 64)) {
		err = -errno;
		goto fail;
	}
	/* a thread per connection: observers block waiting for events */
	api->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
					    MHD_USE_POLL | MHD_USE_ERROR_LOG,
				    0, NULL, NULL, handler, api, MHD_OPTION_LISTEN_SOCKET, api->fd,
				    MHD_OPTION_NOTIFY_COMPLETED, completed, api, MHD_OPTION_CONNECTION_LIMIT,
				    64u, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
	if (!api->mhd) {
		err = -EIO;
		goto fail;
	}
	if (o->tcp_port) {
		/* TCP is always TLS, and a token is always required */
		if (!o->tls_cert || !o->tls_key) {
			err = -EINVAL;
			goto fail;
		}
		api->mhd_tcp = MHD_start_daemon(
			MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
				MHD_USE_ERROR_LOG | MHD_USE_TLS | MHD_USE_DUAL_STACK,
			o->tcp_port, NULL, NULL, handler, api, MHD_OPTION_HTTPS_MEM_CERT, o->tls_cert,
			MHD_OPTION_HTTPS_MEM_KEY, o->tls_key, MHD_OPTION_NOTIFY_COMPLETED, completed, api,
			MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
		if (!api->mhd_tcp) {
			err = -EIO;
			goto fail;
		}
	}
	*ret = api;
	return 0;
fail:
	if (api->mhd)
		MHD_stop_daemon(api->mhd);
	if (api->fd >= 0)
		close(api->fd);
	if (api->audit)
		fclose(api->audit);
	free(api->path);
	free(api);
	return err;
}

void moat_api_stop(struct moat_api *api)
{
	if (!api)
		return;
	if (api->mhd_tcp)
		MHD_stop_daemon(api->mhd_tcp);
	MHD_stop_daemon(api->mhd);
	close(api->fd);
	unlink(api->path);
	if (api->audit)
		fclose(api->audit);
	free(api->path);
	free(api);
}
