// SPDX-License-Identifier: Apache-2.0
/* Reference model: direct, slow, obviously-correct evaluation.  See
 * refmodel.h.  Written from the specifications, not from the compiler. */
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "refmodel.h"
#include "moat/abi.h"

static const struct moat_namespace *find_ns(const struct ref_world *w, const char *name)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->objs[i]->kind == MOAT_O_NAMESPACE && !strcmp(w->objs[i]->u.namespace->name, name))
			return w->objs[i]->u.namespace;
	return NULL;
}

/* The API server always sets kubernetes.io/metadata.name. */
static bool ns_match(const struct ref_world *w, const struct moat_selector *sel, const char *ns)
{
	const struct moat_namespace *n = find_ns(w, ns);
	struct moat_labels tmp = { 0 };
	bool m;

	if (n)
		return moat_selector_matches(sel, &n->labels);
	moat_labels_set(&tmp, "kubernetes.io/metadata.name", ns);
	m = moat_selector_matches(sel, &tmp);
	moat_labels_free(&tmp);
	return m;
}

static bool ns_audit(const struct ref_world *w, const char *ns)
{
	const struct moat_namespace *n = find_ns(w, ns);
	return n && n->audit;
}

static const struct moat_pod *pod_by_ip(const struct ref_world *w, const struct moat_addr *a)
{
	const struct moat_pod *best = NULL;

	for (size_t i = 0; i < w->n; i++) {
		const struct moat_pod *p;
		if (w->objs[i]->kind != MOAT_O_POD)
			continue;
		p = w->objs[i]->u.pod;
		if (p->host_network)
			continue;
		for (size_t k = 0; k < p->nips; k++)
			if (p->ips[k].family == a->family && !memcmp(p->ips[k].a, a->a, 16)) {
				if (!best || strcmp(p->ns, best->ns) < 0 ||
				    (!strcmp(p->ns, best->ns) && strcmp(p->name, best->name) < 0))
					best = p;
			}
	}
	return best;
}

static const struct moat_node *node_by_ip(const struct ref_world *w, const struct moat_addr *a)
{
	for (size_t i = 0; i < w->n; i++) {
		const struct moat_node *n;
		if (w->objs[i]->kind != MOAT_O_NODE)
			continue;
		n = w->objs[i]->u.node;
		for (size_t k = 0; k < n->naddrs; k++)
			if (n->addrs[k].family == a->family && !memcmp(n->addrs[k].a, a->a, 16))
				return n;
	}
	return NULL;
}

static bool selects(const struct ref_world *w, const struct moat_policy *p, const struct moat_pod *s)
{
	if (p->kind == MOAT_K_NETPOL) {
		if (strcmp(p->ns, s->ns))
			return false;
	} else if (p->subj_ns && !ns_match(w, p->subj_ns, s->ns)) {
		return false;
	}
	return !p->subj_pod || moat_selector_matches(p->subj_pod, &s->labels);
}

struct peer_ctx {
	const struct moat_addr *addr;
	const struct moat_pod *pod;   /* non-host-network pod at addr */
	const struct moat_node *node; /* node owning addr */
};

static bool peer_match(const struct ref_world *w, const struct moat_policy *p, const struct moat_peer *pr,
		       const struct peer_ctx *pc, bool *by_selector)
{
	switch (pr->kind) {
	case MOAT_PEER_PODS:
		if (!pc->pod)
			return false;
		if (pr->ns_sel ? !ns_match(w, pr->ns_sel, pc->pod->ns) : strcmp(p->ns, pc->pod->ns))
			return false;
		if (pr->pod_sel && !moat_selector_matches(pr->pod_sel, &pc->pod->labels))
			return false;
		*by_selector = true;
		return true;
	case MOAT_PEER_NODES:
		if (!pc->node || !moat_selector_matches(pr->ns_sel, &pc->node->labels))
			return false;
		*by_selector = true;
		return true;
	case MOAT_PEER_CIDR:
		if (!moat_cidr_contains(&pr->cidr, pc->addr))
			return false;
		for (size_t e = 0; e < pr->nexcept; e++)
			if (moat_cidr_contains(&pr->except[e], pc->addr))
				return false;
		return true;
	default:
		return false;
	}
}

