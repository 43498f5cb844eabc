// SPDX-License-Identifier: Apache-2.0
/* The compiler against the upstream conformance corpus and against the
 * independent reference model, without a datapath:
 *   - every case and step of netpol-cases.json and anp-cases.json is applied
 *     incrementally to one compiler, as moatd would;
 *   - for every probe the reference model must give the corpus' expectation
 *     (this checks the reference model), and moat_compiler_explain() on the
 *     compiled tables must give the same verdict (this checks the compiler);
 *   - a fresh compiler given the same objects at once must agree with the
 *     incremental one on every pair (incremental == full).
 * Probed beyond the corpus: every pair on ports 80, 81, 53, 8080, 9003 and a
 * port no rule names, on TCP, UDP and SCTP, plus ICMP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <cmocka.h>
#include <jansson.h>

#include "compile.h"
#include "decode.h"
#include "refmodel.h"
#include "util.h"

static const char *corpus_dir(void)
{
	const char *d = getenv("MOAT_CONFORMANCE_DIR");
	return d ? d : "../shared/conformance";
}

/* ---- a world of objects, kept as JSON so steps can edit it --------------- */
struct world {
	json_t *objs;    /* object key -> JSON object */
	struct hmap ips; /* "ns/pod" -> ip string */
	char node_ip[32];
};

static char *jkey(json_t *o)
{
	const char *kind = json_string_value(json_object_get(o, "kind"));
	json_t *md = json_object_get(o, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	if (!strcmp(kind, "NetworkPolicy") || !strcmp(kind, "Pod"))
		return xasprintf("%s/%s/%s", kind, ns ? ns : "default", name);
	return xasprintf("%s/%s", kind, name);
}

/* Replaces {{podIP:ns/pod}} and {{hostPrefixLen}} in every string. */
static json_t *subst(json_t *v, struct world *w)
{
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char out[512];
		size_t o = 0;
		while (*s && o < sizeof(out) - 64) {
			if (!strncmp(s, "{{podIP:", 8)) {
				const char *e = strstr(s, "}}");
				char id[256];
				snprintf(id, sizeof(id), "%.*s", (int)(e - s - 8), s + 8);
				const char *ip = hmap_gets(&w->ips, id);
				o += (size_t)snprintf(out + o, sizeof(out) - o, "%s", ip ? ip : "0.0.0.0");
				s = e + 2;
			} else if (!strncmp(s, "{{hostPrefixLen}}", 17)) {
				o += (size_t)snprintf(out + o, sizeof(out) - o, "32");
				s += 17;
			} else {
				out[o++] = *s++;
			}
		}
		out[o] = 0;
		return json_string(out);
	}
	if (json_is_object(v)) {
		json_t *n = json_object();
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x) json_object_set_new(n, k, subst(x, w));
		return n;
	}
	if (json_is_array(v)) {
		json_t *n = json_array();
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) json_array_append_new(n, subst(x, w));
		return n;
	}
	return json_incref(v);
}

static void world_put(struct world *w, json_t *o)
{
	char *k = jkey(o);
	json_object_set_new(w->objs, k, subst(o, w));
	free(k);
}

static struct moat_object *decode_or_fail(json_t *o)
{
	struct moat_object *obj = NULL;
	char err[512];
	int rc = moat_decode(o, "test", &obj, err, sizeof(err));
	if (rc)
		fail_msg("decode: %s", err);
	assert_non_null(obj);
	return obj;
}

