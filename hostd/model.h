/* SPDX-License-Identifier: Apache-2.0 */
/* The internal object model: Kubernetes objects as the policy engine needs
 * them.  NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy and
 * ClusterNetworkPolicy all decode into struct moat_policy (one model, several
 * front ends).  Objects are immutable once decoded; a change replaces the
 * whole object. */
#ifndef MOAT_MODEL_H
#define MOAT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on what one object may make the daemon allocate. */
#define MOAT_MAX_NAME          253
#define MOAT_MAX_LABELS        64
#define MOAT_MAX_LABEL_KEY     317 /* prefix(253) + '/' + name(63) */
#define MOAT_MAX_LABEL_VALUE   63
#define MOAT_MAX_SEL_REQS      32
#define MOAT_MAX_SEL_VALUES    64
#define MOAT_MAX_RULES_PER_DIR 100
#define MOAT_MAX_PEERS         100
#define MOAT_MAX_PORTS         100
#define MOAT_MAX_EXCEPT        64
#define MOAT_MAX_POD_IPS       4
#define MOAT_MAX_CPORTS        64
#define MOAT_MAX_NODE_ADDRS    16

struct moat_label {
	char *key;
	char *value;
};

/* Sorted by key, keys unique. */
struct moat_labels {
	size_t n;
	struct moat_label *kv;
};

enum moat_sel_op {
	MOAT_SEL_IN = 0,
	MOAT_SEL_NOT_IN,
	MOAT_SEL_EXISTS,
	MOAT_SEL_DOES_NOT_EXIST,
};

struct moat_sel_req {
	char *key;
	enum moat_sel_op op;
	size_t nvalues;
	char **values; /* sorted */
};

/* A metav1.LabelSelector.  matchLabels become In requirements with one
 * value.  Zero requirements select everything.  Requirements are sorted so
 * that equal selectors have equal canonical strings. */
struct moat_selector {
	size_t n;
	struct moat_sel_req *reqs;
};

struct moat_addr {
	int family;    /* 4 or 6 */
	uint8_t a[16]; /* IPv4 in the first 4 bytes */
};

struct moat_cidr {
	int family;
	uint8_t a[16]; /* host bits cleared */
	uint8_t plen;
};

/* A port clause.  proto 0 never occurs: a missing protocol defaults to TCP
 * when decoding.  port 0 = every port of proto; end_port = inclusive end of
 * a range (0 = single port).  named: resolved per destination pod. */
struct moat_port_spec {
	uint8_t proto; /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP */
	uint16_t port;
	uint16_t end_port;
	char *named;
};

enum moat_peer_kind {
	MOAT_PEER_PODS = 1, /* pods by namespace and pod selectors */
	MOAT_PEER_CIDR,     /* ipBlock (with except) or one entry of networks */
	MOAT_PEER_NODES,    /* nodes by node selector (egress only) */
	MOAT_PEER_DOMAINS,  /* domainNames: decoded, never matched (documented) */
	MOAT_PEER_INVALID,  /* unknown field: fail closed (see anp-semantics 5) */
};

struct moat_peer {
	enum moat_peer_kind kind;
	/* PODS: ns_sel NULL = the policy's own namespace (NetworkPolicy
	 * podSelector-only peer); pod_sel NULL = every pod of those namespaces.
	 * NODES: ns_sel holds the node selector. */
	struct moat_selector *ns_sel;
	struct moat_selector *pod_sel;
	struct moat_cidr cidr;
	size_t nexcept;
	struct moat_cidr *except;
};

enum moat_action {
	MOAT_A_ALLOW = 1, /* Allow (v1alpha1, NetworkPolicy) / Accept (v1alpha2) */
	MOAT_A_DENY = 2,
	MOAT_A_PASS = 3,
};

struct moat_rule {
	char *name; /* may be NULL */
	enum moat_action action;
	bool all_peers; /* NetworkPolicy rule without from/to: any source */
	size_t npeers;
	struct moat_peer *peers;
	size_t nports; /* 0: every port and protocol */
	struct moat_port_spec *ports;
};

enum moat_policy_kind {
	MOAT_K_NETPOL = 1, /* networking.k8s.io/v1 NetworkPolicy */
	MOAT_K_ANP,        /* policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy */
	MOAT_K_BANP,       /* ... BaselineAdminNetworkPolicy */
	MOAT_K_CNP,        /* policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy */
};

