// SPDX-License-Identifier: Apache-2.0
/* The Kubernetes API source against a fake API server (tests/tools/fakeapi.py,
 * HTTPS with a CA made here by openssl): paginated lists, watches with
 * bookmarks, resume after dropped streams, 410 relists and the deletions they
 * find, nothing deleted while the server is away, garbage/malformed/hanging
 * streams, 403/404 kinds, bounds, tokens (rotating), client certificates,
 * kubeconfig and in-cluster configuration. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <curl/curl.h>
#include <cmocka.h>

#include "k8s.h"
#include "decode.h"
#include "model.h"
#include "util.h"

#define FAKEAPI "tests/tools/fakeapi.py"
#define WAIT_MS 15000

static char certs[300]; /* made once by the group setup */
static char tmpdir[256];

/* ---- the fake server ---------------------------------------------------------------------------- */

struct fake {
	pid_t pid;
	int in; /* its stdin: closing it stops it */
	int api, ctl;
};

static void fake_start(struct fake *f, const char *const *extra)
{
	int pin[2], pout[2];
	const char *argv[32] = { "python3", FAKEAPI, "serve", "--certs", certs, "--exit-on-stdin-eof" };
	size_t n = 6;
	char line[128] = "";
	size_t got = 0;

	for (size_t i = 0; extra && extra[i] && n < 30; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
	assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
	f->pid = fork();
	assert_true(f->pid >= 0);
	if (!f->pid) {
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		execvp("python3", (char *const *)argv);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	f->in = pin[1];
	while (got < sizeof(line) - 1 && !strchr(line, '\n')) {
		struct pollfd p = { .fd = pout[0], .events = POLLIN };
		ssize_t r;
		if (poll(&p, 1, 20000) != 1)
			break;
		r = read(pout[0], line + got, sizeof(line) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		line[got] = 0;
	}
	close(pout[0]);
	if (sscanf(line, "READY %d %d", &f->api, &f->ctl) != 2) {
		print_error("fakeapi did not start: \"%s\"\n", line);
		fail();
	}
}

static void fake_stop(struct fake *f)
{
	close(f->in);
	kill(f->pid, SIGTERM);
	waitpid(f->pid, NULL, 0);
}

static size_t grow(char *p, size_t sz, size_t n, void *ud)
{
	char **b = ud;
	size_t l = *b ? strlen(*b) : 0;

	*b = xrealloc(*b, l + sz * n + 1);
	memcpy(*b + l, p, sz * n);
	(*b)[l + sz * n] = 0;
	return sz * n;
}

/* Control request: POST body (or GET when NULL); the JSON answer. */
static json_t *ctl(struct fake *f, const char *path, json_t *body)
{
	CURL *h = curl_easy_init();
	char url[256], *resp = NULL, *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
	long code = 0;
	json_t *j;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->ctl, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, grow);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
	if (b)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, b);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(h);
	/* cppcheck-suppress knownConditionTrueFalse ; grow() sets resp through CURLOPT_WRITEDATA */
	j = resp ? json_loads(resp, 0, NULL) : NULL;
	if (code != 200) {
		/* cppcheck-suppress knownConditionTrueFalse ; as above */
		print_error("control %s: %ld %s\n", path, code, resp ? resp : "");
		fail();
	}
	free(resp);
	free(b);
	json_decref(body);
	return j;
}

static void ctl0(struct fake *f, const char *path, json_t *body)
{
	json_decref(ctl(f, path, body));
}

static long put(struct fake *f, json_t *obj)
{
	json_t *r = ctl(f, "/put", json_pack("{s:o}", "object", obj));
	long rv = atol(json_string_value(json_object_get(r, "rv")));

	json_decref(r);
	return rv;
}

static long del(struct fake *f, const char *kind, const char *ns, const char *name)
{
	json_t *r =
		ctl(f, "/delete", json_pack("{s:s,s:s?,s:s}", "kind", kind, "namespace", ns, "name", name));
	long rv = atol(json_string_value(json_object_get(r, "rv")));

	json_decref(r);
	return rv;
}

static json_t *ns_obj(const char *name)
{
	return json_pack("{s:s,s:{s:s,s:{s:s}}}", "kind", "Namespace", "metadata", "name", name, "labels",
			 "kubernetes.io/metadata.name", name);
}

static json_t *pod_obj(const char *ns, const char *name, const char *ip)
{
	return json_pack("{s:s,s:{s:s,s:s,s:{s:s}},s:{s:s},s:{s:s,s:s}}", "kind", "Pod", "metadata", "name",
			 name, "namespace", ns, "labels", "app", name, "spec", "nodeName", "node-1", "status",
			 "phase", "Running", "podIP", ip);
}

static void fault(struct fake *f, const char *res, const char *what)
{
	ctl0(f, "/fault", json_pack("{s:s,s:s}", "resource", res, "fault", what));
}

/* ---- the client ------------------------------------------------------------------------------- */

struct rec {
	struct ptrvec ev; /* "U key rv" | "D key" | "S" */
	struct ptrvec err;
	int synced;
};

static void on_event(void *arg, const struct moat_k8s_event *e)
{
	struct rec *r = arg;
	const char *rv;

	switch (e->type) {
	case MOAT_K8S_UPSERT:
		assert_non_null(e->obj);
		assert_string_equal(json_string_value(json_object_get(e->obj, "kind")), e->kind);
		assert_non_null(json_object_get(e->obj, "apiVersion"));
		rv = json_string_value(
			json_object_get(json_object_get(e->obj, "metadata"), "resourceVersion"));
		ptrvec_push(&r->ev, xasprintf("U %s %s", e->key, rv));
		break;
	case MOAT_K8S_DELETE:
		ptrvec_push(&r->ev, xasprintf("D %s", e->key));
		break;
	case MOAT_K8S_SYNCED:
		r->synced++;
		ptrvec_push(&r->ev, xstrdup("S"));
		break;
	case MOAT_K8S_ERROR:
		assert_non_null(e->msg);
		ptrvec_push(&r->err, xstrdup(e->msg));
		break;
	}
}

static void rec_free(struct rec *r)
{
	for (size_t i = 0; i < r->ev.n; i++)
		free(r->ev.v[i]);
	for (size_t i = 0; i < r->err.n; i++)
		free(r->err.v[i]);
	ptrvec_free(&r->ev);
	ptrvec_free(&r->err);
	memset(r, 0, sizeof(*r));
}

static void rec_clear(struct rec *r)
{
	int s = r->synced;

	rec_free(r);
	r->synced = s;
}

static void pump(struct moat_k8s *k, struct rec *r, int ms)
{
	struct pollfd p = { .fd = moat_k8s_fd(k), .events = POLLIN };

	if (poll(&p, 1, ms) > 0)
		moat_k8s_drain(k, on_event, r);
}

static bool has_err(struct rec *r, const char *sub)
{
	for (size_t i = 0; i < r->err.n; i++)
		if (strstr(r->err.v[i], sub))
			return true;
	return false;
}

static void dump(struct rec *r)
{
	for (size_t i = 0; i < r->ev.n; i++)
		print_message("  event %s\n", (char *)r->ev.v[i]);
	for (size_t i = 0; i < r->err.n; i++)
		print_message("  error %s\n", (char *)r->err.v[i]);
}

/* Pumps until n events are recorded. */
static void wait_events(struct moat_k8s *k, struct rec *r, size_t n)
{
	uint64_t end = moat_now_ns() + (uint64_t)WAIT_MS * 1000000;

	while (r->ev.n < n && moat_now_ns() < end)
		pump(k, r, 50);
	if (r->ev.n < n) {
		print_error("waited for %zu events, have %zu\n", n, r->ev.n);
		dump(r);
		fail();
	}
}

static void wait_err(struct moat_k8s *k, struct rec *r, const char *sub)
{
	uint64_t end = moat_now_ns() + (uint64_t)WAIT_MS * 1000000;

	while (!has_err(r, sub) && moat_now_ns() < end)
		pump(k, r, 50);
	if (!has_err(r, sub)) {
		print_error("waited for an error with \"%s\"\n", sub);
		dump(r);
		fail();
	}
}

static void wait_synced(struct moat_k8s *k, struct rec *r)
{
	uint64_t end = moat_now_ns() + (uint64_t)WAIT_MS * 1000000;

	while (!r->synced && moat_now_ns() < end)
		pump(k, r, 50);
	if (!r->synced) {
		print_error("never synced\n");
		dump(r);
		fail();
	}
}

/* Pumps for ms, collecting whatever comes. */
static void settle(struct moat_k8s *k, struct rec *r, int ms)
{
	uint64_t end = moat_now_ns() + (uint64_t)ms * 1000000;

	while (moat_now_ns() < end)
		pump(k, r, 20);
}

/* The recorded events from index from, exactly. */
static void expect_seq(struct rec *r, size_t from, const char *const *want)
{
	size_t n = 0;
	bool ok;

	while (want[n])
		n++;
	ok = r->ev.n - from == n;
	for (size_t i = 0; ok && i < n; i++)
		ok = !strcmp(r->ev.v[from + i], want[i]);
	if (!ok) {
		print_error("event sequence differs; want:\n");
		for (size_t i = 0; i < n; i++)
			print_error("  %s\n", want[i]);
		print_error("got:\n");
		for (size_t i = from; i < r->ev.n; i++)
			print_error("  %s\n", (char *)r->ev.v[i]);
		dump(r);
		fail();
	}
}

/* The value of one kind's status field. */
static json_t *kstatus(struct moat_k8s *k, const char *kind, const char *field)
{
	json_t *st = moat_k8s_status(k), *a = json_object_get(st, "kinds"), *e, *v = NULL;
	size_t i;

	json_array_foreach(a, i, e) if (!strcmp(json_string_value(json_object_get(e, "kind")), kind))
		v = json_incref(json_object_get(e, field));
	json_decref(st);
	return v;
}

static json_int_t kint(struct moat_k8s *k, const char *kind, const char *field)
{
	json_t *v = kstatus(k, kind, field);
	json_int_t n = json_integer_value(v);

	json_decref(v);
	return n;
}

static bool kstate_is(struct moat_k8s *k, const char *kind, const char *state)
{
	json_t *v = kstatus(k, kind, "state");
	bool r = v && !strcmp(json_string_value(v), state);

	json_decref(v);
	return r;
}

static const struct moat_k8s_kind K_NS_POD[] = {
	{ "Namespace", "", "v1", "namespaces", false },
	{ "Pod", "", "v1", "pods", true },
};
static const struct moat_k8s_kind K_POD[] = { { "Pod", "", "v1", "pods", true } };

static struct moat_k8s_conf conf_for(struct fake *f)
{
	static char server[64], ca[PATH_MAX];
	struct moat_k8s_conf c = { 0 };

	snprintf(server, sizeof(server), "https://127.0.0.1:%d", f->api);
	snprintf(ca, sizeof(ca), "%s/ca.crt", certs);
	c.server = server;
	c.ca_file = ca;
	return c;
}

/* Fast settings for tests: small pages, short watches, quick backoff. */
static struct moat_k8s_opts fast_opts(const struct moat_k8s_conf *c, const struct moat_k8s_kind *kinds,
				      size_t n)
{
	struct moat_k8s_opts o = { .conf = c, .kinds = kinds, .nkinds = n };

	o.page_size = 3;
	o.watch_timeout_s = 30;
	o.idle_timeout_ms = 1500;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 400;
	o.connect_timeout_ms = 2000;
	o.request_timeout_ms = 5000;
	return o;
}

static struct moat_k8s *start(const struct moat_k8s_opts *o)
{
	struct moat_k8s *k = NULL;
	char err[512] = "";
	int rc = moat_k8s_start(o, &k, err, sizeof(err));

	if (rc) {
		print_error("moat_k8s_start: %d %s\n", rc, err);
		fail();
	}
	return k;
}

/* Watch requests of a resource in the log, oldest first. */
static size_t watch_requests(struct fake *f, const char *resource, json_t **out)
{
	json_t *log = ctl(f, "/requests", NULL), *e, *a = json_array();
	size_t i;

	json_array_foreach(log, i, e)
	{
		const char *p = json_string_value(json_object_get(e, "path"));
		json_t *q = json_object_get(e, "query");
		size_t pl = strlen(p), rl = strlen(resource);
		if (pl >= rl && !strcmp(p + pl - rl, resource) && json_object_get(q, "watch"))
			json_array_append(a, e);
	}
	json_decref(log);
	*out = a;
	return json_array_size(a);
}

static const char *last_watch_rv(struct fake *f, const char *resource, char *buf, size_t len)
{
	json_t *a;
	size_t n = watch_requests(f, resource, &a);

	snprintf(buf, len, "%s",
		 n ? json_string_value(json_object_get(json_object_get(json_array_get(a, n - 1), "query"),
						       "resourceVersion")) :
		     "");
	json_decref(a);
	return buf;
}

/* ---- tests ------------------------------------------------------------------------------------ */

static const char *conformance_dir(void)
{
	static const char *const c[] = { "../shared/conformance", "/work/shared/conformance" };
	const char *e = getenv("MOAT_CONFORMANCE_DIR");
	struct stat st;

	if (e)
		return e;
	for (size_t i = 0; i < 2; i++)
		if (!stat(c[i], &st))
			return c[i];
	return NULL;
}

/* Every kind, the conformance corpus' real objects, pages of 3: each object
 * comes exactly once, decodes with moat_decode to the same key, SYNCED comes
 * after all of them even though blueprints are not installed (404). */
static void test_initial_list(void **state)
{
	const char *cd = conformance_dir();
	const char *extra[] = { "--conformance", cd, NULL };
	struct fake f;
	struct rec r = { 0 };
	struct moat_k8s_conf c;
	struct moat_k8s_opts o;
	struct moat_k8s *k;
	json_t *st, *objs, *keys, *log, *e;
	struct hmap seen;
	size_t total = 0, i, nlimit = 0, ncont = 0;
	const char *res;

	(void)state;
	if (!cd) {
		print_message("conformance corpus not found (MOAT_CONFORMANCE_DIR); skipped\n");
		skip();
	}
	fake_start(&f, extra);
	c = conf_for(&f);
	o = fast_opts(&c, NULL, 0);
	k = start(&o);
	wait_synced(k, &r);
	assert_int_equal(r.synced, 1);
	assert_string_equal(r.ev.v[r.ev.n - 1], "S");

	hmap_init(&seen);
	for (i = 0; i + 1 < r.ev.n; i++) {
		char *ev = r.ev.v[i], *key = ev + 2, *sp = strchr(key, ' ');
		assert_true(ev[0] == 'U');
		assert_null(hmap_get(&seen, key, (size_t)(sp - key))); /* once */
		hmap_put(&seen, key, (size_t)(sp - key), ev, NULL);
	}
	/* exactly the server's objects */
	st = ctl(&f, "/state", NULL);
	objs = json_object_get(st, "objects");
	json_object_foreach(objs, res, keys)
	{
		json_t *kv;
		const char *kind = NULL;
		for (size_t j = 0; j < moat_k8s_nkinds; j++)
			if (!strcmp(moat_k8s_kinds[j].resource, res))
				kind = moat_k8s_kinds[j].kind;
		assert_non_null(kind);
		json_array_foreach(keys, i, kv)
		{
			char *key = xasprintf("%s/%s", kind, json_string_value(kv));
			if (!hmap_gets(&seen, key)) {
				print_error("%s not delivered\n", key);
				fail();
			}
			free(key);
			total++;
		}
	}
	assert_int_equal(total, seen.n);
	assert_true(total > 50);
	json_decref(st);
	hmap_free(&seen);

	/* lists were paginated */
	log = ctl(&f, "/requests", NULL);
	json_array_foreach(log, i, e)
	{
		json_t *q = json_object_get(e, "query");
		if (json_object_get(q, "limit")) {
			assert_string_equal(json_string_value(json_object_get(q, "limit")), "3");
			nlimit++;
		}
		ncont += json_object_get(q, "continue") != NULL;
	}
	assert_true(ncont > 10);
	assert_true(nlimit > ncont);
	json_decref(log);

	assert_true(has_err(&r, "Blueprint (moat.io/v1alpha1 blueprints): list: the server has no resource"));
	assert_true(kstate_is(k, "Blueprint", "not-found"));
	for (size_t j = 0; j + 1 < moat_k8s_nkinds; j++) {
		uint64_t end = moat_now_ns() + 5000000000ull;
		while (!kstate_is(k, moat_k8s_kinds[j].kind, "watching") && moat_now_ns() < end)
			pump(k, &r, 50);
		assert_true(kstate_is(k, moat_k8s_kinds[j].kind, "watching"));
	}
	assert_int_equal(kint(k, "Pod", "objects"), 9);
	assert_int_equal(kint(k, "Pod", "lists"), 1);
	moat_k8s_stop(k);
	rec_free(&r);
	fake_stop(&f);
}

/* The same objects, decoded the way moatd will: each decodes, to the key the
 * client gave. */
static struct ptrvec decode_errs;
static void on_decode(void *arg, const struct moat_k8s_event *e)
{
	struct moat_object *o = NULL;
	char err[512];
	int *n = arg;

	if (e->type != MOAT_K8S_UPSERT)
		return;
	if (moat_decode(e->obj, "api", &o, err, sizeof(err)) || !o) {
		ptrvec_push(&decode_errs, xasprintf("%s: %s", e->key, o ? err : err[0] ? err : "skipped"));
	} else {
		char *key = moat_object_key(o);
		assert_string_equal(key, e->key);
		free(key);
		(*n)++;
	}
	moat_object_free(o);
}

static void test_objects_decode(void **state)
{
	const char *cd = conformance_dir();
	const char *extra[] = { "--conformance", cd, NULL };
	struct fake f;
	struct moat_k8s_conf c;
	struct moat_k8s_opts o;
	struct moat_k8s *k;
	uint64_t end;
	int n = 0;

	(void)state;
	if (!cd)
		skip();
	fake_start(&f, extra);
	c = conf_for(&f);
	o = fast_opts(&c, NULL, 0);
	o.page_size = 500;
	k = start(&o);
	end = moat_now_ns() + (uint64_t)WAIT_MS * 1000000;
	while (!moat_k8s_synced(k) && moat_now_ns() < end) {
		struct pollfd p = { .fd = moat_k8s_fd(k), .events = POLLIN };
		if (poll(&p, 1, 50) > 0)
			moat_k8s_drain(k, on_decode, &n);
	}
	moat_k8s_drain(k, on_decode, &n);
	for (size_t i = 0; i < decode_errs.n; i++) {
		print_error("decode: %s\n", (char *)decode_errs.v[i]);
		free(decode_errs.v[i]);
	}
	assert_int_equal(decode_errs.n, 0);
	ptrvec_free(&decode_errs);
	assert_true(n > 50);
	moat_k8s_stop(k);
	fake_stop(&f);
}

/* Adds, updates, deletes in order; bookmarks move the resourceVersion and a
 * watch that ends (timeoutSeconds) resumes from it without a list. */
static void test_watch_sequence(void **state)
{
	struct fake f;
	struct rec r = { 0 };
	struct moat_k8s_conf c;
	struct moat_k8s_opts o;
	struct moat_k8s *k;
	long rv1, rv2, rv3, rv4, rvn;
	char buf[64], w1[32], w2[32], w3[32], w4[32];
	uint64_t end;
	json_t *a;
	size_t nw;

	(void)state;
	fake_start(&f, NULL);
	put(&f, ns_obj("x"));
	c = conf_for(&f);
	o = fast_opts(&c, K_POD, 1);
	o.watch_timeout_s = 2;
	k = start(&o);
	wait_synced(k, &r);
	expect_seq(&r, 0, (const char *const[]){ "S", NULL });

	rv1 = put(&f, pod_obj("x", "p1", "10.0.0.1"));
	rv2 = put(&f, pod_obj("x", "p2", "10.0.0.2"));
	rv3 = put(&f, pod_obj("x", "p1", "10.0.0.3")); /* modified */
	rv4 = del(&f, "Pod", "x", "p2");
	snprintf(w1, sizeof(w1), "U Pod/x/p1 %ld", rv1);
	snprintf(w2, sizeof(w2), "U Pod/x/p2 %ld", rv2);
	snprintf(w3, sizeof(w3), "U Pod/x/p1 %ld", rv3);
	snprintf(w4, sizeof(w4), "D Pod/x/p2");
	wait_events(k, &r, 5);
	settle(k, &r, 200);
	expect_seq(&r, 1, (const char *const[]){ w1, w2, w3, w4, NULL });
	snprintf(buf, sizeof(buf), "%ld", rv4);
	{
		json_t *v = kstatus(k, "Pod", "resourceVersion");
		assert_string_equal(json_string_value(v), buf);
		json_decref(v);
	}

	/* a namespace changes: only a bookmark tells the pod watch */
	ctl0(&f, "/set", json_pack("{s:f}", "bookmark_interval", 0.2));
	rvn = put(&f, ns_obj("y"));
	snprintf(buf, sizeof(buf), "%ld", rvn);
	end = moat_now_ns() + 5000000000ull;
	for (;;) {
		json_t *v = kstatus(k, "Pod", "resourceVersion");
		bool ok = !strcmp(json_string_value(v), buf);
		json_decref(v);
		if (ok || moat_now_ns() > end)
			break;
		pump(k, &r, 50);
	}
	{
		json_t *v = kstatus(k, "Pod", "resourceVersion");
		assert_string_equal(json_string_value(v), buf);
		json_decref(v);
	}
	/* the watch times out after 2 s and comes back from the bookmark */
	nw = watch_requests(&f, "/pods", &a);
	json_decref(a);
	end = moat_now_ns() + 6000000000ull;
	while (moat_now_ns() < end) {
		json_t *b;
		if (watch_requests(&f, "/pods", &b) > nw) {
			json_decref(b);
			break;
		}
		json_decref(b);
		pump(k, &r, 100);
	}
	assert_string_equal(last_watch_rv(&f, "/pods", w1, sizeof(w1)), buf);
	watch_requests(&f, "/pods", &a);
	{
		json_t *q = json_object_get(json_array_get(a, json_array_size(a) - 1), "query");
		assert_string_equal(json_string_value(json_object_get(q, "allowWatchBookmarks")), "true");
		assert_string_equal(json_string_value(json_object_get(q, "timeoutSeconds")), "2");
	}
	json_decref(a);
	/* bookmarks and re-watching are no events, and no list */
	assert_int_equal(r.ev.n, 5);
	assert_int_equal(kint(k, "Pod", "lists"), 1);
	assert_int_equal(kint(k, "Pod", "relists"), 0);
	assert_int_equal(r.err.n, 0);
	moat_k8s_stop(k);
	rec_free(&r);
	fake_stop(&f);
}

/* A fixture used by several tests: server with namespace x and pods p1..p3,
 * client on pods only, synced. */
struct fx {
	struct fake f;
	struct rec r;
	struct moat_k8s_conf c;
	struct moat_k8s_opts o;
	struct moat_k8s *k;
	long rv[4];
};

static void fx_up(struct fx *x, const char *const *extra, void (*tune)(struct moat_k8s_opts *))
{
	memset(x, 0, sizeof(*x));
	fake_start(&x->f, extra);
	put(&x->f, ns_obj("x"));
	x->rv[1] = put(&x->f, pod_obj("x", "p1", "10.0.0.1"));
	x->rv[2] = put(&x->f, pod_obj("x", "p2", "10.0.0.2"));
	x->rv[3] = put(&x->f, pod_obj("x", "p3", "10.0.0.3"));
	x->c = conf_for(&x->f);
	x->o = fast_opts(&x->c, K_POD, 1);
	if (tune)
		tune(&x->o);
	x->k = start(&x->o);
	wait_synced(x->k, &x->r);
	assert_int_equal(x->r.ev.n, 4);
	/* wait for the watch to be in place at the server */
	for (uint64_t end = moat_now_ns() + 5000000000ull; moat_now_ns() < end;) {
		json_t *st = ctl(&x->f, "/state", NULL);
		json_int_t w = json_integer_value(json_object_get(json_object_get(st, "watches"), "pods"));
		json_decref(st);
		if (w > 0)
			break;
		pump(x->k, &x->r, 50);
	}
	rec_clear(&x->r);
}

static void fx_down(struct fx *x)
{
	moat_k8s_stop(x->k);
	rec_free(&x->r);
	fake_stop(&x->f);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	static char bufs[16][512];
	static int i;
	char *b = bufs[i++ % 16];
	va_list ap;

	va_start(ap, f);
	vsnprintf(b, 512, f, ap);
	va_end(ap);
	return b;
}

static void wait_watching_from(struct fx *x, long rv)
{
	char want[32], buf[64];

	snprintf(want, sizeof(want), "%ld", rv);
	for (uint64_t end = moat_now_ns() + 8000000000ull; moat_now_ns() < end;) {
		json_t *st = ctl(&x->f, "/state", NULL);
		json_int_t w = json_integer_value(json_object_get(json_object_get(st, "watches"), "pods"));
		json_decref(st);
		if (w > 0 && !strcmp(last_watch_rv(&x->f, "/pods", buf, sizeof(buf)), want))
			return;
		pump(x->k, &x->r, 50);
	}
	print_error("no watch from resourceVersion %s (last: %s)\n", want,
		    last_watch_rv(&x->f, "/pods", buf, sizeof(buf)));
	dump(&x->r);
	fail();
}

/* A stream dropped between events, or inside one: the client comes back
 * from the last resourceVersion it saw, gets each event once, no relist. */
static void test_resume_after_drop(void **state)
{
	struct fx x;
	long rv4, rv5, rv6;

	(void)state;
	fx_up(&x, NULL, NULL);
	fault(&x.f, "pods", "drop");
	wait_watching_from(&x, x.rv[3]);
	rv4 = put(&x.f, pod_obj("x", "p4", "10.0.0.4"));
	wait_events(x.k, &x.r, 1);

	/* inside an event: half a line, then the connection closes */
	fault(&x.f, "pods", "cut");
	rv5 = put(&x.f, pod_obj("x", "p5", "10.0.0.5"));
	wait_events(x.k, &x.r, 2);
	wait_err(x.k, &x.r, "connection lost inside an event");
	/* events in 7-byte chunks parse the same */
	fault(&x.f, "pods", "drop");
	wait_watching_from(&x, rv5);
	ctl0(&x.f, "/fault", json_pack("{s:s,s:s}", "resource", "pods", "fault", "split"));
	fault(&x.f, "pods", "drop");
	wait_watching_from(&x, rv5);
	rv6 = del(&x.f, "Pod", "x", "p1");
	wait_events(x.k, &x.r, 3);
	settle(x.k, &x.r, 300);
	expect_seq(&x.r, 0,
		   (const char *const[]){ fmt("U Pod/x/p4 %ld", rv4), fmt("U Pod/x/p5 %ld", rv5),
					  "D Pod/x/p1", NULL });
	(void)rv6;
	assert_int_equal(kint(x.k, "Pod", "lists"), 1);
	assert_int_equal(kint(x.k, "Pod", "relists"), 0);
	assert_true(kint(x.k, "Pod", "reconnects") >= 3);
	fx_down(&x);
}

/* The server goes away; meanwhile p1 is deleted, p2 changed, p4 added and
 * the history compacted.  Nothing is deleted while it is away; when it is
 * back the watch gets 410 (as an ERROR event, as kube-apiserver sends it),
 * the client relists and reports exactly the difference. */
static void gone_relist(const char *mode)
{
	struct fx x;
	long rv2, rv4;

	fx_up(&x, NULL, NULL);
	ctl0(&x.f, "/set", json_pack("{s:s}", "gone_mode", mode));
	ctl0(&x.f, "/down", json_object());
	del(&x.f, "Pod", "x", "p1");
	rv2 = put(&x.f, pod_obj("x", "p2", "10.0.0.22"));
	rv4 = put(&x.f, pod_obj("x", "p4", "10.0.0.4"));
	ctl0(&x.f, "/compact", json_object());
	wait_err(x.k, &x.r, "Couldn't connect");
	settle(x.k, &x.r, 1500); /* several retries: still nothing */
	assert_int_equal(x.r.ev.n, 0);
	assert_true(kstate_is(x.k, "Pod", "backoff") || kstate_is(x.k, "Pod", "watching"));
	ctl0(&x.f, "/up", json_object());
	wait_events(x.k, &x.r, 3);
	settle(x.k, &x.r, 300);
	/* list order (sorted), then what vanished; p3 is unchanged: not sent */
	expect_seq(&x.r, 0,
		   (const char *const[]){ fmt("U Pod/x/p2 %ld", rv2), fmt("U Pod/x/p4 %ld", rv4),
					  "D Pod/x/p1", NULL });
	assert_int_equal(kint(x.k, "Pod", "relists"), 1);
	assert_int_equal(kint(x.k, "Pod", "objects"), 3);
	fx_down(&x);
}

static void test_gone_event_relist(void **state)
{
	(void)state;
	gone_relist("event");
}

static void test_gone_http_relist(void **state)
{
	(void)state;
	gone_relist("http");
}

/* Garbage, malformed JSON, a line that is no event, a hanging stream: each is
 * reported, the client reconnects from where it was, nothing is lost. */
static void test_bad_streams(void **state)
{
	static const char *const faults[] = { "garbage", "malformed", "notevent", "hang" };
	static const char *const msgs[] = { "is not JSON", "is not JSON", "is not an event",
					    "no data for 1500 ms" };
	struct fx x;
	long rv = 0;

	(void)state;
	fx_up(&x, NULL, NULL);
	rv = x.rv[3];
	for (size_t i = 0; i < 4; i++) {
		char name[8];
		long nrv;

		ctl0(&x.f, "/fault", json_pack("{s:s,s:s}", "resource", "pods", "fault", faults[i]));
		fault(&x.f, "pods", "drop");
		wait_err(x.k, &x.r, msgs[i]);
		wait_watching_from(&x, rv);
		snprintf(name, sizeof(name), "q%zu", i);
		nrv = put(&x.f, pod_obj("x", name, "10.0.1.1"));
		wait_events(x.k, &x.r, i + 1);
		assert_string_equal(x.r.ev.v[i], fmt("U Pod/x/%s %ld", name, nrv));
		rv = nrv;
	}
	settle(x.k, &x.r, 200);
	assert_int_equal(x.r.ev.n, 4);
	assert_int_equal(kint(x.k, "Pod", "relists"), 0);
	fx_down(&x);
}

/* A continue token that expires mid-list: the list starts over, nobody sees
 * an object twice or a deletion. */
static void test_expired_continue(void **state)
{
	struct fx x;

	(void)state;
	fx_up(&x, NULL, NULL);
	for (int i = 5; i < 12; i++)
		put(&x.f, pod_obj("x", fmt("p%d", i), "10.0.2.1"));
	/* the next list's second page gets 410 */
	fault(&x.f, "pods", "expire_continue");
	ctl0(&x.f, "/compact", json_object());
	fault(&x.f, "pods", "drop");
	wait_events(x.k, &x.r, 7);
	settle(x.k, &x.r, 500);
	assert_int_equal(x.r.ev.n, 7);
	for (size_t i = 0; i < x.r.ev.n; i++)
		assert_true(((char *)x.r.ev.v[i])[0] == 'U');
	assert_int_equal(kint(x.k, "Pod", "objects"), 10);
	fx_down(&x);
}

/* A relist that fails after its first page deletes nothing: only the
 * complete list that follows says what is gone. */
static void test_partial_relist(void **state)
{
	struct fx x;

	(void)state;
	fx_up(&x, NULL, NULL);
	for (int i = 4; i < 8; i++)
		put(&x.f, pod_obj("x", fmt("p%d", i), "10.0.2.1"));
	wait_events(x.k, &x.r, 4);
	rec_clear(&x.r);
	ctl0(&x.f, "/down", json_object());
	del(&x.f, "Pod", "x", "p1");
	ctl0(&x.f, "/compact", json_object());
	fault(&x.f, "pods", "fail_continue");
	ctl0(&x.f, "/up", json_object());
	wait_err(x.k, &x.r, "list: HTTP 500: injected");
	wait_events(x.k, &x.r, 1);
	settle(x.k, &x.r, 500);
	expect_seq(&x.r, 0, (const char *const[]){ "D Pod/x/p1", NULL });
	assert_int_equal(kint(x.k, "Pod", "relists"), 1);
	assert_int_equal(kint(x.k, "Pod", "objects"), 6);
	fx_down(&x);
}

/* 403 for pods: reported, SYNCED does not wait for it, and once RBAC is
 * fixed pods come.  404 (no CRD): likewise, until the resource appears. */
static void test_forbidden_not_found(void **state)
{
	static const struct moat_k8s_kind kinds[] = {
		{ "Namespace", "", "v1", "namespaces", false },
		{ "Pod", "", "v1", "pods", true },
		{ "Blueprint", "moat.io", "v1alpha1", "blueprints", false },
	};
	struct fake f;
	struct rec r = { 0 };
	struct moat_k8s_conf c;
	struct moat_k8s_opts o;
	struct moat_k8s *k;
	long rvp, rvb;

	(void)state;
	fake_start(&f, NULL);
	put(&f, ns_obj("x"));
	rvp = put(&f, pod_obj("x", "p1", "10.0.0.1"));
	ctl0(&f, "/set", json_pack("{s:{s:i}}", "status", "pods", 403));
	c = conf_for(&f);
	o = fast_opts(&c, kinds, 3);
	k = start(&o);
	wait_synced(k, &r);
	assert_true(has_err(&r, "Pod (v1 pods): list: HTTP 403 Forbidden"));
	assert_true(has_err(&r, "cannot list resource \\\"pods\\\"") ||
		    has_err(&r, "cannot list resource \"pods\""));
	assert_true(has_err(&r, "Blueprint (moat.io/v1alpha1 blueprints): list: the server has no resource"));
	assert_true(kstate_is(k, "Pod", "forbidden") || kstate_is(k, "Pod", "backoff"));
	expect_seq(&r, 0, (const char *const[]){ "U Namespace/x 101", "S", NULL });
	{
		/* the same error is reported once while it lasts */
		size_t n = 0;
		settle(k, &r, 1200);
		for (size_t i = 0; i < r.err.n; i++)
			n += strstr(r.err.v[i], "403") != NULL;
		assert_int_equal(n, 1);
		assert_true(kint(k, "Pod", "errors") > 2);
	}
	ctl0(&f, "/set", json_pack("{s:{s:n}}", "status", "pods"));
	ctl0(&f, "/set",
	     json_pack("{s:{s:[s,s,s,b]}}", "resources", "blueprints", "Blueprint", "moat.io", "v1alpha1",
		       0));
	rvb = put(&f, json_pack("{s:s,s:{s:s},s:{s:s,s:[{s:s}]}}", "kind", "Blueprint", "metadata", "name",
				"baseline", "spec", "version", "v1", "versions", "version", "v1"));
	wait_events(k, &r, 4);
	settle(k, &r, 200);
	/* the two kinds race each other: compare as a set */
	{
		bool p = false, b = false;
		for (size_t i = 2; i < r.ev.n; i++) {
			p |= !strcmp(r.ev.v[i], fmt("U Pod/x/p1 %ld", rvp));
			b |= !strcmp(r.ev.v[i], fmt("U Blueprint/baseline %ld", rvb));
		}
		assert_true(p && b);
		assert_int_equal(r.ev.n, 4);
	}
	assert_int_equal(r.synced, 1);
	moat_k8s_stop(k);
	rec_free(&r);
	fake_stop(&f);
}

/* 500 and 429 (with Retry-After) are retried; nothing is lost. */
static void test_server_errors(void **state)
{
	struct fx x;
	long rv;

	(void)state;
	fx_up(&x, NULL, NULL);
	ctl0(&x.f, "/set", json_pack("{s:{s:i}}", "status", "pods", 500));
	fault(&x.f, "pods", "drop");
	wait_err(x.k, &x.r, "watch: HTTP 500: injected");
	ctl0(&x.f, "/set", json_pack("{s:{s:i}}", "status", "pods", 429));
	wait_err(x.k, &x.r, "watch: HTTP 429: slow down");
	rv = put(&x.f, pod_obj("x", "late", "10.0.0.9"));
	settle(x.k, &x.r, 300);
	assert_int_equal(x.r.ev.n, 0);
	ctl0(&x.f, "/set", json_pack("{s:{s:n}}", "status", "pods"));
	wait_events(x.k, &x.r, 1);
	expect_seq(&x.r, 0, (const char *const[]){ fmt("U Pod/x/late %ld", rv), NULL });
	fx_down(&x);
}

static void tune_small_objects(struct moat_k8s_opts *o)
{
	o->max_object_bytes = 4096;
	o->max_objects = 5;
}

/* Bounds: an object over max_object_bytes in a watch (relist; there it is
 * refused with its key, the last good version kept) and in a list; more
 * objects than max_objects; all with clear errors, and the client goes on. */
static void test_bounds(void **state)
{
	struct fx x;
	json_t *big;
	char *pad = xcalloc(1, 8001);
	long rv4, rv6;

	(void)state;
	fx_up(&x, NULL, tune_small_objects);
	memset(pad, 'a', 8000);
	big = pod_obj("x", "p2", "10.0.0.2");
	json_object_set_new(json_object_get(big, "metadata"), "annotations", json_pack("{s:s}", "pad", pad));
	free(pad);
	put(&x.f, big);
	wait_err(x.k, &x.r, "watch: watch event of more than 4096 bytes; relisting");
	wait_err(x.k, &x.r, "Pod/x/p2: ");
	wait_err(x.k, &x.r, "more than 4096; the last good version stays");
	rv4 = put(&x.f, pod_obj("x", "p4", "10.0.0.4"));
	wait_events(x.k, &x.r, 1);
	/* 4 known; a fifth fits, a sixth does not */
	put(&x.f, pod_obj("x", "p5", "10.0.0.5"));
	put(&x.f, pod_obj("x", "p6", "10.0.0.6"));
	wait_err(x.k, &x.r, "more than 5 objects: Pod/x/p6 ignored");
	settle(x.k, &x.r, 200);
	assert_int_equal(x.r.ev.n, 2);
	assert_string_equal(x.r.ev.v[0], fmt("U Pod/x/p4 %ld", rv4));
	assert_int_equal(kint(x.k, "Pod", "objects"), 5);
	assert_int_equal(kint(x.k, "Pod", "rejected"), 1);
	/* room again: deleting one lets a later change of p6 in */
	del(&x.f, "Pod", "x", "p5");
	rv6 = put(&x.f, pod_obj("x", "p6", "10.0.0.66"));
	wait_events(x.k, &x.r, 4);
	assert_string_equal(x.r.ev.v[2], "D Pod/x/p5");
	assert_string_equal(x.r.ev.v[3], fmt("U Pod/x/p6 %ld", rv6));
	assert_int_equal(kint(x.k, "Pod", "relists"), 1);
	fx_down(&x);
}

/* A list response over max_page_bytes is asked again in smaller pages; a
 * queue bounded to almost nothing still delivers everything in order. */
static void test_page_bytes_and_queue(void **state)
{
	struct fake f;
	struct rec r = { 0 };
	struct moat_k8s_conf c;
	struct moat_k8s_opts o;
	struct moat_k8s *k;
	json_t *a, *log, *e;
	size_t i;

	(void)state;
	fake_start(&f, NULL);
	a = json_array();
	for (i = 0; i < 40; i++)
		json_array_append_new(a, pod_obj("x", fmt("p%02zu", i), "10.0.0.1"));
	ctl0(&f, "/put", json_pack("{s:o}", "objects", a));
	c = conf_for(&f);
	o = fast_opts(&c, K_POD, 1);
	o.page_size = 40;
	o.max_page_bytes = 3000; /* about 8 pods */
	o.max_queue_bytes = 1;
	k = start(&o);
	wait_synced(k, &r);
	assert_int_equal(r.ev.n, 41);
	for (i = 0; i < 40; i++)
		assert_true(
			!strncmp(r.ev.v[i], fmt("U Pod/x/p%02zu ", i), strlen(fmt("U Pod/x/p%02zu ", i))));
	/* 40 pods do not fit, nor 20; 10 do, and the rest of the list keeps that */
	log = ctl(&f, "/requests", NULL);
	{
		char got[256] = "";
		json_array_foreach(log, i, e)
		{
			const char *l =
				json_string_value(json_object_get(json_object_get(e, "query"), "limit"));
			if (l)
				snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s ", l);
		}
		assert_string_equal(got, "40 20 10 10 10 10 ");
	}
	json_decref(log);
	moat_k8s_stop(k);
	rec_free(&r);
	fake_stop(&f);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static char *read_text(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *b = xcalloc(1, 65536);
	size_t n;

	assert_non_null(fp);
	n = fread(b, 1, 65535, fp);
	b[n] = 0;
	fclose(fp);
	return b;
}

static char *b64(const char *s)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(s), o = 0;
	char *out = xcalloc(1, n / 3 * 4 + 8);

	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)s[i] << 16;
		if (i + 1 < n)
			v |= (unsigned char)s[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)s[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	return out;
}

static bool req_seen(struct fake *f, const char *field, const char *value)
{
	json_t *log = ctl(f, "/requests", NULL), *e;
	bool seen = false;
	size_t i;

	json_array_foreach(log, i, e)
	{
		const char *v = json_string_value(json_object_get(e, field));
		seen |= v && !strcmp(v, value);
	}
	json_decref(log);
	return seen;
}

static void tune_token(struct moat_k8s_opts *o)
{
	o->token_reread_ms = 200;
}

/* A token file read at start, re-read as it rotates; a 401 makes the
 * client read it again at once. */
static void test_token_rotation(void **state)
{
	const char *extra[] = { "--token", "tok-1", NULL };
	char tokf[PATH_MAX];
	struct fx x;
	struct moat_k8s_conf c;
	long rv;

	(void)state;
	snprintf(tokf, sizeof(tokf), "%s/token", tmpdir);
	write_file(tokf, "tok-1\n");
	/* fx_up with a token file: set it up by hand */
	memset(&x, 0, sizeof(x));
	fake_start(&x.f, extra);
	c = conf_for(&x.f);
	c.token_file = tokf;
	x.o = fast_opts(&c, K_POD, 1);
	tune_token(&x.o);
	x.k = start(&x.o);
	wait_synced(x.k, &x.r);
	assert_true(req_seen(&x.f, "token", "tok-1"));
	{
		json_t *st = moat_k8s_status(x.k);
		assert_string_equal(json_string_value(json_object_get(st, "auth")), "token");
		char *txt = json_dumps(st, 0);
		assert_null(strstr(txt, "tok-1")); /* never shown */
		free(txt);
		json_decref(st);
	}
	/* rotation: the server takes only the new token from now on */
	ctl0(&x.f, "/set", json_pack("{s:[s]}", "tokens", "tok-2"));
	write_file(tokf, "tok-2\n");
	fault(&x.f, "pods", "drop");
	rv = put(&x.f, pod_obj("x", "after", "10.0.0.1"));
	wait_events(x.k, &x.r, 2);
	assert_string_equal(x.r.ev.v[1], fmt("U Pod/x/after %ld", rv));
	assert_true(req_seen(&x.f, "token", "tok-2"));
	/* a token the server refuses: 401 reported, and a good file fixes it */
	ctl0(&x.f, "/set", json_pack("{s:[s]}", "tokens", "tok-3"));
	fault(&x.f, "pods", "drop");
	wait_err(x.k, &x.r, "HTTP 401 Unauthorized");
	write_file(tokf, "tok-3");
	rv = put(&x.f, pod_obj("x", "later", "10.0.0.1"));
	wait_events(x.k, &x.r, 3);
	assert_string_equal(x.r.ev.v[2], fmt("U Pod/x/later %ld", rv));
	fx_down(&x);
}

/* Client certificates; a server whose certificate the CA does not vouch for;
 * insecure-skip-tls-verify. */
static void test_tls(void **state)
{
	const char *extra[] = { "--token", "nobody-has-this", NULL };
	char crt[PATH_MAX], key[PATH_MAX], other[PATH_MAX];
	struct fake f;
	struct rec r = { 0 };
	struct moat_k8s_conf c;
	struct moat_k8s_opts o;
	struct moat_k8s *k;

	(void)state;
	snprintf(crt, sizeof(crt), "%s/client.crt", certs);
	snprintf(key, sizeof(key), "%s/client.key", certs);
	snprintf(other, sizeof(other), "%s/other-ca.crt", certs);
	fake_start(&f, extra);
	put(&f, ns_obj("x"));

	c = conf_for(&f);
	c.cert_file = crt;
	c.key_file = key;
	o = fast_opts(&c, K_NS_POD, 1);
	k = start(&o);
	wait_synced(k, &r);
	expect_seq(&r, 0, (const char *const[]){ "U Namespace/x 101", "S", NULL });
	assert_true(req_seen(&f, "auth", "cert"));
	{
		json_t *st = moat_k8s_status(k);
		assert_string_equal(json_string_value(json_object_get(st, "auth")), "client-certificate");
		json_decref(st);
	}
	moat_k8s_stop(k);
	rec_free(&r);

	/* without the certificate: 401 */
	c = conf_for(&f);
	o = fast_opts(&c, K_NS_POD, 1);
	k = start(&o);
	wait_err(k, &r, "HTTP 401");
	assert_true(kstate_is(k, "Namespace", "unauthorized") || kstate_is(k, "Namespace", "backoff"));
	moat_k8s_stop(k);
	rec_free(&r);

	/* the wrong CA: nothing comes, the error says why */
	c = conf_for(&f);
	c.ca_file = other;
	c.cert_file = crt;
	c.key_file = key;
	o = fast_opts(&c, K_NS_POD, 1);
	k = start(&o);
	wait_err(k, &r, "SSL peer certificate or SSH remote key was not OK");
	settle(k, &r, 300);
	assert_int_equal(r.ev.n, 0);
	moat_k8s_stop(k);
	rec_free(&r);

	/* insecure: the wrong CA does not matter */
	c.insecure = true;
	o = fast_opts(&c, K_NS_POD, 1);
	k = start(&o);
	wait_synced(k, &r);
	assert_int_equal(r.ev.n, 2);
	moat_k8s_stop(k);
	rec_free(&r);
	fake_stop(&f);
}

/* Kubeconfig: current-context or a named one, *-data in base64, relative
 * paths, refusals; then a client started from it against the fake. */
static void test_kubeconfig(void **state)
{
	char path[PATH_MAX], *ca, *cc, *ck, *b_ca, *b_cc, *b_ck, *text, err[512];
	struct moat_k8s_conf c;
	struct fake f;
	struct rec r = { 0 };
	struct moat_k8s_opts o = { 0 };
	struct moat_k8s *k;
	int rc;

	(void)state;
	fake_start(&f, (const char *const[]){ "--token", "only-certs-work", NULL });
	put(&f, ns_obj("x"));
	ca = read_text(fmt("%s/ca.crt", certs));
	cc = read_text(fmt("%s/client.crt", certs));
	ck = read_text(fmt("%s/client.key", certs));
	b_ca = b64(ca);
	b_cc = b64(cc);
	b_ck = b64(ck);
	snprintf(path, sizeof(path), "%s/kubeconfig", tmpdir);
	text = xasprintf("apiVersion: v1\n"
			 "kind: Config\n"
			 "current-context: dev\n"
			 "clusters:\n"
			 "- name: fake\n"
			 "  cluster:\n"
			 "    server: https://127.0.0.1:%d/\n"
			 "    certificate-authority-data: %s\n"
			 "- name: other\n"
			 "  cluster:\n"
			 "    server: https://10.255.255.1:6443\n"
			 "    certificate-authority: pki/ca.crt\n"
			 "    insecure-skip-tls-verify: true\n"
			 "users:\n"
			 "- name: dev\n"
			 "  user:\n"
			 "    client-certificate-data: %s\n"
			 "    client-key-data: %s\n"
			 "- name: ops\n"
			 "  user:\n"
			 "    token: abc.def\n"
			 "    tokenFile: /var/run/tok\n"
			 "- name: plugin\n"
			 "  user:\n"
			 "    exec:\n"
			 "      command: aws\n"
			 "- name: files\n"
			 "  user:\n"
			 "    client-certificate: pki/c.crt\n"
			 "contexts:\n"
			 "- name: dev\n"
			 "  context: {cluster: fake, user: dev}\n"
			 "- name: ops\n"
			 "  context: {cluster: other, user: ops, namespace: kube-system}\n"
			 "- name: sso\n"
			 "  context: {cluster: other, user: plugin}\n"
			 "- name: half\n"
			 "  context: {cluster: other, user: files}\n"
			 "- name: lost\n"
			 "  context: {cluster: nowhere, user: dev}\n",
			 f.api, b_ca, b_cc, b_ck);
	write_file(path, text);

	rc = moat_k8s_conf_kubeconfig(path, NULL, &c, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	assert_string_equal(c.server, fmt("https://127.0.0.1:%d", f.api));
	assert_string_equal(c.context, "dev");
	assert_int_equal(c.ca_len, strlen(ca));
	assert_memory_equal(c.ca_data, ca, c.ca_len);
	assert_memory_equal(c.cert_data, cc, strlen(cc));
	assert_memory_equal(c.key_data, ck, strlen(ck));
	assert_null(c.token);
	assert_false(c.insecure);
	moat_k8s_conf_free(&c);

	rc = moat_k8s_conf_kubeconfig(path, "ops", &c, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(c.server, "https://10.255.255.1:6443");
	assert_string_equal(c.ca_file, fmt("%s/pki/ca.crt", tmpdir));
	assert_true(c.insecure);
	assert_string_equal(c.token, "abc.def");
	assert_string_equal(c.token_file, "/var/run/tok");
	assert_null(c.cert_data);
	moat_k8s_conf_free(&c);

	assert_int_equal(moat_k8s_conf_kubeconfig(path, "sso", &c, err, sizeof(err)), -EOPNOTSUPP);
	assert_non_null(strstr(err, "user \"plugin\": exec is not supported"));
	assert_int_equal(moat_k8s_conf_kubeconfig(path, "half", &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "needs a client key"));
	assert_int_equal(moat_k8s_conf_kubeconfig(path, "lost", &c, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no cluster \"nowhere\""));
	assert_int_equal(moat_k8s_conf_kubeconfig(path, "nope", &c, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no context \"nope\""));
	write_file(fmt("%s/bad-kubeconfig", tmpdir), "clusters: [\n");
	assert_true(moat_k8s_conf_kubeconfig(fmt("%s/bad-kubeconfig", tmpdir), NULL, &c, err, sizeof(err)) <
		    0);
	assert_non_null(strstr(err, "bad-kubeconfig"));
	write_file(
		fmt("%s/bad-kubeconfig", tmpdir),
		"current-context: a\ncontexts: [{name: a, context: {cluster: a}}]\n"
		"clusters: [{name: a, cluster: {server: 'https://h', certificate-authority-data: '!!'}}]\n");
	assert_int_equal(moat_k8s_conf_kubeconfig(fmt("%s/bad-kubeconfig", tmpdir), NULL, &c, err,
						  sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "certificate-authority-data is not valid base64"));

	/* the real thing: client certificate and CA from the data fields */
	o = fast_opts(NULL, K_NS_POD, 1);
	o.kubeconfig = path;
	k = start(&o);
	wait_synced(k, &r);
	expect_seq(&r, 0, (const char *const[]){ "U Namespace/x 101", "S", NULL });
	assert_true(req_seen(&f, "auth", "cert"));
	{
		json_t *st = moat_k8s_status(k);
		assert_string_equal(json_string_value(json_object_get(st, "context")), "dev");
		json_decref(st);
	}
	moat_k8s_stop(k);
	rec_free(&r);
	o.context = "sso";
	assert_int_equal(moat_k8s_start(&o, &k, err, sizeof(err)), -EOPNOTSUPP);
	assert_null(k);
	free(ca);
	free(cc);
	free(ck);
	free(b_ca);
	free(b_cc);
	free(b_ck);
	free(text);
	fake_stop(&f);
}

/* In-cluster: the service's environment variables and the service-account
 * directory (token, ca.crt). */
static void test_in_cluster(void **state)
{
	char sa[PATH_MAX], err[512];
	struct moat_k8s_conf c;
	struct fake f;
	struct rec r = { 0 };
	struct moat_k8s_opts o;
	struct moat_k8s *k;
	char *ca;

	(void)state;
	snprintf(sa, sizeof(sa), "%s/sa", tmpdir);
	mkdir(sa, 0700);
	unsetenv("KUBERNETES_SERVICE_HOST");
	assert_int_equal(moat_k8s_conf_in_cluster(sa, &c, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	assert_int_equal(moat_k8s_conf_in_cluster(sa, &c, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/token"));
	write_file(fmt("%s/token", sa), "sa-token-1\n");
	assert_int_equal(moat_k8s_conf_in_cluster(sa, &c, err, sizeof(err)), 0);
	assert_string_equal(c.server, "https://[fd00::1]:443");
	assert_null(c.ca_file);
	moat_k8s_conf_free(&c);

	fake_start(&f, (const char *const[]){ "--token", "sa-token-1", NULL });
	put(&f, ns_obj("kube-system"));
	ca = read_text(fmt("%s/ca.crt", certs));
	write_file(fmt("%s/ca.crt", sa), ca);
	free(ca);
	setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", fmt("%d", f.api), 1);
	o = fast_opts(NULL, K_NS_POD, 1);
	o.in_cluster = true;
	o.sa_dir = sa;
	o.token_reread_ms = 100;
	k = start(&o);
	wait_synced(k, &r);
	expect_seq(&r, 0, (const char *const[]){ "U Namespace/kube-system 101", "S", NULL });
	assert_true(req_seen(&f, "token", "sa-token-1"));
	/* the kubelet rotates the token */
	ctl0(&f, "/set", json_pack("{s:[s]}", "tokens", "sa-token-2"));
	write_file(fmt("%s/token", sa), "sa-token-2\n");
	fault(&f, "namespaces", "drop");
	put(&f, ns_obj("later"));
	wait_events(k, &r, 3);
	assert_true(req_seen(&f, "token", "sa-token-2"));
	{
		json_t *st = moat_k8s_status(k);
		assert_string_equal(json_string_value(json_object_get(st, "context")), "in-cluster");
		json_decref(st);
	}
	moat_k8s_stop(k);
	rec_free(&r);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	fake_stop(&f);
}

/* Stopping is quick even with every stream idle or hanging, and with the
 * server gone. */
static void test_stop(void **state)
{
	struct fake f;
	struct rec r = { 0 };
	struct moat_k8s_conf c;
	struct moat_k8s_opts o;
	struct moat_k8s *k;
	uint64_t t0;

	(void)state;
	fake_start(&f, NULL);
	c = conf_for(&f);
	o = fast_opts(&c, NULL, 0);
	o.idle_timeout_ms = 60000;
	k = start(&o);
	wait_synced(k, &r);
	fault(&f, "pods", "hang");
	fault(&f, "pods", "drop");
	settle(k, &r, 300);
	t0 = moat_now_ns();
	moat_k8s_stop(k);
	assert_true(moat_now_ns() - t0 < 1500000000ull);
	rec_free(&r);
	/* nothing listening at all */
	c.server = "https://127.0.0.1:1";
	k = start(&o);
	wait_err(k, &r, "Couldn't connect");
	t0 = moat_now_ns();
	moat_k8s_stop(k);
	assert_true(moat_now_ns() - t0 < 1500000000ull);
	rec_free(&r);
	fake_stop(&f);
}

static int rmrf(const char *d)
{
	char *cmd = xasprintf("rm -rf '%s'", d);
	int rc = system(cmd);

	free(cmd);
	return rc;
}

static int setup(void **state)
{
	char *cmd;
	int rc;

	(void)state;
	if (access(FAKEAPI, R_OK)) {
		fprintf(stderr, "%s not found: run from the top of the tree\n", FAKEAPI);
		return -1;
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/moat-k8s-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(certs, sizeof(certs), "%s/certs", tmpdir);
	/* the test CA and certificates, made with the openssl command */
	cmd = xasprintf("python3 %s gen-certs '%s'", FAKEAPI, certs);
	rc = system(cmd);
	free(cmd);
	if (rc) {
		fprintf(stderr, "cannot make test certificates (openssl installed?)\n");
		return -1;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rmrf(tmpdir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_initial_list),
		cmocka_unit_test(test_objects_decode),
		cmocka_unit_test(test_watch_sequence),
		cmocka_unit_test(test_resume_after_drop),
		cmocka_unit_test(test_gone_event_relist),
		cmocka_unit_test(test_gone_http_relist),
		cmocka_unit_test(test_bad_streams),
		cmocka_unit_test(test_expired_continue),
		cmocka_unit_test(test_partial_relist),
		cmocka_unit_test(test_forbidden_not_found),
		cmocka_unit_test(test_server_errors),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_page_bytes_and_queue),
		cmocka_unit_test(test_token_rotation),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_kubeconfig),
		cmocka_unit_test(test_in_cluster),
		cmocka_unit_test(test_stop),
	};

	return cmocka_run_group_tests_name("k8s", tests, setup, teardown);
}
