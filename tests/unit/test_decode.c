// SPDX-License-Identifier: Apache-2.0
/* Decoder tests: the conformance corpus, the mapping of every kind into the
 * model, one good and one bad example per validation rule with the exact
 * message, and mutated objects that must give errors, never crashes. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "decode.h"
#include "manifest.h"
#include "model.h"
#include "moat/abi.h"

/* ---- helpers ----------------------------------------------------------------------- */
/* One document from YAML/JSON text. */
static json_t *doc1(const char *text)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	json_t *j;

	if (moat_manifest_parse(text, strlen(text), "t.yaml", &docs, &errs)) {
		print_error("manifest: %s\n  in: %.300s\n", errs.n ? errs.v[0] : "?", text);
		fail();
	}
	assert_int_equal(docs.n, 1);
	j = json_incref(docs.v[0].json);
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	return j;
}

static int dec(const char *text, struct moat_object **o, char *err, size_t errlen)
{
	json_t *j = doc1(text);
	int rc = moat_decode(j, "t.yaml", o, err, errlen);

	json_decref(j);
	return rc;
}

static struct moat_object *ok(const char *text)
{
	struct moat_object *o = NULL;
	char err[512];
	int rc = dec(text, &o, err, sizeof(err));

	if (rc) {
		print_error("unexpected error: %s\n", err);
		fail();
	}
	assert_non_null(o);
	return o;
}

static struct moat_policy *okp(const char *text, struct moat_object **o)
{
	*o = ok(text);
	assert_int_equal((*o)->kind, MOAT_O_POLICY);
	return (*o)->u.policy;
}

struct bad {
	const char *text;
	const char *err;
};

static void check_bad(const struct bad *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct moat_object *o = NULL;
		char err[512] = "";
		int rc = dec(v[i].text, &o, err, sizeof(err));

		if (rc != -EINVAL || strcmp(err, v[i].err)) {
			print_error("case %zu: %s\n  rc %d\n  want: %s\n  got:  %s\n", i, v[i].text, rc,
				    v[i].err, err);
			moat_object_free(o);
			fail();
		}
		assert_null(o);
	}
}

static char *sel_str(const struct moat_selector *s)
{
	static char buf[512];
	char *t = moat_selector_string(s);

	assert_non_null(t);
	snprintf(buf, sizeof(buf), "%s", t);
	free(t);
	return buf;
}

static const char *cidr_s(const struct moat_cidr *c)
{
	static char buf[64];
	return moat_cidr_str(c, buf);
}

static const char *addr_s(const struct moat_addr *a)
{
	static char buf[64];
	return moat_addr_str(a, buf);
}

#define NP_HEAD \
	"{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: allow-db, namespace: y}, spec: "
#define NP(spec) NP_HEAD spec "}"
#define NPE      "t.yaml: NetworkPolicy y/allow-db: "
#define ANP_HEAD \
	"{apiVersion: policy.networking.k8s.io/v1alpha1, kind: AdminNetworkPolicy, metadata: {name: a}, spec: "
#define ANP(spec) ANP_HEAD spec "}"
#define ANPE      "t.yaml: AdminNetworkPolicy a: "
#define BANP_HEAD \
	"{apiVersion: policy.networking.k8s.io/v1alpha1, kind: BaselineAdminNetworkPolicy, metadata: {name: default}, spec: "
#define BANP(spec) BANP_HEAD spec "}"
#define BANPE      "t.yaml: BaselineAdminNetworkPolicy default: "
#define CNP_HEAD \
	"{apiVersion: policy.networking.k8s.io/v1alpha2, kind: ClusterNetworkPolicy, metadata: {name: c}, spec: "
#define CNP(spec) CNP_HEAD spec "}"
#define CNPE      "t.yaml: ClusterNetworkPolicy c: "
#define SUBJ      "subject: {namespaces: {}}"
#define TO_NS     "to: [{namespaces: {}}]"
#define FROM_NS   "from: [{namespaces: {}}]"

/* ---- the conformance corpus ------------------------------------------------------------ */
static const char *corpus_dir(void)
{
	const char *d = getenv("MOAT_CONFORMANCE_DIR");
	return d ? d : "/work/shared/conformance";
}

/* The corpus text with its run-time placeholders substituted. */
static json_t *load_corpus(const char *file)
{
	char path[PATH_MAX], *buf, *out, *o;
	size_t len, cap;
	json_error_t je;
	json_t *j;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", corpus_dir(), file);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, len, f), len);
	buf[len] = 0;
	fclose(f);
	cap = len + 1;
	out = o = calloc(1, cap);
	assert_non_null(out);
	for (const char *p = buf; *p;) {
		if (!strncmp(p, "{{podIP:", 8) && strstr(p, "}}")) {
			o += sprintf(o, "10.0.0.1");
			p = strstr(p, "}}") + 2;
		} else if (!strncmp(p, "{{hostPrefixLen}}", 17)) {
			o += sprintf(o, "32");
			p += 17;
		} else {
			*o++ = *p++;
		}
	}
	*o = 0;
	j = json_loads(out, 0, &je);
	if (!j)
		print_error("%s:%d: %s\n", path, je.line, je.text);
	assert_non_null(j);
	free(buf);
	free(out);
	return j;
}

static size_t decode_all(json_t *arr, const char *what, size_t *npol)
{
	size_t i, n = 0;
	json_t *v;

	json_array_foreach(arr, i, v)
	{
		struct moat_object *o = NULL;
		char err[512];

		if (moat_decode(v, what, &o, err, sizeof(err))) {
			print_error("%s[%zu]: %s\n", what, i, err);
			fail();
		}
		assert_non_null(o);
		assert_int_equal(o->kind, MOAT_O_POLICY);
		*npol += 1;
		n++;
		moat_object_free(o);
	}
	return n;
}

static void t_corpus_netpol(void **state)
{
	json_t *c = load_corpus("netpol-cases.json"), *cs, *k, *s, *a;
	size_t i, j, l, n = 0;

	(void)state;
	if (!c)
		skip();
	cs = json_object_get(c, "cases");
	assert_true(json_array_size(cs) > 0);
	json_array_foreach(cs, i, k)
	{
		decode_all(json_object_get(k, "policies"), "policies", &n);
		json_array_foreach(json_object_get(k, "steps"), j, s)
		{
			decode_all(json_object_get(s, "policies_in_effect"), "policies_in_effect", &n);
			json_array_foreach(json_object_get(s, "actions"), l,
					   a) if (json_object_get(a, "policy"))
			{
				json_t *one = json_pack("[O]", json_object_get(a, "policy"));
				decode_all(one, "actions.policy", &n);
				json_decref(one);
			}
		}
	}
	print_message("netpol corpus: %zu policy objects decoded\n", n);
	assert_true(n >= 74);
	json_decref(c);
}

static void t_corpus_anp(void **state)
{
	json_t *c = load_corpus("anp-cases.json"), *cs, *k, *s, *ch;
	size_t i, j, l, n = 0;

	(void)state;
	if (!c)
		skip();
	cs = json_object_get(c, "cases");
	assert_true(json_array_size(cs) > 0);
	json_array_foreach(cs, i, k)
	{
		decode_all(json_object_get(k, "objects"), "objects", &n);
		json_array_foreach(json_object_get(k, "steps"), j, s)
		{
			decode_all(json_object_get(s, "objectsInEffect"), "objectsInEffect", &n);
			json_array_foreach(json_object_get(s, "changes"), l,
					   ch) if (json_object_get(ch, "object"))
			{
				json_t *one = json_pack("[O]", json_object_get(ch, "object"));
				decode_all(one, "changes.object", &n);
				json_decref(one);
			}
		}
	}
	print_message("anp corpus: %zu policy objects decoded\n", n);
	assert_true(n >= 96);
	json_decref(c);
}

/* The corpus models (namespaces, pods) written as Kubernetes objects. */
static void t_corpus_models(void **state)
{
	json_t *np = load_corpus("netpol-cases.json"), *anp = load_corpus("anp-cases.json");
	json_t *m, *v, *c, *e;
	size_t i, k, n = 0, ip = 1;

	(void)state;
	if (!np || !anp)
		skip();
	json_t *models[2] = { json_object_get(np, "model"), json_object_get(anp, "baseModel") };
	for (int x = 0; x < 2; x++) {
		m = models[x];
		json_array_foreach(json_object_get(m, "namespaces"), i, v)
		{
			json_t *o = json_pack("{s:s,s:s,s:{s:O,s:O}}", "apiVersion", "v1", "kind",
					      "Namespace", "metadata", "name", json_object_get(v, "name"),
					      "labels", json_object_get(v, "labels"));
			struct moat_object *ob = NULL;
			char err[256];

			assert_int_equal(moat_decode(o, "model", &ob, err, sizeof(err)), 0);
			assert_string_equal(moat_labels_get(&ob->u.namespace->labels,
							    "kubernetes.io/metadata.name"),
					    json_string_value(json_object_get(v, "name")));
			moat_object_free(ob);
			json_decref(o);
			n++;
		}
		json_array_foreach(json_object_get(m, "pods"), i, v)
		{
			json_t *ports = json_array(), *cps = x ? json_object_get(v, "containerPorts") :
								 json_object_get(m, "containers");
			char ipbuf[32];

			json_array_foreach(cps, k, c)
			{
				e = json_pack("{s:O,s:O}", "containerPort",
					      json_object_get(c, "containerPort"), "protocol",
					      json_object_get(c, "protocol"));
				json_object_set(e, "name", json_object_get(c, x ? "name" : "portName"));
				json_array_append_new(ports, e);
			}
			snprintf(ipbuf, sizeof(ipbuf), "10.1.0.%zu", ip++);
			json_t *o = json_pack("{s:s,s:s,s:{s:O,s:O,s:O},s:{s:b,s:[{s:s,s:o}]},s:{s:s}}",
					      "apiVersion", "v1", "kind", "Pod", "metadata", "name",
					      json_object_get(v, "name"), "namespace",
					      json_object_get(v, "namespace"), "labels",
					      json_object_get(v, "labels"), "spec", "hostNetwork",
					      json_is_true(json_object_get(v, "hostNetwork")), "containers",
					      "name", "c", "ports", ports, "status", "podIP", ipbuf);
			struct moat_object *ob = NULL;
			char err[256];

			assert_non_null(o);
			if (moat_decode(o, "model", &ob, err, sizeof(err))) {
				print_error("%s\n", err);
				fail();
			}
			assert_int_equal(ob->u.pod->nports, json_array_size(cps));
			assert_int_equal(ob->u.pod->nips, 1);
			moat_object_free(ob);
			json_decref(o);
			n++;
		}
	}
	assert_true(n > 20);
	json_decref(np);
	json_decref(anp);
}

