// SPDX-License-Identifier: GPL-2.0-only
/* moat pre-filter: the stateless part of the policy, small enough for XDP
 * hardware offload (nfp), run on the NIC in front of the full enforcer.
 *
 * It drops only packets from outside the cluster to a local pod that the
 * full program (moat_uplink) would drop too, whatever its conntrack holds,
 * and passes everything else on to it.  The tables (include/moat/abi.h,
 * "hardware pre-filter") say which (source set, pod identity) pairs deny
 * which protocol groups; hostd/prefilter.c fills them from the compiled
 * policy and docs/offload.md says why each drop is safe.
 *
 * Written for the nfp subset and checked against it by
 * `moatctl offload check --profile hw/nfp.json`:
 *   - HASH and ARRAY maps only (plus the host-side perf event array), no
 *     LPM trie: longest-prefix match is one hash lookup per prefix length
 *     in use, longest first, in a constant-bounded unrolled loop;
 *   - map keys on the stack at constant 4-byte-aligned offsets;
 *   - nothing stored into map values: counters are atomic adds, never read
 *     here (user space zeroes them through map updates);
 *   - helpers: map lookup, get_prandom_u32, perf_event_output with
 *     BPF_F_CURRENT_CPU only; no tail calls, no timestamps, no global data,
 *     no division or modulo; -mcpu=v3 (no v4 opcodes);
 *   - one function, no subprograms; packet reads within the first 90 bytes.
 * Whatever it does not parse with certainty it passes (counted as skipped).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "moat/abi.h"

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
	__type(value, struct moat_pf_config);
} moat_pf_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MOAT_PF_MAX_LENS);
	__type(key, __u32);
	__type(value, struct moat_pf_len);
} moat_pf_lens SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_PF_MAX_SRC);
	__type(key, struct moat_pf_src4_key);
	__type(value, struct moat_pf_src);
} moat_pf_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_PF_MAX_SRC);
	__type(key, struct moat_pf_src6_key);
	__type(value, struct moat_pf_src);
} moat_pf_src6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_PF_MAX_DST);
	__type(key, struct moat_pf_dst4_key);
	__type(value, struct moat_pf_dst);
} moat_pf_dst4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_PF_MAX_DST);
	__type(key, struct moat_pf_dst6_key);
	__type(value, struct moat_pf_dst);
} moat_pf_dst6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MOAT_PF_MAX_PAIRS);
	__type(key, struct moat_pf_pair_key);
	__type(value, struct moat_pf_pair);
} moat_pf_pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MOAT_PF_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} moat_pf_stats SEC(".maps");

/* Stays on the host when the program is offloaded (the one map type the
 * kernel lets an offloaded program share: events come as control messages,
 * may be reordered, and their losses are invisible). */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} moat_pf_events SEC(".maps");

struct vlan_hdr_pf {
	__be16 tci;
	__be16 proto;
};

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&moat_pf_stats, &idx);

	if (c)
		__sync_fetch_and_add(c, n);
}

SEC("xdp")
int moat_prefilter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct moat_pf_config *cf;
	struct moat_pf_pair_key pk = {};
	struct moat_pf_pair *pv;
	struct moat_pf_dst *dv;
	struct moat_pf_src *sv = NULL;
	struct ethhdr *eth = data;
	__u64 len = end - data;
	__u32 zero = 0, grp, sa[4] = {}, da[4] = {};
	__u8 proto, family, *l4;
	__be16 h_proto;
	int i;

	cf = bpf_map_lookup_elem(&moat_pf_config, &zero);
	if (!cf)
		goto skip;
	if ((void *)(eth + 1) > end)
		goto skip;
	h_proto = eth->h_proto;
	data = eth + 1;
