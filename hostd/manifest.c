// SPDX-License-Identifier: Apache-2.0
/* Manifest loading (manifest.h): JSON via jansson, YAML via libyaml events
 * built into jansson values, then List expansion. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "manifest.h"
#include "util.h"

/* ---- containers ----------------------------------------------------------------- */
int moat_errs_vadd(struct moat_errs *e, const char *fmt, va_list ap)
{
	char *s;

	if (e->n >= MOAT_MANIFEST_MAX_ERRS) {
		e->dropped++;
		return 0;
	}
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 4;
		char **v = realloc(e->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		e->v = v;
		e->cap = cap;
	}
	if (vasprintf(&s, fmt, ap) < 0)
		return -ENOMEM;
	e->v[e->n++] = s;
	return 0;
}

int moat_errs_add(struct moat_errs *e, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = moat_errs_vadd(e, fmt, ap);
	va_end(ap);
	return rc;
}

void moat_errs_free(struct moat_errs *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
	memset(e, 0, sizeof(*e));
}

void moat_docs_free(struct moat_docs *d)
{
	for (size_t i = 0; i < d->n; i++) {
		json_decref(d->v[i].json);
		free(d->v[i].source);
	}
	free(d->v);
	memset(d, 0, sizeof(*d));
}

/* ---- parse state ------------------------------------------------------------------ */
struct anchor {
	char *name;
	json_t *val;
	size_t nodes; /* values in val */
	int height;   /* nesting levels of val */
};

struct mp {
	const char *src;
	struct moat_errs *errs;
	struct moat_docs docs; /* this input's documents, moved to out on success */
	int rc;                /* first error */
	/* YAML */
	yaml_parser_t yp;
	size_t nodes;
	struct anchor *anc;
	size_t nanc, canc;
	struct hmap anames; /* name -> index + 1 in anc (aliases in O(1)) */
	size_t *item_lines; /* lines of the root mapping's "items" entries */
	size_t nitems, citems;
};

static int perr(struct mp *m, int rc, size_t line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Records an error "src:line: msg" (line 0: "src: msg"); returns rc. */
static int perr(struct mp *m, int rc, size_t line, const char *fmt, ...)
{
	char *msg;
	va_list ap;

	if (m->rc)
		return m->rc; /* one message per input: later ones are consequences */
	m->rc = rc;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0) {
		va_end(ap);
		return m->rc = -ENOMEM;
	}
	va_end(ap);
	if (line)
		moat_errs_add(m->errs, "%s:%zu: %s", m->src, line, msg);
	else
		moat_errs_add(m->errs, "%s: %s", m->src, msg);
	free(msg);
	return rc;
}

static size_t line_at(const char *buf, size_t off)
{
	size_t line = 1;

	for (size_t i = 0; i < off; i++)
		line += buf[i] == '\n';
	return line;
}

/* ---- documents and Lists --------------------------------------------------------------- */
static int doc_push(struct mp *m, json_t *j, size_t line)
{
	struct moat_docs *d = &m->docs;

	if (d->n >= MOAT_MANIFEST_MAX_DOCS) {
		json_decref(j);
		return perr(m, -E2BIG, line, "more than %d documents", MOAT_MANIFEST_MAX_DOCS);
	}
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct moat_doc *v = realloc(d->v, cap * sizeof(*v));
		if (!v) {
			json_decref(j);
			return perr(m, -ENOMEM, 0, "out of memory");
		}
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n].source = strdup(m->src);
	if (!d->v[d->n].source) {
		json_decref(j);
		return perr(m, -ENOMEM, 0, "out of memory");
	}
	d->v[d->n].json = j;
	d->v[d->n].line = (unsigned)line;
	d->n++;
	return 0;
}

static bool is_list_kind(const char *kind)
{
	size_t l = strlen(kind);
	return l >= 4 && !strcmp(kind + l - 4, "List");
}

/* Adds one document (taking j), expanding Lists.  lines: line of each item of
 * j's "items" when known (YAML root documents), else NULL. */
