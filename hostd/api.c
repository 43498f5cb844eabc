// SPDX-License-Identifier: Apache-2.0
/* The control API: HTTP with JSON over a unix socket (libmicrohttpd).
 *   GET /v1/status              attach modes and why, generation, tables
 *   GET /v1/endpoints           pods known, local ones with interfaces
 *   GET /v1/identities
 *   GET /v1/policies            with subjects and compiled entries
 *   GET /v1/explain?from=&to=&port=&proto=
 *   GET /v1/sources             manifest files, digests, errors
 *   GET /metrics                Prometheus text
 * Every handler holds the daemon lock while it reads state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include <jansson.h>

#include "api.h"
#include "daemon.h"
#include "events.h"
#include "report.h"
#include "srcdir.h"
#include "util.h"

struct moat_api {
	struct MHD_Daemon *mhd;
	struct moatd *d;
	int fd;
	char *path;
};

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned code, const char *ctype,
				 char *body)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body,
								  MHD_RESPMEM_MUST_FREE);
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
	if (!s)
		return MHD_NO;
	return send_text(conn, code, "application/json", s);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned code, const char *msg)
{
	return send_json(conn, code, json_pack("{s:s}", "error", msg));
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
	case MOAT_CLASS_POD: return "pod";
	case MOAT_CLASS_NODE: return "node";
	case MOAT_CLASS_VIP: return "service";
	default: return "world";
	}
}

static const char *hook_name(int h)
{
	switch (h) {
	case MOAT_HOOK_FROM_POD: return "from-pod";
	case MOAT_HOOK_TO_POD: return "to-pod";
	default: return "uplink";
	}
}

static int iface_cb(const struct moat_iface_status *s, void *arg)
{
	json_t *why = json_object();

	for (int m = MOAT_MODE_HW; m < MOAT_MODE_MAX; m++)
		if (s->why[m][0])
			json_object_set_new(why, moat_mode_name(m), json_string(s->why[m]));
	json_array_append_new(arg, json_pack("{s:s,s:s?,s:s,s:i,s:b,s:s,s:o,s:s?}", "name", s->name,
					     "pod", s->pod, "hook", hook_name(s->hook), "ifindex",
					     s->ifindex, "attached", s->attached, "mode",
					     s->attached ? moat_mode_name(s->mode) : "none",
					     "rejected", why, "error", s->error[0] ? s->error : NULL));
	return 0;
}

static json_t *status_json(struct moatd *d)
{
	json_t *j = json_object(), *ifs = json_array(), *tbl = json_object(), *errs = json_array();
	struct moat_config *cfg = moat_dp_config(d->dp);

	json_object_set_new(j, "node", json_string(d->cfg.node));
	json_object_set_new(j, "abi", json_integer(MOAT_ABI_VERSION));
	json_object_set_new(j, "generation", json_integer(moat_dp_generation(d->dp)));
	json_object_set_new(j, "adopted", json_boolean(d->adopted));
	json_object_set_new(j, "pin_dir", json_string(moat_dp_pin_dir(d->dp)));
	json_object_set_new(j, "enforce", json_boolean(cfg->flags & MOAT_CFG_ENFORCE));
	json_object_set_new(j, "uptime_s", json_real((double)(moat_now_ns() - d->start_ns) / 1e9));
	if (d->ifaces)
		moat_ifaces_status(d->ifaces, iface_cb, ifs);
	json_object_set_new(j, "interfaces", ifs);
	{
		__u32 used[MOAT_T_MAX];
		/* the compiler's committed counts are what the live slot holds */
		moat_compiler_counts(d->comp, used);
		for (int t = 0; t < MOAT_T_MAX; t++)
			json_object_set_new(tbl, moat_tbl_name(t),
					    json_pack("{s:i,s:i}", "capacity",
						      (json_int_t)moat_dp_tbl_capacity(d->dp, t),
						      "entries", (json_int_t)used[t]));
	}
	json_object_set_new(j, "tables", tbl);
	json_object_set_new(j, "last_apply",
			    json_pack("{s:i,s:f,s:f,s:i,s:i,s:s}", "generation", d->last.generation,
				      "compile_ms", d->last.compile_ns / 1e6, "commit_ms",
				      d->last.commit_ns / 1e6, "ops", (json_int_t)d->last.ops, "error",
				      d->last.error, "message", d->last.message));
	for (size_t i = 0; i < d->nerrors; i++)
		json_array_append_new(errs, json_string(d->errors[i]));
	json_object_set_new(j, "recent_errors", errs);
	return j;
}

