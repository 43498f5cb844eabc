// SPDX-License-Identifier: Apache-2.0
/* Manifest loading: YAML and JSON, several documents, Lists, scalar typing,
 * anchors, limits, and garbage that must give errors naming the source. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "manifest.h"

#define FIX "tests/fixtures/manifests/"

struct res {
	struct moat_docs docs;
	struct moat_errs errs;
	int rc;
};

static void parse(struct res *r, const char *src, const char *text, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->rc = moat_manifest_parse(text, len, src, &r->docs, &r->errs);
}

static void parses(struct res *r, const char *text)
{
	parse(r, "t.yaml", text, strlen(text));
}

static void done(struct res *r)
{
	moat_docs_free(&r->docs);
	moat_errs_free(&r->errs);
}

static void expect_ok(struct res *r, size_t ndocs)
{
	if (r->rc) {
		print_error("unexpected error %d: %s\n", r->rc, r->errs.n ? r->errs.v[0] : "?");
		fail();
	}
	assert_int_equal(r->errs.n, 0);
	assert_int_equal(r->docs.n, ndocs);
}

/* The parse failed with rc, nothing was returned, and the one message
 * starts with prefix and contains what. */
static void expect_err(struct res *r, int rc, const char *prefix, const char *what)
{
	if (r->rc != rc || r->errs.n != 1 || strncmp(r->errs.v[0], prefix, strlen(prefix)) ||
	    (what && !strstr(r->errs.v[0], what))) {
		print_error("want %d \"%s...%s\", got %d \"%s\"\n", rc, prefix, what ? what : "", r->rc,
			    r->errs.n ? r->errs.v[0] : "(none)");
		fail();
	}
	assert_int_equal(r->docs.n, 0);
}

static const char *str_at(json_t *j, const char *key)
{
	return json_string_value(json_object_get(j, key));
}

/* ---- YAML ------------------------------------------------------------------------- */
static void t_yaml_multi(void **state)
{
	struct res r;

	(void)state;
	parses(&r, "# leading comment\n"
		   "---\n"
		   "kind: A\n"
		   "n: 1\n"
		   "---\n"
		   "---\n"
		   "# only a comment\n"
		   "---\n"
		   "\n"
		   "kind: B\n"
		   "...\n"
		   "---\n"
		   "kind: C\n");
	expect_ok(&r, 3);
	assert_string_equal(str_at(r.docs.v[0].json, "kind"), "A");
	assert_int_equal(r.docs.v[0].line, 3);
	assert_string_equal(str_at(r.docs.v[1].json, "kind"), "B");
	assert_int_equal(r.docs.v[1].line, 10);
	assert_int_equal(r.docs.v[2].line, 13);
	assert_string_equal(r.docs.v[2].source, "t.yaml");
	done(&r);

	/* no separator at all; CRLF line ends */
	parses(&r, "kind: A\r\nmetadata:\r\n  name: a\r\n");
	expect_ok(&r, 1);
	assert_string_equal(str_at(json_object_get(r.docs.v[0].json, "metadata"), "name"), "a");
	done(&r);

	/* empty input, whitespace, comments: no documents, no error */
	parses(&r, "");
	expect_ok(&r, 0);
	done(&r);
	parses(&r, "  \n# nothing\n---\n");
	expect_ok(&r, 0);
	done(&r);

	/* a UTF-8 byte order mark */
	parses(&r, "\xef\xbb\xbfkind: A\n");
	expect_ok(&r, 1);
	done(&r);
	parses(&r, "\xef\xbb\xbf{\"kind\": \"A\"}");
	expect_ok(&r, 1);
	done(&r);
}

