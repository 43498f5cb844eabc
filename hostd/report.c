// SPDX-License-Identifier: Apache-2.0
/* The segmentation report: what policy allows between namespaces (from the
 * compiled tables, through moat_compiler_explain, exactly as the datapath
 * decides) beside what this node observed (flow records).  Each cell of the
 * namespace matrix is one of:
 *   allowed-used       policy allows it and flows were seen
 *   allowed-unused     policy allows it, nothing used it (least privilege?)
 *   denied-attempted   policy denies it and something tried
 *   denied             policy denies it and nothing tried
 * "Allows" is tested per pair of identities on the destination's declared
 * container ports, on the ports seen in flows, and on one port nobody
 * declares (does the policy open everything?). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <jansson.h>

#include "report.h"
#include "util.h"

#define REPORT_MAX_NS         64
#define REPORT_MAX_IDS        16 /* identities sampled per namespace */
#define REPORT_FLOWS_PER_CELL 50
#define UNDECLARED_PORT       65000

struct rid { /* one identity and a pod standing for it */
	__u32 id;
	char ip[64];
	char pod[300];
	struct moat_cport ports[16];
	size_t nports;
};

struct rns {
	char name[64];
	struct rid ids[REPORT_MAX_IDS];
	size_t nids;
	bool seen; /* in flows */
};

struct rctx {
	struct rns ns[REPORT_MAX_NS];
	size_t n;
	bool truncated;
	const struct moat_ev_filter *f;
};

static bool ns_visible(const struct moat_ev_filter *f, const char *ns)
{
	if (f->ns && strcmp(f->ns, ns))
		return false;
	if (!f->allowed_ns)
		return true;
	for (size_t i = 0; i < f->nallowed_ns; i++)
		if (!strcmp(f->allowed_ns[i], ns))
			return true;
	return false;
}

static struct rns *ns_find(struct rctx *r, const char *name, bool create)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->ns[i].name, name))
			return &r->ns[i];
	if (!create)
		return NULL;
	if (r->n == REPORT_MAX_NS) {
		r->truncated = true;
		return NULL;
	}
	snprintf(r->ns[r->n].name, sizeof(r->ns[r->n].name), "%s", name);
	return &r->ns[r->n++];
}

static void add_port(struct rid *id, uint8_t proto, uint16_t port)
{
	for (size_t i = 0; i < id->nports; i++)
		if (id->ports[i].proto == proto && id->ports[i].port == port)
			return;
	if (id->nports < sizeof(id->ports) / sizeof(id->ports[0])) {
		id->ports[id->nports].proto = proto;
		id->ports[id->nports].port = port;
		id->nports++;
	}
}

static int ep_cb(const struct moat_endpoint_view *v, void *arg)
{
	struct rctx *r = arg;
	struct rns *n;
	struct rid *id = NULL;

	if (v->host_network || !v->nips || !v->identity)
		return 0;
	n = ns_find(r, v->ns, true);
	if (!n)
		return 0;
	for (size_t i = 0; i < n->nids; i++)
		if (n->ids[i].id == v->identity)
			id = &n->ids[i];
	if (id)
		return 0;
	if (n->nids == REPORT_MAX_IDS) {
		r->truncated = true;
		return 0;
	}
	id = &n->ids[n->nids++];
	id->id = v->identity;
	moat_addr_str(&v->ips[0], id->ip);
	snprintf(id->pod, sizeof(id->pod), "%s/%s", v->ns, v->name);
	for (size_t i = 0; i < v->nports; i++)
		add_port(id, v->ports[i].proto, v->ports[i].port);
	return 0;
}

static const char *proto_s(uint8_t p)
{
	return moat_proto_name(p);
}

