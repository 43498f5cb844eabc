// SPDX-License-Identifier: Apache-2.0
/* Kubernetes objects into the object model (decode.h).
 *
 * Decisions where the APIs leave room (all deliberate, see the tests):
 *  - CIDRs with host bits set ("10.0.0.1/8") are accepted and masked, in
 *    NetworkPolicy ipBlock (the API server accepts them) and in ANP/BANP/CNP
 *    "networks" (the CRDs validate only isCIDR(), which accepts them too).
 *  - ipBlock.except entries must lie strictly inside cidr, same family (what
 *    the API server enforces).
 *  - A NetworkPolicy port given as a string is a port name; an all-digit
 *    string ("80") is an error, as in Kubernetes (a name needs a letter).
 *  - NetworkPolicy without policyTypes: Ingress, plus Egress when spec.egress
 *    has at least one rule: the API server's defaulting ("egress: []" adds
 *    no Egress).  "policyTypes: []" counts as absent, as there.
 *  - ANP/BANP/CNP peers: a peer with no field we know, or with one we know
 *    next to one we don't, is MOAT_PEER_INVALID (fail closed, anp-semantics
 *    section 5).  Fields of egress peers (networks, nodes, domainNames) in an
 *    ingress peer, and domainNames in a BANP, count as unknown.  Two known
 *    fields are an error.  domainNames in a Deny/Pass rule is an error (CRD
 *    rule).  Named ports next to networks/nodes peers are accepted (the
 *    standard v1alpha2 CRD accepts them); they match only pods.
 *  - portRange (v1alpha1): start <= end (the CRD does not check, equal is a
 *    single port); CNP range: start < end (CEL rule).  tcp: {} (no
 *    destinationPort) means every port of the protocol.
 *  - ANP namedPort / CNP destinationNamedPort carry no protocol: proto is
 *    set to TCP as a placeholder; the named container port decides.
 *  - Pods in phase Succeeded or Failed get no IPs (their IPs are reused).
 *  - "moat.io/audit" must be "true" or "false" when present.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "blueprint.h"
#include "moat/abi.h"
#include "util.h"

#define AUDIT_ANNOTATION  "moat.io/audit"
#define SAMPLE_ANNOTATION "moat.io/sample-every"
#define MAX_SAMPLE_EVERY  1000000000
#define MAX_RULE_NAME     100
#define MAX_OPAQUE        256 /* uid, resourceVersion */
#define ANP_MAX_NETWORKS  25

/* ---- name syntax -------------------------------------------------------------------- */
static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* [a-z0-9]([-a-z0-9]*[a-z0-9])? of length n */
static bool dns_label_n(const char *s, size_t n)
{
	if (!n || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

bool moat_valid_dns_label(const char *s)
{
	size_t n = strlen(s);
	return n <= 63 && dns_label_n(s, n);
}

bool moat_valid_dns_subdomain(const char *s)
{
	size_t n = strlen(s);
	const char *p = s;

	if (!n || n > 253)
		return false;
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (!dns_label_n(p, l))
			return false;
		if (!dot)
			return true;
		p = dot + 1;
	}
}

bool moat_valid_dns1035_label(const char *s)
{
	return moat_valid_dns_label(s) && s[0] >= 'a' && s[0] <= 'z';
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9] of length n, n <= 63 */
static bool qualified_name_n(const char *s, size_t n)
{
	if (!n || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

bool moat_valid_label_key(const char *s)
{
	const char *slash = strchr(s, '/');
	char prefix[254];
	size_t pl;

	if (!slash)
		return qualified_name_n(s, strlen(s));
	pl = (size_t)(slash - s);
	if (!pl || pl > 253 || strchr(slash + 1, '/'))
		return false;
	memcpy(prefix, s, pl);
	prefix[pl] = 0;
	return moat_valid_dns_subdomain(prefix) && qualified_name_n(slash + 1, strlen(slash + 1));
}

bool moat_valid_label_value(const char *s)
{
	size_t n = strlen(s);
	return !n || qualified_name_n(s, n);
}

bool moat_valid_port_name(const char *s)
{
	size_t n = strlen(s);
	bool letter = false;

	if (!n || n > 15 || s[0] == '-' || s[n - 1] == '-' || strstr(s, "--"))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
		letter |= s[i] >= 'a' && s[i] <= 'z';
	}
	return letter;
}

/* (\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.? */
static bool valid_domain_name(const char *s)
{
	size_t n = strlen(s), labels = 0;
	const char *p = s;

	if (!n || n > 253)
		return false;
	if (!strncmp(p, "*.", 2))
		p += 2;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);

		if (!l || !is_alnum(p[0]) || !is_alnum(p[l - 1]))
			return false;
		for (size_t i = 0; i < l; i++)
			if (!is_alnum(p[i]) && p[i] != '-' && p[i] != '_')
				return false;
		labels++;
		if (!dot)
			break;
		p = dot + 1; /* a trailing dot ends the loop with *p == 0 */
	}
	return labels >= 2;
}

/* ---- context and errors ------------------------------------------------------------- */
enum flavor {
	FL_NETPOL,
	FL_ANP,
	FL_BANP,
	FL_CNP
};

struct dctx {
	const char *source;
	const char *kind;
	const char *ns;
	const char *name;
	char *err;
	size_t errlen;
	char path[512];
	size_t plen;
	enum flavor fl;
	size_t peers; /* model peers of the policy so far */
	/* every (object, key) the decoder looked up: after a policy's spec is
	 * decoded, a key of a looked-at object that was never looked up is a
	 * field moat does not read (unknown_fields()) */
	struct seen_key {
		const json_t *obj;
		const char *key; /* a literal */
	} * seen;
	size_t nseen, seen_cap;
	bool seen_oom;
	bool track; /* recording (a policy's spec) */
};

static void mark(struct dctx *d, const json_t *obj, const char *key)
{
	if (!obj || !d->track || d->seen_oom)
		return;
	if (d->nseen == d->seen_cap) {
		size_t ncap = d->seen_cap ? d->seen_cap * 2 : 64;
		struct seen_key *n = realloc(d->seen, ncap * sizeof(*n));
		if (!n) {
			d->seen_oom = true;
			return;
		}
		d->seen = n;
		d->seen_cap = ncap;
	}
	d->seen[d->nseen++] = (struct seen_key){ obj, key };
}

/* fail(d, fmt, ...): records the error, is -EINVAL.  A macro so that the
 * value is visible to clang's static analyzer, which does not follow calls
 * into variadic functions (and would otherwise take every error path as
 * possibly returning 0). */
#define fail(d, ...) (fail_msg((d), __VA_ARGS__), -EINVAL)
static void fail_msg(struct dctx *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail_msg(struct dctx *d, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!d->err || !d->errlen)
		return;
	snprintf(d->err, d->errlen, "%s%s%s%s%s%s%s%s%s%s", d->source ? d->source : "", d->source ? ": " : "",
		 d->kind ? d->kind : "", d->kind && d->name ? " " : "",
		 d->kind && d->name && d->ns ? d->ns : "", d->kind && d->name && d->ns ? "/" : "",
		 d->kind && d->name ? d->name : "", d->kind ? ": " : "", d->plen ? d->path : "",
		 d->plen ? ": " : "");
	size_t l = strlen(d->err);
	if (l < d->errlen)
		snprintf(d->err + l, d->errlen - l, "%s", msg);
}

static int oom(struct dctx *d)
{
	if (d->err && d->errlen)
		snprintf(d->err, d->errlen, "out of memory");
	return -ENOMEM;
}

static size_t push_key(struct dctx *d, const char *key)
{
	size_t m = d->plen;
	int r = snprintf(d->path + m, sizeof(d->path) - m, "%s%s", m ? "." : "", key);
	d->plen = r < 0 ? m : m + (size_t)r >= sizeof(d->path) ? sizeof(d->path) - 1 : m + (size_t)r;
	return m;
}

static size_t push_idx(struct dctx *d, size_t i)
{
	size_t m = d->plen;
	int r = snprintf(d->path + m, sizeof(d->path) - m, "[%zu]", i);
	d->plen = r < 0 ? m : m + (size_t)r >= sizeof(d->path) ? sizeof(d->path) - 1 : m + (size_t)r;
	return m;
}

static void pop(struct dctx *d, size_t m)
{
	d->plen = m;
	d->path[m] = 0;
}

/* A string for messages: quoted, control characters escaped, long values
 * shortened. */
static const char *q(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	buf[o++] = '"';
	for (; *s && o + 8 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == '"' || c == '\\' || c == 0x7f)
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	if (*s) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = 0;
	return buf;
}
#define Q(s) q((s), (char[80]){ 0 }, 80)

/* ---- typed access; JSON null counts as absent ---------------------------------------------- */
static const char *type_name(json_type t)
{
	switch (t) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "a list";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	default:
		return "a boolean";
	}
}

static bool type_is(const json_t *v, json_type t)
{
	if (t == JSON_TRUE)
		return json_is_boolean(v);
	return json_typeof(v) == t;
}

/* *out: the member, NULL when absent or null.  Errors name parent.key. */
static int get(struct dctx *d, const json_t *obj, const char *key, json_type t, bool required, json_t **out)
{
	json_t *v = obj ? json_object_get(obj, key) : NULL;
	size_t m;
	int rc = 0;

	mark(d, obj, key);
	*out = NULL;
	if (json_is_null(v))
		v = NULL;
	if (!v && !required)
		return 0;
	m = push_key(d, key);
	if (!v)
		rc = fail(d, "required");
	else if (!type_is(v, t))
		rc = fail(d, "must be %s", type_name(t));
	else
		*out = v;
	pop(d, m);
	return rc;
}

static int get_str(struct dctx *d, const json_t *obj, const char *key, bool required, const char **out)
{
	json_t *v;
	int rc = get(d, obj, key, JSON_STRING, required, &v);

	*out = v ? json_string_value(v) : NULL;
	if (!rc && required && !*out)
		rc = -EINVAL; /* get() has failed already; said again for the static analyzer */
	if (!rc && v && strlen(*out) != json_string_length(v)) {
		size_t m = push_key(d, key);
		rc = fail(d, "contains a NUL character");
		pop(d, m);
	}
	return rc;
}