static int doc_add(struct mp *m, json_t *j, size_t line, const size_t *lines, size_t nlines)
{
	const char *kind, *apiv;
	json_t *items;
	int rc = 0;

	if (json_is_null(j)) {
		json_decref(j);
		return 0;
	}
	if (!json_is_object(j)) {
		bool list = json_is_array(j);

		json_decref(j);
		return perr(m, -EINVAL, line, "a document must be an object (a mapping), not %s",
			    list ? "a list" : "a scalar");
	}
	kind = json_string_value(json_object_get(j, "kind"));
	items = json_object_get(j, "items");
	if (!kind || !is_list_kind(kind) || !items)
		return doc_push(m, j, line);
	if (json_is_null(items)) {
		json_decref(j);
		return 0;
	}
	if (!json_is_array(items)) {
		rc = perr(m, -EINVAL, line, "%s: items must be a list", kind);
		json_decref(j);
		return rc;
	}
	apiv = json_string_value(json_object_get(j, "apiVersion"));
	for (size_t i = 0; i < json_array_size(items) && !rc; i++) {
		json_t *it = json_array_get(items, i);
		size_t l = lines && i < nlines ? lines[i] : line;

		if (!json_is_object(it)) {
			rc = perr(m, -EINVAL, l, "%s: items[%zu] must be an object", kind, i);
			break;
		}
		/* a typed list's items may omit their type */
		if (strcmp(kind, "List")) {
			if (!json_object_get(it, "kind")) {
				json_t *k = json_stringn(kind, strlen(kind) - 4);
				if (!k || json_object_set_new(it, "kind", k))
					rc = perr(m, -ENOMEM, 0, "out of memory");
			}
			if (!rc && apiv && !json_object_get(it, "apiVersion") &&
			    json_object_set_new(it, "apiVersion", json_string(apiv)))
				rc = perr(m, -ENOMEM, 0, "out of memory");
		}
		if (!rc)
			rc = doc_add(m, json_incref(it), l, NULL, 0);
	}
	json_decref(j);
	return rc;
}

/* ---- JSON --------------------------------------------------------------------------------- */
/* Cheap bounds before jansson builds anything: nesting depth and an upper
 * estimate of the number of values (containers, separators). */
static int json_prescan(struct mp *m, const char *buf, size_t len)
{
	size_t depth = 0, nodes = 0, line = 1;
	bool str = false, esc = false;

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];

		if (c == '\n')
			line++;
		if (str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				str = false;
			continue;
		}
		switch (c) {
		case '"':
			str = true;
			break;
		case '[':
		case '{':
			if (++depth > MOAT_MANIFEST_MAX_DEPTH)
				return perr(m, -E2BIG, line, "nested deeper than %d levels",
					    MOAT_MANIFEST_MAX_DEPTH);
			nodes++;
			break;
		case ']':
		case '}':
			if (depth)
				depth--;
			break;
		case ',':
		case ':':
			nodes++;
			break;
		}
		if (nodes > MOAT_MANIFEST_MAX_NODES)
			return perr(m, -E2BIG, line, "more than %u values", MOAT_MANIFEST_MAX_NODES);
	}
	return 0;
}

/* Strings are bounded after parsing: escapes make the text longer than the
 * value, so the text alone cannot decide. */
