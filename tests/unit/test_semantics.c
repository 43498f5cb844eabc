// SPDX-License-Identifier: Apache-2.0
/* Policy semantics the upstream conformance suites do not test, checked on
 * the compiled tables (moat_compiler_explain, which performs the datapath's
 * lookups) with hand-written expectations, and each also against the
 * independent reference model:
 *   same port on another protocol; NetworkPolicy isolation denying what no
 *   rule allows (the baseline tier then not consulted); Pass in the Baseline
 *   tier; equal priorities (documented tie-break: lowest name); ICMP; ingress
 *   from non-pod sources (world, remote node, the pod's own node); rule
 *   attribution; capacity refusal with rollback; audit mode. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "compile.h"
#include "decode.h"
#include "manifest.h"
#include "refmodel.h"
#include "util.h"

/* Two namespaces a and b with pods a/web (10.0.1.1), a/db (10.0.1.2),
 * b/client (10.0.2.1) on node n1 (10.99.0.1), node n2 (10.99.0.2). */
static const char *base_yaml =
	"apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {kubernetes.io/os: linux}}\n"
	"status: {addresses: [{type: InternalIP, address: 10.99.0.1}]}\n---\n"
	"apiVersion: v1\nkind: Node\nmetadata: {name: n2, labels: {kubernetes.io/os: linux}}\n"
	"status: {addresses: [{type: InternalIP, address: 10.99.0.2}]}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {team: x}}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: b, labels: {team: y}}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: a, labels: {app: web}}\n"
	"spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 80}, {name: dns, containerPort: 53, protocol: TCP}]}]}\n"
	"status: {podIP: 10.0.1.1}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: a, labels: {app: db}}\n"
	"spec: {nodeName: n2, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.2}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: b, labels: {app: client}}\n"
	"spec: {nodeName: n2, containers: [{name: c}]}\nstatus: {podIP: 10.0.2.1}\n";

struct fx {
	struct moat_compiler *c;
	struct ptrvec objs; /* decoded copies for the reference model */
	__u32 caps[MOAT_T_MAX];
};

static void load(struct fx *f, const char *yaml)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };

	if (moat_manifest_parse(yaml, strlen(yaml), "test.yaml", &docs, &errs))
		fail_msg("yaml: %s", errs.n ? errs.v[0] : "?");
	for (size_t i = 0; i < docs.n; i++) {
		struct moat_object *o = NULL, *copy = NULL;
		char err[512];
		if (moat_decode(docs.v[i].json, "test.yaml", &o, err, sizeof(err)))
			fail_msg("decode: %s", err);
		moat_decode(docs.v[i].json, "test.yaml", &copy, err, sizeof(err));
		assert_int_equal(moat_compiler_apply(f->c, o), 0);
		/* replace an older copy with the same key */
		char *k = moat_object_key(copy);
		for (size_t j = 0; j < f->objs.n; j++) {
			char *kj = moat_object_key(f->objs.v[j]);
			bool same = !strcmp(k, kj);
			free(kj);
			if (same) {
				moat_object_free(f->objs.v[j]);
				f->objs.v[j] = f->objs.v[--f->objs.n];
				break;
			}
		}
		free(k);
		ptrvec_push(&f->objs, copy);
	}
	moat_docs_free(&docs);
	moat_errs_free(&errs);
}

static int flush(struct fx *f, char *err, size_t errlen)
{
	struct moat_tx *tx;
	struct moat_flush_stats st;
	int rc;

	assert_int_equal(moat_tx_begin(NULL, false, &tx), 0);
	rc = moat_compiler_flush(f->c, tx, &st, err, errlen);
	moat_tx_abort(tx);
	if (rc)
		moat_compiler_abort(f->c);
	else
		moat_compiler_commit(f->c);
	return rc;
}

static void drop(struct fx *f, const char *key)
{
	assert_int_equal(moat_compiler_delete(f->c, key), 0);
	for (size_t j = 0; j < f->objs.n; j++) {
		char *kj = moat_object_key(f->objs.v[j]);
		bool same = !strcmp(key, kj);
		free(kj);
		if (same) {
			moat_object_free(f->objs.v[j]);
			f->objs.v[j] = f->objs.v[--f->objs.n];
			return;
		}
	}
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct moat_compiler_opts o = { .node = "n1" };
	char err[256];

	memcpy(o.cap, f->caps, sizeof(o.cap));
	moat_compiler_new(&o, &f->c);
	load(f, base_yaml);
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	for (size_t i = 0; i < f->objs.n; i++)
		moat_object_free(f->objs.v[i]);
	ptrvec_free(&f->objs);
	moat_compiler_free(f->c);
	free(f);
	return 0;
}