/* ---- NetworkPolicy ---------------------------------------------------------------------------- */
static void t_netpol_map(void **state)
{
	struct moat_object *o;
	struct moat_policy *p;
	struct moat_rule *r;

	(void)state;
	p = okp(NP("{podSelector: {matchLabels: {app: db}},"
		   " ingress: [{from: [{podSelector: {matchLabels: {pod: a}}},"
		   "                   {namespaceSelector: {matchLabels: {ns: x}}},"
		   "                   {namespaceSelector: {}, podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [b, a]}]}},"
		   "                   {ipBlock: {cidr: 10.1.2.3/8, except: [10.1.0.0/16, 10.2.3.4/24]}}],"
		   "             ports: [{port: 80}, {protocol: UDP, port: serve-53}, {protocol: SCTP},"
		   "                     {port: 1000, endPort: 2000}, {port: 7, endPort: 7}]}]}"),
		&o);
	assert_int_equal(p->kind, MOAT_K_NETPOL);
	assert_int_equal(p->tier, MOAT_TIER_NETPOL);
	assert_string_equal(p->ns, "y");
	assert_string_equal(o->ns, "y");
	assert_string_equal(p->name, "allow-db");
	assert_string_equal(o->api_kind, "NetworkPolicy");
	assert_null(p->subj_ns);
	assert_string_equal(sel_str(p->subj_pod), "app in (db)");
	/* no policyTypes, no egress rules: ingress only */
	assert_true(p->dir[MOAT_DIR_INGRESS]);
	assert_false(p->dir[MOAT_DIR_EGRESS]);
	assert_int_equal(p->nrules[MOAT_DIR_INGRESS], 1);
	assert_int_equal(p->nrules[MOAT_DIR_EGRESS], 0);
	r = &p->rules[MOAT_DIR_INGRESS][0];
	assert_int_equal(r->action, MOAT_A_ALLOW);
	assert_false(r->all_peers);
	assert_int_equal(r->npeers, 4);
	assert_int_equal(r->peers[0].kind, MOAT_PEER_PODS);
	assert_null(r->peers[0].ns_sel); /* the policy's namespace */
	assert_string_equal(sel_str(r->peers[0].pod_sel), "pod in (a)");
	assert_int_equal(r->peers[1].kind, MOAT_PEER_PODS);
	assert_string_equal(sel_str(r->peers[1].ns_sel), "ns in (x)");
	assert_null(r->peers[1].pod_sel);
	assert_non_null(r->peers[2].ns_sel);
	assert_true(moat_selector_is_empty(r->peers[2].ns_sel));
	assert_string_equal(sel_str(r->peers[2].pod_sel), "pod notin (a,b)");
	assert_int_equal(r->peers[3].kind, MOAT_PEER_CIDR);
	assert_string_equal(cidr_s(&r->peers[3].cidr), "10.0.0.0/8"); /* host bits cleared */
	assert_int_equal(r->peers[3].nexcept, 2);
	assert_string_equal(cidr_s(&r->peers[3].except[0]), "10.1.0.0/16");
	assert_string_equal(cidr_s(&r->peers[3].except[1]), "10.2.3.0/24");
	assert_int_equal(r->nports, 5);
	assert_int_equal(r->ports[0].proto, IPPROTO_TCP);
	assert_int_equal(r->ports[0].port, 80);
	assert_int_equal(r->ports[0].end_port, 0);
	assert_null(r->ports[0].named);
	assert_int_equal(r->ports[1].proto, IPPROTO_UDP);
	assert_string_equal(r->ports[1].named, "serve-53");
	assert_int_equal(r->ports[1].port, 0);
	assert_int_equal(r->ports[2].proto, IPPROTO_SCTP);
	assert_int_equal(r->ports[2].port, 0); /* every SCTP port */
	assert_int_equal(r->ports[3].port, 1000);
	assert_int_equal(r->ports[3].end_port, 2000);
	assert_int_equal(r->ports[4].port, 7);
	assert_int_equal(r->ports[4].end_port, 0);
	assert_false(p->audit);
	moat_object_free(o);
}

static void t_netpol_defaults(void **state)
{
	struct moat_object *o;
	struct moat_policy *p;

	(void)state;
	/* no namespace: "default"; no podSelector: every pod; no spec at all */
	p = okp("{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: n}}", &o);
	assert_string_equal(p->ns, "default");
	assert_string_equal(o->ns, "default");
	assert_non_null(p->subj_pod);
	assert_true(moat_selector_is_empty(p->subj_pod));
	assert_true(p->dir[0]);
	assert_false(p->dir[1]);
	assert_int_equal(p->nrules[0] + p->nrules[1], 0);
	moat_object_free(o);

	/* egress: [] adds no Egress (API server defaulting) */
	p = okp(NP("{podSelector: null, egress: []}"), &o);
	assert_true(p->dir[0]);
	assert_false(p->dir[1]);
	moat_object_free(o);

	/* an egress rule adds Egress; {} rule: every peer, every port */
	p = okp(NP("{egress: [{}], ingress: [{from: [], ports: []}]}"), &o);
	assert_true(p->dir[0]);
	assert_true(p->dir[1]);
	assert_true(p->rules[1][0].all_peers);
	assert_int_equal(p->rules[1][0].npeers, 0);
	assert_int_equal(p->rules[1][0].nports, 0);
	assert_true(p->rules[0][0].all_peers);
	moat_object_free(o);

	/* explicit policyTypes win; rules of the other direction are kept */
	p = okp(NP("{policyTypes: [Egress], ingress: [{}]}"), &o);
	assert_false(p->dir[0]);
	assert_true(p->dir[1]);
	assert_int_equal(p->nrules[0], 1);
	assert_int_equal(p->nrules[1], 0);
	moat_object_free(o);

	/* policyTypes: [] is absent */
	p = okp(NP("{policyTypes: [], egress: [{}]}"), &o);
	assert_true(p->dir[0] && p->dir[1]);
	moat_object_free(o);

	p = okp(NP("{policyTypes: [Ingress, Egress]}"), &o);
	assert_true(p->dir[0] && p->dir[1]);
	moat_object_free(o);

	/* audit */
	p = okp("{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy,"
		" metadata: {name: n, namespace: y, annotations: {moat.io/audit: 'true', other: x}}}",
		&o);
	assert_true(p->audit);
	moat_object_free(o);
	p = okp("{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy,"
		" metadata: {name: n, namespace: y, annotations: {moat.io/audit: 'false'}}}",
		&o);
	assert_false(p->audit);
	moat_object_free(o);

	/* IPv6 ipBlock, except */
	p = okp(NP("{egress: [{to: [{ipBlock: {cidr: 'fd00::/8', except: ['fd00:1::/32']}}]}]}"), &o);
	assert_string_equal(cidr_s(&p->rules[1][0].peers[0].cidr), "fd00::/8");
	assert_string_equal(cidr_s(&p->rules[1][0].peers[0].except[0]), "fd00:1::/32");
	moat_object_free(o);
}

