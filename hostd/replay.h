/* SPDX-License-Identifier: Apache-2.0 */
/* Replay (issue 7 point 3): archived flow records through a candidate
 * policy set, compiled exactly as moatd would compile it (a fresh compiler,
 * moat_srcdir_load_once, one flush), each flow explained by its addresses,
 * protocol and port (moat_compiler_explain) on the node that recorded it.
 * The result lists the flows whose verdict would change, grouped by
 * namespace and rule.
 *
 * The candidate directory holds the complete object set, as moatd
 * --manifests would read it: Nodes, Namespaces, Pods (with their IPs) and
 * the policies.  Addresses are resolved by the candidate's pods; a pod
 * gone from it is "the world" there. */
#ifndef MOAT_REPLAY_H
#define MOAT_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define MOAT_REPLAY_MAX_FLOWS 1000000 /* distinct flows read */
#define MOAT_REPLAY_MAX_NODES 64
#define MOAT_REPLAY_EXAMPLES  20 /* per group, distinct (src, dst, proto, port) */

struct moat_replay_opts {
	const char *archive;  /* an archive directory, a partition, a segment or a query result */
	const char *policies; /* the candidate manifest directory */
	const char *node;     /* only flows of this node (NULL: every node in the archive) */
};

/* 0 and *out:
 *   {archive, policies, nodes: [..], files, bad_files, flows, replayed,
 *    unchanged, skipped: {reason: n}, load_errors: [..],
 *    newly_denied: [{namespace, rule, was, flows, examples: [{src, dst, proto,
 *    port, flows, was}]}], newly_allowed: [...], newly_audited: [...],
 *    no_longer_audited: [...]}
 * or -errno and err. */
int moat_replay(const struct moat_replay_opts *o, json_t **out, char *err, size_t errlen);

#endif
