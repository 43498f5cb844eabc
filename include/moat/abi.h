/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * moat map ABI: every map key and value, event record, verdict, tier and
 * drop-reason code shared by the XDP programs (xdp/) and user space
 * (offload/, hostd/, tests/).  Consumers: the BPF programs in xdp/, offload/dp.c,
 * hostd/compile.c, hostd/explain.c, hostd/events.c, tests/bpf/.
 *
 * Rules: fixed-width types only, byte order in the name (be = network
 * order), explicit padding, a size assertion per struct.  Codes are
 * append-only and never renumbered.  Bump MOAT_ABI_VERSION on any change of
 * layout or meaning; the loader does not reuse pinned maps of another
 * version, it upgrades them in place (offload/upgrade.c).  Across versions,
 * conntrack entries are carried over when the BTF layouts of the conntrack
 * key and entry agree member by member, names included: a change of what a
 * conntrack field or flag means must rename the field (tests/unit/test_upgrade.c
 * compares both with tests/fixtures/ct_layout.txt).  The first 8 bytes of
 * struct moat_meta (version, magic) never change.
 */
#ifndef MOAT_ABI_H
#define MOAT_ABI_H

#include <linux/types.h>

#define MOAT_ABI_VERSION 7

#define MOAT_ASSERT_SIZE(t, n) _Static_assert(sizeof(t) == (n), #t " size")

/* ---- map names (the kernel keeps 15 characters) ------------------------ */
#define MOAT_MAP_META      "moat_meta"
#define MOAT_MAP_CONFIG    "moat_config"
#define MOAT_MAP_STATS     "moat_stats"
#define MOAT_MAP_RULESTATS "moat_rulestats"
#define MOAT_MAP_CT4       "moat_ct4"
#define MOAT_MAP_CT6       "moat_ct6"
#define MOAT_MAP_FRAG4     "moat_frag4"
#define MOAT_MAP_FRAG6     "moat_frag6"
#define MOAT_MAP_DENY4     "moat_deny4"
#define MOAT_MAP_DENY6     "moat_deny6"
#define MOAT_MAP_EVENTS    "moat_events"
#define MOAT_MAP_EVSTATS   "moat_evstats"

/* Generation-switched tables: an outer ARRAY_OF_MAPS with two slots, and
 * the two inner maps "<base>_a"/"<base>_b".  The datapath reads the active
 * slot from moat_config; user space fills the other slot and flips. */
#define MOAT_TBL_EP    "moat_ep"    /* host-side ifindex -> endpoint */
#define MOAT_TBL_EPA   "moat_epa"   /* the same, ifindex < MOAT_EP_ARRAY_MAX */
#define MOAT_TBL_IP4   "moat_ip4"   /* exact IPv4 -> identity        */
#define MOAT_TBL_IP6   "moat_ip6"   /* exact IPv6 -> identity        */
#define MOAT_TBL_NET4  "moat_net4"  /* IPv4 prefix -> CIDR region    */
#define MOAT_TBL_NET6  "moat_net6"  /* IPv6 prefix -> CIDR region    */
#define MOAT_TBL_SUBJ  "moat_subj"  /* identity -> subject config    */
#define MOAT_TBL_PORTS "moat_ports" /* port range -> port class      */
#define MOAT_TBL_POL   "moat_pol"   /* decision table                */
#define MOAT_TBL_COUNT 8

/* ---- default sizes (max_entries; the loader may override) ------------- */
#define MOAT_MAX_ENDPOINTS  65536 /* local interfaces per node */
/* Endpoints of interfaces with an ifindex below this live in an array
 * indexed by ifindex (a lookup the verifier inlines, ~2 ns against ~22 ns
 * for the hash); larger ifindexes (a node that has created that many
 * interfaces) in the hash.  The loader routes each key; not adjustable,
 * the datapath compares against it. */
