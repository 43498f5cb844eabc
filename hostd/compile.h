/* SPDX-License-Identifier: Apache-2.0 */
/* The policy compiler: Kubernetes objects in, datapath tables out.
 *
 * Pods with the same namespace, labels and named container ports share an
 * identity.  Every policy is resolved into per-subject decision entries with
 * all precedence (tiers, priorities, rule order, Pass) settled here, each
 * entry naming the rule it came from.  Changes are incremental: an object
 * change marks what it affects, and a flush recompiles only those subjects
 * and emits the difference as one transaction (one new generation).
 */
#ifndef MOAT_COMPILE_H
#define MOAT_COMPILE_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "model.h"
#include "dp.h"

struct moat_compiler;

struct moat_compiler_opts {
	const char *node;      /* this node: its pods are local */
	__u32 cap[MOAT_T_MAX]; /* table capacities; 0 = unbounded */
	__u32 max_identities;  /* 0 = MOAT_MAX_IDENTITIES */
	__u32 max_rules;       /* 0 = MOAT_MAX_RULES */
};

int moat_compiler_new(const struct moat_compiler_opts *opts, struct moat_compiler **ret);
void moat_compiler_free(struct moat_compiler *c);

/* Adds or replaces an object; takes ownership of obj (also on error). */
int moat_compiler_apply(struct moat_compiler *c, struct moat_object *obj);
/* Removes an object by its key (moat_object_key form, "Kind/ns/name" or
 * "Kind/name"); -ENOENT if unknown. */
int moat_compiler_delete(struct moat_compiler *c, const char *key);
/* The host-side interface of a local pod (0: none yet). */
int moat_compiler_set_endpoint(struct moat_compiler *c, const char *ns, const char *pod, int ifindex);
bool moat_compiler_dirty(const struct moat_compiler *c);
/* What explain assumes of the datapath's own-node exemption (default on). */
void moat_compiler_set_allow_local_node(struct moat_compiler *c, bool on);

struct moat_flush_stats {
	__u32 entries[MOAT_T_MAX]; /* table sizes after this flush */
	__u32 subjects_compiled;
	__u32 identities;
	__u32 rules;
	size_t ops;  /* puts + deletes emitted */
	uint64_t ns; /* time spent */
};

/* Compiles what changed and appends the difference to tx.  -ENOSPC when a
 * table would overflow: err names the table and the counts, nothing is
 * appended, and the caller must call moat_compiler_abort(). */
int moat_compiler_flush(struct moat_compiler *c, struct moat_tx *tx, struct moat_flush_stats *st, char *err,
			size_t errlen);
/* After the transaction was committed: the flushed state is live. */
void moat_compiler_commit(struct moat_compiler *c);
/* After a failed flush or commit: every object change since the last
 * commit is undone, so the compiler again describes what is enforced. */
void moat_compiler_abort(struct moat_compiler *c);

/* ---- introspection ------------------------------------------------------- */
/* Entries per table in the live (committed) generation. */
void moat_compiler_counts(const struct moat_compiler *c, __u32 out[MOAT_T_MAX]);
struct moat_rule_info {
	__u32 ref;
	enum moat_policy_kind kind;
	int tier;       /* MOAT_TIER_* */
	const char *ns; /* NULL for cluster kinds */
	const char *name;
	int dir;               /* MOAT_DIR_* */
	int index;             /* rule index; -1: the isolation itself */
	const char *rule_name; /* may be NULL */
	enum moat_action action;
	bool audit;
};

/* Rule reference -> description; NULL if unknown.  Fixed references
 * (MOAT_RULE_DEFAULT_ALLOW, ...) are described too. */
const struct moat_rule_info *moat_compiler_rule(const struct moat_compiler *c, __u32 ref);
/* Human text for a reference, e.g. "NetworkPolicy y/allow-db ingress[0]" or
 * "NetworkPolicy y/deny-all isolates (no rule allows)"; caller frees. */
char *moat_rule_describe(const struct moat_compiler *c, __u32 ref);
const char *moat_tier_name(int tier);
const char *moat_verdict_name(int verdict);
const char *moat_drop_reason_name(int reason);

/* Explain a flow from the compiled tables, exactly as the datapath would. */
struct moat_explain_side {
	bool judged; /* false: not a pod, not judged here */
	int verdict; /* MOAT_VERDICT_ALLOW / _DENY */
	int tier;
	__u32 rule;
	bool audit_deny; /* an audit-mode policy would deny */
	__u32 audit_rule;
};

