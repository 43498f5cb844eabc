// SPDX-License-Identifier: Apache-2.0
/* The manifest directory source.
 *
 * Per file we keep what was last applied: object key -> digest of the
 * object's canonical JSON.  A reload decodes the file and compares: objects
 * that vanished are deleted, changed or new ones applied, unchanged ones
 * skipped (so touching one policy in a file of thousands recompiles one
 * policy).  A file that does not parse keeps its objects; an object that does
 * not decode keeps its last good version; an object key defined by two files
 * belongs to the first.  If the resulting generation is refused (capacity),
 * the files of that batch keep what they had applied before. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "srcdir.h"
#include "manifest.h"
#include "decode.h"
#include "util.h"

#define MAX_FILES       65536
#define MAX_FILE_ERRORS 16

struct objrec {
	char *key;
	uint64_t digest;
};

struct sfile {
	char *name;
	struct hmap applied; /* key -> objrec: what the datapath has */
	struct hmap pending; /* key -> objrec: reloaded, not yet committed */
	bool has_pending;
	bool gone;               /* deleted from disk, deletion pending */
	char digest[17];         /* content digest of the last load */
	char applied_digest[17]; /* content digest whose objects are live */
	char status[32];         /* ok | parse-error | refused | partial */
	char *errors[MAX_FILE_ERRORS];
	size_t nerrors;
};

struct moat_srcdir {
	char *dir;
	int ifd;
	int wd;
	struct hmap files;   /* name -> sfile */
	struct hmap owner;   /* object key -> sfile name (owned string) */
	struct ptrvec batch; /* files reloaded since the last applied() */
};

static bool wanted_name(const char *n)
{
	size_t l = strlen(n);

	if (n[0] == '.' || n[l - 1] == '~')
		return false;
	return (l > 5 && !strcmp(n + l - 5, ".json")) || (l > 5 && !strcmp(n + l - 5, ".yaml")) ||
	       (l > 4 && !strcmp(n + l - 4, ".yml"));
}

static void recs_free(struct hmap *m)
{
	size_t it = 0;
	void *v;

	while (hmap_next(m, &it, NULL, NULL, &v)) {
		struct objrec *r = v;
		free(r->key);
		free(r);
	}
	hmap_free(m);
	hmap_init(m);
}

static void file_errors_clear(struct sfile *f)
{
	for (size_t i = 0; i < f->nerrors; i++)
		free(f->errors[i]);
	f->nerrors = 0;
}

static void file_error(struct sfile *f, moat_src_err_fn err, void *arg, const char *msg)
{
	if (err)
		err(arg, msg);
	if (f->nerrors < MAX_FILE_ERRORS)
		f->errors[f->nerrors++] = xstrdup(msg);
}

static struct sfile *file_get(struct moat_srcdir *s, const char *name, bool create)
{
	struct sfile *f = hmap_gets(&s->files, name);

	if (f || !create)
		return f;
	if (s->files.n >= MAX_FILES)
		return NULL;
	f = xcalloc(1, sizeof(*f));
	f->name = xstrdup(name);
	hmap_init(&f->applied);
	hmap_init(&f->pending);
	hmap_put(&s->files, f->name, strlen(f->name), f, NULL);
	return f;
}

static void batch_add(struct moat_srcdir *s, struct sfile *f)
{
	for (size_t i = 0; i < s->batch.n; i++)
		if (s->batch.v[i] == f)
			return;
	ptrvec_push(&s->batch, f);
}

static const char *owner_of(struct moat_srcdir *s, const char *key)
{
	return hmap_gets(&s->owner, key);
}

const char *moat_srcdir_owner(const struct moat_srcdir *s, const char *key)
{
	return hmap_gets(&s->owner, key);
}

const char *moat_srcdir_dir(const struct moat_srcdir *s)
{
	return s->dir;
}

static void owner_set(struct moat_srcdir *s, const char *key, const char *file)
{
	char *k = xstrdup(key);
	void *old = NULL;
	const void *ok;
	size_t it = 0, kl;
	void *v;

	/* replace: free the previous key string and value */
	if (hmap_gets(&s->owner, key)) {
		while (hmap_next(&s->owner, &it, &ok, &kl, &v))
			if (kl == strlen(key) && !memcmp(ok, key, kl)) {
				hmap_del(&s->owner, ok, kl);
				free((void *)ok);
				free(v);
				break;
			}
	}
	hmap_put(&s->owner, k, strlen(k), xstrdup(file), &old);
}

static void owner_drop(struct moat_srcdir *s, const char *key)
{
	const void *ok;
	size_t it = 0, kl;
	void *v;

	while (hmap_next(&s->owner, &it, &ok, &kl, &v))
		if (kl == strlen(key) && !memcmp(ok, key, kl)) {
			hmap_del(&s->owner, ok, kl);
			free((void *)ok);
			free(v);
			return;
		}
}