#define MOAT_EP_ARRAY_MAX   16384
#define MOAT_MAX_IPS        262144 /* pod and node IPs, per family */
#define MOAT_MAX_NETS       65536  /* CIDR prefixes, per family */
#define MOAT_MAX_IDENTITIES 131072 /* subject config array size */
#define MOAT_MAX_PORTRANGES 65536
#define MOAT_MAX_POLICY     1048576 /* decision entries */
#define MOAT_MAX_RULES      131072  /* rule references (counters) */
#define MOAT_MAX_CT         262144  /* connections per family */
#define MOAT_MAX_FRAGS      8192
#define MOAT_MAX_DENY       65536 /* cached deny verdicts, per family */

/* ---- identities --------------------------------------------------------
 * Dense numeric ids, stable while the object they stand for exists.
 * 0 is never a valid identity. */
#define MOAT_ID_NONE      0u
#define MOAT_ID_WORLD     1u  /* any IP the cluster does not know */
#define MOAT_ID_FIRST_DYN 16u /* pods, nodes: allocated from here */

/* Peer classes: the coarse kind of a peer, used for class-wide rules
 * ("all pods", "everything") so they need one entry per subject instead of
 * one per identity.  Stored in the ipcache value. */
#define MOAT_CLASS_WORLD 0u
#define MOAT_CLASS_POD   1u
#define MOAT_CLASS_NODE  2u
#define MOAT_CLASS_VIP   3u /* Service ClusterIP: egress judged after DNAT */
#define MOAT_CLASS_MAX   4u

/* A decision key's peer field for a class-wide row. */
#define MOAT_PEER_CLASS(c) (0xffffff00u | (c))
/* CIDR-dimension class rows, one per address family. */
#define MOAT_PEER_NET4     0xfffffff4u
#define MOAT_PEER_NET6     0xfffffff6u

/* ---- rule references ----------------------------------------------------
 * Every verdict names the rule that produced it by a u32 reference into
 * the daemon's rule table (policy kind, namespace, name, direction, rule
 * index).  References are stable while the rule exists. */
#define MOAT_RULE_NONE          0u
#define MOAT_RULE_DEFAULT_ALLOW 1u /* no policy of any tier decided */
#define MOAT_RULE_NOT_IP        2u /* ARP, unknown ethertypes: not policy */
#define MOAT_RULE_MALFORMED     3u /* dropped by the parser */
#define MOAT_RULE_LOCAL_NODE    4u /* from the pod's own node (kubelet) */
#define MOAT_RULE_NO_ENDPOINT   5u /* interface/IP not (yet) known: fail closed */
#define MOAT_RULE_ND            6u /* IPv6 neighbour discovery / link-local */
#define MOAT_RULE_SPOOF         7u /* source address not the pod's */
#define MOAT_RULE_FIRST_DYN     16u

/* ---- verdicts, tiers, actions ------------------------------------------ */
#define MOAT_VERDICT_NONE  0
#define MOAT_VERDICT_ALLOW 1
#define MOAT_VERDICT_DENY  2
#define MOAT_VERDICT_AUDIT 3 /* allowed, but an audit-mode rule would deny */

#define MOAT_TIER_NONE     0
#define MOAT_TIER_ADMIN    1 /* ANP / CNP tier Admin */
#define MOAT_TIER_NETPOL   2 /* networking.k8s.io NetworkPolicy */
#define MOAT_TIER_BASELINE 3 /* BANP / CNP tier Baseline */
#define MOAT_TIER_DEFAULT  4 /* nothing matched: allow */
#define MOAT_TIER_CT       5 /* established or reply of an allowed flow */
#define MOAT_TIER_DATAPATH 6 /* parser, anti-spoofing, unknown endpoint */

/* Rule actions as stored in policy values. */
#define MOAT_ACT_NONE  0
#define MOAT_ACT_ALLOW 1
#define MOAT_ACT_DENY  2
#define MOAT_ACT_PASS  3

#define MOAT_RANK_NONE 0xffffffffu

/* Directions and hooks. */
#define MOAT_DIR_INGRESS   0
#define MOAT_DIR_EGRESS    1
#define MOAT_HOOK_FROM_POD 0 /* host-side veth: the pod's egress */
#define MOAT_HOOK_TO_POD   1 /* pod-side veth: the pod's ingress */
#define MOAT_HOOK_UPLINK   2 /* node uplink */
#define MOAT_HOOK_MAX      3