static void t_yaml_scalars(void **state)
{
	struct res r;
	json_t *j;

	(void)state;
	parses(&r, "i: 80\nneg: -5\nplus: +7\nhex: 0x1F\noct: 0o17\nlead: 0123\nf: 1.5\ne: 1e3\nver: 1.10\n"
		   "t: true\nT: True\nF: FALSE\nn: null\ntilde: ~\nempty:\n"
		   "q: \"80\"\nsq: 'true'\nqn: 'null'\nyes: yes\nno: no\non: on\ny: y\ns: hello world\n"
		   "lit: |\n  two\n  lines\nfold: >\n  one\n  line\n"
		   "tagged: !!str 5\ntagint: !!int \"7\"\ntagbool: !!bool \"false\"\ntagnull: !!null ''\n"
		   "nonspecific: ! 12\nhuge: 99999999999999999999\ninf: .inf\n"
		   "80: port\ntrue: key\n");
	expect_ok(&r, 1);
	j = r.docs.v[0].json;
	assert_int_equal(json_integer_value(json_object_get(j, "i")), 80);
	assert_true(json_is_integer(json_object_get(j, "i")));
	assert_int_equal(json_integer_value(json_object_get(j, "neg")), -5);
	assert_int_equal(json_integer_value(json_object_get(j, "plus")), 7);
	assert_int_equal(json_integer_value(json_object_get(j, "hex")), 31);
	assert_int_equal(json_integer_value(json_object_get(j, "oct")), 15);
	assert_int_equal(json_integer_value(json_object_get(j, "lead")), 123);
	assert_true(json_is_real(json_object_get(j, "f")));
	assert_true(json_real_value(json_object_get(j, "e")) == 1000.0);
	assert_true(json_is_real(json_object_get(j, "ver")));
	assert_true(json_is_true(json_object_get(j, "t")));
	assert_true(json_is_true(json_object_get(j, "T")));
	assert_true(json_is_false(json_object_get(j, "F")));
	assert_true(json_is_null(json_object_get(j, "n")));
	assert_true(json_is_null(json_object_get(j, "tilde")));
	assert_true(json_is_null(json_object_get(j, "empty")));
	assert_string_equal(str_at(j, "q"), "80");
	assert_string_equal(str_at(j, "sq"), "true");
	assert_string_equal(str_at(j, "qn"), "null");
	/* YAML 1.2: these are words, not booleans */
	assert_string_equal(str_at(j, "yes"), "yes");
	assert_string_equal(str_at(j, "no"), "no");
	assert_string_equal(str_at(j, "on"), "on");
	assert_string_equal(str_at(j, "y"), "y");
	assert_string_equal(str_at(j, "s"), "hello world");
	assert_string_equal(str_at(j, "lit"), "two\nlines\n");
	assert_string_equal(str_at(j, "fold"), "one line\n");
	assert_string_equal(str_at(j, "tagged"), "5");
	assert_int_equal(json_integer_value(json_object_get(j, "tagint")), 7);
	assert_true(json_is_false(json_object_get(j, "tagbool")));
	assert_true(json_is_null(json_object_get(j, "tagnull")));
	assert_string_equal(str_at(j, "nonspecific"), "12");
	assert_true(json_is_real(json_object_get(j, "huge")));
	assert_string_equal(str_at(j, "inf"), ".inf");
	/* keys are text whatever they look like */
	assert_string_equal(str_at(j, "80"), "port");
	assert_string_equal(str_at(j, "true"), "key");
	done(&r);

	parses(&r, "a: !!int x\n");
	expect_err(&r, -EINVAL, "t.yaml:1: ", "is not an !!int");
	done(&r);
	parses(&r, "a: \"nul\\0inside\"\n");
	expect_err(&r, -EINVAL, "t.yaml:1: ", "NUL");
	done(&r);
}