/* Tiers match MOAT_TIER_* of the ABI. */
struct moat_policy {
	enum moat_policy_kind kind;
	int tier; /* MOAT_TIER_ADMIN, _NETPOL, _BASELINE */
	char *ns; /* NetworkPolicy only */
	char *name;
	int32_t priority; /* admin tiers; BANP: 0 */
	/* Subject: NetworkPolicy: the pods of ns matched by subj_pod;
	 * cluster kinds: pods in namespaces matched by subj_ns (NULL = all)
	 * and matched by subj_pod (NULL = all). */
	struct moat_selector *subj_ns;
	struct moat_selector *subj_pod;
	/* NetworkPolicy: policyTypes (isolation) per direction.  Cluster
	 * kinds: true when the direction has rules. [0] ingress, [1] egress. */
	bool dir[2];
	size_t nrules[2];
	struct moat_rule *rules[2];
	bool audit; /* audit mode: judged and reported, never enforced */
};

struct moat_cport {
	char *name; /* may be NULL */
	uint8_t proto;
	uint16_t port;
};

struct moat_namespace {
	char *name;
	struct moat_labels labels;
	bool audit; /* moat.io/audit annotation: every NP in it audits */
	/* moat.io/sample-every: 1 in N packets of its pods' flows are sampled
	 * (0: none); without it the node's setting applies */
	bool has_sample;
	uint32_t sample_every;
	/* blueprint annotations (blueprint.moat.io/NAME pins a version,
	 * NAME.blueprint.moat.io/PARAM sets a parameter), see blueprint.h */
	struct moat_labels bp_annotations;
};

struct moat_pod {
	char *ns;
	char *name;
	struct moat_labels labels;
	char *node; /* spec.nodeName, may be NULL */
	bool host_network;
	size_t nips;
	struct moat_addr ips[MOAT_MAX_POD_IPS];
	size_t nports;
	struct moat_cport *ports;
};

struct moat_node {
	char *name;
	struct moat_labels labels;
	size_t naddrs;
	struct moat_addr addrs[MOAT_MAX_NODE_ADDRS];
};

struct moat_service {
	char *ns;
	char *name;
	size_t nips;
	struct moat_addr ips[MOAT_MAX_POD_IPS]; /* clusterIPs */
};

enum moat_obj_kind {
	MOAT_O_NAMESPACE = 1,
	MOAT_O_POD,
	MOAT_O_NODE,
	MOAT_O_SERVICE,
	MOAT_O_POLICY,
	MOAT_O_BLUEPRINT, /* moat.io/v1alpha1 Blueprint (blueprint.h) */
};

struct moat_blueprint;

/* A decoded object: one of the kinds above. */
struct moat_object {
	enum moat_obj_kind kind;
	char *api_kind;         /* "NetworkPolicy", "Pod", ... as written */
	char *ns;               /* metadata.namespace (NULL for cluster objects) */
	char *name;             /* metadata.name */
	char *uid;              /* metadata.uid, may be NULL */
	char *resource_version; /* may be NULL */
	union {
		struct moat_namespace *namespace;
		struct moat_pod *pod;
		struct moat_node *node;
		struct moat_service *service;
		struct moat_policy *policy;
		struct moat_blueprint *blueprint;
	} u;
};

/* ---- helpers (model.c) -------------------------------------------------- */
void moat_labels_free(struct moat_labels *l);
int moat_labels_set(struct moat_labels *l, const char *key, const char *value);
const char *moat_labels_get(const struct moat_labels *l, const char *key);
int moat_labels_copy(struct moat_labels *dst, const struct moat_labels *src);
bool moat_labels_equal(const struct moat_labels *a, const struct moat_labels *b);

void moat_selector_free(struct moat_selector *s);
struct moat_selector *moat_selector_dup(const struct moat_selector *s);
bool moat_selector_matches(const struct moat_selector *s, const struct moat_labels *l);
bool moat_selector_is_empty(const struct moat_selector *s); /* selects everything */
/* Canonical text form, e.g. "app in (db),tier notin (a,b)"; malloc'd. */
char *moat_selector_string(const struct moat_selector *s);

void moat_policy_free(struct moat_policy *p);
void moat_object_free(struct moat_object *o);

bool moat_cidr_contains(const struct moat_cidr *c, const struct moat_addr *a);
bool moat_cidr_within(const struct moat_cidr *inner, const struct moat_cidr *outer);
int moat_addr_parse(const char *s, struct moat_addr *a);
int moat_cidr_parse(const char *s, struct moat_cidr *c);
/* Text forms into caller buffers of at least 64 bytes. */
const char *moat_addr_str(const struct moat_addr *a, char *buf);
const char *moat_cidr_str(const struct moat_cidr *c, char *buf);
const char *moat_proto_name(uint8_t proto);
int moat_proto_parse(const char *s, uint8_t *proto);

#endif
