// SPDX-License-Identifier: GPL-2.0-only
/* moat enforcer: stateful Kubernetes network policy in XDP.
 *
 * Two entry points share all maps:
 *   moat_from_pod  on the host-side veth of a pod: everything the pod sends
 *   moat_to_pod    on the pod-side veth (inside the pod's netns): everything
 *                  delivered to the pod, from any source, after Service DNAT
 * A new flow is judged where it is first seen on the node, as a whole: the
 * egress policy of its source (if a pod) and the ingress policy of its
 * destination (if a pod).  Every node knows every pod and policy, so both
 * halves can be judged anywhere; flows to a Service VIP are handed on and
 * judged after DNAT at the backend's pod-side veth.  See docs/datapath.md.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "moat/abi.h"
#include "maps.bpf.h"
#include "parse.bpf.h"
#include "ct.bpf.h"
#include "policy.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* Load-time specialisation (set by offload/ before load). */
const volatile __u32 cfg_events = 1;      /* emit perf events */
const volatile __u32 cfg_bench_no_ct = 0; /* bench only: never find a flow */

struct verdict {
	__u32 rule;
	__u8 verdict;
	__u8 tier;
	__u8 dir;
	__u8 reason; /* MOAT_DROP_* when denied */
	__u32 src_id;
	__u32 dst_id;
	__u32 egress_rule;
	__u32 ingress_rule;
	__u8 egress_tier;
	__u8 ingress_tier;
	__u8 audit;
	__u8 pad;
};

struct tbucket {
	__u64 tokens;
	__u64 last_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* 0: deny token bucket, 1: sample countdown + seq */
	__type(key, __u32);
	__type(value, struct tbucket);
} moat_evstate SEC(".maps");

static __always_inline int ip6_eq(const __u32 *a, const __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline void stat_add(__u32 idx, __u32 len)
{
	struct moat_stat *s = bpf_map_lookup_elem(&moat_stats, &idx);
	if (s) {
		s->packets++;
		s->bytes += len;
	}
}

static __always_inline void rule_add(__u32 rule, __u32 len)
{
	struct moat_rule_stat *s = bpf_map_lookup_elem(&moat_rulestats, &rule);
	if (s) {
		s->packets++;
		s->bytes += len;
	}
}

static __always_inline void evstat_add(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&moat_evstats, &idx);
	if (c)
		*c += 1;
}

/* Per-CPU token bucket for deny events; suppressed events are counted. */
static __always_inline int deny_event_allowed(const struct moat_config *cfg, __u64 now)
{
	__u32 k = 0;
	struct tbucket *b = bpf_map_lookup_elem(&moat_evstate, &k);
	__u64 cap;

	if (!b || !cfg->deny_events_per_s)
		return 1;
	cap = cfg->deny_events_burst ? cfg->deny_events_burst : cfg->deny_events_per_s;
	if (now > b->last_ns) {
		__u64 add = (now - b->last_ns) * cfg->deny_events_per_s / NSEC;
		if (add) {
			b->tokens += add;
			if (b->tokens > cap)
				b->tokens = cap;
			b->last_ns = now;
		}
	} else if (!b->last_ns) {
		b->tokens = cap;
		b->last_ns = now;
	}
	if (!b->tokens) {
		evstat_add(MOAT_EVS_SUPPRESSED);
		return 0;
	}
	b->tokens--;
	return 1;
}

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

#define EMIT_INFO(type, hook) ((__u32)(type) | ((__u32)(hook) << 8))

/* Sends one event with the packet's first bytes.  Global: verified once. */
__attribute__((noinline)) int moat_emit(struct xdp_md *ctx, const struct verdict *v, __u32 info, __u64 fpkts,
					__u64 fbytes)
{
	struct moat_event ev = {};
	struct moat_config *cfg;
	__u64 cap, len;
	__u32 k = 1, zero = 0;
	struct tbucket *st;

	if (!v)
		return 0;
	cfg = bpf_map_lookup_elem(&moat_config, &zero);
	if (!cfg)
		return 0;
	len = (__u64)(long)ctx->data_end - (__u64)(long)ctx->data;
	cap = cfg->snaplen;
	if (cap > len)
		cap = len;
	if (cap > 1024)
		cap = 1024;
	st = bpf_map_lookup_elem(&moat_evstate, &k);
	ev.ts_ns = bpf_ktime_get_ns();
	ev.ifindex = ctx->ingress_ifindex;
	ev.pkt_len = len;
	ev.rule = v->rule;
	ev.src_identity = v->src_id;
	ev.dst_identity = v->dst_id;
	ev.generation = cfg->slot_gen[cfg->active & 1];
	ev.cap_len = cap;
	ev.type = info & 0xff;
	ev.hook = (info >> 8) & 0xff;
	ev.verdict = v->verdict;
	ev.tier = v->tier;
	ev.dir = v->dir;
	ev.drop_reason = v->reason;
	ev.cpu = bpf_get_smp_processor_id();
	ev.flow_packets = fpkts;
	ev.flow_bytes = fbytes;
	if (st) {
		ev.seq = (__u32)st->tokens;
		st->tokens++;
	}
	if (bpf_perf_event_output(ctx, &moat_events, (cap << 32) | BPF_F_CURRENT_CPU, &ev, sizeof(ev)))
		evstat_add(MOAT_EVS_FAILED);
	else
		evstat_add(MOAT_EVS_EMITTED);
	return 0;
}