static void t_yaml_anchors(void **state)
{
	struct res r;
	json_t *j, *m;

	(void)state;
	parses(&r, "base: &b {a: 1, b: 2}\n"
		   "copy: *b\n"
		   "merged:\n  <<: *b\n  b: 3\n"
		   "early:\n  b: 4\n  <<: [*b, {c: 5, a: 9}]\n"
		   "list: [*b, *b]\n"
		   "scalar: &s x\nagain: *s\n"
		   "quoted:\n  '<<': literal\n");
	expect_ok(&r, 1);
	j = r.docs.v[0].json;
	assert_true(json_equal(json_object_get(j, "base"), json_object_get(j, "copy")));
	m = json_object_get(j, "merged");
	assert_int_equal(json_integer_value(json_object_get(m, "a")), 1);
	assert_int_equal(json_integer_value(json_object_get(m, "b")), 3);
	/* explicit keys win whatever their position; earlier merges first */
	m = json_object_get(j, "early");
	assert_int_equal(json_integer_value(json_object_get(m, "b")), 4);
	assert_int_equal(json_integer_value(json_object_get(m, "a")), 1);
	assert_int_equal(json_integer_value(json_object_get(m, "c")), 5);
	assert_int_equal(json_array_size(json_object_get(j, "list")), 2);
	assert_string_equal(str_at(j, "again"), "x");
	/* a quoted << is an ordinary key */
	assert_string_equal(str_at(json_object_get(j, "quoted"), "<<"), "literal");
	/* copies, not shared values: editing one leaves the other */
	assert_true(json_object_get(j, "base") != json_object_get(j, "copy"));
	done(&r);

	parses(&r, "a: *nope\n");
	expect_err(&r, -EINVAL, "t.yaml:1: ", "unknown alias");
	done(&r);
	/* anchors do not cross documents */
	parses(&r, "a: &x 1\n---\nb: *x\n");
	expect_err(&r, -EINVAL, "t.yaml:3: ", "unknown alias");
	done(&r);
	parses(&r, "a:\n  <<: 5\n");
	expect_err(&r, -EINVAL, "t.yaml", "merge key");
	done(&r);
}

static void t_yaml_errors(void **state)
{
	struct res r;

	(void)state;
	parses(&r, "a: 1\nb: 2\na: 3\n");
	expect_err(&r, -EINVAL, "t.yaml:3: ", "duplicate key \"a\"");
	done(&r);
	parses(&r, "a: [1, 2\n");
	expect_err(&r, -EINVAL, "t.yaml:2: ", NULL);
	done(&r);
	parses(&r, "a:\n\t- b\n");
	expect_err(&r, -EINVAL, "t.yaml:2: ", NULL);
	done(&r);
	parses(&r, "hello\n");
	expect_err(&r, -EINVAL, "t.yaml:1: ", "must be an object");
	done(&r);
	parses(&r, "- a\n- b\n");
	expect_err(&r, -EINVAL, "t.yaml:1: ", "not a list");
	done(&r);
	parses(&r, "? [a, b]\n: c\n");
	expect_err(&r, -EINVAL, "t.yaml:1: ", "key must be a scalar");
	done(&r);
	parses(&r, "kind: A\n---\nkind: B\n  bad: indent\n");
	expect_err(&r, -EINVAL, "t.yaml:4: ", NULL);
	done(&r);
}

/* ---- JSON --------------------------------------------------------------------------------- */
static void t_json(void **state)
{
	struct res r;

	(void)state;
	parse(&r, "t.json", "{\"kind\": \"A\"}", 13);
	expect_ok(&r, 1);
	assert_int_equal(r.docs.v[0].line, 1);
	done(&r);

	/* concatenated and whitespace-separated values */
	parses(&r, "\n\n{\"kind\": \"A\"}{\"kind\": \"B\"}\n  {\n\"kind\": \"C\", \"n\": 80, \"b\": true}\n");
	expect_ok(&r, 3);
	assert_int_equal(r.docs.v[0].line, 3);
	assert_int_equal(r.docs.v[1].line, 3);
	assert_int_equal(r.docs.v[2].line, 4);
	assert_string_equal(str_at(r.docs.v[2].json, "kind"), "C");
	assert_true(json_is_integer(json_object_get(r.docs.v[2].json, "n")));
	done(&r);

	parses(&r, "{\"a\": 1, \"a\": 2}");
	expect_err(&r, -EINVAL, "t.yaml:1:", "duplicate");
	done(&r);
	parses(&r, "{\"kind\": \"A\"}\n{\"kind\": \n");
	expect_err(&r, -EINVAL, "t.yaml:", NULL);
	done(&r);
	parses(&r, "[1, 2]");
	expect_err(&r, -EINVAL, "t.yaml:1: ", "not a list");
	done(&r);
	parses(&r, "{\"a\": \"x\\u0000y\"}");
	expect_err(&r, -EINVAL, "t.yaml:", NULL);
	done(&r);
	/* YAML flow style also starts with a brace */
	parses(&r, "{kind: Namespace, metadata: {name: a}}\n---\n{kind: B}\n");
	expect_ok(&r, 2);
	assert_string_equal(str_at(r.docs.v[1].json, "kind"), "B");
	done(&r);
}

