// SPDX-License-Identifier: Apache-2.0
/* Model helpers: label sets, selector semantics and canonical text,
 * addresses and CIDRs, protocol names, destructors of partial objects. */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model.h"

/* ---- labels ------------------------------------------------------------------ */
static void t_labels(void **state)
{
	struct moat_labels a = { 0 }, b = { 0 };

	(void)state;
	assert_null(moat_labels_get(&a, "x"));
	assert_int_equal(moat_labels_set(&a, "zeta", "1"), 0);
	assert_int_equal(moat_labels_set(&a, "alpha", "2"), 0);
	assert_int_equal(moat_labels_set(&a, "mid", ""), 0);
	assert_int_equal(a.n, 3);
	/* sorted by key */
	assert_string_equal(a.kv[0].key, "alpha");
	assert_string_equal(a.kv[1].key, "mid");
	assert_string_equal(a.kv[2].key, "zeta");
	assert_string_equal(moat_labels_get(&a, "zeta"), "1");
	assert_string_equal(moat_labels_get(&a, "mid"), "");
	assert_null(moat_labels_get(&a, "beta"));
	/* replacing keeps keys unique */
	assert_int_equal(moat_labels_set(&a, "zeta", "3"), 0);
	assert_int_equal(a.n, 3);
	assert_string_equal(moat_labels_get(&a, "zeta"), "3");
	assert_int_equal(moat_labels_set(&a, NULL, "x"), -EINVAL);

	assert_int_equal(moat_labels_set(&b, "old", "x"), 0);
	assert_int_equal(moat_labels_copy(&b, &a), 0); /* replaces b's content */
	assert_true(moat_labels_equal(&a, &b));
	assert_null(moat_labels_get(&b, "old"));
	assert_true(a.kv[0].key != b.kv[0].key);
	assert_int_equal(moat_labels_set(&b, "mid", "y"), 0);
	assert_false(moat_labels_equal(&a, &b));
	assert_int_equal(moat_labels_set(&b, "mid", ""), 0);
	assert_true(moat_labels_equal(&a, &b));
	assert_int_equal(moat_labels_set(&b, "more", ""), 0);
	assert_false(moat_labels_equal(&a, &b));
	moat_labels_free(&a);
	assert_int_equal(a.n, 0);
	moat_labels_free(&a);                          /* twice is fine */
	assert_int_equal(moat_labels_copy(&b, &a), 0); /* copy of empty */
	assert_int_equal(b.n, 0);
	moat_labels_free(&b);

	/* many keys in random order stay sorted and findable */
	for (int i = 0; i < 200; i++) {
		char k[16];
		int x = (i * 7919) % 200;
		snprintf(k, sizeof(k), "k%03d", x);
		assert_int_equal(moat_labels_set(&a, k, k), 0);
	}
	assert_int_equal(a.n, 200);
	for (size_t i = 1; i < a.n; i++)
		assert_true(strcmp(a.kv[i - 1].key, a.kv[i].key) < 0);
	assert_string_equal(moat_labels_get(&a, "k123"), "k123");
	moat_labels_free(&a);
}

/* ---- selectors -------------------------------------------------------------------- */
static struct moat_sel_req req(const char *key, enum moat_sel_op op, int n, ...)
{
	struct moat_sel_req r = { .key = strdup(key), .op = op, .nvalues = (size_t)n };
	va_list ap;

	va_start(ap, n);
	r.values = n ? calloc((size_t)n, sizeof(char *)) : NULL;
	for (int i = 0; i < n; i++)
		r.values[i] = strdup(va_arg(ap, const char *));
	va_end(ap);
	return r;
}

static struct moat_selector *sel(int n, ...)
{
	struct moat_selector *s = calloc(1, sizeof(*s));
	va_list ap;

	s->n = (size_t)n;
	s->reqs = calloc(n ? (size_t)n : 1, sizeof(*s->reqs));
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		s->reqs[i] = va_arg(ap, struct moat_sel_req);
	va_end(ap);
	return s;
}

