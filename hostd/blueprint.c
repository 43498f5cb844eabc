// SPDX-License-Identifier: Apache-2.0
/* Blueprint instantiation (blueprint.h).  Decoding a Blueprint object is in
 * decode.c, next to every other kind; the compiler keeps instances in step
 * with blueprints and namespaces (compile.c). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blueprint.h"
#include "decode.h"
#include "util.h"

static void tpl_free(struct moat_bp_tpl *t)
{
	free(t->name);
	json_decref(t->annotations);
	json_decref(t->spec);
}

void moat_blueprint_free(struct moat_blueprint *bp)
{
	if (!bp)
		return;
	free(bp->name);
	free(bp->version);
	moat_selector_free(bp->ns_sel);
	for (size_t i = 0; i < bp->nparams; i++) {
		free(bp->params[i].name);
		free(bp->params[i].def);
	}
	free(bp->params);
	for (size_t i = 0; i < bp->nversions; i++) {
		struct moat_bp_version *v = &bp->versions[i];
		for (size_t k = 0; k < v->nnp; k++)
			tpl_free(&v->np[k]);
		for (size_t k = 0; k < v->ncnp; k++)
			tpl_free(&v->cnp[k]);
		free(v->np);
		free(v->cnp);
		free(v->version);
	}
	free(bp->versions);
	json_decref(bp->doc);
	free(bp);
}

const struct moat_bp_version *moat_bp_find_version(const struct moat_blueprint *bp, const char *version)
{
	for (size_t i = 0; version && i < bp->nversions; i++)
		if (!strcmp(bp->versions[i].version, version))
			return &bp->versions[i];
	return NULL;
}

const struct moat_bp_version *moat_bp_previous(const struct moat_blueprint *bp, const char *from)
{
	for (size_t i = 1; i < bp->nversions; i++)
		if (!strcmp(bp->versions[i].version, from))
			return &bp->versions[i - 1];
	return NULL;
}

bool moat_bp_key(const char *key)
{
	const char *slash = strchr(key, '/');
	size_t pl = strlen(MOAT_BP_PREFIX) - 1, sl = strlen(MOAT_BP_SUFFIX) - 1;

	if (!slash)
		return false;
	if ((size_t)(slash - key) == pl && !strncmp(key, MOAT_BP_PREFIX, pl))
		return true;
	return (size_t)(slash - key) > sl && !strncmp(slash - sl, MOAT_BP_SUFFIX, sl);
}

int moat_bp_effective(const struct moat_blueprint *bp, const struct moat_labels *annotations,
		      const struct moat_bp_version **ver, bool *pinned, char *err, size_t errlen)
{
	char key[MOAT_MAX_LABEL_KEY + 1];
	const char *pin;

	snprintf(key, sizeof(key), "%s%s", MOAT_BP_PREFIX, bp->name);
	pin = annotations ? moat_labels_get(annotations, key) : NULL;
	*pinned = false;
	*ver = moat_bp_find_version(bp, bp->version);
	if (!pin)
		return 0;
	if (moat_bp_find_version(bp, pin)) {
		*ver = moat_bp_find_version(bp, pin);
		*pinned = true;
		return 0;
	}
	snprintf(err, errlen, "annotation %s: version \"%s\" is not in spec.versions; running %s", key, pin,
		 bp->version);
	return 1;
}

/* ---- substitution ----------------------------------------------------------------- */
struct sub {
	const struct moat_blueprint *bp;
	const struct moat_bp_version *v;
	const char *ns;                  /* NULL for cluster templates */
	const struct moat_labels *annos; /* namespace overrides, may be NULL */
	char *err;
	size_t errlen;
	char path[512];
};

static int sub_fail(struct sub *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int sub_fail(struct sub *s, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(s->err, s->errlen, "%s%s%s", s->path, s->path[0] ? ": " : "", msg);
	return -EINVAL;
}

static bool param_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (!first && c >= '0' && c <= '9');
}

