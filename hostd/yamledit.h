/* SPDX-License-Identifier: Apache-2.0 */
/* Changing one scalar of one object in a manifest file in place: the rest
 * of the file (comments, order, style) stays byte for byte.  Used by
 * blueprint rollback, which changes spec.version of a Blueprint. */
#ifndef MOAT_YAMLEDIT_H
#define MOAT_YAMLEDIT_H

#include <stddef.h>

/* In buf (YAML or JSON), finds the document (or List item) with the given
 * kind and metadata.name, follows path (mapping keys) to a scalar and
 * replaces it with value, double-quoted.  *out (malloc'd, NUL-terminated)
 * is the new text.  -ENOENT: no such object or field; -EINVAL: not YAML,
 * or the field is not a scalar. */
int moat_yaml_set_scalar(const char *buf, size_t len, const char *kind, const char *name,
			 const char *const *path, size_t npath, const char *value, char **out,
			 size_t *outlen);

#endif