struct load_ctx {
	struct moat_srcdir *s;
	struct sfile *f;
	struct moat_compiler *c;
	moat_src_err_fn err;
	void *arg;
	size_t bad;
};

/* One decoded document of the file being loaded. */
static void load_doc(struct load_ctx *lc, const char *key, uint64_t digest, struct moat_object *obj,
		     const char *errmsg)
{
	struct sfile *f = lc->f;
	struct objrec *prev, *r;
	const char *own;

	if (!key) { /* undecodable document without an identity */
		file_error(f, lc->err, lc->arg, errmsg);
		lc->bad++;
		return;
	}
	own = owner_of(lc->s, key);
	if (own && strcmp(own, f->name)) {
		char *m = xasprintf("%s/%s: %s is already defined in %s; ignored here", lc->s->dir, f->name,
				    key, own);
		file_error(f, lc->err, lc->arg, m);
		free(m);
		moat_object_free(obj);
		lc->bad++;
		return;
	}
	if (hmap_gets(&f->pending, key)) {
		char *m = xasprintf("%s/%s: %s is defined twice in the file; the first wins", lc->s->dir,
				    f->name, key);
		file_error(f, lc->err, lc->arg, m);
		free(m);
		moat_object_free(obj);
		lc->bad++;
		return;
	}
	prev = hmap_gets(&f->applied, key);
	r = xcalloc(1, sizeof(*r));
	r->key = xstrdup(key);
	if (errmsg) {
		/* keep the last good version, if there was one */
		file_error(f, lc->err, lc->arg, errmsg);
		lc->bad++;
		r->digest = prev ? prev->digest : 0;
		if (!prev) {
			free(r->key);
			free(r);
			moat_object_free(obj);
			return;
		}
		hmap_put(&f->pending, r->key, strlen(r->key), r, NULL);
		moat_object_free(obj);
		return;
	}
	r->digest = digest;
	hmap_put(&f->pending, r->key, strlen(r->key), r, NULL);
	if (prev && prev->digest == digest) {
		moat_object_free(obj); /* unchanged */
		return;
	}
	owner_set(lc->s, key, f->name);
	moat_compiler_apply(lc->c, obj);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (!fp)
		return NULL;
	for (;;) {
		if (n == cap) {
			if (cap >= MOAT_MANIFEST_MAX_BYTES + 1)
				break;
			cap = cap ? cap * 2 : 65536;
			buf = xrealloc(buf, cap + 1);
		}
		size_t r = fread(buf + n, 1, cap - n, fp);
		if (!r)
			break;
		n += r;
	}
	fclose(fp);
	if (!buf)
		buf = xcalloc(1, 1);
	buf[n] = 0;
	*len = n;
	return buf;
}

/* The key of a document that did not decode, so its last good version can
 * be kept: Kind/namespace/name as moat_object_key would say. */
static char *doc_key(const json_t *doc)
{
	const char *kind = json_string_value(json_object_get(doc, "kind"));
	json_t *md = json_object_get(doc, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));
	static const char *const namespaced[] = { "Pod", "Service", "NetworkPolicy", NULL };
	bool nsd = false;

	if (!kind || !name)
		return NULL;
	for (int i = 0; namespaced[i]; i++)
		nsd |= !strcmp(kind, namespaced[i]);
	if (nsd)
		return xasprintf("%s/%s/%s", kind, ns && *ns ? ns : "default", name);
	return xasprintf("%s/%s", kind, name);
}

static uint64_t doc_digest(const json_t *doc)
{
	char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	uint64_t h = s ? moat_hash(s, strlen(s), 0) : 0;

	free(s);
	return h;
}