json_t *moat_report_build(const struct moat_compiler *c, const struct moat_flow *flows, size_t nflows,
			  const struct moat_ev_filter *f, char *(*describe)(void *, __u32), void *darg)
{
	struct rctx *r = xcalloc(1, sizeof(*r));
	json_t *out = json_object(), *names = json_array(), *cells = json_array();

	r->f = f;
	moat_compiler_endpoints(c, ep_cb, r);
	/* destinations are tested on their declared ports and on those seen */
	for (size_t i = 0; i < nflows; i++) {
		struct rns *dn = flows[i].dst_ns[0] ? ns_find(r, flows[i].dst_ns, false) : NULL;
		if (!dn)
			continue;
		dn->seen = true;
		for (size_t k = 0; k < dn->nids; k++)
			if (dn->ids[k].id == flows[i].dst_identity && flows[i].dport)
				add_port(&dn->ids[k], flows[i].proto, flows[i].dport);
	}
	for (size_t i = 0; i < r->n; i++)
		json_array_append_new(names, json_string(r->ns[i].name));

	for (size_t a = 0; a < r->n; a++) {
		for (size_t b = 0; b < r->n; b++) {
			struct rns *A = &r->ns[a], *B = &r->ns[b];
			json_t *ports, *cf;
			bool allowed = false, any_port = false;
			uint64_t used = 0, denied = 0;
			const char *cat;
			char key[64];

			if (!ns_visible(f, A->name) && !ns_visible(f, B->name))
				continue;
			ports = json_array();
			cf = json_array();
			for (size_t i = 0; i < A->nids; i++)
				for (size_t k = 0; k < B->nids; k++) {
					struct rid *s = &A->ids[i], *d = &B->ids[k];
					struct moat_explain x;
					char err[128];
					/* the declared/seen ports, then one nobody declares */
					for (size_t p = 0; p <= d->nports; p++) {
						uint8_t proto = p < d->nports ? d->ports[p].proto :
										IPPROTO_TCP;
						uint16_t port = p < d->nports ? d->ports[p].port :
										UNDECLARED_PORT;
						if (moat_compiler_explain(c, s->ip, d->ip, proto, port, &x,
									  err, sizeof(err)))
							continue;
						if (x.verdict == MOAT_VERDICT_DENY)
							continue;
						allowed = true;
						if (p == d->nports) {
							any_port = true;
						} else {
							snprintf(key, sizeof(key), "%u/%s", port,
								 proto_s(proto));
							bool dup = false;
							size_t pi;
							json_t *pv;
							json_array_foreach(ports, pi, pv)
								dup |= !strcmp(json_string_value(pv), key);
							if (!dup)
								json_array_append_new(ports,
										      json_string(key));
						}
					}
				}
			for (size_t i = 0; i < nflows; i++) {
				if (strcmp(flows[i].src_ns, A->name) || strcmp(flows[i].dst_ns, B->name))
					continue;
				if (flows[i].verdict == MOAT_VERDICT_DENY)
					denied += flows[i].denied ? flows[i].denied : 1;
				else
					used++;
				if (json_array_size(cf) < REPORT_FLOWS_PER_CELL) {
					char *d = describe ? describe(darg, flows[i].rule) : NULL;
					json_array_append_new(cf, moat_flow_json(&flows[i], d));
					free(d);
				}
			}
			if (allowed)
				cat = used ? "allowed-used" : "allowed-unused";
			else
				cat = denied ? "denied-attempted" : "denied";
			/* allowed but some attempts were denied (other ports) */
			json_array_append_new(cells,
					      json_pack("{s:s,s:s,s:s,s:b,s:b,s:o,s:I,s:I,s:o}", "from",
							A->name, "to", B->name, "category", cat, "allowed",
							allowed, "all_ports", any_port, "allowed_ports",
							ports, "flows_used", (json_int_t)used,
							"denied_attempts", (json_int_t)denied, "flows", cf));
		}
	}
	json_object_set_new(out, "namespaces", names);
	json_object_set_new(out, "cells", cells);
	json_object_set_new(out, "truncated", json_boolean(r->truncated));
	json_object_set_new(out, "scope", json_string("this node: flows it judged; policy: cluster-wide"));
	free(r);
	return out;
}