/* Does the rule match?  *forced_deny: a Deny/Pass rule with a peer we do
 * not understand matches everything as Deny (fail closed). */
static bool rule_match(const struct ref_world *w, const struct moat_policy *p, const struct moat_rule *r,
		       int dir, const struct moat_pod *subject, const struct peer_ctx *pc, uint8_t proto,
		       uint16_t port, bool *forced_deny)
{
	bool invalid = false, peer_ok = false, sel = false, named_ok = false;

	*forced_deny = false;
	for (size_t i = 0; i < r->npeers; i++)
		invalid |= r->peers[i].kind == MOAT_PEER_INVALID;
	if (invalid) {
		if (r->action == MOAT_A_ALLOW)
			return false;
		*forced_deny = true;
		peer_ok = true;
	} else if (r->all_peers) {
		peer_ok = true;
		sel = pc->pod != NULL || pc->node != NULL;
	} else {
		for (size_t i = 0; i < r->npeers && !peer_ok; i++) {
			bool bs = false;
			if (peer_match(w, p, &r->peers[i], pc, &bs)) {
				peer_ok = true;
				sel = bs;
			}
		}
		/* a pod matched by a CIDR peer and also by a selector peer */
		for (size_t i = 0; i < r->npeers && peer_ok && !sel; i++) {
			bool bs = false;
			if (r->peers[i].kind != MOAT_PEER_CIDR && peer_match(w, p, &r->peers[i], pc, &bs))
				sel = bs;
		}
	}
	if (!peer_ok)
		return false;
	if (!r->nports)
		return true;
	for (size_t i = 0; i < r->nports; i++) {
		const struct moat_port_spec *ps = &r->ports[i];
		if (ps->named) {
			/* resolved on the destination pod: the subject for ingress;
			 * for egress only a peer selected as a pod (documented) */
			const struct moat_pod *dst = dir == MOAT_DIR_INGRESS ? subject :
									       (sel ? pc->pod : NULL);
			if (!dst || (p->kind == MOAT_K_NETPOL && ps->proto != proto))
				continue;
			for (size_t k = 0; k < dst->nports; k++)
				if (dst->ports[k].name && !strcmp(dst->ports[k].name, ps->named) &&
				    dst->ports[k].proto == proto && dst->ports[k].port == port)
					named_ok = true;
			if (named_ok)
				return true;
			continue;
		}
		if (ps->proto != proto)
			continue;
		if (!ps->port)
			return true;
		if (ps->end_port ? port >= ps->port && port <= ps->end_port : port == ps->port)
			return true;
	}
	return false;
}

static bool pol_audit(const struct ref_world *w, const struct moat_policy *p)
{
	return p->audit || (p->kind == MOAT_K_NETPOL && ns_audit(w, p->ns));
}

static int cmp_admin(const void *a, const void *b)
{
	const struct moat_policy *x = *(const struct moat_policy *const *)a;
	const struct moat_policy *y = *(const struct moat_policy *const *)b;
	int px = x->kind == MOAT_K_BANP ? 1001 : x->priority;
	int py = y->kind == MOAT_K_BANP ? 1001 : y->priority;
	if (px != py)
		return px - py;
	return strcmp(x->name, y->name);
}

