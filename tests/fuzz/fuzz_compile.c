// SPDX-License-Identifier: Apache-2.0
/* The policy compiler (hostd/compile.c) on small, odd but valid worlds
 * built from the input bytes, compared with the independent reference model
 * (tests/lib/refmodel.c), the way test_compile does for the conformance
 * corpus.
 *
 * The bytes choose: labels of namespaces a, b, c (c may not exist as an
 * object) and the moat.io/audit annotation; 2..6 pods (namespace, labels,
 * node n1 or n2, named container ports http/80, dns/53 UDP, http/8080,
 * s/9000 SCTP); up to 5 policies of every kind (NetworkPolicy,
 * AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy in
 * either tier) with selectors (matchLabels and every operator), peers
 * (pods, namespaces, ipBlock with except, networks, nodes), ports (numbers,
 * ranges, named ports, each protocol), actions (Allow/Accept, Deny, Pass),
 * priorities (often equal: the name breaks ties), policyTypes.  Objects
 * go through moat_decode like the daemon's; one that does not decode must
 * say why, naming its source, and is left out.
 *
 * Checked, for every ordered pair of endpoints (the pods, both nodes, an
 * address outside the cluster) with a pod on at least one side, on TCP,
 * UDP and SCTP ports 1, 53, 80, 81, 8080, 9000, 65535 and one chosen by the
 * input, and ICMP:
 *   1. moat_compiler_explain() (the datapath's lookups on the compiled
 *      tables) gives the reference model's verdict (allow, deny, audit), and
 *      for a deny the same deciding direction and tier.  The reference's
 *      "local node" is the destination pod's node: explain answers for the
 *      whole cluster, ingress being judged on that node, where traffic from
 *      the node itself is always allowed (docs/policy.md);
 *   2. the deciding rule explain names describes a rule of that tier and,
 *      for a deny, of that direction;
 *   3. incremental == full: the compiler fed object by object (a flush
 *      after each policy) and a fresh compiler given everything in one
 *      flush explain every probe identically (verdict and the rule's text);
 *   4. idempotent recompiles: re-applying every object unchanged, or
 *      deleting a policy and adding it back before the flush, emits no table
 *      operation at all; deleting one and adding it back in a later flush
 *      restores every explained probe exactly;
 *   5. labels changing under the policies: a pod's or a namespace's labels
 *      replaced (chosen by the input's last bytes), one more flush: checks 1
 *      and 3 again on the changed world.
 * Nothing crashes, leaks or reads out of bounds (ASan, LeakSanitizer).
 * FUZZ_VERBOSE=1 prints every generated object and its decoding. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <jansson.h>
#include "compile.h"
#include "decode.h"
#include "refmodel.h"
#include "util.h"

struct in {
	const uint8_t *p;
	size_t n;
};

static unsigned rd(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static const char *const NS[] = { "a", "b", "c" };
static const char *const KEYS[] = { "app", "tier", "team", "kubernetes.io/metadata.name" };
static const char *const VALS[] = { "web", "db", "x", "y", "a", "b" };
static const char *const CIDRS[] = { "10.0.0.0/8", "10.1.0.0/16",  "10.1.0.1/32", "10.2.0.0/24",
				     "0.0.0.0/0",  "10.99.0.0/24", "10.1.0.2/31", "192.0.2.0/24" };
static const char *const EXCEPT[] = { "10.1.0.0/24", "10.1.0.1/32", "10.99.0.1/32", "10.2.0.0/25" };

static json_t *labels(struct in *in)
{
	json_t *l = json_object();
	unsigned b = rd(in);

	if (b & 1)
		json_object_set_new(l, "app", json_string(VALS[(b >> 1) % 3]));
	if (b & 8)
		json_object_set_new(l, "tier", json_string(VALS[2 + ((b >> 4) & 1)]));
	if (b & 0x20)
		json_object_set_new(l, "team", json_string(VALS[2 + ((b >> 6) & 1)]));
	return l;
}

static json_t *selector(struct in *in)
{
	unsigned b = rd(in);
	json_t *s = json_object();
	const char *key = KEYS[(b >> 3) & 3];

	switch (b % 6) {
	case 0:
		break; /* everything */
	case 1:
	case 2:
		json_object_set_new(s, "matchLabels", json_pack("{s:s}", key, VALS[(b >> 5) % 6]));
		break;
	default: {
		static const char *const ops[] = { "In", "NotIn", "Exists", "DoesNotExist" };
		const char *op = ops[(b >> 5) & 3];
		json_t *r = json_pack("{s:s,s:s}", "key", key, "operator", op);
		if ((b >> 5 & 3) < 2) {
			unsigned v = rd(in);
			json_object_set_new(r, "values",
					    v & 0x80 ? json_pack("[s,s]", VALS[v % 6], VALS[(v >> 3) % 6]) :
						       json_pack("[s]", VALS[v % 6]));
		}
		json_object_set_new(s, "matchExpressions", json_pack("[o]", r));
		if (b % 6 == 5)
			json_object_set_new(s, "matchLabels", json_pack("{s:s}", "app", VALS[rd(in) % 3]));
		break;
	}
	}
	return s;
}

