/* SPDX-License-Identifier: Apache-2.0 */
/* The pre-filter's tables from the compiled policy (xdp/prefilter.bpf.c).
 *
 * What can go there: a CIDR region that holds no cluster address (no pod,
 * node or Service IP inside the prefix) and a local pod identity, for a
 * protocol group (TCP, UDP, SCTP, other) whose every port the compiled
 * policy denies in both directions: ingress from the region and egress to
 * it.  Then no allowed flow and no reply of one can exist between them, so
 * the stateless drop equals the full program's verdict whatever its
 * conntrack holds (with revocation on: older flows are judged again).
 * Prefixes come in trees (a listed prefix and every listed prefix inside
 * it) and a tree goes in whole or not at all, or the longest-prefix match
 * over the hashes would differ from the full program's.
 *
 * Updates are incremental and ordered so that every intermediate state
 * drops only what both the old and the new generation drop:
 *   before the full program's switch: new prefixes (and lengths) appear,
 *     changed destinations go, each pair holds old AND new;
 *   after the switch and a grace period: pairs take the new value, new
 *     destinations appear, old prefixes and lengths go.
 * A failed write disables the pre-filter (no prefix lengths probed: it
 * passes everything) until the next full rewrite; if even that write fails
 * the caller must detach it (stats.stuck). */
#ifndef MOAT_PREFILTER_H
#define MOAT_PREFILTER_H

#include <stdbool.h>
#include <stdint.h>
#include "compile.h"
#include "pf.h"

struct moat_pfc;

struct moat_pfc_limits {
	__u32 max_src; /* source prefixes per family */
	__u32 max_dst; /* local pod addresses per family */
	__u32 max_pairs;
	__u32 max_lens; /* prefix lengths per family, <= MOAT_PF_MAX_LENS */
};

struct moat_pfc_stats {
	__u32 regions;            /* CIDR regions the policy lists */
	__u32 regions_in_cluster; /* hold a cluster address: not for the NIC */
	__u32 trees;              /* prefix trees with something to drop */
	__u32 trees_placed;
	__u32 trees_no_room;         /* left to the full program: budget */
	__u32 src[2], dst[2], pairs; /* entries placed ([0] IPv4, [1] IPv6) */
	__u32 lens[2];
	__u32 pairs_varying_rule; /* deny rule differs by port: events name none */
	__u64 writes;             /* map writes of the last update */
	__u64 build_ns, apply_ns;
	bool disabled;       /* a write failed: passing everything */
	bool stuck;          /* could not even disable it: detach it */
	char why_empty[160]; /* why nothing is placed, if so */
};

int moat_pfc_new(const struct moat_pfc_limits *lim, struct moat_pfc **ret);
void moat_pfc_free(struct moat_pfc *p);

/* Computes the wanted tables from the compiler: next = true between
 * moat_compiler_flush and commit (the generation about to go live). */
int moat_pfc_build(struct moat_pfc *p, const struct moat_compiler *c, bool next);
/* Wants nothing placed (the pre-filter passes everything), saying why. */
void moat_pfc_build_empty(struct moat_pfc *p, const char *why);

/* Before the full program switches generation. */
int moat_pfc_apply_before(struct moat_pfc *p, struct moat_pf *pf);
/* After the switch and an RCU grace period. */
int moat_pfc_apply_after(struct moat_pfc *p, struct moat_pf *pf);
/* Both at once: only when the full program's tables do not change. */
int moat_pfc_apply(struct moat_pfc *p, struct moat_pf *pf);
/* A fresh pre-filter (just loaded): forget what was written before. */
void moat_pfc_reset(struct moat_pfc *p);

/* MOAT_PF_CFG_* flags and the sampling mask, written at once. */
int moat_pfc_set_flags(struct moat_pfc *p, struct moat_pf *pf, __u32 flags, __u32 sample_mask);

void moat_pfc_get_stats(const struct moat_pfc *p, struct moat_pfc_stats *st);

/* Iterates the placed pairs (for status and tests). */
struct moat_pfc_pair_view {
	__u32 set, identity;
	int family;
	__u8 plen;
	__u8 addr[16]; /* the source prefix */
	__u32 deny;    /* bit per MOAT_PF_G_* */
	__u32 rule[MOAT_PF_G_MAX];
};
int moat_pfc_pairs(const struct moat_pfc *p, int (*fn)(const struct moat_pfc_pair_view *v, void *arg),
		   void *arg);

#endif