/* Syncs the compiler with the world: applies objects whose JSON changed. */
static void world_sync(struct world *w, struct moat_compiler *c, json_t *applied)
{
	const char *k;
	json_t *o;
	void *tmp;
	struct moat_tx *tx;
	struct moat_flush_stats st;
	char err[256];

	json_object_foreach_safe(applied, tmp, k, o)
	{
		if (!json_object_get(w->objs, k)) {
			assert_int_equal(moat_compiler_delete(c, k), 0);
			json_object_del(applied, k);
		}
	}
	json_object_foreach(w->objs, k, o)
	{
		json_t *prev = json_object_get(applied, k);
		if (prev && json_equal(prev, o))
			continue;
		assert_int_equal(moat_compiler_apply(c, decode_or_fail(o)), 0);
		json_object_set(applied, k, o);
	}
	assert_int_equal(moat_tx_begin(NULL, false, &tx), 0);
	if (moat_compiler_flush(c, tx, &st, err, sizeof(err)))
		fail_msg("flush: %s", err);
	moat_tx_abort(tx);
	moat_compiler_commit(c);
}

static struct moat_compiler *fresh(struct world *w)
{
	struct moat_compiler *c;
	struct moat_compiler_opts o = { .node = "n1" };
	json_t *applied = json_object();

	assert_int_equal(moat_compiler_new(&o, &c), 0);
	world_sync(w, c, applied);
	json_decref(applied);
	return c;
}

/* ---- checking ----------------------------------------------------------- */
struct checker {
	struct world *w;
	struct moat_compiler *c;
	const char *ctx;
	int failures;
};

static struct ref_world refw(struct world *w, const struct moat_object ***keep)
{
	struct ref_world rw = { .node = "n1", .allow_local_node = true };
	size_t n = json_object_size(w->objs), i = 0;
	const char *k;
	json_t *o;
	const struct moat_object **objs = calloc(n + 1, sizeof(*objs));

	json_object_foreach(w->objs, k, o) objs[i++] = decode_or_fail(o);
	rw.n = i;
	rw.objs = objs;
	*keep = objs;
	return rw;
}

static void refw_free(const struct moat_object **objs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		moat_object_free((struct moat_object *)objs[i]);
	free(objs);
}

static int explain_verdict(struct moat_compiler *c, const char *from, const char *to, uint8_t proto,
			   uint16_t port)
{
	struct moat_explain x;
	char err[256];

	if (moat_compiler_explain(c, from, to, proto, port, &x, err, sizeof(err)))
		fail_msg("explain %s -> %s: %s", from, to, err);
	return x.verdict;
}

static uint8_t proto_of(const char *p)
{
	if (!p || !strcmp(p, "TCP"))
		return IPPROTO_TCP;
	if (!strcmp(p, "UDP"))
		return IPPROTO_UDP;
	if (!strcmp(p, "SCTP"))
		return IPPROTO_SCTP;
	return IPPROTO_ICMP;
}

/* Compares reference and compiler (and a fresh compiler) on every pair. */
static void check_all_pairs(struct checker *ck, const char **ids, size_t nids)
{
	static const uint16_t ports[] = { 80, 81, 53, 5353, 8080, 9003, 9005, 34345, 34346, 34347, 4242 };
	static const uint8_t protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP };
	const struct moat_object **keep;
	struct ref_world rw = refw(ck->w, &keep);
	struct moat_compiler *fc = fresh(ck->w);

	for (size_t a = 0; a < nids; a++)
		for (size_t b = 0; b < nids; b++) {
			const char *sip = hmap_gets(&ck->w->ips, ids[a]);
			const char *dip = hmap_gets(&ck->w->ips, ids[b]);
			struct moat_addr sa, da;
			if (a == b)
				continue;
			moat_addr_parse(sip, &sa);
			moat_addr_parse(dip, &da);
			for (size_t pi = 0; pi < 4; pi++)
				for (size_t po = 0; po < (pi < 3 ? sizeof(ports) / sizeof(ports[0]) : 1);
				     po++) {
					uint8_t proto = pi < 3 ? protos[pi] : IPPROTO_ICMP;
					uint16_t port = pi < 3 ? ports[po] : 0;
					struct ref_result r;
					int inc, full;
					ref_judge(&rw, &sa, &da, proto, port, &r);
					inc = explain_verdict(ck->c, sip, dip, proto, port);
					full = explain_verdict(fc, sip, dip, proto, port);
					if (inc != r.verdict || full != r.verdict) {
						if (ck->failures++ < 20)
							print_error(
								"%s: %s -> %s %u/%s: reference %s, compiled %s, fresh %s\n",
								ck->ctx, ids[a], ids[b], port,
								moat_proto_name(proto),
								moat_verdict_name(r.verdict),
								moat_verdict_name(inc),
								moat_verdict_name(full));
					}
				}
		}
	moat_compiler_free(fc);
	refw_free(keep, rw.n);
}