static void digest_hex(uint64_t h, char out[17])
{
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* Loads one file and applies the difference to its last applied state. */
static int file_load(struct moat_srcdir *s, const char *name, struct moat_compiler *c, moat_src_err_fn err,
		     void *arg)
{
	struct sfile *f = file_get(s, name, true);
	struct load_ctx lc = { .s = s, .f = f, .c = c, .err = err, .arg = arg };
	struct moat_docs docs;
	struct moat_errs errs;
	char path[PATH_MAX], *buf = NULL;
	size_t len = 0;
	int rc;

	if (!f)
		return -ENOSPC;
	snprintf(path, sizeof(path), "%s/%s", s->dir, name);
	file_errors_clear(f);
	recs_free(&f->pending);
	f->has_pending = true;
	f->gone = false;
	batch_add(s, f);

	memset(&docs, 0, sizeof(docs));
	memset(&errs, 0, sizeof(errs));
	buf = read_all(path, &len);
	digest_hex(buf ? moat_hash(buf, len, 0) : 0, f->digest);
	rc = buf ? moat_manifest_parse(buf, len, name, &docs, &errs) : -errno;
	free(buf);
	if (rc) {
		/* the whole file is unusable: keep what it had */
		for (size_t i = 0; i < errs.n; i++)
			file_error(f, err, arg, errs.v[i]);
		if (!errs.n) {
			char *m = xasprintf("%s: %s", path, strerror(-rc));
			file_error(f, err, arg, m);
			free(m);
		}
		snprintf(f->status, sizeof(f->status), "parse-error");
		recs_free(&f->pending);
		f->has_pending = false;
		moat_docs_free(&docs);
		moat_errs_free(&errs);
		return rc;
	}
	for (size_t i = 0; i < errs.n; i++) {
		file_error(f, err, arg, errs.v[i]);
		lc.bad++;
	}
	for (size_t i = 0; i < docs.n; i++) {
		struct moat_object *obj = NULL;
		char emsg[512];
		char *key = NULL;
		uint64_t dg = 0;

		char src[PATH_MAX];
		/* file:line, so an error points at the document */
		if (docs.v[i].line)
			snprintf(src, sizeof(src), "%s:%u", docs.v[i].source, docs.v[i].line);
		else
			snprintf(src, sizeof(src), "%s", docs.v[i].source);
		rc = moat_decode(docs.v[i].json, src, &obj, emsg, sizeof(emsg));
		if (rc == 0 && !obj)
			continue; /* a kind we do not read */
		key = rc ? doc_key(docs.v[i].json) : moat_object_key(obj);
		dg = doc_digest(docs.v[i].json);
		load_doc(&lc, key, dg, rc ? NULL : obj, rc ? emsg : NULL);
		free(key);
	}
	moat_docs_free(&docs);
	moat_errs_free(&errs);

	/* objects the file no longer has */
	{
		size_t it = 0;
		void *v;
		while (hmap_next(&f->applied, &it, NULL, NULL, &v)) {
			struct objrec *r = v;
			if (hmap_gets(&f->pending, r->key))
				continue;
			moat_compiler_delete(c, r->key);
			owner_drop(s, r->key);
		}
	}
	snprintf(f->status, sizeof(f->status), lc.bad ? "partial" : "ok");
	return 0;
}

static void file_unload(struct moat_srcdir *s, const char *name, struct moat_compiler *c)
{
	struct sfile *f = file_get(s, name, false);
	size_t it = 0;
	void *v;

	if (!f)
		return;
	while (hmap_next(&f->applied, &it, NULL, NULL, &v)) {
		struct objrec *r = v;
		const char *own = owner_of(s, r->key);
		if (own && strcmp(own, f->name))
			continue;
		moat_compiler_delete(c, r->key);
		owner_drop(s, r->key);
	}
	recs_free(&f->pending);
	f->has_pending = true;
	f->gone = true;
	file_errors_clear(f);
	batch_add(s, f);
}

void moat_srcdir_applied(struct moat_srcdir *s, bool ok, const char *msg)
{
	for (size_t i = 0; i < s->batch.n; i++) {
		struct sfile *f = s->batch.v[i];
		if (!f->has_pending)
			continue;
		if (ok) {
			struct hmap t = f->applied;
			f->applied = f->pending;
			f->pending = t;
			recs_free(&f->pending);
			memcpy(f->applied_digest, f->digest, sizeof(f->digest));
		} else {
			recs_free(&f->pending);
			snprintf(f->status, sizeof(f->status), "refused");
			if (msg && f->nerrors < MAX_FILE_ERRORS)
				f->errors[f->nerrors++] = xstrdup(msg);
			/* the compiler went back to what was applied: so do we */
			size_t it = 0;
			void *v;
			while (hmap_next(&f->applied, &it, NULL, NULL, &v))
				owner_set(s, ((struct objrec *)v)->key, f->name);
		}
		f->has_pending = false;
	}
	/* files deleted from disk and applied: forget them */
	for (size_t i = 0; i < s->batch.n; i++) {
		struct sfile *f = s->batch.v[i];
		if (!f->gone || !ok)
			continue;
		hmap_del(&s->files, f->name, strlen(f->name));
		recs_free(&f->applied);
		recs_free(&f->pending);
		file_errors_clear(f);
		free(f->name);
		free(f);
	}
	s->batch.n = 0;
}

int moat_srcdir_open(const char *dir, struct moat_srcdir **ret)
{
	struct moat_srcdir *s = xcalloc(1, sizeof(*s));
	int err;

	s->dir = xstrdup(dir);
	hmap_init(&s->files);
	hmap_init(&s->owner);
	s->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (s->ifd < 0) {
		err = -errno;
		goto fail;
	}
	s->wd = inotify_add_watch(s->ifd, dir,
				  IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF |
					  IN_MOVE_SELF);
	if (s->wd < 0) {
		err = -errno;
		goto fail;
	}
	*ret = s;
	return 0;
fail:
	moat_srcdir_free(s);
	return err;
}

void moat_srcdir_free(struct moat_srcdir *s)
{
	size_t it = 0;
	const void *k;
	void *v;

	if (!s)
		return;
	while (hmap_next(&s->files, &it, NULL, NULL, &v)) {
		struct sfile *f = v;
		recs_free(&f->applied);
		recs_free(&f->pending);
		file_errors_clear(f);
		free(f->name);
		free(f);
	}
	it = 0;
	while (hmap_next(&s->owner, &it, &k, NULL, &v)) {
		free((void *)k);
		free(v);
	}
	hmap_free(&s->files);
	hmap_free(&s->owner);
	ptrvec_free(&s->batch);
	if (s->ifd >= 0)
		close(s->ifd);
	free(s->dir);
	free(s);
}

int moat_srcdir_fd(const struct moat_srcdir *s)
{
	return s->ifd;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int moat_srcdir_scan(struct moat_srcdir *s, struct moat_compiler *c, moat_src_err_fn err, void *arg)
{
	DIR *d = opendir(s->dir);
	struct dirent *de;
	struct ptrvec names = { 0 };
	size_t it = 0;
	void *v;

	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (wanted_name(de->d_name))
			ptrvec_push(&names, xstrdup(de->d_name));
	closedir(d);
	/* files that disappeared while we were not looking */
	while (hmap_next(&s->files, &it, NULL, NULL, &v)) {
		struct sfile *f = v;
		bool present = false;
		for (size_t i = 0; i < names.n && !present; i++)
			present = !strcmp(names.v[i], f->name);
		if (!present)
			file_unload(s, f->name, c);
	}
	/* a stable order: the first file defining an object owns it */
	if (names.n) /* names.v is NULL when empty: not for qsort */
		qsort(names.v, names.n, sizeof(void *), cmp_name);
	for (size_t i = 0; i < names.n; i++) {
		file_load(s, names.v[i], c, err, arg);
		free(names.v[i]);
	}
	ptrvec_free(&names);
	return 0;
}

int moat_srcdir_process(struct moat_srcdir *s, struct moat_compiler *c, moat_src_err_fn err, void *arg)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	int n = 0;
	bool rescan = false;

	for (;;) {
		ssize_t len = read(s->ifd, buf, sizeof(buf));
		if (len <= 0)
			break;
		for (char *p = buf; p < buf + len;) {
			struct inotify_event *ev = (void *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				rescan = true;
				continue;
			}
			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
				if (err) {
					char *m = xasprintf(
						"%s was removed; the objects loaded from it stay enforced",
						s->dir);
					err(arg, m);
					free(m);
				}
				continue;
			}
			if (!ev->len || !wanted_name(ev->name))
				continue;
			if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
				file_unload(s, ev->name, c);
			else
				file_load(s, ev->name, c, err, arg);
			n++;
		}
	}
	if (rescan) {
		moat_srcdir_scan(s, c, err, arg);
		n++;
	}
	return n;
}