static int ep_cb(const struct moat_endpoint_view *v, void *arg)
{
	json_t *ips = json_array();
	char buf[64];

	for (size_t i = 0; i < v->nips; i++)
		json_array_append_new(ips, json_string(moat_addr_str(&v->ips[i], buf)));
	json_array_append_new(arg, json_pack("{s:s,s:s,s:s?,s:i,s:b,s:i,s:o,s:b}", "namespace", v->ns,
					     "name", v->name, "node", v->node, "identity",
					     v->identity, "local", v->local, "ifindex", v->ifindex,
					     "ips", ips, "hostNetwork", v->host_network));
	return 0;
}

static int id_cb(const struct moat_ident_view *v, void *arg)
{
	json_array_append_new(arg, json_pack("{s:i,s:s,s:s?,s:s?,s:o,s:i}", "id", v->id, "class",
					     class_name(v->cls), "namespace", v->ns, "node", v->node,
					     "labels", labels_json(v->labels), "members",
					     (json_int_t)v->npods));
	return 0;
}

static const char *pkind(enum moat_policy_kind k)
{
	switch (k) {
	case MOAT_K_NETPOL: return "NetworkPolicy";
	case MOAT_K_ANP: return "AdminNetworkPolicy";
	case MOAT_K_BANP: return "BaselineAdminNetworkPolicy";
	default: return "ClusterNetworkPolicy";
	}
}

static int pol_cb(const struct moat_policy_view *v, void *arg)
{
	const struct moat_policy *p = v->p;

	json_array_append_new(arg, json_pack("{s:s,s:s,s:s?,s:s,s:s,s:i,s:b,s:i,s:i,s:i,s:i}", "key",
					     v->key, "kind", pkind(p->kind), "namespace", p->ns,
					     "name", p->name, "tier", moat_tier_name(p->tier),
					     "priority", p->priority, "audit", p->audit, "subjects",
					     (json_int_t)v->nsubjects, "entries", (json_int_t)v->entries,
					     "ingressRules", (json_int_t)p->nrules[0], "egressRules",
					     (json_int_t)p->nrules[1]));
	return 0;
}

static json_t *side_json(struct moatd *d, const struct moat_explain_side *s)
{
	char *desc;
	json_t *j;

	if (!s->judged)
		return json_null();
	desc = moat_rule_describe(d->comp, s->rule);
	j = json_pack("{s:s,s:s,s:i,s:s}", "verdict", moat_verdict_name(s->verdict), "tier",
		      moat_tier_name(s->tier), "rule", s->rule, "decided_by", desc);
	free(desc);
	if (s->audit_deny) {
		desc = moat_rule_describe(d->comp, s->audit_rule);
		json_object_set_new(j, "audit_would_deny", json_string(desc));
		free(desc);
	}
	return j;
}

