// SPDX-License-Identifier: Apache-2.0
/* The policy compiler.  See compile.h for the model and docs/policy.md for
 * the table layout and how precedence is resolved.
 *
 * State kept here:
 *  - namespaces, pods, nodes, services, policies (the objects as decoded)
 *  - identities: pods grouped by (namespace, labels, named ports); one per node
 *  - per policy: the identities its subject selects and, per rule peer, the
 *    identities it matches (sorted id vectors), plus stable rule references
 *  - per identity: its compiled decision entries (committed and pending)
 *  - cells: single entries of the global tables (ipcache, CIDR regions,
 *    endpoints) with committed and desired values
 * A flush turns everything marked dirty into table differences.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "compile.h"
#include "blueprint.h"
#include "util.h"

#define RULE_ISOLATION (-1)
#define TIER_PRIO_BANP 1001 /* BANP has no priority: after every baseline CNP */

/* ---- internal types ------------------------------------------------------- */
struct ns_ent {
	char *name;
	struct moat_object *obj;      /* NULL until a Namespace object is seen */
	struct moat_labels deflabels; /* what the API server always sets */
	struct moat_labels bpl;       /* blueprint.moat.io/NAME = running version */
	struct moat_labels eff;       /* what selectors see: own labels + bpl */
	struct ptrvec idents;
	struct ptrvec np_pols; /* NetworkPolicies of this namespace */
};

/* key and val aligned: they are read in place as the tables' structs */
struct kv {
	__u8 key[24] __attribute__((aligned(8)));
	__u8 val[24] __attribute__((aligned(8)));
	__u8 tbl; /* MOAT_T_POL or MOAT_T_PORTS */
};
_Static_assert(sizeof(struct moat_policy_key) <= 24, "key fits");
_Static_assert(sizeof(struct moat_port_key) <= 24, "key fits");
_Static_assert(sizeof(struct moat_policy_val) <= 24, "val fits");

struct out {
	struct moat_subject subj;
	size_t n;
	struct kv *kv; /* sorted by (tbl, key) */
};

struct node_ent;

struct ident {
	__u32 id;
	int cls; /* MOAT_CLASS_POD / _NODE */
	char *key;
	size_t klen;
	struct ns_ent *ns;
	struct moat_labels labels;
	size_t nports;
	struct moat_cport *ports;
	struct node_ent *node;
	size_t npods;
	bool dirty;       /* recompile as a subject */
	bool reselect;    /* re-evaluate every selector */
	bool dead;        /* no pods left: remove at flush */
	__u64 mark_epoch; /* when reselect was requested */
	struct out *committed;
	struct out *pending;
	bool has_pending;
	struct ptrvec subj_of; /* policies whose subject selects it */
};

struct pod_ent {
	char *key; /* ns/name */
	struct moat_object *obj;
	struct ident *ident; /* NULL for host-network pods */
	int ifindex;
};

struct node_ent {
	char *name;
	struct moat_object *obj;
	struct ident *ident;
};

struct peerset {
	struct u32vec ids; /* sorted identity ids */
	bool all_pods;     /* class-wide: every pod */
	bool all_nodes;    /* class-wide: every node */
};

struct pol_ent {
	char *key; /* Kind/ns/name */
	struct moat_object *obj;
	struct moat_policy *p;
	__u32 ordinal; /* tie-break among equal priorities */
	struct u32vec subjects;
	size_t npeers[2];         /* flattened peers per direction */
	struct peerset *peers[2]; /* index: rule_peer_base[d][r] + peer */
	size_t *peer_base[2];
	__u32 *refs[2]; /* per rule */
	__u32 iso_ref[2];
	bool expand_named[2];  /* class-wide peers enumerated (named ports) */
	__u64 select_epoch;    /* when its selections were last computed */
	bool need_select;      /* selections to recompute at the next flush */
	bool cross_ns;         /* peers outside its own namespace (or nodes) */
	bool any_named_egress; /* an egress rule to any peer with a named port */
	bool ns_audit;         /* its namespace is in audit mode */
};

struct region {
	__u32 id;
	struct moat_cidr cidr;
	size_t refs;
};

/* One entry of a global table with its committed and desired value. */
struct cell {
	/* aligned: read in place as the tables' key and value structs */
	__u8 key[24] __attribute__((aligned(8)));
	__u8 cval[40] __attribute__((aligned(8)));
	__u8 dval[40] __attribute__((aligned(8)));
	__u8 tbl;
	bool has_c, has_d;
	bool dirty; /* listed in dirty_cells */
};
/* every table a cell stands for */
_Static_assert(sizeof(struct moat_endpoint) <= sizeof(((struct cell *)0)->cval), "endpoint fits a cell");
_Static_assert(sizeof(struct moat_ip_info) <= sizeof(((struct cell *)0)->cval), "ipcache entry fits a cell");
_Static_assert(sizeof(struct moat_net_info) <= sizeof(((struct cell *)0)->cval), "region fits a cell");
_Static_assert(sizeof(struct moat_net6_key) <= sizeof(((struct cell *)0)->key), "key fits a cell");

struct ip_ent {
	struct moat_addr a;
	struct ptrvec pods;  /* pod_ent claiming it */
	struct ptrvec nodes; /* node_ent */
	struct ptrvec svcs;  /* moat_object (Service) */
};

struct undo {
	char *key;
	struct moat_object *old; /* NULL: the key did not exist */
};

struct moat_compiler {
	char *node;
	__u32 cap[MOAT_T_MAX];
	__u32 max_ident, max_rules;

	bool allow_local_node; /* pods always reachable from their node */

	struct hmap nss;      /* name -> ns_ent */
	struct hmap pods;     /* ns/name -> pod_ent */
	struct hmap nodes;    /* name -> node_ent */
	struct hmap svcs;     /* ns/name -> moat_object */
	struct hmap pols;     /* key -> pol_ent */
	struct hmap idents;   /* key bytes -> ident */
	struct ident **by_id; /* id -> ident */
	__u32 next_id;
	struct u32vec free_ids;
	struct hmap ips;     /* addr -> ip_ent */
	struct hmap cells;   /* tbl+key -> cell */
	struct hmap regions; /* cidr -> region */
	struct region **region_by_id;
	__u32 nregion_ids;
	struct u32vec free_regions;
	bool regions_dirty;

	/* rule references */
	struct hmap refs; /* key -> rule_info */
	struct moat_rule_info **ref_by_id;
	__u32 next_ref;
	struct u32vec free_refs;

	struct ptrvec dirty_pols;   /* policies whose selections are pending */
	struct ptrvec cluster_pols; /* ANP, BANP, CNP */
	struct ptrvec xns_pols;     /* NetworkPolicies with peers in other namespaces */
	struct ptrvec dirty_cells;
	struct hmap peer_cache; /* canonical peer -> struct u32vec *, per flush */
	struct ptrvec dirty_idents;
	struct ptrvec dead_idents;
	struct ptrvec undo; /* struct undo * since last commit */
	bool replaying;

	/* blueprints (blueprint.h) */
	struct hmap bps;            /* name -> moat_object (Blueprint) */
	struct hmap bp_inst;        /* instance key -> struct bp_inst */
	struct hmap *bp_inst_saved; /* bp_inst as committed, while a flush is open */
	struct ptrvec bp_errors;    /* struct bp_error *, from the last reconcile */
	bool bp_dirty;
	__u64 epoch;
	__u32 nsubjects_ents; /* committed decision entries */
	__u32 pending_counts[MOAT_T_MAX];
	__u32 committed_counts[MOAT_T_MAX];
};

static const struct moat_rule_info fixed_rules[] = {
	{ .ref = MOAT_RULE_DEFAULT_ALLOW, .tier = MOAT_TIER_DEFAULT, .name = "default-allow" },
	{ .ref = MOAT_RULE_NOT_IP, .tier = MOAT_TIER_DATAPATH, .name = "not-ip" },
	{ .ref = MOAT_RULE_MALFORMED, .tier = MOAT_TIER_DATAPATH, .name = "malformed" },
	{ .ref = MOAT_RULE_LOCAL_NODE, .tier = MOAT_TIER_DEFAULT, .name = "local-node" },
	{ .ref = MOAT_RULE_NO_ENDPOINT, .tier = MOAT_TIER_DATAPATH, .name = "no-endpoint" },
	{ .ref = MOAT_RULE_ND, .tier = MOAT_TIER_DATAPATH, .name = "link-local" },
	{ .ref = MOAT_RULE_SPOOF, .tier = MOAT_TIER_DATAPATH, .name = "spoofed-source" },
};

/* ---- names --------------------------------------------------------------- */
const char *moat_tier_name(int tier)
{
	switch (tier) {
	case MOAT_TIER_ADMIN:
		return "admin";
	case MOAT_TIER_NETPOL:
		return "networkpolicy";
	case MOAT_TIER_BASELINE:
		return "baseline";
	case MOAT_TIER_DEFAULT:
		return "default";
	case MOAT_TIER_CT:
		return "established";
	case MOAT_TIER_DATAPATH:
		return "datapath";
	default:
		return "none";
	}
}

const char *moat_verdict_name(int v)
{
	switch (v) {
	case MOAT_VERDICT_ALLOW:
		return "allow";
	case MOAT_VERDICT_DENY:
		return "deny";
	case MOAT_VERDICT_AUDIT:
		return "audit";
	default:
		return "none";
	}
}

const char *moat_drop_reason_name(int r)
{
	static const char *const n[MOAT_DROP_MAX] = {
		[MOAT_DROP_NONE] = "none",
		[MOAT_DROP_POLICY] = "policy",
		[MOAT_DROP_TRUNC_ETH] = "truncated-ethernet",
		[MOAT_DROP_TRUNC_VLAN] = "truncated-vlan",
		[MOAT_DROP_VLAN_DEPTH] = "vlan-depth",
		[MOAT_DROP_TRUNC_IP4] = "truncated-ipv4",
		[MOAT_DROP_BAD_IP4_HDR] = "bad-ipv4-header",
		[MOAT_DROP_TRUNC_IP6] = "truncated-ipv6",
		[MOAT_DROP_TRUNC_EXTHDR] = "truncated-ipv6-exthdr",
		[MOAT_DROP_EXTHDR_DEPTH] = "ipv6-exthdr-depth",
		[MOAT_DROP_TRUNC_L4] = "truncated-l4",
		[MOAT_DROP_BAD_TCP_HDR] = "bad-tcp-header",
		[MOAT_DROP_FRAG_NO_FIRST] = "fragment-without-first",
		[MOAT_DROP_SPOOFED] = "spoofed-source",
		[MOAT_DROP_NO_ENDPOINT] = "unknown-endpoint",
		[MOAT_DROP_CT_REVOKED] = "revoked",
		[MOAT_DROP_MAP_ERROR] = "map-error",
	};
	return r >= 0 && r < MOAT_DROP_MAX && n[r] ? n[r] : "unknown";
}

static const char *kind_name(enum moat_policy_kind k)
{
	switch (k) {
	case MOAT_K_NETPOL:
		return "NetworkPolicy";
	case MOAT_K_ANP:
		return "AdminNetworkPolicy";
	case MOAT_K_BANP:
		return "BaselineAdminNetworkPolicy";
	case MOAT_K_CNP:
		return "ClusterNetworkPolicy";
	}
	return "Policy";
}

/* ---- cells (global tables) ----------------------------------------------- */
static struct cell *cell_get(struct moat_compiler *c, enum moat_tbl t, const void *key, bool create)
{
	__u8 k[25];
	struct cell *ce;

	memset(k, 0, sizeof(k));
	k[0] = t;
	memcpy(k + 1, key, moat_tbl_key_size(t));
	ce = hmap_get(&c->cells, k, sizeof(k));
	if (ce || !create)
		return ce;
	ce = xcalloc(1, sizeof(*ce) + sizeof(k));
	ce->tbl = t;
	memcpy(ce->key, key, moat_tbl_key_size(t));
	memcpy((__u8 *)(ce + 1), k, sizeof(k));
	hmap_put(&c->cells, (__u8 *)(ce + 1), sizeof(k), ce, NULL);
	return ce;
}

static void cell_set(struct moat_compiler *c, enum moat_tbl t, const void *key, const void *val)
{
	struct cell *ce = cell_get(c, t, key, true);
	size_t vs = moat_tbl_value_size(t);

	if (val) {
		if (ce->has_d && !memcmp(ce->dval, val, vs))
			return;
		memcpy(ce->dval, val, vs);
		ce->has_d = true;
	} else {
		if (!ce->has_d)
			return;
		ce->has_d = false;
	}
	if (!ce->dirty) {
		ce->dirty = true;
		ptrvec_push(&c->dirty_cells, ce);
	}
}

/* ---- identities ------------------------------------------------------------ */
/* The namespace's own labels, as written. */
static const struct moat_labels *ns_base_labels(const struct ns_ent *n)
{
	return n->obj ? &n->obj->u.namespace->labels : &n->deflabels;
}

/* Its labels for selectors: blueprint keys come only from moat. */
static void ns_eff_refresh(struct ns_ent *n)
{
	const struct moat_labels *b = ns_base_labels(n);

	moat_labels_free(&n->eff);
	for (size_t i = 0; i < b->n; i++)
		if (!moat_bp_key(b->kv[i].key))
			moat_labels_set(&n->eff, b->kv[i].key, b->kv[i].value);
	for (size_t i = 0; i < n->bpl.n; i++)
		moat_labels_set(&n->eff, n->bpl.kv[i].key, n->bpl.kv[i].value);
}

static struct ns_ent *ns_get(struct moat_compiler *c, const char *name, bool create)
{
	struct ns_ent *n = hmap_gets(&c->nss, name);

	if (n || !create)
		return n;
	n = xcalloc(1, sizeof(*n));
	n->name = xstrdup(name);
	moat_labels_set(&n->deflabels, "kubernetes.io/metadata.name", name);
	hmap_put(&c->nss, n->name, strlen(n->name), n, NULL);
	ns_eff_refresh(n);
	c->bp_dirty = true;
	return n;
}

static const struct moat_labels *ns_labels(const struct ns_ent *n)
{
	return &n->eff;
}

static void key_add(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = (*len + n + 1) * 2;
		*buf = xrealloc(*buf, *cap);
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[(*len)++] = 0;
}

static int cmp_cport(const void *a, const void *b)
{
	const struct moat_cport *x = a, *y = b;
	int r = strcmp(x->name ? x->name : "", y->name ? y->name : "");
	if (r)
		return r;
	if (x->proto != y->proto)
		return x->proto - y->proto;
	return (int)x->port - (int)y->port;
}

/* Pods share an identity when namespace, labels and named ports agree. */
static char *pod_ident_key(const struct moat_pod *p, size_t *klen, struct moat_cport **ret_ports,
			   size_t *ret_n)
{
	char *buf = NULL, num[32];
	size_t len = 0, cap = 0, n = 0;
	struct moat_cport *ports = NULL;

	key_add(&buf, &len, &cap, "pod", 3);
	key_add(&buf, &len, &cap, p->ns, strlen(p->ns));
	for (size_t i = 0; i < p->labels.n; i++) {
		key_add(&buf, &len, &cap, p->labels.kv[i].key, strlen(p->labels.kv[i].key));
		key_add(&buf, &len, &cap, p->labels.kv[i].value, strlen(p->labels.kv[i].value));
	}
	key_add(&buf, &len, &cap, "|", 1);
	for (size_t i = 0; i < p->nports; i++)
		if (p->ports[i].name)
			n++;
	if (n) {
		ports = xcalloc(n, sizeof(*ports));
		n = 0;
		for (size_t i = 0; i < p->nports; i++)
			if (p->ports[i].name)
				ports[n++] = p->ports[i];
		qsort(ports, n, sizeof(*ports), cmp_cport);
		for (size_t i = 0; i < n; i++) {
			int l = snprintf(num, sizeof(num), "%u/%u", ports[i].proto, ports[i].port);
			key_add(&buf, &len, &cap, ports[i].name, strlen(ports[i].name));
			key_add(&buf, &len, &cap, num, (size_t)l);
		}
		/* keep our own copies of the names */
		for (size_t i = 0; i < n; i++)
			ports[i].name = xstrdup(ports[i].name);
	}
	*klen = len;
	*ret_ports = ports;
	*ret_n = n;
	return buf;
}

static void mark_ident(struct moat_compiler *c, struct ident *id)
{
	if (!id->dirty) {
		id->dirty = true;
		ptrvec_push(&c->dirty_idents, id);
	}
}

static void mark_reselect(struct moat_compiler *c, struct ident *id)
{
	id->reselect = true;
	id->mark_epoch = ++c->epoch;
	mark_ident(c, id);
}

static void mark_select(struct moat_compiler *c, struct pol_ent *pe)
{
	if (!pe->need_select) {
		pe->need_select = true;
		ptrvec_push(&c->dirty_pols, pe);
	}
}

static void mark_pol_subjects(struct moat_compiler *c, struct pol_ent *pe)
{
	for (size_t i = 0; i < pe->subjects.n; i++) {
		struct ident *id = c->by_id[pe->subjects.v[i]];
		if (id)
			mark_ident(c, id);
	}
}

static int ident_alloc_id(struct moat_compiler *c, __u32 *ret)
{
	if (c->free_ids.n) {
		*ret = c->free_ids.v[--c->free_ids.n];
		return 0;
	}
	if (c->next_id >= c->max_ident)
		return -ENOSPC;
	*ret = c->next_id++;
	return 0;
}

static struct ident *ident_get(struct moat_compiler *c, char *key, size_t klen, int cls, int *err)
{
	struct ident *id = hmap_get(&c->idents, key, klen);
	__u32 nid;