/* ---- NetworkPolicy corpus ------------------------------------------------ */
static void netpol_model(struct world *w, json_t *model)
{
	json_t *v;
	size_t i;
	int n = 1;

	json_array_foreach(json_object_get(model, "namespaces"), i, v)
	{
		json_t *ns = json_pack("{s:s,s:s,s:{s:s,s:O}}", "apiVersion", "v1", "kind", "Namespace",
				       "metadata", "name", json_string_value(json_object_get(v, "name")),
				       "labels", json_object_get(v, "labels"));
		world_put(w, ns);
		json_decref(ns);
	}
	json_array_foreach(json_object_get(model, "pods"), i, v)
	{
		char ip[32];
		json_t *ports = json_array(), *c;
		size_t k;
		snprintf(ip, sizeof(ip), "10.1.0.%d", n++);
		char *id = xstrdup(json_string_value(json_object_get(v, "id")));
		hmap_put(&w->ips, id, strlen(id), xstrdup(ip), NULL);
		json_array_foreach(json_object_get(model, "containers"), k, c) json_array_append_new(
			ports, json_pack("{s:O,s:O,s:O}", "name", json_object_get(c, "portName"),
					 "containerPort", json_object_get(c, "containerPort"), "protocol",
					 json_object_get(c, "protocol")));
		json_t *pod = json_pack("{s:s,s:s,s:{s:O,s:O,s:O},s:{s:s,s:[{s:s,s:o}]},s:{s:s,s:[{s:s}]}}",
					"apiVersion", "v1", "kind", "Pod", "metadata", "name",
					json_object_get(v, "name"), "namespace",
					json_object_get(v, "namespace"), "labels",
					json_object_get(v, "labels"), "spec", "nodeName", "n1", "containers",
					"name", "c", "ports", ports, "status", "podIP", ip, "podIPs", "ip",
					ip);
		world_put(w, pod);
		json_decref(pod);
	}
}

static void world_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	w->objs = json_object();
	hmap_init(&w->ips);
}

static void world_free(struct world *w)
{
	size_t it = 0;
	const void *k;
	void *v;

	json_decref(w->objs);
	while (hmap_next(&w->ips, &it, &k, NULL, &v)) {
		free((void *)k);
		free(v);
	}
	hmap_free(&w->ips);
}

static void merge_labels(struct world *w, const char *key, json_t *labels)
{
	json_t *o = json_object_get(w->objs, key);
	json_t *md, *l;

	assert_non_null(o);
	o = json_deep_copy(o);
	md = json_object_get(o, "metadata");
	l = json_object_get(md, "labels");
	if (!l) {
		l = json_object();
		json_object_set_new(md, "labels", l);
	}
	json_object_update(l, labels);
	json_object_set_new(w->objs, key, o);
}