static void t_netpol_bad(void **state)
{
	static const struct bad v[] = {
		{ NP("{ingress: [{ports: [{port: 80}, {port: 80, endPort: 70000}]}]}"),
		  NPE "spec.ingress[0].ports[1].endPort: 70000 is not a port" },
		{ NP("{ingress: [{ports: [{port: 80, endPort: 70}]}]}"),
		  NPE "spec.ingress[0].ports[0].endPort: 70 is less than port 80" },
		{ NP("{ingress: [{ports: [{endPort: 90}]}]}"),
		  NPE "spec.ingress[0].ports[0].endPort: needs a numeric port" },
		{ NP("{egress: [{ports: [{port: http, endPort: 90}]}]}"),
		  NPE "spec.egress[0].ports[0].endPort: needs a numeric port" },
		{ NP("{ingress: [{ports: [{port: 0}]}]}"),
		  NPE "spec.ingress[0].ports[0].port: 0 is not a port" },
		{ NP("{ingress: [{ports: [{port: 65536}]}]}"),
		  NPE "spec.ingress[0].ports[0].port: 65536 is not a port" },
		{ NP("{ingress: [{ports: [{port: '80'}]}]}"), NPE
		  "spec.ingress[0].ports[0].port: \"80\" is a number in quotes; a port name needs a letter" },
		{ NP("{ingress: [{ports: [{port: Bad_Name}]}]}"),
		  NPE "spec.ingress[0].ports[0].port: \"Bad_Name\" is not a valid port name" },
		{ NP("{ingress: [{ports: [{port: a-very-long-port-name}]}]}"),
		  NPE "spec.ingress[0].ports[0].port: \"a-very-long-port-name\" is not a valid port name" },
		{ NP("{ingress: [{ports: [{port: true}]}]}"),
		  NPE "spec.ingress[0].ports[0].port: must be an integer or a string" },
		{ NP("{ingress: [{ports: [{port: 1.5}]}]}"),
		  NPE "spec.ingress[0].ports[0].port: must be an integer or a string" },
		{ NP("{ingress: [{ports: [{protocol: tcp, port: 80}]}]}"),
		  NPE "spec.ingress[0].ports[0].protocol: \"tcp\" is not one of TCP, UDP, SCTP" },
		{ NP("{ingress: [{ports: [{port: 80, endPort: '90'}]}]}"),
		  NPE "spec.ingress[0].ports[0].endPort: must be an integer" },
		{ NP("{policyTypes: [Ingress, Foo]}"),
		  NPE "spec.policyTypes[1]: \"Foo\" is not one of Ingress, Egress" },
		{ NP("{policyTypes: [Ingress, Egress, Ingress]}"),
		  NPE "spec.policyTypes: more than 2 items" },
		{ NP("{policyTypes: Ingress}"), NPE "spec.policyTypes: must be a list" },
		{ NP("{ingress: [{from: [{}]}]}"),
		  NPE "spec.ingress[0].from[0]: must set podSelector, namespaceSelector or ipBlock" },
		{ NP("{ingress: [{}, {from: [{podSelector: null}]}]}"),
		  NPE "spec.ingress[1].from[0]: must set podSelector, namespaceSelector or ipBlock" },
		{ NP("{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}"), NPE
		  "spec.egress[0].to[0]: ipBlock cannot be combined with podSelector or namespaceSelector" },
		{ NP("{egress: [{to: [{podSelector: {}}, {ipBlock: {cidr: 10.0.0/8}}]}]}"),
		  NPE "spec.egress[0].to[1].ipBlock.cidr: \"10.0.0/8\" is not a CIDR" },
		{ NP("{egress: [{to: [{ipBlock: {cidr: 10.0.0.1}}]}]}"),
		  NPE "spec.egress[0].to[0].ipBlock.cidr: \"10.0.0.1\" is not a CIDR" },
		{ NP("{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}"),
		  NPE "spec.egress[0].to[0].ipBlock.cidr: \"10.0.0.0/33\" is not a CIDR" },
		{ NP("{egress: [{to: [{ipBlock: {}}]}]}"),
		  NPE "spec.egress[0].to[0].ipBlock.cidr: required" },
		{ NP("{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]}"), NPE
		  "spec.egress[0].to[0].ipBlock.except[0]: \"11.0.0.0/16\" is not strictly inside 10.0.0.0/8" },
		{ NP("{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, '::/0']}}]}]}"),
		  NPE "spec.egress[0].to[0].ipBlock.except[1]: \"::/0\" is not strictly inside 10.0.0.0/8" },
		{ NP("{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]}"), NPE
		  "spec.egress[0].to[0].ipBlock.except[0]: \"10.0.0.0/8\" is not strictly inside 10.0.0.0/8" },
		{ NP("{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/7]}}]}]}"), NPE
		  "spec.egress[0].to[0].ipBlock.except[0]: \"10.0.0.0/7\" is not strictly inside 10.0.0.0/8" },
		{ NP("{podSelector: {matchExpressions: [{key: app, operator: in, values: [a]}]}}"), NPE
		  "spec.podSelector.matchExpressions[0].operator: \"in\" is not one of In, NotIn, Exists, DoesNotExist" },
		{ NP("{podSelector: {matchExpressions: [{key: app, operator: In}]}}"), NPE
		  "spec.podSelector.matchExpressions[0].values: must have at least one item for operator In" },
		{ NP("{podSelector: {matchExpressions: [{key: app, operator: NotIn, values: []}]}}"), NPE
		  "spec.podSelector.matchExpressions[0].values: must have at least one item for operator NotIn" },
		{ NP("{podSelector: {matchExpressions: [{key: app, operator: Exists, values: [a]}]}}"),
		  NPE "spec.podSelector.matchExpressions[0].values: must be empty for operator Exists" },
		{ NP("{podSelector: {matchExpressions: [{operator: Exists}]}}"),
		  NPE "spec.podSelector.matchExpressions[0].key: required" },
		{ NP("{podSelector: {matchExpressions: [{key: app}]}}"),
		  NPE "spec.podSelector.matchExpressions[0].operator: required" },
		{ NP("{podSelector: {matchExpressions: [{key: app, operator: In, values: [ok, 'not ok']}]}}"),
		  NPE
		  "spec.podSelector.matchExpressions[0].values[1]: \"not ok\" is not a valid label value" },
		{ NP("{podSelector: {matchExpressions: [{key: app, operator: In, values: [1]}]}}"),
		  NPE "spec.podSelector.matchExpressions[0].values[0]: must be a string" },
		{ NP("{podSelector: {matchLabels: {-bad: x}}}"),
		  NPE "spec.podSelector.matchLabels: \"-bad\" is not a valid label key" },
		{ NP("{podSelector: {matchLabels: {app: 'a b'}}}"),
		  NPE "spec.podSelector.matchLabels.app: \"a b\" is not a valid label value" },
		{ NP("{podSelector: {matchLabels: {app: 5}}}"),
		  NPE "spec.podSelector.matchLabels.app: must be a string" },
		{ NP("{ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: 'a/b/c', operator: Exists}]}}]}]}"),
		  NPE
		  "spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].key: \"a/b/c\" is not a valid label key" },
		{ NP("{podSelector: []}"), NPE "spec.podSelector: must be an object" },
		{ NP("{ingress: {}}"), NPE "spec.ingress: must be a list" },
		{ NP("{ingress: [5]}"), NPE "spec.ingress[0]: must be an object" },
		{ NP("[]"), NPE "spec: must be an object" },
		{ "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: Allow_DB, namespace: y}}",
		  "t.yaml: NetworkPolicy: metadata.name: \"Allow_DB\" is not a valid name (a lowercase RFC 1123 subdomain)" },
		{ "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: a, namespace: Y}}",
		  "t.yaml: NetworkPolicy: metadata.namespace: \"Y\" is not a valid namespace name (a lowercase RFC 1123 label)" },
		{ "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {namespace: y}}",
		  "t.yaml: NetworkPolicy: metadata.name: required" },
		{ "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy}",
		  "t.yaml: NetworkPolicy: metadata: required" },
		{ "{apiVersion: networking.k8s.io/v1beta1, kind: NetworkPolicy, metadata: {name: allow-db, namespace: y}}",
		  NPE
		  "apiVersion: \"networking.k8s.io/v1beta1\" is not supported for NetworkPolicy (want networking.k8s.io/v1)" },
		{ "{apiVersion: extensions/v1beta1, kind: NetworkPolicy, metadata: {name: allow-db, namespace: y}}",
		  NPE
		  "apiVersion: \"extensions/v1beta1\" is not supported for NetworkPolicy (want networking.k8s.io/v1)" },
		{ "{kind: NetworkPolicy, metadata: {name: allow-db, namespace: y}}",
		  NPE "apiVersion: required" },
		{ "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: allow-db, namespace: y, annotations: {moat.io/audit: 'yes'}}}",
		  NPE "metadata.annotations.moat.io/audit: \"yes\" must be \"true\" or \"false\"" },
		{ "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: allow-db, namespace: y, annotations: {moat.io/audit: true}}}",
		  NPE "metadata.annotations.moat.io/audit: must be a string" },
		{ "{apiVersion: v1, metadata: {name: a}}", "t.yaml: kind: required" },
		{ "{apiVersion: v1, kind: 5, metadata: {name: a}}", "t.yaml: kind: must be a string" },
	};

	(void)state;
	check_bad(v, sizeof(v) / sizeof(v[0]));
}

/* Lists built to one past a limit, and exactly at it. */
static char *repeat(const char *head, const char *item, size_t n, const char *tail)
{
	size_t il = strlen(item), len = strlen(head) + n * (il + 2) + strlen(tail) + 1;
	char *s = malloc(len), *p = s;

	assert_non_null(s);
	p += sprintf(p, "%s", head);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s%s", i ? ", " : "", item);
	sprintf(p, "%s", tail);
	return s;
}

static void expect_result(char *text, const char *want_err)
{
	struct moat_object *o = NULL;
	char err[512] = "";
	int rc = dec(text, &o, err, sizeof(err));

	if (want_err) {
		if (rc != -EINVAL || strcmp(err, want_err)) {
			print_error("want: %s\ngot:  %s (%d)\n", want_err, err, rc);
			fail();
		}
	} else if (rc) {
		print_error("unexpected: %s\n", err);
		fail();
	}
	moat_object_free(o);
	free(text);
}

static void t_netpol_limits(void **state)
{
	char lbl[64 * 16], *p = lbl;

	(void)state;
	expect_result(repeat(NP_HEAD "{ingress: [", "{}", MOAT_MAX_RULES_PER_DIR, "]}}"), NULL);
	expect_result(repeat(NP_HEAD "{ingress: [", "{}", MOAT_MAX_RULES_PER_DIR + 1, "]}}"),
		      NPE "spec.ingress: more than 100 items");
	expect_result(repeat(NP_HEAD "{egress: [{to: [", "{podSelector: {}}", MOAT_MAX_PEERS + 1, "]}]}}"),
		      NPE "spec.egress[0].to: more than 100 items");
	expect_result(repeat(NP_HEAD "{egress: [{ports: [", "{port: 1}", MOAT_MAX_PORTS + 1, "]}]}}"),
		      NPE "spec.egress[0].ports: more than 100 items");
	expect_result(repeat(NP_HEAD "{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [", "10.0.0.0/9",
			     MOAT_MAX_EXCEPT + 1, "]}}]}]}}"),
		      NPE "spec.egress[0].to[0].ipBlock.except: more than 64 items");
	expect_result(repeat(NP_HEAD "{podSelector: {matchExpressions: [{key: k, operator: In, values: [",
			     "v", MOAT_MAX_SEL_VALUES + 1, "]}]}}}"),
		      NPE "spec.podSelector.matchExpressions[0].values: more than 64 items");
	expect_result(repeat(NP_HEAD "{podSelector: {matchExpressions: [", "{key: k, operator: Exists}",
			     MOAT_MAX_SEL_REQS + 1, "]}}}"),
		      NPE "spec.podSelector: more than 32 requirements");
	/* matchLabels and matchExpressions count together */
	for (int i = 0; i < MOAT_MAX_SEL_REQS; i++)
		p += sprintf(p, "%sk%d: v", i ? ", " : "", i);
	char *t = malloc(strlen(lbl) + 200);
	sprintf(t, NP("{podSelector: {matchLabels: {%s}}}"), lbl);
	expect_result(t, NULL);
	t = malloc(strlen(lbl) + 200);
	sprintf(t, NP("{podSelector: {matchLabels: {%s}, matchExpressions: [{key: x, operator: Exists}]}}"),
		lbl);
	expect_result(t, NPE "spec.podSelector: more than 32 requirements");
}

/* A field the decoder does not read refuses the policy, naming it: a
 * misspelt podSelector would otherwise select every pod of the namespace. */
