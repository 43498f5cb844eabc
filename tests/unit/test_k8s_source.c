// SPDX-License-Identifier: Apache-2.0
/* moatd's Kubernetes mode without a datapath: the k8s client's changes into
 * a real compiler (k8s_source.c) and control-API roles from TokenReview and
 * SubjectAccessReview (auth_k8s.c), against tests/tools/fakeauthz.py (the
 * fake API server with the review APIs) on 127.0.0.1.  Skipped when python3
 * or openssl is missing. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "auth.h"
#include "compile.h"
#include "daemon.h"
#include "k8s_source.h"
#include "util.h"

static char dir[] = "/tmp/moat-k8s-src-XXXXXX";
static pid_t server = -1;
static FILE *server_out;
static int api_port, ctl_port;
static char kubeconfig[300];
static char errors[64][640];
static size_t nerrors;

static void collect(void *arg, const char *msg)
{
	(void)arg;
	snprintf(errors[nerrors % 64], sizeof(errors[0]), "%s", msg);
	nerrors++;
}

static size_t sink(char *p, size_t s, size_t n, void *a)
{
	(void)p;
	(void)a;
	return s * n;
}

static long ctl(const char *op, const char *body)
{
	CURL *h = curl_easy_init();
	char url[128];
	long code = 0;
	struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s", ctl_port, op);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "{}");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(hd);
	curl_easy_cleanup(h);
	return code;
}

static int start_server(void **state)
{
	char cmd[512], line[128];
	int pfd[2], keep[2];
	FILE *f;

	(void)state;
	if (system("command -v python3 >/dev/null && command -v openssl >/dev/null"))
		return -1;
	if (!mkdtemp(dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "python3 tests/tools/fakeapi.py gen-certs %s/certs", dir);
	if (system(cmd))
		return -1;
	if (pipe(pfd) || pipe(keep))
		return -1;
	server = fork();
	if (server == 0) {
		char certs[300];
		snprintf(certs, sizeof(certs), "%s/certs", dir);
		dup2(pfd[1], 1);
		dup2(keep[0], 0); /* open while this test runs */
		close(pfd[0]);
		close(keep[1]);
		execlp("python3", "python3", "tests/tools/fakeauthz.py", "serve", "--certs", certs, "--token",
		       "moatd-unit-token", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	close(keep[0]);
	f = fdopen(pfd[0], "r");
	if (!f || !fgets(line, sizeof(line), f) || sscanf(line, "READY %d %d", &api_port, &ctl_port) != 2) {
		if (f)
			fclose(f);
		return -1;
	}
	server_out = f; /* the server's stdout stays open until stop_server */
	snprintf(kubeconfig, sizeof(kubeconfig), "%s/kubeconfig", dir);
	f = fopen(kubeconfig, "w");
	if (!f)
		return -1;
	fprintf(f,
		"apiVersion: v1\nkind: Config\ncurrent-context: t\n"
		"clusters: [{name: t, cluster: {server: \"https://127.0.0.1:%d\", "
		"certificate-authority: certs/ca.crt}}]\n"
		"users: [{name: u, user: {token: moatd-unit-token}}]\n"
		"contexts: [{name: t, context: {cluster: t, user: u}}]\n",
		api_port);
	fclose(f);
	return 0;
}

static int stop_server(void **state)
{
	char cmd[300];

	(void)state;
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
	}
	if (server_out)
		fclose(server_out);
	server_out = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) ? -1 : 0;
}

struct world {
	struct moatd d;
	struct moat_k8s_source *src;
};

static void world_start(struct world *w)
{
	struct moat_compiler_opts co = { .node = "n1" };
	struct moat_k8s_opts ko = {
		.kubeconfig = kubeconfig, .watch_timeout_s = 5, .backoff_max_ms = 300, .idle_timeout_ms = 3000
	};
	char err[512];

	memset(w, 0, sizeof(*w));
	assert_int_equal(moat_compiler_new(&co, &w->d.comp), 0);
	if (moat_k8s_source_start(&ko, &w->src, err, sizeof(err)))
		fail_msg("%s", err);
}

static void world_stop(struct world *w)
{
	moat_k8s_source_stop(w->src);
	moat_compiler_free(w->d.comp);
}