static bool json_strings_ok(const json_t *j)
{
	const char *k;
	json_t *v;
	size_t i;

	switch (json_typeof(j)) {
	case JSON_STRING:
		return json_string_length(j) <= MOAT_MANIFEST_MAX_STRING;
	case JSON_OBJECT:
		json_object_foreach((json_t *)j, k, v) if (strlen(k) > MOAT_MANIFEST_MAX_STRING ||
							   !json_strings_ok(v)) return false;
		return true;
	case JSON_ARRAY:
		json_array_foreach(j, i, v) if (!json_strings_ok(v)) return false;
		return true;
	default:
		return true;
	}
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Returns 0, or -EINVAL with the jansson message in msg (no error recorded:
 * the caller may still try YAML). */
static int json_parse_all(struct mp *m, const char *buf, size_t len, char *msg, size_t msglen)
{
	size_t off = 0, counted = 0, line = 1;

	for (;;) {
		json_error_t je;
		json_t *j;

		while (off < len && is_space(buf[off]))
			off++;
		if (off >= len)
			return 0;
		/* lines counted once over the input, not from its start each time */
		line += line_at(buf + counted, off - counted) - 1;
		counted = off;
		j = json_loadb(buf + off, len - off, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &je);
		if (!j) {
			snprintf(msg, msglen, "%zu:%d: %s", line + (size_t)(je.line > 0 ? je.line - 1 : 0),
				 je.column, je.text);
			return -EINVAL;
		}
		if (!json_strings_ok(j)) {
			json_decref(j);
			return perr(m, -E2BIG, line, "a string is longer than %u bytes",
				    MOAT_MANIFEST_MAX_STRING);
		}
		off += (size_t)je.position;
		if (doc_add(m, j, line, NULL, 0))
			return m->rc;
	}
}

/* ---- YAML ---------------------------------------------------------------------------------- */
#define TAG_PREFIX "tag:yaml.org,2002:"

static int y_perr(struct mp *m)
{
	const yaml_parser_t *p = &m->yp;

	if (p->error == YAML_MEMORY_ERROR)
		return perr(m, -ENOMEM, 0, "out of memory");
	if (p->context)
		return perr(m, -EINVAL, p->problem_mark.line + 1, "%s (%s at line %zu)",
			    p->problem ? p->problem : "syntax error", p->context, p->context_mark.line + 1);
	return perr(m, -EINVAL, p->problem_mark.line + 1, "%s", p->problem ? p->problem : "syntax error");
}

static int y_next(struct mp *m, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&m->yp, ev))
		return y_perr(m);
	return 0;
}

static void anchors_clear(struct mp *m)
{
	for (size_t i = 0; i < m->nanc; i++) {
		free(m->anc[i].name);
		json_decref(m->anc[i].val);
	}
	m->nanc = 0;
	hmap_free(&m->anames);
	hmap_init(&m->anames);
}

static int anchor_set(struct mp *m, const char *name, json_t *val, size_t nodes, int height)
{
	struct anchor *a;

	if (m->nanc == m->canc) {
		size_t cap = m->canc ? m->canc * 2 : 8;
		a = realloc(m->anc, cap * sizeof(*a));
		if (!a)
			return perr(m, -ENOMEM, 0, "out of memory");
		m->anc = a;
		m->canc = cap;
	}
	a = &m->anc[m->nanc];
	a->name = strdup(name);
	if (!a->name)
		return perr(m, -ENOMEM, 0, "out of memory");
	a->val = json_incref(val);
	a->nodes = nodes;
	a->height = height;
	m->nanc++;
	/* a redefined anchor replaces the older one for later aliases */
	if (hmap_put(&m->anames, a->name, strlen(a->name), (void *)(uintptr_t)m->nanc, NULL))
		return perr(m, -ENOMEM, 0, "out of memory");
	return 0;
}

static bool count_node(struct mp *m, size_t n, size_t line)
{
	m->nodes += n;
	if (m->nodes > MOAT_MANIFEST_MAX_NODES) {
		perr(m, -E2BIG, line, "more than %u values (aliases expanded)", MOAT_MANIFEST_MAX_NODES);
		return false;
	}
	return true;
}

static bool all_digits(const char *s, const char *set)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!strchr(set, *s))
			return false;
	return true;
}

/* YAML 1.2 core schema integers; false if s is not one (or overflows). */
static bool parse_int(const char *s, json_int_t *out)
{
	const char *d = s;
	int base = 10;
	bool neg = false;
	char *end;

	if (*d == '-' || *d == '+') {
		neg = *d == '-';
		d++;
	}
	if (d == s && d[0] == '0' && (d[1] == 'x' || d[1] == 'o')) {
		base = d[1] == 'x' ? 16 : 8;
		d += 2;
		if (!all_digits(d, base == 16 ? "0123456789abcdefABCDEF" : "01234567"))
			return false;
	} else if (!all_digits(d, "0123456789")) {
		return false;
	}
	errno = 0;
	unsigned long long v = strtoull(d, &end, base);
	if (errno || *end || v > (unsigned long long)INT64_MAX + (neg ? 1 : 0))
		return false;
	*out = neg ? (json_int_t)(0 - v) : (json_int_t)v;
	return true;
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static bool parse_real(const char *s, double *out)
{
	const char *p = s;
	bool digits = false;
	char *end;

	if (*p == '-' || *p == '+')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
		digits = true;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			digits = true;
	if (!digits)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p)
		return false;
	*out = strtod(s, &end);
	return *end == 0;
}