#define UNKNOWN "unknown field (a misspelling, or a field moat does not support); the policy is refused"
static void t_unknown_fields_refused(void **state)
{
	(void)state;
	expect_result(strdup(NP("{podSelecter: {matchLabels: {app: web}}}")),
		      NPE "spec.podSelecter: " UNKNOWN);
	expect_result(strdup(NP("{podSelector: {matchLabel: {app: web}}}")),
		      NPE "spec.podSelector.matchLabel: " UNKNOWN);
	expect_result(
		strdup(NP("{podSelector: {}, ingress: [{from: [{podSelector: {}, namespaceSelectr: {}}]}]}")),
		NPE "spec.ingress[0].from[0].namespaceSelectr: " UNKNOWN);
	expect_result(
		strdup(NP("{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, excpt: []}}]}]}")),
		NPE "spec.egress[0].to[0].ipBlock.excpt: " UNKNOWN);
	expect_result(strdup(NP("{podSelector: {}, ingress: [{ports: [{port: 80, endport: 90}]}]}")),
		      NPE "spec.ingress[0].ports[0].endport: " UNKNOWN);
	expect_result(
		strdup(NP("{podSelector: {matchExpressions: [{key: a, operator: Exists, value: [x]}]}}")),
		NPE "spec.podSelector.matchExpressions[0].value: " UNKNOWN);
	expect_result(strdup(ANP("{priority: 1, " SUBJ ", ingress: [{action: Deny, " FROM_NS
				 ", ports: [{portNumber: {port: 80, protocl: UDP}}]}]}")),
		      ANPE "spec.ingress[0].ports[0].portNumber.protocl: " UNKNOWN);
	expect_result(
		strdup(ANP(
			"{priority: 1, subject: {pods: {namespaceSelector: {}, podSelector: {}, podSelectr: {}}}}")),
		ANPE "spec.subject.pods.podSelectr: " UNKNOWN);
	expect_result(strdup(CNP("{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, " TO_NS
				 ", protocols: [{tcp: {destinationPort: {number: 80, nmber: 81}}}]}]}")),
		      CNPE "spec.egress[0].protocols[0].tcp.destinationPort.nmber: " UNKNOWN);
	/* label maps are free-form; null counts as a field written */
	expect_result(strdup(NP("{podSelector: {matchLabels: {podSelecter: x}}}")), NULL);
	expect_result(strdup(NP("{podSelector: {}, polcyTypes: null}")), NPE "spec.polcyTypes: " UNKNOWN);
}

/* ---- selectors ------------------------------------------------------------------------------- */
static void t_selector_canonical(void **state)
{
	struct moat_object *o1, *o2;
	struct moat_policy *p1, *p2;
	char *s1;

	(void)state;
	p1 = okp(
		NP("{podSelector: {matchLabels: {b: '2', a: '1'},"
		   " matchExpressions: [{key: c, operator: NotIn, values: [z, y, z]}, {key: a, operator: In, values: ['1']},"
		   " {key: d, operator: DoesNotExist}, {key: e, operator: Exists}]}}"),
		&o1);
	p2 = okp(
		NP("{podSelector: {matchExpressions: [{key: e, operator: Exists}, {key: d, operator: DoesNotExist},"
		   " {key: c, operator: NotIn, values: [y, z]}, {key: b, operator: In, values: ['2']},"
		   " {key: a, operator: In, values: ['1']}]}}"),
		&o2);
	/* duplicates dropped, requirements and values sorted */
	assert_int_equal(p1->subj_pod->n, 5);
	assert_string_equal(p1->subj_pod->reqs[0].key, "a");
	assert_int_equal(p1->subj_pod->reqs[2].nvalues, 2);
	s1 = moat_selector_string(p1->subj_pod);
	assert_string_equal(s1, "!d,a in (1),b in (2),c notin (y,z),e");
	assert_string_equal(sel_str(p2->subj_pod), s1);
	free(s1);
	moat_object_free(o1);
	moat_object_free(o2);
}

/* ---- AdminNetworkPolicy / Baseline --------------------------------------------------------------- */
static void t_anp_map(void **state)
{
	struct moat_object *o;
	struct moat_policy *p;
	struct moat_rule *r;

	(void)state;
	p = okp(ANP("{priority: 7, subject: {pods: {namespaceSelector: {matchLabels: {h: g}}, podSelector: {}}},"
		    " ingress: [{name: in0, action: Deny, from: [{namespaces: {matchLabels: {h: s}}},"
		    "   {pods: {namespaceSelector: {}, podSelector: {matchLabels: {p: q}}}}],"
		    "   ports: [{portNumber: {port: 80}}, {portNumber: {protocol: UDP, port: 53}},"
		    "           {portRange: {protocol: SCTP, start: 9000, end: 9005}}, {portRange: {start: 7, end: 7}},"
		    "           {namedPort: web}]}],"
		    " egress: [{action: Pass, to: [{networks: [10.0.0.0/8, 'fd00::/8', 192.168.1.7/24]}, {nodes: {matchLabels: {kubernetes.io/os: linux}}}]},"
		    "  {action: Allow, to: [{domainNames: ['*.kubernetes.io', example.com.]}]},"
		    "  {action: Deny, to: [{}, {futureThing: {}}, {namespaces: {}, futureThing: {}}]}]}"),
		&o);
	assert_int_equal(p->kind, MOAT_K_ANP);
	assert_int_equal(p->tier, MOAT_TIER_ADMIN);
	assert_int_equal(p->priority, 7);
	assert_null(p->ns);
	assert_null(o->ns);
	assert_string_equal(sel_str(p->subj_ns), "h in (g)");
	assert_non_null(p->subj_pod);
	assert_true(moat_selector_is_empty(p->subj_pod));
	assert_true(p->dir[0] && p->dir[1]);
	assert_int_equal(p->nrules[0], 1);
	assert_int_equal(p->nrules[1], 3);

	r = &p->rules[0][0];
	assert_string_equal(r->name, "in0");
	assert_int_equal(r->action, MOAT_A_DENY);
	assert_false(r->all_peers);
	assert_int_equal(r->npeers, 2);
	assert_int_equal(r->peers[0].kind, MOAT_PEER_PODS);
	assert_string_equal(sel_str(r->peers[0].ns_sel), "h in (s)");
	assert_null(r->peers[0].pod_sel);
	assert_true(moat_selector_is_empty(r->peers[1].ns_sel));
	assert_non_null(r->peers[1].ns_sel);
	assert_string_equal(sel_str(r->peers[1].pod_sel), "p in (q)");
	assert_int_equal(r->nports, 5);
	assert_int_equal(r->ports[0].proto, IPPROTO_TCP);
	assert_int_equal(r->ports[0].port, 80);
	assert_int_equal(r->ports[1].proto, IPPROTO_UDP);
	assert_int_equal(r->ports[1].port, 53);
	assert_int_equal(r->ports[2].proto, IPPROTO_SCTP);
	assert_int_equal(r->ports[2].port, 9000);
	assert_int_equal(r->ports[2].end_port, 9005);
	assert_int_equal(r->ports[3].port, 7);
	assert_int_equal(r->ports[3].end_port, 0);
	assert_string_equal(r->ports[4].named, "web");

	r = &p->rules[1][0];
	assert_null(r->name);
	assert_int_equal(r->action, MOAT_A_PASS);
	assert_int_equal(r->npeers, 4); /* one per network, then the nodes */
	assert_int_equal(r->peers[0].kind, MOAT_PEER_CIDR);
	assert_string_equal(cidr_s(&r->peers[0].cidr), "10.0.0.0/8");
	assert_string_equal(cidr_s(&r->peers[1].cidr), "fd00::/8");
	assert_string_equal(cidr_s(&r->peers[2].cidr), "192.168.1.0/24");
	assert_int_equal(r->peers[2].nexcept, 0);
	assert_int_equal(r->peers[3].kind, MOAT_PEER_NODES);
	assert_string_equal(sel_str(r->peers[3].ns_sel), "kubernetes.io/os in (linux)");
	assert_int_equal(r->nports, 0);

	r = &p->rules[1][1];
	assert_int_equal(r->action, MOAT_A_ALLOW);
	assert_int_equal(r->npeers, 1);
	assert_int_equal(r->peers[0].kind, MOAT_PEER_DOMAINS);

	/* fail closed: nothing known, unknown only, known + unknown */
	r = &p->rules[1][2];
	assert_int_equal(r->npeers, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(r->peers[i].kind, MOAT_PEER_INVALID);
	moat_object_free(o);

	/* egress-only fields in an ingress peer are unknown there */
	p = okp(ANP("{priority: 0, subject: {namespaces: {}}, ingress: [{action: Allow, from: [{networks: [10.0.0.0/8]}, {nodes: {}}]}]}"),
		&o);
	assert_int_equal(p->rules[0][0].peers[0].kind, MOAT_PEER_INVALID);
	assert_int_equal(p->rules[0][0].peers[1].kind, MOAT_PEER_INVALID);
	assert_null(p->subj_pod);
	assert_true(moat_selector_is_empty(p->subj_ns));
	assert_true(p->dir[0]);
	assert_false(p->dir[1]);
	moat_object_free(o);

	/* no rules at all: no direction */
	p = okp(ANP("{priority: 1000, subject: {namespaces: {}}, ingress: [], egress: null}"), &o);
	assert_false(p->dir[0] || p->dir[1]);
	moat_object_free(o);
}

static void t_banp_map(void **state)
{
	struct moat_object *o;
	struct moat_policy *p;

	(void)state;
	p = okp(BANP("{subject: {namespaces: {matchLabels: {a: b}}},"
		     " egress: [{action: Deny, to: [{domainNames: [example.com]}, {networks: [0.0.0.0/0]}]}],"
		     " ingress: [{action: Allow, from: [{pods: {namespaceSelector: {}, podSelector: {}}}]}]}"),
		&o);
	assert_int_equal(p->kind, MOAT_K_BANP);
	assert_int_equal(p->tier, MOAT_TIER_BASELINE);
	assert_int_equal(p->priority, 0);
	/* BANP has no domainNames: an unknown field, fail closed */
	assert_int_equal(p->rules[1][0].peers[0].kind, MOAT_PEER_INVALID);
	assert_int_equal(p->rules[1][0].peers[1].kind, MOAT_PEER_CIDR);
	assert_int_equal(p->rules[1][0].peers[1].cidr.plen, 0);
	assert_int_equal(p->rules[0][0].action, MOAT_A_ALLOW);
	moat_object_free(o);
}

static void t_anp_bad(void **state)
{
	static const struct bad v[] = {
		{ ANP("{" SUBJ "}"), ANPE "spec.priority: required" },
		{ ANP("{priority: 1001, " SUBJ "}"), ANPE "spec.priority: 1001 is out of range 0..1000" },
		{ ANP("{priority: -1, " SUBJ "}"), ANPE "spec.priority: -1 is out of range 0..1000" },
		{ ANP("{priority: '5', " SUBJ "}"), ANPE "spec.priority: must be an integer" },
		{ ANP("{priority: 5}"), ANPE "spec.subject: required" },
		{ ANP("{priority: 5, subject: {namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}}"),
		  ANPE "spec.subject: must set exactly one of namespaces, pods" },
		{ ANP("{priority: 5, subject: {}}"),
		  ANPE "spec.subject: must set exactly one of namespaces, pods" },
		{ ANP("{priority: 5, subject: {pods: {podSelector: {}}}}"),
		  ANPE "spec.subject.pods.namespaceSelector: required" },
		{ ANP("{priority: 5, subject: {pods: {namespaceSelector: {}}}}"),
		  ANPE "spec.subject.pods.podSelector: required" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Accept, " FROM_NS "}]}"),
		  ANPE "spec.ingress[0].action: \"Accept\" is not one of Allow, Deny, Pass" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{" FROM_NS "}]}"),
		  ANPE "spec.ingress[0].action: required" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow}]}"),
		  ANPE "spec.ingress[0].from: required" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, from: []}]}"),
		  ANPE "spec.ingress[0].from: must have at least one item" },
		{ ANP("{priority: 5, " SUBJ ", egress: [{action: Allow, " FROM_NS "}]}"),
		  ANPE "spec.egress[0].to: required" },
		{ ANP("{priority: 5, " SUBJ
		      ", egress: [{action: Allow, to: [{namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}]}]}"),
		  ANPE "spec.egress[0].to[0]: sets namespaces and pods; a peer has exactly one" },
		{ ANP("{priority: 5, " SUBJ ", egress: [{action: Allow, " TO_NS "}, {action: Deny, " TO_NS
		      "},"
		      " {action: Deny, to: [{namespaces: {}}, {networks: [10.0.0.0/8, 10.0.0.0/33]}]}]}"),
		  ANPE "spec.egress[2].to[1].networks[1]: \"10.0.0.0/33\" is not a CIDR" },
		{ ANP("{priority: 5, " SUBJ ", egress: [{action: Deny, to: [{networks: [10.0.0.0]}]}]}"),
		  ANPE "spec.egress[0].to[0].networks[0]: \"10.0.0.0\" is not a CIDR" },
		{ ANP("{priority: 5, " SUBJ ", egress: [{action: Deny, to: [{networks: [8]}]}]}"),
		  ANPE "spec.egress[0].to[0].networks[0]: must be a string" },
		{ ANP("{priority: 5, " SUBJ ", egress: [{action: Deny, to: [{networks: []}]}]}"),
		  ANPE "spec.egress[0].to[0].networks: must have at least one item" },
		{ ANP("{priority: 5, " SUBJ ", egress: [{action: Deny, to: [{networks: 10.0.0.0/8}]}]}"),
		  ANPE "spec.egress[0].to[0].networks: must be a list" },
		{ ANP("{priority: 5, " SUBJ
		      ", egress: [{action: Deny, to: [{domainNames: [example.com]}]}]}"),
		  ANPE "spec.egress[0].to[0].domainNames: only allowed in Allow rules" },
		{ ANP("{priority: 5, " SUBJ
		      ", egress: [{action: Allow, to: [{domainNames: [kubernetes]}]}]}"),
		  ANPE "spec.egress[0].to[0].domainNames[0]: \"kubernetes\" is not a domain name" },
		{ ANP("{priority: 5, " SUBJ ", egress: [{action: Allow, to: [{domainNames: ['a.*.io']}]}]}"),
		  ANPE "spec.egress[0].to[0].domainNames[0]: \"a.*.io\" is not a domain name" },
		{ ANP("{priority: 5, " SUBJ ", egress: [{action: Allow, to: [{namespaces: []}]}]}"),
		  ANPE "spec.egress[0].to[0].namespaces: must be an object" },
		{ ANP("{priority: 5, " SUBJ ", egress: [{action: Allow, to: [{pods: {podSelector: {}}}]}]}"),
		  ANPE "spec.egress[0].to[0].pods.namespaceSelector: required" },
		{ ANP("{priority: 5, " SUBJ ", egress: [{action: Allow, to: [5]}]}"),
		  ANPE "spec.egress[0].to[0]: must be an object" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS
		      ", ports: [{portNumber: {port: 80}, namedPort: web}]}]}"),
		  ANPE "spec.ingress[0].ports[0]: must set exactly one of portNumber, portRange, namedPort" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS ", ports: [{}]}]}"),
		  ANPE "spec.ingress[0].ports[0]: must set exactly one of portNumber, portRange, namedPort" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS
		      ", ports: [{portNumber: {port: 0}}]}]}"),
		  ANPE "spec.ingress[0].ports[0].portNumber.port: 0 is not a port" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS
		      ", ports: [{portNumber: {protocol: TCP}}]}]}"),
		  ANPE "spec.ingress[0].ports[0].portNumber.port: required" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS
		      ", ports: [{portNumber: {protocol: ICMP, port: 1}}]}]}"),
		  ANPE
		  "spec.ingress[0].ports[0].portNumber.protocol: \"ICMP\" is not one of TCP, UDP, SCTP" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS
		      ", ports: [{portRange: {start: 90, end: 80}}]}]}"),
		  ANPE "spec.ingress[0].ports[0].portRange.end: 80 is less than start 90" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS
		      ", ports: [{portRange: {start: 90, end: 65536}}]}]}"),
		  ANPE "spec.ingress[0].ports[0].portRange.end: 65536 is not a port" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS
		      ", ports: [{portRange: {end: 80}}]}]}"),
		  ANPE "spec.ingress[0].ports[0].portRange.start: required" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS
		      ", ports: [{namedPort: WEB}]}]}"),
		  ANPE "spec.ingress[0].ports[0].namedPort: \"WEB\" is not a valid port name" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS ", ports: []}]}"),
		  ANPE "spec.ingress[0].ports: must have at least one item" },
		{ ANP("{priority: 5, " SUBJ ", ingress: [{action: Allow, " FROM_NS
		      ", protocols: [{tcp: {}}]}]}"),
		  ANPE "spec.ingress[0].protocols: not a field of AdminNetworkPolicy; use ports" },
		{ ANP("{priority: 5, " SUBJ
		      ", ingress: [{name: r1234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890, action: Allow, " FROM_NS
		      "}]}"),
		  ANPE "spec.ingress[0].name: longer than 100 characters" },
		{ "{apiVersion: policy.networking.k8s.io/v1alpha2, kind: AdminNetworkPolicy, metadata: {name: a}, spec: {}}",
		  ANPE
		  "apiVersion: \"policy.networking.k8s.io/v1alpha2\" is not supported for AdminNetworkPolicy (want policy.networking.k8s.io/v1alpha1)" },
		{ "{apiVersion: policy.networking.k8s.io/v1alpha1, kind: AdminNetworkPolicy, metadata: {name: a}}",
		  ANPE "spec: required" },
		{ "{apiVersion: policy.networking.k8s.io/v1alpha1, kind: AdminNetworkPolicy, metadata: {name: a_b}, spec: {}}",
		  "t.yaml: AdminNetworkPolicy: metadata.name: \"a_b\" is not a valid name (a lowercase RFC 1123 subdomain)" },
		{ "{apiVersion: policy.networking.k8s.io/v1alpha1, kind: BaselineAdminNetworkPolicy, metadata: {name: foo}, spec: {" SUBJ
		  "}}",
		  "t.yaml: BaselineAdminNetworkPolicy foo: metadata.name: must be \"default\" (the only BaselineAdminNetworkPolicy)" },
		{ BANP("{" SUBJ ", ingress: [{action: Pass, " FROM_NS "}]}"),
		  BANPE "spec.ingress[0].action: \"Pass\" is not one of Allow, Deny" },
		{ BANP("{priority: 3, " SUBJ "}"),
		  BANPE "spec.priority: not a field of BaselineAdminNetworkPolicy (it has no priority)" },
		{ BANP("{" SUBJ ", egress: [{action: Allow, to: [{namespaces: {}, nodes: {}}]}]}"),
		  BANPE "spec.egress[0].to[0]: sets namespaces and nodes; a peer has exactly one" },
	};

	(void)state;
	check_bad(v, sizeof(v) / sizeof(v[0]));
}