	if (id) {
		free(key);
		if (id->dead) {
			id->dead = false;
			ptrvec_remove(&c->dead_idents, id);
		}
		return id;
	}
	*err = ident_alloc_id(c, &nid);
	if (*err) {
		free(key);
		return NULL;
	}
	id = xcalloc(1, sizeof(*id));
	id->id = nid;
	id->cls = cls;
	id->key = key;
	id->klen = klen;
	c->by_id[nid] = id;
	hmap_put(&c->idents, id->key, id->klen, id, NULL);
	mark_reselect(c, id);
	return id;
}

static void ident_unref(struct moat_compiler *c, struct ident *id)
{
	if (!id || --id->npods > 0)
		return;
	id->dead = true;
	ptrvec_push(&c->dead_idents, id);
	mark_reselect(c, id);
}

/* ---- ip index and ipcache cells ------------------------------------------- */
static struct ip_ent *ip_get(struct moat_compiler *c, const struct moat_addr *a, bool create)
{
	__u8 k[17];
	struct ip_ent *e;

	k[0] = (__u8)a->family;
	memcpy(k + 1, a->a, 16);
	e = hmap_get(&c->ips, k, sizeof(k));
	if (e || !create)
		return e;
	e = xcalloc(1, sizeof(*e) + sizeof(k));
	e->a = *a;
	memcpy((__u8 *)(e + 1), k, sizeof(k));
	hmap_put(&c->ips, (__u8 *)(e + 1), sizeof(k), e, NULL);
	return e;
}

static __u32 region_of(const struct moat_compiler *c, const struct moat_addr *a);
static void pod_endpoint(struct moat_compiler *c, struct pod_ent *pe, bool add);

/* Recomputes the ipcache entry of one address from its claimants: a node
 * address wins, then the pod with the lowest ns/name, then a Service. */
static void ip_refresh(struct moat_compiler *c, struct ip_ent *e)
{
	struct moat_ip_info info;
	bool have = false;

	memset(&info, 0, sizeof(info));
	if (e->nodes.n) {
		struct node_ent *best = e->nodes.v[0];
		for (size_t i = 1; i < e->nodes.n; i++) {
			struct node_ent *n = e->nodes.v[i];
			if (strcmp(n->name, best->name) < 0)
				best = n;
		}
		info.identity = best->ident ? best->ident->id : MOAT_ID_WORLD;
		info.class = MOAT_CLASS_NODE;
		if (c->node && !strcmp(best->name, c->node))
			info.flags |= MOAT_IP_F_LOCAL;
		have = true;
	} else if (e->pods.n) {
		struct pod_ent *best = NULL;
		for (size_t i = 0; i < e->pods.n; i++) {
			struct pod_ent *p = e->pods.v[i];
			if (!p->ident)
				continue;
			if (!best || strcmp(p->key, best->key) < 0)
				best = p;
		}
		if (best) {
			const struct moat_pod *pod = best->obj->u.pod;
			info.identity = best->ident->id;
			info.class = MOAT_CLASS_POD;
			if (c->node && pod->node && !strcmp(pod->node, c->node))
				info.flags |= MOAT_IP_F_LOCAL;
			have = true;
		}
	}
	if (!have && e->svcs.n) {
		info.identity = MOAT_ID_WORLD;
		info.class = MOAT_CLASS_VIP;
		have = true;
	}
	info.region = region_of(c, &e->a);
	if (e->a.family == 4) {
		struct moat_ip4_key k;
		memcpy(&k.addr, e->a.a, 4);
		cell_set(c, MOAT_T_IP4, &k, have ? &info : NULL);
	} else {
		struct moat_ip6_key k;
		memcpy(k.addr, e->a.a, 16);
		cell_set(c, MOAT_T_IP6, &k, have ? &info : NULL);
	}
}

/* ---- regions ---------------------------------------------------------------- */
static __u32 region_of(const struct moat_compiler *c, const struct moat_addr *a)
{
	const struct region *best = NULL;

	for (__u32 i = 0; i < c->nregion_ids; i++) {
		const struct region *r = c->region_by_id[i];
		if (!r || r->cidr.family != a->family || !moat_cidr_contains(&r->cidr, a))
			continue;
		if (!best || r->cidr.plen > best->cidr.plen)
			best = r;
	}
	return best ? best->id : 0;
}

static void region_ref(struct moat_compiler *c, const struct moat_cidr *cd)
{
	__u8 k[18];
	struct region *r;

	k[0] = (__u8)cd->family;
	k[1] = cd->plen;
	memcpy(k + 2, cd->a, 16);
	r = hmap_get(&c->regions, k, sizeof(k));
	if (r) {
		r->refs++;
		return;
	}
	r = xcalloc(1, sizeof(*r) + sizeof(k));
	r->cidr = *cd;
	r->refs = 1;
	if (c->free_regions.n) {
		r->id = c->free_regions.v[--c->free_regions.n];
	} else {
		r->id = ++c->nregion_ids; /* ids from 1; by_id index = id - 1 */
		c->region_by_id = xrealloc(c->region_by_id, c->nregion_ids * sizeof(*c->region_by_id));
	}
	c->region_by_id[r->id - 1] = r;
	memcpy((__u8 *)(r + 1), k, sizeof(k));
	hmap_put(&c->regions, (__u8 *)(r + 1), sizeof(k), r, NULL);
	c->regions_dirty = true;
}

static void region_unref(struct moat_compiler *c, const struct moat_cidr *cd)
{
	__u8 k[18];
	struct region *r;

	k[0] = (__u8)cd->family;
	k[1] = cd->plen;
	memcpy(k + 2, cd->a, 16);
	r = hmap_get(&c->regions, k, sizeof(k));
	if (!r || !r->refs || --r->refs)
		return;
	/* freed at the next flush unless referenced again before: a policy
	 * replaced by itself, or deleted and added back, keeps its ids */
	c->regions_dirty = true;
}

static void policy_regions(struct moat_compiler *c, const struct moat_policy *p, bool add)
{
	for (int d = 0; d < 2; d++)
		for (size_t r = 0; r < p->nrules[d]; r++)
			for (size_t i = 0; i < p->rules[d][r].npeers; i++) {
				const struct moat_peer *pe = &p->rules[d][r].peers[i];
				if (pe->kind != MOAT_PEER_CIDR)
					continue;
				(add ? region_ref : region_unref)(c, &pe->cidr);
				for (size_t e = 0; e < pe->nexcept; e++)
					(add ? region_ref : region_unref)(c, &pe->except[e]);
			}
}

/* After the region set changed: every address's region, the LPM entries,
 * and every subject with CIDR rules. */
static void regions_refresh(struct moat_compiler *c)
{
	size_t it = 0;
	void *v;
	struct hmap_ent *e;

	for (__u32 i = 0; i < c->nregion_ids; i++) {
		struct region *r = c->region_by_id[i];
		if (!r || r->refs)
			continue;
		hmap_del(&c->regions, (__u8 *)(r + 1), 18);
		c->region_by_id[i] = NULL;
		u32vec_push(&c->free_regions, r->id);
		free(r);
	}
	/* LPM cells: drop all, re-add current */
	for (size_t i = 0; i < c->cells.cap; i++) {
		e = &c->cells.e[i];
		if (e->hash < 2)
			continue;
		struct cell *ce = e->val;
		if (ce->tbl == MOAT_T_NET4 || ce->tbl == MOAT_T_NET6)
			cell_set(c, ce->tbl, ce->key, NULL);
	}
	for (__u32 i = 0; i < c->nregion_ids; i++) {
		struct region *r = c->region_by_id[i];
		struct moat_net_info ni;
		if (!r)
			continue;
		ni.region = r->id;
		if (r->cidr.family == 4) {
			struct moat_net4_key k = { .prefixlen = r->cidr.plen };
			memcpy(&k.addr, r->cidr.a, 4);
			cell_set(c, MOAT_T_NET4, &k, &ni);
		} else {
			struct moat_net6_key k = { .prefixlen = r->cidr.plen };
			memcpy(k.addr, r->cidr.a, 16);
			cell_set(c, MOAT_T_NET6, &k, &ni);
		}
	}
	while (hmap_next(&c->ips, &it, NULL, NULL, &v))
		ip_refresh(c, v);
	/* endpoints carry their addresses' regions too */
	it = 0;
	while (hmap_next(&c->pods, &it, NULL, NULL, &v))
		pod_endpoint(c, v, true);
	it = 0;
	while (hmap_next(&c->pols, &it, NULL, NULL, &v)) {
		struct pol_ent *pe = v;
		bool cidr = false;
		for (int d = 0; d < 2 && pe->p && !cidr; d++)
			for (size_t r = 0; r < pe->p->nrules[d] && !cidr; r++)
				for (size_t k = 0; k < pe->p->rules[d][r].npeers; k++)
					cidr |= pe->p->rules[d][r].peers[k].kind == MOAT_PEER_CIDR;
		if (cidr)
			mark_pol_subjects(c, pe);
	}
	c->regions_dirty = false;
}

/* ---- rule references ------------------------------------------------------- */
static __u32 ref_get(struct moat_compiler *c, const struct pol_ent *pe, int dir, int idx)
{
	char *key = xasprintf("%s|%d|%d", pe->key, dir, idx);
	struct moat_rule_info *ri = hmap_gets(&c->refs, key);
	const struct moat_policy *p = pe->p;
	__u32 id;

	if (ri) {
		free(key);
		/* the rule may have been edited: refresh what describes it */
		ri->action = idx >= 0 ? p->rules[dir][idx].action : MOAT_A_DENY;
		free((char *)ri->rule_name);
		ri->rule_name = idx >= 0 ? xstrdup(p->rules[dir][idx].name) : NULL;
		ri->audit = p->audit || pe->ns_audit;
		return ri->ref;
	}
	if (c->free_refs.n) {
		id = c->free_refs.v[0];
		memmove(c->free_refs.v, c->free_refs.v + 1, (c->free_refs.n - 1) * sizeof(__u32));
		c->free_refs.n--;
	} else if (c->next_ref < c->max_rules) {
		id = c->next_ref++;
	} else {
		free(key);
		return MOAT_RULE_NONE; /* out of references: counted under "none" */
	}
	ri = xcalloc(1, sizeof(*ri));
	ri->ref = id;
	ri->kind = p->kind;
	ri->tier = p->tier;
	ri->ns = xstrdup(p->ns);
	ri->name = xstrdup(p->name);
	ri->dir = dir;
	ri->index = idx;
	ri->rule_name = idx >= 0 ? xstrdup(p->rules[dir][idx].name) : NULL;
	ri->action = idx >= 0 ? p->rules[dir][idx].action : MOAT_A_DENY;
	ri->audit = p->audit || pe->ns_audit;
	c->ref_by_id[id] = ri;
	/* the key string is owned by the map through rule_info's lifetime */
	hmap_put(&c->refs, key, strlen(key), ri, NULL);
	return id;
}

static void ref_put(struct moat_compiler *c, const struct pol_ent *pe, int dir, int idx)
{
	char *key = xasprintf("%s|%d|%d", pe->key, dir, idx);
	size_t it = 0;
	const void *k;
	size_t kl;
	void *v;
	struct moat_rule_info *ri = hmap_gets(&c->refs, key);

	if (ri) {
		/* find the stored key pointer to free it */
		while (hmap_next(&c->refs, &it, &k, &kl, &v)) {
			if (v == ri) {
				hmap_del(&c->refs, key, strlen(key));
				free((void *)k);
				break;
			}
		}
		c->ref_by_id[ri->ref] = NULL;
		u32vec_push(&c->free_refs, ri->ref);
		free((char *)ri->ns);
		free((char *)ri->name);
		free((char *)ri->rule_name);
		free(ri);
	}
	free(key);
}

const struct moat_rule_info *moat_compiler_rule(const struct moat_compiler *c, __u32 ref)
{
	for (size_t i = 0; i < sizeof(fixed_rules) / sizeof(fixed_rules[0]); i++)
		if (fixed_rules[i].ref == ref)
			return &fixed_rules[i];
	if (ref < c->max_rules && ref >= MOAT_RULE_FIRST_DYN)
		return c->ref_by_id[ref];
	return NULL;
}

char *moat_rule_describe(const struct moat_compiler *c, __u32 ref)
{
	const struct moat_rule_info *ri = moat_compiler_rule(c, ref);
	const char *dir;

	if (!ri)
		return xasprintf("rule#%u", ref);
	if (ref < MOAT_RULE_FIRST_DYN) {
		switch (ref) {
		case MOAT_RULE_DEFAULT_ALLOW:
			return xstrdup("no policy applies (default allow)");
		case MOAT_RULE_LOCAL_NODE:
			return xstrdup("from the pod's own node (always allowed)");
		case MOAT_RULE_NO_ENDPOINT:
			return xstrdup("endpoint not known yet (fail closed)");
		case MOAT_RULE_SPOOF:
			return xstrdup("source address not owned by the pod");
		case MOAT_RULE_MALFORMED:
			return xstrdup("malformed packet");
		default:
			return xstrdup(ri->name);
		}
	}
	dir = ri->dir == MOAT_DIR_EGRESS ? "egress" : "ingress";
	if (ri->index == RULE_ISOLATION)
		return xasprintf("%s %s%s%s isolates %s (no rule allows)%s", kind_name(ri->kind),
				 ri->ns ? ri->ns : "", ri->ns ? "/" : "", ri->name, dir,
				 ri->audit ? " [audit]" : "");
	return xasprintf("%s %s%s%s %s[%d]%s%s%s%s", kind_name(ri->kind), ri->ns ? ri->ns : "",
			 ri->ns ? "/" : "", ri->name, dir, ri->index, ri->rule_name ? " \"" : "",
			 ri->rule_name ? ri->rule_name : "", ri->rule_name ? "\"" : "",
			 ri->audit ? " [audit]" : "");
}

/* ---- selection ---------------------------------------------------------------- */
static bool subject_matches(const struct moat_compiler *c, const struct pol_ent *pe, const struct ident *id)
{
	const struct moat_policy *p = pe->p;

	(void)c;
	if (id->cls != MOAT_CLASS_POD || !id->ns) /* (ident_reselect allows for no ns) */
		return false;
	if (p->kind == MOAT_K_NETPOL) {
		if (strcmp(p->ns, id->ns->name))
			return false;
	} else if (p->subj_ns && !moat_selector_matches(p->subj_ns, ns_labels(id->ns))) {
		return false;
	}
	return !p->subj_pod || moat_selector_matches(p->subj_pod, &id->labels);
}

static bool peer_is_all_pods(const struct moat_policy *p, const struct moat_peer *pe)
{
	(void)p;
	return pe->kind == MOAT_PEER_PODS && pe->ns_sel && moat_selector_is_empty(pe->ns_sel) &&
	       (!pe->pod_sel || moat_selector_is_empty(pe->pod_sel));
}

static bool peer_matches_ident(const struct moat_policy *p, const struct moat_peer *pe,
			       const struct ident *id)
{
	switch (pe->kind) {
	case MOAT_PEER_PODS:
		if (id->cls != MOAT_CLASS_POD)
			return false;
		if (!pe->ns_sel) {
			if (!p->ns || strcmp(p->ns, id->ns->name))
				return false;
		} else if (!moat_selector_matches(pe->ns_sel, ns_labels(id->ns))) {
			return false;
		}
		return !pe->pod_sel || moat_selector_matches(pe->pod_sel, &id->labels);
	case MOAT_PEER_NODES:
		return id->cls == MOAT_CLASS_NODE && moat_selector_matches(pe->ns_sel, &id->labels);
	default:
		return false;
	}
}

static bool rule_has_named(const struct moat_rule *r)
{
	for (size_t i = 0; i < r->nports; i++)
		if (r->ports[i].named)
			return true;
	return false;
}

static void pol_free_sets(struct pol_ent *pe)
{
	for (int d = 0; d < 2; d++) {
		for (size_t i = 0; i < pe->npeers[d]; i++)
			u32vec_free(&pe->peers[d][i].ids);
		free(pe->peers[d]);
		free(pe->peer_base[d]);
		pe->peers[d] = NULL;
		pe->peer_base[d] = NULL;
		pe->npeers[d] = 0;
	}
}

static void peer_collect(const struct ns_ent *n, const struct moat_peer *pr, struct u32vec *out)
{
	for (size_t i = 0; n && i < n->idents.n; i++) {
		struct ident *id = n->idents.v[i];
		if (!id->dead && (!pr->pod_sel || moat_selector_matches(pr->pod_sel, &id->labels)))
			u32vec_push(out, id->id);
	}
}

static void peer_cache_clear(struct moat_compiler *c)
{
	size_t it = 0;
	const void *k;
	void *v;

	while (hmap_next(&c->peer_cache, &it, &k, NULL, &v)) {
		u32vec_free(v);
		free(v);
		free((void *)k);
	}
	hmap_free(&c->peer_cache);
	hmap_init(&c->peer_cache);
}

/* The identities a pod peer selects.  Thousands of policies repeat the same
 * peer (e.g. "prometheus in the monitoring namespaces"): evaluate each
 * distinct peer once per flush. */
static const struct u32vec *peer_ids(struct moat_compiler *c, const struct moat_policy *p,
				     const struct moat_peer *pr)
{
	char *ns = pr->ns_sel ? moat_selector_string(pr->ns_sel) : NULL;
	char *pod = pr->pod_sel ? moat_selector_string(pr->pod_sel) : NULL;
	char *key = xasprintf("%s%s|%s", pr->ns_sel ? "S:" : "N:", pr->ns_sel ? ns : p->ns,
			      pr->pod_sel ? pod : "*");
	struct u32vec *v;

	free(ns);
	free(pod);
	v = hmap_gets(&c->peer_cache, key);
	if (v) {
		free(key);
		return v;
	}
	v = xcalloc(1, sizeof(*v));
	if (!pr->ns_sel) {
		peer_collect(p->ns ? ns_get(c, p->ns, false) : NULL, pr, v);
	} else {
		size_t nit = 0;
		void *nv;
		while (hmap_next(&c->nss, &nit, NULL, NULL, &nv))
			if (moat_selector_matches(pr->ns_sel, ns_labels(nv)))
				peer_collect(nv, pr, v);
	}
	u32vec_sort_unique(v);
	hmap_put(&c->peer_cache, key, strlen(key), v, NULL);
	return v;
}