struct moat_explain {
	__u32 src_identity, dst_identity;
	int src_class, dst_class;
	struct moat_explain_side egress;  /* the source pod's egress */
	struct moat_explain_side ingress; /* the destination pod's ingress */
	int verdict;                      /* overall */
	__u32 rule;                       /* deciding rule */
	int tier;
	int dir;
};

/* Endpoints by "ns/pod" (pods) or an IP address (anything). */
int moat_compiler_explain(const struct moat_compiler *c, const char *from, const char *to, uint8_t proto,
			  uint16_t port, struct moat_explain *out, char *err, size_t errlen);

/* Iteration for the control API. */
struct moat_ident_view {
	__u32 id;
	int cls;        /* MOAT_CLASS_* */
	const char *ns; /* pods */
	const struct moat_labels *labels;
	size_t npods;
	const char *node; /* node identities */
};
int moat_compiler_identities(const struct moat_compiler *c,
			     int (*fn)(const struct moat_ident_view *v, void *arg), void *arg);

struct moat_policy_view {
	const char *key; /* Kind/ns/name */
	const struct moat_policy *p;
	size_t nsubjects; /* identities selected */
	__u32 entries;    /* decision entries its subjects hold */
};
int moat_compiler_policies(const struct moat_compiler *c,
			   int (*fn)(const struct moat_policy_view *v, void *arg), void *arg);

struct moat_endpoint_view {
	const char *ns, *name, *node;
	__u32 identity;
	bool local;
	int ifindex;
	size_t nips;
	const struct moat_addr *ips;
	bool host_network;
	size_t nports; /* declared container ports */
	const struct moat_cport *ports;
};
int moat_compiler_endpoints(const struct moat_compiler *c,
			    int (*fn)(const struct moat_endpoint_view *v, void *arg), void *arg);
/* Pods by IP, for the daemon's interface discovery and for event decoding. */
const char *moat_compiler_pod_by_ip(const struct moat_compiler *c, const struct moat_addr *a,
				    __u32 *ret_identity);
/* Identity -> "ns" and labels text "a=b,c=d"; returns false if unknown. */
bool moat_compiler_identity(const struct moat_compiler *c, __u32 id, const char **ns,
			    const struct moat_labels **labels, int *cls);

/* ---- blueprints (blueprint.h) ---- */
/* [{name, version, versions, parameters, namespaces: [{namespace, version,
 * pinned}], errors: [{namespace?, message}]}] */
json_t *moat_compiler_blueprints(const struct moat_compiler *c);
/* What applying cand would change: {blueprint, from, to, namespaces:
 * [{namespace, from, to, pinned}], changes: [{policy, change (added,
 * removed, changed), namespaces, before, after}], errors}. */
json_t *moat_compiler_blueprint_diff(const struct moat_compiler *c, const struct moat_blueprint *cand);
const struct moat_blueprint *moat_compiler_blueprint(const struct moat_compiler *c, const char *name);

/* ---- read-only views for the offload pre-filter (hostd/prefilter.c) ---- */
/* next = false: the committed generation (what the datapath enforces);
 * next = true: what the open flush will commit (valid between
 * moat_compiler_flush and commit/abort; the committed state otherwise). */
struct moat_decide_peer {
	__u32 identity, region;
	int cls, family; /* MOAT_CLASS_*, 4 or 6 */
};
/* One direction of one subject, exactly as the datapath's decide(). */
int moat_compiler_decide(const struct moat_compiler *c, bool next, __u32 subject, int dir,
			 const struct moat_decide_peer *peer, __u8 proto, __u16 port,
			 struct moat_explain_side *out);
/* Every port value the subject's entries for (dir, proto) name: exact ports
 * and the first port of each port-class prefix.  A port named nowhere
 * decides like any other such port. */
int moat_compiler_subject_ports(const struct moat_compiler *c, bool next, __u32 subject, int dir, __u8 proto,
				int (*fn)(__u16 port, void *arg), void *arg);
/* Entries of a global table (MOAT_T_EP, _IP4, _IP6, _NET4, _NET6). */
int moat_compiler_table(const struct moat_compiler *c, bool next, enum moat_tbl t,
			int (*fn)(const void *key, const void *val, void *arg), void *arg);

#endif