/* ---- drop reasons (append only; negated as metric label) --------------- */
#define MOAT_DROP_NONE          0
#define MOAT_DROP_POLICY        1 /* a rule or an isolation denied */
#define MOAT_DROP_TRUNC_ETH     2
#define MOAT_DROP_TRUNC_VLAN    3
#define MOAT_DROP_VLAN_DEPTH    4 /* more than two VLAN tags */
#define MOAT_DROP_TRUNC_IP4     5
#define MOAT_DROP_BAD_IP4_HDR   6 /* version/IHL/total length inconsistent */
#define MOAT_DROP_TRUNC_IP6     7
#define MOAT_DROP_TRUNC_EXTHDR  8
#define MOAT_DROP_EXTHDR_DEPTH  9 /* too many IPv6 extension headers */
#define MOAT_DROP_TRUNC_L4      10
#define MOAT_DROP_BAD_TCP_HDR   11 /* data offset < 5 or beyond the packet */
#define MOAT_DROP_FRAG_NO_FIRST 12 /* non-first fragment of an unknown datagram */
#define MOAT_DROP_SPOOFED       13 /* source IP not owned by the sending pod */
#define MOAT_DROP_NO_ENDPOINT   14 /* interface or destination not known */
#define MOAT_DROP_CT_REVOKED    15 /* established flow the new policy denies */
#define MOAT_DROP_MAP_ERROR     16 /* internal: a table was missing */
#define MOAT_DROP_MAX           17

/* ---- global statistics (per-CPU array of packet/byte pairs) ------------ */
#define MOAT_STAT_VERDICT(v)     (v)       /* v = MOAT_VERDICT_* */
#define MOAT_STAT_DROP(r)        (4 + (r)) /* r = MOAT_DROP_* */
#define MOAT_STAT_CT_NEW         (4 + MOAT_DROP_MAX)
#define MOAT_STAT_CT_ESTABLISHED (MOAT_STAT_CT_NEW + 1)
#define MOAT_STAT_CT_REPLY       (MOAT_STAT_CT_NEW + 2)
#define MOAT_STAT_CT_REVALIDATED (MOAT_STAT_CT_NEW + 3)
#define MOAT_STAT_CT_REVOKED     (MOAT_STAT_CT_NEW + 4)
#define MOAT_STAT_NOT_IP         (MOAT_STAT_CT_NEW + 5) /* ARP etc., passed */
#define MOAT_STAT_LINK_LOCAL     (MOAT_STAT_CT_NEW + 6) /* ND, link-local, passed */
#define MOAT_STAT_FRAG_LATER     (MOAT_STAT_CT_NEW + 7)
#define MOAT_STAT_RELATED        (MOAT_STAT_CT_NEW + 8)  /* ICMP errors of a flow */
#define MOAT_STAT_DEFERRED       (MOAT_STAT_CT_NEW + 9)  /* to a Service VIP */
#define MOAT_STAT_NOT_OURS       (MOAT_STAT_CT_NEW + 10) /* uplink: not for a local pod */
#define MOAT_STAT_DENY_CACHED    (MOAT_STAT_CT_NEW + 11) /* dropped by a cached verdict */
#define MOAT_STAT_MAX            64

struct moat_stat {
	__u64 packets;
	__u64 bytes;
};
MOAT_ASSERT_SIZE(struct moat_stat, 16);

/* Per-rule counters, per-CPU array indexed by rule reference. */
struct moat_rule_stat {
	__u64 packets;
	__u64 bytes;
};
MOAT_ASSERT_SIZE(struct moat_rule_stat, 16);

/* ---- meta: identifies the pinned map set ------------------------------- */
struct moat_meta {
	__u32 abi_version;
	__u32 magic;      /* MOAT_META_MAGIC */
	__u64 created_ns; /* CLOCK_REALTIME at creation */
};
MOAT_ASSERT_SIZE(struct moat_meta, 16);
#define MOAT_META_MAGIC 0x6d6f6174u /* "moat" */

