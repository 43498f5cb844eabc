// SPDX-License-Identifier: Apache-2.0
/* Blueprints end to end through the compiler: the shipped blueprints in
 * deploy/blueprints applied to a small cluster and judged on the compiled
 * tables (moat_compiler_explain performs the datapath's lookups); version
 * rollout, pinning, rollback, diff, parameters, abort, and bad input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "blueprint.h"
#include "compile.h"
#include "decode.h"
#include "manifest.h"
#include "util.h"

/* pay: baseline (current version); legacy: baseline pinned to 1; shop:
 * namespace isolation, no baseline; open and monitoring: no baseline;
 * kube-system: excluded, and carries a forged blueprint label. */
static const char *world_yaml =
	"apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"
	"status: {addresses: [{type: InternalIP, address: 10.99.0.1}]}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: pay}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: legacy, annotations: {blueprint.moat.io/baseline: \"1\"}}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {isolation.moat.io/enabled: \"true\", moat.io/baseline: \"off\"}}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: open, labels: {moat.io/baseline: \"off\"}}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: monitoring, labels: {moat.io/baseline: \"off\"}}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system, labels: {blueprint.moat.io/baseline: \"2\"}}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: pay, labels: {app: pay}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.1}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: old, namespace: legacy, labels: {app: old}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.2}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: dns, namespace: kube-system, labels: {k8s-app: kube-dns}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.3}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.4}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: shop, labels: {app: api}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.5}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: srv, namespace: open, labels: {app: srv}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.6}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: prom, namespace: monitoring, labels: {app.kubernetes.io/name: prometheus}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.7}\n";

struct fx {
	struct moat_compiler *c;
};

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = xcalloc(1, 1 << 20);
	size_t n;

	if (!f)
		fail_msg("%s: cannot open (tests run from the repository root)", path);
	n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = 0;
	fclose(f);
	return buf;
}

/* Applies every document of yaml; returns the first decode error (0 if none). */
static int load(struct fx *f, const char *yaml, char *err, size_t errlen)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	int rc = 0;

	if (moat_manifest_parse(yaml, strlen(yaml), "test.yaml", &docs, &errs))
		fail_msg("yaml: %s", errs.n ? errs.v[0] : "?");
	for (size_t i = 0; i < docs.n; i++) {
		struct moat_object *o = NULL;
		int r = moat_decode(docs.v[i].json, "test.yaml", &o, err, errlen);
		if (r) {
			rc = rc ? rc : r;
			continue;
		}
		assert_non_null(o);
		assert_int_equal(moat_compiler_apply(f->c, o), 0);
	}
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	return rc;
}

static void load_ok(struct fx *f, const char *yaml)
{
	char err[1024];
	if (load(f, yaml, err, sizeof(err)))
		fail_msg("decode: %s", err);
}

static void load_file(struct fx *f, const char *path)
{
	char *y = slurp(path);
	load_ok(f, y);
	free(y);
}

static int flush_only(struct fx *f)
{
	struct moat_tx *tx;
	struct moat_flush_stats st;
	char err[512];
	int rc;

	assert_int_equal(moat_tx_begin(NULL, false, &tx), 0);
	rc = moat_compiler_flush(f->c, tx, &st, err, sizeof(err));
	moat_tx_abort(tx);
	return rc;
}