static int parse_bool(const char *s)
{
	static const char *const t[] = { "true", "True", "TRUE" }, *const f[] = { "false", "False", "FALSE" };

	for (int i = 0; i < 3; i++) {
		if (!strcmp(s, t[i]))
			return 1;
		if (!strcmp(s, f[i]))
			return 0;
	}
	return -1;
}

static bool is_null_word(const char *s)
{
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int y_scalar(struct mp *m, const yaml_event_t *ev, json_t **out)
{
	const char *v = (const char *)ev->data.scalar.value;
	const char *tag = (const char *)ev->data.scalar.tag;
	size_t len = ev->data.scalar.length, line = ev->start_mark.line + 1;
	bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	json_int_t i;
	double r;
	int b;

	if (len > MOAT_MANIFEST_MAX_STRING)
		return perr(m, -E2BIG, line, "a string is longer than %u bytes", MOAT_MANIFEST_MAX_STRING);
	if (memchr(v, 0, len))
		return perr(m, -EINVAL, line, "a string contains a NUL character");
	if (tag && !strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX))) {
		const char *t = tag + strlen(TAG_PREFIX);

		if (!strcmp(t,
			    "str")) { /* NOLINT(bugprone-branch-clone): one branch per tag, as in YAML 1.2 */
			*out = json_stringn(v, len);
		} else if (!strcmp(t, "null")) {
			*out = json_null();
		} else if (!strcmp(t, "bool")) {
			if ((b = parse_bool(v)) < 0)
				return perr(m, -EINVAL, line, "\"%s\" is not a !!bool", v);
			*out = json_boolean(b);
		} else if (!strcmp(t, "int")) {
			if (!parse_int(v, &i))
				return perr(m, -EINVAL, line, "\"%s\" is not an !!int", v);
			*out = json_integer(i);
		} else if (!strcmp(t, "float")) {
			if (!parse_real(v, &r))
				return perr(m, -EINVAL, line, "\"%s\" is not a !!float", v);
			*out = json_real(r);
		} else {
			*out = json_stringn(v, len); /* !!binary, !!timestamp...: their text */
		}
	} else if (!plain || (tag && !strcmp(tag, "!"))) { /* NOLINT(bugprone-branch-clone): as above */
		*out = json_stringn(v, len);
	} else if (is_null_word(v)) {
		*out = json_null();
	} else if ((b = parse_bool(v)) >= 0) {
		*out = json_boolean(b);
	} else if (parse_int(v, &i)) {
		*out = json_integer(i);
	} else if (parse_real(v, &r)) {
		*out = json_real(r);
	} else {
		*out = json_stringn(v, len);
	}
	if (!*out)
		return perr(m, -ENOMEM, 0, "out of memory");
	return 0;
}

static int y_node(struct mp *m, const yaml_event_t *ev, int depth, bool items, json_t **out, int *height);

static int y_alias(struct mp *m, const yaml_event_t *ev, int depth, json_t **out, int *height)
{
	const char *name = (const char *)ev->data.alias.anchor;
	uintptr_t k = (uintptr_t)hmap_gets(&m->anames, name);
	size_t line = ev->start_mark.line + 1;

	if (k) {
		struct anchor *a = &m->anc[k - 1];

		if (depth - 1 + a->height > MOAT_MANIFEST_MAX_DEPTH)
			return perr(m, -E2BIG, line, "nested deeper than %d levels", MOAT_MANIFEST_MAX_DEPTH);
		if (!count_node(m, a->nodes, line))
			return m->rc;
		/* a copy: documents are edited later (List items get kinds) */
		*out = json_deep_copy(a->val);
		if (!*out)
			return perr(m, -ENOMEM, 0, "out of memory");
		*height = a->height;
		return 0;
	}
	return perr(m, -EINVAL, line, "unknown alias *%s", name);
}