/* ---- run-time configuration (array, one entry) -------------------------- */
#define MOAT_CFG_REVOKE_ESTABLISHED (1u << 0) /* re-judge flows on a new generation */
#define MOAT_CFG_ALLOW_LOCAL_NODE   (1u << 1) /* pods always reachable from their node */
#define MOAT_CFG_ENFORCE            (1u << 2) /* clear: judge and count, never drop */

/* The array is mmapped by the daemon, which writes single fields with
 * release stores: slot_gen[] of the filled slot first, then active.  The
 * datapath reads active, then slot_gen[active], so the generation it stamps
 * on a flow always belongs to the tables it judged the flow with. */
struct moat_config {
	__u32 active;       /* slot (0/1) of the generation-switched tables */
	__u32 slot_gen[2];  /* policy generation held by each slot */
	__u32 flags;        /* MOAT_CFG_* */
	__u32 sample_every; /* 1-in-N sampling of other packets; 0 = off */
	__u32 ct_tcp_timeout_s;
	__u32 ct_tcp_close_timeout_s;
	__u32 ct_other_timeout_s;
	__u32 ct_syn_timeout_s;
	__u32 deny_events_per_s; /* per-CPU token bucket rate for deny events */
	__u32 deny_events_burst;
	__u32 snaplen; /* packet bytes appended to events */
};
MOAT_ASSERT_SIZE(struct moat_config, 48);

/* ---- endpoints: host-side veth ifindex -> local pod --------------------- */
#define MOAT_EP_F_HAS_IP4 (1u << 0)
#define MOAT_EP_F_HAS_IP6 (1u << 1)
#define MOAT_EP_F_VALID   (1u << 2) /* set in every endpoint: an array slot without it is empty */

struct moat_endpoint {
	__u32 identity;
	__u32 flags;   /* MOAT_EP_F_* */
	__be32 ip4;    /* the pod's own addresses: anti-spoofing */
	__u32 region4; /* ip4's CIDR region, as in the ipcache */
	__u8 ip6[16];
	__u32 region6; /* ip6's: a new flow's source needs no ipcache lookup */
	__u32 pad;
};
MOAT_ASSERT_SIZE(struct moat_endpoint, 40);

/* ---- ipcache: exact address -> identity --------------------------------- */
struct moat_ip4_key {
	__be32 addr;
};
MOAT_ASSERT_SIZE(struct moat_ip4_key, 4);

struct moat_ip6_key {
	__u8 addr[16];
};
MOAT_ASSERT_SIZE(struct moat_ip6_key, 16);

#define MOAT_IP_F_LOCAL (1u << 0) /* a pod on this node */

struct moat_ip_info {
	__u32 identity;
	__u32 region; /* CIDR region of this address (0 = none) */
	__u8 class;   /* MOAT_CLASS_* */
	__u8 flags;   /* MOAT_IP_F_* */
	__u16 pad;
};
MOAT_ASSERT_SIZE(struct moat_ip_info, 12);

/* CIDR regions: LPM tries over the prefixes that policies name.  The most
 * specific listed prefix containing an address is its region. */
struct moat_net4_key {
	__u32 prefixlen;
	__be32 addr;
};
MOAT_ASSERT_SIZE(struct moat_net4_key, 8);

struct moat_net6_key {
	__u32 prefixlen;
	__u8 addr[16];
};
MOAT_ASSERT_SIZE(struct moat_net6_key, 20);

struct moat_net_info {
	__u32 region;
};
MOAT_ASSERT_SIZE(struct moat_net_info, 4);

/* ---- subjects: identity -> what applies to it, per direction ----------- */
#define MOAT_SUBJ_ACTIVE         (1u << 0) /* some policy of some tier selects it */
#define MOAT_SUBJ_ISOLATED       (1u << 1) /* a NetworkPolicy isolates it */
#define MOAT_SUBJ_NETS           (1u << 2) /* it has CIDR-dimension rules */
#define MOAT_SUBJ_RANGE_TCP      (1u << 3) /* ports of this protocol are classes */
#define MOAT_SUBJ_RANGE_UDP      (1u << 4)
#define MOAT_SUBJ_RANGE_SCTP     (1u << 5)
/* Audit mode: policies in audit mode never change what is enforced.  The
 * compiler builds the tables without them, and a shadow table (keys with
 * MOAT_PK_AUDIT) with them enforced; a packet the real tables allow but the
 * shadow denies is allowed and reported as MOAT_VERDICT_AUDIT. */