static const char *proto(unsigned b)
{
	static const char *const p[] = { "TCP", "UDP", "SCTP", "TCP" };
	return p[b & 3];
}

static const uint16_t PORTS[] = { 53, 80, 81, 8080, 9000, 1, 65535, 443 };

/* ---- NetworkPolicy ------------------------------------------------------------------------- */
static json_t *np_peer(struct in *in)
{
	unsigned b = rd(in);
	switch (b & 3) {
	case 0:
		return json_pack("{s:o}", "podSelector", selector(in));
	case 1:
		return json_pack("{s:o}", "namespaceSelector", selector(in));
	case 2:
		return json_pack("{s:o,s:o}", "namespaceSelector", selector(in), "podSelector", selector(in));
	default: {
		json_t *ib = json_pack("{s:s}", "cidr", CIDRS[(b >> 2) & 7]);
		if (b & 0x20)
			json_object_set_new(ib, "except", json_pack("[s]", EXCEPT[(b >> 6) & 3]));
		return json_pack("{s:o}", "ipBlock", ib);
	}
	}
}

static json_t *np_port(struct in *in)
{
	unsigned b = rd(in), c = rd(in);
	json_t *p = json_object();

	if (!(b & 4))
		json_object_set_new(p, "protocol", json_string(proto(b)));
	switch ((b >> 3) & 3) {
	case 0:
		break; /* every port */
	case 1:
		json_object_set_new(p, "port", json_integer(PORTS[c & 7]));
		break;
	case 2:
		json_object_set_new(p, "port", json_integer(PORTS[c & 7]));
		json_object_set_new(p, "endPort", json_integer(PORTS[c & 7] + (c >> 3)));
		break;
	default:
		json_object_set_new(p, "port", json_string(c & 1 ? "http" : c & 2 ? "dns" : "s"));
		break;
	}
	return p;
}

static json_t *np_rules(struct in *in, const char *peers)
{
	json_t *a = json_array();
	unsigned n = rd(in) % 3;

	for (unsigned i = 0; i < n; i++) {
		json_t *r = json_object();
		unsigned b = rd(in), np = b % 3, nq = (b >> 2) % 3;
		if (np) {
			json_t *pa = json_array();
			for (unsigned k = 0; k < np; k++)
				json_array_append_new(pa, np_peer(in));
			json_object_set_new(r, peers, pa);
		}
		if (nq) {
			json_t *qa = json_array();
			for (unsigned k = 0; k < nq; k++)
				json_array_append_new(qa, np_port(in));
			json_object_set_new(r, "ports", qa);
		}
		json_array_append_new(a, r);
	}
	return a;
}

