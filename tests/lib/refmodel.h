/* SPDX-License-Identifier: Apache-2.0 */
/* An independent reference model of the verdict: the semantics of
 * NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy and
 * ClusterNetworkPolicy evaluated directly from the objects, the way the
 * specifications read (docs/policy.md, shared/conformance/anp-semantics.md).
 * It shares no code with the compiler; tests compare the two. */
#ifndef MOAT_REFMODEL_H
#define MOAT_REFMODEL_H

#include <stdbool.h>
#include <stdint.h>
#include "model.h"

struct ref_world {
	size_t n;
	const struct moat_object **objs; /* not owned */
	const char *node;                /* local node (for the local-node exemption) */
	bool allow_local_node;
};

struct ref_result {
	int verdict; /* MOAT_VERDICT_ALLOW / _DENY / _AUDIT */
	int dir;     /* which side decided (MOAT_DIR_*) */
	int tier;    /* MOAT_TIER_* of the deciding side */
};

/* The verdict for a new flow src -> dst (addresses), proto/port. */
void ref_judge(const struct ref_world *w, const struct moat_addr *src, const struct moat_addr *dst,
	       uint8_t proto, uint16_t port, struct ref_result *r);

#endif