#pragma unroll
	for (i = 0; i < 2; i++) {
		struct vlan_hdr_pf *vh = data;

		if (h_proto != bpf_htons(ETH_P_8021Q) && h_proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > end)
			goto skip;
		h_proto = vh->proto;
		data = vh + 1;
	}

	if (h_proto == bpf_htons(ETH_P_IP)) {
		__u8 *ip = data;
		__u32 ihl;

		if ((void *)(ip + 20) > end)
			goto skip;
		ihl = ip[0] & 0x0f;
		if ((ip[0] >> 4) != 4 || ihl < 5)
			goto skip;
		/* fragments, the first one too: the full program remembers
		 * the first fragment's verdict for the later ones, so it must
		 * see it (tests/bpf/test_prefilter.c found a later fragment
		 * passing on a stale entry when the first was dropped here) */
		if (((ip[6] << 8) | ip[7]) & 0x3fff)
			goto skip;
		proto = ip[9];
		family = 4;
		sa[0] = *(__u32 *)(ip + 12);
		da[0] = *(__u32 *)(ip + 16);
		l4 = ip + ihl * 4;
		{
			struct moat_pf_dst4_key dk = { .addr = da[0] };

			dv = bpf_map_lookup_elem(&moat_pf_dst4, &dk);
		}
		if (!dv)
			goto pass;
		{
			struct moat_pf_src4_key sk;
			__u32 n = cf->nlen4;

#pragma unroll
			for (i = 0; i < MOAT_PF_MAX_LENS; i++) {
				struct moat_pf_len *pl;
				__u32 slot = i;

				if ((__u32)i >= n)
					break;
				pl = bpf_map_lookup_elem(&moat_pf_lens, &slot);
				if (!pl)
					break;
				sk.plen = pl->plen;
				sk.addr = sa[0] & pl->mask[0];
				sv = bpf_map_lookup_elem(&moat_pf_src4, &sk);
				if (sv)
					break;
			}
		}
	} else if (h_proto == bpf_htons(ETH_P_IPV6)) {
		__u8 *ip = data;

		if ((void *)(ip + 40) > end)
			goto skip;
		if ((ip[0] >> 4) != 6)
			goto skip;
		proto = ip[6];
		/* extension headers and fragments are the full program's */
		if (proto == 0 || proto == 43 || proto == 44 || proto == 51 || proto == 60)
			goto skip;
		/* link-local sources: neighbour discovery and friends */
		if (ip[8] == 0xfe && (ip[9] & 0xc0) == 0x80)
			goto skip;
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
			dv = bpf_map_lookup_elem(&moat_pf_dst6, &dk);
		}
		if (!dv)
			goto pass;
		{
			struct moat_pf_src6_key sk;
			__u32 n = cf->nlen6;

#pragma unroll
			for (i = 0; i < MOAT_PF_MAX_LENS; i++) {
				struct moat_pf_len *pl;
				__u32 slot = MOAT_PF_MAX_LENS + i, w[4];

				if ((__u32)i >= n)
					break;
				pl = bpf_map_lookup_elem(&moat_pf_lens, &slot);
				if (!pl)
					break;
				sk.plen = pl->plen;
				w[0] = sa[0] & pl->mask[0];
				w[1] = sa[1] & pl->mask[1];
				w[2] = sa[2] & pl->mask[2];
				w[3] = sa[3] & pl->mask[3];
				__builtin_memcpy(sk.addr, w, 16);
				sv = bpf_map_lookup_elem(&moat_pf_src6, &sk);
				if (sv)
					break;
			}
		}
	} else {
		goto skip;
	}
	if (!sv)
		goto pass;

	if (proto == IPPROTO_TCP) {
		grp = MOAT_PF_G_TCP;
	} else if (proto == IPPROTO_UDP) {
		grp = MOAT_PF_G_UDP;
	} else if (proto == IPPROTO_SCTP) {
		grp = MOAT_PF_G_SCTP;
	} else {
		grp = MOAT_PF_G_OTHER;
		if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
			__u8 type;

			if ((void *)(l4 + 8) > end)
				goto skip;
			type = l4[0];
			/* errors may be related to an allowed flow (the full
			 * program passes them on conntrack, unjudged); neighbour
			 * discovery is not policy */
			if (proto == IPPROTO_ICMP && (type == 3 || type == 4 || type == 11 || type == 12))
				goto skip;
			if (proto == IPPROTO_ICMPV6 &&
			    ((type >= 1 && type <= 4) || (type >= 133 && type <= 137)))
				goto skip;
		}
	}
	pk.set = sv->set;
	pk.identity = dv->identity;
	pv = bpf_map_lookup_elem(&moat_pf_pairs, &pk);
	if (!pv || !(pv->deny & (1u << grp)))
		goto pass;

	if ((cf->flags & MOAT_PF_CFG_SAMPLE) && !(bpf_get_prandom_u32() & cf->sample_mask)) {
		struct moat_pf_event ev = {};

		/* constant offsets only: the device refuses a map value read at
		 * a variable offset */
		__u32 r0 = pv->rule[0], r1 = pv->rule[1], r2 = pv->rule[2], r3 = pv->rule[3];

		ev.rule = grp == MOAT_PF_G_TCP  ? r0 :
			  grp == MOAT_PF_G_UDP  ? r1 :
			  grp == MOAT_PF_G_SCTP ? r2 :
						  r3;
		ev.identity = pk.identity;
		ev.set = pk.set;
		ev.pkt_len = len;
		ev.family = family;
		ev.proto = proto;
		ev.dropped = !!(cf->flags & MOAT_PF_CFG_ENFORCE);
		__builtin_memcpy(ev.saddr, sa, 16);
		__builtin_memcpy(ev.daddr, da, 16);
		if (!bpf_perf_event_output(ctx, &moat_pf_events, BPF_F_CURRENT_CPU, &ev, sizeof(ev)))
			stat_add(MOAT_PF_STAT_SAMPLED, 1);
	}
	if (!(cf->flags & MOAT_PF_CFG_ENFORCE)) {
		stat_add(MOAT_PF_STAT_WOULD_DROP, 1);
		goto pass;
	}
	__sync_fetch_and_add(&pv->packets, 1);
	__sync_fetch_and_add(&pv->bytes, len);
	stat_add(MOAT_PF_STAT_DROP, 1);
	stat_add(MOAT_PF_STAT_DROP_BYTES, len);
	return XDP_DROP;

pass:
	stat_add(MOAT_PF_STAT_PASS, 1);
	return XDP_PASS;
skip:
	stat_add(MOAT_PF_STAT_SKIPPED, 1);
	return XDP_PASS;
}