/* Drains changes until cond holds (or 15 s). */
static bool pump(struct world *w, bool (*cond)(struct world *, const void *), const void *arg)
{
	uint64_t end = moat_now_ns() + 15000000000ull;

	while (moat_now_ns() < end) {
		struct pollfd p = { .fd = moat_k8s_source_fd(w->src), .events = POLLIN };
		poll(&p, 1, 100);
		moat_k8s_source_drain(w->src, w->d.comp, collect, NULL);
		if (cond(w, arg))
			return true;
	}
	return false;
}

static int count_pol(const struct moat_policy_view *v, void *arg)
{
	json_t *a = arg;
	json_array_append_new(a, json_string(v->key));
	return 0;
}

static bool has_policy(struct world *w, const void *key)
{
	json_t *a = json_array(), *v;
	size_t i;
	bool found = false;

	moat_compiler_policies(w->d.comp, count_pol, a);
	json_array_foreach(a, i, v) found |= !strcmp(json_string_value(v), key);
	json_decref(a);
	return found;
}

static bool no_policy(struct world *w, const void *key)
{
	return !has_policy(w, key);
}

static bool ready(struct world *w, const void *arg)
{
	char why[256];

	(void)arg;
	return moat_k8s_source_ready(w->src, why, sizeof(why));
}

static bool error_seen(struct world *w, const void *needle)
{
	(void)w;
	for (size_t i = 0; i < nerrors && i < 64; i++)
		if (strstr(errors[i], needle))
			return true;
	return false;
}

static json_t *kind_status(struct world *w, const char *kind)
{
	json_t *st = moat_k8s_source_status(w->src, true), *kd, *r = NULL;
	size_t i;

	json_array_foreach(json_object_get(st, "kinds"), i,
			   kd) if (!strcmp(json_string_value(json_object_get(kd, "kind")), kind))
		r = json_incref(kd);
	json_decref(st);
	return r;
}

static bool relisted(struct world *w, const void *kind)
{
	json_t *k = kind_status(w, kind);
	bool r = json_integer_value(json_object_get(k, "relists")) >= 1;

	json_decref(k);
	return r;
}

static const char *np(const char *name, int port)
{
	static char b[600];

	snprintf(b, sizeof(b),
		 "{\"object\": {\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\","
		 "\"metadata\": {\"name\": \"%s\", \"namespace\": \"shop\"}, \"spec\": {\"podSelector\": {},"
		 "\"policyTypes\": [\"Ingress\"], \"ingress\": [{\"ports\": [{\"port\": %d}]}]}}}",
		 name, port);
	return b;
}

