/* SPDX-License-Identifier: Apache-2.0 */
/* Blueprints: fleet-wide rule sets (moat.io/v1alpha1 Blueprint).
 *
 * A Blueprint holds versions; each version bundles NetworkPolicy templates
 * (instantiated once per selected namespace) and ClusterNetworkPolicy
 * templates (instantiated once per version in use, their subject narrowed
 * to the namespaces running that version).  Templates refer to parameters
 * as ${name}; ${namespace}, ${blueprint} and ${version} are built in.
 *
 * Which version a namespace runs: the annotation blueprint.moat.io/NAME on
 * the Namespace pins one; otherwise spec.version.  A namespace overrides a
 * parameter with the annotation NAME.blueprint.moat.io/PARAM.
 *
 * Instances are named "NAME:TEMPLATE" (NetworkPolicy, in the namespace) and
 * "NAME:TEMPLATE@VERSION" (ClusterNetworkPolicy).  ':' cannot occur in a
 * Kubernetes name, so an instance never collides with a user's object.
 * Namespaces running a blueprint carry the label blueprint.moat.io/NAME =
 * VERSION inside moat (users cannot set it: such labels are replaced).
 */
#ifndef MOAT_BLUEPRINT_H
#define MOAT_BLUEPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "model.h"

#define MOAT_BP_GROUP         "moat.io"
#define MOAT_BP_PREFIX        "blueprint.moat.io/"
#define MOAT_BP_SUFFIX        ".blueprint.moat.io/"
#define MOAT_BP_MAX_VERSIONS  16
#define MOAT_BP_MAX_TEMPLATES 32 /* per kind and version */
#define MOAT_BP_MAX_PARAMS    32
#define MOAT_BP_MAX_VALUE     253  /* a parameter value */
#define MOAT_BP_MAX_STRING    4096 /* a string after substitution */

struct moat_bp_param {
	char *name;
	char *def; /* default value */
};

struct moat_bp_tpl {
	char *name;          /* DNS label */
	json_t *annotations; /* object or NULL */
	json_t *spec;        /* the policy spec, with ${...} references */
};

struct moat_bp_version {
	char *version;
	size_t nnp, ncnp;
	struct moat_bp_tpl *np;
	struct moat_bp_tpl *cnp;
};

struct moat_blueprint {
	char *name;
	char *version; /* spec.version: what unpinned namespaces run */
	struct moat_selector *ns_sel;
	size_t nparams;
	struct moat_bp_param *params;
	size_t nversions;
	struct moat_bp_version *versions;
	json_t *doc; /* the object as written (for diff and rollback) */
};

void moat_blueprint_free(struct moat_blueprint *bp);

const struct moat_bp_version *moat_bp_find_version(const struct moat_blueprint *bp, const char *version);

/* The version namespace ns runs (annotations: its blueprint annotations).
 * *pinned says whether an annotation chose it.  A pin to a version the
 * blueprint does not have falls back to spec.version with a message in err
 * (return 1); else 0. */
int moat_bp_effective(const struct moat_blueprint *bp, const struct moat_labels *annotations,
		      const struct moat_bp_version **ver, bool *pinned, char *err, size_t errlen);

/* A NetworkPolicy document for template t of version v in namespace ns.
 * 0 with *out set, or -EINVAL with err ("FIELD: problem"). */
int moat_bp_instantiate_np(const struct moat_blueprint *bp, const struct moat_bp_version *v,
			   const struct moat_bp_tpl *t, const char *ns, const struct moat_labels *annotations,
			   json_t **out, char *err, size_t errlen);

/* A ClusterNetworkPolicy document for template t of version v; with narrow,
 * its subject is narrowed to namespaces labelled blueprint.moat.io/NAME =
 * VERSION (what is applied; without: what the template says, for diffs). */
int moat_bp_instantiate_cnp(const struct moat_blueprint *bp, const struct moat_bp_version *v,
			    const struct moat_bp_tpl *t, bool narrow, json_t **out, char *err, size_t errlen);

/* Decodes an instance and gives it its instance name ("bp:tpl" or
 * "bp:tpl@version").  Errors as moat_decode's, without a source. */
int moat_bp_object(const json_t *doc, const char *instance_name, struct moat_object **ret, char *err,
		   size_t errlen);

/* Instance names; malloc'd. */
char *moat_bp_np_name(const struct moat_blueprint *bp, const struct moat_bp_tpl *t);
char *moat_bp_cnp_name(const struct moat_blueprint *bp, const struct moat_bp_version *v,
		       const struct moat_bp_tpl *t);

/* Whether an annotation or label key is one of the blueprint keys. */
bool moat_bp_key(const char *key);

/* The previous version of the blueprint: the one listed before `from` in
 * spec.versions (versions are listed oldest first).  NULL if none. */
const struct moat_bp_version *moat_bp_previous(const struct moat_blueprint *bp, const char *from);

#endif