static __always_inline void emit(struct xdp_md *ctx, const struct verdict *v, __u8 type, __u8 hook,
				 __u64 fpkts, __u64 fbytes)
{
	if (cfg_events)
		moat_emit(ctx, v, EMIT_INFO(type, hook), fpkts, fbytes);
}

/* 1-in-N sampling of packets that raised no other event: per flow when its
 * namespaces set the rate, else moat_config's rate over all packets. */
static __always_inline int sample_due(const struct moat_config *cfg, const struct moat_ct_entry *e)
{
	__u32 k = 1;
	struct tbucket *st;

	if (e->sample)
		return e->sample > 1 && e->packets % (e->sample - 1) == 0;
	if (!cfg->sample_every)
		return 0;
	st = bpf_map_lookup_elem(&moat_evstate, &k);
	if (!st)
		return 0;
	if (++st->last_ns >= cfg->sample_every) {
		st->last_ns = 0;
		return 1;
	}
	return 0;
}

/* Address -> identity, class and CIDR region.  Global: verified once. */
__attribute__((noinline)) int moat_ip_lookup(__u32 slot, __u32 family, const union addr *addr,
					     struct peer *out)
{
	struct moat_ip_info *ii;
	struct moat_net_info *ni = NULL;
	void *m;

	if (!addr || !out)
		return -1;
	slot &= 1;
	out->family = family;
	if (family == 4) {
		struct moat_ip4_key k = { .addr = addr->v4 };
		m = bpf_map_lookup_elem(&moat_ip4, &slot);
		if (!m)
			return -1;
		ii = bpf_map_lookup_elem(m, &k);
	} else {
		struct moat_ip6_key k;
		__builtin_memcpy(k.addr, addr->v6, 16);
		m = bpf_map_lookup_elem(&moat_ip6, &slot);
		if (!m)
			return -1;
		ii = bpf_map_lookup_elem(m, &k);
	}
	if (ii) {
		out->identity = ii->identity;
		out->region = ii->region;
		out->cls = ii->class;
		out->flags = ii->flags;
		return 0;
	}
	/* Not a pod or node: the world, in the most specific listed prefix. */
	out->identity = MOAT_ID_WORLD;
	out->cls = MOAT_CLASS_WORLD;
	out->flags = 0;
	out->region = 0;
	if (family == 4) {
		struct moat_net4_key k = { .prefixlen = 32, .addr = addr->v4 };
		m = bpf_map_lookup_elem(&moat_net4, &slot);
		if (!m)
			return -1;
		ni = bpf_map_lookup_elem(m, &k);
	} else {
		struct moat_net6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, addr->v6, 16);
		m = bpf_map_lookup_elem(&moat_net6, &slot);
		if (!m)
			return -1;
		ni = bpf_map_lookup_elem(m, &k);
	}
	if (ni)
		out->region = ni->region;
	return 0;
}

struct judge_args {
	struct peer src;
	struct peer dst;
	__u32 slot;
	__u32 cfg_flags;
	__u32 family;
	__u32 proto;
	__u32 has_port;
	__u32 dport; /* host order */
	__u32 pkt_len;
	__u32 tcp_flags;
	__u64 now;
	struct verdict v; /* result */
	__u32 sample;     /* result: moat_ct_entry.sample */
	__u32 pad2;
};

/* Everything but the verdict, which handle() clears for every packet. */
static __always_inline void judge_clear(struct judge_args *j)
{
	__builtin_memset(j, 0, __builtin_offsetof(struct judge_args, v));
	j->sample = 0;
	j->pad2 = 0;
}