static const char *lookup(struct sub *s, const char *name, int *rc)
{
	char key[MOAT_MAX_LABEL_KEY + 1];
	const char *v;

	*rc = 0;
	if (!strcmp(name, "blueprint"))
		return s->bp->name;
	if (!strcmp(name, "version"))
		return s->v->version;
	if (!strcmp(name, "namespace")) {
		if (s->ns)
			return s->ns;
		*rc = sub_fail(s, "${namespace} is not available in a ClusterNetworkPolicy template "
				  "(one instance covers many namespaces)");
		return NULL;
	}
	for (size_t i = 0; i < s->bp->nparams; i++) {
		if (strcmp(s->bp->params[i].name, name))
			continue;
		snprintf(key, sizeof(key), "%s%s%s", s->bp->name, MOAT_BP_SUFFIX, name);
		if (s->ns && s->annos && (v = moat_labels_get(s->annos, key)))
			return v;
		return s->bp->params[i].def;
	}
	*rc = sub_fail(s, "${%s}: no such parameter in spec.parameters", name);
	return NULL;
}

/* Replaces ${name} references; "$${" stays a literal "${".  *whole: the
 * string was exactly one reference. */
static int subst(struct sub *s, const char *in, char **out, bool *whole)
{
	char buf[MOAT_BP_MAX_STRING + 1];
	size_t o = 0, refs = 0;
	const char *p = in;
	int rc;

	*whole = false;
	while (*p) {
		const char *add = p;
		size_t alen = 1;

		if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
			add = "${";
			alen = 2;
			p += 3;
		} else if (p[0] == '$' && p[1] == '{') {
			char name[64];
			size_t n = 0;
			const char *q = p + 2;
			while (param_char(*q, n == 0) && n < sizeof(name) - 1)
				name[n++] = *q++;
			name[n] = 0;
			if (!n || *q != '}')
				return sub_fail(s,
						"\"%.60s\": a reference is ${name}, name of letters, "
						"digits and _",
						in);
			add = lookup(s, name, &rc);
			if (rc)
				return rc;
			alen = strlen(add);
			p = q + 1;
			refs++;
		} else {
			p++;
		}
		if (o + alen > MOAT_BP_MAX_STRING)
			return sub_fail(s, "longer than %d characters after substitution",
					MOAT_BP_MAX_STRING);
		memcpy(buf + o, add, alen);
		o += alen;
	}
	buf[o] = 0;
	*whole = refs == 1 && in[0] == '$' && in[strlen(in) - 1] == '}' && !strchr(in + 1, '$');
	*out = xstrdup(buf);
	return 0;
}

static bool all_digits(const char *s)
{
	if (!*s || strlen(s) > 9)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Substitutes in every string of v, in place.  A string that is exactly one
 * reference to an all-digit value becomes an integer ("port: ${port}"). */
static int subst_tree(struct sub *s, json_t *parent, const char *key, size_t idx, json_t *v)
{
	size_t plen = strlen(s->path);
	int rc = 0;

	if (key)
		snprintf(s->path + plen, sizeof(s->path) - plen, "%s%s", plen ? "." : "", key);
	else if (parent)
		snprintf(s->path + plen, sizeof(s->path) - plen, "[%zu]", idx);
	if (json_is_string(v)) {
		char *r = NULL;
		bool whole;
		if (!strstr(json_string_value(v), "${"))
			goto out;
		rc = subst(s, json_string_value(v), &r, &whole);
		if (!rc) {
			json_t *nv = whole && all_digits(r) ? json_integer(strtoll(r, NULL, 10)) :
							      json_string(r);
			if (key)
				json_object_set_new(parent, key, nv);
			else
				json_array_set_new(parent, idx, nv);
		}
		free(r);
	} else if (json_is_object(v)) {
		const char *k;
		json_t *c;
		void *tmp;
		json_object_foreach_safe(v, tmp, k, c)
		{
			if ((rc = subst_tree(s, v, k, 0, c)))
				break;
		}
	} else if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v) && !rc; i++)
			rc = subst_tree(s, v, NULL, i, json_array_get(v, i));
	}
out:
	s->path[plen] = 0;
	return rc;
}

static json_t *base_doc(const char *api, const char *kind, const struct moat_blueprint *bp,
			const struct moat_bp_version *v, const struct moat_bp_tpl *t, const char *ns)
{
	json_t *an = t->annotations ? json_deep_copy(t->annotations) : json_object();
	char *origin = xasprintf("%s@%s", bp->name, v->version);
	json_t *md, *doc;

	json_object_set_new(an, "moat.io/blueprint", json_string(origin));
	free(origin);
	md = json_pack("{s:s,s:o}", "name", t->name, "annotations", an);
	if (ns)
		json_object_set_new(md, "namespace", json_string(ns));
	doc = json_pack("{s:s,s:s,s:o}", "apiVersion", api, "kind", kind, "metadata", md);
	return doc;
}