static json_t *netpol(struct in *in, int i)
{
	unsigned b = rd(in);
	char name[16];
	json_t *spec = json_pack("{s:o}", "podSelector", selector(in));

	snprintf(name, sizeof(name), "np%d", i);
	switch ((b >> 2) & 3) {
	case 0:
		break; /* defaulted */
	case 1:
		json_object_set_new(spec, "policyTypes", json_pack("[s]", "Ingress"));
		break;
	case 2:
		json_object_set_new(spec, "policyTypes", json_pack("[s]", "Egress"));
		break;
	default:
		json_object_set_new(spec, "policyTypes", json_pack("[s,s]", "Ingress", "Egress"));
		break;
	}
	if (b & 0x10)
		json_object_set_new(spec, "ingress", np_rules(in, "from"));
	if (b & 0x20)
		json_object_set_new(spec, "egress", np_rules(in, "to"));
	return json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "apiVersion", "networking.k8s.io/v1", "kind",
			 "NetworkPolicy", "metadata", "name", name, "namespace", NS[(b & 3) % 3], "spec",
			 spec);
}

/* ---- the cluster kinds ----------------------------------------------------------------------- */
static json_t *cl_peer(struct in *in, bool egress)
{
	unsigned b = rd(in);
	switch (b % (egress ? 4 : 2)) {
	case 0:
		return json_pack("{s:o}", "namespaces", selector(in));
	case 1:
		return json_pack("{s:{s:o,s:o}}", "pods", "namespaceSelector", selector(in), "podSelector",
				 selector(in));
	case 2:
		return json_pack("{s:[s]}", "networks", CIDRS[(b >> 2) & 7]);
	default:
		return json_pack("{s:o}", "nodes", selector(in));
	}
}

static json_t *anp_port(struct in *in)
{
	unsigned b = rd(in), c = rd(in);
	switch (b % 3) {
	case 0:
		return json_pack("{s:{s:s,s:i}}", "portNumber", "protocol", proto(b >> 2), "port",
				 PORTS[c & 7]);
	case 1:
		return json_pack("{s:{s:s,s:i,s:i}}", "portRange", "protocol", proto(b >> 2), "start",
				 PORTS[c & 7], "end", PORTS[c & 7] + (c >> 3));
	default:
		return json_pack("{s:s}", "namedPort", c & 1 ? "http" : c & 2 ? "dns" : "s");
	}
}

static json_t *cnp_proto(struct in *in)
{
	unsigned b = rd(in), c = rd(in);
	static const char *const l4[] = { "tcp", "udp", "sctp" };
	const char *p = l4[(b >> 2) % 3];

	switch (b & 3) {
	case 0:
		return json_pack("{s:{}}", p);
	case 1:
		return json_pack("{s:{s:{s:i}}}", p, "destinationPort", "number", PORTS[c & 7]);
	case 2:
		return json_pack("{s:{s:{s:{s:i,s:i}}}}", p, "destinationPort", "range", "start",
				 PORTS[c & 7], "end", PORTS[c & 7] + 1 + (c >> 3));
	default:
		return json_pack("{s:s}", "destinationNamedPort", c & 1 ? "http" : c & 2 ? "dns" : "s");
	}
}

static json_t *cl_rules(struct in *in, int kind, bool egress)
{
	static const char *const a1[] = { "Allow", "Deny", "Pass" };
	static const char *const a2[] = { "Accept", "Deny", "Pass" };
	json_t *a = json_array();
	unsigned n = 1 + rd(in) % 2;

	for (unsigned i = 0; i < n; i++) {
		unsigned b = rd(in), np = 1 + b % 2, nq = (b >> 2) % 3;
		json_t *pa = json_array(), *r;
		const char *act = kind == MOAT_K_CNP  ? a2[(b >> 4) % 3] :
				  kind == MOAT_K_BANP ? a1[(b >> 4) & 1] :
							a1[(b >> 4) % 3];
		for (unsigned k = 0; k < np; k++)
			json_array_append_new(pa, cl_peer(in, egress));
		r = json_pack("{s:s,s:o}", "action", act, egress ? "to" : "from", pa);
		if (b & 0x40)
			json_object_set_new(r, "name", json_string(i ? "second" : "first"));
		if (nq) {
			json_t *qa = json_array();
			for (unsigned k = 0; k < nq; k++)
				json_array_append_new(qa, kind == MOAT_K_CNP ? cnp_proto(in) : anp_port(in));
			json_object_set_new(r, kind == MOAT_K_CNP ? "protocols" : "ports", qa);
		}
		json_array_append_new(a, r);
	}
	return a;
}