static void t_anp_limits(void **state)
{
	(void)state;
	expect_result(repeat(ANP_HEAD "{priority: 1, " SUBJ ", ingress: [", "{action: Allow, " FROM_NS "}",
			     100, "]}}"),
		      NULL);
	expect_result(repeat(ANP_HEAD "{priority: 1, " SUBJ ", ingress: [", "{action: Allow, " FROM_NS "}",
			     101, "]}}"),
		      ANPE "spec.ingress: more than 100 items");
	expect_result(repeat(ANP_HEAD "{priority: 1, " SUBJ ", egress: [{action: Allow, to: [",
			     "{namespaces: {}}", 101, "]}]}}"),
		      ANPE "spec.egress[0].to: more than 100 items");
	expect_result(repeat(ANP_HEAD "{priority: 1, " SUBJ ", egress: [{action: Allow, " TO_NS ", ports: [",
			     "{portNumber: {port: 1}}", 101, "]}]}}"),
		      ANPE "spec.egress[0].ports: more than 100 items");
	expect_result(repeat(ANP_HEAD "{priority: 1, " SUBJ ", egress: [{action: Allow, to: [{networks: [",
			     "1.0.0.0/8", 25, "]}]}]}}"),
		      NULL);
	expect_result(repeat(ANP_HEAD "{priority: 1, " SUBJ ", egress: [{action: Allow, to: [{networks: [",
			     "1.0.0.0/8", 26, "]}]}]}}"),
		      ANPE "spec.egress[0].to[0].networks: more than 25 items");
	/* expanded networks are bounded per policy: 100 rules x 5 x 25 */
	char *rule = repeat(
		"{action: Deny, to: [",
		"{networks: [1.0.0.0/8, 2.0.0.0/8, 3.0.0.0/8, 4.0.0.0/8, 5.0.0.0/8,"
		" 6.0.0.0/8, 7.0.0.0/8, 8.0.0.0/8, 9.0.0.0/8, 10.0.0.0/8, 11.0.0.0/8, 12.0.0.0/8, 13.0.0.0/8,"
		" 14.0.0.0/8, 15.0.0.0/8, 16.0.0.0/8, 17.0.0.0/8, 18.0.0.0/8, 19.0.0.0/8, 20.0.0.0/8,"
		" 21.0.0.0/8, 22.0.0.0/8, 23.0.0.0/8, 24.0.0.0/8, 25.0.0.0/8]}",
		5, "]}");
	expect_result(repeat(ANP_HEAD "{priority: 1, " SUBJ ", egress: [", rule, 80, "]}}"), NULL);
	expect_result(repeat(ANP_HEAD "{priority: 1, " SUBJ ", egress: [", rule, 81, "]}}"),
		      ANPE "spec.egress[80].to[0].networks[0]: the policy has more than 10000 peers");
	free(rule);
}