/* Merges src (a mapping or a list of mappings from "<<") into dst without
 * replacing keys dst has. */
static int y_merge(struct mp *m, json_t *dst, json_t *src, size_t line)
{
	const char *k;
	json_t *v;
	size_t i;

	if (json_is_array(src)) {
		json_array_foreach(src, i, v) if (y_merge(m, dst, v, line)) return m->rc;
		return 0;
	}
	if (!json_is_object(src))
		return perr(m, -EINVAL, line, "a merge key (<<) needs a mapping or a list of mappings");
	json_object_foreach(src, k, v) if (!json_object_get(dst, k) &&
					   json_object_set(dst, k, v)) return perr(m, -ENOMEM, 0,
										   "out of memory");
	return 0;
}

static int y_mapping(struct mp *m, int depth, bool root, json_t *obj, int *height)
{
	json_t *merges = NULL;
	int rc = 0;

	for (;;) {
		yaml_event_t kev, vev;
		json_t *val = NULL;
		char *key = NULL;
		bool merge;
		size_t line;
		int h = 0;

		if (y_next(m, &kev)) {
			rc = m->rc;
			break;
		}
		if (kev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&kev);
			break;
		}
		line = kev.start_mark.line + 1;
		if (kev.type != YAML_SCALAR_EVENT) {
			yaml_event_delete(&kev);
			rc = perr(m, -EINVAL, line, "a mapping key must be a scalar");
			break;
		}
		if (kev.data.scalar.length > MOAT_MANIFEST_MAX_STRING ||
		    memchr(kev.data.scalar.value, 0, kev.data.scalar.length)) {
			yaml_event_delete(&kev);
			rc = perr(m, -EINVAL, line, "a mapping key is too long or contains NUL");
			break;
		}
		merge = kev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !kev.data.scalar.tag &&
			!strcmp((char *)kev.data.scalar.value, "<<");
		key = strdup((char *)kev.data.scalar.value);
		yaml_event_delete(&kev);
		if (!key || !count_node(m, 1, line)) {
			free(key);
			rc = key ? m->rc : perr(m, -ENOMEM, 0, "out of memory");
			break;
		}
		if (!merge && json_object_get(obj, key)) {
			rc = perr(m, -EINVAL, line, "duplicate key \"%s\"", key);
			free(key);
			break;
		}
		if (y_next(m, &vev)) {
			free(key);
			rc = m->rc;
			break;
		}
		/* the root's "items" entries: remember where each starts */
		rc = y_node(m, &vev, depth + 1, root && !strcmp(key, "items"), &val, &h);
		yaml_event_delete(&vev);
		if (!rc && h + 1 > *height)
			*height = h + 1;
		if (!rc && merge) {
			if (!merges)
				merges = json_array();
			if (!merges || json_array_append(merges, val))
				rc = perr(m, -ENOMEM, 0, "out of memory");
		} else if (!rc && json_object_set(obj, key, val)) {
			rc = perr(m, -ENOMEM, 0, "out of memory");
		}
		json_decref(val);
		free(key);
		if (rc)
			break;
	}
	/* explicit keys win over merged ones, whatever their order */
	if (!rc && merges)
		rc = y_merge(m, obj, merges, 0);
	json_decref(merges);
	return rc;
}

static int item_line_push(struct mp *m, size_t line)
{
	if (m->nitems == m->citems) {
		size_t cap = m->citems ? m->citems * 2 : 16;
		size_t *v = realloc(m->item_lines, cap * sizeof(*v));
		if (!v)
			return perr(m, -ENOMEM, 0, "out of memory");
		m->item_lines = v;
		m->citems = cap;
	}
	m->item_lines[m->nitems++] = line;
	return 0;
}

/* Builds the value that starts with ev (not consumed).  items: ev is the
 * value of the root mapping's "items" key. */