static __always_inline void judge_dir(struct judge_args *j, __u32 subject, __u32 dir, const struct peer *peer,
				      __u32 shadow, struct decide_args *a)
{
	a->slot = j->slot;
	a->subject = subject;
	a->dir = dir;
	a->shadow = shadow;
	a->peer_id = peer->identity;
	a->peer_region = peer->region;
	a->peer_cls = peer->cls;
	a->family = j->family;
	a->proto = j->proto;
	a->port = j->dport;
	a->has_port = j->has_port;
	decide(a);
}

/* Judges a flow src -> dst: the source's egress policy (if a pod) and the
 * destination's ingress policy (if a pod), then the audit shadows.  Global:
 * verified once. */
__attribute__((noinline)) int moat_judge(struct judge_args *j)
{
	struct decide_args a = {};
	struct verdict *v;
	__u32 ef = 0, inf = 0; /* the subjects' flags: is there an audit shadow? */
	__u32 best = 0;        /* the most frequent sampling its namespaces ask for */

	if (!j)
		return -1;
	j->sample = 0;
	v = &j->v;
	v->verdict = MOAT_VERDICT_ALLOW;
	v->tier = MOAT_TIER_DEFAULT;
	v->rule = MOAT_RULE_DEFAULT_ALLOW;
	v->src_id = j->src.identity;
	v->dst_id = j->dst.identity;
	v->egress_rule = v->ingress_rule = 0;
	v->egress_tier = v->ingress_tier = MOAT_TIER_NONE;
	v->audit = 0;
	v->dir = MOAT_DIR_INGRESS;

	if (j->src.cls == MOAT_CLASS_POD) {
		judge_dir(j, j->src.identity, MOAT_DIR_EGRESS, &j->dst, 0, &a);
		ef = a.subj_flags;
		if (ef & MOAT_SUBJ_SAMPLE)
			best = a.subj_sample ? a.subj_sample : 0xffffffffu;
		v->egress_rule = a.rule;
		v->egress_tier = a.tier;
		v->rule = a.rule;
		v->tier = a.tier;
		v->dir = MOAT_DIR_EGRESS;
		if (a.verdict == MOAT_VERDICT_DENY) {
			v->verdict = MOAT_VERDICT_DENY;
			v->reason = MOAT_DROP_POLICY;
			return 0;
		}
	}
	if (j->dst.cls == MOAT_CLASS_POD) {
		if (j->src.cls == MOAT_CLASS_NODE && (j->src.flags & MOAT_IP_F_LOCAL) &&
		    (j->cfg_flags & MOAT_CFG_ALLOW_LOCAL_NODE)) {
			v->ingress_rule = MOAT_RULE_LOCAL_NODE;
			v->ingress_tier = MOAT_TIER_DEFAULT;
		} else {
			judge_dir(j, j->dst.identity, MOAT_DIR_INGRESS, &j->src, 0, &a);
			inf = a.subj_flags;
			if (inf & MOAT_SUBJ_SAMPLE) {
				__u32 n = a.subj_sample ? a.subj_sample : 0xffffffffu;
				if (!best || n < best)
					best = n;
			}
			v->ingress_rule = a.rule;
			v->ingress_tier = a.tier;
			if (a.verdict == MOAT_VERDICT_DENY) {
				v->verdict = MOAT_VERDICT_DENY;
				v->tier = a.tier;
				v->rule = a.rule;
				v->dir = MOAT_DIR_INGRESS;
				v->reason = MOAT_DROP_POLICY;
				return 0;
			}
		}
		/* Name the most specific decision: the ingress side if a policy
		 * decided there, else the egress side's. */
		if (v->ingress_tier != MOAT_TIER_DEFAULT || v->tier == MOAT_TIER_DEFAULT) {
			v->rule = v->ingress_rule;
			v->tier = v->ingress_tier;
			v->dir = MOAT_DIR_INGRESS;
		}
	}

	/* sampling of the flow: 0 the global rate; 1 never; else 1 + N */
	if (best)
		j->sample = best == 0xffffffffu ? 1 : best + 1;

	/* Audit: allowed for real; would an audit-mode policy deny it?  Only
	 * subjects with audit-mode policies have a shadow to consult. */
	if (j->src.cls == MOAT_CLASS_POD && (ef & MOAT_SUBJ_AUDIT_ACTIVE)) {
		judge_dir(j, j->src.identity, MOAT_DIR_EGRESS, &j->dst, 1, &a);
		if (a.verdict == MOAT_VERDICT_DENY) {
			v->audit = 1;
			v->rule = a.rule;
			v->tier = a.tier;
			v->dir = MOAT_DIR_EGRESS;
			return 0;
		}
	}
	if (j->dst.cls == MOAT_CLASS_POD && v->ingress_rule != MOAT_RULE_LOCAL_NODE &&
	    (inf & MOAT_SUBJ_AUDIT_ACTIVE)) {
		judge_dir(j, j->dst.identity, MOAT_DIR_INGRESS, &j->src, 1, &a);
		if (a.verdict == MOAT_VERDICT_DENY) {
			v->audit = 1;
			v->rule = a.rule;
			v->tier = a.tier;
			v->dir = MOAT_DIR_INGRESS;
		}
	}
	return 0;
}