#define MOAT_SUBJ_AUDIT          (1u << 6) /* a shadow table exists */
#define MOAT_SUBJ_AUDIT_ISOLATED (1u << 7) /* isolated in the shadow table */
#define MOAT_SUBJ_AUDIT_NETS     (1u << 8)
#define MOAT_SUBJ_AUDIT_ACTIVE   (1u << 9)
/* Its namespace sets the sampling of its flows (moat.io/sample-every). */
#define MOAT_SUBJ_SAMPLE         (1u << 10)

struct moat_subject_dir {
	__u32 flags;              /* MOAT_SUBJ_* */
	__u32 isolate_rule;       /* rule ref naming the isolating policy */
	__u32 audit_isolate_rule; /* the same, in the shadow table */
	__u32 sample_every;       /* with MOAT_SUBJ_SAMPLE: 1 in N packets, 0 = none */
};
MOAT_ASSERT_SIZE(struct moat_subject_dir, 16);

struct moat_subject {
	struct moat_subject_dir dir[2]; /* MOAT_DIR_INGRESS, MOAT_DIR_EGRESS */
};
MOAT_ASSERT_SIZE(struct moat_subject, 32);

/* ---- port classes: (subject, dir, proto, port) -> class ----------------
 * Only for subjects whose rules on that protocol use ranges; the range's
 * elementary intervals become classes, looked up by longest prefix. */
struct moat_port_key {
	__u32 prefixlen; /* 64 + port prefix bits */
	__be32 subject;
	__u8 dir;
	__u8 proto;
	__u16 pad;
	__be16 port;
	__u16 pad2;
};
MOAT_ASSERT_SIZE(struct moat_port_key, 16);
#define MOAT_PORT_KEY_FIXED_BITS 64 /* subject + dir + proto + pad */

struct moat_port_class {
	__u32 cls; /* 1.. ; used as the port of decision keys */
};
MOAT_ASSERT_SIZE(struct moat_port_class, 4);

/* ---- decision table ------------------------------------------------------
 * One hash map.  Lookup chain per dimension (identity, CIDR region), first
 * hit wins; the compiler folds every wider rule into the narrower entries
 * so the first hit is already fully resolved:
 *   (subject, peer, proto, port)  exact port or port class
 *   (subject, peer, 0, 0)         this peer, all other ports and protocols
 *   (subject, class, proto, port) class-wide rows
 *   (subject, class, 0, 0)
 * The two dimensions are merged by rank: lower rank wins within a tier. */
#define MOAT_PK_EGRESS    (1u << 0)
#define MOAT_PK_NET       (1u << 1) /* CIDR dimension */
#define MOAT_PK_PORTCLASS (1u << 2) /* port field is a class */
#define MOAT_PK_AUDIT     (1u << 3) /* shadow table (audit policies enforced) */

struct moat_policy_key {
	__u32 subject;
	__u32 peer; /* identity, region, or MOAT_PEER_* class row */
	__u16 port; /* host order; 0 with proto 0 = any */
	__u8 proto; /* IPPROTO_*; 0 = any */
	__u8 flags; /* MOAT_PK_* */
};
MOAT_ASSERT_SIZE(struct moat_policy_key, 12);

struct moat_policy_val {
	__u32 admin_rank; /* first matching Admin-tier rule; RANK_NONE if none */
	__u32 admin_rule;
	__u32 base_rank; /* first matching Baseline-tier rule */
	__u32 base_rule;
	__u32 np_rule;     /* a NetworkPolicy rule that allows; 0 if none */
	__u8 admin_action; /* MOAT_ACT_* */
	__u8 base_action;
	__u8 pad[2];
};
MOAT_ASSERT_SIZE(struct moat_policy_val, 24);