static json_t *cluster(struct in *in, int kind, int i)
{
	static const char *const names[] = { "alpha", "beta", "gamma", "delta", "eps" };
	unsigned b = rd(in);
	json_t *spec = json_object(), *subj;
	const char *api = kind == MOAT_K_CNP ? "policy.networking.k8s.io/v1alpha2" :
					       "policy.networking.k8s.io/v1alpha1";
	const char *k = kind == MOAT_K_ANP  ? "AdminNetworkPolicy" :
			kind == MOAT_K_BANP ? "BaselineAdminNetworkPolicy" :
					      "ClusterNetworkPolicy";

	subj = b & 1 ? json_pack("{s:o}", "namespaces", selector(in)) :
		       json_pack("{s:{s:o,s:o}}", "pods", "namespaceSelector", selector(in), "podSelector",
				 selector(in));
	json_object_set_new(spec, "subject", subj);
	if (kind != MOAT_K_BANP)
		json_object_set_new(spec, "priority", json_integer((b >> 1) & 3));
	if (kind == MOAT_K_CNP)
		json_object_set_new(spec, "tier", json_string(b & 8 ? "Baseline" : "Admin"));
	if (b & 0x10)
		json_object_set_new(spec, "ingress", cl_rules(in, kind, false));
	if (b & 0x20 || !(b & 0x10))
		json_object_set_new(spec, "egress", cl_rules(in, kind, true));
	return json_pack("{s:s,s:s,s:{s:s},s:o}", "apiVersion", api, "kind", k, "metadata", "name",
			 kind == MOAT_K_BANP ? "default" : names[(i + (b >> 6)) % 5], "spec", spec);
}

/* ---- the world ------------------------------------------------------------------------------- */
#define MAXOBJ 16
#define MAXEP  9

struct world {
	json_t *objs[MAXOBJ];
	size_t n, npol; /* policies are objs[n - npol .. n) */
	char ips[MAXEP][20];
	const char *node[MAXEP]; /* a pod's node */
	size_t nips;
	uint16_t extra_port;
};

static void add(struct world *w, json_t *o, bool policy)
{
	char err[512];
	struct moat_object *obj = NULL;
	int rc = moat_decode(o, "fuzz", &obj, err, sizeof(err));

	if (getenv("FUZZ_VERBOSE")) {
		char *t = json_dumps(o, JSON_COMPACT);
		fprintf(stderr, "%s\n  -> %s\n", t, rc ? err : "ok");
		free(t);
	}
	if (rc) {
		assert(rc == -EINVAL && strstr(err, "fuzz"));
		json_decref(o);
		return;
	}
	/* a later policy of the same key replaces an earlier one */
	if (policy) {
		char *k = moat_object_key(obj);
		for (size_t i = w->n - w->npol; i < w->n; i++) {
			struct moat_object *p = NULL;
			char *kp;
			moat_decode(w->objs[i], "fuzz", &p, err, sizeof(err));
			kp = moat_object_key(p);
			moat_object_free(p);
			if (!strcmp(k, kp)) {
				json_decref(w->objs[i]);
				memmove(&w->objs[i], &w->objs[i + 1], (w->n - i - 1) * sizeof(w->objs[0]));
				w->n--;
				w->npol--;
				free(kp);
				break;
			}
			free(kp);
		}
		free(k);
		w->npol++;
	}
	moat_object_free(obj);
	w->objs[w->n++] = o;
}

