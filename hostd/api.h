/* SPDX-License-Identifier: Apache-2.0 */
#ifndef MOAT_API_H
#define MOAT_API_H

struct moatd;
struct moat_api;

/* Serves the control API on a unix socket of the given mode. */
int moat_api_start(struct moatd *d, const char *path, unsigned mode, struct moat_api **ret);
void moat_api_stop(struct moat_api *api);

#endif