static __always_inline void judge_setup(struct judge_args *j, const struct moat_config *cfg, __u32 slot,
					const struct pkt *pk, __u16 dport, __u64 now)
{
	j->pkt_len = pk->len;
	j->tcp_flags = pk->tcp_flags;
	j->now = now;
	j->slot = slot;
	j->cfg_flags = cfg->flags;
	j->family = pk->family;
	j->proto = pk->proto;
	j->has_port = pk->has_ports &&
		      (pk->proto == IPPROTO_TCP || pk->proto == IPPROTO_UDP || pk->proto == IPPROTO_SCTP);
	j->dport = dport;
}

static __always_inline int finish_drop(struct xdp_md *ctx, const struct moat_config *cfg,
				       const struct pkt *pk, struct verdict *v, __u8 hook, __u64 now)
{
	v->verdict = MOAT_VERDICT_DENY;
	stat_add(MOAT_STAT_VERDICT(MOAT_VERDICT_DENY), pk->len);
	stat_add(MOAT_STAT_DROP(v->reason < MOAT_DROP_MAX ? v->reason : 0), pk->len);
	rule_add(v->rule, pk->len);
	if (cfg && deny_event_allowed(cfg, now))
		emit(ctx, v, MOAT_EV_DENY, hook, 0, 0);
	if (cfg && !(cfg->flags & MOAT_CFG_ENFORCE))
		return XDP_PASS; /* observe-only mode: judged and counted, not dropped */
	return XDP_DROP;
}

/* Remembers a judged deny for the flow's next packets.  Global: keeps the
 * entry off the main frame. */
__attribute__((noinline)) int moat_deny_remember(union ct_key *ck, const struct verdict *v, __u32 family,
						 __u32 generation, __u32 hook_swapped)
{
	struct moat_deny_entry d = {};

	if (!ck || !v)
		return -1;
	d.generation = generation;
	d.rule = v->rule;
	d.src_identity = v->src_id;
	d.dst_identity = v->dst_id;
	d.egress_rule = v->egress_rule;
	d.ingress_rule = v->ingress_rule;
	d.tier = v->tier;
	d.dir = v->dir;
	d.reason = v->reason;
	d.hook = (__u8)hook_swapped; /* hook | swapped << 8: five arguments at most */
	d.swapped = (__u8)(hook_swapped >> 8);
	d.egress_tier = v->egress_tier;
	d.ingress_tier = v->ingress_tier;
	if (family == 4)
		return bpf_map_update_elem(&moat_deny4, &ck->k4, &d, BPF_ANY);
	return bpf_map_update_elem(&moat_deny6, &ck->k6, &d, BPF_ANY);
}

/* Creates the conntrack entry of an allowed (or handed-on) flow.  Global:
 * keeps the 64-byte entry off the main frame. */
__attribute__((noinline)) int moat_ct_create(union ct_key *ck, const struct judge_args *j, __u32 flags,
					     __u32 generation)
{
	struct moat_ct_entry ne = {};

	if (!ck || !j)
		return -1;
	ne.created_ns = j->now;
	ne.last_seen_ns = j->now;
	ne.generation = generation;
	ne.flags = flags;
	ne.egress_rule = j->v.egress_rule;
	ne.ingress_rule = j->v.ingress_rule;
	ne.init_identity = j->src.identity;
	ne.resp_identity = j->dst.identity;
	ne.packets = 1;
	ne.bytes = j->pkt_len;
	ne.tcp_flags = j->tcp_flags;
	ne.egress_tier = j->v.egress_tier;
	ne.ingress_tier = j->v.ingress_tier;
	ne.sample = j->sample;
	return ct_update(ck, j->family, &ne);
}

/* A first fragment's ports (and verdict), for its later fragments: every
 * first fragment that is judged or passes, new flow or not. */