static int y_node(struct mp *m, const yaml_event_t *ev, int depth, bool items, json_t **out, int *height)
{
	size_t line = ev->start_mark.line + 1, nodes0 = m->nodes;
	const char *anchor = NULL;
	json_t *v = NULL;
	int rc = 0;

	*out = NULL;
	*height = 1; /* levels of containers: scalars have none */
	if (depth > MOAT_MANIFEST_MAX_DEPTH &&
	    (ev->type == YAML_SEQUENCE_START_EVENT || ev->type == YAML_MAPPING_START_EVENT))
		return perr(m, -E2BIG, line, "nested deeper than %d levels", MOAT_MANIFEST_MAX_DEPTH);
	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		return y_alias(m, ev, depth, out, height);
	case YAML_SCALAR_EVENT:
		*height = 0;
		anchor = (const char *)ev->data.scalar.anchor;
		if (!count_node(m, 1, line))
			return m->rc;
		rc = y_scalar(m, ev, &v);
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = (const char *)ev->data.sequence_start.anchor;
		if (!count_node(m, 1, line))
			return m->rc;
		v = json_array();
		if (!v)
			return perr(m, -ENOMEM, 0, "out of memory");
		if (items)
			m->nitems = 0;
		for (;;) {
			yaml_event_t e;
			json_t *c;
			int h;

			if (y_next(m, &e)) {
				rc = m->rc;
				break;
			}
			if (e.type == YAML_SEQUENCE_END_EVENT) {
				yaml_event_delete(&e);
				break;
			}
			if (items)
				rc = item_line_push(m, e.start_mark.line + 1);
			if (!rc)
				rc = y_node(m, &e, depth + 1, false, &c, &h);
			yaml_event_delete(&e);
			if (rc)
				break;
			if (h + 1 > *height)
				*height = h + 1;
			if (json_array_append_new(v, c)) {
				rc = perr(m, -ENOMEM, 0, "out of memory");
				break;
			}
		}
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = (const char *)ev->data.mapping_start.anchor;
		if (!count_node(m, 1, line))
			return m->rc;
		v = json_object();
		if (!v)
			return perr(m, -ENOMEM, 0, "out of memory");
		rc = y_mapping(m, depth, depth == 1, v, height);
		break;
	default:
		return perr(m, -EINVAL, line, "unexpected YAML event");
	}
	if (!rc && anchor)
		rc = anchor_set(m, anchor, v, m->nodes - nodes0, *height);
	if (rc) {
		json_decref(v);
		return rc;
	}
	*out = v;
	return 0;
}

static int yaml_parse_all(struct mp *m, const char *buf, size_t len)
{
	yaml_event_t ev;
	int rc = 0;

	hmap_init(&m->anames);
	if (!yaml_parser_initialize(&m->yp))
		return perr(m, -ENOMEM, 0, "out of memory");
	yaml_parser_set_input_string(&m->yp, (const unsigned char *)buf, len);
	yaml_parser_set_encoding(&m->yp, YAML_UTF8_ENCODING);
	while (!rc) {
		if (y_next(m, &ev)) {
			rc = m->rc;
			break;
		}
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type == YAML_DOCUMENT_START_EVENT) {
			yaml_event_t root, end;
			json_t *j = NULL;
			size_t line;
			int h;

			yaml_event_delete(&ev);
			anchors_clear(m); /* anchors are per document */
			m->nitems = 0;
			if (y_next(m, &root)) {
				rc = m->rc;
				break;
			}
			line = root.start_mark.line + 1;
			rc = y_node(m, &root, 1, false, &j, &h);
			yaml_event_delete(&root);
			if (!rc && !y_next(m, &end)) {
				yaml_event_delete(&end);
				rc = doc_add(m, j, line, m->item_lines, m->nitems);
			} else {
				json_decref(j);
				rc = m->rc;
			}
			continue;
		}
		yaml_event_delete(&ev);
	}
	anchors_clear(m);
	hmap_free(&m->anames);
	free(m->anc);
	m->anc = NULL;
	m->canc = 0;
	free(m->item_lines);
	m->item_lines = NULL;
	m->citems = m->nitems = 0;
	yaml_parser_delete(&m->yp);
	return rc;
}

/* ---- entry points ---------------------------------------------------------------------------------- */
static void docs_reset(struct mp *m)
{
	moat_docs_free(&m->docs);
	m->nodes = 0;
}

int moat_manifest_parse(const char *buf, size_t len, const char *source, struct moat_docs *out,
			struct moat_errs *errs)
{
	struct mp m = { .src = source ? source : "<input>", .errs = errs };
	size_t skip = 0, off;
	int rc;