/* ---- ClusterNetworkPolicy ------------------------------------------------------------------------ */
static void t_cnp_map(void **state)
{
	struct moat_object *o;
	struct moat_policy *p;
	struct moat_rule *r;

	(void)state;
	p = okp(CNP("{tier: Admin, priority: 3, subject: {pods: {podSelector: {matchLabels: {a: b}}}},"
		    " ingress: [{action: Accept, from: [{pods: {podSelector: {}}}],"
		    "   protocols: [{tcp: {destinationPort: {number: 80}}}, {udp: {destinationPort: {range: {start: 5000, end: 5353}}}},"
		    "               {sctp: {}}, {destinationNamedPort: dns}]}],"
		    " egress: [{action: Pass, to: [{networks: ['10.0.0.1/24']}, {nodes: {}}, {namespaces: {}}]}]}"),
		&o);
	assert_int_equal(p->kind, MOAT_K_CNP);
	assert_int_equal(p->tier, MOAT_TIER_ADMIN);
	assert_int_equal(p->priority, 3);
	assert_null(p->subj_ns); /* every namespace */
	assert_string_equal(sel_str(p->subj_pod), "a in (b)");
	r = &p->rules[0][0];
	assert_int_equal(r->action, MOAT_A_ALLOW);
	assert_int_equal(r->peers[0].kind, MOAT_PEER_PODS);
	/* a cluster policy has no namespace of its own: every namespace */
	assert_non_null(r->peers[0].ns_sel);
	assert_true(moat_selector_is_empty(r->peers[0].ns_sel));
	assert_int_equal(r->nports, 4);
	assert_int_equal(r->ports[0].proto, IPPROTO_TCP);
	assert_int_equal(r->ports[0].port, 80);
	assert_int_equal(r->ports[1].proto, IPPROTO_UDP);
	assert_int_equal(r->ports[1].port, 5000);
	assert_int_equal(r->ports[1].end_port, 5353);
	assert_int_equal(r->ports[2].proto, IPPROTO_SCTP);
	assert_int_equal(r->ports[2].port, 0);
	assert_string_equal(r->ports[3].named, "dns");
	r = &p->rules[1][0];
	assert_int_equal(r->action, MOAT_A_PASS);
	assert_int_equal(r->npeers, 3);
	assert_string_equal(cidr_s(&r->peers[0].cidr), "10.0.0.0/24");
	assert_int_equal(r->peers[1].kind, MOAT_PEER_NODES);
	assert_true(moat_selector_is_empty(r->peers[1].ns_sel));
	assert_int_equal(r->peers[2].kind, MOAT_PEER_PODS);
	assert_null(r->peers[2].pod_sel);
	moat_object_free(o);

	p = okp(CNP("{tier: Baseline, priority: 0, subject: {namespaces: {}}, egress: [{action: Accept, to: [{domainNames: [example.com]}]}]}"),
		&o);
	assert_int_equal(p->tier, MOAT_TIER_BASELINE);
	assert_int_equal(p->rules[1][0].peers[0].kind, MOAT_PEER_DOMAINS);
	assert_true(p->dir[1]);
	assert_false(p->dir[0]);
	moat_object_free(o);
}

static void t_cnp_bad(void **state)
{
	static const struct bad v[] = {
		{ CNP("{priority: 1, " SUBJ "}"), CNPE "spec.tier: required" },
		{ CNP("{tier: admin, priority: 1, " SUBJ "}"),
		  CNPE "spec.tier: \"admin\" is not one of Admin, Baseline" },
		{ CNP("{tier: Admin, " SUBJ "}"), CNPE "spec.priority: required" },
		{ CNP("{tier: Baseline, priority: 2000, " SUBJ "}"),
		  CNPE "spec.priority: 2000 is out of range 0..1000" },
		{ CNP("{tier: Admin, priority: 1, subject: {pods: {namespaceSelector: {}}}}"),
		  CNPE "spec.subject.pods.podSelector: required" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ ", ingress: [{action: Allow, " FROM_NS "}]}"),
		  CNPE "spec.ingress[0].action: \"Allow\" is not one of Accept, Deny, Pass" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ ", ingress: [{action: Accept, " FROM_NS
		      ", ports: [{portNumber: {port: 80}}]}]}"),
		  CNPE "spec.ingress[0].ports: not a field of ClusterNetworkPolicy; use protocols" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, " TO_NS
		      ", protocols: [{tcp: {}, udp: {}}]}]}"),
		  CNPE
		  "spec.egress[0].protocols[0]: must set exactly one of tcp, udp, sctp, destinationNamedPort" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, " TO_NS
		      ", protocols: [{icmp: {}}]}]}"),
		  CNPE
		  "spec.egress[0].protocols[0]: must set exactly one of tcp, udp, sctp, destinationNamedPort" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, " TO_NS
		      ", protocols: [{tcp: {destinationPort: {number: 80, range: {start: 1, end: 2}}}}]}]}"),
		  CNPE
		  "spec.egress[0].protocols[0].tcp.destinationPort: must set exactly one of number, range" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, " TO_NS
		      ", protocols: [{udp: {destinationPort: {}}}]}]}"),
		  CNPE
		  "spec.egress[0].protocols[0].udp.destinationPort: must set exactly one of number, range" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, " TO_NS
		      ", protocols: [{tcp: {destinationPort: {range: {start: 80, end: 80}}}}]}]}"),
		  CNPE
		  "spec.egress[0].protocols[0].tcp.destinationPort.range.end: 80 is not greater than start 80" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, " TO_NS
		      ", protocols: [{sctp: {destinationPort: {number: 70000}}}]}]}"),
		  CNPE "spec.egress[0].protocols[0].sctp.destinationPort.number: 70000 is not a port" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, " TO_NS
		      ", protocols: [{destinationNamedPort: 'x y'}]}]}"),
		  CNPE "spec.egress[0].protocols[0].destinationNamedPort: \"x y\" is not a valid port name" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, " TO_NS
		      ", protocols: [{tcp: []}]}]}"),
		  CNPE "spec.egress[0].protocols[0].tcp: must be an object" },
		{ CNP("{tier: Admin, priority: 1, " SUBJ
		      ", egress: [{action: Deny, to: [{domainNames: [example.com]}]}]}"),
		  CNPE "spec.egress[0].to[0].domainNames: only allowed in Accept rules" },
		{ "{apiVersion: policy.networking.k8s.io/v1alpha1, kind: ClusterNetworkPolicy, metadata: {name: c}, spec: {}}",
		  CNPE
		  "apiVersion: \"policy.networking.k8s.io/v1alpha1\" is not supported for ClusterNetworkPolicy (want policy.networking.k8s.io/v1alpha2)" },
	};

	(void)state;
	check_bad(v, sizeof(v) / sizeof(v[0]));
	expect_result(repeat(CNP_HEAD "{tier: Admin, priority: 1, " SUBJ ", ingress: [",
			     "{action: Deny, " FROM_NS "}", 25, "]}}"),
		      NULL);
	expect_result(repeat(CNP_HEAD "{tier: Admin, priority: 1, " SUBJ ", ingress: [",
			     "{action: Deny, " FROM_NS "}", 26, "]}}"),
		      CNPE "spec.ingress: more than 25 items");
	expect_result(repeat(CNP_HEAD "{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, to: [",
			     "{namespaces: {}}", 26, "]}]}}"),
		      CNPE "spec.egress[0].to: more than 25 items");
	expect_result(repeat(CNP_HEAD "{tier: Admin, priority: 1, " SUBJ ", egress: [{action: Deny, " TO_NS
				      ", protocols: [",
			     "{tcp: {}}", 26, "]}]}}"),
		      CNPE "spec.egress[0].protocols: more than 25 items");
}

/* ---- Namespace, Pod, Node, Service -------------------------------------------------------------- */
/* Label selectors in kubectl's text form (moatctl observe --label). */
static void t_selector_text(void **state)
{
	struct moat_labels l = { 0 };
	struct moat_selector *s;
	char err[128], *txt;
	static const struct {
		const char *in, *canon;
	} good[] = {
		{ "app=web", "app in (web)" },
		{ "app==web", "app in (web)" },
		{ " app = web , tier != db ", "app in (web),tier notin (db)" },
		{ "env in (b, a),gpu,!legacy", "!legacy,env in (a,b),gpu" },
		{ "team notin (x)", "team notin (x)" },
		{ "", "" },
	};
	static const char *const bad[] = { "a b=c", "app in a,b", "app in ()", "app=x y", "=v" };

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (moat_selector_parse(good[i].in, &s, err, sizeof(err)))
			fail_msg("%s: %s", good[i].in, err);
		txt = moat_selector_string(s);
		if (strcmp(txt, good[i].canon))
			fail_msg("%s: got %s, want %s", good[i].in, txt, good[i].canon);
		free(txt);
		moat_selector_free(s);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = NULL;
		if (!moat_selector_parse(bad[i], &s, err, sizeof(err)))
			fail_msg("%s: accepted", bad[i]);
		assert_null(s);
	}
	assert_int_equal(moat_selector_parse("app in (web,db),!legacy", &s, err, sizeof(err)), 0);
	moat_labels_set(&l, "app", "db");
	assert_true(moat_selector_matches(s, &l));
	moat_labels_set(&l, "legacy", "1");
	assert_false(moat_selector_matches(s, &l));
	moat_labels_free(&l);
	moat_selector_free(s);
}