/* An integer in min..max; *present tells whether it was there. */
static int get_int(struct dctx *d, const json_t *obj, const char *key, bool required, json_int_t min,
		   json_int_t max, const char *range_msg, bool *present, json_int_t *out)
{
	json_t *v;
	int rc = get(d, obj, key, JSON_INTEGER, required, &v);
	size_t m;

	if (present)
		*present = v != NULL;
	if (rc || !v)
		return rc;
	*out = json_integer_value(v);
	if (*out < min || *out > max) {
		m = push_key(d, key);
		if (range_msg)
			rc = fail(d, "%" JSON_INTEGER_FORMAT " %s", *out, range_msg);
		else
			rc = fail(d,
				  "%" JSON_INTEGER_FORMAT " is out of range %" JSON_INTEGER_FORMAT
				  "..%" JSON_INTEGER_FORMAT,
				  *out, min, max);
		pop(d, m);
	}
	return rc;
}

/* A list of at most max items; min_one: an empty list is an error. */
static int get_list(struct dctx *d, const json_t *obj, const char *key, bool required, bool min_one,
		    size_t max, json_t **out)
{
	int rc = get(d, obj, key, JSON_ARRAY, required, out);
	size_t m;

	if (rc || !*out)
		return rc;
	m = push_key(d, key);
	if (json_array_size(*out) > max)
		rc = fail(d, "more than %zu items", max);
	else if (min_one && !json_array_size(*out))
		rc = fail(d, "must have at least one item");
	pop(d, m);
	return rc;
}

static int dup_str(struct dctx *d, const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : oom(d);
}

/* Exact Kubernetes spelling of L4 protocols. */
static int get_proto(struct dctx *d, const json_t *obj, const char *key, uint8_t *proto)
{
	const char *s;
	int rc = get_str(d, obj, key, false, &s);
	size_t m;

	*proto = IPPROTO_TCP;
	if (rc || !s)
		return rc;
	if (!strcmp(s, "TCP"))
		*proto = IPPROTO_TCP;
	else if (!strcmp(s, "UDP"))
		*proto = IPPROTO_UDP;
	else if (!strcmp(s, "SCTP"))
		*proto = IPPROTO_SCTP;
	else {
		m = push_key(d, key);
		rc = fail(d, "%s is not one of TCP, UDP, SCTP", Q(s));
		pop(d, m);
	}
	return rc;
}

/* ---- labels and selectors -------------------------------------------------------------------- */
static int dec_labels(struct dctx *d, const json_t *meta, struct moat_labels *l)
{
	json_t *lj, *v;
	const char *k;
	size_t m;
	int rc;

	rc = get(d, meta, "labels", JSON_OBJECT, false, &lj);
	if (rc || !lj)
		return rc;
	m = push_key(d, "labels");
	if (json_object_size(lj) > MOAT_MAX_LABELS) {
		rc = fail(d, "more than %d labels", MOAT_MAX_LABELS);
		goto out;
	}
	json_object_foreach(lj, k, v)
	{
		if (!moat_valid_label_key(k)) {
			rc = fail(d, "%s is not a valid label key", Q(k));
			goto out;
		}
		size_t m2 = push_key(d, k);
		if (!json_is_string(v))
			rc = fail(d, "must be a string");
		else if (!moat_valid_label_value(json_string_value(v)))
			rc = fail(d, "%s is not a valid label value", Q(json_string_value(v)));
		pop(d, m2);
		if (rc)
			goto out;
		if (moat_labels_set(l, k, json_string_value(v))) {
			rc = oom(d);
			goto out;
		}
	}
out:
	pop(d, m);
	return rc;
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int req_cmp(const void *pa, const void *pb)
{
	const struct moat_sel_req *a = pa, *b = pb;
	int c = strcmp(a->key, b->key);

	if (c)
		return c;
	if (a->op != b->op)
		return a->op < b->op ? -1 : 1;
	for (size_t i = 0; i < a->nvalues && i < b->nvalues; i++)
		if ((c = strcmp(a->values[i], b->values[i])))
			return c;
	return a->nvalues < b->nvalues ? -1 : a->nvalues > b->nvalues;
}

/* Sorted values and requirements, duplicates dropped: equal selectors get
 * equal representations. */
static void sel_normalize(struct moat_selector *s)
{
	size_t o = 0;

	for (size_t i = 0; i < s->n; i++) {
		struct moat_sel_req *r = &s->reqs[i];
		size_t w = 0;

		if (r->nvalues)
			qsort(r->values, r->nvalues, sizeof(*r->values), strp_cmp);
		for (size_t j = 0; j < r->nvalues; j++) {
			if (w && !strcmp(r->values[w - 1], r->values[j]))
				free(r->values[j]);
			else
				r->values[w++] = r->values[j];
		}
		r->nvalues = w;
	}
	if (s->n)
		qsort(s->reqs, s->n, sizeof(*s->reqs), req_cmp);
	for (size_t i = 0; i < s->n; i++) {
		if (o && !req_cmp(&s->reqs[o - 1], &s->reqs[i])) {
			free(s->reqs[i].key);
			for (size_t j = 0; j < s->reqs[i].nvalues; j++)
				free(s->reqs[i].values[j]);
			free(s->reqs[i].values);
		} else {
			s->reqs[o++] = s->reqs[i];
		}
	}
	s->n = o;
}

static const char *const sel_ops[] = { "In", "NotIn", "Exists", "DoesNotExist" };

static int dec_expr(struct dctx *d, const json_t *ej, struct moat_sel_req *r)
{
	const char *key, *op;
	json_t *vals;
	size_t m, nv;
	int rc, o;

	if (!json_is_object(ej))
		return fail(d, "must be an object");
	if ((rc = get_str(d, ej, "key", true, &key)))
		return rc;
	if (!moat_valid_label_key(key)) {
		m = push_key(d, "key");
		rc = fail(d, "%s is not a valid label key", Q(key));
		pop(d, m);
		return rc;
	}
	if ((rc = get_str(d, ej, "operator", true, &op)))
		return rc;
	for (o = 0; o < 4 && strcmp(op, sel_ops[o]); o++)
		;
	if (o == 4) {
		m = push_key(d, "operator");
		rc = fail(d, "%s is not one of In, NotIn, Exists, DoesNotExist", Q(op));
		pop(d, m);
		return rc;
	}
	if ((rc = get_list(d, ej, "values", false, false, MOAT_MAX_SEL_VALUES, &vals)))
		return rc;
	r->key = strdup(key);
	if (!r->key)
		return oom(d);
	r->op = (enum moat_sel_op)o;
	m = push_key(d, "values");
	nv = json_array_size(vals);
	if (o <= MOAT_SEL_NOT_IN && !nv)
		rc = fail(d, "must have at least one item for operator %s", op);
	else if (o > MOAT_SEL_NOT_IN && nv)
		rc = fail(d, "must be empty for operator %s", op);
	if (!rc && nv) {
		r->values = calloc(nv, sizeof(*r->values));
		if (!r->values)
			rc = oom(d);
	}
	for (size_t i = 0; !rc && i < nv; i++) {
		json_t *v = json_array_get(vals, i);
		size_t m2 = push_idx(d, i);

		if (!json_is_string(v))
			rc = fail(d, "must be a string");
		else if (!moat_valid_label_value(json_string_value(v)))
			rc = fail(d, "%s is not a valid label value", Q(json_string_value(v)));
		else if (!(r->values[r->nvalues] = strdup(json_string_value(v))))
			rc = oom(d);
		else
			r->nvalues++;
		pop(d, m2);
	}
	pop(d, m);
	return rc;
}

/* A metav1.LabelSelector (sj an object). */
static int dec_selector(struct dctx *d, const json_t *sj, struct moat_selector **out)
{
	json_t *ml, *me, *v;
	struct moat_selector *s;
	size_t n, m;
	const char *k;
	int rc;

	*out = NULL;
	if ((rc = get(d, sj, "matchLabels", JSON_OBJECT, false, &ml)) ||
	    (rc = get(d, sj, "matchExpressions", JSON_ARRAY, false, &me)))
		return rc;
	n = json_object_size(ml) + json_array_size(me);
	if (n > MOAT_MAX_SEL_REQS)
		return fail(d, "more than %d requirements", MOAT_MAX_SEL_REQS);
	s = calloc(1, sizeof(*s));
	if (!s || !(s->reqs = calloc(n ? n : 1, sizeof(*s->reqs)))) {
		free(s);
		return oom(d);
	}
	m = push_key(d, "matchLabels");
	json_object_foreach(ml, k, v)
	{
		struct moat_sel_req *r = &s->reqs[s->n];

		if (!moat_valid_label_key(k)) {
			rc = fail(d, "%s is not a valid label key", Q(k));
			break;
		}
		size_t m2 = push_key(d, k);
		if (!json_is_string(v))
			rc = fail(d, "must be a string");
		else if (!moat_valid_label_value(json_string_value(v)))
			rc = fail(d, "%s is not a valid label value", Q(json_string_value(v)));
		pop(d, m2);
		if (rc)
			break;
		s->n++;
		r->op = MOAT_SEL_IN;
		r->key = strdup(k);
		r->values = calloc(1, sizeof(*r->values));
		if (!r->key || !r->values || !(r->values[0] = strdup(json_string_value(v)))) {
			rc = oom(d);
			break;
		}
		r->nvalues = 1;
	}
	pop(d, m);
	m = push_key(d, "matchExpressions");
	for (size_t i = 0; !rc && i < json_array_size(me); i++) {
		size_t m2 = push_idx(d, i);
		rc = dec_expr(d, json_array_get(me, i), &s->reqs[s->n++]);
		pop(d, m2);
	}
	pop(d, m);
	if (rc) {
		moat_selector_free(s);
		return rc;
	}
	sel_normalize(s);
	*out = s;
	return 0;
}

/* The selector at obj.key; absent: *out NULL (or an error if required). */
static int get_selector(struct dctx *d, const json_t *obj, const char *key, bool required,
			struct moat_selector **out)
{
	json_t *sj;
	size_t m;
	int rc;

	*out = NULL;
	if ((rc = get(d, obj, key, JSON_OBJECT, required, &sj)) || !sj)
		return rc;
	m = push_key(d, key);
	rc = dec_selector(d, sj, out);
	pop(d, m);
	return rc;
}

static struct moat_selector *empty_selector(void)
{
	return calloc(1, sizeof(struct moat_selector));
}

/* ---- selectors in text form -------------------------------------------------- */
static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = 0;
	return s;
}