static void test_netpol_corpus(void **state)
{
	char path[512];
	json_error_t je;
	json_t *corpus, *cs, *model;
	size_t ci;
	int total_fail = 0, probes = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/netpol-cases.json", corpus_dir());
	corpus = json_load_file(path, 0, &je);
	if (!corpus)
		skip();
	model = json_object_get(corpus, "model");
	json_array_foreach(json_object_get(corpus, "cases"), ci, cs)
	{
		struct world w;
		struct moat_compiler *c;
		struct moat_compiler_opts o = { .node = "n1" };
		json_t *applied = json_object(), *st, *pod_order = json_object_get(model, "pod_order");
		const char *ids[16];
		size_t si, nids = json_array_size(pod_order);

		world_init(&w);
		netpol_model(&w, model);
		for (size_t i = 0; i < nids && i < 16; i++)
			ids[i] = json_string_value(json_array_get(pod_order, i));
		moat_compiler_new(&o, &c);
		json_array_foreach(json_object_get(cs, "steps"), si, st)
		{
			json_t *a, *pr;
			size_t ai, pi;
			char ctx[256];
			json_array_foreach(json_object_get(st, "actions"), ai, a)
			{
				const char *op = json_string_value(json_object_get(a, "op"));
				if (!strcmp(op, "create_policy") || !strcmp(op, "update_policy")) {
					world_put(&w, json_object_get(a, "policy"));
				} else if (!strcmp(op, "delete_all_policies")) {
					const char *k;
					json_t *x;
					void *tmp;
					json_object_foreach_safe(w.objs, tmp, k,
								 x) if (!strncmp(k, "NetworkPolicy/", 14))
						json_object_del(w.objs, k);
				} else if (!strcmp(op, "add_namespace_labels")) {
					char *k =
						xasprintf("Namespace/%s",
							  json_string_value(json_object_get(a, "namespace")));
					merge_labels(&w, k, json_object_get(a, "labels"));
					free(k);
				} else if (!strcmp(op, "add_pod_labels")) {
					const char *pod = json_string_value(json_object_get(a, "pod"));
					char *k = xasprintf("Pod/%s", pod);
					merge_labels(&w, k, json_object_get(a, "labels"));
					free(k);
				} else {
					fail_msg("unknown action %s", op);
				}
			}
			world_sync(&w, c, applied);
			snprintf(ctx, sizeof(ctx), "%s step %zu",
				 json_string_value(json_object_get(cs, "id")), si + 1);
			{
				const struct moat_object **keep;
				struct ref_world rw = refw(&w, &keep);
				json_array_foreach(json_object_get(st, "probes"), pi, pr)
				{
					json_t *mx =
						json_object_get(json_object_get(pr, "expected"), "matrix");
					uint8_t proto =
						proto_of(json_string_value(json_object_get(pr, "protocol")));
					uint16_t port =
						(uint16_t)json_integer_value(json_object_get(pr, "port"));
					for (size_t a2 = 0; a2 < nids; a2++)
						for (size_t b = 0; b < nids; b++) {
							char e = json_string_value(json_array_get(mx, a2))[b];
							const char *sip = hmap_gets(&w.ips, ids[a2]);
							const char *dip = hmap_gets(&w.ips, ids[b]);
							struct moat_addr sa, da;
							struct ref_result r;
							int want, got;
							if (e == '-')
								continue;
							want = e == '.' ? MOAT_VERDICT_ALLOW :
									  MOAT_VERDICT_DENY;
							moat_addr_parse(sip, &sa);
							moat_addr_parse(dip, &da);
							ref_judge(&rw, &sa, &da, proto, port, &r);
							got = explain_verdict(c, sip, dip, proto, port);
							probes++;
							if (r.verdict != want || got != want) {
								if (total_fail++ < 30)
									print_error(
										"%s: %s -> %s %u/%s: expected %s, reference %s, compiled %s\n",
										ctx, ids[a2], ids[b], port,
										moat_proto_name(proto),
										moat_verdict_name(want),
										moat_verdict_name(r.verdict),
										moat_verdict_name(got));
							}
						}
				}
				refw_free(keep, rw.n);
			}
			{
				struct checker ck = { .w = &w, .c = c, .ctx = ctx };
				check_all_pairs(&ck, ids, nids);
				total_fail += ck.failures;
			}
		}
		moat_compiler_free(c);
		json_decref(applied);
		world_free(&w);
	}
	print_message("netpol corpus: %d probes checked, %d mismatches\n", probes, total_fail);
	json_decref(corpus);
	assert_int_equal(total_fail, 0);
}