/* Re-evaluates which identities a policy's subject and peers select. */
static void pol_select(struct moat_compiler *c, struct pol_ent *pe)
{
	const struct moat_policy *p = pe->p;
	struct u32vec old = pe->subjects;

	/* forget old memberships */
	for (size_t i = 0; i < old.n; i++) {
		struct ident *id = c->by_id[old.v[i]];
		if (id)
			ptrvec_remove(&id->subj_of, pe);
	}
	pol_free_sets(pe);
	memset(&pe->subjects, 0, sizeof(pe->subjects));
	pe->select_epoch = ++c->epoch;
	pe->any_named_egress = false;
	if (!p) {
		/* deleted: the old subjects lose it */
		for (size_t i = 0; i < old.n; i++)
			if (c->by_id[old.v[i]])
				mark_ident(c, c->by_id[old.v[i]]);
		u32vec_free(&old);
		return;
	}

	/* subjects */
	if (p->kind == MOAT_K_NETPOL) {
		struct ns_ent *n = ns_get(c, p->ns, false);
		for (size_t i = 0; n && i < n->idents.n; i++) {
			struct ident *id = n->idents.v[i];
			if (!id->dead && subject_matches(c, pe, id))
				u32vec_push(&pe->subjects, id->id);
		}
	} else {
		size_t it = 0;
		void *v;
		while (hmap_next(&c->nss, &it, NULL, NULL, &v)) {
			struct ns_ent *n = v;
			if (p->subj_ns && !moat_selector_matches(p->subj_ns, ns_labels(n)))
				continue;
			for (size_t i = 0; i < n->idents.n; i++) {
				struct ident *id = n->idents.v[i];
				if (!id->dead &&
				    (!p->subj_pod || moat_selector_matches(p->subj_pod, &id->labels)))
					u32vec_push(&pe->subjects, id->id);
			}
		}
	}
	u32vec_sort_unique(&pe->subjects);
	for (size_t i = 0; i < pe->subjects.n; i++)
		ptrvec_push(&c->by_id[pe->subjects.v[i]]->subj_of, pe);

	/* peers */
	for (int d = 0; d < 2; d++) {
		size_t total = 0;
		bool named = false;
		for (size_t r = 0; r < p->nrules[d]; r++) {
			total += p->rules[d][r].npeers;
			named |= rule_has_named(&p->rules[d][r]);
		}
		pe->expand_named[d] = named && d == MOAT_DIR_EGRESS;
		if (d == MOAT_DIR_EGRESS)
			for (size_t r = 0; r < p->nrules[d]; r++)
				if (p->rules[d][r].all_peers && rule_has_named(&p->rules[d][r]))
					pe->any_named_egress = true;
		pe->npeers[d] = total;
		pe->peers[d] = xcalloc(total ? total : 1, sizeof(struct peerset));
		pe->peer_base[d] = xcalloc(p->nrules[d] ? p->nrules[d] : 1, sizeof(size_t));
		total = 0;
		for (size_t r = 0; r < p->nrules[d]; r++) {
			const struct moat_rule *ru = &p->rules[d][r];
			bool expand = d == MOAT_DIR_EGRESS && rule_has_named(ru);
			pe->peer_base[d][r] = total;
			for (size_t i = 0; i < ru->npeers; i++, total++) {
				const struct moat_peer *pr = &ru->peers[i];
				struct peerset *ps = &pe->peers[d][total];
				if (pr->kind == MOAT_PEER_PODS && peer_is_all_pods(p, pr) && !expand) {
					ps->all_pods = true;
					continue;
				}
				if (pr->kind == MOAT_PEER_NODES && moat_selector_is_empty(pr->ns_sel)) {
					ps->all_nodes = true;
					continue;
				}
				if (pr->kind == MOAT_PEER_NODES) {
					size_t nit = 0;
					void *nv;
					while (hmap_next(&c->nodes, &nit, NULL, NULL, &nv)) {
						struct ident *id = ((struct node_ent *)nv)->ident;
						if (id && !id->dead && peer_matches_ident(p, pr, id))
							u32vec_push(&ps->ids, id->id);
					}
					u32vec_sort_unique(&ps->ids);
					continue;
				}
				if (pr->kind != MOAT_PEER_PODS)
					continue;
				{
					const struct u32vec *ids = peer_ids(c, p, pr);
					if (ids->n) {
						ps->ids.v = xcalloc(ids->n, sizeof(uint32_t));
						memcpy(ps->ids.v, ids->v, ids->n * sizeof(uint32_t));
						ps->ids.n = ps->ids.cap = ids->n;
					}
				}
			}
		}
	}
	/* old and new subjects both need recompiling */
	for (size_t i = 0; i < old.n; i++)
		if (c->by_id[old.v[i]])
			mark_ident(c, c->by_id[old.v[i]]);
	mark_pol_subjects(c, pe);
	u32vec_free(&old);
}

/* An identity appeared or its labels (or its namespace's) changed: which
 * policies select it now? */
static void ident_reselect_one(struct moat_compiler *c, struct ident *id, struct pol_ent *pe)
{
	{
		const struct moat_policy *p = pe->p;
		bool was = false, is;

		if (!p || pe->select_epoch > id->mark_epoch)
			return; /* selected after this identity changed: up to date */
		for (size_t i = 0; i < id->subj_of.n; i++)
			was |= id->subj_of.v[i] == pe;
		is = !id->dead && subject_matches(c, pe, id);
		if (was != is) {
			if (is) {
				u32vec_push(&pe->subjects, id->id);
				u32vec_sort_unique(&pe->subjects);
				ptrvec_push(&id->subj_of, pe);
			} else {
				for (size_t i = 0; i < pe->subjects.n; i++)
					if (pe->subjects.v[i] == id->id) {
						memmove(&pe->subjects.v[i], &pe->subjects.v[i + 1],
							(pe->subjects.n - i - 1) * sizeof(__u32));
						pe->subjects.n--;
						break;
					}
				ptrvec_remove(&id->subj_of, pe);
			}
		}
		bool peer_changed = false;
		for (int d = 0; d < 2; d++) {
			size_t k = 0;
			for (size_t r = 0; r < p->nrules[d]; r++) {
				const struct moat_rule *ru = &p->rules[d][r];
				for (size_t i = 0; i < ru->npeers; i++, k++) {
					struct peerset *ps = &pe->peers[d][k];
					const struct moat_peer *pr = &ru->peers[i];
					bool in, m;
					if (ps->all_pods || ps->all_nodes ||
					    (pr->kind != MOAT_PEER_PODS && pr->kind != MOAT_PEER_NODES))
						continue;
					in = u32vec_has(&ps->ids, id->id);
					m = !id->dead && peer_matches_ident(p, pr, id);
					if (in == m)
						continue;
					peer_changed = true;
					if (m) {
						u32vec_push(&ps->ids, id->id);
						u32vec_sort_unique(&ps->ids);
					} else {
						for (size_t j = 0; j < ps->ids.n; j++)
							if (ps->ids.v[j] == id->id) {
								memmove(&ps->ids.v[j], &ps->ids.v[j + 1],
									(ps->ids.n - j - 1) * sizeof(__u32));
								ps->ids.n--;
								break;
							}
					}
				}
			}
		}
		if (peer_changed)
			mark_pol_subjects(c, pe);
		/* class-wide peers need nothing: unmentioned identities take
		 * the class row; but a named port to "any peer" gives every pod
		 * its own row */
		if (!peer_changed && pe->any_named_egress && id->cls == MOAT_CLASS_POD)
			mark_pol_subjects(c, pe);
	}
}

/* Only policies that could select it: NetworkPolicies of its namespace,
 * NetworkPolicies with peers in other namespaces, cluster policies. */
static void ident_reselect(struct moat_compiler *c, struct ident *id)
{
	id->reselect = false;
	if (id->cls == MOAT_CLASS_POD && id->ns)
		for (size_t i = 0; i < id->ns->np_pols.n; i++)
			ident_reselect_one(c, id, id->ns->np_pols.v[i]);
	if (id->cls == MOAT_CLASS_POD)
		for (size_t i = 0; i < c->xns_pols.n; i++)
			ident_reselect_one(c, id, c->xns_pols.v[i]);
	for (size_t i = 0; i < c->cluster_pols.n; i++)
		ident_reselect_one(c, id, c->cluster_pols.v[i]);
}

/* ---- compiling one subject ------------------------------------------------ */
struct crule {
	const struct pol_ent *pe;
	const struct moat_rule *r;
	int dir;
	int idx;
	int tier;
	__u32 rank;
	__u32 ref;
	__u8 action;
	bool invalid_peer;
};

struct clist {
	struct crule *admin, *np, *base;
	size_t nadmin, nnp, nbase;
	bool isolated;
	__u32 iso_ref;
	bool active;
};

static bool pol_audit(const struct pol_ent *pe)
{
	return pe->p->audit || pe->ns_audit;
}

static int cmp_crule_rank(const void *a, const void *b)
{
	const struct crule *x = a, *y = b;
	return x->rank < y->rank ? -1 : x->rank > y->rank;
}

static int cmp_crule_np(const void *a, const void *b)
{
	const struct crule *x = a, *y = b;
	int r = strcmp(x->pe->key, y->pe->key);
	return r ? r : x->idx - y->idx;
}

static __u32 pol_rank(const struct pol_ent *pe, int idx)
{
	__u32 prio = pe->p->kind == MOAT_K_BANP ? TIER_PRIO_BANP : (__u32)pe->p->priority;
	return (prio << 20) | ((pe->ordinal & 0x1fff) << 7) | ((__u32)idx & 0x7f);
}

static void clist_build(const struct ident *s, int d, bool shadow, struct clist *cl)
{
	memset(cl, 0, sizeof(*cl));
	for (size_t i = 0; i < s->subj_of.n; i++) {
		const struct pol_ent *pe = s->subj_of.v[i];
		const struct moat_policy *p = pe->p;
		if (!p || !p->dir[d] || (pol_audit(pe) && !shadow))
			continue;
		cl->active = true;
		if (p->kind == MOAT_K_NETPOL)
			cl->isolated = true;
		for (size_t r = 0; r < p->nrules[d]; r++) {
			struct crule cr = { .pe = pe,
					    .r = &p->rules[d][r],
					    .dir = d,
					    .idx = (int)r,
					    .tier = p->tier,
					    .ref = pe->refs[d][r],
					    .action = (__u8)p->rules[d][r].action };
			for (size_t k = 0; k < cr.r->npeers; k++)
				cr.invalid_peer |= cr.r->peers[k].kind == MOAT_PEER_INVALID;
			/* fail closed on peers we do not understand */
			if (cr.invalid_peer && cr.action != MOAT_A_ALLOW)
				cr.action = MOAT_A_DENY;
			cr.rank = pol_rank(pe, (int)r);
			if (p->tier == MOAT_TIER_ADMIN) {
				cl->admin = xrealloc(cl->admin, (cl->nadmin + 1) * sizeof(cr));
				cl->admin[cl->nadmin++] = cr;
			} else if (p->tier == MOAT_TIER_NETPOL) {
				cl->np = xrealloc(cl->np, (cl->nnp + 1) * sizeof(cr));
				cl->np[cl->nnp++] = cr;
			} else {
				cl->base = xrealloc(cl->base, (cl->nbase + 1) * sizeof(cr));
				cl->base[cl->nbase++] = cr;
			}
		}
	}
	if (cl->nadmin)
		qsort(cl->admin, cl->nadmin, sizeof(struct crule), cmp_crule_rank);
	if (cl->nnp)
		qsort(cl->np, cl->nnp, sizeof(struct crule), cmp_crule_np);
	if (cl->nbase)
		qsort(cl->base, cl->nbase, sizeof(struct crule), cmp_crule_rank);
	/* the named isolating policy: the first NetworkPolicy by key */
	if (cl->isolated) {
		const struct pol_ent *first = NULL;
		for (size_t i = 0; i < s->subj_of.n; i++) {
			const struct pol_ent *pe = s->subj_of.v[i];
			if (!pe->p || pe->p->kind != MOAT_K_NETPOL || !pe->p->dir[d] ||
			    (pol_audit(pe) && !shadow))
				continue;
			if (!first || strcmp(pe->key, first->key) < 0)
				first = pe;
		}
		if (first)
			cl->iso_ref = first->iso_ref[d];
	}
}

static void clist_free(struct clist *cl)
{
	free(cl->admin);
	free(cl->np);
	free(cl->base);
}

/* What a peer is, for matching: an identity, a class row, or a region. */
struct pview {
	const struct ident *id;   /* identity dimension: NULL for class rows */
	int cls;                  /* identity dimension class */
	bool net;                 /* CIDR dimension */
	const struct region *reg; /* NULL: the class row of family */
	int family;
};

static bool crule_peer_match(const struct moat_compiler *c, const struct crule *cr, const struct pview *pv)
{
	const struct moat_rule *r = cr->r;

	if (cr->invalid_peer && cr->action == MOAT_A_ALLOW)
		return false;
	if (cr->invalid_peer)
		return !pv->net; /* Deny/Pass with an unknown peer: deny everything */
	if (r->all_peers)
		return !pv->net;
	for (size_t i = 0; i < r->npeers; i++) {
		const struct moat_peer *pr = &r->peers[i];
		const struct peerset *ps = &cr->pe->peers[cr->dir][cr->pe->peer_base[cr->dir][cr->idx] + i];
		if (!pv->net) {
			if (pr->kind != MOAT_PEER_PODS && pr->kind != MOAT_PEER_NODES)
				continue;
			if (ps->all_pods && pv->cls == MOAT_CLASS_POD)
				return true;
			if (ps->all_nodes && pv->cls == MOAT_CLASS_NODE)
				return true;
			if (pv->id && u32vec_has(&ps->ids, pv->id->id))
				return true;
			continue;
		}
		if (pr->kind != MOAT_PEER_CIDR || pr->cidr.family != pv->family)
			continue;
		if (!pv->reg) {
			/* class row: an address under none of this subject's
			 * specific prefixes: only universal CIDRs match */
			if (pr->cidr.plen == 0)
				return true;
			continue;
		}
		if (!moat_cidr_within(&pv->reg->cidr, &pr->cidr))
			continue;
		bool excepted = false;
		for (size_t e = 0; e < pr->nexcept && !excepted; e++)
			excepted = moat_cidr_within(&pv->reg->cidr, &pr->except[e]);
		if (!excepted)
			return true;
	}
	(void)c;
	return false;
}

/* port < 0: a port (or protocol) that no rule lists. */
static bool crule_port_match(const struct crule *cr, __u8 proto, int port, const struct ident *subject,
			     const struct pview *pv)
{
	const struct moat_rule *r = cr->r;

	if (!r->nports)
		return true;
	if (port < 0)
		return false;
	for (size_t i = 0; i < r->nports; i++) {
		const struct moat_port_spec *ps = &r->ports[i];
		if (ps->named) {
			/* the destination pod's port of that name */
			const struct ident *dst = cr->dir == MOAT_DIR_INGRESS ? subject :
										(pv->net ? NULL : pv->id);
			if (!dst)
				continue;
			/* NetworkPolicy names the protocol too; the admin APIs take
			 * the container port's */
			if (cr->pe->p->kind == MOAT_K_NETPOL && ps->proto != proto)
				continue;
			for (size_t k = 0; k < dst->nports; k++)
				if (dst->ports[k].name && !strcmp(dst->ports[k].name, ps->named) &&
				    dst->ports[k].proto == proto && dst->ports[k].port == port)
					return true;
			continue;
		}
		if (ps->proto != proto)
			continue;
		if (!ps->port)
			return true;
		if (ps->end_port ? (port >= ps->port && port <= ps->end_port) : port == ps->port)
			return true;
	}
	return false;
}

static bool crule_match(const struct moat_compiler *c, const struct crule *cr, __u8 proto, int port,
			const struct ident *subject, const struct pview *pv)
{
	return crule_port_match(cr, proto, port, subject, pv) && crule_peer_match(c, cr, pv);
}

static void eval(const struct moat_compiler *c, const struct clist *cl, __u8 proto, int port,
		 const struct ident *subject, const struct pview *pv, struct moat_policy_val *v)
{
	memset(v, 0, sizeof(*v));
	v->admin_rank = MOAT_RANK_NONE;
	v->base_rank = MOAT_RANK_NONE;
	for (size_t i = 0; i < cl->nadmin; i++)
		if (crule_match(c, &cl->admin[i], proto, port, subject, pv)) {
			v->admin_rank = cl->admin[i].rank;
			v->admin_rule = cl->admin[i].ref;
			v->admin_action = cl->admin[i].action;
			break;
		}
	for (size_t i = 0; i < cl->nnp; i++)
		if (crule_match(c, &cl->np[i], proto, port, subject, pv)) {
			v->np_rule = cl->np[i].ref;
			break;
		}
	for (size_t i = 0; i < cl->nbase; i++)
		if (crule_match(c, &cl->base[i], proto, port, subject, pv)) {
			v->base_rank = cl->base[i].rank;
			v->base_rule = cl->base[i].ref;
			v->base_action = cl->base[i].action;
			break;
		}
}

static bool val_empty(const struct moat_policy_val *v)
{
	return v->admin_rank == MOAT_RANK_NONE && v->base_rank == MOAT_RANK_NONE && !v->np_rule;
}

/* Port atoms of one subject, direction and protocol: exact ports, or
 * classes when ranges are involved. */
struct atoms {
	bool classes;
	size_t n;
	__u16 *port; /* exact port, or representative of class */
	__u16 *cls;  /* class id (classes mode) */
	/* classes mode: elementary intervals */
	size_t nint;
	__u16 *lo, *hi;
	__u16 *int_cls;
};