static void test_changes_reach_the_compiler(void **state)
{
	struct world w;
	json_t *st;
	char **names;
	size_t n;

	(void)state;
	assert_int_equal(
		ctl("put",
		    "{\"objects\": [{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", "
		    "\"metadata\": {\"name\": \"shop\"}}, {\"apiVersion\": \"v1\", \"kind\": \"Pod\", "
		    "\"metadata\": {\"name\": \"web\", \"namespace\": \"shop\", \"labels\": {\"app\": \"web\"}},"
		    "\"spec\": {\"nodeName\": \"n1\"}, \"status\": {\"podIP\": \"10.1.0.5\"}}]}"),
		200);
	assert_int_equal(ctl("put", np("a", 80)), 200);
	world_start(&w);
	assert_true(pump(&w, ready, NULL));
	assert_true(pump(&w, has_policy, "NetworkPolicy/shop/a"));
	n = moat_k8s_source_namespaces(w.src, &names);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "shop");
	free(names[0]);
	free(names);

	/* a bad version: reported with object and field, the last good stays */
	assert_int_equal(ctl("put", np("a", 70000)), 200);
	assert_true(pump(&w, error_seen, "NetworkPolicy shop/a: spec.ingress[0].ports[0].port: 70000"));
	assert_true(has_policy(&w, "NetworkPolicy/shop/a"));
	st = moat_k8s_source_status(w.src, true);
	assert_int_equal(json_array_size(json_object_get(st, "object_errors")), 1);
	json_decref(st);
	st = moat_k8s_source_status(w.src, false);
	assert_null(json_object_get(st, "object_errors")); /* names objects: admins only */
	json_decref(st);

	/* fixed, then deleted */
	assert_int_equal(ctl("put", np("a", 81)), 200);
	assert_int_equal(ctl("put", np("b", 82)), 200);
	assert_true(pump(&w, has_policy, "NetworkPolicy/shop/b"));
	st = moat_k8s_source_status(w.src, true);
	assert_int_equal(json_array_size(json_object_get(st, "object_errors")), 0);
	json_decref(st);
	assert_int_equal(ctl("delete",
			     "{\"kind\": \"NetworkPolicy\", \"namespace\": \"shop\", \"name\": \"a\"}"),
			 200);
	assert_true(pump(&w, no_policy, "NetworkPolicy/shop/a"));
	assert_true(has_policy(&w, "NetworkPolicy/shop/b"));

	/* away, deleted and compacted meanwhile: the relist deletes it */
	assert_int_equal(ctl("down", NULL), 200);
	assert_int_equal(ctl("delete",
			     "{\"kind\": \"NetworkPolicy\", \"namespace\": \"shop\", \"name\": \"b\"}"),
			 200);
	assert_int_equal(ctl("compact", NULL), 200);
	assert_int_equal(ctl("put", "{\"object\": {\"apiVersion\": \"v1\", \"kind\": \"Namespace\", "
				    "\"metadata\": {\"name\": \"later\"}}}"),
			 200);
	usleep(500000);
	assert_true(has_policy(&w, "NetworkPolicy/shop/b")); /* nothing deleted while away */
	assert_int_equal(ctl("up", NULL), 200);
	assert_true(pump(&w, no_policy, "NetworkPolicy/shop/b"));
	assert_true(pump(&w, relisted, "NetworkPolicy"));
	{
		json_t *k = kind_status(&w, "NetworkPolicy");
		assert_true(json_is_true(json_object_get(k, "connected")) ||
			    json_is_false(json_object_get(k, "connected")));
		json_decref(k);
	}
	{
		char *m = moat_k8s_source_metrics(w.src);
		assert_non_null(strstr(m, "moat_k8s_relists_total{resource=\"networkpolicies\"} "));
		assert_non_null(strstr(m, "moat_k8s_synced 1"));
		free(m);
	}
	world_stop(&w);
}

static void test_no_generation_without_required_kinds(void **state)
{
	struct world w;
	char why[256];

	(void)state;
	assert_int_equal(ctl("set", "{\"status\": {\"pods\": 403}}"), 200);
	world_start(&w);
	/* every kind answered (pods: forbidden), but pods were never listed */
	sleep(2);
	moat_k8s_source_drain(w.src, w.d.comp, collect, NULL);
	assert_false(moat_k8s_source_ready(w.src, why, sizeof(why)));
	assert_non_null(strstr(why, "Pod (required) has never been listed"));
	assert_int_equal(ctl("set", "{\"status\": {\"pods\": null}}"), 200);
	assert_true(pump(&w, ready, NULL));
	world_stop(&w);
}

