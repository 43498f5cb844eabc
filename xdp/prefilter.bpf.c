// SPDX-License-Identifier: GPL-2.0-only
/* moat pre-filter: the stateless part of the policy, small enough for XDP
 * hardware offload (nfp), run on the NIC in front of the full enforcer.
 *
 * It drops only packets from outside the cluster to a local pod that the
 * full program (moat_uplink) would drop too, and passes everything else on
 * to it; see include/moat/prefilter.h for the tables and docs/offload.md for
 * why each drop is safe.  Written for the nfp subset, and checked against
 * it by `moatctl offload check --profile hw/nfp.json`:
 *   - HASH and ARRAY maps only (plus the host-side perf event array), no
 *     LPM trie: longest-prefix match is one hash lookup per prefix length in
 *     use, longest first, in a constant-bounded unrolled loop;
 *   - map keys on the stack at constant 4-byte-aligned offsets;
 *   - nothing stored into map values; counters are atomic adds into
 *     zero-initialised ARRAY values, never read here;
 *   - helpers: map lookup, get_prandom_u32, perf_event_output with
 *     BPF_F_CURRENT_CPU only; no tail calls, no timestamps, no global data,
 *     no division or modulo; -mcpu=v3 (no v4 opcodes);
 *   - one function, no subprograms; packet reads within the first 100 bytes.
 * Anything it does not parse with certainty it passes.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "moat/prefilter.h"

char LICENSE[] SEC("license") = "GPL";

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct moat_pf_conf);
} pf_conf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MOAT_PF_MAX_PLENS);
	__type(key, __u32);
	__type(value, struct moat_pf_plen);
} pf_plen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_PF_MAX_SRC);
	__type(key, struct moat_pf_src4_key);
	__type(value, struct moat_pf_src_val);
} pf_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_PF_MAX_SRC);
	__type(key, struct moat_pf_src6_key);
	__type(value, struct moat_pf_src_val);
} pf_src6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_PF_MAX_DST);
	__type(key, struct moat_pf_dst4_key);
	__type(value, struct moat_pf_dst_val);
} pf_dst4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_PF_MAX_DST);
	__type(key, struct moat_pf_dst6_key);
	__type(value, struct moat_pf_dst_val);
} pf_dst6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_PF_MAX_RULES);
	__type(key, struct moat_pf_rule_key);
	__type(value, struct moat_pf_rule_val);
} pf_rule SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MOAT_PF_STAT_MAX);
	__type(key, __u32);
	__type(value, struct moat_pf_stat);
} pf_stats SEC(".maps");

/* Stays on the host when the program is offloaded (the kernel allows
 * this one map type to be shared: events arrive as control messages). */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} pf_events SEC(".maps");

struct vlan_hdr_pf {
	__be16 tci;
	__be16 proto;
};

static __always_inline int count(__u32 idx, __u64 len, int action)
{
	struct moat_pf_stat *s = bpf_map_lookup_elem(&pf_stats, &idx);

	if (s) {
		__sync_fetch_and_add(&s->packets, 1);
		__sync_fetch_and_add(&s->bytes, len);
	}
	return action;
}

/* Every pass leaves through one counting exit. */
#define PASS(reason)                                                           \
	do {                                                                   \
		why = MOAT_PF_STAT_PASS_##reason;                              \
		goto out;                                                      \
	} while (0)

static __always_inline int port_in(const __u16 *lo, const __u16 *hi, __u32 port)
{
	int hit = 0;

#pragma unroll
	for (int i = 0; i < MOAT_PF_MAX_RANGES; i++)
		hit |= port >= lo[i] && port <= hi[i];
	return hit;
}

SEC("xdp")
int moat_prefilter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct moat_pf_event ev = {};
	struct moat_pf_rule_key rk = {};
	struct moat_pf_rule_val *rv;
	struct moat_pf_conf *cf;
	struct moat_pf_dst_val *dv;
	struct moat_pf_src_val *sv = NULL;
	struct ethhdr *eth = data;
	__u64 len = end - data;
	__u32 zero = 0, cls, sport = 0, dport = 0, why, sa[4] = {}, da[4] = {};
	__u8 proto, family, *l4;
	__be16 h_proto;
	int i;

	cf = bpf_map_lookup_elem(&pf_conf, &zero);
	if (!cf || !(cf->flags & MOAT_PF_F_ENABLED))
		PASS(DISABLED);

	if ((void *)(eth + 1) > end)
		PASS(PARSE);
	h_proto = eth->h_proto;
	data = eth + 1;