static void labels_of(struct moat_labels *l, const char *kv)
{
	char buf[256], *save, *t;

	moat_labels_free(l);
	snprintf(buf, sizeof(buf), "%s", kv);
	for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(t, '=');
		*eq = 0;
		assert_int_equal(moat_labels_set(l, t, eq + 1), 0);
	}
}

static bool matches(const struct moat_selector *s, const char *kv)
{
	struct moat_labels l = { 0 };
	bool m;

	labels_of(&l, kv);
	m = moat_selector_matches(s, &l);
	moat_labels_free(&l);
	return m;
}

static void t_selector_match(void **state)
{
	struct moat_selector *sel_in = sel(1, req("app", MOAT_SEL_IN, 2, "db", "web"));
	struct moat_selector *notin = sel(1, req("app", MOAT_SEL_NOT_IN, 1, "db"));
	struct moat_selector *ex = sel(1, req("app", MOAT_SEL_EXISTS, 0));
	struct moat_selector *dne = sel(1, req("app", MOAT_SEL_DOES_NOT_EXIST, 0));
	struct moat_selector *both =
		sel(2, req("app", MOAT_SEL_IN, 1, "db"), req("tier", MOAT_SEL_NOT_IN, 1, "x"));
	struct moat_selector *empty = sel(0);

	(void)state;
	assert_true(matches(sel_in, "app=db"));
	assert_true(matches(sel_in, "app=web,other=1"));
	assert_false(matches(sel_in, "app=cache"));
	assert_false(matches(sel_in, "other=db"));
	assert_false(matches(sel_in, ""));

	assert_false(matches(notin, "app=db"));
	assert_true(matches(notin, "app=web"));
	/* NotIn matches when the key is absent */
	assert_true(matches(notin, "other=db"));
	assert_true(matches(notin, ""));

	assert_true(matches(ex, "app="));
	assert_true(matches(ex, "app=x"));
	assert_false(matches(ex, "apps=x"));

	assert_true(matches(dne, "other=1"));
	assert_true(matches(dne, ""));
	assert_false(matches(dne, "app="));

	/* requirements are ANDed */
	assert_true(matches(both, "app=db"));
	assert_true(matches(both, "app=db,tier=y"));
	assert_false(matches(both, "app=db,tier=x"));
	assert_false(matches(both, "tier=y"));

	/* empty and NULL select everything */
	assert_true(matches(empty, ""));
	assert_true(matches(empty, "a=b"));
	assert_true(moat_selector_is_empty(empty));
	assert_true(moat_selector_is_empty(NULL));
	assert_false(moat_selector_is_empty(sel_in));
	assert_true(matches(NULL, "a=b"));

	moat_selector_free(sel_in);
	moat_selector_free(notin);
	moat_selector_free(ex);
	moat_selector_free(dne);
	moat_selector_free(both);
	moat_selector_free(empty);
	moat_selector_free(NULL);
}

