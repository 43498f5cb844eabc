/* SPDX-License-Identifier: Apache-2.0 */
/* moatd's Kubernetes mode: the list/watch client (k8s.h) feeding the
 * compiler.  Runs in the main loop, under the daemon lock:
 *
 *   - UPSERT: moat_decode() then moat_compiler_apply().  An object that does
 *     not decode keeps its last good version in the compiler; the error
 *     (naming the object and field) goes to the error callback and the status
 *     until the object decodes again or is deleted.
 *   - DELETE: moat_compiler_delete() with the object's key.
 *   - ERROR: the error callback ("Kubernetes API: ...").
 *   - SYNCED: every kind has been listed once.  moatd holds every
 *     generation until then, and also while a required kind (namespaces,
 *     nodes, pods, services, networkpolicies) has never been listed (RBAC
 *     refused, for instance): compiling without pods or policies would
 *     throw away what is pinned.  Optional kinds (the CRD groups) that the
 *     server does not serve count as empty.
 * While the API server is unreachable nothing changes: the last generation
 * stays enforced. */
#ifndef MOAT_K8S_SOURCE_H
#define MOAT_K8S_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "compile.h"
#include "k8s.h"
#include "srcdir.h"

struct moat_k8s_source;

/* Starts the client (o: where and how; see k8s.h).  0 or -errno with text. */
int moat_k8s_source_start(const struct moat_k8s_opts *o, struct moat_k8s_source **ret, char *err,
			  size_t errlen);
void moat_k8s_source_stop(struct moat_k8s_source *s);
int moat_k8s_source_fd(const struct moat_k8s_source *s);
/* Main loop, daemon lock held: hands every waiting change to c; problems
 * go to err(arg, msg) (moatd_error).  Returns how many changed c. */
int moat_k8s_source_drain(struct moat_k8s_source *s, struct moat_compiler *c, moat_src_err_fn err, void *arg);
/* Every object is delivered again (a datapath update failed and the
 * compiler rolled back to what is enforced: the retry needs them). */
void moat_k8s_source_resync(struct moat_k8s_source *s);
/* True once the first generation may be compiled (see above); when false,
 * why says what is awaited. */
bool moat_k8s_source_ready(struct moat_k8s_source *s, char *why, size_t whylen);
/* For /v1/status: the client's state per kind with "connected" and
 * "lastEvent"; detail adds errors that name objects. */
json_t *moat_k8s_source_status(struct moat_k8s_source *s, bool detail);
/* Prometheus text (malloc'd). */
char *moat_k8s_source_metrics(struct moat_k8s_source *s);
/* The namespaces the API has now, sorted (any thread); free each and the
 * array.  Returns the count. */
size_t moat_k8s_source_namespaces(struct moat_k8s_source *s, char ***names);
/* The connection settings (for TokenReview and SubjectAccessReview). */
const struct moat_k8s_conf *moat_k8s_source_conf(const struct moat_k8s_source *s);

#endif