static void atoms_free(struct atoms *a)
{
	free(a->port);
	free(a->cls);
	free(a->lo);
	free(a->hi);
	free(a->int_cls);
	memset(a, 0, sizeof(*a));
}

struct span {
	__u32 lo, hi;
};

static void span_add(struct span **v, size_t *n, __u32 lo, __u32 hi)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[*n].lo = lo;
	(*v)[*n].hi = hi;
	(*n)++;
}

static void spans_of_rule(const struct crule *cr, __u8 proto, const struct ident *subject,
			  const struct u32vec *peers_for_named, const struct moat_compiler *c,
			  struct span **v, size_t *n, bool *ranged)
{
	const struct moat_rule *r = cr->r;

	for (size_t i = 0; i < r->nports; i++) {
		const struct moat_port_spec *ps = &r->ports[i];
		if (ps->named) {
			if (cr->pe->p->kind == MOAT_K_NETPOL && ps->proto != proto)
				continue;
			if (cr->dir == MOAT_DIR_INGRESS) {
				for (size_t k = 0; k < subject->nports; k++)
					if (subject->ports[k].name &&
					    !strcmp(subject->ports[k].name, ps->named) &&
					    subject->ports[k].proto == proto)
						span_add(v, n, subject->ports[k].port,
							 subject->ports[k].port);
			} else {
				for (size_t j = 0; j < peers_for_named->n; j++) {
					const struct ident *id = c->by_id[peers_for_named->v[j]];
					for (size_t k = 0; id && k < id->nports; k++)
						if (id->ports[k].name &&
						    !strcmp(id->ports[k].name, ps->named) &&
						    id->ports[k].proto == proto)
							span_add(v, n, id->ports[k].port, id->ports[k].port);
				}
			}
			continue;
		}
		if (ps->proto != proto)
			continue;
		if (!ps->port) {
			/* every port: 0 too, which a packet may carry */
			span_add(v, n, 0, 65535);
			*ranged = true;
		} else if (ps->end_port) {
			span_add(v, n, ps->port, ps->end_port);
			*ranged = true;
		} else {
			span_add(v, n, ps->port, ps->port);
		}
	}
}

static int cmp_u16(const void *a, const void *b)
{
	return (int)*(const __u16 *)a - (int)*(const __u16 *)b;
}

static void atoms_build(const struct moat_compiler *c, const struct clist *cls[2], __u8 proto,
			const struct ident *subject, const struct u32vec *mentioned, struct atoms *a)
{
	struct span *sp = NULL;
	size_t n = 0;
	bool ranged = false;

	memset(a, 0, sizeof(*a));
	for (int s = 0; s < 2; s++) {
		const struct clist *cl = cls[s];
		if (!cl)
			continue;
		const struct crule *lists[3] = { cl->admin, cl->np, cl->base };
		const size_t counts[3] = { cl->nadmin, cl->nnp, cl->nbase };
		for (int l = 0; l < 3; l++)
			for (size_t i = 0; i < counts[l]; i++)
				spans_of_rule(&lists[l][i], proto, subject, mentioned, c, &sp, &n, &ranged);
	}
	if (!n)
		return;
	if (!ranged) {
		a->port = xcalloc(n, sizeof(__u16));
		for (size_t i = 0; i < n; i++)
			a->port[i] = (__u16)sp[i].lo;
		qsort(a->port, n, sizeof(__u16), cmp_u16);
		for (size_t i = 0; i < n; i++)
			if (!a->n || a->port[a->n - 1] != a->port[i])
				a->port[a->n++] = a->port[i];
		free(sp);
		return;
	}
	/* elementary intervals from all boundaries */
	__u32 *b = xcalloc(2 * n, sizeof(__u32));
	size_t nb = 0;
	for (size_t i = 0; i < n; i++) {
		b[nb++] = sp[i].lo;
		b[nb++] = sp[i].hi + 1;
	}
	for (size_t i = 1; i < nb; i++) /* insertion sort: small */
		for (size_t j = i; j > 0 && b[j - 1] > b[j]; j--) {
			__u32 t = b[j];
			b[j] = b[j - 1];
			b[j - 1] = t;
		}
	size_t nu = 0;
	for (size_t i = 0; i < nb; i++)
		if (!nu || b[nu - 1] != b[i])
			b[nu++] = b[i];
	a->classes = true;
	a->lo = xcalloc(nu, sizeof(__u16));
	a->hi = xcalloc(nu, sizeof(__u16));
	a->int_cls = xcalloc(nu, sizeof(__u16));
	for (size_t i = 0; i + 1 < nu; i++) {
		__u32 lo = b[i], hi = b[i + 1] - 1;
		bool covered = false;
		for (size_t k = 0; k < n && !covered; k++)
			covered = sp[k].lo <= lo && sp[k].hi >= hi;
		if (!covered || lo > 65535)
			continue;
		a->lo[a->nint] = (__u16)lo;
		a->hi[a->nint] = (__u16)(hi > 65535 ? 65535 : hi);
		a->nint++;
	}
	/* each elementary interval is its own class; representative = lo */
	a->port = xcalloc(a->nint ? a->nint : 1, sizeof(__u16));
	a->cls = xcalloc(a->nint ? a->nint : 1, sizeof(__u16));
	for (size_t i = 0; i < a->nint; i++) {
		a->port[i] = a->lo[i];
		a->cls[i] = (__u16)(i + 1);
		a->int_cls[i] = (__u16)(i + 1);
	}
	a->n = a->nint;
	free(b);
	free(sp);
}

/* ---- output building -------------------------------------------------------- */
struct obuf {
	struct kv *kv;
	size_t n, cap;
};

static void obuf_add(struct obuf *o, __u8 tbl, const void *key, size_t ks, const void *val, size_t vs)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? o->cap * 2 : 64;
		o->kv = xrealloc(o->kv, o->cap * sizeof(struct kv));
	}
	memset(&o->kv[o->n], 0, sizeof(struct kv));
	o->kv[o->n].tbl = tbl;
	memcpy(o->kv[o->n].key, key, ks);
	memcpy(o->kv[o->n].val, val, vs);
	o->n++;
}

static void emit_pol(struct obuf *o, __u32 subj, __u32 peer, __u8 proto, __u16 port, __u8 flags,
		     const struct moat_policy_val *v)
{
	struct moat_policy_key k = {
		.subject = subj, .peer = peer, .port = port, .proto = proto, .flags = flags
	};
	obuf_add(o, MOAT_T_POL, &k, sizeof(k), v, sizeof(*v));
}

/* LPM prefixes covering [lo, hi]. */
static void emit_range(struct obuf *o, __u32 subj, int d, __u8 proto, __u32 lo, __u32 hi, __u16 cls)
{
	while (lo <= hi) {
		int bits = 0;
		while (bits < 16) {
			__u32 size = 1u << (bits + 1);
			if ((lo & (size - 1)) || lo + size - 1 > hi)
				break;
			bits++;
		}
		struct moat_port_key k = { .prefixlen = MOAT_PORT_KEY_FIXED_BITS + 16 - bits,
					   .subject = htonl(subj),
					   .dir = (__u8)d,
					   .proto = proto,
					   .port = htons((__u16)lo) };
		struct moat_port_class v = { .cls = cls };
		obuf_add(o, MOAT_T_PORTS, &k, sizeof(k), &v, sizeof(v));
		lo += 1u << bits;
		if (lo == 0)
			break;
	}
}

static const __u8 l4protos[3] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP };

/* Compiles one row (a peer or a class) into entries.  cmp (may be NULL) is
 * the class row it would fall back to: a row equal to it is not emitted. */
static bool row_emit(const struct moat_compiler *c, struct obuf *o, const struct clist *cl,
		     const struct ident *s, __u8 kflags, const struct pview *pv, __u32 peer,
		     struct atoms at[3], const struct pview *cmp, bool always)
{
	struct moat_policy_val any, v, cv;
	size_t mark = o->n;
	bool differs = always;

	eval(c, cl, 0, -1, s, pv, &any);
	if (cmp) {
		eval(c, cl, 0, -1, s, cmp, &cv);
		differs |= memcmp(&any, &cv, sizeof(any)) != 0;
	}
	for (int pi = 0; pi < 3; pi++) {
		for (size_t i = 0; i < at[pi].n; i++) {
			eval(c, cl, l4protos[pi], at[pi].port[i], s, pv, &v);
			if (cmp && !differs) {
				eval(c, cl, l4protos[pi], at[pi].port[i], s, cmp, &cv);
				differs |= memcmp(&v, &cv, sizeof(v)) != 0;
			}
			if (!memcmp(&v, &any, sizeof(v)))
				continue;
			emit_pol(o, s->id, peer, l4protos[pi],
				 at[pi].classes ? at[pi].cls[i] : at[pi].port[i],
				 kflags | (at[pi].classes ? MOAT_PK_PORTCLASS : 0), &v);
		}
	}
	if (!differs && cmp) {
		o->n = mark; /* same as the class row: nothing to say */
		return false;
	}
	if (val_empty(&any) && o->n == mark && !cmp)
		return false;
	emit_pol(o, s->id, peer, 0, 0, kflags, &any);
	return true;
}

static void compile_dir(const struct moat_compiler *c, const struct ident *s, int d, struct obuf *o,
			struct moat_subject_dir *sd)
{
	struct clist en, sh;
	const struct clist *both[2];
	struct u32vec mentioned = { 0 };
	struct atoms at[3];
	bool has_audit, all_pods = false;

	clist_build(s, d, false, &en);
	clist_build(s, d, true, &sh);
	has_audit = sh.nadmin != en.nadmin || sh.nnp != en.nnp || sh.nbase != en.nbase ||
		    sh.isolated != en.isolated || sh.active != en.active;
	memset(sd, 0, sizeof(*sd));
	if (!en.active && !sh.active)
		goto out;

	/* identities named by specific peers (any list, enforced or audit) */
	{
		const struct crule *lists[3] = { sh.admin, sh.np, sh.base };
		const size_t counts[3] = { sh.nadmin, sh.nnp, sh.nbase };
		for (int l = 0; l < 3; l++)
			for (size_t i = 0; i < counts[l]; i++) {
				const struct crule *cr = &lists[l][i];
				size_t base = cr->pe->peer_base[d][cr->idx];
				for (size_t k = 0; k < cr->r->npeers; k++)
					u32vec_union(&mentioned, &cr->pe->peers[d][base + k].ids);
				/* an egress named port with "any peer" resolves per
				 * destination pod: every pod needs its own row */
				if (d == MOAT_DIR_EGRESS && cr->r->all_peers && rule_has_named(cr->r))
					all_pods = true;
			}
		if (all_pods) {
			for (__u32 k = 0; k < c->next_id; k++)
				if (c->by_id[k] && !c->by_id[k]->dead && c->by_id[k]->cls == MOAT_CLASS_POD)
					u32vec_push(&mentioned, k);
			u32vec_sort_unique(&mentioned);
		}
	}
	both[0] = &sh; /* shadow holds every rule: atoms cover both tables */
	both[1] = NULL;
	for (int pi = 0; pi < 3; pi++) {
		atoms_build(c, both, l4protos[pi], s, &mentioned, &at[pi]);
		if (at[pi].classes) {
			sd->flags |= pi == 0 ? MOAT_SUBJ_RANGE_TCP :
				     pi == 1 ? MOAT_SUBJ_RANGE_UDP :
					       MOAT_SUBJ_RANGE_SCTP;
			for (size_t i = 0; i < at[pi].nint; i++)
				emit_range(o, s->id, d, l4protos[pi], at[pi].lo[i], at[pi].hi[i],
					   at[pi].int_cls[i]);
		}
	}

	for (int pass = 0; pass < 2; pass++) {
		const struct clist *cl = pass ? &sh : &en;
		__u8 kf = (d ? MOAT_PK_EGRESS : 0) | (pass ? MOAT_PK_AUDIT : 0);
		bool nets = false;

		if (pass && !has_audit)
			break;
		if (!cl->active)
			continue;
		if (!pass) {
			sd->flags |= MOAT_SUBJ_ACTIVE;
			if (cl->isolated) {
				sd->flags |= MOAT_SUBJ_ISOLATED;
				sd->isolate_rule = cl->iso_ref;
			}
		} else {
			sd->flags |= MOAT_SUBJ_AUDIT | MOAT_SUBJ_AUDIT_ACTIVE;
			if (cl->isolated) {
				sd->flags |= MOAT_SUBJ_AUDIT_ISOLATED;
				sd->audit_isolate_rule = cl->iso_ref;
			}
		}

		/* identity dimension: class rows, then specific identities */
		static const int classes[] = { MOAT_CLASS_POD, MOAT_CLASS_NODE, MOAT_CLASS_WORLD };
		for (size_t k = 0; k < 3; k++) {
			struct pview pv = { .cls = classes[k] };
			row_emit(c, o, cl, s, kf, &pv, MOAT_PEER_CLASS(classes[k]), at, NULL, false);
		}
		for (size_t i = 0; i < mentioned.n; i++) {
			const struct ident *p = c->by_id[mentioned.v[i]];
			if (!p || p->dead)
				continue;
			struct pview pv = { .id = p, .cls = p->cls };
			struct pview cpv = { .cls = p->cls };
			row_emit(c, o, cl, s, kf, &pv, p->id, at, &cpv, false);
		}

		/* CIDR dimension */
		{
			const struct crule *lists[3] = { cl->admin, cl->np, cl->base };
			const size_t counts[3] = { cl->nadmin, cl->nnp, cl->nbase };
			bool any_cidr = false;
			for (int l = 0; l < 3 && !any_cidr; l++)
				for (size_t i = 0; i < counts[l] && !any_cidr; i++)
					for (size_t k = 0; k < lists[l][i].r->npeers; k++)
						any_cidr |= lists[l][i].r->peers[k].kind == MOAT_PEER_CIDR;
			if (any_cidr) {
				for (int fam = 4; fam <= 6; fam += 2) {
					struct pview pv = { .net = true, .family = fam };
					nets |= row_emit(c, o, cl, s, kf | MOAT_PK_NET, &pv,
							 fam == 4 ? MOAT_PEER_NET4 : MOAT_PEER_NET6, at, NULL,
							 false);
				}
				for (__u32 r = 0; r < c->nregion_ids; r++) {
					const struct region *rg = c->region_by_id[r];
					bool specific = false;
					if (!rg)
						continue;
					for (int l = 0; l < 3 && !specific; l++)
						for (size_t i = 0; i < counts[l] && !specific; i++)
							for (size_t k = 0;
							     k < lists[l][i].r->npeers && !specific; k++) {
								const struct moat_peer *pr =
									&lists[l][i].r->peers[k];
								if (pr->kind != MOAT_PEER_CIDR ||
								    pr->cidr.family != rg->cidr.family)
									continue;
								if (pr->cidr.plen &&
								    moat_cidr_within(&rg->cidr, &pr->cidr))
									specific = true;
								for (size_t e = 0;
								     e < pr->nexcept && !specific; e++)
									specific = moat_cidr_within(
										&rg->cidr, &pr->except[e]);
							}
					if (!specific)
						continue;
					struct pview pv = { .net = true,
							    .reg = rg,
							    .family = rg->cidr.family };
					struct pview cpv = { .net = true, .family = rg->cidr.family };
					nets |= row_emit(c, o, cl, s, kf | MOAT_PK_NET, &pv, rg->id, at, &cpv,
							 false);
				}
			}
		}
		if (nets)
			sd->flags |= pass ? MOAT_SUBJ_AUDIT_NETS : MOAT_SUBJ_NETS;
	}
	for (int pi = 0; pi < 3; pi++)
		atoms_free(&at[pi]);
out:
	u32vec_free(&mentioned);
	clist_free(&en);
	clist_free(&sh);
}

static int cmp_kv(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;
	if (x->tbl != y->tbl)
		return x->tbl - y->tbl;
	return memcmp(x->key, y->key, sizeof(x->key));
}

static struct out *compile_subject(const struct moat_compiler *c, const struct ident *s)
{
	struct out *ou = xcalloc(1, sizeof(*ou));
	struct obuf o = { 0 };

	if (s->cls == MOAT_CLASS_POD && !s->dead) {
		const struct moat_namespace *ns = s->ns && s->ns->obj ? s->ns->obj->u.namespace : NULL;
		compile_dir(c, s, MOAT_DIR_INGRESS, &o, &ou->subj.dir[0]);
		compile_dir(c, s, MOAT_DIR_EGRESS, &o, &ou->subj.dir[1]);
		/* the namespace's sampling rides on its pods' subject entries */
		for (int d = 0; ns && ns->has_sample && d < 2; d++) {
			ou->subj.dir[d].flags |= MOAT_SUBJ_SAMPLE;
			ou->subj.dir[d].sample_every = ns->sample_every;
		}
	}
	if (o.n)
		qsort(o.kv, o.n, sizeof(struct kv), cmp_kv);
	/* duplicate keys cannot happen by construction, but keep the last */
	ou->kv = o.kv;
	ou->n = o.n;
	return ou;
}

static void out_free(struct out *o)
{
	if (!o)
		return;
	free(o->kv);
	free(o);
}

static size_t out_count(const struct out *o, __u8 tbl)
{
	size_t n = 0;
	for (size_t i = 0; o && i < o->n; i++)
		n += o->kv[i].tbl == tbl;
	return n;
}