static __always_inline void frag_remember(const struct pkt *pk, __be16 sport, __be16 dport, __u8 verdict,
					  __u64 now)
{
	struct moat_frag_val fv = {
		.sport = sport, .dport = dport, .l4proto = pk->proto, .verdict = verdict, .seen_ns = now
	};

	if (pk->family == 4) {
		struct moat_frag4_key fk = { .saddr = pk->saddr.v4,
					     .daddr = pk->daddr.v4,
					     .id = bpf_htons(pk->frag_id),
					     .proto = pk->frag_nh };
		bpf_map_update_elem(&moat_frag4, &fk, &fv, BPF_ANY);
	} else {
		struct moat_frag6_key fk = { .id = bpf_htonl(pk->frag_id), .proto = pk->frag_nh };
		__builtin_memcpy(fk.saddr, pk->saddr.v6, 16);
		__builtin_memcpy(fk.daddr, pk->daddr.v6, 16);
		bpf_map_update_elem(&moat_frag6, &fk, &fv, BPF_ANY);
	}
}

struct scratch {
	struct pkt pk;
	__u64 clk_jiffies; /* clock_coarse_ns()'s cache */
	__u64 clk_ns;
};

/* The parsed packet lives in a per-CPU scratch slot, not on the stack: the
 * stack is shared by the whole call chain and capped at 512 bytes.  XDP does
 * not nest on a CPU, so one slot per CPU is enough. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} moat_scratch SEC(".maps");

/* The clock for conntrack and the token buckets.  bpf_ktime_get_coarse_ns()
 * (~9 ns, a helper call and a seqcount read) only changes when the tick
 * advances jiffies, which bpf_jiffies64() reads inline (~0.3 ns): the clock
 * is read again only when jiffies moved since this CPU's last packet.  A
 * reader racing the tick (jiffies already advanced, the coarse clock not
 * yet) keeps a value one tick old until the next tick: nothing here needs
 * better than the 100 ms refresh of a flow's last-seen time. */
static __always_inline __u64 clock_coarse_ns(struct scratch *sc)
{
	__u64 j = bpf_jiffies64();

	if (j != sc->clk_jiffies) {
		sc->clk_jiffies = j;
		sc->clk_ns = bpf_ktime_get_coarse_ns();
	}
	return sc->clk_ns;
}

/* The endpoint of a large ifindex, from the hash.  A function of its own:
 * written inline, clang merges its inner lookup with the array's, and the
 * verifier cannot inline a lookup that sees two kinds of map. */
static __noinline struct moat_endpoint *ep_hash_lookup(__u32 slot, __u32 ifindex)
{
	void *m = bpf_map_lookup_elem(&moat_ep, &slot);

	return m ? bpf_map_lookup_elem(m, &ifindex) : NULL;
}

