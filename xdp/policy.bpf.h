/* SPDX-License-Identifier: GPL-2.0-only */
/* Policy decision for one direction of one subject.
 *
 * The compiler resolved all precedence into the decision table: the first
 * hit of the lookup chain (exact peer and port, exact peer any port, class
 * row and port, class row any port) already holds, for its dimension, the
 * first matching Admin-tier rule, whether a NetworkPolicy rule matches, and
 * the first matching Baseline-tier rule.  The identity and CIDR dimensions
 * are merged by rank, then the fixed tier order applies:
 *   Admin Allow/Deny -> NetworkPolicy isolation -> Baseline -> allow.
 * At most 8 hash lookups and 1 LPM lookup, whatever the number of rules.
 */
#ifndef MOAT_POLICY_BPF_H
#define MOAT_POLICY_BPF_H

#include "maps.bpf.h"
#include "parse.bpf.h"

struct peer {
	__u32 identity;
	__u32 region;
	__u8 cls;   /* MOAT_CLASS_* */
	__u8 flags; /* MOAT_IP_F_* */
	__u8 family;
	__u8 pad;
};

/* Arguments and result of decide(); on the stack so decide() can be a
 * global function, verified once however often it is called. */
struct decide_args {
	__u32 slot;    /* active table slot */
	__u32 subject; /* identity whose policy is judged */
	__u32 dir;     /* MOAT_DIR_* */
	__u32 shadow;  /* judge with audit-mode policies enforced */
	__u32 peer_id;
	__u32 peer_region;
	__u32 peer_cls;
	__u32 family;
	__u32 proto;
	__u32 port; /* host order */
	__u32 has_port;
	/* result */
	__u32 verdict; /* MOAT_VERDICT_ALLOW or _DENY */
	__u32 tier;
	__u32 rule;
	__u32 subj_flags;  /* the subject's MOAT_SUBJ_* for dir (0: none) */
	__u32 subj_sample; /* its sample_every (with MOAT_SUBJ_SAMPLE) */
};

static __always_inline struct moat_policy_val *pol_chain(void *pol, __u32 subj, __u32 peer, __u32 cls_peer,
							 __u8 proto, __u16 port, __u8 kflags, int has_port)
{
	struct moat_policy_key k = {};
	struct moat_policy_val *v;

	k.subject = subj;
	if (peer) {
		k.peer = peer;
		if (has_port) {
			k.proto = proto;
			k.port = port;
			k.flags = kflags;
			v = bpf_map_lookup_elem(pol, &k);
			if (v)
				return v;
		}
		k.proto = 0;
		k.port = 0;
		k.flags = kflags & ~MOAT_PK_PORTCLASS;
		v = bpf_map_lookup_elem(pol, &k);
		if (v)
			return v;
	}
	k.peer = cls_peer;
	if (has_port) {
		k.proto = proto;
		k.port = port;
		k.flags = kflags;
		v = bpf_map_lookup_elem(pol, &k);
		if (v)
			return v;
	}
	k.proto = 0;
	k.port = 0;
	k.flags = kflags & ~MOAT_PK_PORTCLASS;
	return bpf_map_lookup_elem(pol, &k);
}

static __always_inline __u32 range_flag(__u32 proto)
{
	if (proto == IPPROTO_TCP)
		return MOAT_SUBJ_RANGE_TCP;
	if (proto == IPPROTO_UDP)
		return MOAT_SUBJ_RANGE_UDP;
	if (proto == IPPROTO_SCTP)
		return MOAT_SUBJ_RANGE_SCTP;
	return 0;
}

#define DECIDE(a, verd, t, r)          \
	do {                           \
		(a)->verdict = (verd); \
		(a)->tier = (t);       \
		(a)->rule = (r);       \
		return 0;              \
	} while (0)

