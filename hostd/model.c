// SPDX-License-Identifier: Apache-2.0
/* Helpers of the object model (model.h): label sets, selectors, addresses,
 * CIDRs, protocol names and the destructors of decoded objects. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model.h"
#include "blueprint.h"

/* ---- labels --------------------------------------------------------------- */
void moat_labels_free(struct moat_labels *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free(l->kv[i].key);
		free(l->kv[i].value);
	}
	free(l->kv);
	l->kv = NULL;
	l->n = 0;
}

/* Binary search; returns the index of key or where it would go. */
static size_t labels_find(const struct moat_labels *l, const char *key, bool *found)
{
	size_t lo = 0, hi = l->n;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(l->kv[mid].key, key);
		if (!c) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int moat_labels_set(struct moat_labels *l, const char *key, const char *value)
{
	struct moat_label *kv;
	char *k, *v;
	bool found;
	size_t i;

	if (!l || !key || !value)
		return -EINVAL;
	v = strdup(value);
	if (!v)
		return -ENOMEM;
	i = labels_find(l, key, &found);
	if (found) {
		free(l->kv[i].value);
		l->kv[i].value = v;
		return 0;
	}
	k = strdup(key);
	kv = realloc(l->kv, (l->n + 1) * sizeof(*kv));
	if (!k || !kv) {
		free(k);
		free(v);
		if (kv)
			l->kv = kv;
		return -ENOMEM;
	}
	l->kv = kv;
	memmove(&kv[i + 1], &kv[i], (l->n - i) * sizeof(*kv));
	kv[i].key = k;
	kv[i].value = v;
	l->n++;
	return 0;
}

const char *moat_labels_get(const struct moat_labels *l, const char *key)
{
	bool found;
	size_t i;

	if (!l || !key || !l->n)
		return NULL;
	i = labels_find(l, key, &found);
	return found ? l->kv[i].value : NULL;
}

int moat_labels_copy(struct moat_labels *dst, const struct moat_labels *src)
{
	struct moat_labels t = { 0 };

	if (src->n) {
		t.kv = calloc(src->n, sizeof(*t.kv));
		if (!t.kv)
			return -ENOMEM;
		for (; t.n < src->n; t.n++) {
			t.kv[t.n].key = strdup(src->kv[t.n].key);
			t.kv[t.n].value = strdup(src->kv[t.n].value);
			if (!t.kv[t.n].key || !t.kv[t.n].value) {
				t.n++;
				moat_labels_free(&t);
				return -ENOMEM;
			}
		}
	}
	moat_labels_free(dst);
	*dst = t;
	return 0;
}

bool moat_labels_equal(const struct moat_labels *a, const struct moat_labels *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->kv[i].key, b->kv[i].key) || strcmp(a->kv[i].value, b->kv[i].value))
			return false;
	return true;
}

/* ---- selectors -------------------------------------------------------------- */
static void req_free(struct moat_sel_req *r)
{
	free(r->key);
	for (size_t i = 0; i < r->nvalues; i++)
		free(r->values[i]);
	free(r->values);
}

void moat_selector_free(struct moat_selector *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		req_free(&s->reqs[i]);
	free(s->reqs);
	free(s);
}

struct moat_selector *moat_selector_dup(const struct moat_selector *s)
{
	struct moat_selector *d;

	if (!s)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	if (!s->n)
		return d;
	d->reqs = calloc(s->n, sizeof(*d->reqs));
	if (!d->reqs)
		goto fail;
	for (; d->n < s->n; d->n++) {
		const struct moat_sel_req *r = &s->reqs[d->n];
		struct moat_sel_req *q = &d->reqs[d->n];

		q->op = r->op;
		q->key = strdup(r->key);
		if (!q->key)
			goto fail_req;
		if (r->nvalues) {
			q->values = calloc(r->nvalues, sizeof(*q->values));
			if (!q->values)
				goto fail_req;
			for (; q->nvalues < r->nvalues; q->nvalues++) {
				q->values[q->nvalues] = strdup(r->values[q->nvalues]);
				if (!q->values[q->nvalues])
					goto fail_req;
			}
		}
	}
	return d;
fail_req:
	d->n++; /* the partly copied requirement is freed too */
fail:
	moat_selector_free(d);
	return NULL;
}

static bool req_has_value(const struct moat_sel_req *r, const char *v)
{
	for (size_t i = 0; i < r->nvalues; i++)
		if (!strcmp(r->values[i], v))
			return true;
	return false;
}