/* Emits the difference old -> new into tx. */
static int out_diff(struct moat_tx *tx, __u32 id, const struct out *old, const struct out *nw, size_t *ops)
{
	size_t i = 0, j = 0;
	static const struct out empty;
	int err = 0;

	if (!old)
		old = &empty;
	if (!nw)
		nw = &empty;
	while (!err && (i < old->n || j < nw->n)) {
		int cmp;
		if (i >= old->n)
			cmp = 1;
		else if (j >= nw->n)
			cmp = -1;
		else
			cmp = cmp_kv(&old->kv[i], &nw->kv[j]);
		if (cmp < 0) {
			err = moat_tx_del(tx, old->kv[i].tbl, old->kv[i].key);
			i++;
			(*ops)++;
		} else if (cmp > 0) {
			err = moat_tx_put(tx, nw->kv[j].tbl, nw->kv[j].key, nw->kv[j].val);
			j++;
			(*ops)++;
		} else {
			if (memcmp(old->kv[i].val, nw->kv[j].val, sizeof(old->kv[i].val))) {
				err = moat_tx_put(tx, nw->kv[j].tbl, nw->kv[j].key, nw->kv[j].val);
				(*ops)++;
			}
			i++;
			j++;
		}
	}
	if (!err && memcmp(&old->subj, &nw->subj, sizeof(old->subj))) {
		err = moat_tx_put(tx, MOAT_T_SUBJ, &id, &nw->subj);
		(*ops)++;
	}
	return err;
}

/* ---- objects ----------------------------------------------------------------- */
static void pod_ips(struct moat_compiler *c, struct pod_ent *pe, bool add)
{
	const struct moat_pod *p = pe->obj->u.pod;

	if (p->host_network)
		return;
	for (size_t i = 0; i < p->nips; i++) {
		struct ip_ent *e = ip_get(c, &p->ips[i], true);
		if (add)
			ptrvec_push(&e->pods, pe);
		else
			ptrvec_remove(&e->pods, pe);
		ip_refresh(c, e);
	}
}

static void pod_endpoint(struct moat_compiler *c, struct pod_ent *pe, bool add)
{
	const struct moat_pod *p = pe->obj ? pe->obj->u.pod : NULL;
	struct moat_endpoint ep;
	__u32 k;

	if (!pe->ifindex)
		return;
	k = (__u32)pe->ifindex;
	if (!add || !p || !pe->ident) {
		cell_set(c, MOAT_T_EP, &k, NULL);
		return;
	}
	memset(&ep, 0, sizeof(ep));
	ep.identity = pe->ident->id;
	ep.flags = MOAT_EP_F_VALID;
	for (size_t i = 0; i < p->nips; i++) {
		if (p->ips[i].family == 4 && !(ep.flags & MOAT_EP_F_HAS_IP4)) {
			memcpy(&ep.ip4, p->ips[i].a, 4);
			ep.region4 = region_of(c, &p->ips[i]);
			ep.flags |= MOAT_EP_F_HAS_IP4;
		} else if (p->ips[i].family == 6 && !(ep.flags & MOAT_EP_F_HAS_IP6)) {
			memcpy(ep.ip6, p->ips[i].a, 16);
			ep.region6 = region_of(c, &p->ips[i]);
			ep.flags |= MOAT_EP_F_HAS_IP6;
		}
	}
	cell_set(c, MOAT_T_EP, &k, &ep);
}

static int pod_attach(struct moat_compiler *c, struct pod_ent *pe)
{
	const struct moat_pod *p = pe->obj->u.pod;
	struct ns_ent *n = ns_get(c, p->ns, true);
	int err = 0;

	if (!p->host_network) {
		size_t klen, np;
		struct moat_cport *ports;
		char *key = pod_ident_key(p, &klen, &ports, &np);
		struct ident *id = ident_get(c, key, klen, MOAT_CLASS_POD, &err);
		if (!id) {
			for (size_t i = 0; i < np; i++)
				free(ports[i].name);
			free(ports);
			return err;
		}
		if (!id->npods && !id->labels.n && !id->ns) {
			id->ns = n;
			moat_labels_copy(&id->labels, &p->labels);
			id->ports = ports;
			id->nports = np;
			ptrvec_push(&n->idents, id);
		} else {
			for (size_t i = 0; i < np; i++)
				free(ports[i].name);
			free(ports);
			if (!id->ns) {
				id->ns = n;
				ptrvec_push(&n->idents, id);
			}
		}
		id->npods++;
		pe->ident = id;
	}
	pod_ips(c, pe, true);
	pod_endpoint(c, pe, true);
	return 0;
}

static void pod_detach(struct moat_compiler *c, struct pod_ent *pe)
{
	pod_endpoint(c, pe, false);
	pod_ips(c, pe, false);
	if (pe->ident)
		ident_unref(c, pe->ident);
	pe->ident = NULL;
}

static void node_ips(struct moat_compiler *c, struct node_ent *ne, bool add)
{
	const struct moat_node *n = ne->obj->u.node;

	for (size_t i = 0; i < n->naddrs; i++) {
		struct ip_ent *e = ip_get(c, &n->addrs[i], true);
		if (add)
			ptrvec_push(&e->nodes, ne);
		else
			ptrvec_remove(&e->nodes, ne);
		ip_refresh(c, e);
	}
}

static void svc_ips(struct moat_compiler *c, struct moat_object *o, bool add)
{
	const struct moat_service *s = o->u.service;

	for (size_t i = 0; i < s->nips; i++) {
		struct ip_ent *e = ip_get(c, &s->ips[i], true);
		if (add)
			ptrvec_push(&e->svcs, o);
		else
			ptrvec_remove(&e->svcs, o);
		ip_refresh(c, e);
	}
}

static int cmp_pol_name(const void *a, const void *b)
{
	const struct pol_ent *x = *(struct pol_ent *const *)a, *y = *(struct pol_ent *const *)b;
	int r = strcmp(x->p->name, y->p->name);
	return r ? r : strcmp(x->key, y->key);
}

/* Ordinals: among policies of one tier and priority, by name (then kind):
 * the documented deterministic tie-break. */
static void ordinals_refresh(struct moat_compiler *c, int tier, __u32 prio)
{
	struct ptrvec same = { 0 };

	for (size_t i = 0; i < c->cluster_pols.n; i++) {
		struct pol_ent *pe = c->cluster_pols.v[i];
		__u32 pp;
		if (!pe->p || pe->p->tier != tier || tier == MOAT_TIER_NETPOL)
			continue;
		pp = pe->p->kind == MOAT_K_BANP ? TIER_PRIO_BANP : (__u32)pe->p->priority;
		if (pp == prio)
			ptrvec_push(&same, pe);
	}
	if (same.n > 1)
		qsort(same.v, same.n, sizeof(void *), cmp_pol_name);
	for (size_t i = 0; i < same.n; i++) {
		struct pol_ent *pe = same.v[i];
		if (pe->ordinal != i) {
			pe->ordinal = (__u32)i;
			mark_pol_subjects(c, pe);
		}
	}
	ptrvec_free(&same);
}

static void pol_refs(struct moat_compiler *c, struct pol_ent *pe, const struct moat_policy *oldp)
{
	const struct moat_policy *p = pe->p;

	/* release references of rules that no longer exist */
	if (oldp) {
		for (int d = 0; d < 2; d++) {
			size_t keep = p ? p->nrules[d] : 0;
			for (size_t r = keep; r < oldp->nrules[d]; r++)
				ref_put(c, pe, d, (int)r);
			if (!p || (oldp->kind == MOAT_K_NETPOL && !p->dir[d]))
				ref_put(c, pe, d, RULE_ISOLATION);
		}
	}
	for (int d = 0; d < 2; d++) {
		free(pe->refs[d]);
		pe->refs[d] = NULL;
		pe->iso_ref[d] = 0;
		if (!p)
			continue;
		pe->refs[d] = xcalloc(p->nrules[d] ? p->nrules[d] : 1, sizeof(__u32));
		for (size_t r = 0; r < p->nrules[d]; r++)
			pe->refs[d][r] = ref_get(c, pe, d, (int)r);
		if (p->kind == MOAT_K_NETPOL && p->dir[d])
			pe->iso_ref[d] = ref_get(c, pe, d, RULE_ISOLATION);
	}
}

static __u32 pol_prio(const struct moat_policy *p)
{
	return p->kind == MOAT_K_BANP ? TIER_PRIO_BANP : (__u32)p->priority;
}

static void undo_push(struct moat_compiler *c, const char *key, struct moat_object *old)
{
	struct undo *u;

	if (c->replaying) {
		moat_object_free(old);
		return;
	}
	u = xcalloc(1, sizeof(*u));
	u->key = xstrdup(key);
	u->old = old;
	ptrvec_push(&c->undo, u);
}

static bool policy_cross_ns(const struct moat_policy *p)
{
	for (int d = 0; d < 2; d++)
		for (size_t r = 0; r < p->nrules[d]; r++) {
			/* a named port to any peer: every pod of every namespace
			 * gets its own row (any_named_egress) */
			if (d == MOAT_DIR_EGRESS && p->rules[d][r].all_peers &&
			    rule_has_named(&p->rules[d][r]))
				return true;
			for (size_t k = 0; k < p->rules[d][r].npeers; k++) {
				const struct moat_peer *pr = &p->rules[d][r].peers[k];
				if ((pr->kind == MOAT_PEER_PODS && pr->ns_sel) || pr->kind == MOAT_PEER_NODES)
					return true;
			}
		}
	return false;
}

/* The lists that say which policies an identity change can affect. */
static void pol_index(struct moat_compiler *c, struct pol_ent *pe, const struct moat_policy *p, bool add)
{
	struct ptrvec *v;

	if (!p)
		return;
	if (p->kind == MOAT_K_NETPOL) {
		v = &ns_get(c, p->ns, true)->np_pols;
		if (add)
			ptrvec_push(v, pe);
		else
			ptrvec_remove(v, pe);
		if (add ? policy_cross_ns(p) : pe->cross_ns) {
			if (add)
				ptrvec_push(&c->xns_pols, pe);
			else
				ptrvec_remove(&c->xns_pols, pe);
		}
		if (add)
			pe->cross_ns = policy_cross_ns(p);
		return;
	}
	if (add)
		ptrvec_push(&c->cluster_pols, pe);
	else
		ptrvec_remove(&c->cluster_pols, pe);
}

static int apply_policy(struct moat_compiler *c, struct moat_object *obj, const char *key)
{
	struct pol_ent *pe = hmap_gets(&c->pols, key);
	struct moat_policy *oldp = NULL;
	struct moat_object *oldobj = NULL;

	if (!pe) {
		pe = xcalloc(1, sizeof(*pe));
		pe->key = xstrdup(key);
		hmap_put(&c->pols, pe->key, strlen(pe->key), pe, NULL);
	} else {
		oldobj = pe->obj;
		oldp = pe->p;
	}
	if (oldp) {
		policy_regions(c, oldp, false);
		pol_index(c, pe, oldp, false);
	}
	pe->obj = obj;
	pe->p = obj ? obj->u.policy : NULL;
	if (pe->p) {
		/* a Namespace in audit mode puts its NetworkPolicies in audit */
		pe->ns_audit = false;
		if (pe->p->kind == MOAT_K_NETPOL) {
			struct ns_ent *n = ns_get(c, pe->p->ns, true);
			pe->ns_audit = n->obj && n->obj->u.namespace->audit;
		}
		policy_regions(c, pe->p, true);
		pol_index(c, pe, pe->p, true);
	}
	pol_refs(c, pe, oldp);
	if (oldp && oldp->tier != MOAT_TIER_NETPOL)
		ordinals_refresh(c, oldp->tier, pol_prio(oldp));
	if (pe->p && pe->p->tier != MOAT_TIER_NETPOL)
		ordinals_refresh(c, pe->p->tier, pol_prio(pe->p));
	undo_push(c, key, oldobj);
	if (pe->p) {
		/* selections are computed at the flush, once every object of the
		 * batch is in: thousands of policies arriving together are
		 * evaluated once, not once per identity */
		mark_select(c, pe);
		return 0;
	}
	/* deleted: its subjects lose it now (the entry goes away) */
	pol_select(c, pe);
	ptrvec_remove(&c->dirty_pols, pe);
	hmap_del(&c->pols, pe->key, strlen(pe->key));
	pol_free_sets(pe);
	u32vec_free(&pe->subjects);
	free(pe->refs[0]);
	free(pe->refs[1]);
	free(pe->key);
	free(pe);
	return 0;
}

static int apply_pod(struct moat_compiler *c, struct moat_object *obj, const char *key, const char *fullkey)
{
	struct pod_ent *pe = hmap_gets(&c->pods, key);
	struct moat_object *old = NULL;
	int ifindex = 0, err;

	if (pe) {
		ifindex = pe->ifindex;
		pod_detach(c, pe);
		old = pe->obj;
	}
	if (!obj) {
		if (pe) {
			hmap_del(&c->pods, pe->key, strlen(pe->key));
			free(pe->key);
			free(pe);
		}
		undo_push(c, fullkey, old);
		return 0;
	}
	if (!pe) {
		pe = xcalloc(1, sizeof(*pe));
		pe->key = xstrdup(key);
		hmap_put(&c->pods, pe->key, strlen(pe->key), pe, NULL);
	}
	pe->obj = obj;
	pe->ifindex = ifindex;
	err = pod_attach(c, pe);
	if (err) {
		/* could not give it an identity: keep the old object */
		pe->obj = old;
		if (old)
			pod_attach(c, pe);
		else {
			hmap_del(&c->pods, pe->key, strlen(pe->key));
			free(pe->key);
			free(pe);
		}
		moat_object_free(obj);
		return err;
	}
	undo_push(c, fullkey, old);
	return 0;
}

static int apply_namespace(struct moat_compiler *c, struct moat_object *obj, const char *name,
			   const char *key)
{
	struct ns_ent *n = ns_get(c, name, true);
	struct moat_object *old = n->obj;
	bool audit_changed;

	n->obj = obj;
	ns_eff_refresh(n);
	c->bp_dirty = true;
	audit_changed = (old && old->u.namespace->audit) != (obj && obj->u.namespace->audit);
	for (size_t i = 0; i < n->idents.n; i++)
		mark_reselect(c, n->idents.v[i]);
	/* cluster policies select namespaces by label: their subjects and
	 * peers may change */
	for (size_t i = 0; audit_changed && i < n->np_pols.n; i++) {
		struct pol_ent *pe = n->np_pols.v[i];
		pe->ns_audit = obj && obj->u.namespace->audit;
		pol_refs(c, pe, pe->p);
		mark_pol_subjects(c, pe);
	}
	undo_push(c, key, old);
	return 0;
}

static int apply_node(struct moat_compiler *c, struct moat_object *obj, const char *name, const char *key)
{
	struct node_ent *ne = hmap_gets(&c->nodes, name);
	struct moat_object *old = NULL;
	int err = 0;

	if (ne) {
		old = ne->obj;
		node_ips(c, ne, false);
		if (ne->ident) {
			ident_unref(c, ne->ident);
			ne->ident = NULL;
		}
	}
	if (!obj) {
		if (ne) {
			hmap_del(&c->nodes, ne->name, strlen(ne->name));
			free(ne->name);
			free(ne);
		}
		undo_push(c, key, old);
		return 0;
	}
	if (!ne) {
		ne = xcalloc(1, sizeof(*ne));
		ne->name = xstrdup(name);
		hmap_put(&c->nodes, ne->name, strlen(ne->name), ne, NULL);
	}
	ne->obj = obj;
	{
		/* one identity per node (labels are part of the key) */
		char *buf = NULL;
		size_t len = 0, cap = 0;
		const struct moat_node *n = obj->u.node;
		key_add(&buf, &len, &cap, "node", 4);
		key_add(&buf, &len, &cap, name, strlen(name));
		for (size_t i = 0; i < n->labels.n; i++) {
			key_add(&buf, &len, &cap, n->labels.kv[i].key, strlen(n->labels.kv[i].key));
			key_add(&buf, &len, &cap, n->labels.kv[i].value, strlen(n->labels.kv[i].value));
		}
		struct ident *id = ident_get(c, buf, len, MOAT_CLASS_NODE, &err);
		if (id) {
			if (!id->npods)
				moat_labels_copy(&id->labels, &n->labels);
			id->node = ne;
			id->npods++;
			ne->ident = id;
		}
	}
	node_ips(c, ne, true);
	undo_push(c, key, old);
	return err;
}

static int apply_service(struct moat_compiler *c, struct moat_object *obj, const char *key)
{
	struct moat_object *old = hmap_gets(&c->svcs, key);
	char *k;

	if (old) {
		svc_ips(c, old, false);
		const void *sk;
		size_t it = 0, kl;
		void *v;
		while (hmap_next(&c->svcs, &it, &sk, &kl, &v))
			if (v == old) {
				hmap_del(&c->svcs, sk, kl);
				free((void *)sk);
				break;
			}
	}
	if (obj) {
		k = xstrdup(key);
		hmap_put(&c->svcs, k, strlen(k), obj, NULL);
		svc_ips(c, obj, true);
	}
	undo_push(c, key, old);
	return 0;
}

/* ---- blueprints ------------------------------------------------------------------ */
static int dispatch(struct moat_compiler *c, const char *key, struct moat_object *obj);

struct bp_inst {
	char *key;       /* Kind/ns/name of the instance */
	uint64_t digest; /* of the instantiated document */
};

struct bp_error {
	char *blueprint;
	char *ns; /* NULL: not about one namespace */
	char *msg;
};

static void bp_errors_clear(struct moat_compiler *c)
{
	for (size_t i = 0; i < c->bp_errors.n; i++) {
		struct bp_error *e = c->bp_errors.v[i];
		free(e->blueprint);
		free(e->ns);
		free(e->msg);
		free(e);
	}
	c->bp_errors.n = 0;
}