json_t *moat_srcdir_json(const struct moat_srcdir *s)
{
	json_t *a = json_array();
	size_t it = 0;
	void *v;

	while (hmap_next(&s->files, &it, NULL, NULL, &v)) {
		const struct sfile *f = v;
		json_t *errs = json_array();
		for (size_t i = 0; i < f->nerrors; i++)
			json_array_append_new(errs, json_string(f->errors[i]));
		json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:s,s:i,s:o}", "file", f->name, "status",
						   f->status, "digest", f->digest, "applied_digest",
						   f->applied_digest, "objects", (json_int_t)f->applied.n,
						   "errors", errs));
	}
	return a;
}

int moat_srcdir_load_once(const char *dir, struct moat_compiler *c, moat_src_err_fn err, void *arg)
{
	struct moat_srcdir *s = xcalloc(1, sizeof(*s));
	size_t it = 0, bad = 0;
	void *v;
	int rc;

	s->dir = xstrdup(dir);
	s->ifd = -1;
	hmap_init(&s->files);
	hmap_init(&s->owner);
	rc = moat_srcdir_scan(s, c, err, arg);
	while (hmap_next(&s->files, &it, NULL, NULL, &v))
		bad += ((struct sfile *)v)->nerrors;
	moat_srcdir_free(s);
	return rc ? rc : (int)bad;
}