static enum MHD_Result h_explain(struct MHD_Connection *conn, struct moatd *d)
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
	if (moat_compiler_explain(d->comp, from, to, proto, (uint16_t)port, &x, err, sizeof(err)))
		return send_error(conn, 404, err);
	desc = moat_rule_describe(d->comp, x.rule);
	j = json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:i,s:s,s:i,s:s,s:i,s:s,s:o,s:o}", "from", from,
		      "to", to, "proto", moat_proto_name(proto), "port", (int)port, "verdict",
		      moat_verdict_name(x.verdict), "tier", moat_tier_name(x.tier), "direction",
		      x.dir == MOAT_DIR_EGRESS ? "egress" : "ingress", "rule", x.rule,
		      "decided_by", desc, "src_identity", x.src_identity, "src_class",
		      class_name(x.src_class), "dst_identity", x.dst_identity, "dst_class",
		      class_name(x.dst_class), "egress", side_json(d, &x.egress), "ingress",
		      side_json(d, &x.ingress));
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
	static const double bounds[12] = { 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 5 };

	metric(&b, &len, &cap, "# HELP moat_packets_total Packets judged, by verdict.\n"
			       "# TYPE moat_packets_total counter\n");
	for (int v = MOAT_VERDICT_ALLOW; v <= MOAT_VERDICT_AUDIT; v++)
		if (!moat_dp_stat(d->dp, MOAT_STAT_VERDICT(v), &pk, &by))
			metric(&b, &len, &cap, "moat_packets_total{verdict=\"%s\"} %llu\n",
			       moat_verdict_name(v), (unsigned long long)pk);
	metric(&b, &len, &cap, "# HELP moat_bytes_total Bytes judged, by verdict.\n"
			       "# TYPE moat_bytes_total counter\n");
	for (int v = MOAT_VERDICT_ALLOW; v <= MOAT_VERDICT_AUDIT; v++)
		if (!moat_dp_stat(d->dp, MOAT_STAT_VERDICT(v), &pk, &by))
			metric(&b, &len, &cap, "moat_bytes_total{verdict=\"%s\"} %llu\n",
			       moat_verdict_name(v), (unsigned long long)by);
	metric(&b, &len, &cap, "# HELP moat_drops_total Dropped packets, by reason.\n"
			       "# TYPE moat_drops_total counter\n");
	for (int r = 1; r < MOAT_DROP_MAX; r++)
		if (!moat_dp_stat(d->dp, MOAT_STAT_DROP(r), &pk, &by))
			metric(&b, &len, &cap, "moat_drops_total{reason=\"%s\"} %llu\n",
			       moat_drop_reason_name(r), (unsigned long long)pk);
	metric(&b, &len, &cap, "# HELP moat_rule_packets_total Packets decided by each rule.\n"
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
	metric(&b, &len, &cap, "# HELP moat_conntrack_events_total Connection tracking events.\n"
			       "# TYPE moat_conntrack_events_total counter\n");
	{
		static const struct { int idx; const char *n; } ct[] = {
			{ MOAT_STAT_CT_NEW, "new" }, { MOAT_STAT_CT_ESTABLISHED, "established" },
			{ MOAT_STAT_CT_REPLY, "reply" }, { MOAT_STAT_CT_REVALIDATED, "revalidated" },
			{ MOAT_STAT_CT_REVOKED, "revoked" }, { MOAT_STAT_RELATED, "related" },
			{ MOAT_STAT_DEFERRED, "service-deferred" },
		};
		for (size_t i = 0; i < sizeof(ct) / sizeof(ct[0]); i++)
			if (!moat_dp_stat(d->dp, ct[i].idx, &pk, &by))
				metric(&b, &len, &cap, "moat_conntrack_events_total{event=\"%s\"} %llu\n",
				       ct[i].n, (unsigned long long)pk);
	}
	metric(&b, &len, &cap, "# HELP moat_events_total Verdict events: emitted, failed (ring full), suppressed (rate limit).\n"
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
		metric(&b, &len, &cap, "# HELP moat_events_delivered_total Verdict events received by moatd.\n"
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
	metric(&b, &len, &cap, "# HELP moat_generation The policy generation live in the datapath.\n"
			       "# TYPE moat_generation gauge\nmoat_generation %u\n",
	       moat_dp_generation(d->dp));
	metric(&b, &len, &cap, "# HELP moat_table_capacity Entries each datapath table can hold.\n"
			       "# TYPE moat_table_capacity gauge\n");
	for (int t = 0; t < MOAT_T_MAX; t++)
		metric(&b, &len, &cap, "moat_table_capacity{table=\"%s\"} %u\n", moat_tbl_name(t),
		       moat_dp_tbl_capacity(d->dp, t));
	metric(&b, &len, &cap, "# HELP moat_policy_apply_seconds Time from a change to its generation being live.\n"
			       "# TYPE moat_policy_apply_seconds histogram\n");
	{
		uint64_t cum = 0;
		for (int i = 0; i < 12; i++) {
			cum += d->lat_bucket[i];
			metric(&b, &len, &cap, "moat_policy_apply_seconds_bucket{le=\"%g\"} %llu\n", bounds[i],
			       (unsigned long long)cum);
		}
		metric(&b, &len, &cap, "moat_policy_apply_seconds_bucket{le=\"+Inf\"} %llu\n"
				       "moat_policy_apply_seconds_sum %g\nmoat_policy_apply_seconds_count %llu\n",
		       (unsigned long long)d->applies, d->lat_sum, (unsigned long long)d->applies);
	}
	metric(&b, &len, &cap, "# HELP moat_policy_apply_errors_total Changes refused (bad input, capacity).\n"
			       "# TYPE moat_policy_apply_errors_total counter\nmoat_policy_apply_errors_total %llu\n",
	       (unsigned long long)d->apply_errors);
	{
		__u32 used[MOAT_T_MAX];
		moat_compiler_counts(d->comp, used);
		metric(&b, &len, &cap, "# HELP moat_table_entries Entries each datapath table holds.\n"
				       "# TYPE moat_table_entries gauge\n");
		for (int t = 0; t < MOAT_T_MAX; t++)
			metric(&b, &len, &cap, "moat_table_entries{table=\"%s\"} %u\n", moat_tbl_name(t),
			       used[t]);
	}
	return b;
}

/* ---- observe: newline-delimited JSON, optionally following ------------- */
struct obs {
	struct moatd *d;
	struct moat_ev_filter f;
	char *strs[8];            /* owned filter strings */
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

static int filter_parse(struct MHD_Connection *conn, struct moat_ev_filter *f, char **strs,
			char *err, size_t errlen)
{
	const char *v;
	size_t ns = 0;

	memset(f, 0, sizeof(*f));
	f->port = f->proto = f->verdict = f->type = -1;
#define STR(field, name)                                           \
	if ((v = arg(conn, name))) {                               \
		strs[ns] = xstrdup(v);                             \
		f->field = strs[ns++];                             \
	}
	STR(ns, "namespace");
	STR(pod, "pod");
	STR(ip, "ip");
	STR(policy, "policy");
#undef STR
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

static void obs_free(void *cls)
{
	struct obs *o = cls;

	for (int i = 0; i < 8; i++)
		free(o->strs[i]);
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
		n = moat_events_read(o->d->events, o->cursor, o->batch, OBS_BATCH, o->follow ? 1000 : 0, &last);
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
		for (size_t i = 0; i < n; i++) {
			char *desc = moat_rule_describe(o->d->comp, o->batch[i].raw.rule);
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

static enum MHD_Result h_observe(struct MHD_Connection *conn, struct moatd *d)
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
		while (cur < head && (n = moat_events_read(d->events, cur, o->batch, OBS_BATCH, 0, &l)) > 0) {
			for (size_t i = 0; i < n && o->batch[i].seq <= head; i++) {
				char *desc = moat_rule_describe(d->comp, o->batch[i].raw.rule);
				if (moat_ev_match(&o->batch[i], &o->f, desc))
					keep[kn++ % (size_t)lastn] = o->batch[i];
				free(desc);
			}
			cur = l;
		}
		for (size_t i = kn > (size_t)lastn ? kn - (size_t)lastn : 0; i < kn; i++) {
			const struct moat_ev *ev = &keep[i % (size_t)lastn];
			char *desc = moat_rule_describe(d->comp, ev->raw.rule);
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

static enum MHD_Result h_flows(struct MHD_Connection *conn, struct moatd *d)
{
	struct moat_ev_filter f;
	char *strs[8] = { 0 }, err[128];
	struct moat_flow *fl;
	size_t n, max = 100000;
	json_t *a = json_array();

	if (!d->events)
		return send_error(conn, 503, "verdict events are not available on this node");
	if (filter_parse(conn, &f, strs, err, sizeof(err)))
		return send_error(conn, 400, err);
	fl = xcalloc(max, sizeof(*fl));
	n = moat_events_flows(d->events, fl, max);
	for (size_t i = 0; i < n; i++) {
		char *desc = moat_rule_describe(d->comp, fl[i].rule);
		if (moat_flow_match(&fl[i], &f, desc))
			json_array_append_new(a, moat_flow_json(&fl[i], desc));
		free(desc);
	}
	free(fl);
	for (int i = 0; i < 8; i++)
		free(strs[i]);
	return send_json(conn, 200, a);
}

static char *report_describe(void *arg, __u32 rule)
{
	return moat_rule_describe(arg, rule);
}

static enum MHD_Result h_report(struct MHD_Connection *conn, struct moatd *d)
{
	struct moat_ev_filter f;
	char *strs[8] = { 0 }, err[128];
	struct moat_flow *fl = NULL;
	size_t n = 0, max = 100000;
	json_t *j;

	if (filter_parse(conn, &f, strs, err, sizeof(err)))
		return send_error(conn, 400, err);
	if (d->events) {
		fl = xcalloc(max, sizeof(*fl));
		n = moat_events_flows(d->events, fl, max);
	}
	j = moat_report_build(d->comp, fl, n, &f, report_describe, d->comp);
	json_object_set_new(j, "node", json_string(d->cfg.node));
	free(fl);
	for (int i = 0; i < 8; i++)
		free(strs[i]);
	return send_json(conn, 200, j);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *upload_data,
			       size_t *upload_size, void **con_cls)
{
	struct moat_api *api = cls;
	struct moatd *d = api->d;
	enum MHD_Result ret;
	json_t *j;

	(void)version;
	(void)upload_data;
	(void)upload_size;
	(void)con_cls;
	if (strcmp(method, "GET"))
		return send_error(conn, 405, "only GET is supported");

	/* streaming takes the lock per batch, not for its whole life */
	if (!strcmp(url, "/v1/observe"))
		return h_observe(conn, d);

	pthread_mutex_lock(&d->lock);
	if (!strcmp(url, "/v1/flows")) {
		ret = h_flows(conn, d);
	} else if (!strcmp(url, "/v1/report")) {
		ret = h_report(conn, d);
	} else if (!strcmp(url, "/v1/status")) {
		ret = send_json(conn, 200, status_json(d));
	} else if (!strcmp(url, "/v1/endpoints")) {
		j = json_array();
		moat_compiler_endpoints(d->comp, ep_cb, j);
		ret = send_json(conn, 200, j);
	} else if (!strcmp(url, "/v1/identities")) {
		j = json_array();
		moat_compiler_identities(d->comp, id_cb, j);
		ret = send_json(conn, 200, j);
	} else if (!strcmp(url, "/v1/policies")) {
		j = json_array();
		moat_compiler_policies(d->comp, pol_cb, j);
		ret = send_json(conn, 200, j);
	} else if (!strcmp(url, "/v1/explain")) {
		ret = h_explain(conn, d);
	} else if (!strcmp(url, "/v1/sources")) {
		ret = send_json(conn, 200, d->src ? moat_srcdir_json(d->src) : json_array());
	} else if (!strcmp(url, "/metrics")) {
		ret = send_text(conn, 200, "text/plain; version=0.0.4", metrics_text(d));
	} else {
		ret = send_error(conn, 404, "no such endpoint");
	}
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int moat_api_start(struct moatd *d, const char *path, unsigned mode, struct moat_api **ret)
{
	struct moat_api *api = xcalloc(1, sizeof(*api));
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int err;

	api->d = d;
	api->fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		err = -ENAMETOOLONG;
		goto fail;
	}
	strcpy(sa.sun_path, path);
	api->path = xstrdup(path);
	api->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (api->fd < 0) {
		err = -errno;
		goto fail;
	}
	unlink(path);
	if (bind(api->fd, (struct sockaddr *)&sa, sizeof(sa)) || chmod(path, mode) ||
	    listen(api->fd, 64)) {
		err = -errno;
		goto fail;
	}
	/* a thread per connection: observers block waiting for events */
	api->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
					    MHD_USE_ERROR_LOG, 0, NULL, NULL,
				    handler, api, MHD_OPTION_LISTEN_SOCKET, api->fd,
				    MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT,
				    30u, MHD_OPTION_END);
	if (!api->mhd) {
		err = -EIO;
		goto fail;
	}
	*ret = api;
	return 0;
fail:
	if (api->fd >= 0)
		close(api->fd);
	free(api->path);
	free(api);
	return err;
}

void moat_api_stop(struct moat_api *api)
{
	if (!api)
		return;
	MHD_stop_daemon(api->mhd);
	close(api->fd);
	unlink(api->path);
	free(api->path);
	free(api);
}