static void t_core_map(void **state)
{
	struct moat_object *o;

	(void)state;
	o = ok("{apiVersion: v1, kind: Namespace, metadata: {name: x, uid: u-1, resourceVersion: '42'}}");
	assert_int_equal(o->kind, MOAT_O_NAMESPACE);
	assert_null(o->ns);
	assert_string_equal(o->uid, "u-1");
	assert_string_equal(o->resource_version, "42");
	assert_string_equal(o->u.namespace->name, "x");
	assert_int_equal(o->u.namespace->labels.n, 1);
	assert_string_equal(moat_labels_get(&o->u.namespace->labels, "kubernetes.io/metadata.name"), "x");
	assert_false(o->u.namespace->audit);
	moat_object_free(o);

	/* the API server's label wins over a wrong one; audit annotation */
	o = ok("{apiVersion: v1, kind: Namespace, metadata: {name: x, namespace: ignored,"
	       " labels: {kubernetes.io/metadata.name: y, team: a}, annotations: {moat.io/audit: 'true'}}}");
	assert_string_equal(moat_labels_get(&o->u.namespace->labels, "kubernetes.io/metadata.name"), "x");
	assert_string_equal(moat_labels_get(&o->u.namespace->labels, "team"), "a");
	assert_true(o->u.namespace->audit);
	assert_null(o->ns);
	assert_false(o->u.namespace->has_sample);
	moat_object_free(o);

	/* sampling per namespace: a number, 0 = none */
	o = ok("{apiVersion: v1, kind: Namespace, metadata: {name: x, annotations: {moat.io/sample-every: '100'}}}");
	assert_true(o->u.namespace->has_sample);
	assert_int_equal(o->u.namespace->sample_every, 100);
	moat_object_free(o);
	o = ok("{apiVersion: v1, kind: Namespace, metadata: {name: x, annotations: {moat.io/sample-every: '0'}}}");
	assert_true(o->u.namespace->has_sample);
	assert_int_equal(o->u.namespace->sample_every, 0);
	moat_object_free(o);

	o = ok("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  namespace: y\n  labels: {pod: a, app.kubernetes.io/name: db}\n"
	       "spec:\n  nodeName: node-1\n  hostNetwork: false\n  containers:\n"
	       "  - name: c1\n    ports:\n    - {containerPort: 80, name: http}\n    - {containerPort: 53, protocol: UDP}\n"
	       "  - name: c2\n  - name: c3\n    ports: [{containerPort: 9003, protocol: SCTP, name: s}]\n"
	       "  initContainers: [{name: i, ports: [{containerPort: 1}]}]\n"
	       "status:\n  podIP: 10.0.0.9\n  podIPs: [{ip: 10.0.0.7}, {ip: 'fd00::7'}, {ip: 10.0.0.7}]\n");
	assert_int_equal(o->kind, MOAT_O_POD);
	assert_string_equal(o->ns, "y");
	assert_string_equal(o->u.pod->ns, "y");
	assert_string_equal(o->u.pod->name, "a");
	assert_string_equal(o->u.pod->node, "node-1");
	assert_false(o->u.pod->host_network);
	assert_int_equal(o->u.pod->labels.n, 2);
	assert_string_equal(moat_labels_get(&o->u.pod->labels, "app.kubernetes.io/name"), "db");
	assert_int_equal(o->u.pod->nips, 2); /* podIPs win, deduplicated */
	assert_string_equal(addr_s(&o->u.pod->ips[0]), "10.0.0.7");
	assert_int_equal(o->u.pod->ips[0].family, 4);
	assert_string_equal(addr_s(&o->u.pod->ips[1]), "fd00::7");
	assert_int_equal(o->u.pod->nports, 3); /* not initContainers */
	assert_string_equal(o->u.pod->ports[0].name, "http");
	assert_int_equal(o->u.pod->ports[0].proto, IPPROTO_TCP);
	assert_int_equal(o->u.pod->ports[0].port, 80);
	assert_null(o->u.pod->ports[1].name);
	assert_int_equal(o->u.pod->ports[1].proto, IPPROTO_UDP);
	assert_int_equal(o->u.pod->ports[2].proto, IPPROTO_SCTP);
	moat_object_free(o);

	/* podIP fallback; a pod without IPs; finished pods lose theirs */
	o = ok("{apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {hostNetwork: true}, status: {podIP: 10.0.0.9, podIPs: []}}");
	assert_string_equal(o->ns, "default");
	assert_true(o->u.pod->host_network);
	assert_null(o->u.pod->node);
	assert_int_equal(o->u.pod->nips, 1);
	assert_string_equal(addr_s(&o->u.pod->ips[0]), "10.0.0.9");
	moat_object_free(o);
	o = ok("{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}}");
	assert_int_equal(o->u.pod->nips, 0);
	assert_int_equal(o->u.pod->nports, 0);
	moat_object_free(o);
	o = ok("{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, status: {phase: Succeeded, podIP: 10.0.0.9}}");
	assert_int_equal(o->u.pod->nips, 0);
	moat_object_free(o);

	o = ok("{apiVersion: v1, kind: Node, metadata: {name: node-1.example, labels: {kubernetes.io/os: linux}},"
	       " status: {addresses: [{type: Hostname, address: node-1}, {type: InternalIP, address: 192.168.0.1},"
	       " {type: ExternalIP, address: '2001:db8::1'}, {type: InternalIP, address: 192.168.0.1}, {type: InternalDNS, address: x.y}]}}");
	assert_int_equal(o->kind, MOAT_O_NODE);
	assert_null(o->ns);
	assert_string_equal(o->u.node->name, "node-1.example");
	assert_int_equal(o->u.node->naddrs, 2);
	assert_string_equal(addr_s(&o->u.node->addrs[0]), "192.168.0.1");
	assert_string_equal(addr_s(&o->u.node->addrs[1]), "2001:db8::1");
	assert_string_equal(moat_labels_get(&o->u.node->labels, "kubernetes.io/os"), "linux");
	moat_object_free(o);

	o = ok("{apiVersion: v1, kind: Service, metadata: {name: s-x-a, namespace: x}, spec: {clusterIP: 10.96.0.9, clusterIPs: [10.96.0.10, 'fd00:96::a']}}");
	assert_int_equal(o->kind, MOAT_O_SERVICE);
	assert_int_equal(o->u.service->nips, 2);
	assert_string_equal(addr_s(&o->u.service->ips[0]), "10.96.0.10");
	assert_string_equal(o->u.service->ns, "x");
	moat_object_free(o);
	o = ok("{apiVersion: v1, kind: Service, metadata: {name: s, namespace: x}, spec: {clusterIP: 10.96.0.9}}");
	assert_int_equal(o->u.service->nips, 1);
	moat_object_free(o);
	o = ok("{apiVersion: v1, kind: Service, metadata: {name: s, namespace: x}, spec: {clusterIP: None, clusterIPs: [None]}}");
	assert_int_equal(o->u.service->nips, 0);
	moat_object_free(o);
	o = ok("{apiVersion: v1, kind: Service, metadata: {name: s, namespace: x}, spec: {clusterIP: ''}}");
	assert_int_equal(o->u.service->nips, 0);
	moat_object_free(o);
}

static void t_core_bad(void **state)
{
	static const struct bad v[] = {
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, status: {podIPs: [{ip: 10.0.0.300}]}}",
		  "t.yaml: Pod y/a: status.podIPs[0].ip: \"10.0.0.300\" is not an IP address" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, status: {podIPs: [{}]}}",
		  "t.yaml: Pod y/a: status.podIPs[0].ip: required" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, status: {podIP: 'fe80::1%eth0'}}",
		  "t.yaml: Pod y/a: status.podIP: \"fe80::1%eth0\" is not an IP address" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, status: {podIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.2}, {ip: 10.0.0.3}, {ip: 10.0.0.4}, {ip: 10.0.0.5}]}}",
		  "t.yaml: Pod y/a: status.podIPs[4]: more than 4 addresses" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, spec: {containers: [{ports: [{containerPort: 0}]}]}}",
		  "t.yaml: Pod y/a: spec.containers[0].ports[0].containerPort: 0 is not a port" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, spec: {containers: [{}, {ports: [{}]}]}}",
		  "t.yaml: Pod y/a: spec.containers[1].ports[0].containerPort: required" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, spec: {containers: [{ports: [{containerPort: 80, name: 80}]}]}}",
		  "t.yaml: Pod y/a: spec.containers[0].ports[0].name: must be a string" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, spec: {containers: [{ports: [{containerPort: 80, name: '80'}]}]}}",
		  "t.yaml: Pod y/a: spec.containers[0].ports[0].name: \"80\" is not a valid port name" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, spec: {containers: [{ports: [{containerPort: 80, protocol: Tcp}]}]}}",
		  "t.yaml: Pod y/a: spec.containers[0].ports[0].protocol: \"Tcp\" is not one of TCP, UDP, SCTP" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, spec: {hostNetwork: 'yes'}}",
		  "t.yaml: Pod y/a: spec.hostNetwork: must be a boolean" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, spec: {nodeName: Node_1}}",
		  "t.yaml: Pod y/a: spec.nodeName: \"Node_1\" is not a valid node name" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y, labels: {a/b/c: x}}}",
		  "t.yaml: Pod y/a: metadata.labels: \"a/b/c\" is not a valid label key" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y, labels: {a: -x}}}",
		  "t.yaml: Pod y/a: metadata.labels.a: \"-x\" is not a valid label value" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y, labels: [a]}}",
		  "t.yaml: Pod y/a: metadata.labels: must be an object" },
		{ "{apiVersion: v2, kind: Pod, metadata: {name: a, namespace: y}}",
		  "t.yaml: Pod y/a: apiVersion: \"v2\" is not supported for Pod (want v1)" },
		{ "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y, uid: 7}}",
		  "t.yaml: Pod y/a: metadata.uid: must be a string" },
		{ "{apiVersion: v1, kind: Namespace, metadata: {name: a.b}}",
		  "t.yaml: Namespace: metadata.name: \"a.b\" is not a valid name (a lowercase RFC 1123 label)" },
		{ "{apiVersion: v1, kind: Namespace, metadata: {name: x, annotations: {moat.io/audit: 'TRUE'}}}",
		  "t.yaml: Namespace x: metadata.annotations.moat.io/audit: \"TRUE\" must be \"true\" or \"false\"" },
		{ "{apiVersion: v1, kind: Namespace, metadata: {name: x, annotations: {moat.io/sample-every: '-1'}}}",
		  "t.yaml: Namespace x: metadata.annotations.moat.io/sample-every: \"-1\" is not a number from 0 (no samples) to 1000000000" },
		{ "{apiVersion: v1, kind: Namespace, metadata: {name: x, annotations: {moat.io/sample-every: 10}}}",
		  "t.yaml: Namespace x: metadata.annotations.moat.io/sample-every: must be a string" },
		{ "{apiVersion: v1, kind: Node, metadata: {name: n}, status: {addresses: [{type: InternalIP, address: node-1}]}}",
		  "t.yaml: Node n: status.addresses[0].address: \"node-1\" is not an IP address" },
		{ "{apiVersion: v1, kind: Node, metadata: {name: n}, status: {addresses: [{address: 1.2.3.4}]}}",
		  "t.yaml: Node n: status.addresses[0].type: required" },
		{ "{apiVersion: v1, kind: Service, metadata: {name: s, namespace: x}, spec: {clusterIPs: [10.0.0.1, x]}}",
		  "t.yaml: Service x/s: spec.clusterIPs[1]: \"x\" is not an IP address" },
		{ "{apiVersion: v1, kind: Service, metadata: {name: 1abc, namespace: x}}",
		  "t.yaml: Service: metadata.name: \"1abc\" is not a valid name (a lowercase RFC 1035 label)" },
	};
	(void)state;
	check_bad(v, sizeof(v) / sizeof(v[0]));
	/* label and port limits */
	char buf[8192], *p = buf;
	p += sprintf(p, "{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y, labels: {");
	for (int i = 0; i <= MOAT_MAX_LABELS; i++)
		p += sprintf(p, "%sk%d: v", i ? ", " : "", i);
	sprintf(p, "}}}");
	expect_result(strdup(buf), "t.yaml: Pod y/a: metadata.labels: more than 64 labels");
	expect_result(
		repeat("{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, spec: {containers: [{ports: [",
		       "{containerPort: 1}", MOAT_MAX_CPORTS, "]}]}}"),
		NULL);
	expect_result(
		repeat("{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y}, spec: {containers: [{ports: [",
		       "{containerPort: 1}", MOAT_MAX_CPORTS + 1, "]}]}}"),
		"t.yaml: Pod y/a: spec.containers[0].ports[64]: more than 64 container ports in the pod");
}