/* ---- Lists ---------------------------------------------------------------------------------- */
static void t_lists(void **state)
{
	struct res r;

	(void)state;
	parses(&r, "apiVersion: v1\nkind: List\nitems:\n"
		   "- kind: A\n  x: 1\n"
		   "- kind: List\n  items:\n  - kind: B\n  - kind: C\n"
		   "- apiVersion: v9\n  kind: D\n");
	expect_ok(&r, 4);
	assert_string_equal(str_at(r.docs.v[0].json, "kind"), "A");
	assert_int_equal(r.docs.v[0].line, 4);
	assert_null(json_object_get(r.docs.v[0].json, "apiVersion")); /* untyped List: as written */
	assert_string_equal(str_at(r.docs.v[1].json, "kind"), "B");
	assert_string_equal(str_at(r.docs.v[2].json, "kind"), "C");
	assert_string_equal(str_at(r.docs.v[3].json, "apiVersion"), "v9");
	assert_int_equal(r.docs.v[3].line, 10);
	done(&r);

	/* typed lists name their items' type */
	parses(&r, "{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicyList\", \"items\": ["
		   "{\"metadata\": {\"name\": \"a\"}}, {\"kind\": \"Other\", \"apiVersion\": \"x/v1\"}]}");
	expect_ok(&r, 2);
	assert_string_equal(str_at(r.docs.v[0].json, "kind"), "NetworkPolicy");
	assert_string_equal(str_at(r.docs.v[0].json, "apiVersion"), "networking.k8s.io/v1");
	assert_string_equal(str_at(r.docs.v[1].json, "kind"), "Other");
	assert_string_equal(str_at(r.docs.v[1].json, "apiVersion"), "x/v1");
	done(&r);

	parses(&r, "kind: List\nitems: null\n");
	expect_ok(&r, 0);
	done(&r);
	parses(&r, "kind: List\nitems: []\n");
	expect_ok(&r, 0);
	done(&r);
	/* a kind that merely ends in List, without items, is a document */
	parses(&r, "kind: AllowList\nspec: {}\n");
	expect_ok(&r, 1);
	done(&r);
	parses(&r, "kind: List\nitems: {a: 1}\n");
	expect_err(&r, -EINVAL, "t.yaml:1: ", "items must be a list");
	done(&r);
	parses(&r, "kind: List\nitems:\n- kind: A\n- 5\n");
	expect_err(&r, -EINVAL, "t.yaml:4: ", "items[1] must be an object");
	done(&r);
}

