// SPDX-License-Identifier: Apache-2.0
/* In-place scalar edits of manifest files (yamledit.h), by the byte offsets
 * libyaml records for every node. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "yamledit.h"
#include "util.h"

static bool scalar_is(const yaml_node_t *n, const char *s)
{
	return n && n->type == YAML_SCALAR_NODE && n->data.scalar.length == strlen(s) &&
	       !memcmp(n->data.scalar.value, s, n->data.scalar.length);
}

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *m, const char *key)
{
	if (!m || m->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++)
		if (scalar_is(yaml_document_get_node(d, p->key), key))
			return yaml_document_get_node(d, p->value);
	return NULL;
}

/* The object named kind/name at m, or among its items when m is a List. */
static yaml_node_t *find_object(yaml_document_t *d, yaml_node_t *m, const char *kind, const char *name,
				int depth)
{
	yaml_node_t *items;

	if (!m || m->type != YAML_MAPPING_NODE || depth > 8)
		return NULL;
	if (scalar_is(map_get(d, m, "kind"), kind) &&
	    scalar_is(map_get(d, map_get(d, m, "metadata"), "name"), name))
		return m;
	items = map_get(d, m, "items");
	if (items && items->type == YAML_SEQUENCE_NODE)
		for (yaml_node_item_t *i = items->data.sequence.items.start;
		     i < items->data.sequence.items.top; i++) {
			yaml_node_t *r = find_object(d, yaml_document_get_node(d, *i), kind, name, depth + 1);
			if (r)
				return r;
		}
	return NULL;
}

int moat_yaml_set_scalar(const char *buf, size_t len, const char *kind, const char *name,
			 const char *const *path, size_t npath, const char *value, char **out, size_t *outlen)
{
	yaml_parser_t p;
	yaml_document_t d;
	int rc = -ENOENT;

	for (const char *v = value; *v; v++)
		if (*v == '"' || *v == '\\' || (unsigned char)*v < 0x20)
			return -EINVAL; /* versions never need escaping */
	if (!yaml_parser_initialize(&p))
		return -ENOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	for (;;) {
		yaml_node_t *n;
		if (!yaml_parser_load(&p, &d)) {
			rc = -EINVAL;
			break;
		}
		if (!yaml_document_get_root_node(&d)) {
			yaml_document_delete(&d);
			break; /* end of the stream */
		}
		n = find_object(&d, yaml_document_get_root_node(&d), kind, name, 0);
		for (size_t i = 0; n && i < npath; i++)
			n = map_get(&d, n, path[i]);
		if (n) {
			size_t s = n->start_mark.index, e = n->end_mark.index;
			bool block = n->type == YAML_SCALAR_NODE &&
				     (n->data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
				      n->data.scalar.style == YAML_FOLDED_SCALAR_STYLE);
			if (n->type != YAML_SCALAR_NODE || e > len || s > e) {
				rc = -EINVAL;
			} else {
				char *nv = xasprintf("\"%s\"%s", value, block ? "\n" : "");
				size_t nl = strlen(nv);
				*outlen = s + nl + (len - e);
				*out = xcalloc(1, *outlen + 1);
				memcpy(*out, buf, s);
				memcpy(*out + s, nv, nl);
				memcpy(*out + s + nl, buf + e, len - e);
				free(nv);
				rc = 0;
			}
			yaml_document_delete(&d);
			break;
		}
		yaml_document_delete(&d);
	}
	yaml_parser_delete(&p);
	return rc;
}
