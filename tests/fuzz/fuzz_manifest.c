// SPDX-License-Identifier: Apache-2.0
/* Manifest files (JSON and YAML, several documents, Lists) into the object
 * model: whatever the bytes, the parser and the decoder return an object or
 * an error message that names the source; nothing crashes, leaks or reads
 * out of bounds (ASan), and an error leaves no half-parsed documents. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <assert.h>
#include "decode.h"
#include "manifest.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	char err[512];
	int rc;

	rc = moat_manifest_parse((const char *)data, size, "fuzz.yaml", &docs, &errs);
	if (rc) {
		/* a failure appends nothing and says why, naming the source */
		assert(docs.n == 0);
		assert(errs.n == 1 && strstr(errs.v[0], "fuzz.yaml"));
	}
	for (size_t i = 0; i < docs.n; i++) {
		struct moat_object *o = NULL;
		err[0] = 0;
		rc = moat_decode(docs.v[i].json, docs.v[i].source, &o, err, sizeof(err));
		if (rc == -EINVAL)
			assert(err[0] && strstr(err, "fuzz.yaml"));
		else if (rc == 0 && o) {
			char *key = moat_object_key(o);
			assert(key);
			free(key);
			moat_object_free(o);
		} else
			assert(rc == 0 || rc == -ENOMEM);
	}
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	return 0;
}