/* ---- kinds we skip, keys, messages ------------------------------------------------------------- */
static void t_kinds(void **state)
{
	static const char *const skipped[] = {
		"{apiVersion: v1, kind: ConfigMap, metadata: {name: Not_Valid}, data: {a: b}}",
		"{apiVersion: apps/v1, kind: Deployment, metadata: {name: d}}",
		"{apiVersion: projectcalico.org/v3, kind: NetworkPolicy, metadata: {name: default.x, namespace: y}, spec: {selector: all()}}",
		"{apiVersion: serving.knative.dev/v1, kind: Service, metadata: {name: s}}",
		"{kind: Widget}",
	};
	struct moat_object *o;
	char err[256], *k;

	(void)state;
	for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++) {
		o = (void *)1;
		assert_int_equal(dec(skipped[i], &o, err, sizeof(err)), 0);
		assert_null(o);
	}
	o = ok(NP("{}"));
	k = moat_object_key(o);
	assert_string_equal(k, "NetworkPolicy/y/allow-db");
	free(k);
	moat_object_free(o);
	o = ok(ANP("{priority: 1, " SUBJ "}"));
	k = moat_object_key(o);
	assert_string_equal(k, "AdminNetworkPolicy/a");
	free(k);
	moat_object_free(o);
	o = ok("{apiVersion: v1, kind: Namespace, metadata: {name: x}}");
	k = moat_object_key(o);
	assert_string_equal(k, "Namespace/x");
	free(k);
	moat_object_free(o);
	o = ok("{apiVersion: v1, kind: Pod, metadata: {name: p}}");
	k = moat_object_key(o);
	assert_string_equal(k, "Pod/default/p");
	free(k);
	moat_object_free(o);
	assert_null(moat_object_key(NULL));
}

static void t_messages(void **state)
{
	json_t *j = json_loads("[1]", 0, NULL), *n;
	struct moat_object *o;
	char err[16];

	(void)state;
	/* not an object; no source */
	assert_int_equal(moat_decode(j, NULL, &o, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "not an object");
	assert_null(o);
	json_decref(j);
	/* a short buffer is truncated, a missing one is fine */
	n = doc1(NP("{ingress: [{ports: [{port: 0}]}]}"));
	assert_int_equal(moat_decode(n, "t.yaml", &o, err, sizeof(err)), -EINVAL);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	assert_int_equal(moat_decode(n, "t.yaml", &o, NULL, 0), -EINVAL);
	assert_null(o);
	json_decref(n);
	/* control characters and long values are quoted safely */
	char big[600];
	memset(big, 'a', sizeof(big));
	big[sizeof(big) - 1] = 0;
	char *t = malloc(1000);
	sprintf(t, NP("{policyTypes: [\"x\\ny\"]}"));
	char e2[512];
	assert_int_equal(dec(t, &o, e2, sizeof(e2)), -EINVAL);
	assert_string_equal(e2, NPE "spec.policyTypes[0]: \"x\\x0ay\" is not one of Ingress, Egress");
	sprintf(t, NP("{policyTypes: [%s]}"), big);
	assert_int_equal(dec(t, &o, e2, sizeof(e2)), -EINVAL);
	assert_non_null(strstr(e2, "...\" is not one of Ingress, Egress"));
	free(t);
	/* names in messages come from the object */
	assert_true(moat_valid_label_key("kubernetes.io/metadata.name"));
	assert_true(moat_valid_label_key("a"));
	assert_false(moat_valid_label_key(""));
	assert_false(moat_valid_label_key("/a"));
	assert_false(moat_valid_label_key("a/"));
	assert_false(moat_valid_label_key("Bad_Prefix/a"));
	assert_false(
		moat_valid_label_key("0123456789012345678901234567890123456789012345678901234567890123"));
	assert_true(moat_valid_label_key("012345678901234567890123456789012345678901234567890123456789012"));
	assert_true(moat_valid_label_value(""));
	assert_true(moat_valid_label_value("A.b_c-9"));
	assert_false(moat_valid_label_value("a."));
	assert_true(moat_valid_dns_subdomain("a.b-c.d"));
	assert_false(moat_valid_dns_subdomain("a..b"));
	assert_false(moat_valid_dns_subdomain("a.b."));
	assert_false(moat_valid_dns_label("a.b"));
	assert_false(moat_valid_dns1035_label("9a"));
	assert_true(moat_valid_port_name("serve-80-tcp"));
	assert_false(moat_valid_port_name("serve--80"));
	assert_false(moat_valid_port_name("123"));
	assert_false(moat_valid_port_name("a-very-long-name"));
}

/* ---- garbage: mutated corpus-like objects give errors, never crashes ---------------------------- */
static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static json_t *rnd_value(void)
{
	switch (rnd() % 10) {
	case 0:
		return json_null();
	case 1:
		return json_integer((json_int_t)(rnd() % 200000) - 100000);
	case 2:
		return json_string("");
	case 3:
		return json_string("Bad Value");
	case 4:
		return json_array();
	case 5:
		return json_object();
	case 6:
		return json_true();
	case 7:
		return json_real(1.5);
	case 8:
		return json_pack("[{}]");
	default:
		return json_integer(INT64_MAX);
	}
}

/* Replaces one random value inside j. */
static void mutate(json_t *j)
{
	for (int depth = 0; depth < 12; depth++) {
		size_t n = json_is_object(j) ? json_object_size(j) : json_array_size(j);
		if (!n)
			return;
		size_t pick = rnd() % n;
		json_t *child;
		const char *key = NULL;

		if (json_is_object(j)) {
			void *it = json_object_iter(j);
			for (size_t i = 0; i < pick; i++)
				it = json_object_iter_next(j, it);
			key = json_object_iter_key(it);
			child = json_object_iter_value(it);
		} else {
			child = json_array_get(j, pick);
		}
		if ((json_is_object(child) || json_is_array(child)) && rnd() % 3) {
			j = child;
			continue;
		}
		if (key)
			json_object_set_new(j, key, rnd_value());
		else
			json_array_set_new(j, pick, rnd_value());
		return;
	}
}

static void t_garbage(void **state)
{
	static const char *const seeds[] = {
		NP("{podSelector: {matchLabels: {a: b}, matchExpressions: [{key: k, operator: In, values: [v]}]},"
		   " policyTypes: [Ingress, Egress], ingress: [{from: [{podSelector: {}}, {namespaceSelector: {}},"
		   " {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}], ports: [{port: 80, endPort: 90}, {port: web, protocol: UDP}]}],"
		   " egress: [{to: [{podSelector: {}, namespaceSelector: {}}]}]}"),
		ANP("{priority: 5, subject: {pods: {namespaceSelector: {}, podSelector: {}}}, ingress: [{name: r, action: Deny,"
		    " from: [{namespaces: {}}, {pods: {namespaceSelector: {}, podSelector: {}}}], ports: [{portNumber: {port: 80}},"
		    " {portRange: {start: 1, end: 2}}, {namedPort: web}]}], egress: [{action: Allow, to: [{networks: [10.0.0.0/8]},"
		    " {nodes: {}}, {domainNames: [a.io]}]}]}"),
		CNP("{tier: Admin, priority: 5, subject: {pods: {podSelector: {}}}, egress: [{action: Accept, to: [{networks: [10.0.0.0/8]}],"
		    " protocols: [{tcp: {destinationPort: {number: 1}}}, {udp: {destinationPort: {range: {start: 1, end: 9}}}}, {destinationNamedPort: x}]}]}"),
		"{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: y, labels: {a: b}}, spec: {nodeName: n, containers: [{ports: [{containerPort: 80, name: web}]}]},"
		" status: {podIPs: [{ip: 10.0.0.1}]}}",
		"{apiVersion: v1, kind: Node, metadata: {name: n}, status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}}",
		"{apiVersion: v1, kind: Service, metadata: {name: s, namespace: y}, spec: {clusterIPs: [10.0.0.1]}}",
	};
	size_t errors = 0, oks = 0;

	(void)state;
	for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
		json_t *base = doc1(seeds[s]);
		struct moat_object *o = NULL;
		char err[512];

		assert_int_equal(moat_decode(base, "fuzz", &o, err, sizeof(err)), 0);
		moat_object_free(o);
		for (int i = 0; i < 400; i++) {
			json_t *j = json_deep_copy(base);
			int rc;

			for (int k = 1 + (int)(rnd() % 3); k > 0; k--)
				mutate(j);
			err[0] = 0;
			o = NULL;
			rc = moat_decode(j, "fuzz", &o, err, sizeof(err));
			if (rc) {
				assert_int_equal(rc, -EINVAL);
				assert_null(o);
				assert_true(!strncmp(err, "fuzz: ", 6));
				errors++;
			} else {
				oks++;
				moat_object_free(o);
			}
			json_decref(j);
		}
		json_decref(base);
	}
	print_message("garbage: %zu rejected, %zu accepted\n", errors, oks);
	assert_true(errors > 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_corpus_netpol),
		cmocka_unit_test(t_corpus_anp),
		cmocka_unit_test(t_corpus_models),
		cmocka_unit_test(t_netpol_map),
		cmocka_unit_test(t_netpol_defaults),
		cmocka_unit_test(t_netpol_bad),
		cmocka_unit_test(t_netpol_limits),
		cmocka_unit_test(t_unknown_fields_refused),
		cmocka_unit_test(t_selector_canonical),
		cmocka_unit_test(t_anp_map),
		cmocka_unit_test(t_banp_map),
		cmocka_unit_test(t_anp_bad),
		cmocka_unit_test(t_anp_limits),
		cmocka_unit_test(t_cnp_map),
		cmocka_unit_test(t_cnp_bad),
		cmocka_unit_test(t_core_map),
		cmocka_unit_test(t_selector_text),
		cmocka_unit_test(t_core_bad),
		cmocka_unit_test(t_kinds),
		cmocka_unit_test(t_messages),
		cmocka_unit_test(t_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