/* ---- files ------------------------------------------------------------------------------------ */
static void t_files(void **state)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	int rc;

	(void)state;
	rc = moat_manifest_load_file(FIX "multi.yaml", &docs, &errs);
	assert_int_equal(rc, 0);
	assert_int_equal(docs.n, 5);
	assert_string_equal(docs.v[0].source, FIX "multi.yaml");
	assert_string_equal(str_at(docs.v[0].json, "kind"), "Namespace");
	assert_int_equal(docs.v[0].line, 4);
	assert_string_equal(str_at(docs.v[1].json, "kind"), "NetworkPolicy");
	assert_int_equal(docs.v[1].line, 12);
	assert_string_equal(str_at(docs.v[2].json, "kind"), "Pod");
	assert_int_equal(docs.v[2].line, 33);
	assert_int_equal(docs.v[3].line, 37);
	assert_string_equal(str_at(docs.v[4].json, "kind"), "Pod");
	assert_string_equal(str_at(docs.v[4].json, "apiVersion"), "v1");
	assert_int_equal(
		json_integer_value(json_object_get(
			json_array_get(
				json_object_get(json_array_get(json_object_get(json_object_get(docs.v[1].json,
											       "spec"),
									       "ingress"),
							       0),
						"ports"),
				0),
			"port")),
		5432);

	/* documents accumulate; a failing file adds none */
	rc = moat_manifest_load_file(FIX "list.json", &docs, &errs);
	assert_int_equal(rc, 0);
	assert_int_equal(docs.n, 8);
	assert_string_equal(docs.v[5].source, FIX "list.json");
	assert_string_equal(str_at(docs.v[6].json, "kind"), "AdminNetworkPolicy");
	assert_int_equal(docs.v[7].line, 12);
	rc = moat_manifest_load_file(FIX "truncated.yaml", &docs, &errs);
	assert_int_equal(rc, -EINVAL);
	assert_int_equal(docs.n, 8);
	assert_int_equal(errs.n, 1);
	assert_true(!strncmp(errs.v[0], FIX "truncated.yaml:5: ", strlen(FIX "truncated.yaml:5: ")));
	rc = moat_manifest_load_file(FIX "missing.yaml", &docs, &errs);
	assert_int_equal(rc, -ENOENT);
	assert_int_equal(errs.n, 2);
	assert_string_equal(errs.v[1], FIX "missing.yaml: No such file or directory");
	rc = moat_manifest_load_file(FIX, &docs, &errs);
	assert_int_equal(rc, -EISDIR);
	assert_int_equal(errs.n, 3);
	assert_int_equal(docs.n, 8);
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	assert_int_equal(docs.n, 0);

	/* the error list is bounded */
	for (int i = 0; i < 100; i++)
		assert_int_equal(moat_errs_add(&errs, "e%d", i), 0);
	assert_int_equal(errs.n, MOAT_MANIFEST_MAX_ERRS);
	assert_int_equal(errs.dropped, 100 - MOAT_MANIFEST_MAX_ERRS);
	assert_string_equal(errs.v[0], "e0");
	moat_errs_free(&errs);
}

/* ---- limits --------------------------------------------------------------------------------------- */
static char *nest(const char *open, const char *close, int n, const char *pre)
{
	size_t len = strlen(pre) + (strlen(open) + strlen(close)) * (size_t)n + 2;
	char *s = malloc(len), *p = s;

	assert_non_null(s);
	p += sprintf(p, "%s", pre);
	for (int i = 0; i < n; i++)
		p += sprintf(p, "%s", open);
	for (int i = 0; i < n; i++)
		p += sprintf(p, "%s", close);
	return s;
}

