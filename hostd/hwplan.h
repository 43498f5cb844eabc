/* SPDX-License-Identifier: Apache-2.0 */
/* moatd's attach plans (issue 6): for each interface it attaches, the probe
 * (driver, XDP features), the NIC profile that applies (hw/DRIVER.json),
 * the fit check of the pre-filter it would offload (the object embedded in
 * moatd, checked once per profile), the plan (offload/plan.h) carried out
 * with its fallbacks, and a hardware pre-filter handed to the pre-filter
 * manager (hostd/pfmgr.h).  The reasons are kept per interface for
 * /v1/status and `moatctl status`. */
#ifndef MOAT_HWPLAN_H
#define MOAT_HWPLAN_H

#include <stdbool.h>
#include "compile.h"
#include "dp.h"
#include "plan.h"

struct moat_hwplan;
struct moat_pfmgr;

struct moat_iface_plan {
	bool valid;
	enum moat_plan_kind kind; /* what took */
	char driver[32];
	char profile[64]; /* profile file used */
	__u64 xdp_features;
	bool have_features;
	char why[MOAT_PLAN_KIND_MAX][200]; /* why each better kind did not take */
};

/* dir: the NIC profiles; pfmgr (may be NULL) takes hardware pre-filters;
 * prefilter: whether one is wanted at all (not with --no-revoke). */
int moat_hwplan_new(const char *dir, struct moat_pfmgr *pfmgr, bool prefilter, struct moat_hwplan **ret);
void moat_hwplan_free(struct moat_hwplan *hp);
void moat_hwplan_set_prefilter(struct moat_hwplan *hp, bool prefilter);
/* The default profile directory: /usr/share/moat/hw, else hw/ of the
 * source tree moatd was built in (a development tree); caller frees. */
char *moat_hwplan_default_dir(void);

/* Attaches req per plan (instead of moat_dp_attach); info as there. */
int moat_hwplan_attach(struct moat_hwplan *hp, struct moat_dp *dp, const struct moat_attach_req *req,
		       const struct moat_compiler *c, const char *ifname, struct moat_attach_info *info,
		       struct moat_iface_plan *plan);
/* The interface of an attachment went away: its pre-filter goes too. */
void moat_hwplan_detached(struct moat_hwplan *hp, const char *ifname);

const char *moat_iface_plan_kind(const struct moat_iface_plan *p);

#endif