	if (!buf && len)
		return -EINVAL;
	if (len > MOAT_MANIFEST_MAX_BYTES) {
		moat_errs_add(errs, "%s: larger than %u bytes", m.src, MOAT_MANIFEST_MAX_BYTES);
		return -E2BIG;
	}
	if (len && memchr(buf, 0, len)) {
		size_t at = (size_t)((const char *)memchr(buf, 0, len) - buf);
		moat_errs_add(errs, "%s:%zu: binary data (a NUL byte), not JSON or YAML text", m.src,
			      line_at(buf, at));
		return -EINVAL;
	}
	if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
		skip = 3; /* UTF-8 byte order mark */
	for (off = skip; off < len && is_space(buf[off]); off++)
		;
	if (off < len && (buf[off] == '{' || buf[off] == '[')) {
		char jmsg[256];

		rc = json_prescan(&m, buf, len);
		if (!rc)
			rc = json_parse_all(&m, buf + skip, len - skip, jmsg, sizeof(jmsg));
		if (rc == -EINVAL && !m.rc) {
			/* not JSON; perhaps YAML flow style.  If YAML fails too, the
			 * JSON message is the useful one: the text looked like JSON. */
			struct moat_errs yerrs = { 0 };

			docs_reset(&m);
			m.errs = &yerrs;
			rc = yaml_parse_all(&m, buf, len);
			m.errs = errs;
			if (rc == -EINVAL)
				moat_errs_add(errs, "%s:%s", m.src, jmsg);
			for (size_t i = 0; rc && rc != -EINVAL && i < yerrs.n; i++)
				moat_errs_add(errs, "%s", yerrs.v[i]);
			moat_errs_free(&yerrs);
		}
	} else {
		rc = yaml_parse_all(&m, buf, len);
	}
	if (rc) {
		moat_docs_free(&m.docs);
		return rc;
	}
	/* move the documents to out */
	if (m.docs.n && out->n + m.docs.n > out->cap) {
		size_t cap = out->n + m.docs.n;
		struct moat_doc *v = realloc(out->v, cap * sizeof(*v));
		if (!v) {
			moat_docs_free(&m.docs);
			moat_errs_add(errs, "%s: out of memory", m.src);
			return -ENOMEM;
		}
		out->v = v;
		out->cap = cap;
	}
	if (m.docs.n)
		memcpy(&out->v[out->n], m.docs.v, m.docs.n * sizeof(*m.docs.v));
	out->n += m.docs.n;
	free(m.docs.v);
	return 0;
}

int moat_manifest_load_file(const char *path, struct moat_docs *out, struct moat_errs *errs)
{
	size_t len = 0, cap = 64 * 1024;
	char *buf = NULL;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		moat_errs_add(errs, "%s: %s", path, strerror(-rc));
		return rc;
	}
	/* read at most one byte past the limit: larger inputs are refused
	 * without reading them (works for pipes, which have no size) */
	for (;;) {
		ssize_t r;

		if (len == cap || !buf) {
			char *nb;

			if (buf)
				cap = cap * 2 > MOAT_MANIFEST_MAX_BYTES + 1 ? MOAT_MANIFEST_MAX_BYTES + 1 :
									      cap * 2;
			nb = realloc(buf, cap);
			if (!nb) {
				rc = -ENOMEM;
				moat_errs_add(errs, "%s: out of memory", path);
				goto out;
			}
			buf = nb;
		}
		/* cppcheck-suppress nullPointerArithmeticRedundantCheck ; buf was allocated just above */
		r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			moat_errs_add(errs, "%s: %s", path, strerror(-rc));
			goto out;
		}
		if (!r)
			break;
		len += (size_t)r;
		if (len > MOAT_MANIFEST_MAX_BYTES) {
			rc = -E2BIG;
			moat_errs_add(errs, "%s: larger than %u bytes", path, MOAT_MANIFEST_MAX_BYTES);
			goto out;
		}
	}
	rc = moat_manifest_parse(buf, len, path, out, errs);
out:
	free(buf);
	close(fd);
	return rc;
}
