// SPDX-License-Identifier: Apache-2.0
/* Validates deploy/: every Kubernetes manifest parses, names its kind and
 * object, and says what it must (least privilege, host network, bpffs);
 * the embedded moatd configurations load with moatd's own loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "config.h"
#include "manifest.h"

static json_t *all_docs(void)
{
	static const char *const files[] = { "deploy/kubernetes/namespace.yaml",
					     "deploy/kubernetes/rbac.yaml",
					     "deploy/kubernetes/daemonset.yaml",
					     "deploy/kubernetes/crds.yaml", "deploy/kubernetes/roles.yaml" };
	json_t *a = json_array();

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct moat_docs d = { 0 };
		struct moat_errs e = { 0 };
		if (access(files[i], R_OK))
			continue;
		if (moat_manifest_load_file(files[i], &d, &e))
			fail_msg("%s: %s", files[i], e.n ? e.v[0] : "unreadable");
		for (size_t k = 0; k < d.n; k++)
			json_array_append(a, d.v[k].json);
		moat_docs_free(&d);
		moat_errs_free(&e);
	}
	return a;
}

static json_t *find(json_t *docs, const char *kind, const char *name)
{
	size_t i;
	json_t *d;

	json_array_foreach(docs, i, d)
	{
		if (!strcmp(json_string_value(json_object_get(d, "kind")), kind) &&
		    (!name ||
		     !strcmp(json_string_value(json_object_get(json_object_get(d, "metadata"), "name")),
			     name)))
			return d;
	}
	return NULL;
}

static void test_every_document_is_an_object_with_identity(void **state)
{
	json_t *docs = all_docs(), *d;
	size_t i;

	(void)state;
	assert_true(json_array_size(docs) >= 5);
	json_array_foreach(docs, i, d)
	{
		assert_true(json_is_string(json_object_get(d, "apiVersion")));
		assert_true(json_is_string(json_object_get(d, "kind")));
		assert_true(json_is_string(json_object_get(json_object_get(d, "metadata"), "name")));
	}
	json_decref(docs);
}

static void test_cluster_role_is_read_only(void **state)
{
	json_t *docs = all_docs(), *role = find(docs, "ClusterRole", "moatd"), *r, *v;
	size_t i, k;

	(void)state;
	assert_non_null(role);
	json_array_foreach(json_object_get(role, "rules"), i, r)
	{
		json_t *res = json_object_get(r, "resources");
		bool review = false;
		json_array_foreach(res, k, v)
		{
			const char *s = json_string_value(v);
			review |= !strcmp(s, "tokenreviews") || !strcmp(s, "subjectaccessreviews");
			assert_null(strchr(s, '*'));
		}
		json_array_foreach(json_object_get(r, "verbs"), k, v)
		{
			const char *s = json_string_value(v);
			if (review)
				assert_string_equal(s, "create");
			else if (strcmp(s, "list") && strcmp(s, "watch"))
				fail_msg("ClusterRole moatd grants %s", s);
		}
	}
	/* everything the policy engine reads */
	static const char *const need[] = { "namespaces",
					    "pods",
					    "nodes",
					    "services",
					    "networkpolicies",
					    "adminnetworkpolicies",
					    "baselineadminnetworkpolicies",
					    "clusternetworkpolicies" };
	for (size_t n = 0; n < sizeof(need) / sizeof(need[0]); n++) {
		bool found = false;
		json_array_foreach(json_object_get(role, "rules"), i, r)
			json_array_foreach(json_object_get(r, "resources"), k, v)
				found |= !strcmp(json_string_value(v), need[n]);
		if (!found)
			fail_msg("ClusterRole moatd does not allow reading %s", need[n]);
	}
	json_decref(docs);
}