static void test_roles_from_rbac(void **state)
{
	struct world w;
	struct moat_auth_k8s *a;
	struct moat_principal p;
	uint64_t rv0, sar0, hits0, rv1, sar1, hits1;
	char tok[64];

	(void)state;
	assert_int_equal(ctl("put", "{\"object\": {\"apiVersion\": \"v1\", \"kind\": \"Namespace\", "
				    "\"metadata\": {\"name\": \"other\"}}}"),
			 200);
	assert_int_equal(
		ctl("authz",
		    "{\"users\": {\"t-alice\": {\"username\": \"alice\"}, \"t-erin\": {\"username\": \"alice\"}, \"t-bob\": {\"username\": \"bob\"},"
		    " \"t-carol\": {\"username\": \"carol\", \"groups\": [\"g\"]}, \"t-dave\": {\"username\": \"dave\"}},"
		    " \"rules\": [{\"user\": \"alice\", \"verbs\": [\"admin\"], \"apiGroups\": [\"moat.io\"], \"resources\": [\"flows\"]},"
		    " {\"user\": \"bob\", \"namespace\": \"shop\", \"verbs\": [\"get\"], \"apiGroups\": [\"moat.io\"], \"resources\": [\"flows\"]},"
		    " {\"group\": \"g\", \"verbs\": [\"get\"], \"apiGroups\": [\"moat.io\"], \"resources\": [\"flows\"]},"
		    " {\"group\": \"g\", \"namespace\": \"shop\", \"verbs\": [\"update\"], \"apiGroups\": [\"networking.k8s.io\"], \"resources\": [\"networkpolicies\"]}]}"),
		200);
	world_start(&w);
	assert_true(pump(&w, ready, NULL));
	a = moat_auth_k8s_new(w.src, 8);

	assert_int_equal(moat_auth_k8s_check(a, "t-alice", &p), 0);
	assert_int_equal(p.role, MOAT_ROLE_PLATFORM_ADMIN);
	assert_string_equal(p.user, "alice");
	moat_principal_clear(&p);

	assert_int_equal(moat_auth_k8s_check(a, "t-bob", &p), 0);
	assert_int_equal(p.role, MOAT_ROLE_VIEWER);
	assert_int_equal(p.nns, 1);
	assert_string_equal(p.ns[0], "shop");
	assert_true(moat_principal_sees(&p, "shop"));
	assert_false(moat_principal_sees(&p, "other"));
	assert_false(moat_principal_may_change(&p, "shop"));
	moat_principal_clear(&p);

	/* carol: viewer everywhere (group, cluster-wide), admin of shop */
	assert_int_equal(moat_auth_k8s_check(a, "t-carol", &p), 0);
	assert_int_equal(p.role, MOAT_ROLE_NS_ADMIN);
	assert_true(moat_principal_sees(&p, "other"));
	assert_true(moat_principal_may_change(&p, "shop"));
	assert_false(moat_principal_may_change(&p, "other"));
	moat_principal_clear(&p);

	assert_int_equal(moat_auth_k8s_check(a, "t-dave", &p), -EPERM);
	assert_int_equal(moat_auth_k8s_check(a, "t-nobody", &p), -EACCES);

	/* cached: no more questions */
	moat_auth_k8s_stats(a, &rv0, &sar0, &hits0);
	assert_int_equal(moat_auth_k8s_check(a, "t-bob", &p), 0);
	moat_principal_clear(&p);
	assert_int_equal(moat_auth_k8s_check(a, "t-nobody", &p), -EACCES);
	moat_auth_k8s_stats(a, &rv1, &sar1, &hits1);
	assert_int_equal(rv1, rv0);
	assert_int_equal(sar1, sar0);
	assert_int_equal(hits1, hits0 + 2);

	/* bounded (8 here): twelve more tokens push the oldest denials out */
	for (int i = 0; i < 12; i++) {
		snprintf(tok, sizeof(tok), "t-unknown-%d", i);
		assert_int_equal(moat_auth_k8s_check(a, tok, &p), -EACCES);
	}
	moat_auth_k8s_stats(a, &rv0, &sar0, &hits0);
	assert_int_equal(moat_auth_k8s_check(a, "t-unknown-0", &p), -EACCES);
	moat_auth_k8s_stats(a, &rv1, &sar1, &hits1);
	assert_int_equal(rv1, rv0 + 1);
	/* what expires first goes first: the positive answers are still cached */
	assert_int_equal(moat_auth_k8s_check(a, "t-bob", &p), 0);
	moat_principal_clear(&p);
	moat_auth_k8s_stats(a, &rv0, &sar0, &hits0);
	assert_int_equal(rv0, rv1);

	/* the API server away: cached answers stand, new ones cannot be had */
	assert_int_equal(ctl("down", NULL), 200);
	assert_int_equal(moat_auth_k8s_check(a, "t-bob", &p), 0);
	moat_principal_clear(&p);
	assert_int_equal(moat_auth_k8s_check(a, "t-erin", &p), -EAGAIN);
	assert_int_equal(ctl("up", NULL), 200);
	assert_int_equal(moat_auth_k8s_check(a, "t-erin", &p), 0);
	assert_int_equal(p.role, MOAT_ROLE_PLATFORM_ADMIN);
	moat_principal_clear(&p);

	moat_auth_k8s_free(a);
	world_stop(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_changes_reach_the_compiler),
		cmocka_unit_test(test_no_generation_without_required_kinds),
		cmocka_unit_test(test_roles_from_rbac),
	};

	return cmocka_run_group_tests(tests, start_server, stop_server);
}
