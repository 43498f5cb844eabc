/* SPDX-License-Identifier: Apache-2.0 */
/* moatd's hardware pre-filter: owns the pre-filter the attach planner put
 * on the NIC (offload/plan.h, offload/pf.h), keeps its tables in step with
 * every generation (hostd/prefilter.h: half before the full program's
 * switch, half after it), follows the daemon's settings, reads its sampled
 * drops, and reports it all for /v1/status.
 *
 * Without a pre-filter every call is a no-op.  Calls come from moatd's main
 * loop and API thread under moatd's lock. */
#ifndef MOAT_PFMGR_H
#define MOAT_PFMGR_H

#include <stdbool.h>
#include <stdio.h>
#include <jansson.h>
#include "compile.h"
#include "dp.h"
#include "pf.h"

struct moat_pfmgr;

struct moat_pfmgr_opts {
	bool enforce;       /* clear: count what would drop, pass it */
	bool revoke;        /* clear: nothing is placed (docs/offload.md) */
	__u32 sample_shift; /* sample 1 in 2^shift drops; 0 = every drop */
	bool no_samples;
};

int moat_pfmgr_new(const struct moat_pfmgr_opts *o, struct moat_pfmgr **ret);
void moat_pfmgr_free(struct moat_pfmgr *m);

/* Takes a loaded (and, on a NIC, hardware-attached) pre-filter for ifname
 * and writes its tables from the compiler's live generation.  A pre-filter
 * held before is closed.  On error pf is closed too. */
int moat_pfmgr_take(struct moat_pfmgr *m, struct moat_pf *pf, const char *ifname,
		    const struct moat_compiler *c, char *err, size_t errlen);
/* Detaches and closes it (interface gone, plan changed). */
void moat_pfmgr_drop(struct moat_pfmgr *m, const char *why);
bool moat_pfmgr_active(const struct moat_pfmgr *m);
const char *moat_pfmgr_ifname(const struct moat_pfmgr *m);

/* Around a generation: after moat_compiler_flush succeeded and before the
 * transaction commits; after it committed (waits for the grace period).
 * If the commit failed, call moat_pfmgr_resync() instead of _after. */
void moat_pfmgr_before(struct moat_pfmgr *m, const struct moat_compiler *c);
void moat_pfmgr_after(struct moat_pfmgr *m, struct moat_dp *dp);
void moat_pfmgr_resync(struct moat_pfmgr *m, const struct moat_compiler *c);

/* New settings (SIGHUP); rebuilds the tables if revocation changed. */
void moat_pfmgr_configure(struct moat_pfmgr *m, const struct moat_pfmgr_opts *o,
			  const struct moat_compiler *c);
/* Reads sampled drops; call from the main loop's timer. */
void moat_pfmgr_poll(struct moat_pfmgr *m);

/* {interface, offloaded, tables: {...}, counters: {...}, last_update,
 * samples: [...]} or {active: false, why}. */
json_t *moat_pfmgr_status(const struct moat_pfmgr *m);
/* The status JSON above as text, for `moatctl status`. */
void moat_pfmgr_status_print(json_t *st, FILE *out);
/* Errors since the last call (for moatd's recent errors), or NULL; caller
 * frees. */
char *moat_pfmgr_take_error(struct moat_pfmgr *m);

#endif