int moat_bp_instantiate_np(const struct moat_blueprint *bp, const struct moat_bp_version *v,
			   const struct moat_bp_tpl *t, const char *ns, const struct moat_labels *annotations,
			   json_t **out, char *err, size_t errlen)
{
	struct sub s = { .bp = bp, .v = v, .ns = ns, .annos = annotations, .err = err, .errlen = errlen };
	json_t *doc = base_doc("networking.k8s.io/v1", "NetworkPolicy", bp, v, t, ns);
	json_t *spec = json_deep_copy(t->spec);
	int rc;

	json_object_set_new(doc, "spec", spec);
	rc = subst_tree(&s, doc, "spec", 0, spec);
	if (rc) {
		json_decref(doc);
		return rc;
	}
	*out = doc;
	return 0;
}

/* Adds "blueprint.moat.io/NAME In [VERSION]" to a label selector. */
static void narrow(json_t *sel, const char *key, const char *version)
{
	json_t *ex = json_object_get(sel, "matchExpressions");

	if (!json_is_array(ex)) {
		ex = json_array();
		json_object_set_new(sel, "matchExpressions", ex);
	}
	json_array_append_new(ex,
			      json_pack("{s:s,s:s,s:[s]}", "key", key, "operator", "In", "values", version));
}

int moat_bp_instantiate_cnp(const struct moat_blueprint *bp, const struct moat_bp_version *v,
			    const struct moat_bp_tpl *t, bool narrow_subject, json_t **out, char *err,
			    size_t errlen)
{
	struct sub s = { .bp = bp, .v = v, .err = err, .errlen = errlen };
	json_t *doc = base_doc("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy", bp, v, t, NULL);
	json_t *spec = json_deep_copy(t->spec), *subj, *sel = NULL;
	char key[MOAT_MAX_LABEL_KEY + 1];
	int rc;

	json_object_set_new(doc, "spec", spec);
	rc = subst_tree(&s, doc, "spec", 0, spec);
	if (rc)
		goto fail;
	/* a subject the decoder would reject stays as it is: the decoder says
	 * what is wrong with it */
	subj = json_object_get(spec, "subject");
	if (json_is_object(json_object_get(subj, "namespaces")))
		sel = json_object_get(subj, "namespaces");
	else if (json_is_object(json_object_get(json_object_get(subj, "pods"), "namespaceSelector")))
		sel = json_object_get(json_object_get(subj, "pods"), "namespaceSelector");
	if (sel && narrow_subject) {
		snprintf(key, sizeof(key), "%s%s", MOAT_BP_PREFIX, bp->name);
		narrow(sel, key, v->version);
	} else if (!sel && json_is_object(subj)) {
		snprintf(err, errlen, "spec.subject: must select namespaces or pods");
		rc = -EINVAL;
		goto fail;
	}
	*out = doc;
	return 0;
fail:
	json_decref(doc);
	return rc;
}

int moat_bp_object(const json_t *doc, const char *instance_name, struct moat_object **ret, char *err,
		   size_t errlen)
{
	struct moat_object *o = NULL;
	int rc = moat_decode(doc, NULL, &o, err, errlen);

	if (!rc && !o)
		rc = -EINVAL;
	if (rc) {
		*ret = NULL;
		return rc;
	}
	free(o->name);
	o->name = xstrdup(instance_name);
	free(o->u.policy->name);
	o->u.policy->name = xstrdup(instance_name);
	*ret = o;
	return 0;
}

char *moat_bp_np_name(const struct moat_blueprint *bp, const struct moat_bp_tpl *t)
{
	return xasprintf("%s:%s", bp->name, t->name);
}

char *moat_bp_cnp_name(const struct moat_blueprint *bp, const struct moat_bp_version *v,
		       const struct moat_bp_tpl *t)
{
	return xasprintf("%s:%s@%s", bp->name, t->name, v->version);
}