/* ---- ANP / BANP / CNP corpus --------------------------------------------- */
static void anp_model(struct world *w, json_t *base)
{
	json_t *v;
	size_t i;
	int n = 1;

	strcpy(w->node_ip, "10.99.0.1");
	json_t *node = json_pack("{s:s,s:s,s:{s:s,s:O},s:{s:[{s:s,s:s}]}}", "apiVersion", "v1", "kind",
				 "Node", "metadata", "name", "n1", "labels",
				 json_object_get(json_object_get(base, "nodes"), "labels"), "status",
				 "addresses", "type", "InternalIP", "address", w->node_ip);
	world_put(w, node);
	json_decref(node);
	json_array_foreach(json_object_get(base, "namespaces"), i, v)
	{
		json_t *ns = json_pack("{s:s,s:s,s:{s:O,s:O}}", "apiVersion", "v1", "kind", "Namespace",
				       "metadata", "name", json_object_get(v, "name"), "labels",
				       json_object_get(v, "labels"));
		world_put(w, ns);
		json_decref(ns);
	}
	json_array_foreach(json_object_get(base, "pods"), i, v)
	{
		char ip[32];
		bool hn = json_is_true(json_object_get(v, "hostNetwork"));
		char *id = xasprintf("%s/%s", json_string_value(json_object_get(v, "namespace")),
				     json_string_value(json_object_get(v, "name")));
		if (hn)
			snprintf(ip, sizeof(ip), "%s", w->node_ip);
		else
			snprintf(ip, sizeof(ip), "10.2.0.%d", n++);
		hmap_put(&w->ips, id, strlen(id), xstrdup(ip), NULL);
		json_t *pod = json_pack(
			"{s:s,s:s,s:{s:O,s:O,s:O},s:{s:s,s:b,s:[{s:s,s:O}]},s:{s:s,s:[{s:s}]}}", "apiVersion",
			"v1", "kind", "Pod", "metadata", "name", json_object_get(v, "name"), "namespace",
			json_object_get(v, "namespace"), "labels", json_object_get(v, "labels"), "spec",
			"nodeName", "n1", "hostNetwork", hn, "containers", "name", "c", "ports",
			json_object_get(v, "containerPorts") ? json_object_get(v, "containerPorts") :
							       json_array(),
			"status", "podIP", ip, "podIPs", "ip", ip);
		world_put(w, pod);
		json_decref(pod);
	}
}