/* Asserts the verdict, checks the reference agrees, returns the explain. */
static struct moat_explain expect(struct fx *f, const char *from, const char *to, uint8_t proto,
				  uint16_t port, int want)
{
	struct moat_explain x;
	struct ref_world w = { .n = f->objs.n,
			       .objs = (const struct moat_object **)f->objs.v,
			       .node = "n1",
			       .allow_local_node = true };
	struct moat_addr sa, da;
	struct ref_result r;
	char err[256];
	const char *sip = from, *dip = to;
	static const struct {
		const char *id, *ip;
	} ips[] = {
		{ "a/web", "10.0.1.1" },
		{ "a/db", "10.0.1.2" },
		{ "b/client", "10.0.2.1" },
	};

	if (moat_compiler_explain(f->c, from, to, proto, port, &x, err, sizeof(err)))
		fail_msg("explain: %s", err);
	for (size_t i = 0; i < 3; i++) {
		if (!strcmp(from, ips[i].id))
			sip = ips[i].ip;
		if (!strcmp(to, ips[i].id))
			dip = ips[i].ip;
	}
	assert_int_equal(moat_addr_parse(sip, &sa), 0);
	assert_int_equal(moat_addr_parse(dip, &da), 0);
	ref_judge(&w, &sa, &da, proto, port, &r);
	if (x.verdict != want || r.verdict != want)
		fail_msg("%s -> %s %u/%s: want %s, compiled %s, reference %s", from, to, port,
			 moat_proto_name(proto), moat_verdict_name(want), moat_verdict_name(x.verdict),
			 moat_verdict_name(r.verdict));
	return x;
}

static void assert_rule(struct fx *f, const struct moat_explain *x, const char *needle)
{
	char *d = moat_rule_describe(f->c, x->rule);
	if (!strstr(d, needle))
		fail_msg("decided by \"%s\", expected it to mention \"%s\"", d, needle);
	free(d);
}

#define A MOAT_VERDICT_ALLOW
#define D MOAT_VERDICT_DENY

static void test_same_port_other_protocol(void **state)
{
	struct fx *f = *state;
	char err[256];

	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: tcp80, namespace: a}\n"
	     "spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{ports: [{port: 80}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 80, A);
	expect(f, "b/client", "a/web", IPPROTO_UDP, 80, D);
	expect(f, "b/client", "a/web", IPPROTO_SCTP, 80, D);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 81, D);
}

/* "every port of a protocol" covers port 0 too: a packet may carry it, and
 * a Deny of all TCP must not let it reach a later Accept */
static void test_every_port_includes_zero(void **state)
{
	struct fx *f = *state;
	char err[256];

	load(f, "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
		"metadata: {name: no-tcp}\nspec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n"
		"  ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {}}]},\n"
		"            {action: Accept, from: [{namespaces: {}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 0, D);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 80, D);
	expect(f, "b/client", "a/web", IPPROTO_UDP, 0, A);
}

/* an egress named port to any peer resolves on every pod: one that appears
 * later, in another namespace, is reachable on its port of that name */
static void test_named_port_any_peer_new_pod(void **state)
{
	struct fx *f = *state;
	char err[256];

	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: http-out, namespace: a}\n"
	     "spec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Egress]\n  egress: [{ports: [{port: http}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	load(f, "apiVersion: v1\nkind: Pod\nmetadata: {name: srv, namespace: b, labels: {app: srv}}\n"
		"spec: {nodeName: n2, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}\n"
		"status: {podIP: 10.0.2.2}\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "a/db", "10.0.2.2", IPPROTO_TCP, 8080, A);
	expect(f, "a/db", "10.0.2.2", IPPROTO_TCP, 80, D);
}

static void test_named_port_protocol(void **state)
{
	struct fx *f = *state;
	char err[256];

	/* "dns" is a TCP container port: a UDP rule naming it matches nothing */
	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: dns, namespace: a}\n"
	     "spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{ports: [{protocol: UDP, port: dns}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_UDP, 53, D);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 53, D);
	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: dns, namespace: a}\n"
	     "spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{ports: [{protocol: TCP, port: dns}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 53, A);
}

