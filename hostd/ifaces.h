/* SPDX-License-Identifier: Apache-2.0 */
/* Local pod interfaces: found from the pods' IPs (the host route to each pod
 * IP names its host-side veth), their pod-side peers located in the pod's
 * network namespace, and the enforcer attached to both.  libnl-route caches
 * follow link and route changes. */
#ifndef MOAT_IFACES_H
#define MOAT_IFACES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "dp.h"
#include "compile.h"
#include "hwplan.h"

struct moat_ifaces;

struct moat_ifaces_opts {
	enum moat_mode mode;        /* attach mode for pod veths */
	const char *netns_dirs;     /* colon-separated; default /run/netns:/var/run/netns */
	const char *uplink;         /* attach moat_uplink here (NULL: none) */
	struct moat_hwplan *hwplan; /* attach plans (issue 6); NULL: moat_dp_attach */
	const char *veth_prefixes;  /* comma-separated host-side veth name prefixes to
				       * attach as soon as they appear (no start-up
				       * window); NULL: attach when the pod is known */
};

struct moat_iface_status {
	const char *name; /* link pin name */
	const char *pod;  /* ns/name, or NULL for the uplink */
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
int moat_ifaces_status(struct moat_ifaces *fi, int (*fn)(const struct moat_iface_status *s, void *arg),
		       void *arg);

/* ---- netlink input without sockets (tests, fuzzing) --------------------------
 * The daemon's link and route caches are kept by libnl's cache manager: each
 * notification is parsed by libnl into an object and included in its cache
 * (RTM_NEW*: added or replacing the object with the same key; RTM_DEL*:
 * removed).  moat_ifaces_input() does the same with the messages of a buffer,
 * for an interface set made by moat_ifaces_new_offline() (empty caches, no
 * sockets: nothing is asked of the kernel, nothing attached). */
struct moat_ifaces_nlstats {
	uint64_t msgs;      /* whole messages seen */
	uint64_t applied;   /* a link or route included in its cache */
	uint64_t other;     /* parsed, of a kind not followed (addresses, neighbours) */
	uint64_t unknown;   /* a type libnl-route does not know */
	uint64_t bad;       /* libnl refused to parse it */
	uint64_t refused;   /* skipped before libnl: lengths it would follow out of the
				       * message or forever (RTA_MULTIPATH next hops) */
	uint64_t truncated; /* a buffer ended inside a message (the rest ignored) */
};
int moat_ifaces_new_offline(const struct moat_ifaces_opts *o, struct moat_ifaces **ret);
int moat_ifaces_input(struct moat_ifaces *fi, const void *buf, size_t len);
void moat_ifaces_nlstats(const struct moat_ifaces *fi, struct moat_ifaces_nlstats *st);
/* The interface the host route to a goes out of (0: none): a pod's host veth. */
int moat_ifaces_route_oif(struct moat_ifaces *fi, const struct moat_addr *a);
/* fn for every veth link whose name veth_prefixes matches, in cache order,
 * as moat_ifaces_attach() finds pods' veths before their pods are known. */
/* The caches themselves (libnl's), for tests to look into. */
struct nl_cache;
struct nl_cache *moat_ifaces_link_cache(struct moat_ifaces *fi);
struct nl_cache *moat_ifaces_route_cache(struct moat_ifaces *fi);
void moat_ifaces_prefix_veths(struct moat_ifaces *fi, void (*fn)(int ifindex, const char *name, void *arg),
			      void *arg);

#endif