static void t_limits(void **state)
{
	struct res r;
	char *s;
	size_t n;

	(void)state;
	/* size */
	n = MOAT_MANIFEST_MAX_BYTES + 1;
	s = malloc(n);
	assert_non_null(s);
	memset(s, ' ', n);
	parse(&r, "big.yaml", s, n);
	expect_err(&r, -E2BIG, "big.yaml: ", "larger than 16777216 bytes");
	done(&r);
	free(s);

	/* documents: exactly the limit, then one more */
	n = MOAT_MANIFEST_MAX_DOCS;
	s = malloc(n * 12 + 16);
	s[0] = 0;
	for (size_t i = 0, o = 0; i < n; i++)
		o += (size_t)sprintf(s + o, "---\na: %zu\n", i % 10);
	parses(&r, s);
	expect_ok(&r, n);
	done(&r);
	strcat(s, "---\na: 1\n");
	parses(&r, s);
	expect_err(&r, -E2BIG, "t.yaml:", "more than 10000 documents");
	done(&r);
	free(s);
	/* List items count too */
	s = malloc(MOAT_MANIFEST_MAX_DOCS * 10 + 64);
	n = (size_t)sprintf(s, "{\"kind\": \"List\", \"items\": [");
	for (int i = 0; i <= MOAT_MANIFEST_MAX_DOCS; i++)
		n += (size_t)sprintf(s + n, "%s{\"a\":1}", i ? "," : "");
	sprintf(s + n, "]}");
	parses(&r, s);
	expect_err(&r, -E2BIG, "t.yaml:", "more than 10000 documents");
	done(&r);
	free(s);

	/* nesting: the root object is level 1 */
	s = nest("[", "]", MOAT_MANIFEST_MAX_DEPTH - 1, "a: ");
	parses(&r, s);
	expect_ok(&r, 1);
	done(&r);
	free(s);
	s = nest("[", "]", MOAT_MANIFEST_MAX_DEPTH, "a: ");
	parses(&r, s);
	expect_err(&r, -E2BIG, "t.yaml:1: ", "nested deeper than 64 levels");
	done(&r);
	free(s);
	s = nest("[", "]", MOAT_MANIFEST_MAX_DEPTH - 1, "{\"a\": ");
	strcat(s, "}");
	parses(&r, s);
	expect_ok(&r, 1);
	done(&r);
	free(s);
	s = nest("[", "]", MOAT_MANIFEST_MAX_DEPTH, "{\"a\": ");
	strcat(s, "}");
	parses(&r, s);
	expect_err(&r, -E2BIG, "t.yaml:1: ", "nested deeper than 64 levels");
	done(&r);
	free(s);
	/* far deeper than any parser stack should go */
	s = nest("[", "]", 200000, "");
	parses(&r, s);
	expect_err(&r, -E2BIG, "t.yaml:1: ", "nested deeper");
	done(&r);
	free(s);
	s = nest("- ", "", 5000, "a:\n");
	parses(&r, s);
	assert_true(r.rc < 0);
	done(&r);
	free(s);

	/* strings, YAML and JSON */
	n = MOAT_MANIFEST_MAX_STRING;
	s = malloc(n + 64);
	strcpy(s, "a: ");
	memset(s + 3, 'x', n);
	s[3 + n] = 0;
	parses(&r, s);
	expect_ok(&r, 1);
	done(&r);
	strcat(s, "x");
	parses(&r, s);
	expect_err(&r, -E2BIG, "t.yaml:1: ", "longer than 1048576 bytes");
	done(&r);
	strcpy(s, "{\"a\": \"");
	memset(s + 7, 'x', n + 1);
	strcpy(s + 8 + n, "\"}");
	parses(&r, s);
	expect_err(&r, -E2BIG, "t.yaml:1: ", "longer than 1048576 bytes");
	done(&r);
	/* escapes are longer than what they stand for */
	strcpy(s, "{\"a\": \"");
	for (size_t i = 0; i < n / 6; i++)
		memcpy(s + 7 + i * 6, "\\u0041", 6);
	strcpy(s + 7 + (n / 6) * 6, "\"}");
	parses(&r, s);
	expect_ok(&r, 1);
	done(&r);
	free(s);

	/* values: a billion laughs, and a flat JSON array */
	parses(&r, "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
		   "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
		   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
		   "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
		   "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
		   "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
		   "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
		   "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
		   "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n");
	expect_err(&r, -E2BIG, "t.yaml:", "more than 1048576 values");
	done(&r);
	n = MOAT_MANIFEST_MAX_NODES + 10;
	s = malloc(n * 2 + 16);
	strcpy(s, "{\"a\": [");
	for (size_t i = 0, o = 7; i < n; i++, o += 2)
		memcpy(s + o, "1,", 2);
	strcpy(s + 7 + n * 2 - 1, "]}");
	parses(&r, s);
	expect_err(&r, -E2BIG, "t.yaml:1: ", "more than 1048576 values");
	done(&r);
	free(s);
}

/* Many anchors and many aliases of the oldest: linear, not quadratic (a
 * regression makes this test take minutes). */