static void build(struct world *w, struct in *in)
{
	unsigned nsb = rd(in), npods = 2 + rd(in) % 5, npol;

	for (int i = 0; i < 3; i++) {
		json_t *l = labels(in), *md;
		if (i == 2 && (nsb & 1)) {
			json_decref(l);
			continue; /* namespace c exists only through its pods */
		}
		json_object_set_new(l, "kubernetes.io/metadata.name", json_string(NS[i]));
		md = json_pack("{s:s,s:o}", "name", NS[i], "labels", l);
		if (nsb & (2 << i))
			json_object_set_new(md, "annotations", json_pack("{s:s}", "moat.io/audit", "true"));
		add(w, json_pack("{s:s,s:s,s:o}", "apiVersion", "v1", "kind", "Namespace", "metadata", md),
		    false);
	}
	for (int i = 1; i <= 2; i++) {
		char name[8], ip[20];
		snprintf(name, sizeof(name), "n%d", i);
		snprintf(ip, sizeof(ip), "10.99.0.%d", i);
		add(w,
		    json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:{s:[{s:s,s:s}]}}", "apiVersion", "v1", "kind",
			      "Node", "metadata", "name", name, "labels", "team", i == 1 ? "x" : "y",
			      "status", "addresses", "type", "InternalIP", "address", ip),
		    false);
		snprintf(w->ips[w->nips++], sizeof(w->ips[0]), "%s", ip);
	}
	snprintf(w->ips[w->nips++], sizeof(w->ips[0]), "192.0.2.7");
	for (unsigned i = 0; i < npods; i++) {
		unsigned b = rd(in);
		char name[8], ip[20];
		json_t *ports = json_array();
		snprintf(name, sizeof(name), "p%u", i);
		snprintf(ip, sizeof(ip), "10.%u.0.%u", (b & 3) % 3, i + 1);
		if (b & 4)
			json_array_append_new(ports, json_pack("{s:s,s:i}", "name", "http", "containerPort",
							       b & 0x40 ? 8080 : 80));
		if (b & 8)
			json_array_append_new(ports, json_pack("{s:s,s:i,s:s}", "name", "dns",
							       "containerPort", 53, "protocol", "UDP"));
		if (b & 0x10)
			json_array_append_new(ports, json_pack("{s:s,s:i,s:s}", "name", "s", "containerPort",
							       9000, "protocol", "SCTP"));
		add(w,
		    json_pack("{s:s,s:s,s:{s:s,s:s,s:o},s:{s:s,s:[{s:s,s:o}]},s:{s:s,s:[{s:s}]}}",
			      "apiVersion", "v1", "kind", "Pod", "metadata", "name", name, "namespace",
			      NS[(b & 3) % 3], "labels", labels(in), "spec", "nodeName",
			      b & 0x20 ? "n2" : "n1", "containers", "name", "c", "ports", ports, "status",
			      "podIP", ip, "podIPs", "ip", ip),
		    false);
		w->node[w->nips] = b & 0x20 ? "n2" : "n1";
		snprintf(w->ips[w->nips++], sizeof(w->ips[0]), "%s", ip);
	}
	npol = rd(in) % 6;
	for (unsigned i = 0; i < npol && w->n < MAXOBJ; i++) {
		unsigned k = rd(in) % 5;
		add(w, k == 0 ? netpol(in, (int)i) : cluster(in, k == 4 ? MOAT_K_CNP : (int)k + 1, (int)i),
		    true);
	}
	w->extra_port = (uint16_t)(rd(in) << 8 | rd(in));
}

static struct moat_object *decode(json_t *o)
{
	struct moat_object *obj = NULL;
	char err[512];
	int rc = moat_decode(o, "fuzz", &obj, err, sizeof(err));
	assert(rc == 0 && obj);
	return obj;
}

static size_t flush(struct moat_compiler *c)
{
	struct moat_tx *tx;
	struct moat_flush_stats st;
	char err[256];
	int rc;

	rc = moat_tx_begin(NULL, true, &tx);
	assert(rc == 0);
	rc = moat_compiler_flush(c, tx, &st, err, sizeof(err));
	assert(rc == 0); /* unbounded tables */
	moat_tx_abort(tx);
	moat_compiler_commit(c);
	return st.ops;
}

struct probe {
	int verdict;
	char *rule;
};

#define NPROTO 4
#define NPORT  8

static size_t nprobes(const struct world *w)
{
	return w->nips * w->nips * (3 * NPORT + 1);
}