static void test_daemonset_least_privilege(void **state)
{
	json_t *docs = all_docs(), *ds = find(docs, "DaemonSet", "moatd"), *spec, *c, *v;
	size_t i;
	bool bpffs = false, drop_all = false;
	static const char *const allowed[] = { "BPF",     "NET_ADMIN",       "SYS_ADMIN",
					       "PERFMON", "DAC_READ_SEARCH", "SYS_RESOURCE" };

	(void)state;
	assert_non_null(ds);
	spec = json_object_get(json_object_get(json_object_get(ds, "spec"), "template"), "spec");
	assert_true(json_is_true(json_object_get(spec, "hostNetwork")));
	assert_string_equal(json_string_value(json_object_get(spec, "serviceAccountName")), "moatd");
	c = json_array_get(json_object_get(spec, "containers"), 0);
	assert_false(json_is_true(json_object_get(json_object_get(c, "securityContext"), "privileged")));
	json_array_foreach(
		json_object_get(json_object_get(json_object_get(c, "securityContext"), "capabilities"),
				"drop"),
		i, v) drop_all |= !strcmp(json_string_value(v), "ALL");
	assert_true(drop_all);
	json_array_foreach(
		json_object_get(json_object_get(json_object_get(c, "securityContext"), "capabilities"),
				"add"),
		i, v)
	{
		bool ok = false;
		for (size_t k = 0; k < sizeof(allowed) / sizeof(allowed[0]); k++)
			ok |= !strcmp(json_string_value(v), allowed[k]);
		if (!ok)
			fail_msg("DaemonSet adds capability %s", json_string_value(v));
	}
	json_array_foreach(json_object_get(c, "volumeMounts"), i, v)
		bpffs |= !strcmp(json_string_value(json_object_get(v, "mountPath")), "/sys/fs/bpf");
	assert_true(bpffs);
	json_decref(docs);
}

static void load_config_text(const char *text)
{
	char path[] = "/tmp/moat-test-config-XXXXXX";
	int fd = mkstemp(path);
	struct moatd_config c;
	char err[512];
	FILE *f;

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	moatd_config_defaults(&c);
	if (moatd_config_load(path, &c, false, err, sizeof(err)))
		fail_msg("config: %s", err);
	unlink(path);
	/* both record flows and packets: the flight recorder is the point */
	assert_non_null(c.archive_dir);
	assert_string_equal(c.archive_dir, "/var/lib/moat/archive");
	moatd_config_free(&c);
}

static void test_embedded_configs_load(void **state)
{
	json_t *docs = all_docs(), *cm = find(docs, "ConfigMap", "moatd-config");
	FILE *f;
	char buf[8192];
	size_t n;

	(void)state;
	assert_non_null(cm);
	load_config_text(json_string_value(json_object_get(json_object_get(cm, "data"), "moatd.yaml")));
	f = fopen("deploy/systemd/moatd.yaml", "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	load_config_text(buf);
	json_decref(docs);
}

static void test_config_rejects_typos(void **state)
{
	char path[] = "/tmp/moat-test-config-XXXXXX";
	int fd = mkstemp(path);
	struct moatd_config c;
	char err[512];

	(void)state;
	assert_true(write(fd, "logLevle: debug\n", 16) == 16);
	close(fd);
	moatd_config_defaults(&c);
	assert_int_not_equal(moatd_config_load(path, &c, false, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "logLevle: unknown setting"));
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(write(fd, "conntrack: {otherSeconds: -1}\n", 30) == 30);
	close(fd);
	assert_int_not_equal(moatd_config_load(path, &c, false, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "conntrack.otherSeconds"));
	unlink(path);
}

/* The CRD serves what the decoder reads: moat.io/v1alpha1 Blueprint, and
 * moatd's role may list and watch it. */
static void test_blueprint_crd_matches_decoder(void **state)
{
	json_t *docs = all_docs(), *crd = find(docs, "CustomResourceDefinition", "blueprints.moat.io");
	json_t *spec, *v, *role = find(docs, "ClusterRole", "moatd"), *r;
	size_t i;
	bool watch = false;

	(void)state;
	assert_non_null(crd);
	spec = json_object_get(crd, "spec");
	assert_string_equal(json_string_value(json_object_get(spec, "group")), "moat.io");
	assert_string_equal(json_string_value(json_object_get(spec, "scope")), "Cluster");
	assert_string_equal(json_string_value(json_object_get(json_object_get(spec, "names"), "kind")),
			    "Blueprint");
	v = json_array_get(json_object_get(spec, "versions"), 0);
	assert_string_equal(json_string_value(json_object_get(v, "name")), "v1alpha1");
	assert_true(json_is_true(json_object_get(v, "served")));
	json_array_foreach(json_object_get(role, "rules"), i, r)
	{
		char *s = json_dumps(r, JSON_COMPACT);
		watch |= strstr(s, "\"moat.io\"") && strstr(s, "\"blueprints\"") && strstr(s, "\"watch\"");
		free(s);
	}
	assert_true(watch);
	json_decref(docs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_document_is_an_object_with_identity),
		cmocka_unit_test(test_cluster_role_is_read_only),
		cmocka_unit_test(test_blueprint_crd_matches_decoder),
		cmocka_unit_test(test_daemonset_least_privilege),
		cmocka_unit_test(test_embedded_configs_load),
		cmocka_unit_test(test_config_rejects_typos),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
