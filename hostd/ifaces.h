/* SPDX-License-Identifier: Apache-2.0 */
/* Local pod interfaces: found from the pods' IPs (the host route to each pod
 * IP names its host-side veth), their pod-side peers located in the pod's
 * network namespace, and the enforcer attached to both.  libnl-route caches
 * follow link and route changes. */
#ifndef MOAT_IFACES_H
#define MOAT_IFACES_H

#include <stdbool.h>
#include "dp.h"
#include "compile.h"
#include "hwplan.h"

struct moat_ifaces;

struct moat_ifaces_opts {
	enum moat_mode mode;          /* attach mode for pod veths */
	const char *netns_dirs;       /* colon-separated; default /run/netns:/var/run/netns */
	const char *uplink;           /* attach moat_uplink here (NULL: none) */
	struct moat_hwplan *hwplan;   /* attach plans (issue 6); NULL: moat_dp_attach */
	const char *veth_prefixes;    /* comma-separated host-side veth name prefixes to
				       * attach as soon as they appear (no start-up
				       * window); NULL: attach when the pod is known */
};

struct moat_iface_status {
	const char *name;             /* link pin name */
	const char *pod;              /* ns/name, or NULL for the uplink */
	int hook;
	int ifindex;
	enum moat_mode mode;
	char why[MOAT_MODE_MAX][160];
	bool attached;
	char error[160];
	const struct moat_iface_plan *plan; /* attach plan and its reasons (issue 6) */
};

int moat_ifaces_new(struct moat_dp *dp, const struct moat_ifaces_opts *o, struct moat_ifaces **ret);
void moat_ifaces_free(struct moat_ifaces *fi);
/* Netlink socket to poll; call moat_ifaces_ready() when readable. */
int moat_ifaces_fd(const struct moat_ifaces *fi);
/* Processes netlink notifications; returns true if anything changed. */
bool moat_ifaces_ready(struct moat_ifaces *fi);
/* Times netlink notifications were lost (receive buffer overrun, ENOBUFS)
 * and interfaces and routes were re-read from the kernel instead. */
uint64_t moat_ifaces_resyncs(const struct moat_ifaces *fi);
/* Resolves local pods to interfaces and records them in the compiler
 * (moat_compiler_set_endpoint).  Returns how many endpoints changed. */
int moat_ifaces_resolve(struct moat_ifaces *fi, struct moat_compiler *c);
/* Attaches the enforcer to every resolved interface not attached yet and
 * detaches what belongs to pods that are gone.  Call after the tables that
 * know the endpoints are live. */
int moat_ifaces_attach(struct moat_ifaces *fi, struct moat_compiler *c);
/* Forgets what is attached, so that the next moat_ifaces_attach() attaches
 * every interface again (an existing link just gets its program again):
 * after pins were removed from outside (moat_dp_repin). */
void moat_ifaces_reattach(struct moat_ifaces *fi);
int moat_ifaces_status(struct moat_ifaces *fi,
		       int (*fn)(const struct moat_iface_status *s, void *arg), void *arg);

#endif