static __always_inline int handle(struct xdp_md *ctx, __u8 hook)
{
	struct scratch *sc;
	struct pkt *pkp;
	struct judge_args j; /* its inputs are cleared only where a flow is judged */
	struct verdict *v = &j.v;
	struct moat_config *cfg;
	struct moat_ct_entry *e;
	struct moat_endpoint *ep = NULL;
	union ct_key ck;
	__u32 zero = 0, slot, ctflags, cur_gen;
	__u64 now;
	__be16 sport, dport;
	int rc, swapped;

	__builtin_memset(v, 0, sizeof(*v));
	sc = bpf_map_lookup_elem(&moat_scratch, &zero);
	if (!sc)
		return XDP_DROP;
	pkp = &sc->pk;
	/* Only the scalars: the parser writes the addresses of the family it
	 * reports (and the inner ones with icmp_err), and nothing reads the
	 * rest.  Zeroing all 96 bytes was 6% of an established packet. */
	__builtin_memset(&pkp->sport, 0, sizeof(*pkp) - __builtin_offsetof(struct pkt, sport));
#define pk (*pkp)
	rc = moat_parse(ctx, &pk);
	if (rc == PARSE_NOT_IP) {
		stat_add(MOAT_STAT_NOT_IP, pk.len);
		return XDP_PASS;
	}
	cfg = bpf_map_lookup_elem(&moat_config, &zero);
	now = clock_coarse_ns(sc);
	if (rc > 0) {
		v->reason = rc;
		v->rule = MOAT_RULE_MALFORMED;
		v->tier = MOAT_TIER_DATAPATH;
		return finish_drop(ctx, cfg, &pk, v, hook, now);
	}
	if (pk.is_nd) {
		stat_add(MOAT_STAT_LINK_LOCAL, pk.len);
		return XDP_PASS;
	}
	if (!cfg) {
		v->reason = MOAT_DROP_MAP_ERROR;
		v->rule = MOAT_RULE_NO_ENDPOINT;
		return finish_drop(ctx, cfg, &pk, v, hook, now);
	}
	slot = READ_ONCE(cfg->active) & 1;
	cur_gen = READ_ONCE(cfg->slot_gen[slot]);

	/* A pod's interface: who sent it, and only from the pod's own
	 * addresses, for every packet; a tracked flow is no excuse, or a pod
	 * could inject into other pods' flows. */
	if (hook == MOAT_HOOK_FROM_POD) {
		__u32 ifindex = ctx->ingress_ifindex;
		/* small ifindexes (all but a node's 16384th interface on) in
		 * the array: an inlined lookup instead of a hash */
		void *m;

		if (ifindex < MOAT_EP_ARRAY_MAX) {
			m = bpf_map_lookup_elem(&moat_epa, &slot);
			ep = m ? bpf_map_lookup_elem(m, &ifindex) : NULL;
		} else {
			ep = ep_hash_lookup(slot, ifindex);
		}
		if (!ep || !(ep->flags & MOAT_EP_F_VALID)) {
			ep = NULL;
			v->reason = MOAT_DROP_NO_ENDPOINT;
			v->rule = MOAT_RULE_NO_ENDPOINT;
			v->tier = MOAT_TIER_DATAPATH;
			return finish_drop(ctx, cfg, &pk, v, hook, now);
		}
		if ((pk.family == 4 && (!(ep->flags & MOAT_EP_F_HAS_IP4) || ep->ip4 != pk.saddr.v4)) ||
		    (pk.family == 6 &&
		     (!(ep->flags & MOAT_EP_F_HAS_IP6) || !ip6_eq((const __u32 *)ep->ip6, pk.saddr.w)))) {
			v->reason = MOAT_DROP_SPOOFED;
			v->rule = MOAT_RULE_SPOOF;
			v->tier = MOAT_TIER_DATAPATH;
			v->src_id = ep->identity;
			return finish_drop(ctx, cfg, &pk, v, hook, now);
		}
	}

	/* Later fragments join the flow of their first fragment. */
	if (pk.frag == FRAG_LATER) {
		struct moat_frag_val *fv;
		stat_add(MOAT_STAT_FRAG_LATER, pk.len);
		if (pk.family == 4) {
			struct moat_frag4_key fk = { .saddr = pk.saddr.v4,
						     .daddr = pk.daddr.v4,
						     .id = bpf_htons(pk.frag_id),
						     .proto = pk.frag_nh };
			fv = bpf_map_lookup_elem(&moat_frag4, &fk);
		} else {
			struct moat_frag6_key fk = { .id = bpf_htonl(pk.frag_id), .proto = pk.frag_nh };
			__builtin_memcpy(fk.saddr, pk.saddr.v6, 16);
			__builtin_memcpy(fk.daddr, pk.daddr.v6, 16);
			fv = bpf_map_lookup_elem(&moat_frag6, &fk);
		}
		if (!fv || fv->verdict == MOAT_VERDICT_DENY) {
			v->reason = fv ? MOAT_DROP_POLICY : MOAT_DROP_FRAG_NO_FIRST;
			v->rule = fv ? MOAT_RULE_NONE : MOAT_RULE_MALFORMED;
			v->tier = MOAT_TIER_DATAPATH;
			return finish_drop(ctx, cfg, &pk, v, hook, now);
		}
		pk.sport = fv->sport;
		pk.dport = fv->dport;
		pk.proto = fv->l4proto;
		pk.has_ports = 1;
	}

	/* ICMP errors about a tracked flow are related traffic: they pass,
	 * when addressed to the sender of the offending packet.  Any other
	 * destination would let a pod send anything to anyone by wrapping it
	 * in an "error" about one of its own flows. */
	if (pk.icmp_err &&
	    (pk.family == 4 ? pk.daddr.v4 == pk.inner_saddr.v4 : ip6_eq(pk.daddr.w, pk.inner_saddr.w))) {
		ct_make_key(&ck, pk.family, pk.inner_proto, &pk.inner_saddr, &pk.inner_daddr, pk.inner_sport,
			    pk.inner_dport);
		e = ct_lookup(&ck, pk.family);
		if (e && !ct_expired(e, pk.inner_proto, cfg, now)) {
			stat_add(MOAT_STAT_RELATED, pk.len);
			stat_add(MOAT_STAT_VERDICT(MOAT_VERDICT_ALLOW), pk.len);
			return XDP_PASS;
		}
	}

	sport = pk.has_ports ? pk.sport : 0;
	dport = pk.has_ports ? pk.dport : 0;
	swapped = ct_make_key(&ck, pk.family, pk.proto, &pk.saddr, &pk.daddr, sport, dport);
	e = cfg_bench_no_ct ? NULL : ct_lookup(&ck, pk.family);
	if (e && ct_expired(e, pk.proto, cfg, now))
		e = NULL;
	/* A new TCP connection on a closing entry is a new flow. */
	if (e && pk.proto == IPPROTO_TCP && ct_is_closing(e) && (pk.tcp_flags & 0x12) == 0x02)
		e = NULL;

	if (e) {
		int is_reply = swapped != !!(e->flags & MOAT_CT_INIT_B);
		__u32 rule;

		if (e->generation != cur_gen && (cfg->flags & MOAT_CFG_REVOKE_ESTABLISHED) &&
		    !(e->flags & MOAT_CT_DEFERRED)) {
			/* Judge the flow again as its initiator opened it. */
			judge_clear(&j);
			if (moat_ip_lookup(slot, pk.family, is_reply ? &pk.daddr : &pk.saddr, &j.src) ||
			    moat_ip_lookup(slot, pk.family, is_reply ? &pk.saddr : &pk.daddr, &j.dst)) {
				v->reason = MOAT_DROP_MAP_ERROR;
				return finish_drop(ctx, cfg, &pk, v, hook, now);
			}
			judge_setup(&j, cfg, slot, &pk, bpf_ntohs(is_reply ? sport : dport), now);
			moat_judge(&j);
			stat_add(MOAT_STAT_CT_REVALIDATED, pk.len);
			if (v->verdict == MOAT_VERDICT_DENY) {
				stat_add(MOAT_STAT_CT_REVOKED, pk.len);
				v->reason = MOAT_DROP_CT_REVOKED;
				emit(ctx, v, MOAT_EV_FLOW_END, hook, e->packets, e->bytes);
				ct_delete(&ck, pk.family);
				return finish_drop(ctx, cfg, &pk, v, hook, now);
			}
			e->generation = cur_gen;
			e->sample = j.sample;
			e->egress_rule = v->egress_rule;
			e->ingress_rule = v->ingress_rule;
			e->egress_tier = v->egress_tier;
			e->ingress_tier = v->ingress_tier;
		}

		if (pk.frag == FRAG_FIRST)
			frag_remember(pkp, sport, dport, MOAT_VERDICT_ALLOW, now);
		stat_add(is_reply ? MOAT_STAT_CT_REPLY : MOAT_STAT_CT_ESTABLISHED, pk.len);
		stat_add(MOAT_STAT_VERDICT(MOAT_VERDICT_ALLOW), pk.len);
		/* the rule the flow's first packet was counted against: the
		 * ingress side's if a policy decided there or there was no
		 * egress decision, else the egress side's (as moat_judge) */
		rule = e->ingress_rule && (e->ingress_tier != MOAT_TIER_DEFAULT || !e->egress_rule ||
					   e->egress_tier == MOAT_TIER_DEFAULT) ?
			       e->ingress_rule :
			       e->egress_rule;
		rule_add(rule, pk.len);
		rc = ct_account(e, &pk, is_reply, now);
		if (cfg_events && (rc || sample_due(cfg, e))) {
			v->verdict = MOAT_VERDICT_ALLOW;
			v->tier = MOAT_TIER_CT;
			v->rule = rule;
			v->src_id = is_reply ? e->resp_identity : e->init_identity;
			v->dst_id = is_reply ? e->init_identity : e->resp_identity;
			emit(ctx, v, rc ? MOAT_EV_FLOW_END : MOAT_EV_SAMPLE, hook, rc ? e->packets : 0,
			     rc ? e->bytes : 0);
		}
		return XDP_PASS;
	}

	/* A flow denied under this generation, at this hook and in this
	 * direction: the same verdict, without judging it again. */
	if (!cfg_bench_no_ct) {
		struct moat_deny_entry *dn = pk.family == 4 ? bpf_map_lookup_elem(&moat_deny4, &ck.k4) :
							      bpf_map_lookup_elem(&moat_deny6, &ck.k6);
		if (dn && dn->generation == cur_gen && dn->hook == hook && dn->swapped == swapped) {
			v->rule = dn->rule;
			v->tier = dn->tier;
			v->dir = dn->dir;
			v->reason = dn->reason;
			v->src_id = dn->src_identity;
			v->dst_id = dn->dst_identity;
			v->egress_rule = dn->egress_rule;
			v->ingress_rule = dn->ingress_rule;
			v->egress_tier = dn->egress_tier;
			v->ingress_tier = dn->ingress_tier;
			stat_add(MOAT_STAT_DENY_CACHED, pk.len);
			if (pk.frag == FRAG_FIRST)
				frag_remember(pkp, sport, dport, MOAT_VERDICT_DENY, now);
			return finish_drop(ctx, cfg, &pk, v, hook, now);
		}
	}

	/* A new flow: who is talking to whom?  At a pod's interface the
	 * interface, not the address, says who sent it, and the endpoint
	 * carries its address's CIDR region: no ipcache lookup. */
	ctflags = swapped ? MOAT_CT_INIT_B : 0;
	judge_clear(&j);
	if (hook == MOAT_HOOK_FROM_POD && ep) {
		j.src.identity = ep->identity;
		j.src.region = pk.family == 4 ? ep->region4 : ep->region6;
		j.src.cls = MOAT_CLASS_POD;
		j.src.flags = MOAT_IP_F_LOCAL;
		j.src.family = pk.family;
	} else if (moat_ip_lookup(slot, pk.family, &pk.saddr, &j.src)) {
		v->reason = MOAT_DROP_MAP_ERROR;
		return finish_drop(ctx, cfg, &pk, v, hook, now);
	}
	if (moat_ip_lookup(slot, pk.family, &pk.daddr, &j.dst)) {
		v->reason = MOAT_DROP_MAP_ERROR;
		return finish_drop(ctx, cfg, &pk, v, hook, now);
	}
	v->src_id = j.src.identity;
	v->dst_id = j.dst.identity;
	if (hook == MOAT_HOOK_FROM_POD && ep) {
		if (j.dst.cls == MOAT_CLASS_VIP) {
			/* kube-proxy DNATs after this hook: judge at the backend. */
			judge_setup(&j, cfg, slot, &pk, bpf_ntohs(dport), now);
			moat_ct_create(&ck, &j, ctflags | MOAT_CT_DEFERRED, cur_gen);
			if (pk.frag == FRAG_FIRST)
				frag_remember(pkp, sport, dport, MOAT_VERDICT_ALLOW, now);
			stat_add(MOAT_STAT_DEFERRED, pk.len);
			stat_add(MOAT_STAT_VERDICT(MOAT_VERDICT_ALLOW), pk.len);
			return XDP_PASS;
		}
	} else {
		/* The uplink judges only what it delivers to this node's pods;
		 * the node's own traffic is not pod policy. */
		if (hook == MOAT_HOOK_UPLINK &&
		    !(j.dst.cls == MOAT_CLASS_POD && (j.dst.flags & MOAT_IP_F_LOCAL))) {
			/* its later fragments pass the same way */
			if (pk.frag == FRAG_FIRST)
				frag_remember(pkp, sport, dport, MOAT_VERDICT_ALLOW, now);
			stat_add(MOAT_STAT_NOT_OURS, pk.len);
			return XDP_PASS;
		}
		if (hook == MOAT_HOOK_TO_POD && j.dst.cls != MOAT_CLASS_POD) {
			/* Fail closed: a pod we do not know yet gets nothing. */
			v->reason = MOAT_DROP_NO_ENDPOINT;
			v->rule = MOAT_RULE_NO_ENDPOINT;
			v->tier = MOAT_TIER_DATAPATH;
			return finish_drop(ctx, cfg, &pk, v, hook, now);
		}
	}

	judge_setup(&j, cfg, slot, &pk, bpf_ntohs(dport), now);
	moat_judge(&j);

	if (pk.frag == FRAG_FIRST)
		frag_remember(pkp, sport, dport, v->verdict, now);

	if (v->verdict == MOAT_VERDICT_DENY) {
		if (!cfg_bench_no_ct)
			moat_deny_remember(&ck, v, pk.family, cur_gen, hook | (swapped << 8));
		return finish_drop(ctx, cfg, &pk, v, hook, now);
	}

	moat_ct_create(&ck, &j, ctflags | (v->audit ? MOAT_CT_AUDIT : 0), cur_gen);
	stat_add(MOAT_STAT_CT_NEW, pk.len);
	if (v->audit)
		v->verdict = MOAT_VERDICT_AUDIT;
	stat_add(MOAT_STAT_VERDICT(v->verdict), pk.len);
	rule_add(v->rule, pk.len);
	emit(ctx, v, v->audit ? MOAT_EV_AUDIT : MOAT_EV_NEW_FLOW, hook, 0, 0);
	return XDP_PASS;
#undef pk
}

SEC("xdp")
int moat_from_pod(struct xdp_md *ctx)
{
	return handle(ctx, MOAT_HOOK_FROM_POD);
}

SEC("xdp")
int moat_to_pod(struct xdp_md *ctx)
{
	return handle(ctx, MOAT_HOOK_TO_POD);
}

SEC("xdp")
int moat_uplink(struct xdp_md *ctx)
{
	return handle(ctx, MOAT_HOOK_UPLINK);
}