static void flush(struct fx *f)
{
	assert_int_equal(flush_only(f), 0);
	moat_compiler_commit(f->c);
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct moat_compiler_opts o = { .node = "n1" };

	moat_compiler_new(&o, &f->c);
	load_ok(f, world_yaml);
	load_file(f, "deploy/blueprints/baseline.yaml");
	load_file(f, "deploy/blueprints/namespace-isolation.yaml");
	load_file(f, "deploy/blueprints/monitoring.yaml");
	flush(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	moat_compiler_free(f->c);
	free(f);
	return 0;
}

#define A MOAT_VERDICT_ALLOW
#define D MOAT_VERDICT_DENY

/* Asserts the verdict and that the deciding rule's description mentions
 * needle (NULL: anything). */
static void expect(struct fx *f, const char *from, const char *to, uint8_t proto, uint16_t port, int want,
		   const char *needle)
{
	struct moat_explain x;
	char err[256], *d;

	if (moat_compiler_explain(f->c, from, to, proto, port, &x, err, sizeof(err)))
		fail_msg("explain: %s", err);
	d = moat_rule_describe(f->c, x.rule);
	if (x.verdict != want || (needle && !strstr(d, needle)))
		fail_msg("%s -> %s %u/%s: want %s%s%s, got %s by \"%s\"", from, to, port,
			 moat_proto_name(proto), moat_verdict_name(want), needle ? " by " : "",
			 needle ? needle : "", moat_verdict_name(x.verdict), d);
	free(d);
}

/* The version namespace ns runs of blueprint bp in the status ("" if none),
 * and whether it is pinned. */
static const char *status_of(struct fx *f, const char *bp, const char *ns, bool *pinned)
{
	static char out[64];
	json_t *st = moat_compiler_blueprints(f->c), *b, *n;
	size_t i, k;

	out[0] = 0;
	json_array_foreach(st, i, b)
	{
		if (strcmp(json_string_value(json_object_get(b, "name")), bp))
			continue;
		json_array_foreach(json_object_get(b, "namespaces"), k, n)
		{
			if (strcmp(json_string_value(json_object_get(n, "namespace")), ns))
				continue;
			snprintf(out, sizeof(out), "%s", json_string_value(json_object_get(n, "version")));
			if (pinned)
				*pinned = json_is_true(json_object_get(n, "pinned"));
		}
	}
	json_decref(st);
	return out;
}

static char *status_errors(struct fx *f, const char *bp)
{
	json_t *st = moat_compiler_blueprints(f->c), *b;
	char *s = NULL;
	size_t i;

	json_array_foreach(st, i, b) if (!strcmp(json_string_value(json_object_get(b, "name")), bp))
		s = json_dumps(json_object_get(b, "errors"), JSON_COMPACT);
	json_decref(st);
	return s ? s : xstrdup("[]");
}

/* The shipped baseline with spec.version replaced. */
static char *baseline_at(const char *version)
{
	char *y = slurp("deploy/blueprints/baseline.yaml");
	char *p = strstr(y, "  version: \"2\"\n  namespaceSelector");
	char *r;

	assert_non_null(p);
	*p = 0;
	r = xasprintf("%s  version: \"%s\"\n%s", y, version, strstr(p + 1, "  namespaceSelector"));
	free(y);
	return r;
}

static void test_shipped_blueprints_enforce(void **state)
{
	struct fx *f = *state;
	bool pinned = true;

	/* baseline: default deny both ways, DNS allowed (v2: TCP too) */
	expect(f, "pay/app", "kube-system/dns", IPPROTO_UDP, 53, A, "baseline:default-deny@2");
	expect(f, "pay/app", "kube-system/dns", IPPROTO_TCP, 53, A, "allow-dns");
	expect(f, "pay/app", "open/srv", IPPROTO_TCP, 80, D, "baseline:default-deny@2");
	expect(f, "open/srv", "pay/app", IPPROTO_TCP, 80, D, "deny-all");
	/* legacy is pinned to version 1: no DNS over TCP */
	expect(f, "legacy/old", "kube-system/dns", IPPROTO_UDP, 53, A, "baseline:default-deny@1");
	expect(f, "legacy/old", "kube-system/dns", IPPROTO_TCP, 53, D, "baseline:default-deny@1");
	/* namespace isolation in shop: same namespace only */
	expect(f, "shop/api", "shop/web", IPPROTO_TCP, 80, A, "namespace-isolation:same-namespace-only");
	expect(f, "open/srv", "shop/web", IPPROTO_TCP, 80, D, "namespace-isolation:same-namespace-only");
	/* monitoring scrapes pass whatever the namespace says (Admin tier) */
	expect(f, "monitoring/prom", "shop/web", IPPROTO_TCP, 9090, A, "monitoring:allow-scrapes@1");
	expect(f, "monitoring/prom", "shop/web", IPPROTO_TCP, 8080, D, "same-namespace-only");
	/* a label forged on kube-system does not make the baseline apply there */
	expect(f, "kube-system/dns", "open/srv", IPPROTO_TCP, 80, A, NULL);

	assert_string_equal(status_of(f, "baseline", "pay", &pinned), "2");
	assert_false(pinned);
	assert_string_equal(status_of(f, "baseline", "legacy", &pinned), "1");
	assert_true(pinned);
	assert_string_equal(status_of(f, "baseline", "kube-system", NULL), "");
	assert_string_equal(status_of(f, "baseline", "shop", NULL), "");
	assert_string_equal(status_of(f, "namespace-isolation", "shop", NULL), "1");
	assert_string_equal(status_of(f, "namespace-isolation", "pay", NULL), "");
	char *e = status_errors(f, "baseline");
	assert_string_equal(e, "[]");
	free(e);
}

static void test_rollout_diff_and_rollback(void **state)
{
	struct fx *f = *state;
	char *v1 = baseline_at("1"), *v2 = baseline_at("2"), err[512];
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	struct moat_object *cand = NULL;
	json_t *diff, *x;
	size_t i;
	bool saw_pay = false, saw_change = false;

	/* diff first: what going back to version 1 would change */
	assert_int_equal(moat_manifest_parse(v1, strlen(v1), "v1.yaml", &docs, &errs), 0);
	assert_int_equal(moat_decode(docs.v[0].json, "v1.yaml", &cand, err, sizeof(err)), 0);
	diff = moat_compiler_blueprint_diff(f->c, cand->u.blueprint);
	assert_string_equal(json_string_value(json_object_get(diff, "from")), "2");
	assert_string_equal(json_string_value(json_object_get(diff, "to")), "1");
	json_array_foreach(json_object_get(diff, "namespaces"), i, x)
	{
		const char *ns = json_string_value(json_object_get(x, "namespace"));
		assert_string_not_equal(ns, "legacy"); /* pinned: unchanged */
		if (!strcmp(ns, "pay")) {
			saw_pay = true;
			assert_string_equal(json_string_value(json_object_get(x, "from")), "2");
			assert_string_equal(json_string_value(json_object_get(x, "to")), "1");
		}
	}
	json_array_foreach(json_object_get(diff, "changes"), i, x)
	{
		char *nss = json_dumps(json_object_get(x, "namespaces"), JSON_COMPACT);
		assert_string_equal(json_string_value(json_object_get(x, "policy")),
				    "ClusterNetworkPolicy baseline:default-deny");
		assert_string_equal(json_string_value(json_object_get(x, "change")), "changed");
		assert_string_equal(nss, "[\"pay\"]");
		free(nss);
		saw_change = true;
	}
	if (!saw_pay || !saw_change)
		fail_msg("diff: %s", json_dumps(diff, JSON_COMPACT));
	json_decref(diff);
	moat_object_free(cand);
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	/* the diff changed nothing */
	expect(f, "pay/app", "kube-system/dns", IPPROTO_TCP, 53, A, "@2");

	/* roll back */
	load_ok(f, v1);
	flush(f);
	expect(f, "pay/app", "kube-system/dns", IPPROTO_TCP, 53, D, "baseline:default-deny@1");
	expect(f, "pay/app", "kube-system/dns", IPPROTO_UDP, 53, A, "baseline:default-deny@1");
	assert_string_equal(status_of(f, "baseline", "pay", NULL), "1");
	/* and forward again */
	load_ok(f, v2);
	flush(f);
	expect(f, "pay/app", "kube-system/dns", IPPROTO_TCP, 53, A, "baseline:default-deny@2");
	expect(f, "legacy/old", "kube-system/dns", IPPROTO_TCP, 53, D, "@1");
	free(v1);
	free(v2);
}

static void test_pinning(void **state)
{
	struct fx *f = *state;
	bool pinned;
	char *e;

	load_ok(f,
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: pay, annotations: {blueprint.moat.io/baseline: \"1\"}}\n");
	flush(f);
	expect(f, "pay/app", "kube-system/dns", IPPROTO_TCP, 53, D, "@1");
	assert_string_equal(status_of(f, "baseline", "pay", &pinned), "1");
	assert_true(pinned);
	/* a pin to a version the blueprint does not have: spec.version runs,
	 * and the status says why */
	load_ok(f,
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: pay, annotations: {blueprint.moat.io/baseline: \"9\"}}\n");
	flush(f);
	expect(f, "pay/app", "kube-system/dns", IPPROTO_TCP, 53, A, "@2");
	assert_string_equal(status_of(f, "baseline", "pay", &pinned), "2");
	assert_false(pinned);
	e = status_errors(f, "baseline");
	assert_non_null(strstr(
		e,
		"Namespace pay: annotation blueprint.moat.io/baseline: version \\\"9\\\" is not in spec.versions; running 2"));
	free(e);
	/* unpinned: the current version */
	load_ok(f, "apiVersion: v1\nkind: Namespace\nmetadata: {name: pay}\n");
	flush(f);
	assert_string_equal(status_of(f, "baseline", "pay", &pinned), "2");
	e = status_errors(f, "baseline");
	assert_string_equal(e, "[]");
	free(e);
	/* a namespace leaving the selector loses the baseline */
	load_ok(f,
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: pay, labels: {moat.io/baseline: \"off\"}}\n");
	flush(f);
	expect(f, "pay/app", "open/srv", IPPROTO_TCP, 80, A, NULL);
	assert_string_equal(status_of(f, "baseline", "pay", NULL), "");
}

static const char *param_bp =
	"apiVersion: moat.io/v1alpha1\nkind: Blueprint\nmetadata: {name: web}\n"
	"spec:\n  version: \"1\"\n  namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: open}}\n"
	"  parameters: [{name: port, default: \"8080\"}, {name: peer, default: monitoring}]\n"
	"  versions:\n  - version: \"1\"\n    networkPolicies:\n    - name: allow-port\n"
	"      annotations: {note: \"for ${namespace} by ${blueprint}@${version}\"}\n"
	"      spec:\n        podSelector: {}\n        ingress:\n"
	"        - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: \"${peer}\"}}}]\n"
	"          ports: [{port: \"${port}\"}]\n";

static void test_parameters(void **state)
{
	struct fx *f = *state;
	char *e;

	load_ok(f, param_bp);
	flush(f);
	expect(f, "monitoring/prom", "open/srv", IPPROTO_TCP, 8080, A, "web:allow-port");
	expect(f, "monitoring/prom", "open/srv", IPPROTO_TCP, 9000, D, "web:allow-port");
	/* the namespace overrides both parameters */
	load_ok(f,
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: open, labels: {moat.io/baseline: \"off\"}, "
		"annotations: {web.blueprint.moat.io/port: \"9000\", web.blueprint.moat.io/peer: shop}}\n");
	flush(f);
	expect(f, "monitoring/prom", "open/srv", IPPROTO_TCP, 8080, D, "web:allow-port");
	expect(f, "shop/web", "open/srv", IPPROTO_TCP, 9000, A, "web:allow-port");
	/* a value that makes the instance invalid: reported, last good kept */
	load_ok(f,
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: open, labels: {moat.io/baseline: \"off\"}, "
		"annotations: {web.blueprint.moat.io/port: \"70000\", web.blueprint.moat.io/peer: shop}}\n");
	flush(f);
	expect(f, "shop/web", "open/srv", IPPROTO_TCP, 9000, A, "web:allow-port");
	e = status_errors(f, "web");
	if (!strstr(e,
		    "NetworkPolicy open/web:allow-port: spec.ingress[0].ports[0].port: 70000 is not a port"))
		fail_msg("errors: %s", e);
	free(e);
}

static void test_abort_restores_instances(void **state)
{
	struct fx *f = *state;
	char *v1 = baseline_at("1");

	/* a flush that is not committed (the datapath refused it) */
	load_ok(f, v1);
	assert_int_equal(flush_only(f), 0);
	moat_compiler_abort(f->c);
	assert_string_equal(status_of(f, "baseline", "pay", NULL), "2");
	flush(f);
	expect(f, "pay/app", "kube-system/dns", IPPROTO_TCP, 53, A, "@2");
	/* the instance record went back too: version 1 applies in full */
	load_ok(f, v1);
	flush(f);
	expect(f, "pay/app", "kube-system/dns", IPPROTO_TCP, 53, D, "@1");
	free(v1);
}

static void test_delete_removes_instances(void **state)
{
	struct fx *f = *state;

	assert_int_equal(moat_compiler_delete(f->c, "Blueprint/baseline"), 0);
	assert_int_equal(moat_compiler_delete(f->c, "Blueprint/namespace-isolation"), 0);
	flush(f);
	expect(f, "pay/app", "open/srv", IPPROTO_TCP, 80, A, NULL);
	expect(f, "open/srv", "shop/web", IPPROTO_TCP, 80, A, NULL);
	assert_string_equal(status_of(f, "baseline", "pay", NULL), "");
}

/* Decode errors of a Blueprint name the object and field. */
static void expect_error(const char *yaml, const char *want)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	struct moat_object *o = NULL;
	char err[1024];

	assert_int_equal(moat_manifest_parse(yaml, strlen(yaml), "bp.yaml", &docs, &errs), 0);
	assert_int_equal(moat_decode(docs.v[0].json, "bp.yaml", &o, err, sizeof(err)), -EINVAL);
	assert_null(o);
	if (strcmp(err, want))
		fail_msg("got:  %s\nwant: %s", err, want);
	moat_docs_free(&docs);
	moat_errs_free(&errs);
}

#define BP_HEAD "apiVersion: moat.io/v1alpha1\nkind: Blueprint\nmetadata: {name: b}\n"

static void test_bad_blueprint_messages(void **state)
{
	(void)state;
	expect_error(BP_HEAD "spec: {version: \"3\", namespaceSelector: {}, versions: [{version: \"1\"}]}\n",
		     "bp.yaml: Blueprint b: spec.version: \"3\" is not one of spec.versions");
	expect_error(BP_HEAD "spec: {version: \"1\", versions: [{version: \"1\"}]}\n",
		     "bp.yaml: Blueprint b: spec.namespaceSelector: required");
	expect_error(
		BP_HEAD
		"spec: {version: \"1\", namespaceSelector: {}, versions: [{version: \"1\"}, {version: \"1\"}]}\n",
		"bp.yaml: Blueprint b: spec.versions[1].version: \"1\": listed twice");
	expect_error(
		BP_HEAD
		"spec: {version: \"1\", namespaceSelector: {}, versions: [{version: \"1\", networkPolicies: "
		"[{name: x, spec: {podSelector: {}, ingress: [{ports: [{port: \"${nope}\"}]}]}}]}]}\n",
		"bp.yaml: Blueprint b: spec.versions[0].networkPolicies[0]: spec.ingress[0].ports[0].port: "
		"${nope}: no such parameter in spec.parameters");
	expect_error(
		BP_HEAD
		"spec: {version: \"1\", namespaceSelector: {}, versions: [{version: \"1\", networkPolicies: "
		"[{name: x, spec: {podSelector: {}, ingress: [{ports: [{port: 70000}]}]}}]}]}\n",
		"bp.yaml: Blueprint b: spec.versions[0].networkPolicies[0]: spec.ingress[0].ports[0].port: "
		"70000 is not a port");
	expect_error(
		BP_HEAD
		"spec: {version: \"1\", namespaceSelector: {}, versions: [{version: \"1\", clusterNetworkPolicies: "
		"[{name: x, spec: {tier: Admin, priority: 1, subject: {namespaces: {matchLabels: {a: \"${namespace}\"}}}}}]}]}\n",
		"bp.yaml: Blueprint b: spec.versions[0].clusterNetworkPolicies[0]: "
		"spec.subject.namespaces.matchLabels.a: ${namespace} is not available in a "
		"ClusterNetworkPolicy template (one instance covers many namespaces)");
	expect_error(
		BP_HEAD
		"spec: {version: \"1\", namespaceSelector: {}, parameters: [{name: version, default: x}], versions: [{version: \"1\"}]}\n",
		"bp.yaml: Blueprint b: spec.parameters[0].name: \"version\" is not a parameter name "
		"(a letter, then letters, digits or _; not namespace, blueprint or version)");
	expect_error(BP_HEAD
		     "spec: {version: \"1 0\", namespaceSelector: {}, versions: [{version: \"1 0\"}]}\n",
		     "bp.yaml: Blueprint b: spec.versions[0].version: \"1 0\" is not a version (at most 63 "
		     "letters, digits, '-', '.', '_', starting and ending alphanumeric)");
	expect_error(
		"apiVersion: moat.io/v1alpha1\nkind: Blueprint\nmetadata: {name: B}\nspec: {}\n",
		"bp.yaml: Blueprint: metadata.name: \"B\" is not a valid name (a lowercase RFC 1123 label)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_shipped_blueprints_enforce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollout_diff_and_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pinning, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parameters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_restores_instances, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_removes_instances, setup, teardown),
		cmocka_unit_test(test_bad_blueprint_messages),
	};
	return cmocka_run_group_tests_name("blueprint", tests, NULL, NULL);
}