static void test_isolation_beats_baseline(void **state)
{
	struct fx *f = *state;
	char err[256];
	struct moat_explain x;

	load(f, "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\n"
		"metadata: {name: default}\nspec:\n  subject: {namespaces: {}}\n"
		"  ingress: [{action: Allow, from: [{namespaces: {matchLabels: {team: y}}}]},\n"
		"            {action: Deny, from: [{namespaces: {}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	/* no NetworkPolicy: the baseline decides */
	x = expect(f, "b/client", "a/web", IPPROTO_TCP, 80, A);
	assert_int_equal(x.tier, MOAT_TIER_BASELINE);
	x = expect(f, "a/db", "a/web", IPPROTO_TCP, 80, D);
	assert_int_equal(x.tier, MOAT_TIER_BASELINE);
	/* isolated by a NetworkPolicy that allows only a/db: the baseline's
	 * allow for team=y is never consulted */
	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-db, namespace: a}\n"
	     "spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: db}}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	x = expect(f, "b/client", "a/web", IPPROTO_TCP, 80, D);
	assert_int_equal(x.tier, MOAT_TIER_NETPOL);
	assert_rule(f, &x, "a/only-db isolates ingress");
	x = expect(f, "a/db", "a/web", IPPROTO_TCP, 80, A);
	assert_int_equal(x.tier, MOAT_TIER_NETPOL);
	assert_rule(f, &x, "a/only-db ingress[0]");
}

static void test_pass_in_baseline(void **state)
{
	struct fx *f = *state;
	char err[256];
	struct moat_explain x;

	load(f,
	     "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
	     "metadata: {name: base-pass}\nspec:\n  tier: Baseline\n  priority: 10\n  subject: {namespaces: {}}\n"
	     "  ingress: [{action: Pass, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}]\n"
	     "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"
	     "metadata: {name: base-deny}\nspec:\n  tier: Baseline\n  priority: 20\n  subject: {namespaces: {}}\n"
	     "  ingress: [{action: Deny, from: [{namespaces: {}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	/* Pass skips the rest of the baseline tier: default allow */
	x = expect(f, "b/client", "a/web", IPPROTO_TCP, 80, A);
	assert_int_equal(x.tier, MOAT_TIER_DEFAULT);
	x = expect(f, "b/client", "a/web", IPPROTO_TCP, 81, D);
	assert_rule(f, &x, "base-deny");
}

static void test_equal_priorities(void **state)
{
	struct fx *f = *state;
	char err[256];
	struct moat_explain x;

	/* the documented tie-break: the lower name wins */
	load(f, "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
		"metadata: {name: alpha-allow}\nspec:\n  priority: 5\n  subject: {namespaces: {}}\n"
		"  ingress: [{action: Allow, from: [{namespaces: {}}]}]\n---\n"
		"apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
		"metadata: {name: beta-deny}\nspec:\n  priority: 5\n  subject: {namespaces: {}}\n"
		"  ingress: [{action: Deny, from: [{namespaces: {}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	x = expect(f, "b/client", "a/web", IPPROTO_TCP, 80, A);
	assert_rule(f, &x, "alpha-allow");
	/* the same two rules under swapped names: the verdict follows the name */
	drop(f, "AdminNetworkPolicy/alpha-allow");
	drop(f, "AdminNetworkPolicy/beta-deny");
	load(f, "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
		"metadata: {name: beta-allow}\nspec:\n  priority: 5\n  subject: {namespaces: {}}\n"
		"  ingress: [{action: Allow, from: [{namespaces: {}}]}]\n---\n"
		"apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
		"metadata: {name: alpha-deny}\nspec:\n  priority: 5\n  subject: {namespaces: {}}\n"
		"  ingress: [{action: Deny, from: [{namespaces: {}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	x = expect(f, "b/client", "a/web", IPPROTO_TCP, 80, D);
	assert_rule(f, &x, "alpha-deny");
}

static void test_icmp(void **state)
{
	struct fx *f = *state;
	char err[256];

	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: tcp-only, namespace: a}\n"
	     "spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{ports: [{port: 80}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	/* isolated, and no rule without ports: ICMP denied */
	expect(f, "b/client", "a/web", IPPROTO_ICMP, 0, D);
	/* a rule without ports covers every protocol, ICMP included */
	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: any-from-b, namespace: a}\n"
	     "spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: y}}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_ICMP, 0, A);
	/* an admin deny to all networks covers ICMP too */
	load(f,
	     "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
	     "metadata: {name: no-egress}\nspec:\n  priority: 1\n  subject: {namespaces: {matchLabels: {team: y}}}\n"
	     "  egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_ICMP, 0, D);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 80, D);
}

static void test_ingress_from_non_pods(void **state)
{
	struct fx *f = *state;
	char err[256];
	struct moat_explain x;

	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: pods-only, namespace: a}\n"
	     "spec:\n  podSelector: {matchLabels: {app: web}}\n"
	     "  ingress: [{from: [{namespaceSelector: {}}]}, {from: [{ipBlock: {cidr: 192.168.0.0/16, except: [192.168.9.0/24]}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 80, A);
	/* the world: only the ipBlock, minus its except */
	expect(f, "203.0.113.9", "a/web", IPPROTO_TCP, 80, D);
	expect(f, "192.168.1.1", "a/web", IPPROTO_TCP, 80, A);
	expect(f, "192.168.9.1", "a/web", IPPROTO_TCP, 80, D);
	/* a remote node is judged like any other source */
	expect(f, "10.99.0.2", "a/web", IPPROTO_TCP, 80, D);
	/* the pod's own node (kubelet) is always allowed */
	x = expect(f, "10.99.0.1", "a/web", IPPROTO_TCP, 80, A);
	assert_int_equal(x.ingress.rule, MOAT_RULE_LOCAL_NODE);
	/* admin ingress rules only ever match pods: the world falls through */
	load(f,
	     "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
	     "metadata: {name: deny-all-pods}\nspec:\n  priority: 1\n  subject: {namespaces: {matchLabels: {team: x}}}\n"
	     "  ingress: [{action: Deny, from: [{namespaces: {}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 80, D);
	expect(f, "192.168.1.1", "a/web", IPPROTO_TCP, 80, A);
}

static void test_capacity_refused_and_rolled_back(void **state)
{
	struct fx *f = *state;
	struct moat_compiler_opts o = { .node = "n1" };
	struct moat_compiler *small;
	char err[256];

	(void)state;
	/* a compiler whose decision table holds 3 entries */
	o.cap[MOAT_T_POL] = 3;
	moat_compiler_new(&o, &small);
	moat_compiler_free(f->c);
	f->c = small;
	for (size_t i = 0; i < f->objs.n; i++)
		moat_object_free(f->objs.v[i]);
	f->objs.n = 0;
	load(f, base_yaml);
	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: small, namespace: a}\n"
	     "spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: db}}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 80, D);
	/* too big: refused with a message naming the table; the previous
	 * state stays */
	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: big, namespace: a}\n"
	     "spec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 1}, {port: 2}, {port: 3}, {port: 4}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), -ENOSPC);
	assert_non_null(strstr(err, "moat_pol"));
	/* the refused object was rolled back: the compiler does not know it */
	assert_int_equal(moat_compiler_delete(f->c, "NetworkPolicy/a/big"), -ENOENT);
	for (size_t j = 0; j < f->objs.n; j++) {
		char *kj = moat_object_key(f->objs.v[j]);
		bool big = !strcmp(kj, "NetworkPolicy/a/big");
		free(kj);
		if (big) {
			moat_object_free(f->objs.v[j]);
			f->objs.v[j] = f->objs.v[--f->objs.n];
			break;
		}
	}
	{
		struct moat_explain x;
		char e2[256];
		assert_int_equal(moat_compiler_explain(f->c, "b/client", "a/web", IPPROTO_TCP, 1, &x, e2,
						       sizeof(e2)),
				 0);
		assert_int_equal(x.verdict, D); /* "big" never took effect */
		assert_int_equal(
			moat_compiler_explain(f->c, "a/db", "a/web", IPPROTO_TCP, 80, &x, e2, sizeof(e2)), 0);
		assert_int_equal(x.verdict, A);
	}
}

