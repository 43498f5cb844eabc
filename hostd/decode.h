/* SPDX-License-Identifier: Apache-2.0 */
/* Kubernetes objects (jansson values, see manifest.h) into the object model
 * (model.h), validated the way the API server and the CRDs validate them.
 *
 * Kinds read: Namespace, Pod, Node, Service (v1); NetworkPolicy
 * (networking.k8s.io/v1); AdminNetworkPolicy, BaselineAdminNetworkPolicy
 * (policy.networking.k8s.io/v1alpha1); ClusterNetworkPolicy
 * (policy.networking.k8s.io/v1alpha2).  Any other kind is skipped, and so is
 * one of these kind names in an unrelated API group (a Knative "Service", a
 * Calico "NetworkPolicy").  A kind of ours with a version we do not read
 * (networking.k8s.io/v1beta1, extensions/v1beta1 NetworkPolicy, v1 "Pod" in
 * group "" with version v2, ClusterNetworkPolicy v1alpha1...) is an error.
 *
 * Unknown fields are ignored (forward compatibility), except where the API
 * demands "exactly one of" (ANP/CNP peers fail closed, see decode.c) and
 * where a field belongs to the sibling API (ports in a ClusterNetworkPolicy,
 * protocols in an (Baseline)AdminNetworkPolicy, priority in a BANP).
 *
 * Error text: "SOURCE: Kind NS/NAME: FIELD.PATH: problem", e.g.
 *   y/allow-db.yaml: NetworkPolicy y/allow-db: spec.ingress[0].ports[1].endPort: 70000 is not a port
 * Cluster-scoped objects show just NAME; without a usable name only Kind;
 * without a source the "SOURCE: " part is left out.
 */
#ifndef MOAT_DECODE_H
#define MOAT_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "model.h"

/* Expanded peers per policy: an ANP "networks" peer becomes one model peer
 * per CIDR, so 100 rules x 100 peers x 25 CIDRs would be legal upstream.  Real
 * policies are far below this; it bounds what one object can allocate. */
#define MOAT_MAX_POLICY_PEERS 10000

/* Decodes doc.  0 with *ret set: an object of ours (free with
 * moat_object_free).  0 with *ret NULL: a kind we do not read.  -EINVAL with
 * a message in err; -ENOMEM. */
int moat_decode(const json_t *doc, const char *source, struct moat_object **ret, char *err, size_t errlen);

/* "Kind/ns/name" for namespaced objects, "Kind/name" for cluster-scoped ones
 * (Kind as written: o->api_kind).  malloc'd; NULL on OOM. */
char *moat_object_key(const struct moat_object *o);

/* A label selector in kubectl's text form: "app=web,tier!=db,env in (a,b),
 * team notin (x),gpu,!legacy" (= and == are the same).  0 with *out, or
 * -EINVAL with a message in err. */
int moat_selector_parse(const char *text, struct moat_selector **out, char *err, size_t errlen);

/* Kubernetes name and label syntax, as the API server checks it. */
bool moat_valid_dns_label(const char *s);     /* RFC 1123 label, <= 63 */
bool moat_valid_dns_subdomain(const char *s); /* RFC 1123 subdomain, <= 253 */
bool moat_valid_dns1035_label(const char *s); /* Service names */
bool moat_valid_label_key(const char *s);     /* [prefix/]name */
bool moat_valid_label_value(const char *s);   /* may be empty */
bool moat_valid_port_name(const char *s);     /* IANA_SVC_NAME: <= 15, a letter, no "--" */

#endif