static void t_selector_string(void **state)
{
	struct moat_selector *a = sel(4, req("tier", MOAT_SEL_NOT_IN, 3, "b", "a", "b"),
				      req("app", MOAT_SEL_IN, 1, "db"), req("x", MOAT_SEL_EXISTS, 0),
				      req("y", MOAT_SEL_DOES_NOT_EXIST, 0));
	struct moat_selector *b = sel(5, req("y", MOAT_SEL_DOES_NOT_EXIST, 0), req("x", MOAT_SEL_EXISTS, 0),
				      req("app", MOAT_SEL_IN, 1, "db"),
				      req("tier", MOAT_SEL_NOT_IN, 2, "a", "b"),
				      req("app", MOAT_SEL_IN, 1, "db"));
	struct moat_selector *e = sel(0), *d;
	char *sa, *sb, *se, *sd;

	(void)state;
	sa = moat_selector_string(a);
	sb = moat_selector_string(b);
	se = moat_selector_string(e);
	/* the model.h example form; order and duplicates do not matter */
	assert_string_equal(sa, "!y,app in (db),tier notin (a,b),x");
	assert_string_equal(sb, sa);
	assert_string_equal(se, "");
	free(se);
	se = moat_selector_string(NULL);
	assert_string_equal(se, "");

	d = moat_selector_dup(a);
	assert_non_null(d);
	assert_true(d->reqs != a->reqs && d->reqs[0].values != a->reqs[0].values);
	sd = moat_selector_string(d);
	assert_string_equal(sd, sa);
	assert_true(matches(d, "app=db,x=1,tier=c"));
	assert_false(matches(d, "app=db,x=1,tier=a"));
	assert_null(moat_selector_dup(NULL));
	moat_selector_free(d);
	d = moat_selector_dup(e);
	assert_non_null(d);
	assert_int_equal(d->n, 0);
	moat_selector_free(d);

	free(sa);
	free(sb);
	free(se);
	free(sd);
	moat_selector_free(a);
	moat_selector_free(b);
	moat_selector_free(e);
}

/* ---- addresses and CIDRs ---------------------------------------------------------------- */
static const char *cstr(const char *in)
{
	static char buf[64];
	struct moat_cidr c;

	if (moat_cidr_parse(in, &c))
		return "ERR";
	return moat_cidr_str(&c, buf);
}

static void t_cidr_parse(void **state)
{
	static const char *const bad[] = {
		"",
		"/",
		"10.0.0.0",
		"10.0.0.0/",
		"/8",
		"10.0.0/8",
		"10.0.0.0/33",
		"10.0.0.0/-1",
		"10.0.0.0/+8",
		"10.0.0.0/08",
		"10.0.0.0/8 ",
		" 10.0.0.0/8",
		"10.0.0.0/8/8",
		"10.0.0.0/1000",
		"::/129",
		"fe80::1%eth0/64",
		"abc/8",
		"10.0.0.256/8",
		"1.2.3.4.5/32",
		"10.0.0.0/0x8",
		"0123456789abcdef0123456789abcdef0123456789abcdef/8",
	};
	struct moat_cidr c;

	(void)state;
	assert_string_equal(cstr("10.0.0.0/8"), "10.0.0.0/8");
	assert_string_equal(cstr("10.1.2.3/8"), "10.0.0.0/8"); /* host bits cleared */
	assert_string_equal(cstr("10.1.2.3/32"), "10.1.2.3/32");
	assert_string_equal(cstr("10.1.2.255/25"), "10.1.2.128/25");
	assert_string_equal(cstr("1.2.3.4/0"), "0.0.0.0/0");
	assert_string_equal(cstr("fd00:1:2::3/48"), "fd00:1:2::/48");
	assert_string_equal(cstr("fd00::ffff/127"), "fd00::fffe/127");
	assert_string_equal(cstr("::/0"), "::/0");
	assert_string_equal(cstr("::1/128"), "::1/128");
	assert_string_equal(cstr("::ffff:10.0.0.1/128"), "::ffff:10.0.0.1/128");
	assert_int_equal(moat_cidr_parse("fd00::/8", &c), 0);
	assert_int_equal(c.family, 6);
	assert_int_equal(c.plen, 8);
	assert_int_equal(moat_cidr_parse("10.0.0.0/8", &c), 0);
	assert_int_equal(c.family, 4);
	for (int i = 4; i < 16; i++)
		assert_int_equal(c.a[i], 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (moat_cidr_parse(bad[i], &c) != -EINVAL) {
			print_error("accepted \"%s\"\n", bad[i]);
			fail();
		}
	}
	assert_int_equal(moat_cidr_parse(NULL, &c), -EINVAL);
}

