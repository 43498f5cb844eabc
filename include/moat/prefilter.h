/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The hardware pre-filter's map ABI: every key and value of
 * xdp/prefilter.bpf.c, shared with the planner (hostd/prefilter.c) and the
 * loader (offload/plan.c).  Same rules as abi.h: fixed-width types, byte
 * order in the name, explicit padding, a size assertion per struct.
 *
 * The pre-filter is stateless and only ever drops; whatever it passes goes
 * on to the full enforcer (moat_uplink), which stays authoritative.  Its
 * tables say, for packets from outside the cluster to a local pod:
 *
 *   pf_src4/6: (prefix length, masked source) -> class.  The longest listed
 *              prefix wins (per-length hash lookups, longest first: no LPM
 *              trie on the NIC); class 0 means "pass" (cluster ranges, and
 *              addresses no drop applies to, shadowing a wider entry).
 *   pf_dst4/6: destination address of a local pod -> its identity.
 *   pf_rule:   (class, identity, protocol) -> the destination ports whose
 *              ingress the full program denies and the source ports whose
 *              egress (the reverse flow) it denies.  A packet is dropped
 *              when its destination port is in the first set and its source
 *              port in the second: then neither this flow nor its reverse
 *              can have been allowed, so no conntrack entry can pass it.
 *              Protocol 0 stands for every protocol without ports (ICMP,
 *              GRE, ...); such an entry drops outright.
 *
 * Every map is a HASH or an ARRAY with 4-byte-aligned keys and values of
 * at most 64 bytes together (nfp firmware limits); counters are updated
 * with atomic adds only; nothing is written into a map value otherwise.
 */
#ifndef MOAT_PREFILTER_H
#define MOAT_PREFILTER_H

#include <linux/types.h>

#define MOAT_PF_ABI_VERSION 1

#define MOAT_PF_MAP_CONF   "pf_conf"
#define MOAT_PF_MAP_PLEN   "pf_plen"
#define MOAT_PF_MAP_SRC4   "pf_src4"
#define MOAT_PF_MAP_SRC6   "pf_src6"
#define MOAT_PF_MAP_DST4   "pf_dst4"
#define MOAT_PF_MAP_DST6   "pf_dst6"
#define MOAT_PF_MAP_RULE   "pf_rule"
#define MOAT_PF_MAP_STATS  "pf_stats"
#define MOAT_PF_MAP_EVENTS "pf_events"

/* Table sizes (max_entries).  Together 7,200 entries of the NIC's shared
 * budget (nfp firmware: millions). */
#define MOAT_PF_MAX_PLENS   8     /* distinct prefix lengths per family */
#define MOAT_PF_MAX_SRC     1024  /* per family */
#define MOAT_PF_MAX_DST     512   /* local pod addresses, per family */
#define MOAT_PF_MAX_RULES   4096
#define MOAT_PF_MAX_RANGES  4     /* port intervals per direction in a rule */

#define MOAT_PF_CLASS_PASS  0u

/* pf_conf[0] */
#define MOAT_PF_F_ENABLED   (1u << 0)  /* clear: pass everything */
#define MOAT_PF_F_EVENTS    (1u << 1)  /* sample drops into pf_events */

struct moat_pf_conf {
	__u32 flags;        /* MOAT_PF_F_* */
	__u32 sample_mask;  /* a drop is sampled when (random & mask) == 0 */
	__u32 n4;           /* prefix lengths in use: pf_plen[0..n4) (IPv4) */
	__u32 n6;           /* and pf_plen[MOAT_PF_MAX_PLENS..+n6) (IPv6) */
};
_Static_assert(sizeof(struct moat_pf_conf) == 16, "moat_pf_conf size");

/* pf_plen[i]: one prefix length in use, longest first, with its mask
 * (IPv4: mask[0] only). */
struct moat_pf_plen {
	__u32 plen;
	__be32 mask[4];
};
_Static_assert(sizeof(struct moat_pf_plen) == 20, "moat_pf_plen size");