static int sel_req_text(char *t, struct moat_sel_req *r, char *err, size_t errlen)
{
	char *p, *key, *vals = NULL;

	t = trim(t);
	memset(r, 0, sizeof(*r));
	if (t[0] == '!') {
		key = trim(t + 1);
		r->op = MOAT_SEL_DOES_NOT_EXIST;
	} else if ((p = strstr(t, "!="))) {
		*p = 0;
		key = trim(t);
		vals = p + 2;
		r->op = MOAT_SEL_NOT_IN;
	} else if ((p = strchr(t, '='))) {
		*p = 0;
		key = trim(t);
		vals = p + 1 + (p[1] == '=');
		r->op = MOAT_SEL_IN;
	} else if ((p = strstr(t, " notin ")) || (p = strstr(t, " in "))) {
		bool notin = p[1] == 'n';
		char *open = strchr(p, '('), *close = strrchr(p, ')');
		*p = 0;
		key = trim(t);
		if (!open || !close || close < open || *trim(close + 1)) {
			snprintf(err, errlen, "%s: the values of in/notin go in parentheses", key);
			return -EINVAL;
		}
		*close = 0;
		vals = open + 1;
		r->op = notin ? MOAT_SEL_NOT_IN : MOAT_SEL_IN;
	} else {
		key = t;
		r->op = MOAT_SEL_EXISTS;
	}
	if (!moat_valid_label_key(key)) {
		snprintf(err, errlen, "\"%.80s\" is not a valid label key", key);
		return -EINVAL;
	}
	r->key = xstrdup(key);
	if (!vals)
		return 0;
	for (char *save = NULL, *v = strtok_r(vals, ",", &save); v; v = strtok_r(NULL, ",", &save)) {
		v = trim(v);
		if (!moat_valid_label_value(v) || r->nvalues >= MOAT_MAX_SEL_VALUES) {
			snprintf(err, errlen, "%s: \"%.80s\" is not a valid label value", key, v);
			return -EINVAL;
		}
		r->values = xrealloc(r->values, (r->nvalues + 1) * sizeof(*r->values));
		r->values[r->nvalues++] = xstrdup(v);
	}
	if (!r->nvalues && r->op == MOAT_SEL_IN && !strchr(vals - 1, '(')) {
		/* "key=" selects the empty value */
		r->values = xcalloc(1, sizeof(*r->values));
		r->values[r->nvalues++] = xstrdup("");
	}
	if (!r->nvalues) {
		snprintf(err, errlen, "%s: no values", key);
		return -EINVAL;
	}
	qsort(r->values, r->nvalues, sizeof(*r->values), strp_cmp);
	return 0;
}

int moat_selector_parse(const char *text, struct moat_selector **out, char *err, size_t errlen)
{
	struct moat_selector *s = xcalloc(1, sizeof(*s));
	char *buf = xstrdup(text ? text : ""), *p = buf, *start = buf;
	int depth = 0, rc = 0;

	*out = NULL;
	if (strlen(buf) > 4096) {
		snprintf(err, errlen, "a selector of more than 4096 characters");
		rc = -EINVAL;
	}
	for (; !rc; p++) {
		if (*p == '(')
			depth++;
		else if (*p == ')')
			depth--;
		if ((*p == ',' && depth == 0) || !*p) {
			bool end = !*p;
			*p = 0;
			if (*trim(start)) {
				if (s->n >= MOAT_MAX_SEL_REQS) {
					snprintf(err, errlen, "more than %d requirements", MOAT_MAX_SEL_REQS);
					rc = -EINVAL;
					break;
				}
				s->reqs = xrealloc(s->reqs, (s->n + 1) * sizeof(*s->reqs));
				rc = sel_req_text(start, &s->reqs[s->n], err, errlen);
				s->n++;
			}
			if (end)
				break;
			start = p + 1;
		}
	}
	free(buf);
	if (rc) {
		moat_selector_free(s);
		return rc;
	}
	sel_normalize(s);
	*out = s;
	return 0;
}

/* ---- metadata ------------------------------------------------------------------------------------ */
static int get_audit(struct dctx *d, const json_t *meta, bool *audit)
{
	json_t *an, *v;
	size_t m;
	int rc;

	*audit = false;
	if ((rc = get(d, meta, "annotations", JSON_OBJECT, false, &an)) || !an)
		return rc;
	v = json_object_get(an, AUDIT_ANNOTATION);
	if (!v || json_is_null(v))
		return 0;
	m = push_key(d, "annotations");
	push_key(d, AUDIT_ANNOTATION);
	if (json_is_string(v) && !strcmp(json_string_value(v), "true"))
		*audit = true;
	else if (!json_is_string(v) || strcmp(json_string_value(v), "false"))
		rc = json_is_string(v) ?
			     fail(d, "%s must be \"true\" or \"false\"", Q(json_string_value(v))) :
			     fail(d, "must be a string");
	pop(d, m);
	return rc;
}

static int get_addr(struct dctx *d, const char *s, struct moat_addr *out)
{
	if (moat_addr_parse(s, out))
		return fail(d, "%s is not an IP address", Q(s));
	return 0;
}

/* Adds a to v[*n] unless present; at most max. */
static int addr_add(struct dctx *d, struct moat_addr *v, size_t *n, size_t max, const struct moat_addr *a)
{
	for (size_t i = 0; i < *n; i++)
		if (v[i].family == a->family && !memcmp(v[i].a, a->a, sizeof(a->a)))
			return 0;
	if (*n >= max)
		return fail(d, "more than %zu addresses", max);
	v[(*n)++] = *a;
	return 0;
}

/* moat.io/sample-every: a decimal 0..MAX_SAMPLE_EVERY. */
static int get_sample(struct dctx *d, const json_t *meta, bool *has, uint32_t *n)
{
	json_t *an, *v;
	const char *s;
	char *end;
	size_t m;
	int rc;

	*has = false;
	*n = 0;
	if ((rc = get(d, meta, "annotations", JSON_OBJECT, false, &an)) || !an)
		return rc;
	v = json_object_get(an, SAMPLE_ANNOTATION);
	if (!v || json_is_null(v))
		return 0;
	m = push_key(d, "annotations");
	push_key(d, SAMPLE_ANNOTATION);
	s = json_string_value(v);
	if (!s) {
		rc = fail(d, "must be a string");
	} else {
		unsigned long long x;
		errno = 0;
		x = strtoull(s, &end, 10);
		if (!*s || *end || errno || s[0] == '-' || s[0] == '+' || x > MAX_SAMPLE_EVERY)
			rc = fail(d, "%s is not a number from 0 (no samples) to %d", Q(s), MAX_SAMPLE_EVERY);
		else {
			*has = true;
			*n = (uint32_t)x;
		}
	}
	pop(d, m);
	return rc;
}

/* Blueprint annotations of a Namespace (blueprint.h); others are not ours. */
static int dec_bp_annotations(struct dctx *d, const json_t *meta, struct moat_labels *l)
{
	json_t *an, *v;
	const char *k;
	size_t m;
	int rc;

	if ((rc = get(d, meta, "annotations", JSON_OBJECT, false, &an)) || !an)
		return rc;
	m = push_key(d, "annotations");
	json_object_foreach(an, k, v)
	{
		if (!moat_bp_key(k))
			continue;
		size_t m2 = push_key(d, k);
		if (l->n >= MOAT_MAX_LABELS)
			rc = fail(d, "more than %d blueprint annotations", MOAT_MAX_LABELS);
		else if (!json_is_string(v))
			rc = fail(d, "must be a string");
		else if (json_string_length(v) > MOAT_BP_MAX_VALUE ||
			 strlen(json_string_value(v)) != json_string_length(v))
			rc = fail(d, "must be a string of at most %d characters", MOAT_BP_MAX_VALUE);
		else if (moat_labels_set(l, k, json_string_value(v)))
			rc = oom(d);
		pop(d, m2);
		if (rc)
			break;
	}
	pop(d, m);
	return rc;
}

/* ---- Namespace, Pod, Node, Service --------------------------------------------------------------- */
static int dec_namespace(struct dctx *d, const json_t *doc, struct moat_object *o)
{
	const json_t *meta = json_object_get(doc, "metadata");
	struct moat_namespace *n;
	size_t m;
	int rc;

	n = o->u.namespace = calloc(1, sizeof(*n));
	if (!n || dup_str(d, o->name, &n->name))
		return oom(d);
	m = push_key(d, "metadata");
	rc = dec_labels(d, meta, &n->labels);
	if (!rc)
		rc = get_audit(d, meta, &n->audit);
	if (!rc)
		rc = dec_bp_annotations(d, meta, &n->bp_annotations);
	if (!rc)
		rc = get_sample(d, meta, &n->has_sample, &n->sample_every);
	pop(d, m);
	/* the API server always sets this one */
	if (!rc && moat_labels_set(&n->labels, "kubernetes.io/metadata.name", o->name))
		rc = oom(d);
	return rc;
}

static int dec_cports(struct dctx *d, const json_t *spec, struct moat_pod *p)
{
	json_t *cs;
	size_t m;
	int rc;

	if ((rc = get(d, spec, "containers", JSON_ARRAY, false, &cs)) || !cs)
		return rc;
	m = push_key(d, "containers");
	for (size_t i = 0; !rc && i < json_array_size(cs); i++) {
		json_t *c = json_array_get(cs, i), *ports = NULL;
		size_t m2 = push_idx(d, i);

		if (!json_is_object(c))
			rc = fail(d, "must be an object");
		else
			rc = get(d, c, "ports", JSON_ARRAY, false, &ports);
		if (!rc && ports) {
			size_t m3 = push_key(d, "ports");
			for (size_t j = 0; !rc && j < json_array_size(ports); j++) {
				json_t *pj = json_array_get(ports, j);
				size_t m4 = push_idx(d, j);
				struct moat_cport cp = { 0 };
				const char *name;
				json_int_t port;

				if (!json_is_object(pj))
					rc = fail(d, "must be an object");
				if (!rc)
					rc = get_int(d, pj, "containerPort", true, 1, 65535, "is not a port",
						     NULL, &port);
				if (!rc)
					rc = get_proto(d, pj, "protocol", &cp.proto);
				if (!rc)
					rc = get_str(d, pj, "name", false, &name);
				if (!rc && name && !moat_valid_port_name(name)) {
					size_t m5 = push_key(d, "name");
					rc = fail(d, "%s is not a valid port name", Q(name));
					pop(d, m5);
				}
				if (!rc && p->nports >= MOAT_MAX_CPORTS)
					rc = fail(d, "more than %d container ports in the pod",
						  MOAT_MAX_CPORTS);
				if (!rc) {
					cp.port = (uint16_t)port;
					if (!p->ports)
						p->ports = calloc(MOAT_MAX_CPORTS, sizeof(*p->ports));
					if (!p->ports || dup_str(d, name, &cp.name))
						rc = oom(d);
					else
						p->ports[p->nports++] = cp;
				}
				pop(d, m4);
			}
			pop(d, m3);
		}
		pop(d, m2);
	}
	pop(d, m);
	return rc;
}