static void t_addr(void **state)
{
	struct moat_addr a;
	char buf[64];

	(void)state;
	assert_int_equal(moat_addr_parse("192.168.1.20", &a), 0);
	assert_int_equal(a.family, 4);
	assert_int_equal(a.a[0], 192);
	assert_int_equal(a.a[3], 20);
	for (int i = 4; i < 16; i++)
		assert_int_equal(a.a[i], 0);
	assert_string_equal(moat_addr_str(&a, buf), "192.168.1.20");
	assert_int_equal(moat_addr_parse("2001:DB8::1", &a), 0);
	assert_int_equal(a.family, 6);
	assert_string_equal(moat_addr_str(&a, buf), "2001:db8::1");
	assert_int_equal(moat_addr_parse("10.0.0.1/32", &a), -EINVAL);
	assert_int_equal(moat_addr_parse("", &a), -EINVAL);
	assert_int_equal(moat_addr_parse("10.0.0", &a), -EINVAL);
	assert_int_equal(moat_addr_parse("fe80::1%eth0", &a), -EINVAL);
	assert_int_equal(moat_addr_parse("node-1", &a), -EINVAL);
	assert_int_equal(moat_addr_parse(NULL, &a), -EINVAL);
}

static bool in(const char *cidr, const char *addr)
{
	struct moat_cidr c;
	struct moat_addr a;

	assert_int_equal(moat_cidr_parse(cidr, &c), 0);
	assert_int_equal(moat_addr_parse(addr, &a), 0);
	return moat_cidr_contains(&c, &a);
}

static bool within(const char *inner, const char *outer)
{
	struct moat_cidr i, o;

	assert_int_equal(moat_cidr_parse(inner, &i), 0);
	assert_int_equal(moat_cidr_parse(outer, &o), 0);
	return moat_cidr_within(&i, &o);
}

static void t_cidr_contains(void **state)
{
	(void)state;
	assert_true(in("10.0.0.0/8", "10.0.0.0"));
	assert_true(in("10.0.0.0/8", "10.255.255.255"));
	assert_false(in("10.0.0.0/8", "11.0.0.0"));
	assert_false(in("10.0.0.0/8", "9.255.255.255"));
	assert_true(in("10.1.2.128/25", "10.1.2.200"));
	assert_false(in("10.1.2.128/25", "10.1.2.127"));
	assert_true(in("10.1.2.3/32", "10.1.2.3"));
	assert_false(in("10.1.2.3/32", "10.1.2.4"));
	assert_true(in("0.0.0.0/0", "255.1.2.3"));
	/* families never mix, not even through /0 or mapped addresses */
	assert_false(in("0.0.0.0/0", "::1"));
	assert_false(in("::/0", "10.0.0.1"));
	assert_false(in("::ffff:0:0/96", "10.0.0.1"));
	assert_true(in("::/0", "fd00::1"));
	assert_true(in("fd00::/8", "fdff:ffff::1"));
	assert_false(in("fd00::/8", "fe00::"));
	assert_true(in("fd00::/127", "fd00::1"));
	assert_false(in("fd00::/127", "fd00::2"));
	assert_false(moat_cidr_contains(NULL, NULL));

	assert_true(within("10.1.0.0/16", "10.0.0.0/8"));
	assert_true(within("10.0.0.0/8", "10.0.0.0/8"));
	assert_false(within("10.0.0.0/7", "10.0.0.0/8"));
	assert_false(within("11.0.0.0/16", "10.0.0.0/8"));
	assert_true(within("10.1.2.3/32", "10.1.2.0/24"));
	assert_true(within("10.0.0.0/8", "0.0.0.0/0"));
	assert_false(within("fd00::/16", "0.0.0.0/0"));
	assert_true(within("fd00:1::/32", "fd00::/8"));
	assert_false(within("fe00::/16", "fd00::/8"));
	assert_true(within("10.128.0.0/9", "10.0.0.0/8"));
	assert_false(within("10.128.0.0/9", "10.0.0.0/9"));
}