static void test_anp_corpus(void **state)
{
	char path[512];
	json_error_t je;
	json_t *corpus, *cs, *base;
	size_t ci;
	int total_fail = 0, probes = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/anp-cases.json", corpus_dir());
	corpus = json_load_file(path, 0, &je);
	if (!corpus)
		skip();
	base = json_object_get(corpus, "baseModel");
	json_array_foreach(json_object_get(corpus, "cases"), ci, cs)
	{
		struct world w;
		struct moat_compiler *c;
		struct moat_compiler_opts o = { .node = "n1" };
		json_t *applied = json_object(), *st, *ob;
		const char *ids[16];
		size_t si, oi, nids = 0;

		world_init(&w);
		anp_model(&w, base);
		{
			json_t *p;
			size_t k;
			json_array_foreach(json_object_get(base, "pods"), k, p)
			{
				if (json_is_true(json_object_get(p, "hostNetwork")))
					continue;
				char *id = xasprintf("%s/%s",
						     json_string_value(json_object_get(p, "namespace")),
						     json_string_value(json_object_get(p, "name")));
				const void *kk;
				size_t it = 0, kl;
				void *vv;
				while (hmap_next(&w.ips, &it, &kk, &kl, &vv))
					if (kl == strlen(id) && !memcmp(kk, id, kl))
						ids[nids++] = kk;
				free(id);
			}
		}
		json_array_foreach(json_object_get(cs, "objects"), oi, ob) world_put(&w, ob);
		moat_compiler_new(&o, &c);
		json_array_foreach(json_object_get(cs, "steps"), si, st)
		{
			json_t *ch, *pr;
			size_t k, pi;
			char ctx[256];
			json_array_foreach(json_object_get(st, "changes"), k, ch)
			{
				const char *act = json_string_value(json_object_get(ch, "action"));
				if (!strcmp(act, "update")) {
					world_put(&w, json_object_get(ch, "object"));
				} else if (!strcmp(act, "delete")) {
					const char *kind = json_string_value(json_object_get(ch, "kind"));
					const char *name = json_string_value(json_object_get(ch, "name"));
					const char *ns = json_string_value(json_object_get(ch, "namespace"));
					char *key = ns ? xasprintf("%s/%s/%s", kind, ns, name) :
							 xasprintf("%s/%s", kind, name);
					json_object_del(w.objs, key);
					free(key);
				} else if (!strcmp(act, "setNamespaceLabels")) {
					const char *ns = json_string_value(json_object_get(ch, "namespace"));
					char *key = xasprintf("Namespace/%s", ns);
					json_t *o2 = json_deep_copy(json_object_get(w.objs, key));
					json_t *lbl = json_object_get(ch, "effectiveLabels");
					if (!lbl)
						lbl = json_object_get(ch, "labels");
					json_object_set(json_object_get(o2, "metadata"), "labels", lbl);
					json_object_set_new(w.objs, key, o2);
					free(key);
				} else {
					fail_msg("unknown change %s", act);
				}
			}
			world_sync(&w, c, applied);
			snprintf(ctx, sizeof(ctx), "%s step %zu",
				 json_string_value(json_object_get(cs, "id")), si + 1);
			{
				const struct moat_object **keep;
				struct ref_world rw = refw(&w, &keep);
				json_array_foreach(json_object_get(st, "probes"), pi, pr)
				{
					const char *from = json_string_value(json_object_get(pr, "from"));
					const char *to = json_string_value(json_object_get(pr, "to"));
					const char *sip = hmap_gets(&w.ips, from),
						   *dip = hmap_gets(&w.ips, to);
					uint8_t proto =
						proto_of(json_string_value(json_object_get(pr, "protocol")));
					uint16_t port =
						(uint16_t)json_integer_value(json_object_get(pr, "port"));
					int want = !strcmp(json_string_value(json_object_get(pr, "expect")),
							   "allow") ?
							   MOAT_VERDICT_ALLOW :
							   MOAT_VERDICT_DENY;
					struct moat_addr sa, da;
					struct ref_result r;
					int got;
					assert_non_null(sip);
					assert_non_null(dip);
					moat_addr_parse(sip, &sa);
					moat_addr_parse(dip, &da);
					ref_judge(&rw, &sa, &da, proto, port, &r);
					got = explain_verdict(c, sip, dip, proto, port);
					probes++;
					if (r.verdict != want || got != want) {
						if (total_fail++ < 30)
							print_error(
								"%s: %s -> %s %u/%s: expected %s, reference %s, compiled %s\n",
								ctx, from, to, port, moat_proto_name(proto),
								moat_verdict_name(want),
								moat_verdict_name(r.verdict),
								moat_verdict_name(got));
					}
				}
				refw_free(keep, rw.n);
			}
			{
				struct checker ck = { .w = &w, .c = c, .ctx = ctx };
				check_all_pairs(&ck, ids, nids);
				total_fail += ck.failures;
			}
		}
		moat_compiler_free(c);
		json_decref(applied);
		world_free(&w);
	}
	print_message("anp corpus: %d probes checked, %d mismatches\n", probes, total_fail);
	json_decref(corpus);
	assert_int_equal(total_fail, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_netpol_corpus),
		cmocka_unit_test(test_anp_corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