static int dec_pod(struct dctx *d, const json_t *doc, struct moat_object *o)
{
	const json_t *meta = json_object_get(doc, "metadata");
	json_t *spec, *status, *hn, *ips;
	const char *node, *phase, *ip;
	struct moat_pod *p;
	struct moat_addr a;
	size_t m;
	int rc;

	p = o->u.pod = calloc(1, sizeof(*p));
	if (!p || dup_str(d, o->ns, &p->ns) || dup_str(d, o->name, &p->name))
		return oom(d);
	m = push_key(d, "metadata");
	rc = dec_labels(d, meta, &p->labels);
	pop(d, m);
	if (rc || (rc = get(d, doc, "spec", JSON_OBJECT, false, &spec)) ||
	    (rc = get(d, doc, "status", JSON_OBJECT, false, &status)))
		return rc;
	m = push_key(d, "spec");
	rc = get_str(d, spec, "nodeName", false, &node);
	if (!rc && node && !moat_valid_dns_subdomain(node)) {
		push_key(d, "nodeName");
		rc = fail(d, "%s is not a valid node name", Q(node));
	}
	if (!rc && node && dup_str(d, node, &p->node))
		rc = -ENOMEM;
	if (!rc && !(rc = get(d, spec, "hostNetwork", JSON_TRUE, false, &hn)))
		p->host_network = json_is_true(hn);
	if (!rc)
		rc = dec_cports(d, spec, p);
	pop(d, m);
	if (rc)
		return rc;

	m = push_key(d, "status");
	rc = get_str(d, status, "phase", false, &phase);
	/* a finished pod's IP may already belong to another pod */
	if (rc || (phase && (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed"))))
		goto out;
	if ((rc = get(d, status, "podIPs", JSON_ARRAY, false, &ips)))
		goto out;
	if (ips && json_array_size(ips)) {
		size_t m2 = push_key(d, "podIPs");
		for (size_t i = 0; !rc && i < json_array_size(ips); i++) {
			json_t *e = json_array_get(ips, i);
			size_t m3 = push_idx(d, i);

			if (!json_is_object(e))
				rc = fail(d, "must be an object");
			if (!rc)
				rc = get_str(d, e, "ip", true, &ip);
			if (!rc) {
				size_t m4 = push_key(d, "ip");
				rc = get_addr(d, ip, &a);
				pop(d, m4);
			}
			if (!rc)
				rc = addr_add(d, p->ips, &p->nips, MOAT_MAX_POD_IPS, &a);
			pop(d, m3);
		}
		pop(d, m2);
	} else if (!(rc = get_str(d, status, "podIP", false, &ip)) && ip && *ip) {
		size_t m2 = push_key(d, "podIP");
		rc = get_addr(d, ip, &a);
		if (!rc)
			rc = addr_add(d, p->ips, &p->nips, MOAT_MAX_POD_IPS, &a);
		pop(d, m2);
	}
out:
	pop(d, m);
	return rc;
}

static int dec_node(struct dctx *d, const json_t *doc, struct moat_object *o)
{
	const json_t *meta = json_object_get(doc, "metadata");
	json_t *status, *addrs;
	struct moat_node *n;
	size_t m;
	int rc;

	n = o->u.node = calloc(1, sizeof(*n));
	if (!n || dup_str(d, o->name, &n->name))
		return oom(d);
	m = push_key(d, "metadata");
	rc = dec_labels(d, meta, &n->labels);
	pop(d, m);
	if (rc || (rc = get(d, doc, "status", JSON_OBJECT, false, &status)))
		return rc;
	m = push_key(d, "status");
	rc = get(d, status, "addresses", JSON_ARRAY, false, &addrs);
	if (!rc && addrs) {
		size_t m2 = push_key(d, "addresses");
		for (size_t i = 0; !rc && i < json_array_size(addrs); i++) {
			json_t *e = json_array_get(addrs, i);
			size_t m3 = push_idx(d, i);
			const char *type, *addr;
			struct moat_addr a;

			if (!json_is_object(e))
				rc = fail(d, "must be an object");
			if (!rc)
				rc = get_str(d, e, "type", true, &type);
			/* Hostname, InternalDNS...: not addresses we match */
			if (!rc && (!strcmp(type, "InternalIP") || !strcmp(type, "ExternalIP"))) {
				rc = get_str(d, e, "address", true, &addr);
				if (!rc) {
					size_t m4 = push_key(d, "address");
					rc = get_addr(d, addr, &a);
					pop(d, m4);
				}
				if (!rc)
					rc = addr_add(d, n->addrs, &n->naddrs, MOAT_MAX_NODE_ADDRS, &a);
			}
			pop(d, m3);
		}
		pop(d, m2);
	}
	pop(d, m);
	return rc;
}

static int dec_service(struct dctx *d, const json_t *doc, struct moat_object *o)
{
	struct moat_service *s;
	json_t *spec, *ips;
	struct moat_addr a;
	const char *ip;
	size_t m;
	int rc;

	s = o->u.service = calloc(1, sizeof(*s));
	if (!s || dup_str(d, o->ns, &s->ns) || dup_str(d, o->name, &s->name))
		return oom(d);
	if ((rc = get(d, doc, "spec", JSON_OBJECT, false, &spec)))
		return rc;
	m = push_key(d, "spec");
	rc = get(d, spec, "clusterIPs", JSON_ARRAY, false, &ips);
	if (!rc && ips && json_array_size(ips)) {
		size_t m2 = push_key(d, "clusterIPs");
		for (size_t i = 0; !rc && i < json_array_size(ips); i++) {
			json_t *e = json_array_get(ips, i);
			size_t m3 = push_idx(d, i);

			if (!json_is_string(e)) {
				rc = fail(d, "must be a string");
			} else {
				ip = json_string_value(e);
				/* headless */
				if (*ip && strcmp(ip, "None")) {
					rc = get_addr(d, ip, &a);
					if (!rc)
						rc = addr_add(d, s->ips, &s->nips, MOAT_MAX_POD_IPS, &a);
				}
			}
			pop(d, m3);
		}
		pop(d, m2);
	} else if (!rc && !(rc = get_str(d, spec, "clusterIP", false, &ip)) && ip && *ip &&
		   strcmp(ip, "None")) {
		size_t m2 = push_key(d, "clusterIP");
		rc = get_addr(d, ip, &a);
		if (!rc)
			rc = addr_add(d, s->ips, &s->nips, MOAT_MAX_POD_IPS, &a);
		pop(d, m2);
	}
	pop(d, m);
	return rc;
}

/* ---- shared policy pieces ------------------------------------------------------------------------- */
/* Appends a zeroed peer to r, growing its array; bounded per policy. */
static struct moat_peer *peer_new(struct dctx *d, struct moat_rule *r, size_t *cap, int *rc)
{
	if (d->peers >= MOAT_MAX_POLICY_PEERS) {
		*rc = fail(d, "the policy has more than %d peers", MOAT_MAX_POLICY_PEERS);
		return NULL;
	}
	if (r->npeers == *cap) {
		size_t nc = *cap ? *cap * 2 : 4;
		struct moat_peer *v = realloc(r->peers, nc * sizeof(*v));
		if (!v) {
			*rc = oom(d);
			return NULL;
		}
		r->peers = v;
		*cap = nc;
	}
	d->peers++;
	memset(&r->peers[r->npeers], 0, sizeof(r->peers[0]));
	return &r->peers[r->npeers++];
}

static int parse_cidr_str(struct dctx *d, const json_t *v, struct moat_cidr *c)
{
	if (!json_is_string(v))
		return fail(d, "must be a string");
	if (moat_cidr_parse(json_string_value(v), c))
		return fail(d, "%s is not a CIDR", Q(json_string_value(v)));
	return 0;
}

/* ---- NetworkPolicy ------------------------------------------------------------------------------------ */
static int dec_np_peer(struct dctx *d, const json_t *pj, struct moat_peer *pe)
{
	json_t *ipb, *exc, *pod, *nsj, *cidr;
	char cb[64];
	size_t m;
	int rc;

	if (!json_is_object(pj))
		return fail(d, "must be an object");
	if ((rc = get(d, pj, "ipBlock", JSON_OBJECT, false, &ipb)) ||
	    (rc = get(d, pj, "podSelector", JSON_OBJECT, false, &pod)) ||
	    (rc = get(d, pj, "namespaceSelector", JSON_OBJECT, false, &nsj)))
		return rc;
	if (ipb && (pod || nsj))
		return fail(d, "ipBlock cannot be combined with podSelector or namespaceSelector");
	if (!ipb && !pod && !nsj)
		return fail(d, "must set podSelector, namespaceSelector or ipBlock");
	if (!ipb) {
		pe->kind = MOAT_PEER_PODS;
		if ((rc = get_selector(d, pj, "namespaceSelector", false, &pe->ns_sel)))
			return rc;
		return get_selector(d, pj, "podSelector", false, &pe->pod_sel);
	}
	pe->kind = MOAT_PEER_CIDR;
	m = push_key(d, "ipBlock");
	rc = get(d, ipb, "cidr", JSON_STRING, true, &cidr);
	if (!rc) {
		size_t m2 = push_key(d, "cidr");
		rc = parse_cidr_str(d, cidr, &pe->cidr);
		pop(d, m2);
	}
	if (!rc)
		rc = get_list(d, ipb, "except", false, false, MOAT_MAX_EXCEPT, &exc);
	if (!rc && exc && json_array_size(exc)) {
		size_t m2 = push_key(d, "except");
		pe->except = calloc(json_array_size(exc), sizeof(*pe->except));
		if (!pe->except)
			rc = oom(d);
		for (size_t i = 0; !rc && i < json_array_size(exc); i++) {
			struct moat_cidr *e = &pe->except[i];
			size_t m3 = push_idx(d, i);

			rc = parse_cidr_str(d, json_array_get(exc, i), e);
			if (!rc && (e->family != pe->cidr.family || e->plen <= pe->cidr.plen ||
				    !moat_cidr_within(e, &pe->cidr)))
				rc = fail(d, "%s is not strictly inside %s",
					  Q(json_string_value(json_array_get(exc, i))),
					  moat_cidr_str(&pe->cidr, cb));
			if (!rc)
				pe->nexcept++;
			pop(d, m3);
		}
		pop(d, m2);
	}
	pop(d, m);
	return rc;
}

static int dec_np_port(struct dctx *d, const json_t *pj, struct moat_port_spec *ps)
{
	json_t *pv, *ev;
	json_int_t end = 0;
	size_t m;
	int rc;

	if (!json_is_object(pj))
		return fail(d, "must be an object");
	if ((rc = get_proto(d, pj, "protocol", &ps->proto)))
		return rc;
	mark(d, pj, "port");
	pv = json_object_get(pj, "port");
	if (pv && !json_is_null(pv)) {
		m = push_key(d, "port");
		if (json_is_integer(pv)) {
			if (json_integer_value(pv) < 1 || json_integer_value(pv) > 65535)
				rc = fail(d, "%" JSON_INTEGER_FORMAT " is not a port",
					  json_integer_value(pv));
			else
				ps->port = (uint16_t)json_integer_value(pv);
		} else if (json_is_string(pv)) {
			const char *s = json_string_value(pv);
			if (s[0] && strspn(s, "0123456789") == strlen(s))
				rc = fail(d, "%s is a number in quotes; a port name needs a letter", Q(s));
			else if (!moat_valid_port_name(s))
				rc = fail(d, "%s is not a valid port name", Q(s));
			else if (dup_str(d, s, &ps->named))
				rc = -ENOMEM;
		} else {
			rc = fail(d, "must be an integer or a string");
		}
		pop(d, m);
		if (rc)
			return rc;
	}
	ev = json_object_get(pj, "endPort");
	if (!ev || json_is_null(ev))
		return 0;
	if ((rc = get_int(d, pj, "endPort", false, 1, 65535, "is not a port", NULL, &end)))
		return rc;
	m = push_key(d, "endPort");
	if (!ps->port)
		rc = fail(d, "needs a numeric port");
	else if (end < ps->port)
		rc = fail(d, "%" JSON_INTEGER_FORMAT " is less than port %u", end, ps->port);
	else if (end > ps->port)
		ps->end_port = (uint16_t)end;
	pop(d, m);
	return rc;
}

static int dec_np_rules(struct dctx *d, const json_t *spec, int dir, struct moat_policy *p)
{
	const char *key = dir == MOAT_DIR_INGRESS ? "ingress" : "egress";
	const char *pkey = dir == MOAT_DIR_INGRESS ? "from" : "to";
	json_t *rules;
	size_t m;
	int rc;

	if ((rc = get_list(d, spec, key, false, false, MOAT_MAX_RULES_PER_DIR, &rules)) || !rules ||
	    !json_array_size(rules))
		return rc;
	p->rules[dir] = calloc(json_array_size(rules), sizeof(*p->rules[dir]));
	if (!p->rules[dir])
		return oom(d);
	p->nrules[dir] = json_array_size(rules);
	m = push_key(d, key);
	for (size_t i = 0; !rc && i < json_array_size(rules); i++) {
		json_t *rj = json_array_get(rules, i), *peers, *ports;
		struct moat_rule *r = &p->rules[dir][i];
		size_t m2 = push_idx(d, i);

		r->action = MOAT_A_ALLOW;
		if (!json_is_object(rj))
			rc = fail(d, "must be an object");
		if (!rc)
			rc = get_list(d, rj, pkey, false, false, MOAT_MAX_PEERS, &peers);
		if (!rc)
			rc = get_list(d, rj, "ports", false, false, MOAT_MAX_PORTS, &ports);
		size_t np = rc ? 0 : json_array_size(peers);
		if (!rc) {
			/* no from/to, or an empty one: every source/destination */
			r->all_peers = !np;
			if (np && !(r->peers = calloc(np, sizeof(*r->peers))))
				rc = oom(d);
		}
		if (!rc && np) {
			size_t m3 = push_key(d, pkey);
			for (size_t j = 0; !rc && j < np; j++) {
				size_t m4 = push_idx(d, j);
				r->npeers++;
				d->peers++;
				rc = dec_np_peer(d, json_array_get(peers, j), &r->peers[j]);
				pop(d, m4);
			}
			pop(d, m3);
		}
		if (!rc && json_array_size(ports)) {
			size_t m3 = push_key(d, "ports");
			r->ports = calloc(json_array_size(ports), sizeof(*r->ports));
			if (!r->ports)
				rc = oom(d);
			for (size_t j = 0; !rc && j < json_array_size(ports); j++) {
				size_t m4 = push_idx(d, j);
				r->nports++;
				rc = dec_np_port(d, json_array_get(ports, j), &r->ports[j]);
				pop(d, m4);
			}
			pop(d, m3);
		}
		pop(d, m2);
	}
	pop(d, m);
	return rc;
}

static int dec_netpol(struct dctx *d, const json_t *doc, struct moat_policy *p)
{
	json_t *spec, *types, *eg;
	size_t m;
	int rc;

	p->kind = MOAT_K_NETPOL;
	p->tier = MOAT_TIER_NETPOL;
	if ((rc = get(d, doc, "spec", JSON_OBJECT, false, &spec)))
		return rc;
	m = push_key(d, "spec");
	rc = get_selector(d, spec, "podSelector", false, &p->subj_pod);
	/* absent or null: every pod of the namespace */
	if (!rc && !p->subj_pod && !(p->subj_pod = empty_selector()))
		rc = oom(d);
	if (!rc)
		rc = get_list(d, spec, "policyTypes", false, false, 2, &types);
	if (!rc && json_array_size(types)) {
		size_t m2 = push_key(d, "policyTypes");
		for (size_t i = 0; !rc && i < json_array_size(types); i++) {
			json_t *t = json_array_get(types, i);
			size_t m3 = push_idx(d, i);

			if (!json_is_string(t))
				rc = fail(d, "must be a string");
			else if (!strcmp(json_string_value(t), "Ingress"))
				p->dir[MOAT_DIR_INGRESS] = true;
			else if (!strcmp(json_string_value(t), "Egress"))
				p->dir[MOAT_DIR_EGRESS] = true;
			else
				rc = fail(d, "%s is not one of Ingress, Egress", Q(json_string_value(t)));
			pop(d, m3);
		}
		pop(d, m2);
	} else if (!rc) {
		/* the API server's defaulting */
		eg = json_object_get(spec, "egress");
		p->dir[MOAT_DIR_INGRESS] = true;
		p->dir[MOAT_DIR_EGRESS] = json_is_array(eg) && json_array_size(eg);
	}
	if (!rc)
		rc = dec_np_rules(d, spec, MOAT_DIR_INGRESS, p);
	if (!rc)
		rc = dec_np_rules(d, spec, MOAT_DIR_EGRESS, p);
	pop(d, m);
	return rc;
}

/* ---- AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy -------------------------------- */
enum {
	PF_NAMESPACES = 1,
	PF_PODS = 2,
	PF_NODES = 4,
	PF_NETWORKS = 8,
	PF_DOMAINS = 16,
};

static const char *const peer_field_names[] = { "namespaces", "pods", "nodes", "networks", "domainNames" };

static unsigned peer_fields(const struct dctx *d, int dir)
{
	if (dir == MOAT_DIR_INGRESS)
		return PF_NAMESPACES | PF_PODS;
	if (d->fl == FL_BANP)
		return PF_NAMESPACES | PF_PODS | PF_NODES | PF_NETWORKS;
	return PF_NAMESPACES | PF_PODS | PF_NODES | PF_NETWORKS | PF_DOMAINS;
}

static size_t max_items(const struct dctx *d)
{
	return d->fl == FL_CNP ? 25 : 100;
}

/* {namespaceSelector, podSelector}.  v1alpha2 makes namespaceSelector
 * optional (absent: every namespace, an empty selector). */
static int dec_namespaced_pod(struct dctx *d, const json_t *obj, const char *key,
			      struct moat_selector **ns_sel, struct moat_selector **pod_sel, bool ns_null_ok)
{
	json_t *pj;
	size_t m;
	int rc;

	if ((rc = get(d, obj, key, JSON_OBJECT, true, &pj)))
		return rc;
	m = push_key(d, key);
	rc = get_selector(d, pj, "namespaceSelector", d->fl != FL_CNP, ns_sel);
	if (!rc && !*ns_sel && !ns_null_ok && !(*ns_sel = empty_selector()))
		rc = oom(d);
	if (!rc)
		rc = get_selector(d, pj, "podSelector", true, pod_sel);
	pop(d, m);
	return rc;
}

static int dec_cluster_peer(struct dctx *d, const json_t *pj, int dir, enum moat_action action,
			    struct moat_rule *r, size_t *cap)
{
	unsigned allowed = peer_fields(d, dir), known = 0;
	size_t nknown = 0, nunknown = 0;
	struct moat_peer *pe;
	const char *k;
	json_t *v, *list;
	int rc = 0;

	if (!json_is_object(pj))
		return fail(d, "must be an object");
	json_object_foreach((json_t *)pj, k, v)
	{
		unsigned bit = 0;

		if (json_is_null(v))
			continue;
		for (unsigned i = 0; i < 5; i++)
			if (!strcmp(k, peer_field_names[i]))
				bit = (1u << i) & allowed;
		if (bit) {
			known |= bit;
			nknown++;
		} else {
			nunknown++;
		}
	}
	if (nknown > 1) {
		char names[96] = "";
		for (unsigned i = 0; i < 5; i++)
			if (known & (1u << i))
				snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
					 names[0] ? " and " : "", peer_field_names[i]);
		return fail(d, "sets %s; a peer has exactly one", names);
	}
	if (!nknown || nunknown) {
		/* a newer API than ours: fail closed (the compiler makes an Allow
		 * rule match nothing and a Deny/Pass rule deny everything) */
		if (!(pe = peer_new(d, r, cap, &rc)))
			return rc;
		pe->kind = MOAT_PEER_INVALID;
		return 0;
	}
	switch (known) {
	case PF_NAMESPACES:
		if (!(pe = peer_new(d, r, cap, &rc)))
			return rc;
		pe->kind = MOAT_PEER_PODS;
		return get_selector(d, pj, "namespaces", true, &pe->ns_sel);
	case PF_PODS:
		if (!(pe = peer_new(d, r, cap, &rc)))
			return rc;
		pe->kind = MOAT_PEER_PODS;
		return dec_namespaced_pod(d, pj, "pods", &pe->ns_sel, &pe->pod_sel, false);
	case PF_NODES:
		if (!(pe = peer_new(d, r, cap, &rc)))
			return rc;
		pe->kind = MOAT_PEER_NODES;
		return get_selector(d, pj, "nodes", true, &pe->ns_sel);
	case PF_NETWORKS: {
		size_t m;

		if ((rc = get_list(d, pj, "networks", true, true, ANP_MAX_NETWORKS, &list)))
			return rc;
		m = push_key(d, "networks");
		for (size_t i = 0; !rc && i < json_array_size(list); i++) {
			size_t m2 = push_idx(d, i);
			struct moat_cidr c;

			rc = parse_cidr_str(d, json_array_get(list, i), &c);
			if (!rc && (pe = peer_new(d, r, cap, &rc))) {
				pe->kind = MOAT_PEER_CIDR;
				pe->cidr = c;
			}
			pop(d, m2);
		}
		pop(d, m);
		return rc;
	}
	case PF_DOMAINS: {
		size_t m;

		if ((rc = get_list(d, pj, "domainNames", true, true, ANP_MAX_NETWORKS, &list)))
			return rc;
		m = push_key(d, "domainNames");
		if (action != MOAT_A_ALLOW)
			rc = fail(d, "only allowed in %s rules", d->fl == FL_CNP ? "Accept" : "Allow");
		for (size_t i = 0; !rc && i < json_array_size(list); i++) {
			json_t *e = json_array_get(list, i);
			size_t m2 = push_idx(d, i);

			if (!json_is_string(e))
				rc = fail(d, "must be a string");
			else if (!valid_domain_name(json_string_value(e)))
				rc = fail(d, "%s is not a domain name", Q(json_string_value(e)));
			pop(d, m2);
		}
		pop(d, m);
		/* matched by nobody yet: decoded so that it can be reported */
		if (!rc && (pe = peer_new(d, r, cap, &rc)))
			pe->kind = MOAT_PEER_DOMAINS;
		return rc;
	}
	}
	return fail(d, "internal error: peer field %u", known);
}

static int dec_anp_port(struct dctx *d, const json_t *pj, struct moat_port_spec *ps)
{
	json_t *num, *range, *named;
	json_int_t a = 0, b = 0;
	size_t m;
	int rc;

	if (!json_is_object(pj))
		return fail(d, "must be an object");
	if ((rc = get(d, pj, "portNumber", JSON_OBJECT, false, &num)) ||
	    (rc = get(d, pj, "portRange", JSON_OBJECT, false, &range)) ||
	    (rc = get(d, pj, "namedPort", JSON_STRING, false, &named)))
		return rc;
	if (!!num + !!range + !!named != 1)
		return fail(d, "must set exactly one of portNumber, portRange, namedPort");
	if (named) {
		const char *s = json_string_value(named);

		ps->proto = IPPROTO_TCP; /* placeholder: the container port decides */
		m = push_key(d, "namedPort");
		if (!moat_valid_port_name(s))
			rc = fail(d, "%s is not a valid port name", Q(s));
		else if (dup_str(d, s, &ps->named))
			rc = -ENOMEM;
		pop(d, m);
		return rc;
	}
	m = push_key(d, num ? "portNumber" : "portRange");
	rc = get_proto(d, num ? num : range, "protocol", &ps->proto);
	if (!rc && num) {
		rc = get_int(d, num, "port", true, 1, 65535, "is not a port", NULL, &a);
		ps->port = (uint16_t)a;
	} else if (!rc) {
		rc = get_int(d, range, "start", true, 1, 65535, "is not a port", NULL, &a);
		if (!rc)
			rc = get_int(d, range, "end", true, 1, 65535, "is not a port", NULL, &b);
		if (!rc && b < a) {
			push_key(d, "end");
			rc = fail(d, "%" JSON_INTEGER_FORMAT " is less than start %" JSON_INTEGER_FORMAT, b,
				  a);
		}
		if (!rc) {
			ps->port = (uint16_t)a;
			ps->end_port = a == b ? 0 : (uint16_t)b;
		}
	}
	pop(d, m);
	return rc;
}

static int dec_cnp_protocol(struct dctx *d, const json_t *pj, struct moat_port_spec *ps)
{
	static const char *const names[] = { "tcp", "udp", "sctp" };
	static const uint8_t protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP };
	json_t *l4[3], *named, *dp, *range;
	int rc, which = -1, n = 0;
	json_int_t a = 0, b = 0;
	bool has_num;
	size_t m;

	if (!json_is_object(pj))
		return fail(d, "must be an object");
	for (int i = 0; i < 3; i++) {
		if ((rc = get(d, pj, names[i], JSON_OBJECT, false, &l4[i])))
			return rc;
		if (l4[i]) {
			which = i;
			n++;
		}
	}
	if ((rc = get(d, pj, "destinationNamedPort", JSON_STRING, false, &named)))
		return rc;
	if (n + !!named != 1)
		return fail(d, "must set exactly one of tcp, udp, sctp, destinationNamedPort");
	if (named) {
		const char *s = json_string_value(named);

		ps->proto = IPPROTO_TCP; /* placeholder: the container port decides */
		m = push_key(d, "destinationNamedPort");
		if (!moat_valid_port_name(s))
			rc = fail(d, "%s is not a valid port name", Q(s));
		else if (dup_str(d, s, &ps->named))
			rc = -ENOMEM;
		pop(d, m);
		return rc;
	}
	ps->proto = protos[which];
	m = push_key(d, names[which]);
	/* no destinationPort: every port of the protocol */
	rc = get(d, l4[which], "destinationPort", JSON_OBJECT, false, &dp);
	if (!rc && dp) {
		size_t m2 = push_key(d, "destinationPort");

		rc = get_int(d, dp, "number", false, 1, 65535, "is not a port", &has_num, &a);
		if (!rc)
			rc = get(d, dp, "range", JSON_OBJECT, false, &range);
		if (!rc && has_num + !!range != 1)
			rc = fail(d, "must set exactly one of number, range");
		if (!rc && has_num)
			ps->port = (uint16_t)a;
		if (!rc && range) {
			size_t m3 = push_key(d, "range");
			rc = get_int(d, range, "start", true, 1, 65535, "is not a port", NULL, &a);
			if (!rc)
				rc = get_int(d, range, "end", true, 1, 65535, "is not a port", NULL, &b);
			if (!rc && b <= a) {
				push_key(d, "end");
				rc = fail(d,
					  "%" JSON_INTEGER_FORMAT
					  " is not greater than start %" JSON_INTEGER_FORMAT,
					  b, a);
			}
			if (!rc) {
				ps->port = (uint16_t)a;
				ps->end_port = (uint16_t)b;
			}
			pop(d, m3);
		}
		pop(d, m2);
	}
	pop(d, m);
	return rc;
}

static int dec_action(struct dctx *d, const json_t *rj, enum moat_action *a)
{
	const char *s;
	size_t m;
	int rc;

	if ((rc = get_str(d, rj, "action", true, &s)))
		return rc;
	if (!strcmp(s, d->fl == FL_CNP ? "Accept" : "Allow"))
		*a = MOAT_A_ALLOW;
	else if (!strcmp(s, "Deny"))
		*a = MOAT_A_DENY;
	else if (!strcmp(s, "Pass") && d->fl != FL_BANP)
		*a = MOAT_A_PASS;
	else {
		m = push_key(d, "action");
		rc = fail(d, "%s is not one of %s", Q(s),
			  d->fl == FL_CNP  ? "Accept, Deny, Pass" :
			  d->fl == FL_BANP ? "Allow, Deny" :
					     "Allow, Deny, Pass");
		pop(d, m);
	}
	return rc;
}

static int dec_cluster_rule(struct dctx *d, const json_t *rj, int dir, struct moat_rule *r)
{
	const char *pkey = dir == MOAT_DIR_INGRESS ? "from" : "to";
	const char *portkey = d->fl == FL_CNP ? "protocols" : "ports";
	const char *wrong = d->fl == FL_CNP ? "ports" : "protocols";
	json_t *peers, *ports, *w;
	const char *name;
	size_t cap = 0, m;
	int rc;

	if (!json_is_object(rj))
		return fail(d, "must be an object");
	if ((rc = get_str(d, rj, "name", false, &name)))
		return rc;
	if (name && strlen(name) > MAX_RULE_NAME) {
		m = push_key(d, "name");
		rc = fail(d, "longer than %d characters", MAX_RULE_NAME);
		pop(d, m);
		return rc;
	}
	if (dup_str(d, name, &r->name) || (rc = dec_action(d, rj, &r->action)))
		return rc ? rc : -ENOMEM;
	w = json_object_get(rj, wrong);
	if (w && !json_is_null(w)) {
		m = push_key(d, wrong);
		rc = fail(d, "not a field of %s; use %s", d->kind, portkey);
		pop(d, m);
		return rc;
	}
	if ((rc = get_list(d, rj, pkey, true, true, max_items(d), &peers)) ||
	    (rc = get_list(d, rj, portkey, false, true, max_items(d), &ports)))
		return rc;
	m = push_key(d, pkey);
	for (size_t i = 0; !rc && i < json_array_size(peers); i++) {
		size_t m2 = push_idx(d, i);
		rc = dec_cluster_peer(d, json_array_get(peers, i), dir, r->action, r, &cap);
		pop(d, m2);
	}
	pop(d, m);
	if (rc || !ports)
		return rc;
	r->ports = calloc(json_array_size(ports), sizeof(*r->ports));
	if (!r->ports)
		return oom(d);
	m = push_key(d, portkey);
	for (size_t i = 0; !rc && i < json_array_size(ports); i++) {
		size_t m2 = push_idx(d, i);
		r->nports++;
		rc = d->fl == FL_CNP ? dec_cnp_protocol(d, json_array_get(ports, i), &r->ports[i]) :
				       dec_anp_port(d, json_array_get(ports, i), &r->ports[i]);
		pop(d, m2);
	}
	pop(d, m);
	return rc;
}

static int dec_subject(struct dctx *d, const json_t *spec, struct moat_policy *p)
{
	json_t *sj, *nsj, *pj;
	size_t m;
	int rc;

	if ((rc = get(d, spec, "subject", JSON_OBJECT, true, &sj)))
		return rc;
	m = push_key(d, "subject");
	if (!(rc = get(d, sj, "namespaces", JSON_OBJECT, false, &nsj)) &&
	    !(rc = get(d, sj, "pods", JSON_OBJECT, false, &pj))) {
		if (!!nsj + !!pj != 1)
			rc = fail(d, "must set exactly one of namespaces, pods");
		else if (nsj)
			rc = get_selector(d, sj, "namespaces", true, &p->subj_ns);
		else
			/* v1alpha2: no namespaceSelector selects every namespace */
			rc = dec_namespaced_pod(d, sj, "pods", &p->subj_ns, &p->subj_pod, true);
	}
	pop(d, m);
	return rc;
}

static int dec_cluster_policy(struct dctx *d, const json_t *doc, struct moat_policy *p)
{
	json_t *spec, *rules;
	json_int_t prio = 0;
	size_t m;
	int rc;

	switch (d->fl) {
	case FL_ANP:
		p->kind = MOAT_K_ANP;
		p->tier = MOAT_TIER_ADMIN;
		break;
	case FL_BANP:
		p->kind = MOAT_K_BANP;
		p->tier = MOAT_TIER_BASELINE;
		/* a singleton (CEL rule on the CRD) */
		if (!p->name || strcmp(p->name, "default")) {
			m = push_key(d, "metadata");
			push_key(d, "name");
			rc = fail(d, "must be \"default\" (the only BaselineAdminNetworkPolicy)");
			pop(d, m);
			return rc;
		}
		break;
	default:
		p->kind = MOAT_K_CNP;
		break;
	}
	if ((rc = get(d, doc, "spec", JSON_OBJECT, true, &spec)))
		return rc;
	m = push_key(d, "spec");
	if (d->fl == FL_CNP) {
		const char *tier;

		rc = get_str(d, spec, "tier", true, &tier);
		if (!rc && !strcmp(tier, "Admin"))
			p->tier = MOAT_TIER_ADMIN;
		else if (!rc && !strcmp(tier, "Baseline"))
			p->tier = MOAT_TIER_BASELINE;
		else if (!rc) {
			push_key(d, "tier");
			rc = fail(d, "%s is not one of Admin, Baseline", Q(tier));
		}
	}
	if (!rc && d->fl == FL_BANP) {
		json_t *pr = json_object_get(spec, "priority");
		if (pr && !json_is_null(pr)) {
			push_key(d, "priority");
			rc = fail(d, "not a field of BaselineAdminNetworkPolicy (it has no priority)");
		}
	} else if (!rc) {
		rc = get_int(d, spec, "priority", true, 0, 1000, NULL, NULL, &prio);
		p->priority = (int32_t)prio;
	}
	if (!rc)
		rc = dec_subject(d, spec, p);
	for (int dir = 0; !rc && dir < 2; dir++) {
		const char *key = dir == MOAT_DIR_INGRESS ? "ingress" : "egress";
		size_t m2;

		if ((rc = get_list(d, spec, key, false, false, max_items(d), &rules)) || !rules ||
		    !json_array_size(rules))
			continue;
		p->rules[dir] = calloc(json_array_size(rules), sizeof(*p->rules[dir]));
		if (!p->rules[dir]) {
			rc = oom(d);
			break;
		}
		m2 = push_key(d, key);
		for (size_t i = 0; !rc && i < json_array_size(rules); i++) {
			size_t m3 = push_idx(d, i);
			p->nrules[dir]++;
			rc = dec_cluster_rule(d, json_array_get(rules, i), dir, &p->rules[dir][i]);
			pop(d, m3);
		}
		pop(d, m2);
		p->dir[dir] = p->nrules[dir] > 0;
	}
	pop(d, m);
	return rc;
}

static int seen_cmp(const void *a, const void *b)
{
	const struct seen_key *x = a, *y = b;

	if (x->obj != y->obj)
		return (uintptr_t)x->obj < (uintptr_t)y->obj ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* The first field under v (at the current path) of an object the decoder
 * looked into but never read: a misspelling (podSelecter: the policy
 * would select every pod) or a field of a newer API.  Refused, so that
 * nothing is enforced other than what was written.  Objects the decoder
 * never looked into (label maps, peers it iterates itself) are skipped. */
static int unknown_fields(struct dctx *d, const json_t *v)
{
	const char *k;
	json_t *c;
	size_t m, i;
	int rc;

	if (json_is_array(v)) {
		json_array_foreach(v, i, c)
		{
			m = push_idx(d, i);
			rc = unknown_fields(d, c);
			pop(d, m);
			if (rc)
				return rc;
		}
		return 0;
	}
	if (!json_is_object(v))
		return 0;
	{
		struct seen_key probe = { v, "" };
		size_t lo = 0, hi = d->nseen;
		while (lo < hi) { /* the first entry of v */
			size_t mid = (lo + hi) / 2;
			if ((uintptr_t)d->seen[mid].obj < (uintptr_t)v)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo == d->nseen || d->seen[lo].obj != v)
			return 0; /* not looked into */
		json_object_foreach((json_t *)v, k, c)
		{
			probe.key = k;
			if (!bsearch(&probe, d->seen + lo, d->nseen - lo, sizeof(probe), seen_cmp)) {
				m = push_key(d, k);
				rc = fail(d,
					  "unknown field (a misspelling, or a field moat does not support); "
					  "the policy is refused");
				pop(d, m);
				return rc;
			}
			m = push_key(d, k);
			rc = unknown_fields(d, c);
			pop(d, m);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int dec_policy(struct dctx *d, const json_t *doc, struct moat_object *o)
{
	const json_t *meta = json_object_get(doc, "metadata");
	struct moat_policy *p;
	size_t m;
	int rc;

	p = o->u.policy = calloc(1, sizeof(*p));
	if (!p || dup_str(d, o->ns, &p->ns) || dup_str(d, o->name, &p->name))
		return oom(d);
	m = push_key(d, "metadata");
	rc = get_audit(d, meta, &p->audit);
	pop(d, m);
	if (rc)
		return rc;
	d->track = true;
	rc = d->fl == FL_NETPOL ? dec_netpol(d, doc, p) : dec_cluster_policy(d, doc, p);
	d->track = false;
	if (!rc && d->seen_oom)
		rc = oom(d);
	if (!rc) {
		/* (the bsearch needs every object's keys together, sorted) */
		qsort(d->seen, d->nseen, sizeof(*d->seen), seen_cmp);
		m = push_key(d, "spec");
		rc = unknown_fields(d, json_object_get(doc, "spec"));
		pop(d, m);
	}
	free(d->seen);
	d->seen = NULL;
	d->nseen = d->seen_cap = 0;
	return rc;
}

/* ---- Blueprint (moat.io/v1alpha1) --------------------------------------------------------------- */
static bool valid_version(const char *s)
{
	/* a label value that is also usable in an instance name */
	size_t n = strlen(s);
	if (!n || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
			return false;
	return true;
}

static bool valid_param_name(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '_')
			return false;
	return !strcmp(s, "namespace") || !strcmp(s, "blueprint") || !strcmp(s, "version") ? false : true;
}

/* Reports an instance's decode error at the template: "Kind ns/name: "
 * (the instance's own prefix) is replaced by the template's path. */
static int tpl_error(struct dctx *d, const char *ierr)
{
	const char *rest = strstr(ierr, ": ");
	return fail(d, "%s", rest ? rest + 2 : ierr);
}

static int dec_templates(struct dctx *d, const json_t *vj, const char *key, bool cluster,
			 struct moat_blueprint *bp, struct moat_bp_version *v)
{
	json_t *list;
	size_t m, n;
	int rc;

	if ((rc = get_list(d, vj, key, false, false, MOAT_BP_MAX_TEMPLATES, &list)) || !list)
		return rc;
	n = json_array_size(list);
	struct moat_bp_tpl *t = calloc(n ? n : 1, sizeof(*t));
	if (!t)
		return oom(d);
	if (cluster) {
		v->cnp = t;
	} else {
		v->np = t;
	}
	m = push_key(d, key);
	for (size_t i = 0; !rc && i < n; i++) {
		json_t *tj = json_array_get(list, i), *an, *spec;
		const char *name;
		size_t m2 = push_idx(d, i);

		if (!json_is_object(tj)) {
			rc = fail(d, "must be an object");
		} else if (!(rc = get_str(d, tj, "name", true, &name))) {
			if (!moat_valid_dns_label(name)) {
				push_key(d, "name");
				rc = fail(d, "%s is not a valid template name (a lowercase RFC 1123 label)",
					  Q(name));
			}
			for (size_t k = 0; !rc && k < i; k++)
				if (!strcmp(t[k].name, name)) {
					push_key(d, "name");
					rc = fail(d, "%s: a second template of this name", Q(name));
				}
			if (!rc && !(rc = get(d, tj, "annotations", JSON_OBJECT, false, &an)) &&
			    !(rc = get(d, tj, "spec", JSON_OBJECT, true, &spec))) {
				t[i].name = strdup(name);
				t[i].annotations = an ? json_deep_copy(an) : NULL;
				t[i].spec = json_deep_copy(spec);
				if (!t[i].name || !t[i].spec)
					rc = oom(d);
			}
		}
		if (!rc) {
			/* every template must instantiate, with the defaults */
			char ierr[600];
			json_t *doc = NULL;
			struct moat_object *o = NULL;
			if (cluster)
				v->ncnp = i + 1;
			else
				v->nnp = i + 1;
			rc = cluster ? moat_bp_instantiate_cnp(bp, v, &t[i], true, &doc, ierr, sizeof(ierr)) :
				       moat_bp_instantiate_np(bp, v, &t[i], "blueprint-check", NULL, &doc,
							      ierr, sizeof(ierr));
			if (!rc) {
				rc = moat_decode(doc, NULL, &o, ierr, sizeof(ierr));
				if (rc)
					rc = tpl_error(d, ierr);
			} else {
				rc = fail(d, "%s", ierr);
			}
			moat_object_free(o);
			json_decref(doc);
		}
		pop(d, m2);
	}
	pop(d, m);
	return rc;
}

static int dec_blueprint(struct dctx *d, const json_t *doc, struct moat_object *o)
{
	struct moat_blueprint *bp;
	json_t *spec, *params, *versions;
	const char *ver;
	size_t m;
	int rc;

	bp = o->u.blueprint = calloc(1, sizeof(*bp));
	if (!bp || dup_str(d, o->name, &bp->name))
		return oom(d);
	bp->doc = json_deep_copy(doc);
	if ((rc = get(d, doc, "spec", JSON_OBJECT, true, &spec)))
		return rc;
	m = push_key(d, "spec");
	if ((rc = get_selector(d, spec, "namespaceSelector", true, &bp->ns_sel)))
		goto out;
	if ((rc = get_list(d, spec, "parameters", false, false, MOAT_BP_MAX_PARAMS, &params)))
		goto out;
	if (params) {
		size_t n = json_array_size(params);
		size_t m2 = push_key(d, "parameters");
		bp->params = calloc(n ? n : 1, sizeof(*bp->params));
		if (!bp->params)
			rc = oom(d);
		for (size_t i = 0; !rc && i < n; i++) {
			json_t *pj = json_array_get(params, i);
			const char *name, *def;
			size_t m3 = push_idx(d, i);
			if (!json_is_object(pj))
				rc = fail(d, "must be an object");
			else if (!(rc = get_str(d, pj, "name", true, &name)) &&
				 !(rc = get_str(d, pj, "default", true, &def))) {
				push_key(d, "name");
				if (!valid_param_name(name))
					rc = fail(d,
						  "%s is not a parameter name (a letter, then letters, "
						  "digits or _; not namespace, blueprint or version)",
						  Q(name));
				for (size_t k = 0; !rc && k < i; k++)
					if (!strcmp(bp->params[k].name, name))
						rc = fail(d, "%s: a second parameter of this name", Q(name));
				pop(d, m3);
				push_idx(d, i);
				if (!rc && strlen(def) > MOAT_BP_MAX_VALUE) {
					push_key(d, "default");
					rc = fail(d, "longer than %d characters", MOAT_BP_MAX_VALUE);
				}
				if (!rc) {
					bp->params[i].name = strdup(name);
					bp->params[i].def = strdup(def);
					bp->nparams = i + 1;
					if (!bp->params[i].name || !bp->params[i].def)
						rc = oom(d);
				}
			}
			pop(d, m3);
		}
		pop(d, m2);
		if (rc)
			goto out;
	}
	if ((rc = get_list(d, spec, "versions", true, true, MOAT_BP_MAX_VERSIONS, &versions)))
		goto out;
	bp->versions = calloc(json_array_size(versions), sizeof(*bp->versions));
	if (!bp->versions) {
		rc = oom(d);
		goto out;
	}
	/* names first: templates may refer to ${version} */
	{
		size_t m2 = push_key(d, "versions");
		for (size_t i = 0; !rc && i < json_array_size(versions); i++) {
			json_t *vj = json_array_get(versions, i);
			const char *vs;
			size_t m3 = push_idx(d, i);
			if (!json_is_object(vj))
				rc = fail(d, "must be an object");
			else if (!(rc = get_str(d, vj, "version", true, &vs))) {
				push_key(d, "version");
				if (!valid_version(vs))
					rc = fail(d,
						  "%s is not a version (at most 63 letters, digits, "
						  "'-', '.', '_', starting and ending alphanumeric)",
						  Q(vs));
				else if (moat_bp_find_version(bp, vs))
					rc = fail(d, "%s: listed twice", Q(vs));
				else if (!(bp->versions[i].version = strdup(vs)))
					rc = oom(d);
				else
					bp->nversions = i + 1;
			}
			pop(d, m3);
		}
		for (size_t i = 0; !rc && i < json_array_size(versions); i++) {
			json_t *vj = json_array_get(versions, i);
			size_t m3 = push_idx(d, i);
			rc = dec_templates(d, vj, "networkPolicies", false, bp, &bp->versions[i]);
			if (!rc)
				rc = dec_templates(d, vj, "clusterNetworkPolicies", true, bp,
						   &bp->versions[i]);
			pop(d, m3);
		}
		pop(d, m2);
		if (rc)
			goto out;
	}
	if ((rc = get_str(d, spec, "version", true, &ver)))
		goto out;
	if (!moat_bp_find_version(bp, ver)) {
		push_key(d, "version");
		rc = fail(d, "%s is not one of spec.versions", Q(ver));
		goto out;
	}
	rc = dup_str(d, ver, &bp->version);
out:
	pop(d, m);
	return rc;
}

/* ---- entry ------------------------------------------------------------------------------------ */
enum name_rule {
	N_LABEL,
	N_SUBDOMAIN,
	N_DNS1035
};

static const struct kind_info {
	const char *kind;
	const char *group;        /* "" = core */
	const char *legacy_group; /* an older home of the same kind, or NULL */
	const char *version;
	bool namespaced;
	enum name_rule name_rule;
	enum moat_obj_kind okind;
	enum flavor fl;
	int (*dec)(struct dctx *d, const json_t *doc, struct moat_object *o);
} kinds[] = {
	{ "Namespace", "", NULL, "v1", false, N_LABEL, MOAT_O_NAMESPACE, 0, dec_namespace },
	{ "Pod", "", NULL, "v1", true, N_SUBDOMAIN, MOAT_O_POD, 0, dec_pod },
	{ "Node", "", NULL, "v1", false, N_SUBDOMAIN, MOAT_O_NODE, 0, dec_node },
	{ "Service", "", NULL, "v1", true, N_DNS1035, MOAT_O_SERVICE, 0, dec_service },
	{ "NetworkPolicy", "networking.k8s.io", "extensions", "v1", true, N_SUBDOMAIN, MOAT_O_POLICY,
	  FL_NETPOL, dec_policy },
	{ "AdminNetworkPolicy", "policy.networking.k8s.io", NULL, "v1alpha1", false, N_SUBDOMAIN,
	  MOAT_O_POLICY, FL_ANP, dec_policy },
	{ "BaselineAdminNetworkPolicy", "policy.networking.k8s.io", NULL, "v1alpha1", false, N_SUBDOMAIN,
	  MOAT_O_POLICY, FL_BANP, dec_policy },
	{ "ClusterNetworkPolicy", "policy.networking.k8s.io", NULL, "v1alpha2", false, N_SUBDOMAIN,
	  MOAT_O_POLICY, FL_CNP, dec_policy },
	{ "Blueprint", MOAT_BP_GROUP, NULL, "v1alpha1", false, N_LABEL, MOAT_O_BLUEPRINT, 0, dec_blueprint },
};

static bool name_ok(enum name_rule r, const char *s)
{
	switch (r) {
	case N_LABEL:
		return moat_valid_dns_label(s);
	case N_DNS1035:
		return moat_valid_dns1035_label(s);
	default:
		return moat_valid_dns_subdomain(s);
	}
}

static const char *name_rule_text(enum name_rule r)
{
	switch (r) {
	case N_LABEL:
		return "a lowercase RFC 1123 label";
	case N_DNS1035:
		return "a lowercase RFC 1035 label";
	default:
		return "a lowercase RFC 1123 subdomain";
	}
}

/* Bounded copy of an optional opaque metadata string. */
static int get_opaque(struct dctx *d, const json_t *meta, const char *key, char **out)
{
	const char *s;
	size_t m;
	int rc;

	if ((rc = get_str(d, meta, key, false, &s)) || !s)
		return rc;
	if (strlen(s) > MAX_OPAQUE) {
		m = push_key(d, key);
		rc = fail(d, "longer than %d characters", MAX_OPAQUE);
		pop(d, m);
		return rc;
	}
	return dup_str(d, s, out);
}

int moat_decode(const json_t *doc, const char *source, struct moat_object **ret, char *err, size_t errlen)
{
	struct dctx d = { .source = source, .err = err, .errlen = errlen };
	const struct kind_info *ki = NULL;
	const char *kind, *apiv, *slash, *name, *ns = NULL;
	struct moat_object *o = NULL;
	char group[256];
	json_t *meta;
	size_t m;
	int rc;

	if (err && errlen)
		err[0] = 0;
	if (!ret)
		return -EINVAL;
	*ret = NULL;
	if (!doc || !json_is_object(doc))
		return fail(&d, "not an object");
	if ((rc = get_str(&d, doc, "kind", true, &kind)))
		return rc;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(kinds[i].kind, kind))
			ki = &kinds[i];
	if (!ki)
		return 0;
	d.kind = ki->kind;
	d.fl = ki->fl;
	/* the same kind name in another API group is another kind (a Knative
	 * Service, a Calico NetworkPolicy): not ours, not an error */
	apiv = json_string_value(json_object_get(doc, "apiVersion"));
	if (apiv) {
		slash = strchr(apiv, '/');
		snprintf(group, sizeof(group), "%.*s", slash ? (int)(slash - apiv) : 0, apiv);
		if (strcmp(group, ki->group) && (!ki->legacy_group || strcmp(group, ki->legacy_group)))
			return 0;
	}
	/* the name first: every later message names the object */
	if ((rc = get(&d, doc, "metadata", JSON_OBJECT, true, &meta)))
		return rc;
	m = push_key(&d, "metadata");
	if ((rc = get_str(&d, meta, "name", true, &name)))
		return rc;
	if (ki->namespaced) {
		if ((rc = get_str(&d, meta, "namespace", false, &ns)))
			return rc;
		if (!ns || !*ns)
			ns = "default";
		if (!moat_valid_dns_label(ns)) {
			push_key(&d, "namespace");
			return fail(&d, "%s is not a valid namespace name (a lowercase RFC 1123 label)",
				    Q(ns));
		}
		d.ns = ns;
	}
	if (!name_ok(ki->name_rule, name)) {
		push_key(&d, "name");
		return fail(&d, "%s is not a valid name (%s)", Q(name), name_rule_text(ki->name_rule));
	}
	d.name = name;
	pop(&d, m);

	if ((rc = get_str(&d, doc, "apiVersion", true, &apiv)))
		return rc;
	slash = strchr(apiv, '/');
	if (strcmp(group, ki->group) || strcmp(slash ? slash + 1 : apiv, ki->version)) {
		push_key(&d, "apiVersion");
		return fail(&d, "%s is not supported for %s (want %s%s%s)", Q(apiv), ki->kind, ki->group,
			    *ki->group ? "/" : "", ki->version);
	}

	o = calloc(1, sizeof(*o));
	if (!o)
		return oom(&d);
	o->kind = ki->okind;
	if (dup_str(&d, ki->kind, &o->api_kind) || dup_str(&d, name, &o->name) ||
	    (ki->namespaced && dup_str(&d, ns, &o->ns))) {
		rc = -ENOMEM;
		goto out;
	}
	m = push_key(&d, "metadata");
	rc = get_opaque(&d, meta, "uid", &o->uid);
	if (!rc)
		rc = get_opaque(&d, meta, "resourceVersion", &o->resource_version);
	pop(&d, m);
	if (!rc)
		rc = ki->dec(&d, doc, o);
out:
	if (rc) {
		moat_object_free(o);
		return rc;
	}
	*ret = o;
	return 0;
}

char *moat_object_key(const struct moat_object *o)
{
	char *s;

	if (!o || !o->api_kind || !o->name)
		return NULL;
	if (o->ns ? asprintf(&s, "%s/%s/%s", o->api_kind, o->ns, o->name) < 0 :
		    asprintf(&s, "%s/%s", o->api_kind, o->name) < 0)
		return NULL;
	return s;
}