/* ---- connection tracking -------------------------------------------------
 * Canonical keys: endpoint "a" is the lower (addr, port) pair, so both
 * directions of a flow find the same entry with one lookup.  ICMP echo uses
 * the identifier as both ports. */
struct moat_ct4_key {
	__be32 a_addr;
	__be32 b_addr;
	__be16 a_port;
	__be16 b_port;
	__u8 proto;
	__u8 pad[3];
};
MOAT_ASSERT_SIZE(struct moat_ct4_key, 16);

struct moat_ct6_key {
	__u8 a_addr[16];
	__u8 b_addr[16];
	__be16 a_port;
	__be16 b_port;
	__u8 proto;
	__u8 pad[3];
};
MOAT_ASSERT_SIZE(struct moat_ct6_key, 40);

#define MOAT_CT_INIT_B     (1u << 0) /* the initiator is endpoint b */
#define MOAT_CT_DEFERRED   (1u << 3) /* to a Service VIP: judged after DNAT */
#define MOAT_CT_SEEN_REPLY (1u << 4)
#define MOAT_CT_FIN_INIT   (1u << 5)
#define MOAT_CT_FIN_RESP   (1u << 6)
#define MOAT_CT_RST        (1u << 7)
#define MOAT_CT_AUDIT      (1u << 8) /* allowed under audit: a rule would deny */

struct moat_ct_entry {
	__u64 created_ns; /* bpf_ktime_get_coarse_ns() */
	__u64 last_seen_ns;
	__u32 generation;   /* policy generation it was last judged under */
	__u32 flags;        /* MOAT_CT_* */
	__u32 egress_rule;  /* rule that allowed the initiator's egress */
	__u32 ingress_rule; /* rule that allowed the responder's ingress */
	__u32 init_identity;
	__u32 resp_identity;
	__u64 packets; /* both directions */
	__u64 bytes;
	__u8 tcp_flags; /* union of TCP flags seen */
	__u8 egress_tier;
	__u8 ingress_tier;
	__u8 pad;
	__u32 sample; /* 0: moat_config's sample_every; else 1 + the 1-in-N
			     * its namespaces asked for (1: never) */
};
MOAT_ASSERT_SIZE(struct moat_ct_entry, 64);

/* ---- deny cache ---------------------------------------------------------
 * A denied flow has no conntrack entry, so without this every packet of a
 * flood would be judged in full.  Keyed like conntrack (the canonical
 * 5-tuple) in maps of its own (a flood of denied flows must not evict
 * established ones); an entry counts only for the generation, hook and
 * direction it was judged in: any table change is a new generation. */
struct moat_deny_entry {
	__u32 generation;
	__u32 rule;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 egress_rule;
	__u32 ingress_rule;
	__u8 tier;
	__u8 dir;
	__u8 reason;  /* MOAT_DROP_* */
	__u8 hook;    /* MOAT_HOOK_* it was judged at */
	__u8 swapped; /* the packet's source was endpoint b of the key */
	__u8 egress_tier;
	__u8 ingress_tier;
	__u8 pad;
};
MOAT_ASSERT_SIZE(struct moat_deny_entry, 32);

/* Fragments: the first fragment's ports, so later fragments join its flow.
 * Keyed by the protocol the fragment header (IPv6) or the IP header (IPv4)
 * names, which later fragments repeat even when more extension headers sit
 * between the fragment header and the transport header. */
struct moat_frag4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};
MOAT_ASSERT_SIZE(struct moat_frag4_key, 12);

struct moat_frag6_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};
MOAT_ASSERT_SIZE(struct moat_frag6_key, 40);

struct moat_frag_val {
	__be16 sport;
	__be16 dport;
	__u8 verdict; /* the first fragment's verdict */
	__u8 l4proto; /* the first fragment's transport protocol */
	__u8 pad[2];
	__u64 seen_ns;
};
MOAT_ASSERT_SIZE(struct moat_frag_val, 16);