static void bp_error(struct moat_compiler *c, const char *bp, const char *ns, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void bp_error(struct moat_compiler *c, const char *bp, const char *ns, const char *fmt, ...)
{
	struct bp_error *e = xcalloc(1, sizeof(*e));
	char msg[800];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->blueprint = xstrdup(bp);
	/* cppcheck-suppress ctunullpointer ; xstrdup(NULL) is NULL (hostd/util.c) */
	e->ns = xstrdup(ns);
	e->msg = xstrdup(msg);
	ptrvec_push(&c->bp_errors, e);
}

static void bp_inst_map_free(struct hmap *m)
{
	size_t it = 0;
	void *v;

	while (hmap_next(m, &it, NULL, NULL, &v)) {
		struct bp_inst *bi = v;
		free(bi->key);
		free(bi);
	}
	hmap_free(m);
}

static struct hmap *bp_inst_map_copy(const struct hmap *m)
{
	struct hmap *r = xcalloc(1, sizeof(*r));
	size_t it = 0;
	void *v;

	hmap_init(r);
	while (hmap_next(m, &it, NULL, NULL, &v)) {
		struct bp_inst *bi = xcalloc(1, sizeof(*bi));
		bi->key = xstrdup(((struct bp_inst *)v)->key);
		bi->digest = ((struct bp_inst *)v)->digest;
		hmap_put(r, bi->key, strlen(bi->key), bi, NULL);
	}
	return r;
}

static int cmp_bp(const void *a, const void *b)
{
	const struct moat_blueprint *x = *(struct moat_blueprint *const *)a;
	const struct moat_blueprint *y = *(struct moat_blueprint *const *)b;
	return strcmp(x->name, y->name);
}

/* Blueprints sorted by name: messages and instances come out in a stable
 * order. */
static struct moat_blueprint **bp_sorted(const struct moat_compiler *c, size_t *n)
{
	struct moat_blueprint **v = xcalloc(c->bps.n + 1, sizeof(*v));
	size_t it = 0, k = 0;
	void *val;

	while (hmap_next(&c->bps, &it, NULL, NULL, &val))
		v[k++] = ((struct moat_object *)val)->u.blueprint;
	qsort(v, k, sizeof(*v), cmp_bp);
	*n = k;
	return v;
}

static const struct moat_labels *ns_bp_annotations(const struct ns_ent *n)
{
	return n->obj ? &n->obj->u.namespace->bp_annotations : NULL;
}

/* The version of bp namespace n runs, NULL if bp does not select it. */
static const struct moat_bp_version *bp_running(const struct moat_blueprint *bp, const struct ns_ent *n,
						bool *pinned, char *err, size_t errlen)
{
	const struct moat_bp_version *v;

	err[0] = 0;
	*pinned = false;
	if (!moat_selector_matches(bp->ns_sel, ns_base_labels(n)))
		return NULL;
	moat_bp_effective(bp, ns_bp_annotations(n), &v, pinned, err, errlen);
	return v;
}

static uint64_t json_digest(const json_t *doc)
{
	char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	uint64_t h = s ? moat_hash(s, strlen(s), 0) : 0;

	free(s);
	return h;
}

struct bp_want {
	char *key;
	char *name;  /* instance name */
	json_t *doc; /* NULL: keep whatever is there (it failed) */
	const char *bp;
	const char *ns;
};

static void want_put(struct hmap *w, char *key, char *name, json_t *doc, const char *bp, const char *ns)
{
	struct bp_want *x = xcalloc(1, sizeof(*x));

	x->key = key;
	x->name = name;
	x->doc = doc;
	x->bp = bp;
	x->ns = ns;
	hmap_put(w, x->key, strlen(x->key), x, NULL);
}

/* Sets the blueprint labels of every namespace from what its blueprints
 * say; with instantiate, also brings the instances in line (through
 * dispatch, so an abort takes them back). */
static void bp_reconcile(struct moat_compiler *c, bool instantiate)
{
	size_t nbp, it = 0;
	struct moat_blueprint **bps = bp_sorted(c, &nbp);
	bool *used = NULL;
	size_t used_stride = MOAT_BP_MAX_VERSIONS;
	struct hmap want;
	void *v;
	char err[800];

	hmap_init(&want);
	if (instantiate)
		bp_errors_clear(c);
	used = xcalloc(nbp * used_stride + 1, sizeof(*used));
	while (hmap_next(&c->nss, &it, NULL, NULL, &v)) {
		struct ns_ent *n = v;
		struct moat_labels nb = { 0 };

		for (size_t b = 0; b < nbp; b++) {
			const struct moat_blueprint *bp = bps[b];
			const struct moat_bp_version *ver;
			bool pinned;
			char lk[MOAT_MAX_LABEL_KEY + 1];

			ver = bp_running(bp, n, &pinned, err, sizeof(err));
			if (!ver)
				continue;
			if (err[0] && instantiate)
				bp_error(c, bp->name, n->name, "Namespace %s: %s", n->name, err);
			snprintf(lk, sizeof(lk), "%s%s", MOAT_BP_PREFIX, bp->name);
			moat_labels_set(&nb, lk, ver->version);
			used[b * used_stride + (size_t)(ver - bp->versions)] = true;
			for (size_t t = 0; instantiate && t < ver->nnp; t++) {
				char *name = moat_bp_np_name(bp, &ver->np[t]);
				char *key = xasprintf("NetworkPolicy/%s/%s", n->name, name);
				json_t *doc = NULL;
				if (moat_bp_instantiate_np(bp, ver, &ver->np[t], n->name,
							   ns_bp_annotations(n), &doc, err, sizeof(err)))
					bp_error(
						c, bp->name, n->name,
						"NetworkPolicy %s/%s (spec.versions[%s].networkPolicies[%zu]): %s",
						n->name, name, ver->version, t, err);
				want_put(&want, key, name, doc, bp->name, n->name);
			}
		}
		if (!moat_labels_equal(&nb, &n->bpl)) {
			moat_labels_free(&n->bpl);
			n->bpl = nb;
			ns_eff_refresh(n);
			for (size_t i = 0; i < n->idents.n; i++)
				mark_reselect(c, n->idents.v[i]);
		} else {
			moat_labels_free(&nb);
		}
	}
	for (size_t b = 0; instantiate && b < nbp; b++) {
		const struct moat_blueprint *bp = bps[b];
		for (size_t vi = 0; vi < bp->nversions; vi++) {
			const struct moat_bp_version *ver = &bp->versions[vi];
			if (!used[b * used_stride + vi])
				continue;
			for (size_t t = 0; t < ver->ncnp; t++) {
				char *name = moat_bp_cnp_name(bp, ver, &ver->cnp[t]);
				char *key = xasprintf("ClusterNetworkPolicy/%s", name);
				json_t *doc = NULL;
				if (moat_bp_instantiate_cnp(bp, ver, &ver->cnp[t], true, &doc, err,
							    sizeof(err)))
					bp_error(c, bp->name, NULL, "ClusterNetworkPolicy %s: %s", name, err);
				want_put(&want, key, name, doc, bp->name, NULL);
			}
		}
	}
	free(used);
	free(bps);
	if (!instantiate) {
		hmap_free(&want);
		return;
	}
	/* new and changed instances */
	it = 0;
	while (hmap_next(&want, &it, NULL, NULL, &v)) {
		struct bp_want *w = v;
		struct bp_inst *bi = hmap_gets(&c->bp_inst, w->key);
		struct moat_object *o = NULL;
		uint64_t dg;

		if (!w->doc)
			continue;
		dg = json_digest(w->doc);
		if (bi && bi->digest == dg)
			continue;
		if (moat_bp_object(w->doc, w->name, &o, err, sizeof(err))) {
			/* a namespace's parameters can make an instance invalid:
			 * its last good instance stays */
			const char *rest = strstr(err, ": ");
			bp_error(c, w->bp, w->ns, "%s %s: %s",
				 w->ns ? "NetworkPolicy" : "ClusterNetworkPolicy",
				 w->key + strlen(w->ns ? "NetworkPolicy/" : "ClusterNetworkPolicy/"),
				 rest ? rest + 2 : err);
			continue;
		}
		if (!bi) {
			bi = xcalloc(1, sizeof(*bi));
			bi->key = xstrdup(w->key);
			hmap_put(&c->bp_inst, bi->key, strlen(bi->key), bi, NULL);
		}
		bi->digest = dg;
		dispatch(c, w->key, o);
	}
	/* instances no longer wanted */
	{
		struct ptrvec gone = { 0 };
		it = 0;
		while (hmap_next(&c->bp_inst, &it, NULL, NULL, &v))
			if (!hmap_gets(&want, ((struct bp_inst *)v)->key))
				ptrvec_push(&gone, v);
		for (size_t i = 0; i < gone.n; i++) {
			struct bp_inst *bi = gone.v[i];
			hmap_del(&c->bp_inst, bi->key, strlen(bi->key));
			if (hmap_gets(&c->pols, bi->key))
				dispatch(c, bi->key, NULL);
			free(bi->key);
			free(bi);
		}
		ptrvec_free(&gone);
	}
	it = 0;
	while (hmap_next(&want, &it, NULL, NULL, &v)) {
		struct bp_want *w = v;
		json_decref(w->doc);
		free(w->name);
		free(w->key);
		free(w);
	}
	hmap_free(&want);
}

static int apply_blueprint(struct moat_compiler *c, struct moat_object *obj, const char *name,
			   const char *key)
{
	struct moat_object *old = NULL;

	if (obj)
		hmap_put(&c->bps, obj->name, strlen(obj->name), obj, (void **)&old);
	else
		old = hmap_del(&c->bps, name, strlen(name));
	c->bp_dirty = true;
	undo_push(c, key, old);
	return 0;
}

static char *obj_key(const struct moat_object *o)
{
	if (o->ns)
		return xasprintf("%s/%s/%s", o->api_kind, o->ns, o->name);
	return xasprintf("%s/%s", o->api_kind, o->name);
}

/* Splits "Kind/ns/name" or "Kind/name". */
static int key_split(const char *key, char *kind, size_t kl, const char **ns_start)
{
	const char *s = strchr(key, '/');
	if (!s || (size_t)(s - key) >= kl)
		return -EINVAL;
	memcpy(kind, key, (size_t)(s - key));
	kind[s - key] = 0;
	*ns_start = s + 1;
	return 0;
}

static int dispatch(struct moat_compiler *c, const char *key, struct moat_object *obj)
{
	char kind[64];
	const char *rest, *slash;
	int err = key_split(key, kind, sizeof(kind), &rest);

	if (err) {
		moat_object_free(obj);
		return err;
	}
	if (!strcmp(kind, "Namespace"))
		return apply_namespace(c, obj, rest, key);
	if (!strcmp(kind, "Node"))
		return apply_node(c, obj, rest, key);
	if (!strcmp(kind, "Pod")) {
		slash = strchr(rest, '/');
		if (!slash || (size_t)(slash - rest) > MOAT_MAX_NAME)
			return -EINVAL;
		return apply_pod(c, obj, rest, key);
	}
	if (!strcmp(kind, "Service"))
		return apply_service(c, obj, key);
	if (!strcmp(kind, "Blueprint"))
		return apply_blueprint(c, obj, rest, key);
	return apply_policy(c, obj, key);
}

int moat_compiler_apply(struct moat_compiler *c, struct moat_object *obj)
{
	char *key;
	int err;

	if (!obj)
		return -EINVAL;
	key = obj_key(obj);
	err = dispatch(c, key, obj);
	free(key);
	return err;
}

int moat_compiler_delete(struct moat_compiler *c, const char *key)
{
	char kind[64];
	const char *rest;

	if (key_split(key, kind, sizeof(kind), &rest))
		return -EINVAL;
	if (!strcmp(kind, "Pod")) {
		if (!hmap_gets(&c->pods, rest))
			return -ENOENT;
	} else if (!strcmp(kind, "Namespace")) {
		struct ns_ent *n = ns_get(c, rest, false);
		if (!n || !n->obj)
			return -ENOENT;
	} else if (!strcmp(kind, "Node")) {
		if (!hmap_gets(&c->nodes, rest))
			return -ENOENT;
	} else if (!strcmp(kind, "Service")) {
		if (!hmap_gets(&c->svcs, key))
			return -ENOENT;
	} else if (!strcmp(kind, "Blueprint")) {
		if (!hmap_gets(&c->bps, rest))
			return -ENOENT;
	} else if (!hmap_gets(&c->pols, key)) {
		return -ENOENT;
	}
	return dispatch(c, key, NULL);
}

int moat_compiler_set_endpoint(struct moat_compiler *c, const char *ns, const char *pod, int ifindex)
{
	char *key = xasprintf("%s/%s", ns, pod);
	struct pod_ent *pe = hmap_gets(&c->pods, key);

	free(key);
	if (!pe)
		return -ENOENT;
	if (pe->ifindex == ifindex)
		return 0;
	pod_endpoint(c, pe, false);
	pe->ifindex = ifindex;
	pod_endpoint(c, pe, true);
	return 0;
}

void moat_compiler_set_allow_local_node(struct moat_compiler *c, bool on)
{
	c->allow_local_node = on;
}

bool moat_compiler_dirty(const struct moat_compiler *c)
{
	return c->dirty_idents.n || c->dirty_pols.n || c->regions_dirty || c->dead_idents.n ||
	       c->dirty_cells.n || c->bp_dirty;
}

#define BULK_RESELECT 256

/* Brings every policy's selections up to date. */
static void selection_refresh(struct moat_compiler *c)
{
	size_t nres = 0;

	peer_cache_clear(c);
	for (size_t i = 0; i < c->dirty_idents.n; i++)
		nres += ((struct ident *)c->dirty_idents.v[i])->reselect;
	if (nres > BULK_RESELECT) {
		/* many identities changed (start-up, a big namespace relabel):
		 * re-selecting every policy once is cheaper than testing every
		 * identity against every policy */
		size_t it = 0;
		void *v;
		while (hmap_next(&c->pols, &it, NULL, NULL, &v))
			mark_select(c, v);
	}
	for (size_t i = 0; i < c->dirty_pols.n; i++) {
		struct pol_ent *pe = c->dirty_pols.v[i];
		pe->need_select = false;
		pol_select(c, pe);
	}
	c->dirty_pols.n = 0;
	for (size_t i = 0; i < c->dirty_idents.n; i++) {
		struct ident *id = c->dirty_idents.v[i];
		if (id->reselect)
			ident_reselect(c, id);
	}
	peer_cache_clear(c);
}

/* ---- flush / commit / abort ------------------------------------------------------ */
int moat_compiler_flush(struct moat_compiler *c, struct moat_tx *tx, struct moat_flush_stats *st, char *err,
			size_t errlen)
{
	uint64_t t0 = moat_now_ns();
	__u32 counts[MOAT_T_MAX];
	size_t ops = 0;
	int rc = 0;

	memset(st, 0, sizeof(*st));
	if (err && errlen)
		err[0] = 0;
	if (c->bp_dirty) {
		if (!c->bp_inst_saved)
			c->bp_inst_saved = bp_inst_map_copy(&c->bp_inst);
		bp_reconcile(c, true);
		c->bp_dirty = false;
	}
	if (c->regions_dirty)
		regions_refresh(c);
	selection_refresh(c);
	/* compile every dirty subject */
	memcpy(counts, c->committed_counts, sizeof(counts));
	for (size_t i = 0; i < c->dirty_idents.n; i++) {
		struct ident *id = c->dirty_idents.v[i];
		out_free(id->pending);
		id->pending = compile_subject(c, id);
		id->has_pending = true;
		counts[MOAT_T_POL] += out_count(id->pending, MOAT_T_POL);
		counts[MOAT_T_POL] -= out_count(id->committed, MOAT_T_POL);
		counts[MOAT_T_PORTS] += out_count(id->pending, MOAT_T_PORTS);
		counts[MOAT_T_PORTS] -= out_count(id->committed, MOAT_T_PORTS);
		st->subjects_compiled++;
	}
	for (size_t i = 0; i < c->dirty_cells.n; i++) {
		struct cell *ce = c->dirty_cells.v[i];
		counts[ce->tbl] += ce->has_d;
		counts[ce->tbl] -= ce->has_c;
	}
	counts[MOAT_T_SUBJ] = c->next_id;
	for (int t = 0; t < MOAT_T_MAX; t++) {
		if (c->cap[t] && counts[t] > c->cap[t]) {
			if (err)
				snprintf(err, errlen, "table %s would hold %u entries, capacity is %u",
					 moat_tbl_name(t), counts[t], c->cap[t]);
			rc = -ENOSPC;
			goto out;
		}
	}
	/* emit */
	for (size_t i = 0; i < c->dirty_idents.n && !rc; i++) {
		struct ident *id = c->dirty_idents.v[i];
		rc = out_diff(tx, id->id, id->committed, id->pending, &ops);
	}
	for (size_t i = 0; i < c->dirty_cells.n && !rc; i++) {
		struct cell *ce = c->dirty_cells.v[i];
		if (ce->has_d && (!ce->has_c || memcmp(ce->cval, ce->dval, moat_tbl_value_size(ce->tbl)))) {
			rc = moat_tx_put(tx, ce->tbl, ce->key, ce->dval);
			ops++;
		} else if (!ce->has_d && ce->has_c) {
			rc = moat_tx_del(tx, ce->tbl, ce->key);
			ops++;
		}
	}
	if (rc && err)
		snprintf(err, errlen, "cannot build the transaction: %s", strerror(-rc));
out:
	memcpy(st->entries, counts, sizeof(counts));
	memcpy(c->pending_counts, counts, sizeof(counts));
	st->ops = ops;
	st->identities = (__u32)c->idents.n;
	st->rules = (__u32)c->refs.n;
	st->ns = moat_now_ns() - t0;
	return rc;
}

static void ident_destroy(struct moat_compiler *c, struct ident *id)
{
	hmap_del(&c->idents, id->key, id->klen);
	c->by_id[id->id] = NULL;
	u32vec_push(&c->free_ids, id->id);
	if (id->ns)
		ptrvec_remove(&id->ns->idents, id);
	moat_labels_free(&id->labels);
	for (size_t i = 0; i < id->nports; i++)
		free(id->ports[i].name);
	free(id->ports);
	ptrvec_free(&id->subj_of);
	out_free(id->committed);
	out_free(id->pending);
	free(id->key);
	free(id);
}

static void undo_free(struct moat_compiler *c)
{
	for (size_t i = 0; i < c->undo.n; i++) {
		struct undo *u = c->undo.v[i];
		moat_object_free(u->old);
		free(u->key);
		free(u);
	}
	c->undo.n = 0;
}

void moat_compiler_commit(struct moat_compiler *c)
{
	for (size_t i = 0; i < c->dirty_idents.n; i++) {
		struct ident *id = c->dirty_idents.v[i];
		if (id->has_pending) {
			out_free(id->committed);
			id->committed = id->pending;
			id->pending = NULL;
			id->has_pending = false;
		}
		id->dirty = false;
	}
	c->dirty_idents.n = 0;
	for (size_t i = 0; i < c->dirty_cells.n; i++) {
		struct cell *ce = c->dirty_cells.v[i];
		memcpy(ce->cval, ce->dval, sizeof(ce->cval));
		ce->has_c = ce->has_d;
		ce->dirty = false;
	}
	c->dirty_cells.n = 0;
	memcpy(c->committed_counts, c->pending_counts, sizeof(c->committed_counts));
	for (size_t i = 0; i < c->dead_idents.n; i++) {
		struct ident *id = c->dead_idents.v[i];
		if (id->dead && !id->npods)
			ident_destroy(c, id);
	}
	c->dead_idents.n = 0;
	undo_free(c);
	if (c->bp_inst_saved) {
		bp_inst_map_free(c->bp_inst_saved);
		free(c->bp_inst_saved);
		c->bp_inst_saved = NULL;
	}
}

void moat_compiler_abort(struct moat_compiler *c)
{
	/* drop pending outputs; the dirty marks stay so the next flush
	 * recomputes (to the same committed state after the undo) */
	for (size_t i = 0; i < c->dirty_idents.n; i++) {
		struct ident *id = c->dirty_idents.v[i];
		out_free(id->pending);
		id->pending = NULL;
		id->has_pending = false;
	}
	/* undo object changes, newest first */
	c->replaying = true;
	while (c->undo.n) {
		struct undo *u = c->undo.v[--c->undo.n];
		if (u->old)
			dispatch(c, u->key, u->old);
		else
			dispatch(c, u->key, NULL);
		free(u->key);
		free(u);
	}
	c->replaying = false;
	/* the instances went back with the undo log: so does their record,
	 * and the namespaces' blueprint labels follow the restored objects */
	if (c->bp_inst_saved) {
		bp_inst_map_free(&c->bp_inst);
		c->bp_inst = *c->bp_inst_saved;
		free(c->bp_inst_saved);
		c->bp_inst_saved = NULL;
	}
	bp_reconcile(c, false);
	c->bp_dirty = false;
}

/* ---- lifecycle ------------------------------------------------------------------- */
int moat_compiler_new(const struct moat_compiler_opts *opts, struct moat_compiler **ret)
{
	struct moat_compiler *c = xcalloc(1, sizeof(*c));

	c->node = xstrdup(opts && opts->node ? opts->node : NULL);
	if (opts)
		memcpy(c->cap, opts->cap, sizeof(c->cap));
	c->max_ident = opts && opts->max_identities ? opts->max_identities : MOAT_MAX_IDENTITIES;
	c->max_rules = opts && opts->max_rules ? opts->max_rules : MOAT_MAX_RULES;
	c->by_id = xcalloc(c->max_ident, sizeof(*c->by_id));
	c->ref_by_id = xcalloc(c->max_rules, sizeof(*c->ref_by_id));
	c->next_id = MOAT_ID_FIRST_DYN;
	c->allow_local_node = true;
	c->next_ref = MOAT_RULE_FIRST_DYN;
	hmap_init(&c->nss);
	hmap_init(&c->pods);
	hmap_init(&c->nodes);
	hmap_init(&c->svcs);
	hmap_init(&c->pols);
	hmap_init(&c->idents);
	hmap_init(&c->ips);
	hmap_init(&c->cells);
	hmap_init(&c->regions);
	hmap_init(&c->refs);
	hmap_init(&c->peer_cache);
	hmap_init(&c->bps);
	hmap_init(&c->bp_inst);
	*ret = c;
	return 0;
}

void moat_compiler_free(struct moat_compiler *c)
{
	size_t it;
	const void *k;
	void *v;

	if (!c)
		return;
	undo_free(c);
	it = 0;
	while (hmap_next(&c->bps, &it, NULL, NULL, &v))
		moat_object_free(v);
	hmap_free(&c->bps);
	bp_inst_map_free(&c->bp_inst);
	if (c->bp_inst_saved) {
		bp_inst_map_free(c->bp_inst_saved);
		free(c->bp_inst_saved);
	}
	bp_errors_clear(c);
	ptrvec_free(&c->bp_errors);
	it = 0;
	while (hmap_next(&c->pols, &it, NULL, NULL, &v)) {
		struct pol_ent *pe = v;
		pol_free_sets(pe);
		u32vec_free(&pe->subjects);
		free(pe->refs[0]);
		free(pe->refs[1]);
		moat_object_free(pe->obj);
		free(pe->key);
		free(pe);
	}
	it = 0;
	while (hmap_next(&c->pods, &it, NULL, NULL, &v)) {
		struct pod_ent *pe = v;
		moat_object_free(pe->obj);
		free(pe->key);
		free(pe);
	}
	it = 0;
	while (hmap_next(&c->nodes, &it, NULL, NULL, &v)) {
		struct node_ent *ne = v;
		moat_object_free(ne->obj);
		free(ne->name);
		free(ne);
	}
	it = 0;
	while (hmap_next(&c->svcs, &it, &k, NULL, &v)) {
		moat_object_free(v);
		free((void *)k);
	}
	for (__u32 i = 0; i < c->next_id; i++)
		if (c->by_id[i])
			ident_destroy(c, c->by_id[i]);
	it = 0;
	while (hmap_next(&c->nss, &it, NULL, NULL, &v)) {
		struct ns_ent *n = v;
		moat_object_free(n->obj);
		moat_labels_free(&n->deflabels);
		moat_labels_free(&n->bpl);
		moat_labels_free(&n->eff);
		ptrvec_free(&n->idents);
		ptrvec_free(&n->np_pols);
		free(n->name);
		free(n);
	}
	it = 0;
	while (hmap_next(&c->ips, &it, NULL, NULL, &v)) {
		struct ip_ent *e = v;
		ptrvec_free(&e->pods);
		ptrvec_free(&e->nodes);
		ptrvec_free(&e->svcs);
		free(e);
	}
	it = 0;
	while (hmap_next(&c->cells, &it, NULL, NULL, &v))
		free(v);
	for (__u32 i = 0; i < c->nregion_ids; i++)
		free(c->region_by_id[i]);
	free(c->region_by_id);
	it = 0;
	while (hmap_next(&c->refs, &it, &k, NULL, &v)) {
		struct moat_rule_info *ri = v;
		free((char *)ri->ns);
		free((char *)ri->name);
		free((char *)ri->rule_name);
		free(ri);
		free((void *)k);
	}
	hmap_free(&c->nss);
	hmap_free(&c->pods);
	hmap_free(&c->nodes);
	hmap_free(&c->svcs);
	hmap_free(&c->pols);
	hmap_free(&c->idents);
	hmap_free(&c->ips);
	hmap_free(&c->cells);
	hmap_free(&c->regions);
	hmap_free(&c->refs);
	ptrvec_free(&c->dirty_pols);
	ptrvec_free(&c->cluster_pols);
	ptrvec_free(&c->xns_pols);
	ptrvec_free(&c->dirty_cells);
	peer_cache_clear(c);
	hmap_free(&c->peer_cache);
	ptrvec_free(&c->dirty_idents);
	ptrvec_free(&c->dead_idents);
	ptrvec_free(&c->undo);
	u32vec_free(&c->free_ids);
	u32vec_free(&c->free_refs);
	u32vec_free(&c->free_regions);
	free(c->by_id);
	free(c->ref_by_id);
	free(c->node);
	free(c);
}

/* ---- explain: the datapath's lookups, over the committed tables ------------- */
static const struct kv *out_find(const struct out *o, __u8 tbl, const void *key, size_t ks)
{
	size_t lo = 0, hi = o ? o->n : 0;
	struct kv probe;

	memset(&probe, 0, sizeof(probe));
	probe.tbl = tbl;
	memcpy(probe.key, key, ks);
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = cmp_kv(&o->kv[mid], &probe);
		if (!r)
			return &o->kv[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static const struct moat_policy_val *x_pol(const struct out *o, __u32 subj, __u32 peer, __u8 proto,
					   __u16 port, __u8 flags)
{
	struct moat_policy_key k = {
		.subject = subj, .peer = peer, .port = port, .proto = proto, .flags = flags
	};
	const struct kv *e = out_find(o, MOAT_T_POL, &k, sizeof(k));
	return e ? (const struct moat_policy_val *)e->val : NULL;
}

static const struct moat_policy_val *x_chain(const struct out *o, __u32 subj, __u32 peer, __u32 cls_peer,
					     __u8 proto, __u16 port, __u8 kflags, bool has_port)
{
	const struct moat_policy_val *v;

	if (peer) {
		if (has_port && (v = x_pol(o, subj, peer, proto, port, kflags)))
			return v;
		if ((v = x_pol(o, subj, peer, 0, 0, kflags & ~MOAT_PK_PORTCLASS)))
			return v;
	}
	if (has_port && (v = x_pol(o, subj, cls_peer, proto, port, kflags)))
		return v;
	return x_pol(o, subj, cls_peer, 0, 0, kflags & ~MOAT_PK_PORTCLASS);
}

struct xpeer {
	__u32 identity, region;
	int cls, family;
	bool local;
	const char *node; /* the node it is (NODE) or runs on (POD), if known */
};

static void x_decide(const struct out *o, __u32 subj, int dir, bool shadow, const struct xpeer *peer,
		     __u8 proto, __u16 port, struct moat_explain_side *r)
{
	const struct moat_subject_dir *sd;
	const struct moat_policy_val *v1, *v2 = NULL;
	__u32 f, rank = MOAT_RANK_NONE, rule = 0;
	__u8 act = 0, kf;
	bool has_port = proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;

	r->verdict = MOAT_VERDICT_ALLOW;
	r->tier = MOAT_TIER_DEFAULT;
	r->rule = MOAT_RULE_DEFAULT_ALLOW;
	if (!o)
		return;
	sd = &o->subj.dir[dir];
	f = sd->flags;
	if (!(f & (shadow ? MOAT_SUBJ_AUDIT_ACTIVE : MOAT_SUBJ_ACTIVE)))
		return;
	kf = (dir ? MOAT_PK_EGRESS : 0) | (shadow ? MOAT_PK_AUDIT : 0);
	if (has_port) {
		__u32 rf = proto == IPPROTO_TCP ? MOAT_SUBJ_RANGE_TCP :
			   proto == IPPROTO_UDP ? MOAT_SUBJ_RANGE_UDP :
						  MOAT_SUBJ_RANGE_SCTP;
		if (f & rf) {
			/* longest prefix among this subject's port entries */
			const struct kv *best = NULL;
			__u32 bestlen = 0;
			for (size_t i = 0; i < o->n; i++) {
				struct moat_port_key pkc; /* kv keys are unaligned */
				const struct moat_port_key *pk = &pkc;
				__u32 bits, mask;
				if (o->kv[i].tbl != MOAT_T_PORTS)
					continue;
				memcpy(&pkc, o->kv[i].key, sizeof(pkc));
				if (pk->dir != dir || pk->proto != proto)
					continue;
				bits = pk->prefixlen - MOAT_PORT_KEY_FIXED_BITS;
				mask = bits ? (0xffffu << (16 - bits)) & 0xffff : 0;
				if ((ntohs(pk->port) & mask) == (port & mask) && pk->prefixlen > bestlen) {
					best = &o->kv[i];
					bestlen = pk->prefixlen;
				}
			}
			if (best && ((const struct moat_port_class *)best->val)->cls) {
				port = (__u16)((const struct moat_port_class *)best->val)->cls;
				kf |= MOAT_PK_PORTCLASS;
			} else {
				has_port = false;
			}
		}
	}
	v1 = x_chain(o, subj, peer->identity, MOAT_PEER_CLASS(peer->cls), proto, port, kf, has_port);
	if (f & (shadow ? MOAT_SUBJ_AUDIT_NETS : MOAT_SUBJ_NETS))
		v2 = x_chain(o, subj, peer->region, peer->family == 6 ? MOAT_PEER_NET6 : MOAT_PEER_NET4,
			     proto, port, kf | MOAT_PK_NET, has_port);
	if (v1 && v1->admin_rank < rank) {
		rank = v1->admin_rank;
		rule = v1->admin_rule;
		act = v1->admin_action;
	}
	if (v2 && v2->admin_rank < rank) {
		rule = v2->admin_rule;
		act = v2->admin_action;
	}
	if (act == MOAT_ACT_ALLOW || act == MOAT_ACT_DENY) {
		r->verdict = act == MOAT_ACT_ALLOW ? MOAT_VERDICT_ALLOW : MOAT_VERDICT_DENY;
		r->tier = MOAT_TIER_ADMIN;
		r->rule = rule;
		return;
	}
	if (f & (shadow ? MOAT_SUBJ_AUDIT_ISOLATED : MOAT_SUBJ_ISOLATED)) {
		rule = v1 ? v1->np_rule : 0;
		if (!rule && v2)
			rule = v2->np_rule;
		r->tier = MOAT_TIER_NETPOL;
		if (rule) {
			r->verdict = MOAT_VERDICT_ALLOW;
			r->rule = rule;
		} else {
			r->verdict = MOAT_VERDICT_DENY;
			r->rule = shadow ? sd->audit_isolate_rule : sd->isolate_rule;
		}
		return;
	}
	rank = MOAT_RANK_NONE;
	act = 0;
	if (v1 && v1->base_rank < rank) {
		rank = v1->base_rank;
		rule = v1->base_rule;
		act = v1->base_action;
	}
	if (v2 && v2->base_rank < rank) {
		rule = v2->base_rule;
		act = v2->base_action;
	}
	if (act == MOAT_ACT_ALLOW || act == MOAT_ACT_DENY) {
		r->verdict = act == MOAT_ACT_ALLOW ? MOAT_VERDICT_ALLOW : MOAT_VERDICT_DENY;
		r->tier = MOAT_TIER_BASELINE;
		r->rule = rule;
	}
}

/* The node an address belongs to (a node address) or whose pod holds it,
 * chosen like ip_refresh chooses. */
static const char *x_node_of(const struct moat_compiler *c, const struct moat_addr *a, int cls)
{
	const struct ip_ent *e;
	const char *best = NULL;
	__u8 k[17];

	k[0] = (__u8)a->family;
	memcpy(k + 1, a->a, 16);
	e = hmap_get(&c->ips, k, sizeof(k));
	if (!e)
		return NULL;
	if (cls == MOAT_CLASS_NODE) {
		for (size_t i = 0; i < e->nodes.n; i++) {
			const struct node_ent *n = e->nodes.v[i];
			if (!best || strcmp(n->name, best) < 0)
				best = n->name;
		}
		return best;
	}
	if (cls == MOAT_CLASS_POD) {
		const struct pod_ent *bp = NULL;
		for (size_t i = 0; i < e->pods.n; i++) {
			const struct pod_ent *p = e->pods.v[i];
			if (p->ident && (!bp || strcmp(p->key, bp->key) < 0))
				bp = p;
		}
		return bp ? bp->obj->u.pod->node : NULL;
	}
	return NULL;
}

/* Resolves "ns/pod" or an address into what the ipcache would say. */
static int x_resolve(const struct moat_compiler *c, const char *what, struct xpeer *p, char *err,
		     size_t errlen)
{
	struct moat_addr a;
	const struct cell *ce;

	memset(p, 0, sizeof(*p));
	if (moat_addr_parse(what, &a) != 0) {
		const struct pod_ent *pe = hmap_gets(&c->pods, what);
		const struct moat_pod *pod;
		if (!pe) {
			snprintf(err, errlen, "%s: no such pod (use namespace/name or an IP address)", what);
			return -ENOENT;
		}
		pod = pe->obj->u.pod;
		if (!pod->nips) {
			snprintf(err, errlen, "%s: the pod has no IP address yet", what);
			return -ENOENT;
		}
		a = pod->ips[0];
	}
	p->family = a.family;
	if (a.family == 4) {
		struct moat_ip4_key k;
		memcpy(&k.addr, a.a, 4);
		ce = cell_get((struct moat_compiler *)c, MOAT_T_IP4, &k, false);
	} else {
		struct moat_ip6_key k;
		memcpy(k.addr, a.a, 16);
		ce = cell_get((struct moat_compiler *)c, MOAT_T_IP6, &k, false);
	}
	if (ce && ce->has_c) {
		const struct moat_ip_info *ii = (const void *)ce->cval;
		p->identity = ii->identity;
		p->region = ii->region;
		p->cls = ii->class;
		p->local = ii->flags & MOAT_IP_F_LOCAL;
		p->node = x_node_of(c, &a, p->cls);
		return 0;
	}
	p->identity = MOAT_ID_WORLD;
	p->cls = MOAT_CLASS_WORLD;
	p->region = region_of(c, &a);
	return 0;
}

int moat_compiler_explain(const struct moat_compiler *c, const char *from, const char *to, uint8_t proto,
			  uint16_t port, struct moat_explain *x, char *err, size_t errlen)
{
	struct xpeer s, d;
	int rc;

	memset(x, 0, sizeof(*x));
	rc = x_resolve(c, from, &s, err, errlen);
	if (!rc)
		rc = x_resolve(c, to, &d, err, errlen);
	if (rc)
		return rc;
	x->src_identity = s.identity;
	x->dst_identity = d.identity;
	x->src_class = s.cls;
	x->dst_class = d.cls;
	x->verdict = MOAT_VERDICT_ALLOW;
	x->tier = MOAT_TIER_DEFAULT;
	x->rule = MOAT_RULE_DEFAULT_ALLOW;
	x->dir = MOAT_DIR_INGRESS;
	if (s.cls == MOAT_CLASS_POD) {
		const struct ident *id = s.identity < c->max_ident ? c->by_id[s.identity] : NULL;
		const struct out *o = id ? id->committed : NULL;
		x->egress.judged = true;
		x_decide(o, s.identity, MOAT_DIR_EGRESS, false, &d, proto, port, &x->egress);
		if (x->egress.verdict == MOAT_VERDICT_ALLOW) {
			struct moat_explain_side sh;
			x_decide(o, s.identity, MOAT_DIR_EGRESS, true, &d, proto, port, &sh);
			if (o && (o->subj.dir[1].flags & MOAT_SUBJ_AUDIT) &&
			    sh.verdict == MOAT_VERDICT_DENY) {
				x->egress.audit_deny = true;
				x->egress.audit_rule = sh.rule;
			}
		}
		x->verdict = x->egress.verdict;
		x->rule = x->egress.rule;
		x->tier = x->egress.tier;
		x->dir = MOAT_DIR_EGRESS;
		if (x->verdict == MOAT_VERDICT_DENY)
			return 0;
	}
	if (d.cls == MOAT_CLASS_POD) {
		const struct ident *id = d.identity < c->max_ident ? c->by_id[d.identity] : NULL;
		const struct out *o = id ? id->committed : NULL;
		x->ingress.judged = true;
		/* the exemption of the datapath on the destination pod's node:
		 * the source must be that node, and the exemption enabled */
		if (c->allow_local_node && s.cls == MOAT_CLASS_NODE && s.node && d.node &&
		    !strcmp(s.node, d.node)) {
			x->ingress.verdict = MOAT_VERDICT_ALLOW;
			x->ingress.tier = MOAT_TIER_DEFAULT;
			x->ingress.rule = MOAT_RULE_LOCAL_NODE;
		} else {
			x_decide(o, d.identity, MOAT_DIR_INGRESS, false, &s, proto, port, &x->ingress);
			if (x->ingress.verdict == MOAT_VERDICT_ALLOW) {
				struct moat_explain_side sh;
				x_decide(o, d.identity, MOAT_DIR_INGRESS, true, &s, proto, port, &sh);
				if (o && (o->subj.dir[0].flags & MOAT_SUBJ_AUDIT) &&
				    sh.verdict == MOAT_VERDICT_DENY) {
					x->ingress.audit_deny = true;
					x->ingress.audit_rule = sh.rule;
				}
			}
		}
		if (x->ingress.verdict == MOAT_VERDICT_DENY || x->ingress.tier != MOAT_TIER_DEFAULT ||
		    x->tier == MOAT_TIER_DEFAULT) {
			x->verdict = x->ingress.verdict;
			x->rule = x->ingress.rule;
			x->tier = x->ingress.tier;
			x->dir = MOAT_DIR_INGRESS;
		}
	}
	if (x->verdict == MOAT_VERDICT_ALLOW && (x->egress.audit_deny || x->ingress.audit_deny)) {
		x->verdict = MOAT_VERDICT_AUDIT;
		x->rule = x->egress.audit_deny ? x->egress.audit_rule : x->ingress.audit_rule;
		x->dir = x->egress.audit_deny ? MOAT_DIR_EGRESS : MOAT_DIR_INGRESS;
	}
	return 0;
}

/* ---- blueprint status and diff --------------------------------------------------- */
json_t *moat_compiler_blueprints(const struct moat_compiler *c)
{
	size_t nbp, it;
	struct moat_blueprint **bps = bp_sorted(c, &nbp);
	json_t *out = json_array();
	char err[800];
	void *v;

	for (size_t b = 0; b < nbp; b++) {
		const struct moat_blueprint *bp = bps[b];
		json_t *vers = json_array(), *params = json_array(), *nss = json_array(),
		       *errs = json_array();

		for (size_t i = 0; i < bp->nversions; i++)
			json_array_append_new(vers,
					      json_pack("{s:s,s:i,s:i}", "version", bp->versions[i].version,
							"networkPolicies", (int)bp->versions[i].nnp,
							"clusterNetworkPolicies", (int)bp->versions[i].ncnp));
		for (size_t i = 0; i < bp->nparams; i++)
			json_array_append_new(params, json_pack("{s:s,s:s}", "name", bp->params[i].name,
								"default", bp->params[i].def));
		it = 0;
		while (hmap_next(&c->nss, &it, NULL, NULL, &v)) {
			const struct ns_ent *n = v;
			bool pinned;
			const struct moat_bp_version *ver = bp_running(bp, n, &pinned, err, sizeof(err));
			if (ver)
				json_array_append_new(nss,
						      json_pack("{s:s,s:s,s:b}", "namespace", n->name,
								"version", ver->version, "pinned", pinned));
		}
		for (size_t i = 0; i < c->bp_errors.n; i++) {
			const struct bp_error *e = c->bp_errors.v[i];
			if (!strcmp(e->blueprint, bp->name))
				json_array_append_new(errs, json_pack("{s:s?,s:s}", "namespace", e->ns,
								      "message", e->msg));
		}
		json_array_append_new(out, json_pack("{s:s,s:s,s:o,s:o,s:o,s:o}", "name", bp->name, "version",
						     bp->version, "versions", vers, "parameters", params,
						     "namespaces", nss, "errors", errs));
	}
	free(bps);
	return out;
}

/* What an instance says, without the annotation naming its version. */
static json_t *inst_content(json_t *doc)
{
	json_t *an = json_deep_copy(json_object_get(json_object_get(doc, "metadata"), "annotations"));
	json_t *r;

	if (an)
		json_object_del(an, "moat.io/blueprint");
	if (an && !json_object_size(an)) {
		json_decref(an);
		an = NULL;
	}
	r = json_pack("{s:O}", "spec", json_object_get(doc, "spec"));
	if (an)
		json_object_set_new(r, "annotations", an);
	return r;
}

/* Instances (name -> content) of blueprint bp in namespace n; cluster
 * templates by version-less name.  Errors go to errs. */
static void ns_instances(const struct moat_blueprint *bp, const struct ns_ent *n,
			 const struct moat_bp_version *ver, json_t *into, json_t *errs)
{
	char err[800];

	for (size_t t = 0; ver && t < ver->nnp; t++) {
		json_t *doc = NULL;
		char *name = moat_bp_np_name(bp, &ver->np[t]);
		char *disp = xasprintf("NetworkPolicy %s", name);
		if (moat_bp_instantiate_np(bp, ver, &ver->np[t], n->name, ns_bp_annotations(n), &doc, err,
					   sizeof(err)))
			json_array_append_new(errs,
					      json_pack("{s:s,s:s}", "namespace", n->name, "message", err));
		else
			json_object_set_new(into, disp, inst_content(doc));
		json_decref(doc);
		free(name);
		free(disp);
	}
	for (size_t t = 0; ver && t < ver->ncnp; t++) {
		json_t *doc = NULL;
		char *disp = xasprintf("ClusterNetworkPolicy %s:%s", bp->name, ver->cnp[t].name);
		if (!moat_bp_instantiate_cnp(bp, ver, &ver->cnp[t], false, &doc, err, sizeof(err)))
			json_object_set_new(into, disp, inst_content(doc));
		json_decref(doc);
		free(disp);
	}
}

json_t *moat_compiler_blueprint_diff(const struct moat_compiler *c, const struct moat_blueprint *cand)
{
	const struct moat_object *cur_o = hmap_gets(&c->bps, cand->name);
	const struct moat_blueprint *cur = cur_o ? cur_o->u.blueprint : NULL;
	json_t *nss = json_array(), *groups = json_object(), *errs = json_array(), *changes;
	size_t it = 0;
	void *v;
	char err[800];

	while (hmap_next(&c->nss, &it, NULL, NULL, &v)) {
		const struct ns_ent *n = v;
		const struct moat_bp_version *a = NULL, *b;
		bool pa = false, pb;
		json_t *before = json_object(), *after = json_object(), *x;
		const char *k;

		if (cur)
			a = bp_running(cur, n, &pa, err, sizeof(err));
		b = bp_running(cand, n, &pb, err, sizeof(err));
		if (b && err[0])
			json_array_append_new(errs,
					      json_pack("{s:s,s:s}", "namespace", n->name, "message", err));
		if (!a && !b)
			goto next;
		if (cur) {
			json_t *ignored = json_array();
			ns_instances(cur, n, a, before, ignored);
			json_decref(ignored);
		}
		ns_instances(cand, n, b, after, errs);
		/* before and after of every instance, grouped by identical change */
		json_object_foreach(before, k, x)
		{
			json_t *y = json_object_get(after, k);
			if (!y || !json_equal(x, y)) {
				json_t *g = json_pack("{s:s,s:s,s:O,s:O*}", "policy", k, "change",
						      y ? "changed" : "removed", "before", x, "after", y);
				char *gk = xasprintf("%s|%s|%016llx|%016llx", k, y ? "c" : "r",
						     (unsigned long long)json_digest(x),
						     y ? (unsigned long long)json_digest(y) : 0ull);
				json_t *have = json_object_get(groups, gk);
				if (!have) {
					json_object_set_new(g, "namespaces", json_array());
					json_object_set_new(groups, gk, g);
					have = g;
				} else {
					json_decref(g);
				}
				json_array_append_new(json_object_get(have, "namespaces"),
						      json_string(n->name));
				free(gk);
			}
		}
		json_object_foreach(after, k, x)
		{
			if (json_object_get(before, k))
				continue;
			char *gk = xasprintf("%s|a|%016llx", k, (unsigned long long)json_digest(x));
			json_t *have = json_object_get(groups, gk);
			if (!have) {
				have = json_pack("{s:s,s:s,s:n,s:O,s:[]}", "policy", k, "change", "added",
						 "before", "after", x, "namespaces");
				json_object_set_new(groups, gk, have);
			}
			json_array_append_new(json_object_get(have, "namespaces"), json_string(n->name));
			free(gk);
		}
		if (a != b && (!a || !b || strcmp(a->version, b->version) || pa != pb))
			json_array_append_new(nss, json_pack("{s:s,s:s?,s:s?,s:b}", "namespace", n->name,
							     "from", a ? a->version : NULL, "to",
							     b ? b->version : NULL, "pinned", pb));
next:
		json_decref(before);
		json_decref(after);
	}
	changes = json_array();
	{
		const char *k;
		json_t *g;
		json_object_foreach(groups, k, g) json_array_append(changes, g);
	}
	json_decref(groups);
	return json_pack("{s:s,s:s?,s:s,s:o,s:o,s:o}", "blueprint", cand->name, "from",
			 cur ? cur->version : NULL, "to", cand->version, "namespaces", nss, "changes",
			 changes, "errors", errs);
}

const struct moat_blueprint *moat_compiler_blueprint(const struct moat_compiler *c, const char *name)
{
	const struct moat_object *o = hmap_gets(&c->bps, name);
	return o ? o->u.blueprint : NULL;
}

/* ---- iteration ----------------------------------------------------------------- */
int moat_compiler_identities(const struct moat_compiler *c,
			     int (*fn)(const struct moat_ident_view *v, void *arg), void *arg)
{
	for (__u32 i = 0; i < c->next_id; i++) {
		const struct ident *id = c->by_id[i];
		struct moat_ident_view v;
		int rc;
		if (!id || id->dead)
			continue;
		v.id = id->id;
		v.cls = id->cls;
		v.ns = id->ns ? id->ns->name : NULL;
		v.labels = &id->labels;
		v.npods = id->npods;
		v.node = id->node ? id->node->name : NULL;
		rc = fn(&v, arg);
		if (rc)
			return rc;
	}
	return 0;
}

int moat_compiler_policies(const struct moat_compiler *c,
			   int (*fn)(const struct moat_policy_view *v, void *arg), void *arg)
{
	size_t it = 0;
	void *val;

	while (hmap_next(&c->pols, &it, NULL, NULL, &val)) {
		const struct pol_ent *pe = val;
		struct moat_policy_view v;
		int rc;
		if (!pe->p)
			continue;
		v.key = pe->key;
		v.p = pe->p;
		v.nsubjects = pe->subjects.n;
		v.entries = 0;
		for (size_t i = 0; i < pe->subjects.n; i++) {
			const struct ident *id = c->by_id[pe->subjects.v[i]];
			if (id)
				v.entries += (__u32)out_count(id->committed, MOAT_T_POL);
		}
		rc = fn(&v, arg);
		if (rc)
			return rc;
	}
	return 0;
}

int moat_compiler_endpoints(const struct moat_compiler *c,
			    int (*fn)(const struct moat_endpoint_view *v, void *arg), void *arg)
{
	size_t it = 0;
	void *val;

	while (hmap_next(&c->pods, &it, NULL, NULL, &val)) {
		const struct pod_ent *pe = val;
		const struct moat_pod *p = pe->obj->u.pod;
		struct moat_endpoint_view v;
		int rc;
		v.ns = p->ns;
		v.name = p->name;
		v.node = p->node;
		v.identity = pe->ident ? pe->ident->id : 0;
		v.local = c->node && p->node && !strcmp(c->node, p->node);
		v.ifindex = pe->ifindex;
		v.nips = p->nips;
		v.ips = p->ips;
		v.host_network = p->host_network;
		v.nports = p->nports;
		v.ports = p->ports;
		rc = fn(&v, arg);
		if (rc)
			return rc;
	}
	return 0;
}

const char *moat_compiler_pod_by_ip(const struct moat_compiler *c, const struct moat_addr *a,
				    __u32 *ret_identity)
{
	__u8 k[17];
	const struct ip_ent *e;
	const struct pod_ent *best = NULL;

	k[0] = (__u8)a->family;
	memcpy(k + 1, a->a, 16);
	e = hmap_get(&c->ips, k, sizeof(k));
	if (!e)
		return NULL;
	for (size_t i = 0; i < e->pods.n; i++) {
		const struct pod_ent *p = e->pods.v[i];
		if (!best || strcmp(p->key, best->key) < 0)
			best = p;
	}
	if (!best)
		return NULL;
	if (ret_identity)
		*ret_identity = best->ident ? best->ident->id : 0;
	return best->key;
}

bool moat_compiler_identity(const struct moat_compiler *c, __u32 id, const char **ns,
			    const struct moat_labels **labels, int *cls)
{
	const struct ident *i = id < c->max_ident ? c->by_id[id] : NULL;

	if (!i)
		return false;
	if (ns)
		*ns = i->ns ? i->ns->name : (i->node ? i->node->name : NULL);
	if (labels)
		*labels = &i->labels;
	if (cls)
		*cls = i->cls;
	return true;
}

void moat_compiler_counts(const struct moat_compiler *c, __u32 out[MOAT_T_MAX])
{
	memcpy(out, c->committed_counts, sizeof(c->committed_counts));
	out[MOAT_T_SUBJ] = c->next_id;
}

/* ---- read-only views for the offload pre-filter (hostd/prefilter.c) -------- */
static const struct out *view_out(const struct moat_compiler *c, __u32 id, bool next)
{
	const struct ident *i = id < c->max_ident && id < c->next_id ? c->by_id[id] : NULL;

	if (!i)
		return NULL;
	return next && i->has_pending ? i->pending : i->committed;
}

int moat_compiler_decide(const struct moat_compiler *c, bool next, __u32 subject, int dir,
			 const struct moat_decide_peer *peer, __u8 proto, __u16 port,
			 struct moat_explain_side *out)
{
	struct xpeer p = {
		.identity = peer->identity, .region = peer->region, .cls = peer->cls, .family = peer->family
	};

	if (dir != MOAT_DIR_INGRESS && dir != MOAT_DIR_EGRESS)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->judged = true;
	x_decide(view_out(c, subject, next), subject, dir, false, &p, proto, port, out);
	return 0;
}

int moat_compiler_subject_ports(const struct moat_compiler *c, bool next, __u32 subject, int dir, __u8 proto,
				int (*fn)(__u16 port, void *arg), void *arg)
{
	const struct out *o = view_out(c, subject, next);
	__u8 eg = dir == MOAT_DIR_EGRESS ? MOAT_PK_EGRESS : 0;

	for (size_t i = 0; o && i < o->n; i++) {
		const struct kv *e = &o->kv[i];
		int rc = 0;

		if (e->tbl == MOAT_T_PORTS) {
			const struct moat_port_key *k = (const void *)e->key;
			if (k->dir == dir && k->proto == proto)
				rc = fn(ntohs(k->port), arg);
		} else if (e->tbl == MOAT_T_POL) {
			const struct moat_policy_key *k = (const void *)e->key;
			if ((k->flags & MOAT_PK_EGRESS) == eg && k->proto == proto &&
			    !(k->flags & MOAT_PK_PORTCLASS))
				rc = fn(k->port, arg);
		}
		if (rc)
			return rc;
	}
	return 0;
}

int moat_compiler_table(const struct moat_compiler *c, bool next, enum moat_tbl t,
			int (*fn)(const void *key, const void *val, void *arg), void *arg)
{
	if (t == MOAT_T_SUBJ || t == MOAT_T_PORTS || t == MOAT_T_POL || t >= MOAT_T_MAX)
		return -EINVAL;
	for (size_t i = 0; i < c->cells.cap; i++) {
		const struct hmap_ent *e = &c->cells.e[i];
		const struct cell *ce;
		int rc;

		if (e->hash < 2)
			continue;
		ce = e->val;
		if (ce->tbl != t || !(next ? ce->has_d : ce->has_c))
			continue;
		rc = fn(ce->key, next ? ce->dval : ce->cval, arg);
		if (rc)
			return rc;
	}
	return 0;
}
