/* SPDX-License-Identifier: GPL-2.0-only */
/* Connection tracking.
 *
 * One entry per flow under a canonical key (endpoint a = the lower
 * (address, port) pair), so both directions find it with one lookup.  An
 * entry exists only for flows that were allowed (or handed on to a Service
 * VIP); every packet that matches it passes, in either direction, at every
 * hook of the node.  Entries carry the policy generation they were judged
 * under: a packet of an entry from an older generation is judged again
 * (revocation), before it passes.
 */
#ifndef MOAT_CT_BPF_H
#define MOAT_CT_BPF_H

#include "maps.bpf.h"
#include "parse.bpf.h"

#define NSEC 1000000000ull

union ct_key {
	struct moat_ct4_key k4;
	struct moat_ct6_key k6;
};

/* Fills the canonical key; returns 1 if the packet's source is endpoint b. */
static __always_inline int ct_make_key(union ct_key *k, __u8 family, __u8 proto, const union addr *s,
				       const union addr *d, __be16 sport, __be16 dport)
{
	int swap = 0;

	if (family == 4) {
		__u32 sa = bpf_ntohl(s->v4), da = bpf_ntohl(d->v4);
		swap = sa > da || (sa == da && bpf_ntohs(sport) > bpf_ntohs(dport));
		k->k4.proto = proto;
		k->k4.pad[0] = k->k4.pad[1] = k->k4.pad[2] = 0;
		if (swap) {
			k->k4.a_addr = d->v4;
			k->k4.b_addr = s->v4;
			k->k4.a_port = dport;
			k->k4.b_port = sport;
		} else {
			k->k4.a_addr = s->v4;
			k->k4.b_addr = d->v4;
			k->k4.a_port = sport;
			k->k4.b_port = dport;
		}
		return swap;
	}

	{
		int i, decided = 0;
#pragma unroll
		for (i = 0; i < 4; i++) {
			__u32 sw = bpf_ntohl(s->w[i]), dw = bpf_ntohl(d->w[i]);
			if (!decided && sw != dw) {
				swap = sw > dw;
				decided = 1;
			}
		}
		if (!decided)
			swap = bpf_ntohs(sport) > bpf_ntohs(dport);
	}
	k->k6.proto = proto;
	k->k6.pad[0] = k->k6.pad[1] = k->k6.pad[2] = 0;
	if (swap) {
		__builtin_memcpy(k->k6.a_addr, d->v6, 16);
		__builtin_memcpy(k->k6.b_addr, s->v6, 16);
		k->k6.a_port = dport;
		k->k6.b_port = sport;
	} else {
		__builtin_memcpy(k->k6.a_addr, s->v6, 16);
		__builtin_memcpy(k->k6.b_addr, d->v6, 16);
		k->k6.a_port = sport;
		k->k6.b_port = dport;
	}
	return swap;
}

static __always_inline struct moat_ct_entry *ct_lookup(union ct_key *k, __u8 family)
{
	if (family == 4)
		return bpf_map_lookup_elem(&moat_ct4, &k->k4);
	return bpf_map_lookup_elem(&moat_ct6, &k->k6);
}

static __always_inline int ct_update(union ct_key *k, __u8 family, struct moat_ct_entry *e)
{
	if (family == 4)
		return bpf_map_update_elem(&moat_ct4, &k->k4, e, BPF_ANY);
	return bpf_map_update_elem(&moat_ct6, &k->k6, e, BPF_ANY);
}

static __always_inline void ct_delete(union ct_key *k, __u8 family)
{
	if (family == 4)
		bpf_map_delete_elem(&moat_ct4, &k->k4);
	else
		bpf_map_delete_elem(&moat_ct6, &k->k6);
}

static __always_inline int ct_is_closing(const struct moat_ct_entry *e)
{
	return (e->flags & MOAT_CT_RST) || ((e->flags & MOAT_CT_FIN_INIT) && (e->flags & MOAT_CT_FIN_RESP));
}

static __always_inline __u64 ct_timeout_ns(const struct moat_ct_entry *e, __u8 proto,
					   const struct moat_config *cfg)
{
	if (proto == IPPROTO_TCP) {
		if (ct_is_closing(e))
			return (__u64)cfg->ct_tcp_close_timeout_s * NSEC;
		if (!(e->flags & MOAT_CT_SEEN_REPLY))
			return (__u64)cfg->ct_syn_timeout_s * NSEC;
		return (__u64)cfg->ct_tcp_timeout_s * NSEC;
	}
	return (__u64)cfg->ct_other_timeout_s * NSEC;
}

static __always_inline int ct_expired(const struct moat_ct_entry *e, __u8 proto,
				      const struct moat_config *cfg, __u64 now)
{
	return now > e->last_seen_ns && now - e->last_seen_ns > ct_timeout_ns(e, proto, cfg);
}

/* Records one packet of an established flow.  Returns 1 when this packet
 * closed the flow (second FIN or first RST), so the caller reports its end. */
static __always_inline int ct_account(struct moat_ct_entry *e, const struct pkt *pk, int is_reply, __u64 now)
{
	__u32 set = 0;
	int closed = 0;

	/* Timestamps are refreshed at most every 100 ms to spare the cache line. */
	if (now - e->last_seen_ns > NSEC / 10)
		e->last_seen_ns = now;
	e->packets++;
	e->bytes += pk->len;
	if (is_reply && !(e->flags & MOAT_CT_SEEN_REPLY))
		set |= MOAT_CT_SEEN_REPLY;
	if (pk->proto == IPPROTO_TCP && pk->tcp_flags) {
		e->tcp_flags |= pk->tcp_flags;
		if (pk->tcp_flags & 0x04) /* RST */
			set |= MOAT_CT_RST;
		if (pk->tcp_flags & 0x01) /* FIN */
			set |= is_reply ? MOAT_CT_FIN_RESP : MOAT_CT_FIN_INIT;
	}
	if (set & ~e->flags) {
		int was_closing = ct_is_closing(e);
		__sync_fetch_and_or(&e->flags, set);
		closed = !was_closing && ct_is_closing(e);
	}
	return closed;
}

#endif