static void test_audit_mode(void **state)
{
	struct fx *f = *state;
	char err[256];
	struct moat_explain x;

	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
	     "metadata: {name: trial, namespace: a, annotations: {moat.io/audit: \"true\"}}\n"
	     "spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: db}}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	x = expect(f, "b/client", "a/web", IPPROTO_TCP, 80, MOAT_VERDICT_AUDIT);
	assert_rule(f, &x, "trial isolates ingress");
	expect(f, "a/db", "a/web", IPPROTO_TCP, 80, A);
	/* switching to enforce is one change */
	load(f,
	     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
	     "metadata: {name: trial, namespace: a, annotations: {moat.io/audit: \"false\"}}\n"
	     "spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: db}}}]}]\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 80, D);
	/* a namespace in audit mode audits all its NetworkPolicies */
	load(f,
	     "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {team: x}, annotations: {moat.io/audit: \"true\"}}\n");
	assert_int_equal(flush(f, err, sizeof(err)), 0);
	expect(f, "b/client", "a/web", IPPROTO_TCP, 80, MOAT_VERDICT_AUDIT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_same_port_other_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_port_includes_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_named_port_any_peer_new_pod, setup, teardown),
		cmocka_unit_test_setup_teardown(test_named_port_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_isolation_beats_baseline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pass_in_baseline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_equal_priorities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_icmp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ingress_from_non_pods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capacity_refused_and_rolled_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_mode, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
