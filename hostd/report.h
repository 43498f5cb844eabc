/* SPDX-License-Identifier: Apache-2.0 */
#ifndef MOAT_REPORT_H
#define MOAT_REPORT_H

#include <jansson.h>
#include "compile.h"
#include "events.h"

/* The namespace matrix: policy (compiled tables) beside observed flows.
 * Cells where neither side is visible under f (namespace, tenancy) are left
 * out.  describe() names a rule reference, malloc'd (may be NULL). */
json_t *moat_report_build(const struct moat_compiler *c, const struct moat_flow *flows, size_t nflows,
			  const struct moat_ev_filter *f, char *(*describe)(void *, __u32), void *darg);

#endif