static void t_many_anchors(void **state)
{
	const size_t n = 100000;
	char *s = malloc(n * 24 + 16), *p = s;
	struct res r;

	(void)state;
	assert_non_null(s);
	p += sprintf(p, "a:\n");
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "- &a%zu x\n", i);
	p += sprintf(p, "b:\n");
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "- *a0\n");
	parses(&r, s);
	expect_ok(&r, 1);
	assert_int_equal(json_array_size(json_object_get(r.docs.v[0].json, "b")), n);
	done(&r);
	free(s);
}

/* ---- garbage ------------------------------------------------------------------------------------- */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void t_garbage(void **state)
{
	static const char base[] =
		"apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n"
		"  metadata: {name: a, namespace: y, labels: &l {app: web}}\n  spec:\n    podSelector: {matchLabels: *l}\n"
		"    ingress:\n    - from: [{podSelector: {}}]\n      ports: [{port: 80, protocol: TCP}]\n"
		"---\n{\"kind\": \"Pod\", \"metadata\": {\"name\": \"p\", \"labels\": {\"a\": \"b\"}}, \"x\": [1, 2.5, true, null]}\n";
	static const char junk[] = "{}[]:,-?&*!|>'\"%@`#\n\t \\\x80\xff";
	size_t ok = 0, bad = 0;
	struct res r;
	char buf[sizeof(base) + 64];

	(void)state;
	/* binary data */
	parse(&r, "bin",
	      "\x7f"
	      "ELF\x02\x01\x01\0\0\0",
	      10);
	expect_err(&r, -EINVAL, "bin:1: ", "binary data");
	done(&r);
	/* invalid UTF-8 */
	parses(&r, "a: \xff\xfe\xfd\n");
	expect_err(&r, -EINVAL, "t.yaml:", NULL);
	done(&r);
	/* every prefix of a valid file: an error or fewer documents, never a crash */
	for (size_t n = 0; n < sizeof(base) - 1; n++) {
		parse(&r, "cut", base, n);
		if (r.rc)
			assert_true(r.errs.n == 1 && !strncmp(r.errs.v[0], "cut", 3));
		done(&r);
	}
	/* random byte changes */
	for (int i = 0; i < 3000; i++) {
		size_t len = sizeof(base) - 1;

		memcpy(buf, base, len);
		for (int k = 1 + (int)(rnd() % 4); k > 0; k--) {
			size_t at = rnd() % len;
			switch (rnd() % 3) {
			case 0:
				buf[at] = junk[rnd() % (sizeof(junk) - 1)];
				break;
			case 1:
				memmove(buf + at, buf + at + 1, len - at - 1);
				len--;
				break;
			default:
				memmove(buf + at + 1, buf + at, len - at);
				buf[at] = junk[rnd() % (sizeof(junk) - 1)];
				len++;
				break;
			}
		}
		parse(&r, "fuzz", buf, len);
		if (r.rc) {
			assert_true(r.rc == -EINVAL || r.rc == -E2BIG);
			assert_int_equal(r.errs.n, 1);
			assert_true(!strncmp(r.errs.v[0], "fuzz", 4));
			assert_int_equal(r.docs.n, 0);
			bad++;
		} else {
			for (size_t d = 0; d < r.docs.n; d++)
				assert_true(json_is_object(r.docs.v[d].json));
			ok++;
		}
		done(&r);
	}
	print_message("garbage: %zu rejected, %zu accepted\n", bad, ok);
	assert_true(bad > 100);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_yaml_multi),   cmocka_unit_test(t_yaml_scalars),
		cmocka_unit_test(t_yaml_anchors), cmocka_unit_test(t_yaml_errors),
		cmocka_unit_test(t_json),         cmocka_unit_test(t_lists),
		cmocka_unit_test(t_files),        cmocka_unit_test(t_limits),
		cmocka_unit_test(t_many_anchors), cmocka_unit_test(t_garbage),
	};
	char dir[PATH_MAX];

	/* fixtures are relative to the source tree: run from anywhere */
	(void)argc;
	if (access(FIX, F_OK) && realpath(argv[0], dir)) {
		char *d = dirname(dir); /* build/tests/unit */
		if (chdir(d) || chdir("../../..") || access(FIX, F_OK))
			fprintf(stderr, "fixtures not found\n");
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