static void t_proto(void **state)
{
	uint8_t p = 0;

	(void)state;
	assert_string_equal(moat_proto_name(IPPROTO_TCP), "TCP");
	assert_string_equal(moat_proto_name(IPPROTO_UDP), "UDP");
	assert_string_equal(moat_proto_name(IPPROTO_SCTP), "SCTP");
	assert_string_equal(moat_proto_name(IPPROTO_ICMP), "ICMP");
	assert_string_equal(moat_proto_name(IPPROTO_ICMPV6), "ICMPv6");
	assert_string_equal(moat_proto_name(250), "UNKNOWN");
	assert_int_equal(moat_proto_parse("TCP", &p), 0);
	assert_int_equal(p, IPPROTO_TCP);
	assert_int_equal(moat_proto_parse("udp", &p), 0);
	assert_int_equal(p, IPPROTO_UDP);
	assert_int_equal(moat_proto_parse("Sctp", &p), 0);
	assert_int_equal(p, IPPROTO_SCTP);
	assert_int_equal(moat_proto_parse("icmpv6", &p), 0);
	assert_int_equal(p, IPPROTO_ICMPV6);
	assert_int_equal(moat_proto_parse("http", &p), -EINVAL);
	assert_int_equal(moat_proto_parse("", &p), -EINVAL);
	assert_int_equal(moat_proto_parse(NULL, &p), -EINVAL);
}

/* Destructors accept what a failed decode leaves: NULL members, zero counts. */
static void t_free_partial(void **state)
{
	struct moat_object *o;
	struct moat_policy *p;

	(void)state;
	moat_object_free(NULL);
	moat_policy_free(NULL);

	for (int k = MOAT_O_NAMESPACE; k <= MOAT_O_POLICY; k++) {
		o = calloc(1, sizeof(*o));
		o->kind = (enum moat_obj_kind)k;
		moat_object_free(o);
	}

	o = calloc(1, sizeof(*o));
	o->kind = MOAT_O_POLICY;
	o->api_kind = strdup("NetworkPolicy");
	o->name = strdup("n");
	o->ns = strdup("y");
	p = o->u.policy = calloc(1, sizeof(*p));
	p->name = strdup("n");
	p->subj_pod = sel(1, req("a", MOAT_SEL_IN, 1, "b"));
	p->nrules[0] = 2;
	p->rules[0] = calloc(2, sizeof(struct moat_rule));
	p->rules[0][0].name = strdup("r");
	p->rules[0][0].npeers = 2;
	p->rules[0][0].peers = calloc(2, sizeof(struct moat_peer));
	p->rules[0][0].peers[0].kind = MOAT_PEER_PODS;
	p->rules[0][0].peers[0].ns_sel = sel(0);
	p->rules[0][0].peers[1].kind = MOAT_PEER_CIDR;
	p->rules[0][0].peers[1].nexcept = 1;
	p->rules[0][0].peers[1].except = calloc(1, sizeof(struct moat_cidr));
	p->rules[0][0].nports = 1;
	p->rules[0][0].ports = calloc(1, sizeof(struct moat_port_spec));
	p->rules[0][0].ports[0].named = strdup("web");
	moat_object_free(o);

	o = calloc(1, sizeof(*o));
	o->kind = MOAT_O_POD;
	o->u.pod = calloc(1, sizeof(*o->u.pod));
	o->u.pod->nports = 2;
	o->u.pod->ports = calloc(2, sizeof(struct moat_cport));
	o->u.pod->ports[0].name = strdup("a");
	moat_labels_set(&o->u.pod->labels, "k", "v");
	moat_object_free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_labels),
		cmocka_unit_test(t_selector_match),
		cmocka_unit_test(t_selector_string),
		cmocka_unit_test(t_cidr_parse),
		cmocka_unit_test(t_addr),
		cmocka_unit_test(t_cidr_contains),
		cmocka_unit_test(t_proto),
		cmocka_unit_test(t_free_partial),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
