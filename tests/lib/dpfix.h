/* SPDX-License-Identifier: Apache-2.0 */
/* Datapath fixtures for BPF_PROG_TEST_RUN tests and benchmarks.
 *
 * fix_open() loads a private datapath (nothing pinned, small tables so
 * resets are fast).  The fix_* table helpers queue writes into one open
 * transaction; fix_commit() publishes them as one generation and waits
 * until both table slots hold it (fix_run*() commit pending writes first).
 * fix_reset() empties tables, conntrack, fragments and counters and
 * restores the default configuration, so tests of a group can share one
 * loaded datapath (verifying the programs takes seconds).
 *
 * Devices: XDP test runs need ingress_ifindex to name a device of the
 * current network namespace.  fix_private_netns() moves the calling process
 * into a new network namespace with a veth pair, so tests neither see nor
 * touch the host's interfaces.
 *
 * Identities, rule references and addresses are what the tests choose;
 * addresses are text ("10.0.0.1", "fd00::1"), NULL for none.
 */
#ifndef MOAT_TEST_DPFIX_H
#define MOAT_TEST_DPFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include "moat/abi.h"
#include "dp.h"

struct pkt;

#define FIX_MAX_IDENTITIES 1024 /* identities are < this */
#define FIX_MAX_RULES      1024 /* rule references are < this */
#define FIX_MAX_SUBJECTS   64   /* subjects written per generation */

struct dpfix {
	struct moat_dp *dp;
	struct moat_tx *tx; /* pending table writes, or NULL */
	int prog_fd[MOAT_HOOK_MAX];
	int ncpu;
	/* the subject table holds both directions in one value: a copy of
	 * what was written, so one direction can be set at a time */
	struct {
		__u32 identity;
		struct moat_subject s;
	} subj[FIX_MAX_SUBJECTS];
	int nsubj;
	/* last test run */
	__u32 last_duration_ns;
	__u32 last_out_len;
	__u8 last_out[4096 + 64];
};

/* ---- set-up ------------------------------------------------------------ */
/* 0, -EPERM when not root, or the loader's error (BPF unavailable). */
int fix_open(struct dpfix **ret);
void fix_close(struct dpfix *f);
/* Empties tables (as a new generation), conntrack, fragment maps, all
 * counters; default configuration with MOAT_CFG_ENFORCE,
 * REVOKE_ESTABLISHED and ALLOW_LOCAL_NODE set. */
int fix_reset(struct dpfix *f);

/* Enters a new network namespace holding lo and the veth pair
 * names[0] <-> names[1]; their ifindexes in ifindex[0], ifindex[1]. */
int fix_private_netns(const char *const names[2], int ifindex[2]);

/* ---- tables (queued; see fix_commit) ----------------------------------- */
/* A pod: ipcache entries (class POD, MOAT_IP_F_LOCAL if local). */
int fix_pod(struct dpfix *f, __u32 identity, const char *ip4, const char *ip6, bool local);
/* Any ipcache entry: class MOAT_CLASS_*, flags MOAT_IP_F_*, region. */
int fix_ip(struct dpfix *f, const char *ip, __u32 identity, __u8 cls, __u8 flags, __u32 region);
/* The host-side veth of a local pod (anti-spoofing addresses). */
int fix_endpoint(struct dpfix *f, int ifindex, __u32 identity, const char *ip4, const char *ip6);
/* the same, with the CIDR regions of its addresses (what the compiler writes) */
int fix_endpoint_regions(struct dpfix *f, int ifindex, __u32 identity, const char *ip4, const char *ip6,
			 __u32 region4, __u32 region6);
int fix_endpoint_del(struct dpfix *f, int ifindex);
/* Subject flags (MOAT_SUBJ_*) and isolating rule for one direction. */
int fix_subject(struct dpfix *f, __u32 identity, __u32 dir, __u32 flags, __u32 isolate_rule);
/* The rule named when the audit shadow isolates (MOAT_SUBJ_AUDIT_ISOLATED). */
int fix_subject_audit(struct dpfix *f, __u32 identity, __u32 dir, __u32 audit_isolate_rule);
/* A decision-table row.  kflags: MOAT_PK_NET, MOAT_PK_PORTCLASS,
 * MOAT_PK_AUDIT (MOAT_PK_EGRESS follows dir). */