/* Every probe explained, in a fixed order; checked against the reference
 * when rw is given. */
static struct probe *explain_all(struct moat_compiler *c, const struct world *w, struct ref_world *rw)
{
	static const uint8_t protos[NPROTO] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMP };
	uint16_t ports[NPORT] = { 1, 53, 80, 81, 8080, 9000, 65535, w->extra_port };
	struct probe *out = xcalloc(nprobes(w), sizeof(*out));
	size_t n = 0;

	for (size_t a = 0; a < w->nips; a++)
		for (size_t b = 0; b < w->nips; b++)
			for (size_t pi = 0; pi < NPROTO; pi++)
				for (size_t po = 0; po < (pi < 3 ? NPORT : 1); po++) {
					uint8_t pr = protos[pi];
					uint16_t port = pi < 3 ? ports[po] : 0;
					struct probe *p = &out[n++];
					struct moat_explain x;
					struct moat_addr sa, da;
					struct ref_result r;
					const struct moat_rule_info *ri;
					char err[256];
					int rc;

					if (a == b || (a < 3 && b < 3))
						continue; /* no pod on either side */
					rc = moat_compiler_explain(c, w->ips[a], w->ips[b], pr, port, &x, err,
								   sizeof(err));
					assert(rc == 0);
					p->verdict = x.verdict;
					p->rule = moat_rule_describe(c, x.rule);
					assert(p->rule);
					if (!rw)
						continue;
					/* ingress is judged on the destination pod's node,
					 * with that node's exemption (docs/policy.md) */
					rw->node = w->node[b] ? w->node[b] : "n1";
					moat_addr_parse(w->ips[a], &sa);
					moat_addr_parse(w->ips[b], &da);
					ref_judge(rw, &sa, &da, pr, port, &r);
					if (x.verdict != r.verdict ||
					    (r.verdict == MOAT_VERDICT_DENY &&
					     (x.dir != r.dir || x.tier != r.tier))) {
						fprintf(stderr,
							"%s -> %s %u/%s: reference %s (dir %d tier %d), compiled %s (dir %d tier %d, %s)\n",
							w->ips[a], w->ips[b], port, moat_proto_name(pr),
							moat_verdict_name(r.verdict), r.dir, r.tier,
							moat_verdict_name(x.verdict), x.dir, x.tier, p->rule);
						abort();
					}
					ri = moat_compiler_rule(c, x.rule);
					assert(ri);
					if (x.verdict != MOAT_VERDICT_AUDIT) {
						assert(ri->tier == x.tier);
						if (x.verdict == MOAT_VERDICT_DENY)
							assert(ri->dir == x.dir);
					}
				}
	assert(n == nprobes(w));
	return out;
}

static void same(const struct world *w, const struct probe *a, const struct probe *b, const char *what)
{
	for (size_t i = 0; i < nprobes(w); i++) {
		if (!a[i].rule && !b[i].rule)
			continue;
		if (a[i].verdict != b[i].verdict || strcmp(a[i].rule, b[i].rule)) {
			fprintf(stderr, "%s: probe %zu: %s (%s) vs %s (%s)\n", what, i,
				moat_verdict_name(a[i].verdict), a[i].rule, moat_verdict_name(b[i].verdict),
				b[i].rule);
			abort();
		}
	}
}