/* ---- events (perf event array) ----------------------------------------- */
#define MOAT_EV_DENY     1 /* a dropped packet */
#define MOAT_EV_NEW_FLOW 2 /* first packet of an allowed flow */
#define MOAT_EV_FLOW_END 3 /* FIN/RST seen or revoked */
#define MOAT_EV_SAMPLE   4 /* 1-in-N sample of other packets */
#define MOAT_EV_AUDIT    5 /* allowed, but an audit-mode rule would deny */

struct moat_event {
	__u64 ts_ns; /* bpf_ktime_get_ns() */
	__u32 ifindex;
	__u32 pkt_len;
	__u32 rule; /* deciding rule reference */
	__u32 src_identity;
	__u32 dst_identity;
	__u32 generation;
	__u32 seq;        /* per-CPU sequence number: gaps are losses */
	__u16 cap_len;    /* packet bytes appended after this header */
	__u8 type;        /* MOAT_EV_* */
	__u8 verdict;     /* MOAT_VERDICT_* */
	__u8 tier;        /* MOAT_TIER_* */
	__u8 hook;        /* MOAT_HOOK_* */
	__u8 dir;         /* MOAT_DIR_* the deciding check was for */
	__u8 drop_reason; /* MOAT_DROP_* */
	__u8 cpu;
	__u8 pad[3];
	__u64 flow_packets; /* flow end: totals of the connection */
	__u64 flow_bytes;
};
MOAT_ASSERT_SIZE(struct moat_event, 64);

/* Per-CPU event accounting, array indexed by MOAT_EVS_*. */
#define MOAT_EVS_EMITTED    0 /* bpf_perf_event_output succeeded */
#define MOAT_EVS_FAILED     1 /* bpf_perf_event_output failed (ring full) */
#define MOAT_EVS_SUPPRESSED 2 /* rate limit held a deny event back */
#define MOAT_EVS_MAX        4

/* ==== hardware pre-filter (xdp/prefilter.bpf.c) ===========================
 * A second, reduced XDP program meant for NIC offload (hw/nfp.json): hash
 * and array maps only, no per-CPU maps, counters by atomic add, no tail
 * calls, no LPM tries, entries of at most 64 bytes (key + value).  It drops
 * only what the full program would drop whatever its conntrack holds: new
 * and established traffic from outside-the-cluster CIDR regions to local
 * pods when, for that protocol group, every port is denied both ways (see
 * docs/offload.md).  Everything else passes on to the full program, which
 * stays authoritative.  These maps are never pinned (offloaded maps live on
 * the NIC and are rebuilt on attach), so they carry their own version.
 * Versioned separately from MOAT_ABI_VERSION: bump MOAT_PF_ABI_VERSION on
 * any change of this section. */
#define MOAT_PF_ABI_VERSION 1

#define MOAT_PF_MAP_CONFIG "moat_pf_config"
#define MOAT_PF_MAP_LENS   "moat_pf_lens" /* prefix lengths and masks to probe */
#define MOAT_PF_MAP_SRC4   "moat_pf_src4" /* (prefix length, prefix) -> source set */
#define MOAT_PF_MAP_SRC6   "moat_pf_src6"
#define MOAT_PF_MAP_DST4   "moat_pf_dst4" /* local pod address -> identity */
#define MOAT_PF_MAP_DST6   "moat_pf_dst6"
#define MOAT_PF_MAP_PAIRS  "moat_pf_pairs" /* (source set, identity) -> denied groups */
#define MOAT_PF_MAP_STATS  "moat_pf_stats"
#define MOAT_PF_MAP_EVENTS "moat_pf_events" /* perf event array: stays on the host */

/* Default sizes (max_entries); the loader scales them to a profile's
 * shared entry budget. */
#define MOAT_PF_MAX_SRC   1024 /* per family */
#define MOAT_PF_MAX_DST   1024 /* per family */
#define MOAT_PF_MAX_PAIRS 4096

/* Prefix lengths the source tables are probed with, longest first: an
 * exact-match hash per length instead of an LPM trie. */
#define MOAT_PF_MAX_LENS 8

#define MOAT_PF_CFG_ENFORCE (1u << 0) /* clear: count what would drop, pass it */
#define MOAT_PF_CFG_SAMPLE  (1u << 1) /* perf events for drops, 1 in sample_mask+1 */