#pragma unroll
	for (i = 0; i < 2; i++) {
		struct vlan_hdr_pf *vh = data;

		if (h_proto != bpf_htons(ETH_P_8021Q) && h_proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > end)
			PASS(PARSE);
		h_proto = vh->proto;
		data = vh + 1;
	}

	if (h_proto == bpf_htons(ETH_P_IP)) {
		__u8 *ip = data;
		__u32 ihl;

		if ((void *)(ip + 20) > end)
			PASS(PARSE);
		ihl = ip[0] & 0x0f;
		if ((ip[0] >> 4) != 4 || ihl < 5)
			PASS(PARSE);
		/* a later fragment carries no ports: the full program joins it
		 * to its first fragment */
		if (((ip[6] << 8) | ip[7]) & 0x1fff)
			PASS(FRAG);
		proto = ip[9];
		family = 4;
		sa[0] = *(__u32 *)(ip + 12);
		da[0] = *(__u32 *)(ip + 16);
		l4 = ip + ihl * 4;
		{
			struct moat_pf_dst4_key dk = { .addr = da[0] };

			dv = bpf_map_lookup_elem(&pf_dst4, &dk);
		}
		if (!dv)
			PASS(NO_DST);
		{
			struct moat_pf_src4_key sk;
			__u32 n = cf->n4;

#pragma unroll
			for (i = 0; i < MOAT_PF_MAX_PLENS; i++) {
				struct moat_pf_plen *pl;
				__u32 slot = i;

				if ((__u32)i >= n)
					break;
				pl = bpf_map_lookup_elem(&pf_plen, &slot);
				if (!pl)
					break;
				sk.plen = pl->plen;
				sk.addr = sa[0] & pl->mask[0];
				sv = bpf_map_lookup_elem(&pf_src4, &sk);
				if (sv)
					break;
			}
		}
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		__u8 *ip = data;

		if ((void *)(ip + 40) > end)
			PASS(PARSE);
		if ((ip[0] >> 4) != 6)
			PASS(PARSE);
		proto = ip[6];
		/* extension headers (and fragments) are the full program's */
		if (proto == 0 || proto == 43 || proto == 44 || proto == 51 || proto == 60)
			PASS(PARSE);
		/* link-local sources: neighbour discovery and friends */
		if (ip[8] == 0xfe && (ip[9] & 0xc0) == 0x80)
			PASS(EXEMPT);
		family = 6;
#pragma unroll
		for (i = 0; i < 4; i++) {
			sa[i] = *(__u32 *)(ip + 8 + 4 * i);
			da[i] = *(__u32 *)(ip + 24 + 4 * i);
		}
		l4 = ip + 40;
		{
			struct moat_pf_dst6_key dk;

			__builtin_memcpy(dk.addr, da, 16);
			dv = bpf_map_lookup_elem(&pf_dst6, &dk);
		}
		if (!dv)
			PASS(NO_DST);
		{
			struct moat_pf_src6_key sk;
			__u32 n = cf->n6;

#pragma unroll
			for (i = 0; i < MOAT_PF_MAX_PLENS; i++) {
				struct moat_pf_plen *pl;
				__u32 slot = MOAT_PF_MAX_PLENS + i, w[4];

				if ((__u32)i >= n)
					break;
				pl = bpf_map_lookup_elem(&pf_plen, &slot);
				if (!pl)
					break;
				sk.plen = pl->plen;
				w[0] = sa[0] & pl->mask[0];
				w[1] = sa[1] & pl->mask[1];
				w[2] = sa[2] & pl->mask[2];
				w[3] = sa[3] & pl->mask[3];
				__builtin_memcpy(sk.addr, w, 16);
				sv = bpf_map_lookup_elem(&pf_src6, &sk);
				if (sv)
					break;
			}
		}
	} else {
		PASS(NOT_IP);
	}

	if (!sv)
		PASS(NO_SRC);
	cls = sv->cls;
	if (cls == MOAT_PF_CLASS_PASS)
		PASS(NO_SRC);

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
		if ((void *)(l4 + 4) > end)
			PASS(PARSE);
		sport = ((__u32)l4[0] << 8) | l4[1];
		dport = ((__u32)l4[2] << 8) | l4[3];
		rk.proto = proto;
	} else {
		if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
			__u8 type;

			if ((void *)(l4 + 8) > end)
				PASS(PARSE);
			type = l4[0];
			/* errors may be related to an allowed flow (the full
			 * program passes them on conntrack); neighbour discovery
			 * is not policy */
			if (proto == IPPROTO_ICMP &&
			    (type == 3 || type == 4 || type == 11 || type == 12))
				PASS(EXEMPT);
			if (proto == IPPROTO_ICMPV6 &&
			    ((type >= 1 && type <= 4) || (type >= 133 && type <= 137)))
				PASS(EXEMPT);
		}
		rk.proto = 0;
	}
	rk.cls = cls;
	rk.identity = dv->identity;
	rv = bpf_map_lookup_elem(&pf_rule, &rk);
	if (!rv)
		PASS(NO_RULE);
	if (rk.proto && (!port_in(rv->in_lo, rv->in_hi, dport) ||
			 !port_in(rv->eg_lo, rv->eg_hi, sport)))
		PASS(PORTS);

	if ((cf->flags & MOAT_PF_F_EVENTS) && !(bpf_get_prandom_u32() & cf->sample_mask)) {
		ev.cls = cls;
		ev.identity = rk.identity;
		ev.sport = sport;
		ev.dport = dport;
		ev.proto = proto;
		ev.family = family;
		__builtin_memcpy(ev.saddr, sa, 16);
		__builtin_memcpy(ev.daddr, da, 16);
		ev.pkt_len = len;
		count(MOAT_PF_STAT_SAMPLED, len, 0);
		if (bpf_perf_event_output(ctx, &pf_events, BPF_F_CURRENT_CPU, &ev, sizeof(ev)))
			count(MOAT_PF_STAT_EVENT_FAILED, len, 0);
	}
	return count(MOAT_PF_STAT_DROP, len, XDP_DROP);
out:
	return count(why, len, XDP_PASS);
}
