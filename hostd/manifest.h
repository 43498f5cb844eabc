/* SPDX-License-Identifier: Apache-2.0 */
/* Manifest loading: bytes (JSON or YAML) in, one jansson object per
 * Kubernetes document out.  Nothing here knows about kinds beyond Lists.
 *
 * Format is detected by content: input whose first significant character is
 * '{' or '[' is read as JSON (one value or several concatenated values);
 * anything else, and JSON that fails to parse but is valid YAML, is read as
 * YAML ("---" separated documents).
 *
 * YAML scalars are typed with the YAML 1.2 core schema, which is what
 * Kubernetes manifests assume in practice: plain 80 / -1 / 0x1F / 0o17 are
 * integers, plain 1.5 / 1e3 are reals, true/false (also True/TRUE...) are
 * booleans, null / Null / NULL / ~ / nothing is null, anything quoted or
 * block-styled is a string.  YAML 1.1 words (yes/no/on/off/y/n) stay
 * strings.  Explicit tags !!str !!int !!float !!bool !!null are honoured.
 * Anchors, aliases and merge keys ("<<") are expanded (the expansion counts
 * against the node limit).  Duplicate mapping keys are an error, in JSON too.
 *
 * Documents that are empty or null are skipped.  Every other document must
 * be an object.  "kind: List" and any "kind: <X>List" that has an "items"
 * list are replaced by their items (recursively); items of a typed <X>List
 * that lack kind/apiVersion get "<X>" and the list's apiVersion, as the API
 * server's list responses omit them.
 *
 * All limits are per call (one file).  Exceeding one is an error naming the
 * source; nothing is returned for that file.
 */
#ifndef MOAT_MANIFEST_H
#define MOAT_MANIFEST_H

#include <stdarg.h>
#include <stddef.h>
#include <jansson.h>

#define MOAT_MANIFEST_MAX_BYTES  (16u << 20) /* input size */
#define MOAT_MANIFEST_MAX_DOCS   10000       /* documents after List expansion */
#define MOAT_MANIFEST_MAX_DEPTH  64          /* nesting of objects/arrays */
#define MOAT_MANIFEST_MAX_STRING (1u << 20)  /* one string or key, in bytes */
#define MOAT_MANIFEST_MAX_NODES  (1u << 20)  /* values per input, aliases expanded */
#define MOAT_MANIFEST_MAX_ERRS   64          /* messages kept in a moat_errs */

/* One document. */
struct moat_doc {
	json_t *json;  /* a JSON object; owned */
	char *source;  /* the source name given to the parser */
	unsigned line; /* 1-based line where the document (YAML: the List
				* item) starts; JSON List items share the List's */
};

/* A growable list of documents; zero-initialise before first use. */
struct moat_docs {
	size_t n, cap;
	struct moat_doc *v;
};

/* Error messages, each "SOURCE:LINE: problem" or "SOURCE: problem".  At most
 * MOAT_MANIFEST_MAX_ERRS are kept; later ones are only counted in dropped.
 * Zero-initialise before first use. */
struct moat_errs {
	size_t n, cap;
	char **v;
	size_t dropped;
};

/* Parses buf into documents appended to out.  On failure nothing is appended
 * to out, a message naming source is appended to errs and the result is
 * -EINVAL (syntax, structure), -E2BIG (a limit above) or -ENOMEM. */
int moat_manifest_parse(const char *buf, size_t len, const char *source, struct moat_docs *out,
			struct moat_errs *errs);
/* Reads path (at most MOAT_MANIFEST_MAX_BYTES) and parses it with path as
 * the source name.  Also -errno of open/read, with a message in errs. */
int moat_manifest_load_file(const char *path, struct moat_docs *out, struct moat_errs *errs);

void moat_docs_free(struct moat_docs *d); /* frees the contents; d reusable */
void moat_errs_free(struct moat_errs *e); /* likewise */
/* Appends a message (bounded as described); 0 or -ENOMEM. */
int moat_errs_add(struct moat_errs *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int moat_errs_vadd(struct moat_errs *e, const char *fmt, va_list ap);

#endif