__attribute__((noinline)) int decide(struct decide_args *a)
{
	__u32 slot, dir, f, subj, port, rank, rule, act;
	struct moat_policy_val *v1, *v2 = NULL;
	struct moat_subject *s;
	struct moat_subject_dir *sd;
	void *subj_map, *pol, *ports;
	__u8 kflags;
	int has_port;

	if (!a)
		return -1;
	slot = a->slot & 1;
	dir = a->dir & 1;
	subj = a->subject;
	a->verdict = MOAT_VERDICT_ALLOW;
	a->tier = MOAT_TIER_DEFAULT;
	a->rule = MOAT_RULE_DEFAULT_ALLOW;
	a->subj_flags = 0;
	a->subj_sample = 0;

	subj_map = bpf_map_lookup_elem(&moat_subj, &slot);
	pol = bpf_map_lookup_elem(&moat_pol, &slot);
	if (!subj_map || !pol)
		DECIDE(a, MOAT_VERDICT_DENY, MOAT_TIER_DATAPATH, MOAT_RULE_NO_ENDPOINT);
	s = bpf_map_lookup_elem(subj_map, &subj);
	if (!s)
		return 0;
	sd = &s->dir[0];
	if (dir)
		sd = &s->dir[1];
	f = sd->flags;
	a->subj_flags = f;
	a->subj_sample = sd->sample_every;
	if (a->shadow) {
		if (!(f & MOAT_SUBJ_AUDIT_ACTIVE))
			return 0;
	} else if (!(f & MOAT_SUBJ_ACTIVE)) {
		return 0;
	}

	kflags = (dir ? MOAT_PK_EGRESS : 0) | (a->shadow ? MOAT_PK_AUDIT : 0);
	port = a->port;
	has_port = a->has_port;
	if (has_port && (f & range_flag(a->proto))) {
		struct moat_port_key pk = {};
		struct moat_port_class *pc;

		ports = bpf_map_lookup_elem(&moat_ports, &slot);
		if (!ports)
			DECIDE(a, MOAT_VERDICT_DENY, MOAT_TIER_DATAPATH, MOAT_RULE_NO_ENDPOINT);
		pk.prefixlen = MOAT_PORT_KEY_FIXED_BITS + 16;
		pk.subject = bpf_htonl(subj);
		pk.dir = dir;
		pk.proto = a->proto;
		pk.port = bpf_htons(port);
		pc = bpf_map_lookup_elem(ports, &pk);
		if (pc && pc->cls) {
			port = pc->cls;
			kflags |= MOAT_PK_PORTCLASS;
		} else {
			/* no port rule covers this port: only port-less rows apply */
			has_port = 0;
		}
	}

	v1 = pol_chain(pol, subj, a->peer_id, MOAT_PEER_CLASS(a->peer_cls & 0xff), a->proto, port, kflags,
		       has_port);
	if (f & (a->shadow ? MOAT_SUBJ_AUDIT_NETS : MOAT_SUBJ_NETS))
		v2 = pol_chain(pol, subj, a->peer_region, a->family == 6 ? MOAT_PEER_NET6 : MOAT_PEER_NET4,
			       a->proto, port, kflags | MOAT_PK_NET, has_port);

	/* Admin tier: the first matching rule of either dimension. */
	rank = MOAT_RANK_NONE;
	rule = 0;
	act = MOAT_ACT_NONE;
	if (v1 && v1->admin_rank < rank) {
		rank = v1->admin_rank;
		rule = v1->admin_rule;
		act = v1->admin_action;
	}
	if (v2 && v2->admin_rank < rank) {
		rule = v2->admin_rule;
		act = v2->admin_action;
	}
	if (act == MOAT_ACT_ALLOW)
		DECIDE(a, MOAT_VERDICT_ALLOW, MOAT_TIER_ADMIN, rule);
	if (act == MOAT_ACT_DENY)
		DECIDE(a, MOAT_VERDICT_DENY, MOAT_TIER_ADMIN, rule);

	/* NetworkPolicy tier: an isolated pod takes only what a rule allows. */
	if (f & (a->shadow ? MOAT_SUBJ_AUDIT_ISOLATED : MOAT_SUBJ_ISOLATED)) {
		rule = v1 ? v1->np_rule : 0;
		if (!rule && v2)
			rule = v2->np_rule;
		if (rule)
			DECIDE(a, MOAT_VERDICT_ALLOW, MOAT_TIER_NETPOL, rule);
		DECIDE(a, MOAT_VERDICT_DENY, MOAT_TIER_NETPOL,
		       a->shadow ? sd->audit_isolate_rule : sd->isolate_rule);
	}

	/* Baseline tier. */
	rank = MOAT_RANK_NONE;
	act = MOAT_ACT_NONE;
	if (v1 && v1->base_rank < rank) {
		rank = v1->base_rank;
		rule = v1->base_rule;
		act = v1->base_action;
	}
	if (v2 && v2->base_rank < rank) {
		rule = v2->base_rule;
		act = v2->base_action;
	}
	if (act == MOAT_ACT_ALLOW)
		DECIDE(a, MOAT_VERDICT_ALLOW, MOAT_TIER_BASELINE, rule);
	if (act == MOAT_ACT_DENY)
		DECIDE(a, MOAT_VERDICT_DENY, MOAT_TIER_BASELINE, rule);
	return 0;
}

#endif