bool moat_selector_matches(const struct moat_selector *s, const struct moat_labels *l)
{
	if (!s)
		return true;
	for (size_t i = 0; i < s->n; i++) {
		const struct moat_sel_req *r = &s->reqs[i];
		const char *v = moat_labels_get(l, r->key);

		switch (r->op) {
		case MOAT_SEL_IN:
			if (!v || !req_has_value(r, v))
				return false;
			break;
		case MOAT_SEL_NOT_IN:
			/* an absent key is "not in" any set (Kubernetes semantics) */
			if (v && req_has_value(r, v))
				return false;
			break;
		case MOAT_SEL_EXISTS:
			if (!v)
				return false;
			break;
		case MOAT_SEL_DOES_NOT_EXIST:
			if (v)
				return false;
			break;
		default:
			return false; /* unknown operator: select nothing */
		}
	}
	return true;
}

bool moat_selector_is_empty(const struct moat_selector *s)
{
	return !s || !s->n;
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One requirement as text, values sorted. */
static char *req_string(const struct moat_sel_req *r)
{
	const char **v = NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	switch (r->op) {
	case MOAT_SEL_EXISTS:
		fputs(r->key, f);
		break;
	case MOAT_SEL_DOES_NOT_EXIST:
		fprintf(f, "!%s", r->key);
		break;
	default:
		fprintf(f, "%s %s (", r->key, r->op == MOAT_SEL_NOT_IN ? "notin" : "in");
		if (r->nvalues) {
			v = malloc(r->nvalues * sizeof(*v));
			if (!v) {
				fclose(f);
				free(buf);
				return NULL;
			}
			memcpy(v, r->values, r->nvalues * sizeof(*v));
			qsort(v, r->nvalues, sizeof(*v), strp_cmp);
		}
		for (size_t i = 0; i < r->nvalues; i++) {
			if (i && !strcmp(v[i], v[i - 1]))
				continue;
			fprintf(f, "%s%s", i ? "," : "", v[i]);
		}
		fputc(')', f);
		free(v);
		break;
	}
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

char *moat_selector_string(const struct moat_selector *s)
{
	char **parts = NULL, *out = NULL;
	size_t n = s ? s->n : 0, len = 1, pos = 0;

	if (!n)
		return strdup("");
	parts = calloc(n, sizeof(*parts));
	if (!parts)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		parts[i] = req_string(&s->reqs[i]);
		if (!parts[i])
			goto out;
		len += strlen(parts[i]) + 1;
	}
	/* sorted and deduplicated text: independent of how it was built */
	qsort(parts, n, sizeof(*parts), strp_cmp);
	out = malloc(len);
	if (!out)
		goto out;
	for (size_t i = 0; i < n; i++) {
		size_t l;

		if (i && !strcmp(parts[i], parts[i - 1]))
			continue;
		if (pos)
			out[pos++] = ',';
		l = strlen(parts[i]);
		memcpy(out + pos, parts[i], l);
		pos += l;
	}
	out[pos] = 0;
out:
	for (size_t i = 0; i < n; i++)
		free(parts[i]);
	free(parts);
	return out;
}

/* ---- objects ---------------------------------------------------------------- */
static void peer_free(struct moat_peer *pe)
{
	moat_selector_free(pe->ns_sel);
	moat_selector_free(pe->pod_sel);
	free(pe->except);
}

static void rule_free(struct moat_rule *r)
{
	free(r->name);
	for (size_t i = 0; i < r->npeers; i++)
		peer_free(&r->peers[i]);
	free(r->peers);
	for (size_t i = 0; i < r->nports; i++)
		free(r->ports[i].named);
	free(r->ports);
}

void moat_policy_free(struct moat_policy *p)
{
	if (!p)
		return;
	for (int d = 0; d < 2; d++) {
		for (size_t i = 0; i < p->nrules[d]; i++)
			rule_free(&p->rules[d][i]);
		free(p->rules[d]);
	}
	moat_selector_free(p->subj_ns);
	moat_selector_free(p->subj_pod);
	free(p->ns);
	free(p->name);
	free(p);
}

static void cports_free(struct moat_cport *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

void moat_object_free(struct moat_object *o)
{
	if (!o)
		return;
	switch (o->kind) {
	case MOAT_O_NAMESPACE:
		if (o->u.namespace) {
			free(o->u.namespace->name);
			moat_labels_free(&o->u.namespace->labels);
			moat_labels_free(&o->u.namespace->bp_annotations);
			free(o->u.namespace);
		}
		break;
	case MOAT_O_POD:
		if (o->u.pod) {
			free(o->u.pod->ns);
			free(o->u.pod->name);
			free(o->u.pod->node);
			moat_labels_free(&o->u.pod->labels);
			cports_free(o->u.pod->ports, o->u.pod->nports);
			free(o->u.pod);
		}
		break;
	case MOAT_O_NODE:
		if (o->u.node) {
			free(o->u.node->name);
			moat_labels_free(&o->u.node->labels);
			free(o->u.node);
		}
		break;
	case MOAT_O_SERVICE:
		if (o->u.service) {
			free(o->u.service->ns);
			free(o->u.service->name);
			free(o->u.service);
		}
		break;
	case MOAT_O_POLICY:
		moat_policy_free(o->u.policy);
		break;
	case MOAT_O_BLUEPRINT:
		moat_blueprint_free(o->u.blueprint);
		break;
	}
	free(o->api_kind);
	free(o->ns);
	free(o->name);
	free(o->uid);
	free(o->resource_version);
	free(o);
}

/* ---- addresses and CIDRs ---------------------------------------------------- */
static int addr_bytes(int family)
{
	return family == 4 ? 4 : 16;
}

/* True when the first plen bits of a and b agree. */
static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned plen)
{
	unsigned full = plen / 8, rest = plen % 8;

	if (memcmp(a, b, full))
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

bool moat_cidr_contains(const struct moat_cidr *c, const struct moat_addr *a)
{
	if (!c || !a || c->family != a->family)
		return false;
	return prefix_eq(c->a, a->a, c->plen);
}

bool moat_cidr_within(const struct moat_cidr *inner, const struct moat_cidr *outer)
{
	if (!inner || !outer || inner->family != outer->family || inner->plen < outer->plen)
		return false;
	return prefix_eq(inner->a, outer->a, outer->plen);
}

int moat_addr_parse(const char *s, struct moat_addr *a)
{
	struct moat_addr t = { 0 };

	if (!s || !a || strlen(s) >= INET6_ADDRSTRLEN)
		return -EINVAL;
	if (inet_pton(AF_INET, s, t.a) == 1)
		t.family = 4;
	else if (inet_pton(AF_INET6, s, t.a) == 1)
		t.family = 6;
	else
		return -EINVAL;
	*a = t;
	return 0;
}

int moat_cidr_parse(const char *s, struct moat_cidr *c)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash, *p;
	struct moat_addr a;
	unsigned plen = 0;
	size_t alen;

	if (!s || !c)
		return -EINVAL;
	slash = strrchr(s, '/');
	if (!slash)
		return -EINVAL;
	alen = (size_t)(slash - s);
	if (!alen || alen >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, alen);
	addr[alen] = 0;
	if (moat_addr_parse(addr, &a))
		return -EINVAL;
	/* decimal, no sign, no leading zeros, at most 3 digits */
	p = slash + 1;
	if (!*p || strlen(p) > 3 || (p[0] == '0' && p[1]))
		return -EINVAL;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		plen = plen * 10 + (unsigned)(*p - '0');
	}
	if (plen > (unsigned)addr_bytes(a.family) * 8)
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	c->family = a.family;
	c->plen = (uint8_t)plen;
	/* clear the host bits */
	memcpy(c->a, a.a, plen / 8);
	if (plen % 8)
		c->a[plen / 8] = a.a[plen / 8] & (uint8_t)(0xff << (8 - plen % 8));
	return 0;
}