/* One direction of one subject pod: MOAT_VERDICT_ALLOW or _DENY. */
static int judge_dir(const struct ref_world *w, const struct moat_pod *s, int dir, const struct peer_ctx *pc,
		     uint8_t proto, uint16_t port, bool with_audit, int *tier)
{
	const struct moat_policy **list = calloc(w->n + 1, sizeof(*list));
	size_t n;
	bool isolated = false, np_allow = false;
	int verdict = MOAT_VERDICT_ALLOW;

	*tier = MOAT_TIER_DEFAULT;
	for (int t = MOAT_TIER_ADMIN; t <= MOAT_TIER_BASELINE; t++) {
		n = 0;
		for (size_t i = 0; i < w->n; i++) {
			const struct moat_policy *p;
			if (w->objs[i]->kind != MOAT_O_POLICY)
				continue;
			p = w->objs[i]->u.policy;
			if (p->tier != t || !p->dir[dir] || !selects(w, p, s))
				continue;
			if (pol_audit(w, p) && !with_audit)
				continue;
			list[n++] = p;
		}
		if (t == MOAT_TIER_NETPOL) {
			for (size_t i = 0; i < n; i++) {
				isolated = true;
				for (size_t r = 0; r < list[i]->nrules[dir]; r++) {
					bool fd;
					if (rule_match(w, list[i], &list[i]->rules[dir][r], dir, s, pc, proto,
						       port, &fd))
						np_allow = true;
				}
			}
			if (isolated) {
				*tier = MOAT_TIER_NETPOL;
				verdict = np_allow ? MOAT_VERDICT_ALLOW : MOAT_VERDICT_DENY;
				goto out;
			}
			continue;
		}
		qsort(list, n, sizeof(*list), cmp_admin);
		for (size_t i = 0; i < n; i++) {
			for (size_t r = 0; r < list[i]->nrules[dir]; r++) {
				const struct moat_rule *ru = &list[i]->rules[dir][r];
				bool fd;
				if (!rule_match(w, list[i], ru, dir, s, pc, proto, port, &fd))
					continue;
				if (fd || ru->action == MOAT_A_DENY) {
					*tier = t;
					verdict = MOAT_VERDICT_DENY;
					goto out;
				}
				if (ru->action == MOAT_A_ALLOW) {
					*tier = t;
					verdict = MOAT_VERDICT_ALLOW;
					goto out;
				}
				goto next_tier; /* Pass */
			}
		}
next_tier:;
	}
out:
	free(list);
	return verdict;
}

void ref_judge(const struct ref_world *w, const struct moat_addr *src, const struct moat_addr *dst,
	       uint8_t proto, uint16_t port, struct ref_result *r)
{
	struct peer_ctx sp = { .addr = src, .pod = pod_by_ip(w, src), .node = node_by_ip(w, src) };
	struct peer_ctx dp = { .addr = dst, .pod = pod_by_ip(w, dst), .node = node_by_ip(w, dst) };
	bool audit = false;
	int tier;

	/* a node address is not a pod address */
	if (sp.node)
		sp.pod = NULL;
	if (dp.node)
		dp.pod = NULL;
	r->verdict = MOAT_VERDICT_ALLOW;
	r->dir = MOAT_DIR_INGRESS;
	r->tier = MOAT_TIER_DEFAULT;
	if (sp.pod) {
		if (judge_dir(w, sp.pod, MOAT_DIR_EGRESS, &dp, proto, port, false, &tier) ==
		    MOAT_VERDICT_DENY) {
			r->verdict = MOAT_VERDICT_DENY;
			r->dir = MOAT_DIR_EGRESS;
			r->tier = tier;
			return;
		}
		if (judge_dir(w, sp.pod, MOAT_DIR_EGRESS, &dp, proto, port, true, &tier) == MOAT_VERDICT_DENY)
			audit = true;
	}
	if (dp.pod) {
		bool local = sp.node && w->allow_local_node && w->node && dp.pod->node &&
			     !strcmp(dp.pod->node, w->node) && !strcmp(sp.node->name, w->node);
		if (!local) {
			if (judge_dir(w, dp.pod, MOAT_DIR_INGRESS, &sp, proto, port, false, &tier) ==
			    MOAT_VERDICT_DENY) {
				r->verdict = MOAT_VERDICT_DENY;
				r->dir = MOAT_DIR_INGRESS;
				r->tier = tier;
				return;
			}
			if (judge_dir(w, dp.pod, MOAT_DIR_INGRESS, &sp, proto, port, true, &tier) ==
			    MOAT_VERDICT_DENY)
				audit = true;
		}
	}
	if (audit)
		r->verdict = MOAT_VERDICT_AUDIT;
}