int fix_rule(struct dpfix *f, __u32 subject, __u32 dir, __u32 peer, __u8 proto, __u16 port, __u8 kflags,
	     struct moat_policy_val val);
int fix_rule_del(struct dpfix *f, __u32 subject, __u32 dir, __u32 peer, __u8 proto, __u16 port, __u8 kflags);
/* CIDR regions: "8.8.0.0/16" -> region. */
int fix_cidr4(struct dpfix *f, const char *prefix, __u32 region);
int fix_cidr6(struct dpfix *f, const char *prefix, __u32 region);
/* A port class: ports first..first+2^(16-prefix_bits)-1 of (subject, dir,
 * proto) are class cls.  first must be aligned to the prefix. */
int fix_port_class(struct dpfix *f, __u32 subject, __u32 dir, __u8 proto, __u16 first, __u32 prefix_bits,
		   __u32 cls);

/* Decision values: one tier each; combine by assigning fields. */
struct moat_policy_val fix_pv_none(void);
struct moat_policy_val fix_pv_admin(__u32 rank, __u8 action, __u32 rule);
struct moat_policy_val fix_pv_netpol(__u32 rule);
struct moat_policy_val fix_pv_baseline(__u32 rank, __u8 action, __u32 rule);

/* Publishes the queued writes as one generation and settles both slots;
 * the new live generation in *gen (may be NULL).  No-op without writes. */
int fix_commit(struct dpfix *f, __u32 *gen);

/* ---- running packets --------------------------------------------------- */
/* Runs one packet through a hook's program; returns the XDP action or a
 * negative errno.  -EBADMSG if the program changed the packet (moat never
 * rewrites).  Frames shorter than Ethernet are run as a linear part of
 * that length followed by a fragment of padding (needs kernel >= 6.18). */
int fix_run(struct dpfix *f, int hook, int ifindex, const struct pkt *p);
int fix_run_data(struct dpfix *f, int hook, int ifindex, const void *data, size_t len);
/* Benchmarks: repeat runs, average duration in *ns_per_run. */
int fix_run_repeat(struct dpfix *f, int hook, int ifindex, const void *data, size_t len, __u32 repeat,
		   __u32 *ns_per_run);
/* Intent names. */
#define fix_from_pod(f, ifindex, p) fix_run(f, MOAT_HOOK_FROM_POD, ifindex, p)
#define fix_to_pod(f, p)            fix_run(f, MOAT_HOOK_TO_POD, 0, p)
#define fix_uplink(f, p)            fix_run(f, MOAT_HOOK_UPLINK, 0, p)

/* ---- counters ------------------------------------------------------------- */
/* Packets of a MOAT_STAT_* index, summed over CPUs (UINT64_MAX on error). */
__u64 fix_stat(struct dpfix *f, __u32 idx);
/* Events the program tried to output (emitted + failed: no reader here). */
__u64 fix_events_tried(struct dpfix *f);
/* The sampling of a subject's namespace (MOAT_SUBJ_SAMPLE, 1 in n). */
int fix_subject_sample(struct dpfix *f, __u32 identity, __u32 n);
__u64 fix_stat_bytes(struct dpfix *f, __u32 idx);
/* All MOAT_STAT_MAX packet counters. */
int fix_stats(struct dpfix *f, __u64 packets[MOAT_STAT_MAX]);
__u64 fix_rule_packets(struct dpfix *f, __u32 rule);
__u64 fix_rule_bytes(struct dpfix *f, __u32 rule);
/* Rule references < FIX_MAX_RULES with a non-zero packet count. */
int fix_rules_counted(struct dpfix *f, __u32 *rules, int max);

/* ---- conntrack and fragments ---------------------------------------------- */
/* The entry of the flow between two endpoints, either direction
 * (canonical key as the datapath builds it).  ICMP echo: port = id. */
int fix_ct_get(struct dpfix *f, __u8 proto, const char *saddr, __u16 sport, const char *daddr, __u16 dport,
	       struct moat_ct_entry *e);
int fix_ct_put(struct dpfix *f, __u8 proto, const char *saddr, __u16 sport, const char *daddr, __u16 dport,
	       const struct moat_ct_entry *e);
/* Entries in both CT maps. */
int fix_ct_count(struct dpfix *f);
int fix_frag_count(struct dpfix *f);

#endif