struct moat_pf_config {
	__u32 flags;       /* MOAT_PF_CFG_* */
	__u32 sample_mask; /* sample when (random & sample_mask) == 0 */
	__u32 nlen4;       /* entries used in moat_pf_lens[0..7] */
	__u32 nlen6;       /* entries used in moat_pf_lens[8..15] */
};
MOAT_ASSERT_SIZE(struct moat_pf_config, 16);

/* moat_pf_lens: array of 2 * MOAT_PF_MAX_LENS; IPv4 lengths at 0.., IPv6
 * at MOAT_PF_MAX_LENS.., longest first.  The mask is stored, not computed:
 * a 128-bit mask from a length costs the NIC more code than a lookup. */
struct moat_pf_len {
	__u32 plen;
	__be32 mask[4]; /* IPv4: mask[0] */
};
MOAT_ASSERT_SIZE(struct moat_pf_len, 20);

struct moat_pf_src4_key {
	__u32 plen;
	__be32 addr; /* masked to plen */
};
MOAT_ASSERT_SIZE(struct moat_pf_src4_key, 8);

struct moat_pf_src6_key {
	__u32 plen;
	__u8 addr[16];
};
MOAT_ASSERT_SIZE(struct moat_pf_src6_key, 20);

struct moat_pf_src {
	__u32 set; /* source set: one per listed prefix, stable while listed */
};
MOAT_ASSERT_SIZE(struct moat_pf_src, 4);

struct moat_pf_dst4_key {
	__be32 addr;
};
MOAT_ASSERT_SIZE(struct moat_pf_dst4_key, 4);

struct moat_pf_dst6_key {
	__u8 addr[16];
};
MOAT_ASSERT_SIZE(struct moat_pf_dst6_key, 16);

struct moat_pf_dst {
	__u32 identity;
};
MOAT_ASSERT_SIZE(struct moat_pf_dst, 4);

/* Protocol groups: a pair denies a group only when every port of it is
 * denied in both directions (ingress from the set, egress to it). */
#define MOAT_PF_G_TCP   0
#define MOAT_PF_G_UDP   1
#define MOAT_PF_G_SCTP  2
#define MOAT_PF_G_OTHER 3 /* no ports: ICMP echo, other IP protocols */
#define MOAT_PF_G_MAX   4

struct moat_pf_pair_key {
	__u32 set;
	__u32 identity;
};
MOAT_ASSERT_SIZE(struct moat_pf_pair_key, 8);

/* packets and bytes are atomic counters: the program only adds to them;
 * user space carries them over when it rewrites an entry. */
struct moat_pf_pair {
	__u32 rule[MOAT_PF_G_MAX]; /* rule the full program names; 0 = varies by port */
	__u32 deny;                /* bit per MOAT_PF_G_* */
	__u32 pad;
	__u64 packets;
	__u64 bytes;
};
MOAT_ASSERT_SIZE(struct moat_pf_pair, 40);

/* Counters: array of __u64 indexed by MOAT_PF_STAT_*. */
#define MOAT_PF_STAT_PASS       0 /* handed to the full program */
#define MOAT_PF_STAT_DROP       1
#define MOAT_PF_STAT_DROP_BYTES 2
#define MOAT_PF_STAT_WOULD_DROP 3 /* observe-only: would have dropped */
#define MOAT_PF_STAT_SKIPPED    4 /* not judged here: not IP, fragments, ICMP errors, ... */
#define MOAT_PF_STAT_SAMPLED    5 /* perf events sent */
#define MOAT_PF_STAT_MAX        8

struct moat_pf_event {
	__u32 rule;
	__u32 identity; /* destination pod */
	__u32 set;      /* source set */
	__u32 pkt_len;
	__u8 family;
	__u8 proto;
	__u8 dropped; /* 0: observe-only */
	__u8 pad;
	__u8 saddr[16]; /* IPv4: first 4 bytes */
	__u8 daddr[16];
	__u32 pad2;
};
MOAT_ASSERT_SIZE(struct moat_pf_event, 56);

#endif /* MOAT_ABI_H */