static void probes_free(const struct world *w, struct probe *p)
{
	for (size_t i = 0; i < nprobes(w); i++)
		free(p[i].rule);
	free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct world w = { 0 };
	struct moat_compiler_opts o = { .node = "n1" };
	struct moat_compiler *inc, *full;
	const struct moat_object *refobjs[MAXOBJ];
	struct ref_world rw = { .node = "n1", .allow_local_node = true };
	struct probe *pi, *pf, *pr;
	size_t base;
	int rc;

	build(&w, &in);
	base = w.n - w.npol;
	for (size_t i = 0; i < w.n; i++)
		refobjs[i] = decode(w.objs[i]);
	rw.n = w.n;
	rw.objs = refobjs;

	/* incremental: the cluster, then one policy per flush */
	rc = moat_compiler_new(&o, &inc);
	assert(rc == 0);
	for (size_t i = 0; i < base; i++)
		assert(moat_compiler_apply(inc, decode(w.objs[i])) == 0);
	flush(inc);
	for (size_t i = base; i < w.n; i++) {
		assert(moat_compiler_apply(inc, decode(w.objs[i])) == 0);
		flush(inc);
	}
	pi = explain_all(inc, &w, &rw);

	/* full: everything at once */
	rc = moat_compiler_new(&o, &full);
	assert(rc == 0);
	for (size_t i = w.n; i-- > 0;)
		assert(moat_compiler_apply(full, decode(w.objs[i])) == 0);
	flush(full);
	pf = explain_all(full, &w, NULL);
	same(&w, pi, pf, "incremental vs full");

	/* the same objects again: nothing to write */
	for (size_t i = 0; i < w.n; i++)
		assert(moat_compiler_apply(inc, decode(w.objs[i])) == 0);
	assert(flush(inc) == 0);
	if (w.npol) {
		json_t *p = w.objs[base + in.n % w.npol];
		struct moat_object *obj = decode(p);
		char *key = moat_object_key(obj);

		moat_object_free(obj);
		/* deleted and added back before the flush: nothing to write */
		assert(moat_compiler_delete(inc, key) == 0);
		assert(moat_compiler_apply(inc, decode(p)) == 0);
		assert(flush(inc) == 0);
		/* deleted, flushed, added back: the same verdicts */
		assert(moat_compiler_delete(inc, key) == 0);
		flush(inc);
		assert(moat_compiler_apply(inc, decode(p)) == 0);
		flush(inc);
		pr = explain_all(inc, &w, NULL);
		same(&w, pi, pr, "deleted and added back");
		probes_free(&w, pr);
		free(key);
	}

	/* labels change under the policies: a pod's or a namespace's */
	if (in.n) {
		unsigned b = rd(&in);
		size_t cands[MAXOBJ], nc = 0, t;
		json_t *obj, *l;
		const char *kind;
		struct moat_compiler *full2;
		struct probe *p2, *f2;

		for (size_t i = 0; i < base; i++) {
			kind = json_string_value(json_object_get(w.objs[i], "kind"));
			if (!strcmp(kind, "Pod") || !strcmp(kind, "Namespace"))
				cands[nc++] = i;
		}
		assert(nc > 0); /* namespaces a and b are always there */
		t = cands[b % nc];
		obj = json_deep_copy(w.objs[t]);
		l = labels(&in);
		kind = json_string_value(json_object_get(obj, "kind"));
		if (!strcmp(kind, "Namespace"))
			json_object_set_new(
				l, "kubernetes.io/metadata.name",
				json_incref(json_object_get(json_object_get(obj, "metadata"), "name")));
		json_object_set_new(json_object_get(obj, "metadata"), "labels", l);
		json_decref(w.objs[t]);
		w.objs[t] = obj;
		moat_object_free((struct moat_object *)refobjs[t]);
		refobjs[t] = decode(obj);
		assert(moat_compiler_apply(inc, decode(obj)) == 0);
		flush(inc);
		p2 = explain_all(inc, &w, &rw);
		rc = moat_compiler_new(&o, &full2);
		assert(rc == 0);
		for (size_t i = 0; i < w.n; i++)
			assert(moat_compiler_apply(full2, decode(w.objs[i])) == 0);
		flush(full2);
		f2 = explain_all(full2, &w, NULL);
		same(&w, p2, f2, "relabelled: incremental vs full");
		probes_free(&w, p2);
		probes_free(&w, f2);
		moat_compiler_free(full2);
	}

	probes_free(&w, pi);
	probes_free(&w, pf);
	moat_compiler_free(inc);
	moat_compiler_free(full);
	for (size_t i = 0; i < w.n; i++) {
		moat_object_free((struct moat_object *)refobjs[i]);
		json_decref(w.objs[i]);
	}
	return 0;
}