struct moat_pf_src4_key {
	__u32 plen;
	__be32 addr;        /* host bits cleared */
};
_Static_assert(sizeof(struct moat_pf_src4_key) == 8, "moat_pf_src4_key size");

struct moat_pf_src6_key {
	__u32 plen;
	__u8 addr[16];
};
_Static_assert(sizeof(struct moat_pf_src6_key) == 20, "moat_pf_src6_key size");

struct moat_pf_src_val {
	__u32 cls;          /* MOAT_PF_CLASS_PASS or a rule class */
};
_Static_assert(sizeof(struct moat_pf_src_val) == 4, "moat_pf_src_val size");

struct moat_pf_dst4_key {
	__be32 addr;
};
_Static_assert(sizeof(struct moat_pf_dst4_key) == 4, "moat_pf_dst4_key size");

struct moat_pf_dst6_key {
	__u8 addr[16];
};
_Static_assert(sizeof(struct moat_pf_dst6_key) == 16, "moat_pf_dst6_key size");

struct moat_pf_dst_val {
	__u32 identity;
};
_Static_assert(sizeof(struct moat_pf_dst_val) == 4, "moat_pf_dst_val size");

struct moat_pf_rule_key {
	__u32 cls;
	__u32 identity;
	__u8 proto;         /* IPPROTO_TCP/UDP/SCTP, or 0: any other protocol */
	__u8 pad[3];
};
_Static_assert(sizeof(struct moat_pf_rule_key) == 12, "moat_pf_rule_key size");

/* Inclusive port intervals, host order; an unused slot has lo > hi. */
struct moat_pf_rule_val {
	__u16 in_lo[MOAT_PF_MAX_RANGES];   /* destination ports: ingress denied */
	__u16 in_hi[MOAT_PF_MAX_RANGES];
	__u16 eg_lo[MOAT_PF_MAX_RANGES];   /* source ports: reverse egress denied */
	__u16 eg_hi[MOAT_PF_MAX_RANGES];
};
_Static_assert(sizeof(struct moat_pf_rule_val) == 32, "moat_pf_rule_val size");

/* pf_stats: ARRAY of packet/byte pairs, atomic adds only (zeroed through
 * map updates before the program runs on a NIC). */
#define MOAT_PF_STAT_DROP         0
#define MOAT_PF_STAT_PASS_DISABLED 1  /* pre-filter switched off */
#define MOAT_PF_STAT_PASS_NOT_IP  2
#define MOAT_PF_STAT_PASS_PARSE   3   /* VLAN depth, extension headers, short */
#define MOAT_PF_STAT_PASS_FRAG    4   /* later fragments: no ports */
#define MOAT_PF_STAT_PASS_EXEMPT  5   /* ICMP errors, ND, link-local */
#define MOAT_PF_STAT_PASS_NO_DST  6   /* not to a local pod */
#define MOAT_PF_STAT_PASS_NO_SRC  7   /* source in no listed prefix */
#define MOAT_PF_STAT_PASS_NO_RULE 8   /* no rule for (class, pod, proto) */
#define MOAT_PF_STAT_PASS_PORTS   9   /* ports outside the denied sets */
#define MOAT_PF_STAT_SAMPLED      10  /* events attempted */
#define MOAT_PF_STAT_EVENT_FAILED 11  /* bpf_perf_event_output failed (host) */
#define MOAT_PF_STAT_MAX          16

struct moat_pf_stat {
	__u64 packets;
	__u64 bytes;
};
_Static_assert(sizeof(struct moat_pf_stat) == 16, "moat_pf_stat size");

/* pf_events: a sampled drop (no packet bytes: the NIC sends it as a
 * control message; offloaded outputs may be lost or reordered unseen). */
struct moat_pf_event {
	__u32 cls;
	__u32 identity;     /* destination pod */
	__u8 saddr[16];     /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u16 sport;        /* host order */
	__u16 dport;
	__u8 proto;
	__u8 family;        /* 4 or 6 */
	__u16 pad;
	__u32 pkt_len;
	__u32 pad2;
};
_Static_assert(sizeof(struct moat_pf_event) == 56, "moat_pf_event size");

#endif /* MOAT_PREFILTER_H */