const char *moat_addr_str(const struct moat_addr *a, char *buf)
{
	if (!a || !inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->a, buf, 64))
		snprintf(buf, 64, "?");
	return buf;
}

const char *moat_cidr_str(const struct moat_cidr *c, char *buf)
{
	char tmp[INET6_ADDRSTRLEN];

	if (!c || !inet_ntop(c->family == 4 ? AF_INET : AF_INET6, c->a, tmp, sizeof(tmp)))
		snprintf(buf, 64, "?");
	else
		snprintf(buf, 64, "%s/%u", tmp, c->plen);
	return buf;
}

/* ---- protocols ---------------------------------------------------------------- */
static const struct {
	uint8_t proto;
	const char *name;
} protos[] = {
	{ IPPROTO_TCP, "TCP" },   { IPPROTO_UDP, "UDP" },       { IPPROTO_SCTP, "SCTP" },
	{ IPPROTO_ICMP, "ICMP" }, { IPPROTO_ICMPV6, "ICMPv6" },
};

const char *moat_proto_name(uint8_t proto)
{
	for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
		if (protos[i].proto == proto)
			return protos[i].name;
	return "UNKNOWN";
}

/* Case-insensitive ("tcp" as typed on a command line); the decoder checks
 * the exact Kubernetes spelling itself. */
int moat_proto_parse(const char *s, uint8_t *proto)
{
	if (!s || !proto)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++) {
		if (!strcasecmp(s, protos[i].name)) {
			*proto = protos[i].proto;
			return 0;
		}
	}
	return -EINVAL;
}
