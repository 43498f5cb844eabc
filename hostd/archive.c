// SPDX-License-Identifier: Apache-2.0
/* The flight recorder: writer side (queue, partitions, segments, rotation,
 * retention, crash recovery), settings, listing and the packet comment
 * records.  Queries are in archive_query.c.  See archive.h and
 * docs/archives.md. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "archive.h"
#include "compile.h"
#include "daemon.h"
#include "ifaces.h"
#include "log.h"
#include "util.h"

/* ---- sizes, durations, times ---------------------------------------------- */
static int parse_num_suffix(const char *s, long double *v, const char **suffix)
{
	char *end;

	if (!s || !*s || isspace((unsigned char)*s) || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	*v = strtold(s, &end);
	if (end == s || errno || *v < 0)
		return -EINVAL;
	*suffix = end;
	return 0;
}

int moat_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *sfx;
		long double mul;
	} u[] = {
		{ "", 1 },
		{ "B", 1 },
		{ "k", 1e3 },
		{ "K", 1e3 },
		{ "KB", 1e3 },
		{ "Ki", 1024.0 },
		{ "KiB", 1024.0 },
		{ "M", 1e6 },
		{ "MB", 1e6 },
		{ "Mi", 1048576.0 },
		{ "MiB", 1048576.0 },
		{ "G", 1e9 },
		{ "GB", 1e9 },
		{ "Gi", 1073741824.0 },
		{ "GiB", 1073741824.0 },
		{ "T", 1e12 },
		{ "TB", 1e12 },
		{ "Ti", 1099511627776.0 },
		{ "TiB", 1099511627776.0 },
	};
	const char *sfx;
	long double v;

	if (parse_num_suffix(s, &v, &sfx))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++)
		if (!strcmp(sfx, u[i].sfx)) {
			v *= u[i].mul;
			if (v > 1e18L)
				return -ERANGE;
			*out = (uint64_t)v;
			return 0;
		}
	return -EINVAL;
}

int moat_parse_duration(const char *s, uint64_t *out)
{
	static const struct {
		const char *sfx;
		long double mul;
	} u[] = {
		{ "", 1e9 },   { "ns", 1 },     { "us", 1e3 },    { "ms", 1e6 },     { "s", 1e9 },
		{ "m", 60e9 }, { "h", 3600e9 }, { "d", 86400e9 }, { "w", 604800e9 },
	};
	const char *sfx;
	long double v;

	if (parse_num_suffix(s, &v, &sfx))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++)
		if (!strcmp(sfx, u[i].sfx)) {
			v *= u[i].mul;
			if (v > 1e19L)
				return -ERANGE;
			*out = (uint64_t)v;
			return 0;
		}
	return -EINVAL;
}

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int moat_time_parse(const char *s, uint64_t now, uint64_t *out)
{
	int Y, M, D, h, m, sec, n = 0;
	uint64_t frac = 0, d;
	struct tm tm;
	const char *p;
	int64_t off = 0;
	time_t t;

	if (!s || !*s)
		return -EINVAL;
	if (!strcmp(s, "now")) {
		*out = now;
		return 0;
	}
	if (*s == '-' || *s == '+') {
		if (moat_parse_duration(s + 1, &d) || !d)
			return -EINVAL;
		if (*s == '-' && d > now)
			return -ERANGE;
		*out = *s == '-' ? now - d : now + d;
		return 0;
	}
	if (*s == '@') {
		char *end;
		long double v;
		errno = 0;
		v = strtold(s + 1, &end);
		if (end == s + 1 || *end || errno || v < 0 || v > 1e10L)
			return -EINVAL;
		*out = (uint64_t)(v * 1e9L);
		return 0;
	}
	/* NOLINTNEXTLINE(cert-err34-c): at most 4 or 2 digits each, range-checked below */
	if (sscanf(s, "%4d-%2d-%2d%*[Tt ]%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 || !n)
		return -EINVAL;
	if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || Y < 1970)
		return -EINVAL;
	p = s + n;
	if (*p == '.') {
		uint64_t scale = 100000000;
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			frac += (uint64_t)(*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		/* NOLINTNEXTLINE(cert-err34-c): two digits each, range-checked */
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59 || strlen(p) != 6)
			return -EINVAL;
		off = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return -EINVAL; /* RFC 3339 needs a zone */
	}
	if (*p)
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = Y - 1900;
	tm.tm_mon = M - 1;
	tm.tm_mday = D;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1 || (int64_t)t - off < 0)
		return -EINVAL;
	*out = (uint64_t)((int64_t)t - off) * 1000000000ull + frac;
	return 0;
}

void moat_time_format(uint64_t ns, char *buf, size_t len)
{
	time_t s = (time_t)(ns / 1000000000ull);
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09lluZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned long long)(ns % 1000000000ull));
}

/* ---- settings ------------------------------------------------------------------ */
void moat_archive_opts_defaults(struct moat_archive_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->segment_bytes = 64ull << 20;
	o->segment_ns = 3600ull * 1000000000ull;
	o->queue_bytes = 16u << 20;
	o->enforce = true;
	o->defaults.max_age_ns = 7ull * 86400 * 1000000000ull;
	o->defaults.max_bytes = 1ull << 30;
}

static bool ns_name_ok(const char *s)
{
	size_t l = strlen(s);

	if (!l || l > 63)
		return false;
	for (const char *p = s; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-'))
			return false;
	return true;
}

static struct moat_archive_limits *limits_slot(struct moat_archive_opts *o, const char *ns)
{
	for (size_t i = 0; i < o->nns; i++)
		if (!strcmp(o->ns[i].ns, ns))
			return &o->ns[i];
	if (o->nns == MOAT_ARCHIVE_MAX_NS_RULES)
		return NULL;
	memset(&o->ns[o->nns], 0, sizeof(o->ns[0]));
	snprintf(o->ns[o->nns].ns, sizeof(o->ns[0].ns), "%s", ns);
	o->ns[o->nns].max_age_ns = o->defaults.max_age_ns;
	o->ns[o->nns].max_bytes = o->defaults.max_bytes;
	return &o->ns[o->nns++];
}

static int ns_limit_set(struct moat_archive_opts *o, const char *ns, const char *age, const char *size,
			char *err, size_t errlen)
{
	struct moat_archive_limits *l;

	if (!ns_name_ok(ns)) {
		snprintf(err, errlen, "namespace \"%s\" is not a namespace name", ns);
		return -EINVAL;
	}
	l = limits_slot(o, ns);
	if (!l) {
		snprintf(err, errlen, "more than %d namespaces", MOAT_ARCHIVE_MAX_NS_RULES);
		return -E2BIG;
	}
	if (age && *age && moat_parse_duration(age, &l->max_age_ns)) {
		snprintf(err, errlen, "%s: maxAge \"%s\" is not a duration (like 7d, 12h, 30m)", ns, age);
		return -EINVAL;
	}
	if (size && *size && moat_parse_size(size, &l->max_bytes)) {
		snprintf(err, errlen, "%s: maxSize \"%s\" is not a size (like 1Gi, 500Mi)", ns, size);
		return -EINVAL;
	}
	return 0;
}

static const char *jtext(json_t *v, char *buf, size_t len)
{
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		return buf;
	}
	return NULL;
}

int moat_archive_parse_ns_limits(const char *s, struct moat_archive_opts *o, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j, *v;
	const char *k;
	int rc = 0;

	if (!s || !*s)
		return 0;
	if (*s == '{') {
		j = json_loads(s, 0, &je);
		if (!j || !json_is_object(j)) {
			json_decref(j);
			snprintf(err, errlen, "not a JSON object: %s", je.text);
			return -EINVAL;
		}
		json_object_foreach(j, k, v)
		{
			char b1[32] = "", b2[32] = "";
			const char *age = NULL, *size = NULL, *kk;
			json_t *vv;
			if (!json_is_object(v)) {
				snprintf(err, errlen, "%s: expected {maxAge, maxSize}", k);
				rc = -EINVAL;
				break;
			}
			json_object_foreach(v, kk, vv)
			{
				const char **dst = !strcmp(kk, "maxAge")  ? &age :
						   !strcmp(kk, "maxSize") ? &size :
									    NULL;
				if (!dst) {
					snprintf(err, errlen, "%s.%s: unknown setting (maxAge, maxSize)", k,
						 kk);
					rc = -EINVAL;
					break;
				}
				*dst = jtext(vv, dst == &age ? b1 : b2, sizeof(b1));
				if (!*dst) {
					snprintf(err, errlen,
						 "%s.%s: must be a string or a non-negative integer", k, kk);
					rc = -EINVAL;
					break;
				}
			}
			if (rc || (rc = ns_limit_set(o, k, age, size, err, errlen)))
				break;
		}
		json_decref(j);
		return rc;
	}
	{
		char *copy = xstrdup(s), *save = NULL, *tok;
		for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(tok, '='), *colon;
			if (!eq) {
				snprintf(err, errlen, "\"%s\": expected NAMESPACE=MAXAGE:MAXSIZE", tok);
				rc = -EINVAL;
				break;
			}
			*eq = 0;
			colon = strchr(eq + 1, ':');
			if (colon)
				*colon = 0;
			rc = ns_limit_set(o, tok, eq + 1, colon ? colon + 1 : NULL, err, errlen);
			if (rc)
				break;
		}
		free(copy);
	}
	return rc;
}

enum setting_kind {
	S_SIZE,
	S_DURATION,
	S_NAMESPACES
};

static const struct {
	const char *path;
	enum setting_kind kind;
	size_t off;
} settings[] = {
	{ "archive.segmentSize", S_SIZE, offsetof(struct moatd_config, archive_segment_size) },
	{ "archive.segmentAge", S_DURATION, offsetof(struct moatd_config, archive_segment_age) },
	{ "archive.maxAge", S_DURATION, offsetof(struct moatd_config, archive_max_age) },
	{ "archive.maxSize", S_SIZE, offsetof(struct moatd_config, archive_max_size) },
	{ "archive.totalSize", S_SIZE, offsetof(struct moatd_config, archive_total_size) },
	{ "archive.queueSize", S_SIZE, offsetof(struct moatd_config, archive_queue_size) },
	{ "archive.namespaces", S_NAMESPACES, offsetof(struct moatd_config, archive_namespaces) },
};

static int check_value(const char *path, enum setting_kind kind, const char *s, char *err, size_t errlen)
{
	uint64_t v;

	if (kind == S_SIZE && moat_parse_size(s, &v)) {
		snprintf(err, errlen, "%s: \"%s\" is not a size (like 64Mi, 1Gi, 4096)", path, s);
		return -EINVAL;
	}
	if (kind == S_DURATION && moat_parse_duration(s, &v)) {
		snprintf(err, errlen, "%s: \"%s\" is not a duration (like 7d, 1h, 30m, 3600)", path, s);
		return -EINVAL;
	}
	if (kind == S_NAMESPACES) {
		struct moat_archive_opts *o = xcalloc(1, sizeof(*o));
		char e2[256];
		int rc;
		moat_archive_opts_defaults(o);
		rc = moat_archive_parse_ns_limits(s, o, e2, sizeof(e2));
		free(o);
		if (rc) {
			snprintf(err, errlen, "%s: %s", path, e2);
			return rc;
		}
	}
	return 0;
}

int moat_archive_setting(const char *path, json_t *v, char **text, char *err, size_t errlen)
{
	char buf[32];
	const char *s;

	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		if (strcmp(settings[i].path, path))
			continue;
		if (settings[i].kind == S_NAMESPACES && json_is_object(v)) {
			char *d = json_dumps(v, JSON_COMPACT);
			if (!d || check_value(path, S_NAMESPACES, d, err, errlen)) {
				free(d);
				return -EINVAL;
			}
			*text = d;
			return 0;
		}
		s = jtext(v, buf, sizeof(buf));
		if (!s) {
			snprintf(err, errlen, "%s: must be a string%s", path,
				 settings[i].kind == S_NAMESPACES ? " or an object" :
								    " or a non-negative integer");
			return -EINVAL;
		}
		if (check_value(path, settings[i].kind, s, err, errlen))
			return -EINVAL;
		*text = xstrdup(s);
		return 0;
	}
	snprintf(err, errlen, "%s: unknown setting", path);
	return -EINVAL;
}

int moat_archive_opts_from_config(const struct moatd_config *c, struct moat_archive_opts *o, char *err,
				  size_t errlen)
{
	uint64_t v;

	moat_archive_opts_defaults(o);
	o->dir = c->archive_dir;
	o->node = c->node;
	o->enforce = c->enforce;
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		const char *s = *(char *const *)((const char *)c + settings[i].off);
		if (!s)
			continue;
		if (check_value(settings[i].path, settings[i].kind, s, err, errlen))
			return -EINVAL;
	}
#define SZ(field, member)                      \
	if (c->field) {                        \
		moat_parse_size(c->field, &v); \
		(member) = v;                  \
	}
#define DUR(field, member)                         \
	if (c->field) {                            \
		moat_parse_duration(c->field, &v); \
		(member) = v;                      \
	}
	SZ(archive_segment_size, o->segment_bytes);
	DUR(archive_segment_age, o->segment_ns);
	DUR(archive_max_age, o->defaults.max_age_ns);
	SZ(archive_max_size, o->defaults.max_bytes);
	SZ(archive_total_size, o->total_bytes);
	SZ(archive_queue_size, o->queue_bytes);
#undef SZ
#undef DUR
	if (o->segment_bytes < 4096) {
		snprintf(err, errlen, "archive.segmentSize: at least 4096 bytes");
		return -EINVAL;
	}
	if (o->segment_ns < 1000000000ull) {
		snprintf(err, errlen, "archive.segmentAge: at least 1s");
		return -EINVAL;
	}
	if (o->queue_bytes < (64u << 10) || o->queue_bytes > (1ull << 32)) {
		snprintf(err, errlen, "archive.queueSize: between 64Ki and 4Gi");
		return -EINVAL;
	}
	return moat_archive_parse_ns_limits(c->archive_namespaces, o, err, errlen);
}

/* ---- partitions --------------------------------------------------------------- */
void moat_archive_part_name(const char *ns, char *out, size_t len)
{
	size_t o = 0;

	if (!ns || !*ns) {
		snprintf(out, len, "%s", MOAT_ARCHIVE_NODE_PART);
		return;
	}
	/* namespace names are DNS labels; anything else is escaped so that a
	 * name can never leave the directory or look like "_node" */
	for (const char *p = ns; *p && o + 4 < len; p++) {
		unsigned char ch = (unsigned char)*p;
		if (islower(ch) || isdigit(ch) || ch == '-')
			out[o++] = (char)ch;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02x", ch);
	}
	out[o] = 0;
}

int moat_archive_part_ns(const char *part, char *ns, size_t len)
{
	size_t o = 0;

	if (!strcmp(part, MOAT_ARCHIVE_NODE_PART)) {
		ns[0] = 0;
		return 0;
	}
	for (const char *p = part; *p; p++) {
		unsigned v;
		if (o + 1 >= len)
			return -ENAMETOOLONG;
		if (*p == '%') {
			/* NOLINTNEXTLINE(cert-err34-c): two hex digits, checked */
			if (sscanf(p + 1, "%2x", &v) != 1 || !isxdigit((unsigned char)p[1]) ||
			    !isxdigit((unsigned char)p[2]))
				return -EINVAL;
			ns[o++] = (char)v;
			p += 2;
		} else if (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-') {
			ns[o++] = *p;
		} else {
			return -EINVAL;
		}
	}
	ns[o] = 0;
	return o ? 0 : -EINVAL;
}

static int parse_seg_name(const char *f, uint64_t *start, uint64_t *end)
{
	unsigned long long s, e;
	int n = 0;

	/* NOLINTNEXTLINE(cert-err34-c): at most 19 digits, cannot overflow */
	if (sscanf(f, "%19llu-open.pcapng%n", &s, &n) == 1 && n && !f[n]) {
		*start = s;
		*end = 0;
		return 0;
	}
	n = 0;
	/* NOLINTNEXTLINE(cert-err34-c): at most 19 digits each, cannot overflow */
	if (sscanf(f, "%19llu-%19llu.pcapng%n", &s, &e, &n) == 2 && n && !f[n]) {
		*start = s;
		*end = e ? e : 1;
		return 0;
	}
	return -EINVAL;
}

static int seg_cmp(const void *a, const void *b)
{
	const struct moat_segment *x = a, *y = b;
	int c = strcmp(x->part, y->part);

	if (c)
		return c;
	return x->start_ns < y->start_ns ? -1 : x->start_ns > y->start_ns;
}

int moat_archive_list(const char *dir, struct moat_segment **out, size_t *n)
{
	DIR *d = opendir(dir), *pd;
	struct dirent *de, *fe;
	struct moat_segment *v = NULL;
	size_t cnt = 0, cap = 0;

	*out = NULL;
	*n = 0;
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char path[PATH_MAX], ns[64];
		if (de->d_name[0] == '.' || moat_archive_part_ns(de->d_name, ns, sizeof(ns)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		pd = opendir(path);
		if (!pd)
			continue;
		while ((fe = readdir(pd))) {
			struct moat_segment s;
			struct stat st;
			char fp[PATH_MAX + 80];
			memset(&s, 0, sizeof(s));
			if (strlen(fe->d_name) >= sizeof(s.file) ||
			    parse_seg_name(fe->d_name, &s.start_ns, &s.end_ns))
				continue;
			snprintf(fp, sizeof(fp), "%s/%s", path, fe->d_name);
			if (stat(fp, &st) || !S_ISREG(st.st_mode))
				continue;
			if (snprintf(s.part, sizeof(s.part), "%s", de->d_name) >= (int)sizeof(s.part))
				continue;
			snprintf(s.ns, sizeof(s.ns), "%s", ns);
			snprintf(s.file, sizeof(s.file), "%s", fe->d_name);
			s.bytes = (uint64_t)st.st_size;
			if (cnt == cap) {
				cap = cap ? cap * 2 : 64;
				v = xrealloc(v, cap * sizeof(*v));
			}
			v[cnt++] = s;
		}
		closedir(pd);
	}
	closedir(d);
	if (cnt)
		qsort(v, cnt, sizeof(*v), seg_cmp);
	*out = v;
	*n = cnt;
	return 0;
}

/* ---- comment records ---------------------------------------------------------- */
void moat_rec_free(struct moat_rec *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->key[i]);
		free(r->val[i]);
	}
	free(r->store);
	memset(r, 0, sizeof(*r));
}

int moat_rec_parse(const char *s, size_t len, struct moat_rec *r)
{
	size_t i = 0;

	memset(r, 0, sizeof(*r));
	/* text ends at a NUL (as names do): one inside would make keys and
	 * values that moat_rec_format() cannot write back */
	len = strnlen(s, len);
	if (len < 5 || memcmp(s, "moat:", 5))
		return -EINVAL;
	i = 5;
	while (i < len) {
		size_t ks, ke;
		char *val;
		size_t vl = 0;

		while (i < len && s[i] == ' ')
			i++;
		if (i >= len)
			break;
		ks = i;
		while (i < len && s[i] != '=' && s[i] != ' ')
			i++;
		if (i >= len || s[i] != '=' || i == ks)
			goto bad;
		ke = i++;
		val = xcalloc(1, len - i + 1);
		if (i < len && s[i] == '"') {
			i++;
			while (i < len && s[i] != '"') {
				if (s[i] == '\\' && i + 1 < len)
					i++;
				val[vl++] = s[i++];
			}
			if (i >= len) {
				free(val);
				goto bad;
			}
			i++;
		} else {
			while (i < len && s[i] != ' ')
				val[vl++] = s[i++];
		}
		if (r->n == MOAT_REC_MAX_KV) {
			free(val);
			goto bad;
		}
		r->key[r->n] = xcalloc(1, ke - ks + 1);
		memcpy(r->key[r->n], s + ks, ke - ks);
		r->val[r->n++] = val;
	}
	return 0;
bad:
	moat_rec_free(r);
	return -EINVAL;
}

const char *moat_rec_get(const struct moat_rec *r, const char *key)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->key[i], key))
			return r->val[i];
	return NULL;
}

void moat_rec_set(struct moat_rec *r, const char *key, const char *val)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->key[i], key)) {
			free(r->val[i]);
			r->val[i] = xstrdup(val);
			return;
		}
	if (r->n < MOAT_REC_MAX_KV) {
		r->key[r->n] = xstrdup(key);
		r->val[r->n++] = xstrdup(val);
	}
}

void moat_rec_del(struct moat_rec *r, const char *key)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->key[i], key)) {
			free(r->key[i]);
			free(r->val[i]);
			memmove(&r->key[i], &r->key[i + 1], (r->n - i - 1) * sizeof(char *));
			memmove(&r->val[i], &r->val[i + 1], (r->n - i - 1) * sizeof(char *));
			r->n--;
			return;
		}
}

static void rec_append(char **buf, size_t *len, size_t *cap, const char *key, const char *val)
{
	bool quote = !*val;
	size_t need = strlen(key) + 2 * strlen(val) + 8;

	for (const char *p = val; *p; p++)
		if (*p == ' ' || *p == '"' || *p == '\\' || *p == '=')
			quote = true;
	if (*len + need > *cap) {
		*cap = (*len + need) * 2;
		*buf = xrealloc(*buf, *cap);
	}
	*len += (size_t)sprintf(*buf + *len, " %s=", key);
	if (quote)
		(*buf)[(*len)++] = '"';
	for (const char *p = val; *p; p++) {
		if (quote && (*p == '"' || *p == '\\'))
			(*buf)[(*len)++] = '\\';
		(*buf)[(*len)++] = *p;
	}
	if (quote)
		(*buf)[(*len)++] = '"';
	(*buf)[*len] = 0;
}

char *moat_rec_format(const struct moat_rec *r)
{
	size_t cap = 256, len = 5;
	char *b = xcalloc(1, cap);

	memcpy(b, "moat:", 6);
	for (size_t i = 0; i < r->n; i++)
		rec_append(&b, &len, &cap, r->key[i], r->val[i]);
	return b;
}

/* ---- the archive ---------------------------------------------------------------- */
enum {
	QI_PAD = 0,
	QI_EVENT,
	QI_FLOW,
	QI_DROPS
};
enum {
	FLOW_START = 0,
	FLOW_END,
	FLOW_EVICTED
};

struct qhdr {
	uint32_t len; /* the whole item, 8-aligned */
	uint16_t kind;
	uint16_t sub;
	uint64_t n; /* archive item number */
};

struct qsides {
	uint8_t sns_len, spod_len, dns_len, dpod_len;
};

struct qevent {
	uint64_t wall_ns;
	struct moat_event raw;
	struct moat_addr src, dst;
	uint16_t sport, dport;
	/* cppcheck-suppress unusedStructMember ; explicit padding: the record is copied as bytes */
	uint8_t family, proto, tcp_flags, pad;
	struct qsides s;
	uint16_t caplen;
	/* cppcheck-suppress unusedStructMember ; explicit padding: the record is copied as bytes */
	uint16_t pad2;
	/* then sns, spod, dns, dpod (not terminated), then packet bytes */
};

struct qdrops {
	uint64_t count, first_ns, last_ns;
	uint32_t ifindex, src_identity, dst_identity;
	uint8_t hook;
	/* cppcheck-suppress unusedStructMember ; explicit padding: the record is copied as bytes */
	uint8_t pad;
	struct qsides s;
	/* cppcheck-suppress unusedStructMember ; explicit padding: the record is copied as bytes */
	uint16_t pad2;
};

/* Producer-side ledger of events the full queue refused, by interface and
 * sides, so that the writer can count them on the right interface. */
#define LEDGER_SLOTS 256
struct ledger_ent {
	bool used;
	uint8_t hook;
	uint32_t ifindex, src_identity, dst_identity;
	char sns[64], spod[128], dns[64], dpod[128];
	uint64_t count, first_ns, last_ns;
};

/* Rule and identity names, from the daemon's compiler. */
struct rule_ent {
	uint32_t ref;
	int dir;
	bool netpol;
	char ns[64];
	char *desc;
};

struct pod_ident {
	uint32_t id;
	char ns[64];
};

struct rulesnap {
	int refs;
	uint32_t generation;
	struct hmap rules;   /* ref -> rule_ent */
	struct hmap pod_ids; /* identity -> pod_ident (pods only) */
};

struct if_ent {
	char key[160];
	char name[64];
	char pod[200];
};

struct ifsnap {
	int refs;
	struct hmap by_pod;   /* "ns/name" -> if_ent (host veth name) */
	struct hmap by_index; /* "hook:ifindex" -> if_ent (from-pod, uplink) */
};

struct iface_st {
	char key[200];
	char name[64];
	char desc[300];
	int64_t id; /* IDB index in the open segment; -1: none yet */
	uint64_t recv_seg, drop_seg;
	uint64_t pending_drop; /* for the next EPB's epb_dropcount */
	uint64_t buffered;     /* EPBs not yet written to the file */
};

struct part {
	char ns[64]; /* "" = _node */
	char dirname[80];
	char path[PATH_MAX + 128]; /* open segment */
	int fd;                    /* -1: no open segment */
	uint64_t start_ns, last_ns;
	uint64_t file_bytes; /* what the file holds (written) */
	uint64_t seg_bytes_limit;
	uint64_t stalled_until; /* after a failed write: wait, count */
	uint64_t last_use;
	struct pcapng_buf buf;
	struct hmap ifs;   /* key -> iface_st */
	struct ptrvec ifv; /* by IDB id in the open segment */
	char last_loss[512];
};

struct moat_archive {
	struct moat_archive_opts o; /* settings; reconfigure under cfg_lock */
	pthread_mutex_t cfg_lock;
	unsigned cfg_gen;
	char *dir;
	char *node;
	int lock_fd;
	uint64_t run; /* this writer's start (ns): record ids run.n */

	/* queue: single producer (the consumer thread, under the events lock),
	 * single consumer (the writer) */
	uint8_t *q;
	size_t qsize;
	uint64_t qhead, qtail; /* byte positions; atomics */
	uint64_t next_n;
	struct ledger_ent ledger[LEDGER_SLOTS];
	uint64_t ledger_unattributed;
	size_t ledger_used;

	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t wake, done;
	int sleeping; /* atomic */
	bool stop, flush_req;
	uint64_t flushed_upto;

	pthread_mutex_t snap_lock;
	struct rulesnap *rules;
	struct ifsnap *ifs;
	pthread_mutex_t ev_lock; /* events: set to NULL before they stop */
	struct moat_events *events;

	/* writer state */
	struct hmap parts; /* dirname -> part */
	size_t open_parts;
	unsigned seen_cfg_gen;
	struct moat_archive_opts wo; /* the writer's copy of the settings */
	uint64_t last_loss_check, last_retention, last_sync, last_busy;
	bool retention_due;
	bool disk_failing;
	uint64_t disk_lost_at_fail;
	char loss_json[512]; /* current node-wide loss record */

	struct moat_archive_stats st; /* counters updated with atomics */
};

#define MAX_OPEN_PARTS   256
#define PART_FLUSH_BYTES (64u << 10)

static uint64_t now_of(struct moat_archive *a)
{
	return a->o.clock ? a->o.clock(a->o.clock_arg) : wall_ns();
}

static void alog(struct moat_archive *a, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void alog(struct moat_archive *a, int level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!a->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	a->o.log(a->o.log_arg, level, msg);
}

#define ST_ADD(a, f, v) __atomic_add_fetch(&(a)->st.f, (v), __ATOMIC_RELAXED)

/* ---- snapshots --------------------------------------------------------------- */
static void rulesnap_put(struct rulesnap *r)
{
	size_t it = 0;
	void *v;

	if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	while (hmap_next(&r->rules, &it, NULL, NULL, &v)) {
		free(((struct rule_ent *)v)->desc);
		free(v);
	}
	it = 0;
	while (hmap_next(&r->pod_ids, &it, NULL, NULL, &v))
		free(v);
	hmap_free(&r->rules);
	hmap_free(&r->pod_ids);
	free(r);
}

static void ifsnap_put(struct ifsnap *s)
{
	size_t it = 0;
	void *v;

	if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	while (hmap_next(&s->by_pod, &it, NULL, NULL, &v))
		free(v);
	it = 0;
	while (hmap_next(&s->by_index, &it, NULL, NULL, &v))
		free(v);
	hmap_free(&s->by_pod);
	hmap_free(&s->by_index);
	free(s);
}

static int pod_ident_cb(const struct moat_ident_view *v, void *arg)
{
	struct rulesnap *r = arg;
	struct pod_ident *p;

	if (v->cls != MOAT_CLASS_POD || !v->ns)
		return 0;
	p = xcalloc(1, sizeof(*p));
	p->id = v->id;
	snprintf(p->ns, sizeof(p->ns), "%s", v->ns);
	hmap_put(&r->pod_ids, &p->id, sizeof(p->id), p, NULL);
	return 0;
}

static int iface_snap_cb(const struct moat_iface_status *s, void *arg)
{
	struct ifsnap *n = arg;
	struct if_ent *e;
	void *old;

	if (!s->name)
		return 0;
	if (s->hook == MOAT_HOOK_FROM_POD && s->pod && *s->pod && !strncmp(s->name, "h_", 2)) {
		e = xcalloc(1, sizeof(*e));
		snprintf(e->key, sizeof(e->key), "%s", s->pod);
		snprintf(e->name, sizeof(e->name), "%s", s->name + 2);
		snprintf(e->pod, sizeof(e->pod), "%s", s->pod);
		old = NULL;
		hmap_put(&n->by_pod, e->key, strlen(e->key), e, &old);
		free(old);
	}
	if (s->hook == MOAT_HOOK_FROM_POD || s->hook == MOAT_HOOK_UPLINK) {
		char nm[IF_NAMESIZE] = "";
		e = xcalloc(1, sizeof(*e));
		snprintf(e->key, sizeof(e->key), "%d:%d", s->hook, s->ifindex);
		if (s->hook == MOAT_HOOK_UPLINK && s->ifindex > 0 && if_indextoname((unsigned)s->ifindex, nm))
			snprintf(e->name, sizeof(e->name), "%s", nm);
		else
			snprintf(e->name, sizeof(e->name), "%s",
				 !strncmp(s->name, "h_", 2) ? s->name + 2 : s->name);
		snprintf(e->pod, sizeof(e->pod), "%s", s->pod ? s->pod : "");
		old = NULL;
		hmap_put(&n->by_index, e->key, strlen(e->key), e, &old);
		free(old);
	}
	return 0;
}

void moat_archive_refresh(struct moat_archive *a, const struct moat_compiler *c, struct moat_ifaces *fi,
			  uint32_t generation)
{
	struct rulesnap *r = NULL, *oldr = NULL;
	struct ifsnap *s, *olds;

	if (!a)
		return;
	pthread_mutex_lock(&a->snap_lock);
	if (c && (!a->rules || a->rules->generation != generation))
		r = (void *)1;
	pthread_mutex_unlock(&a->snap_lock);
	if (r) {
		r = xcalloc(1, sizeof(*r));
		r->refs = 1;
		r->generation = generation;
		hmap_init(&r->rules);
		hmap_init(&r->pod_ids);
		for (uint32_t ref = MOAT_RULE_DEFAULT_ALLOW; ref < MOAT_MAX_RULES; ref++) {
			const struct moat_rule_info *ri = moat_compiler_rule(c, ref);
			struct rule_ent *e;
			if (!ri)
				continue;
			e = xcalloc(1, sizeof(*e));
			e->ref = ref;
			e->dir = ri->dir;
			e->netpol = ri->kind == MOAT_K_NETPOL;
			snprintf(e->ns, sizeof(e->ns), "%s", ri->ns ? ri->ns : "");
			e->desc = moat_rule_describe(c, ref);
			hmap_put(&r->rules, &e->ref, sizeof(e->ref), e, NULL);
		}
		moat_compiler_identities(c, pod_ident_cb, r);
	}
	s = xcalloc(1, sizeof(*s));
	s->refs = 1;
	hmap_init(&s->by_pod);
	hmap_init(&s->by_index);
	if (fi)
		moat_ifaces_status(fi, iface_snap_cb, s);
	pthread_mutex_lock(&a->snap_lock);
	if (r) {
		oldr = a->rules;
		a->rules = r;
	}
	olds = a->ifs;
	a->ifs = s;
	pthread_mutex_unlock(&a->snap_lock);
	rulesnap_put(oldr);
	ifsnap_put(olds);
}

void moat_archive_set_events(struct moat_archive *a, struct moat_events *e)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->ev_lock);
	a->events = e;
	pthread_mutex_unlock(&a->ev_lock);
}

/* ---- the queue (producer side) ---------------------------------------------- */
static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* Reserves len bytes contiguously; NULL when the queue is full. */
static void *q_reserve(struct moat_archive *a, size_t len)
{
	uint64_t head = a->qhead; /* only the producer writes it */
	uint64_t tail = __atomic_load_n(&a->qtail, __ATOMIC_ACQUIRE);
	size_t off = head & (a->qsize - 1), pad = 0;

	if (off + len > a->qsize)
		pad = a->qsize - off;
	if (a->qsize - (head - tail) < pad + len)
		return NULL;
	if (pad) {
		struct qhdr *h = (void *)(a->q + off);
		h->len = (uint32_t)pad;
		h->kind = QI_PAD;
		__atomic_store_n(&a->qhead, head + pad, __ATOMIC_RELEASE);
		off = 0;
	}
	return a->q + off;
}

/* The writer polls (every 20 ms while busy, 200 ms when idle): no system
 * call per event here.  Only a queue filling up wakes it early. */
static void q_commit(struct moat_archive *a, size_t len)
{
	uint64_t head = a->qhead + len;

	__atomic_store_n(&a->qhead, head, __ATOMIC_SEQ_CST);
	if (head - __atomic_load_n(&a->qtail, __ATOMIC_ACQUIRE) > a->qsize / 4 &&
	    __atomic_load_n(&a->sleeping, __ATOMIC_SEQ_CST) && !pthread_mutex_trylock(&a->mu)) {
		pthread_cond_signal(&a->wake);
		pthread_mutex_unlock(&a->mu);
	}
}

static size_t slen(const char *s, size_t max)
{
	size_t l = strnlen(s, max);
	return l > 255 ? 255 : l;
}

static void put_sides(uint8_t *p, struct qsides *s, const char *sns, const char *spod, const char *dns,
		      const char *dpod)
{
	memcpy(p, sns, s->sns_len);
	p += s->sns_len;
	memcpy(p, spod, s->spod_len);
	p += s->spod_len;
	memcpy(p, dns, s->dns_len);
	p += s->dns_len;
	memcpy(p, dpod, s->dpod_len);
}

static void set_sides(struct qsides *s, const char *sns, const char *spod, const char *dns, const char *dpod)
{
	s->sns_len = (uint8_t)slen(sns, 63);
	s->spod_len = (uint8_t)slen(spod, 127);
	s->dns_len = (uint8_t)slen(dns, 63);
	s->dpod_len = (uint8_t)slen(dpod, 127);
}

static size_t sides_len(const struct qsides *s)
{
	return (size_t)s->sns_len + s->spod_len + s->dns_len + s->dpod_len;
}

static void ledger_flush(struct moat_archive *a)
{
	for (size_t i = 0; i < LEDGER_SLOTS && a->ledger_used; i++) {
		struct ledger_ent *l = &a->ledger[i];
		struct qsides s;
		struct qhdr *h;
		struct qdrops *d;
		size_t len;

		if (!l->used)
			continue;
		set_sides(&s, l->sns, l->spod, l->dns, l->dpod);
		len = align8(sizeof(*h) + sizeof(*d) + sides_len(&s));
		h = q_reserve(a, len);
		if (!h)
			return;
		h->len = (uint32_t)len;
		h->kind = QI_DROPS;
		h->sub = 0;
		h->n = 0;
		d = (void *)(h + 1);
		memset(d, 0, sizeof(*d));
		d->count = l->count;
		d->first_ns = l->first_ns;
		d->last_ns = l->last_ns;
		d->ifindex = l->ifindex;
		d->hook = l->hook;
		d->src_identity = l->src_identity;
		d->dst_identity = l->dst_identity;
		d->s = s;
		put_sides((uint8_t *)(d + 1), &s, l->sns, l->spod, l->dns, l->dpod);
		q_commit(a, len);
		l->used = false;
		a->ledger_used--;
	}
}

static void ledger_add(struct moat_archive *a, const struct moat_ev *ev)
{
	char key[400];
	int kl = snprintf(key, sizeof(key), "%u|%u|%s|%s|%s|%s", ev->raw.hook, ev->raw.ifindex, ev->src_ns,
			  ev->src_pod, ev->dst_ns, ev->dst_pod);
	uint64_t h = moat_hash(key, (size_t)(kl > 0 && kl < (int)sizeof(key) ? kl : 0), 7);

	for (size_t i = 0; i < 8; i++) {
		struct ledger_ent *l = &a->ledger[(h + i) % LEDGER_SLOTS];
		if (l->used && l->hook == ev->raw.hook && l->ifindex == ev->raw.ifindex &&
		    !strcmp(l->sns, ev->src_ns) && !strcmp(l->spod, ev->src_pod) &&
		    !strcmp(l->dns, ev->dst_ns) && !strcmp(l->dpod, ev->dst_pod)) {
			l->count++;
			l->last_ns = ev->wall_ns;
			return;
		}
		if (!l->used) {
			memset(l, 0, sizeof(*l));
			l->used = true;
			l->hook = ev->raw.hook;
			l->ifindex = ev->raw.ifindex;
			l->src_identity = ev->raw.src_identity;
			l->dst_identity = ev->raw.dst_identity;
			snprintf(l->sns, sizeof(l->sns), "%s", ev->src_ns);
			snprintf(l->spod, sizeof(l->spod), "%s", ev->src_pod);
			snprintf(l->dns, sizeof(l->dns), "%s", ev->dst_ns);
			snprintf(l->dpod, sizeof(l->dpod), "%s", ev->dst_pod);
			l->count = 1;
			l->first_ns = l->last_ns = ev->wall_ns;
			a->ledger_used++;
			return;
		}
	}
	/* no slot: still counted, in the node-wide loss record */
	__atomic_add_fetch(&a->ledger_unattributed, 1, __ATOMIC_RELAXED);
}

static void sink_event(void *arg, const struct moat_ev *ev)
{
	struct moat_archive *a = arg;
	struct qhdr *h;
	struct qevent *q;
	struct qsides s;
	size_t len, cap = ev->caplen;

	ST_ADD(a, offered, 1);
	if (a->ledger_used)
		ledger_flush(a);
	set_sides(&s, ev->src_ns, ev->src_pod, ev->dst_ns, ev->dst_pod);
	len = align8(sizeof(*h) + sizeof(*q) + sides_len(&s) + cap);
	h = a->ledger_used ? NULL : q_reserve(a, len);
	if (!h) {
		ST_ADD(a, queue_lost, 1);
		ledger_add(a, ev);
		return;
	}
	h->len = (uint32_t)len;
	h->kind = QI_EVENT;
	h->sub = 0;
	h->n = ++a->next_n;
	q = (void *)(h + 1);
	memset(q, 0, sizeof(*q));
	q->wall_ns = ev->wall_ns;
	q->raw = ev->raw;
	q->src = ev->src;
	q->dst = ev->dst;
	q->sport = ev->sport;
	q->dport = ev->dport;
	q->family = ev->family;
	q->proto = ev->proto;
	q->tcp_flags = ev->tcp_flags;
	q->s = s;
	q->caplen = (uint16_t)cap;
	put_sides((uint8_t *)(q + 1), &s, ev->src_ns, ev->src_pod, ev->dst_ns, ev->dst_pod);
	memcpy((uint8_t *)(q + 1) + sides_len(&s), ev->pkt, cap);
	q_commit(a, len);
}

static void sink_flow_state(struct moat_archive *a, const struct moat_flow *fl, int state)
{
	struct qhdr *h;
	size_t len = align8(sizeof(*h) + sizeof(*fl));

	ST_ADD(a, flows_offered, 1);
	h = q_reserve(a, len);
	if (!h) {
		ST_ADD(a, flows_queue_lost, 1);
		return;
	}
	h->len = (uint32_t)len;
	h->kind = QI_FLOW;
	h->sub = (uint16_t)state;
	h->n = ++a->next_n;
	memcpy(h + 1, fl, sizeof(*fl));
	q_commit(a, len);
}

static void sink_flow_end(void *arg, const struct moat_flow *fl)
{
	sink_flow_state(arg, fl, fl->ended ? FLOW_END : FLOW_EVICTED);
}

static void sink_flow_start(void *arg, const struct moat_flow *fl)
{
	sink_flow_state(arg, fl, FLOW_START);
}

struct moat_ev_sink moat_archive_sink(struct moat_archive *a)
{
	struct moat_ev_sink s = {
		.event = sink_event, .flow = sink_flow_end, .flow_start = sink_flow_start, .arg = a
	};
	return s;
}

/* ---- writer: names ------------------------------------------------------------- */
static const char *side_part(const struct rulesnap *r, const char *ns, const char *pod, uint32_t id)
{
	const struct pod_ident *p;

	if (*pod)
		return ns;
	/* a pod known by identity only (its address not in the name table) */
	p = r ? hmap_get(&r->pod_ids, &id, sizeof(id)) : NULL;
	return p ? p->ns : NULL;
}

static const char *hook_s(int h)
{
	return h == MOAT_HOOK_FROM_POD ? "from-pod" : h == MOAT_HOOK_TO_POD ? "to-pod" : "uplink";
}

static const char *type_s(int t)
{
	switch (t) {
	case MOAT_EV_DENY:
		return "deny";
	case MOAT_EV_NEW_FLOW:
		return "new-flow";
	case MOAT_EV_FLOW_END:
		return "flow-end";
	case MOAT_EV_SAMPLE:
		return "sample";
	case MOAT_EV_AUDIT:
		return "audit";
	default:
		return "unknown";
	}
}

static const char *verdict_s(int v)
{
	return v == MOAT_VERDICT_ALLOW ? "allow" :
	       v == MOAT_VERDICT_DENY  ? "deny" :
	       v == MOAT_VERDICT_AUDIT ? "audit" :
					 "none";
}

/* The interface an event was judged on: one per pod (both ends of its veth
 * pair; the direction flag tells them apart), the uplink, or an interface
 * not known by name. */
static void iface_ident(struct moat_archive *a, const struct ifsnap *fs, int hook, uint32_t ifindex,
			const char *pod, char *key, size_t kl, char *name, size_t nl, char *desc, size_t dl)
{
	const struct if_ent *e = NULL;
	char k[64];

	if ((hook == MOAT_HOOK_FROM_POD || hook == MOAT_HOOK_TO_POD) && pod && *pod) {
		e = fs ? hmap_gets(&fs->by_pod, pod) : NULL;
		snprintf(key, kl, "pod:%s", pod);
		snprintf(name, nl, "%s", e ? e->name : "pod");
		snprintf(desc, dl,
			 "pod %s on node %s (veth pair: outbound = from the pod, inbound = to the pod)", pod,
			 a->node);
		return;
	}
	snprintf(k, sizeof(k), "%d:%u", hook, ifindex);
	e = fs && hook != MOAT_HOOK_TO_POD ? hmap_gets(&fs->by_index, k) : NULL;
	snprintf(key, kl, "if:%s", k);
	if (hook == MOAT_HOOK_UPLINK) {
		snprintf(name, nl, "%s", e ? e->name : "uplink");
		snprintf(desc, dl, "uplink of node %s", a->node);
	} else if (e) {
		snprintf(name, nl, "%s", e->name);
		snprintf(desc, dl, "host-side veth %s%s%s on node %s", e->name, *e->pod ? " of pod " : "",
			 e->pod, a->node);
	} else {
		snprintf(name, nl, "ifindex-%u", ifindex);
		snprintf(desc, dl, "%s interface %u on node %s (not known by name)", hook_s(hook), ifindex,
			 a->node);
	}
}

/* ---- writer: partitions and segments --------------------------------------------- */
static const struct moat_archive_limits *limits_for(const struct moat_archive_opts *o, const char *ns)
{
	for (size_t i = 0; i < o->nns; i++)
		if (!strcmp(o->ns[i].ns, ns))
			return &o->ns[i];
	return &o->defaults;
}

static uint64_t seg_limit(const struct moat_archive_opts *o, const char *ns)
{
	const struct moat_archive_limits *l = limits_for(o, ns);
	uint64_t lim = o->segment_bytes;

	/* a partition bounded in bytes keeps at least two segments' worth */
	if (l->max_bytes && l->max_bytes / 2 < lim)
		lim = l->max_bytes / 2 > 4096 ? l->max_bytes / 2 : 4096;
	return lim;
}

static struct part *part_get(struct moat_archive *a, const char *ns)
{
	char dn[80];
	struct part *p;

	moat_archive_part_name(ns, dn, sizeof(dn));
	p = hmap_gets(&a->parts, dn);
	if (p)
		return p;
	p = xcalloc(1, sizeof(*p));
	snprintf(p->ns, sizeof(p->ns), "%s", ns ? ns : "");
	snprintf(p->dirname, sizeof(p->dirname), "%s", dn);
	p->fd = -1;
	hmap_init(&p->ifs);
	hmap_put(&a->parts, p->dirname, strlen(p->dirname), p, NULL);
	return p;
}

static void update_loss(struct moat_archive *a, uint64_t now)
{
	struct moat_events_stats es;
	char ts[48];

	memset(&es, 0, sizeof(es));
	pthread_mutex_lock(&a->ev_lock);
	if (a->events)
		moat_events_stats(a->events, &es);
	pthread_mutex_unlock(&a->ev_lock);
	moat_time_format(now, ts, sizeof(ts));
	snprintf(
		a->loss_json, sizeof(a->loss_json),
		"{\"moat\":\"loss\",\"v\":1,\"node\":\"%s\",\"run\":%llu,\"time\":\"%s\",\"time_ns\":%llu,"
		"\"counts\":{\"perf_ring\":%llu,\"output_failed\":%llu,\"rate_limit\":%llu,\"seq_gaps\":%llu,"
		"\"archive_queue\":%llu,\"archive_queue_flows\":%llu,\"archive_unattributed\":%llu,"
		"\"disk_full\":%llu}}",
		a->node, (unsigned long long)a->run, ts, (unsigned long long)now,
		(unsigned long long)es.perf_lost, (unsigned long long)es.failed,
		(unsigned long long)es.suppressed, (unsigned long long)es.seq_gaps,
		(unsigned long long)__atomic_load_n(&a->st.queue_lost, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&a->st.flows_queue_lost, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&a->ledger_unattributed, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&a->st.disk_lost, __ATOMIC_RELAXED));
}

/* The loss record of a partition's segment, when it changed since the
 * last one written there.  Only the counters are compared. */
static void put_loss(struct part *p, const char *loss, bool always)
{
	const char *c = strstr(loss, "\"counts\"");
	const char *lc = strstr(p->last_loss, "\"counts\"");

	if (!always && c && lc && !strcmp(c, lc))
		return;
	if (!pcapng_put_custom(&p->buf, MOAT_ARCHIVE_PEN, loss, strlen(loss)))
		snprintf(p->last_loss, sizeof(p->last_loss), "%s", loss);
}

static void part_fail(struct moat_archive *a, struct part *p, int err, uint64_t now);
static int iface_idb(struct part *p, struct iface_st *f);

/* Writes the partition's buffer; on failure the file is cut back to its
 * last whole block and the segment closed (see part_fail). */
static int part_flush(struct moat_archive *a, struct part *p, uint64_t now)
{
	size_t off = 0;
	size_t it = 0;
	void *v;

	if (p->fd < 0 || !p->buf.len)
		return 0;
	while (off < p->buf.len) {
		ssize_t n = write(p->fd, p->buf.p + off, p->buf.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : ENOSPC;
			/* a partial block must not stay: later blocks would follow it */
			if (ftruncate(p->fd, (off_t)p->file_bytes))
				err = errno;
			part_fail(a, p, err, now);
			return -err;
		}
		off += (size_t)n;
	}
	p->file_bytes += p->buf.len;
	ST_ADD(a, bytes_written, p->buf.len);
	p->buf.len = 0;
	while (hmap_next(&p->ifs, &it, NULL, NULL, &v))
		((struct iface_st *)v)->buffered = 0;
	if (a->disk_failing) {
		a->disk_failing = false;
		__atomic_store_n(&a->st.disk_full, false, __ATOMIC_RELAXED);
		alog(a, MOAT_LOG_INFO,
		     "archive: writing again under %s; %llu event copies were lost meanwhile", a->dir,
		     (unsigned long long)(__atomic_load_n(&a->st.disk_lost, __ATOMIC_RELAXED) -
					  a->disk_lost_at_fail));
	}
	return 0;
}

static void sync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Closes the open segment: interface statistics, the loss record, data
 * synced, renamed to its final name. */
static void seg_close(struct moat_archive *a, struct part *p, uint64_t now, bool can_write)
{
	char final[PATH_MAX + 64], dir[PATH_MAX];
	uint64_t end = p->last_ns > now ? p->last_ns : now;

	if (p->fd < 0)
		return;
	if (can_write) {
		size_t it = 0;
		void *v;
		/* an interface with drops only: its IDB, so that its ISB counts them */
		while (hmap_next(&p->ifs, &it, NULL, NULL, &v)) {
			struct iface_st *f = v;
			if (f->pending_drop && f->id < 0)
				iface_idb(p, f);
		}
		for (size_t i = 0; i < p->ifv.n; i++) {
			struct iface_st *f = p->ifv.v[i];
			/* drops not yet carried by a packet are counted here */
			uint64_t drops = f->drop_seg + f->pending_drop;
			struct pcapng_isb_info isb = { .ifid = (uint32_t)f->id,
						       .ts_ns = end,
						       .start_ns = p->start_ns,
						       .end_ns = end,
						       .has_counters = true,
						       .ifrecv = f->recv_seg + drops,
						       .ifdrop = drops,
						       .usrdeliv = f->recv_seg };
			if (!pcapng_put_isb(&p->buf, &isb))
				f->pending_drop = 0;
		}
		put_loss(p, a->loss_json, false);
		if (part_flush(a, p, now))
			return; /* part_fail closed it */
		fdatasync(p->fd);
	}
	close(p->fd);
	p->fd = -1;
	if (end <= p->start_ns)
		end = p->start_ns + 1;
	snprintf(dir, sizeof(dir), "%s/%s", a->dir, p->dirname);
	snprintf(final, sizeof(final), "%s/%llu-%llu.pcapng", dir, (unsigned long long)p->start_ns,
		 (unsigned long long)end);
	if (!p->file_bytes)
		unlink(p->path); /* nothing could be written: no segment */
	else if (rename(p->path, final))
		alog(a, MOAT_LOG_WARN, "archive: cannot rename %s: %s", p->path, strerror(errno));
	sync_dir(dir);
	for (size_t i = 0; i < p->ifv.n; i++) {
		struct iface_st *f = p->ifv.v[i];
		f->id = -1;
		f->recv_seg = f->drop_seg = 0;
	}
	p->ifv.n = 0;
	p->buf.len = 0;
	if (p->buf.cap > (1u << 20))
		pcapng_buf_free(&p->buf);
	a->open_parts--;
	ST_ADD(a, segments_closed, 1);
	a->retention_due = true;
}

static void part_fail(struct moat_archive *a, struct part *p, int err, uint64_t now)
{
	size_t it = 0;
	void *v;
	uint64_t lost = 0;

	/* the events in the lost buffer count on their interfaces */
	while (hmap_next(&p->ifs, &it, NULL, NULL, &v)) {
		struct iface_st *f = v;
		f->pending_drop += f->buffered;
		lost += f->buffered;
		f->buffered = 0;
	}
	ST_ADD(a, disk_lost, lost);
	ST_ADD(a, write_errors, 1);
	if (!a->disk_failing) {
		a->disk_failing = true;
		a->disk_lost_at_fail = __atomic_load_n(&a->st.disk_lost, __ATOMIC_RELAXED) - lost;
		__atomic_store_n(&a->st.disk_full, true, __ATOMIC_RELAXED);
		alog(a, MOAT_LOG_ERROR,
		     "archive: cannot write under %s (%s); events are counted as lost until "
		     "writing works again (enforcement is not affected)",
		     a->dir, strerror(err));
	}
	p->buf.len = 0;
	seg_close(a, p, now, false);
	p->stalled_until = now + 1000000000ull;
}

static void close_lru(struct moat_archive *a, uint64_t now)
{
	struct part *old = NULL;
	size_t it = 0;
	void *v;

	while (hmap_next(&a->parts, &it, NULL, NULL, &v)) {
		struct part *p = v;
		if (p->fd >= 0 && (!old || p->last_use < old->last_use))
			old = p;
	}
	if (old)
		seg_close(a, old, now, true);
}

/* A segment is named after its first item's time (or now, if earlier):
 * queries select segments by name. */
static int seg_open(struct moat_archive *a, struct part *p, uint64_t now, uint64_t first_ts)
{
	char dir[PATH_MAX], comment[512];
	struct pcapng_shb_info shb;
	uint64_t start = first_ts && first_ts < now ? first_ts : now;
	int fd = -1;

	if (now < p->stalled_until)
		return -EAGAIN;
	if (a->open_parts >= MAX_OPEN_PARTS)
		close_lru(a, now);
	snprintf(dir, sizeof(dir), "%s/%s", a->dir, p->dirname);
	if (mkdir(dir, 0750) && errno != EEXIST)
		goto fail;
	for (int i = 0; i < 1000; i++, start++) {
		snprintf(p->path, sizeof(p->path), "%s/%llu-open.pcapng", dir, (unsigned long long)start);
		fd = open(p->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0)
		goto fail;
	p->fd = fd;
	p->start_ns = start;
	p->last_ns = start;
	p->file_bytes = 0;
	p->buf.len = 0;
	p->ifv.n = 0;
	p->last_loss[0] = 0;
	p->seg_bytes_limit = seg_limit(&a->wo, p->ns);
	a->open_parts++;
	snprintf(
		comment, sizeof(comment),
		"moat flight recorder: node %s, namespace %s, run %llu; packets carry \"moat: ...\" comments, "
		"flow and loss records are custom blocks (PEN %u, JSON); see docs/archives.md",
		a->node, *p->ns ? p->ns : "(none: node and world traffic)", (unsigned long long)a->run,
		MOAT_ARCHIVE_PEN);
	shb = (struct pcapng_shb_info){
		.userappl = "moatd", .os = "Linux", .hardware = a->node, .comment = comment
	};
	pcapng_put_shb(&p->buf, &shb);
	put_loss(p, a->loss_json, true);
	ST_ADD(a, segments_opened, 1);
	return 0;
fail : {
	int err = errno;
	if (!a->disk_failing) {
		a->disk_failing = true;
		a->disk_lost_at_fail = __atomic_load_n(&a->st.disk_lost, __ATOMIC_RELAXED);
		__atomic_store_n(&a->st.disk_full, true, __ATOMIC_RELAXED);
		alog(a, MOAT_LOG_ERROR,
		     "archive: cannot create a segment under %s (%s); events are counted "
		     "as lost until it works again (enforcement is not affected)",
		     dir, strerror(err));
	}
	ST_ADD(a, write_errors, 1);
	p->stalled_until = now + 1000000000ull;
	return -err;
}
}

/* An open segment for p that can take `more` bytes, rotating if needed. */
static int part_ready(struct moat_archive *a, struct part *p, uint64_t now, uint64_t ts, size_t more)
{
	if (p->fd >= 0 &&
	    (p->file_bytes + p->buf.len + more > p->seg_bytes_limit ||
	     (now > p->start_ns && now - p->start_ns >= a->wo.segment_ns)) &&
	    p->file_bytes + p->buf.len > 0)
		seg_close(a, p, now, true);
	if (p->fd < 0)
		return seg_open(a, p, now, ts);
	return 0;
}

static struct iface_st *iface_get(struct part *p, const char *key, const char *name, const char *desc)
{
	struct iface_st *f = hmap_gets(&p->ifs, key);

	if (f)
		return f;
	f = xcalloc(1, sizeof(*f));
	snprintf(f->key, sizeof(f->key), "%s", key);
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->desc, sizeof(f->desc), "%s", desc);
	f->id = -1;
	hmap_put(&p->ifs, f->key, strlen(f->key), f, NULL);
	return f;
}

static int iface_idb(struct part *p, struct iface_st *f)
{
	struct pcapng_idb_info idb = { .linktype = PCAPNG_LINKTYPE_ETHERNET,
				       .snaplen = 65535,
				       .name = f->name,
				       .description = f->desc };
	int rc;

	if (f->id >= 0)
		return 0;
	rc = pcapng_put_idb(&p->buf, &idb);
	if (rc)
		return rc;
	f->id = (int64_t)p->ifv.n;
	ptrvec_push(&p->ifv, f);
	return 0;
}

/* ---- writer: items --------------------------------------------------------------- */
struct names {
	const char *sns, *spod, *dns, *dpod;
	char b[4][130];
};

static const uint8_t *get_sides(const uint8_t *p, const struct qsides *s, struct names *n)
{
	/* cppcheck-suppress uninitvar ; n->b is written here, not read */
	memcpy(n->b[0], p, s->sns_len);
	n->b[0][s->sns_len] = 0;
	p += s->sns_len;
	memcpy(n->b[1], p, s->spod_len);
	n->b[1][s->spod_len] = 0;
	p += s->spod_len;
	memcpy(n->b[2], p, s->dns_len);
	n->b[2][s->dns_len] = 0;
	p += s->dns_len;
	memcpy(n->b[3], p, s->dpod_len);
	n->b[3][s->dpod_len] = 0;
	p += s->dpod_len;
	n->sns = n->b[0];
	n->spod = n->b[1];
	n->dns = n->b[2];
	n->dpod = n->b[3];
	return p;
}

/* The partitions an item goes to: each side's pod namespace; none: _node. */
static size_t parts_of(struct moat_archive *a, const struct rulesnap *r, const struct names *n, uint32_t sid,
		       uint32_t did, struct part *out[2])
{
	const char *pa = side_part(r, n->sns, n->spod, sid);
	const char *pb = side_part(r, n->dns, n->dpod, did);

	if (!pa && !pb) {
		out[0] = part_get(a, NULL);
		return 1;
	}
	if (pa && pb && strcmp(pa, pb)) {
		out[0] = part_get(a, pa);
		out[1] = part_get(a, pb);
		return 2;
	}
	out[0] = part_get(a, pa ? pa : pb);
	return 1;
}

/* The packet comment, built without allocating (this is the hot path):
 * the same format moat_rec_format() writes and moat_rec_parse() reads. */
struct cbuf {
	char b[2048];
	size_t len;
};

static void c_raw(struct cbuf *c, const char *s, size_t l)
{
	if (l > sizeof(c->b) - 1 - c->len)
		l = sizeof(c->b) - 1 - c->len;
	memcpy(c->b + c->len, s, l);
	c->len += l;
	c->b[c->len] = 0;
}

static void c_kv(struct cbuf *c, const char *k, const char *v)
{
	bool quote = !*v;
	char esc[1200];
	size_t n = 0;

	for (const char *p = v; *p && !quote; p++)
		quote = *p == ' ' || *p == '"' || *p == '\\' || *p == '=';
	c_raw(c, " ", 1);
	c_raw(c, k, strlen(k));
	c_raw(c, "=", 1);
	if (!quote) {
		c_raw(c, v, strlen(v));
		return;
	}
	esc[n++] = '"';
	for (const char *p = v; *p && n < sizeof(esc) - 3; p++) {
		if (*p == '"' || *p == '\\')
			esc[n++] = '\\';
		esc[n++] = *p;
	}
	esc[n++] = '"';
	c_raw(c, esc, n);
}

/* Decimal digits of v ending at end (no terminator); returns the start. */
static char *u64s(char *end, uint64_t v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

static void c_u64(struct cbuf *c, const char *k, uint64_t v)
{
	char b[24], *p = u64s(b + sizeof(b), v);

	c_raw(c, " ", 1);
	c_raw(c, k, strlen(k));
	c_raw(c, "=", 1);
	c_raw(c, p, (size_t)(b + sizeof(b) - p));
}

/* "a" "/" "b" into out (bounded); returns its length. */
static size_t join(char *out, size_t cap, const char *a, char sep, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la + lb + 2 > cap)
		return (size_t)snprintf(out, cap, "%s%c%s", a, sep, b);
	/* NOLINTNEXTLINE(bugprone-not-null-terminated-result): the copy of b ends it */
	memcpy(out, a, la);
	out[la] = sep;
	memcpy(out + la + 1, b, lb + 1);
	return la + 1 + lb;
}

static void c_side(struct cbuf *c, bool src, const char *ns, const char *pod, const struct moat_addr *ip,
		   uint32_t id)
{
	char b[200];

	if (*pod) {
		join(b, sizeof(b), ns, '/', pod);
		c_kv(c, src ? "src" : "dst", b);
	} else {
		c_kv(c, src ? "src" : "dst", ip->family ? moat_addr_str(ip, b) : "-");
		if (*ns)
			c_kv(c, src ? "src_ns" : "dst_ns", ns);
	}
	c_u64(c, src ? "src_id" : "dst_id", id);
}

static void do_event(struct moat_archive *a, const struct qhdr *h, const struct rulesnap *rs,
		     const struct ifsnap *fs, uint64_t now)
{
	const struct qevent *q = (const void *)(h + 1);
	const struct rule_ent *re = rs ? hmap_get(&rs->rules, &q->raw.rule, sizeof(q->raw.rule)) : NULL;
	const uint8_t *pkt;
	struct names n;
	struct part *parts[2];
	struct cbuf cb;
	char key[200], b[64];
	const char *comment = cb.b;
	size_t np, written = 0;

	pkt = get_sides((const uint8_t *)(q + 1), &q->s, &n);
	if ((size_t)(pkt - (const uint8_t *)h) + q->caplen > h->len)
		return; /* cannot happen: the producer sized it */
	np = parts_of(a, rs, &n, q->raw.src_identity, q->raw.dst_identity, parts);

	/* the interface: by the pod whose veth judged it (named when first seen) */
	/* NOLINTNEXTLINE(bugprone-not-null-terminated-result): join() or snprintf ends it */
	memcpy(key, "pod:", 4);
	if (q->raw.hook == MOAT_HOOK_FROM_POD && *n.spod)
		join(key + 4, sizeof(key) - 4, n.sns, '/', n.spod);
	else if (q->raw.hook == MOAT_HOOK_TO_POD && *n.dpod)
		join(key + 4, sizeof(key) - 4, n.dns, '/', n.dpod);
	else
		snprintf(key, sizeof(key), "if:%d:%u", q->raw.hook, q->raw.ifindex);

	cb.len = 0;
	c_raw(&cb, "moat:", 5);
	c_kv(&cb, "verdict", verdict_s(q->raw.verdict));
	c_kv(&cb, "type", type_s(q->raw.type));
	c_kv(&cb, "tier", moat_tier_name(q->raw.tier));
	if (re) {
		c_kv(&cb, "rule", re->desc);
		if (re->netpol && *re->ns)
			c_kv(&cb, "rule_ns", re->ns);
	} else {
		snprintf(b, sizeof(b), "rule#%u", q->raw.rule);
		c_kv(&cb, "rule", b);
	}
	c_kv(&cb, "dir", q->raw.dir == MOAT_DIR_EGRESS ? "egress" : "ingress");
	c_kv(&cb, "hook", hook_s(q->raw.hook));
	c_side(&cb, true, n.sns, n.spod, &q->src, q->raw.src_identity);
	c_side(&cb, false, n.dns, n.dpod, &q->dst, q->raw.dst_identity);
	if (q->raw.type == MOAT_EV_DENY && q->raw.drop_reason)
		c_kv(&cb, "drop", moat_drop_reason_name(q->raw.drop_reason));
	if (q->raw.type == MOAT_EV_FLOW_END) {
		snprintf(b, sizeof(b), "%llu/%llu", (unsigned long long)q->raw.flow_packets,
			 (unsigned long long)q->raw.flow_bytes);
		c_kv(&cb, "flow_pkts_bytes", b);
	}
	c_kv(&cb, "node", a->node);
	c_u64(&cb, "gen", q->raw.generation);
	{
		/* id=run.n */
		char *e = b + sizeof(b), *p = u64s(e, h->n);
		*--p = '.';
		p = u64s(p, a->run);
		c_raw(&cb, " id=", 4);
		c_raw(&cb, p, (size_t)(e - p));
	}

	for (size_t i = 0; i < np; i++) {
		struct part *p = parts[i];
		struct iface_st *f = hmap_gets(&p->ifs, key);
		struct pcapng_epb_info e = {
			.ts_ns = q->wall_ns,
			.data = pkt,
			.caplen = q->caplen,
			.origlen = q->raw.pkt_len > q->caplen ? q->raw.pkt_len : q->caplen,
			.flags = q->raw.hook == MOAT_HOOK_FROM_POD ? PCAPNG_DIR_OUTBOUND : PCAPNG_DIR_INBOUND,
			.has_packetid = true,
			.packetid = h->n,
			.has_verdict = true,
			.verdict_type = PCAPNG_VERDICT_XDP,
			/* XDP_DROP (1) when denied and enforcing, else XDP_PASS (2) */
			.verdict = q->raw.verdict == MOAT_VERDICT_DENY && a->wo.enforce ? 1 : 2,
			.comment = comment,
		};

		if (!f) {
			char name[64], desc[300], pod[200];
			const char *ifpod = NULL;
			if (!strncmp(key, "pod:", 4))
				ifpod = strcpy(pod, key + 4);
			iface_ident(a, fs, q->raw.hook, q->raw.ifindex, ifpod, key, sizeof(key), name,
				    sizeof(name), desc, sizeof(desc));
			f = iface_get(p, key, name, desc);
		}
		p->last_use = now;
		if (part_ready(a, p, now, q->wall_ns, 512 + q->caplen + cb.len)) {
			f->pending_drop++;
			ST_ADD(a, disk_lost, 1);
			continue;
		}
		if (iface_idb(p, f))
			continue;
		if (f->pending_drop) {
			e.has_dropcount = true;
			e.dropcount = f->pending_drop;
		}
		e.ifid = (uint32_t)f->id;
		if (pcapng_put_epb(&p->buf, &e))
			continue;
		f->drop_seg += f->pending_drop;
		f->pending_drop = 0;
		f->recv_seg++;
		f->buffered++;
		if (q->wall_ns > p->last_ns)
			p->last_ns = q->wall_ns;
		written++;
		if (p->buf.len >= PART_FLUSH_BYTES)
			part_flush(a, p, now);
	}
	if (written)
		ST_ADD(a, written, 1);
}

static void do_drops(struct moat_archive *a, const struct qhdr *h, const struct rulesnap *rs,
		     const struct ifsnap *fs, uint64_t now)
{
	const struct qdrops *d = (const void *)(h + 1);
	struct names n;
	struct part *parts[2];
	char key[200], name[64], desc[300], *ifpod = NULL;
	size_t np;

	(void)now;
	get_sides((const uint8_t *)(d + 1), &d->s, &n);
	np = parts_of(a, rs, &n, d->src_identity, d->dst_identity, parts);
	if (d->hook == MOAT_HOOK_FROM_POD && *n.spod)
		ifpod = xasprintf("%s/%s", n.sns, n.spod);
	else if (d->hook == MOAT_HOOK_TO_POD && *n.dpod)
		ifpod = xasprintf("%s/%s", n.dns, n.dpod);
	iface_ident(a, fs, d->hook, d->ifindex, ifpod, key, sizeof(key), name, sizeof(name), desc,
		    sizeof(desc));
	free(ifpod);
	for (size_t i = 0; i < np; i++)
		iface_get(parts[i], key, name, desc)->pending_drop += d->count;
}

static json_t *flow_side(const struct moat_addr *ip, uint16_t port, const char *ns, const char *pod,
			 uint32_t id)
{
	char b[64];
	json_t *j = json_object();

	if (ip->family)
		json_object_set_new(j, "ip", json_string(moat_addr_str(ip, b)));
	json_object_set_new(j, "port", json_integer(port));
	if (*ns)
		json_object_set_new(j, "namespace", json_string(ns));
	if (*pod)
		json_object_set_new(j, "pod", json_string(pod));
	json_object_set_new(j, "identity", json_integer(id));
	return j;
}

static void do_flow(struct moat_archive *a, const struct qhdr *h, const struct rulesnap *rs, uint64_t now)
{
	struct moat_flow fl;
	const struct rule_ent *re;
	struct names n;
	struct part *parts[2];
	char t1[48], t2[48], id[64], *s;
	size_t np, written = 0;
	json_t *j;
	static const char *const states[] = { "start", "end", "evicted" };

	memcpy(&fl, h + 1, sizeof(fl));
	fl.src_ns[sizeof(fl.src_ns) - 1] = fl.dst_ns[sizeof(fl.dst_ns) - 1] = 0;
	fl.src_pod[sizeof(fl.src_pod) - 1] = fl.dst_pod[sizeof(fl.dst_pod) - 1] = 0;
	re = rs ? hmap_get(&rs->rules, &fl.rule, sizeof(fl.rule)) : NULL;
	n.sns = fl.src_ns;
	n.spod = fl.src_pod;
	n.dns = fl.dst_ns;
	n.dpod = fl.dst_pod;
	np = parts_of(a, rs, &n, fl.src_identity, fl.dst_identity, parts);
	moat_time_format(fl.first_ns, t1, sizeof(t1));
	moat_time_format(fl.last_ns ? fl.last_ns : fl.first_ns, t2, sizeof(t2));
	snprintf(id, sizeof(id), "%llu.%llu", (unsigned long long)a->run, (unsigned long long)h->n);
	j = json_pack("{s:s,s:i,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:i,s:o,s:o,s:s,s:s,s:s,s:I,s:I,s:I,s:i}",
		      "moat", "flow", "v", 1, "id", id, "node", a->node, "state",
		      states[h->sub > 2 ? 0 : h->sub], "first", t1, "last", t2, "first_ns",
		      (json_int_t)fl.first_ns, "last_ns", (json_int_t)(fl.last_ns ? fl.last_ns : fl.first_ns),
		      "proto", moat_proto_name(fl.proto), "family", fl.family, "src",
		      flow_side(&fl.src, fl.sport, fl.src_ns, fl.src_pod, fl.src_identity), "dst",
		      flow_side(&fl.dst, fl.dport, fl.dst_ns, fl.dst_pod, fl.dst_identity), "verdict",
		      verdict_s(fl.verdict), "tier", moat_tier_name(fl.tier), "rule",
		      re ? re->desc : "unknown rule", "packets", (json_int_t)fl.packets, "bytes",
		      (json_int_t)fl.bytes, "denied_attempts", (json_int_t)fl.denied, "tcp_flags",
		      fl.tcp_flags);
	if (!j)
		return;
	json_object_set_new(j, "proto_num", json_integer(fl.proto));
	if (re) {
		if (re->netpol && *re->ns)
			json_object_set_new(j, "rule_ns", json_string(re->ns));
		if (fl.rule >= MOAT_RULE_FIRST_DYN)
			json_object_set_new(j, "rule_dir",
					    json_string(re->dir == MOAT_DIR_EGRESS ? "egress" : "ingress"));
	}
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return;
	for (size_t i = 0; i < np; i++) {
		struct part *p = parts[i];
		p->last_use = now;
		if (part_ready(a, p, now, fl.last_ns ? fl.last_ns : fl.first_ns, strlen(s) + 64))
			continue;
		if (pcapng_put_custom(&p->buf, MOAT_ARCHIVE_PEN, s, strlen(s)))
			continue;
		written++;
		if (p->buf.len >= PART_FLUSH_BYTES)
			part_flush(a, p, now);
	}
	free(s);
	if (written)
		ST_ADD(a, flows_written, 1);
}

/* ---- writer: retention ------------------------------------------------------------- */
static void seg_unlink(struct moat_archive *a, const struct moat_segment *s)
{
	char p[PATH_MAX + 160];

	snprintf(p, sizeof(p), "%s/%s/%s", a->dir, s->part, s->file);
	if (!unlink(p))
		ST_ADD(a, segments_expired, 1);
}

static void retention(struct moat_archive *a, uint64_t now)
{
	struct moat_segment *v;
	size_t n, i, j;
	uint64_t total = 0;
	bool *gone;

	if (moat_archive_list(a->dir, &v, &n))
		return;
	gone = xcalloc(n ? n : 1, sizeof(*gone));
	/* per partition: age, then bytes (oldest first; never the open one) */
	for (i = 0; i < n; i = j) {
		const struct moat_archive_limits *l = limits_for(&a->wo, v[i].ns);
		uint64_t bytes = 0;
		bool is_node = !strcmp(v[i].part, MOAT_ARCHIVE_NODE_PART);
		if (is_node)
			l = &a->wo.defaults;
		for (j = i; j < n && !strcmp(v[j].part, v[i].part); j++) {
			if (v[j].end_ns && l->max_age_ns && v[j].end_ns + l->max_age_ns < now) {
				seg_unlink(a, &v[j]);
				gone[j] = true;
			} else {
				bytes += v[j].bytes;
			}
		}
		for (size_t k = i; k < j && l->max_bytes && bytes > l->max_bytes; k++) {
			if (gone[k] || !v[k].end_ns)
				continue;
			seg_unlink(a, &v[k]);
			gone[k] = true;
			bytes -= v[k].bytes;
		}
	}
	for (i = 0; i < n; i++)
		if (!gone[i])
			total += v[i].bytes;
	/* node-wide: the oldest closed segments of any partition */
	while (a->wo.total_bytes && total > a->wo.total_bytes) {
		size_t oldest = n;
		for (i = 0; i < n; i++)
			if (!gone[i] && v[i].end_ns && (oldest == n || v[i].end_ns < v[oldest].end_ns))
				oldest = i;
		if (oldest == n)
			break;
		seg_unlink(a, &v[oldest]);
		gone[oldest] = true;
		total -= v[oldest].bytes;
	}
	/* partitions left without segments: their directory goes too */
	for (i = 0; i < n; i = j) {
		bool any = false;
		for (j = i; j < n && !strcmp(v[j].part, v[i].part); j++)
			any |= !gone[j];
		if (!any) {
			char p[PATH_MAX + 80];
			struct part *pp = hmap_gets(&a->parts, v[i].part);
			if (pp && pp->fd >= 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", a->dir, v[i].part);
			rmdir(p);
		}
	}
	__atomic_store_n(&a->st.disk_bytes, total, __ATOMIC_RELAXED);
	free(gone);
	free(v);
}

/* ---- writer: the thread ---------------------------------------------------------- */
static void flush_all(struct moat_archive *a, uint64_t now)
{
	size_t it = 0;
	void *v;

	while (hmap_next(&a->parts, &it, NULL, NULL, &v))
		part_flush(a, v, now);
}

static void periodic(struct moat_archive *a, uint64_t now)
{
	size_t it = 0;
	void *v;

	if (a->seen_cfg_gen != __atomic_load_n(&a->cfg_gen, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&a->cfg_lock);
		a->seen_cfg_gen = a->cfg_gen;
		a->wo = a->o;
		pthread_mutex_unlock(&a->cfg_lock);
		while (hmap_next(&a->parts, &it, NULL, NULL, &v))
			((struct part *)v)->seg_bytes_limit = seg_limit(&a->wo, ((struct part *)v)->ns);
		a->retention_due = true;
	}
	if (now < a->last_loss_check || now - a->last_loss_check >= 1000000000ull) {
		a->last_loss_check = now;
		update_loss(a, now);
		it = 0;
		while (hmap_next(&a->parts, &it, NULL, NULL, &v)) {
			struct part *p = v;
			if (p->fd < 0)
				continue;
			put_loss(p, a->loss_json, false);
			/* segments past their age are closed even when idle */
			if (now > p->start_ns && now - p->start_ns >= a->wo.segment_ns)
				seg_close(a, p, now, true);
		}
	}
	if (now < a->last_sync || now - a->last_sync >= 10000000000ull) {
		a->last_sync = now;
		it = 0;
		while (hmap_next(&a->parts, &it, NULL, NULL, &v))
			if (((struct part *)v)->fd >= 0)
				fdatasync(((struct part *)v)->fd);
	}
	if (a->retention_due || now < a->last_retention || now - a->last_retention >= 10000000000ull) {
		a->retention_due = false;
		a->last_retention = now;
		retention(a, now);
	}
}

/* Processes up to max items; returns how many. */
static size_t drain(struct moat_archive *a, size_t max)
{
	struct rulesnap *rs;
	struct ifsnap *fs;
	size_t done = 0;
	uint64_t now = now_of(a);

	pthread_mutex_lock(&a->snap_lock);
	rs = a->rules;
	fs = a->ifs;
	if (rs)
		__atomic_add_fetch(&rs->refs, 1, __ATOMIC_ACQ_REL);
	if (fs)
		__atomic_add_fetch(&fs->refs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&a->snap_lock);
	while (done < max) {
		uint64_t head = __atomic_load_n(&a->qhead, __ATOMIC_ACQUIRE);
		const struct qhdr *h;

		if (a->qtail == head)
			break;
		h = (const void *)(a->q + (a->qtail & (a->qsize - 1)));
		switch (h->kind) {
		case QI_EVENT:
			do_event(a, h, rs, fs, now);
			break;
		case QI_FLOW:
			do_flow(a, h, rs, now);
			break;
		case QI_DROPS:
			do_drops(a, h, rs, fs, now);
			break;
		}
		__atomic_store_n(&a->qtail, a->qtail + h->len, __ATOMIC_RELEASE);
		if (h->kind != QI_PAD)
			done++;
		if ((done & 1023) == 0)
			now = now_of(a);
	}
	rulesnap_put(rs);
	ifsnap_put(fs);
	return done;
}

/* At close the producer is gone (the sink is not called any more): drops
 * still in its ledger are counted on their interfaces before the last
 * segments close. */
static void ledger_final(struct moat_archive *a, uint64_t now)
{
	struct rulesnap *rs = a->rules;
	struct ifsnap *fs = a->ifs;

	for (size_t i = 0; i < LEDGER_SLOTS; i++) {
		struct ledger_ent *l = &a->ledger[i];
		struct {
			struct qhdr h;
			struct qdrops d;
			uint8_t names[400];
		} item;
		struct qsides s;

		if (!l->used)
			continue;
		memset(&item, 0, sizeof(item));
		set_sides(&s, l->sns, l->spod, l->dns, l->dpod);
		item.h.kind = QI_DROPS;
		item.d.count = l->count;
		item.d.ifindex = l->ifindex;
		item.d.hook = l->hook;
		item.d.src_identity = l->src_identity;
		item.d.dst_identity = l->dst_identity;
		item.d.s = s;
		put_sides(item.names, &s, l->sns, l->spod, l->dns, l->dpod);
		do_drops(a, &item.h, rs, fs, now);
		l->used = false;
	}
	a->ledger_used = 0;
}

static void publish_flushed(struct moat_archive *a)
{
	pthread_mutex_lock(&a->mu);
	a->flushed_upto = a->qtail;
	a->flush_req = false;
	pthread_cond_broadcast(&a->done);
	pthread_mutex_unlock(&a->mu);
}

static void *writer(void *arg)
{
	struct moat_archive *a = arg;

	for (;;) {
		size_t n = drain(a, 4096);
		uint64_t now = now_of(a);
		bool stop, req;

		pthread_mutex_lock(&a->mu);
		stop = a->stop;
		req = a->flush_req;
		pthread_mutex_unlock(&a->mu);
		if (n == 0 || req) {
			flush_all(a, now);
			publish_flushed(a);
		}
		periodic(a, now);
		if (n) {
			a->last_busy = now;
			continue;
		}
		if (stop)
			break;
		pthread_mutex_lock(&a->mu);
		__atomic_store_n(&a->sleeping, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&a->qhead, __ATOMIC_SEQ_CST) == a->qtail && !a->stop && !a->flush_req) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += now - a->last_busy < 1000000000ull ? 20000000 : 200000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&a->wake, &a->mu, &ts);
		}
		__atomic_store_n(&a->sleeping, 0, __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&a->mu);
	}
	{
		size_t it = 0;
		void *v;
		uint64_t now = now_of(a);
		ledger_final(a, now);
		update_loss(a, now);
		while (hmap_next(&a->parts, &it, NULL, NULL, &v)) {
			struct part *p = v;
			size_t j = 0;
			void *f;
			bool pending = false;
			while (hmap_next(&p->ifs, &j, NULL, NULL, &f))
				pending |= ((struct iface_st *)f)->pending_drop > 0;
			/* drops not written anywhere yet: a last segment records them */
			if (p->fd < 0 && pending)
				seg_open(a, p, now, 0);
			seg_close(a, p, now, true);
		}
		publish_flushed(a);
	}
	return NULL;
}

int moat_archive_flush(struct moat_archive *a, int timeout_ms)
{
	uint64_t target = __atomic_load_n(&a->qhead, __ATOMIC_ACQUIRE);
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&a->mu);
	while (a->flushed_upto < target && !rc) {
		a->flush_req = true;
		pthread_cond_signal(&a->wake);
		if (pthread_cond_timedwait(&a->done, &a->mu, &ts) == ETIMEDOUT)
			rc = a->flushed_upto < target ? -ETIMEDOUT : 0;
	}
	pthread_mutex_unlock(&a->mu);
	return rc;
}

/* ---- crash recovery ----------------------------------------------------------------- */
/* A segment left open: everything up to the last whole block stays, the
 * torn tail goes, and it is renamed closed with its last timestamp. */
static void recover_one(struct moat_archive *a, const struct moat_segment *s)
{
	char path[PATH_MAX + 160], final[PATH_MAX + 160];
	struct pcapng_reader *r;
	struct pcapng_block b;
	uint64_t last = s->start_ns, blocks = 0, valid;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/%s/%s", a->dir, s->part, s->file);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		alog(a, MOAT_LOG_WARN, "archive: cannot open %s to recover it: %s", path, strerror(errno));
		return;
	}
	pcapng_reader_new(fd, &r);
	while ((rc = pcapng_next(r, &b)) > 0) {
		struct pcapng_epb_view e;
		blocks++;
		/* our segments have nanosecond timestamps */
		if (b.type == PCAPNG_BT_EPB && !pcapng_parse_epb(&b, &e) && e.ts_raw > last)
			last = e.ts_raw;
	}
	valid = pcapng_reader_valid_end(r);
	pcapng_reader_free(r);
	/* events reach the writer out of time order (per-CPU rings drained in
	 * turn): the file's last write bounds its items better than they do */
	{
		struct stat st;
		if (!fstat(fd, &st)) {
			uint64_t m =
				(uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
			if (m > last)
				last = m;
		}
	}
	/* nothing in it is later than now: a garbage timestamp in a whole
	 * block would otherwise name the segment past the 19 digits that
	 * moat_archive_list() reads (it would vanish from queries and
	 * retention) or keep it from ever expiring by age */
	{
		uint64_t now = now_of(a);
		if (last > now)
			last = now;
	}
	if (!valid) {
		close(fd);
		unlink(path);
		ST_ADD(a, segments_recovered, 1);
		ST_ADD(a, torn_bytes_cut, s->bytes);
		alog(a, MOAT_LOG_WARN, "archive: %s/%s held no whole block (%llu bytes); removed", s->part,
		     s->file, (unsigned long long)s->bytes);
		return;
	}
	if (valid < s->bytes) {
		if (ftruncate(fd, (off_t)valid)) {
			alog(a, MOAT_LOG_WARN, "archive: cannot cut the torn tail of %s: %s", path,
			     strerror(errno));
			close(fd);
			return;
		}
		fdatasync(fd);
		ST_ADD(a, torn_bytes_cut, s->bytes - valid);
	}
	close(fd);
	snprintf(final, sizeof(final), "%s/%s/%llu-%llu.pcapng", a->dir, s->part,
		 (unsigned long long)s->start_ns,
		 (unsigned long long)(last > s->start_ns ? last : s->start_ns + 1));
	if (rename(path, final)) {
		alog(a, MOAT_LOG_WARN, "archive: cannot rename %s: %s", path, strerror(errno));
		return;
	}
	ST_ADD(a, segments_recovered, 1);
	alog(a, MOAT_LOG_WARN,
	     "archive: recovered %s/%s left open by a crash: %llu whole blocks kept, "
	     "%llu bytes of a torn last block cut%s",
	     s->part, s->file, (unsigned long long)blocks, (unsigned long long)(s->bytes - valid),
	     rc == -EBADMSG ? " (it did not parse)" : "");
}

static void recover(struct moat_archive *a)
{
	struct moat_segment *v;
	size_t n;

	if (moat_archive_list(a->dir, &v, &n))
		return;
	for (size_t i = 0; i < n; i++)
		if (!v[i].end_ns)
			recover_one(a, &v[i]);
	free(v);
}

/* ---- life cycle --------------------------------------------------------------------- */
static int mkdir_p(const char *path)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) && errno != EEXIST) {
			rc = -errno;
			break;
		}
		*s = '/';
	}
	if (!rc && mkdir(p, 0750) && errno != EEXIST)
		rc = -errno;
	free(p);
	return rc;
}

int moat_archive_open(const struct moat_archive_opts *o, struct moat_archive **ret, char *err, size_t errlen)
{
	struct moat_archive *a;
	char lp[PATH_MAX];
	int rc;

	if (!o->dir || !*o->dir) {
		snprintf(err, errlen, "no archive directory");
		return -EINVAL;
	}
	a = xcalloc(1, sizeof(*a));
	a->o = *o;
	a->wo = *o;
	a->dir = xstrdup(o->dir);
	a->node = xstrdup(o->node ? o->node : "node");
	a->o.dir = a->wo.dir = a->dir;
	a->o.node = a->wo.node = a->node;
	a->lock_fd = -1;
	rc = mkdir_p(a->dir);
	if (rc) {
		snprintf(err, errlen, "%s: %s", a->dir, strerror(-rc));
		goto fail;
	}
	/* one writer per directory */
	snprintf(lp, sizeof(lp), "%s/.lock", a->dir);
	a->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (a->lock_fd < 0 || flock(a->lock_fd, LOCK_EX | LOCK_NB)) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", a->dir,
			 rc == -EWOULDBLOCK ? "in use by another moatd" : strerror(-rc));
		goto fail;
	}
	a->qsize = 64 * 1024;
	while (a->qsize < o->queue_bytes)
		a->qsize <<= 1;
	a->q = xcalloc(1, a->qsize);
	a->run = now_of(a);
	hmap_init(&a->parts);
	pthread_mutex_init(&a->cfg_lock, NULL);
	pthread_mutex_init(&a->mu, NULL);
	pthread_mutex_init(&a->snap_lock, NULL);
	pthread_mutex_init(&a->ev_lock, NULL);
	pthread_cond_init(&a->wake, NULL);
	pthread_cond_init(&a->done, NULL);
	a->st.queue_size = a->qsize;
	recover(a);
	update_loss(a, a->run);
	retention(a, a->run);
	a->last_retention = a->last_loss_check = a->last_sync = a->run;
	if (pthread_create(&a->thread, NULL, writer, a)) {
		rc = -EAGAIN;
		snprintf(err, errlen, "cannot start the writer thread");
		goto fail;
	}
	a->started = true;
	*ret = a;
	return 0;
fail:
	if (a->lock_fd >= 0)
		close(a->lock_fd);
	free(a->q);
	free(a->dir);
	free(a->node);
	free(a);
	return rc;
}

void moat_archive_close(struct moat_archive *a)
{
	size_t it = 0;
	void *v;

	if (!a)
		return;
	if (a->started) {
		pthread_mutex_lock(&a->mu);
		a->stop = true;
		pthread_cond_signal(&a->wake);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->thread, NULL);
	}
	while (hmap_next(&a->parts, &it, NULL, NULL, &v)) {
		struct part *p = v;
		size_t j = 0;
		void *f;
		while (hmap_next(&p->ifs, &j, NULL, NULL, &f))
			free(f);
		hmap_free(&p->ifs);
		ptrvec_free(&p->ifv);
		pcapng_buf_free(&p->buf);
		free(p);
	}
	hmap_free(&a->parts);
	rulesnap_put(a->rules);
	ifsnap_put(a->ifs);
	if (a->lock_fd >= 0)
		close(a->lock_fd);
	free(a->q);
	free(a->dir);
	free(a->node);
	free(a);
}

void moat_archive_reconfigure(struct moat_archive *a, const struct moat_archive_opts *o)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->cfg_lock);
	a->o.segment_bytes = o->segment_bytes;
	a->o.segment_ns = o->segment_ns;
	a->o.total_bytes = o->total_bytes;
	a->o.enforce = o->enforce;
	a->o.defaults = o->defaults;
	memcpy(a->o.ns, o->ns, o->nns * sizeof(o->ns[0]));
	a->o.nns = o->nns;
	__atomic_add_fetch(&a->cfg_gen, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&a->cfg_lock);
	pthread_mutex_lock(&a->mu);
	pthread_cond_signal(&a->wake);
	pthread_mutex_unlock(&a->mu);
}

const char *moat_archive_dir(const struct moat_archive *a)
{
	return a ? a->dir : NULL;
}

void moat_archive_stats(struct moat_archive *a, struct moat_archive_stats *st)
{
	uint64_t *dst = (uint64_t *)st;
	const uint64_t *src = (const uint64_t *)&a->st;

	/* every field but the last (a bool) is a u64 counter */
	for (size_t i = 0; i < offsetof(struct moat_archive_stats, disk_full) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	st->disk_full = __atomic_load_n(&a->st.disk_full, __ATOMIC_RELAXED);
	st->queue_used =
		__atomic_load_n(&a->qhead, __ATOMIC_RELAXED) - __atomic_load_n(&a->qtail, __ATOMIC_RELAXED);
	st->queue_size = a->qsize;
}

char *moat_archive_metrics(struct moat_archive *a)
{
	struct moat_archive_stats s;

	moat_archive_stats(a, &s);
	return xasprintf(
		"# HELP moat_archive_events_total Verdict events offered to the archive, by outcome.\n"
		"# TYPE moat_archive_events_total counter\n"
		"moat_archive_events_total{outcome=\"offered\"} %llu\n"
		"moat_archive_events_total{outcome=\"written\"} %llu\n"
		"moat_archive_events_total{outcome=\"lost-queue-full\"} %llu\n"
		"# HELP moat_archive_event_copies_lost_total Event copies (one per namespace partition) not written: disk full or write errors.\n"
		"# TYPE moat_archive_event_copies_lost_total counter\nmoat_archive_event_copies_lost_total %llu\n"
		"# HELP moat_archive_flows_total Flow records offered to the archive, by outcome.\n"
		"# TYPE moat_archive_flows_total counter\n"
		"moat_archive_flows_total{outcome=\"offered\"} %llu\n"
		"moat_archive_flows_total{outcome=\"written\"} %llu\n"
		"moat_archive_flows_total{outcome=\"lost-queue-full\"} %llu\n"
		"# HELP moat_archive_bytes_written_total Bytes written into segments.\n"
		"# TYPE moat_archive_bytes_written_total counter\nmoat_archive_bytes_written_total %llu\n"
		"# HELP moat_archive_segments_total Segments by life-cycle event.\n"
		"# TYPE moat_archive_segments_total counter\n"
		"moat_archive_segments_total{event=\"opened\"} %llu\n"
		"moat_archive_segments_total{event=\"closed\"} %llu\n"
		"moat_archive_segments_total{event=\"expired\"} %llu\n"
		"moat_archive_segments_total{event=\"recovered\"} %llu\n"
		"# HELP moat_archive_torn_bytes_cut_total Bytes of torn last blocks cut when recovering segments.\n"
		"# TYPE moat_archive_torn_bytes_cut_total counter\nmoat_archive_torn_bytes_cut_total %llu\n"
		"# HELP moat_archive_write_errors_total Failed writes (disk full and others).\n"
		"# TYPE moat_archive_write_errors_total counter\nmoat_archive_write_errors_total %llu\n"
		"# HELP moat_archive_disk_full 1 while writes are failing.\n"
		"# TYPE moat_archive_disk_full gauge\nmoat_archive_disk_full %d\n"
		"# HELP moat_archive_queue_bytes Bytes waiting in the archive queue, and its size.\n"
		"# TYPE moat_archive_queue_bytes gauge\nmoat_archive_queue_bytes{what=\"used\"} %llu\n"
		"moat_archive_queue_bytes{what=\"size\"} %llu\n"
		"# HELP moat_archive_disk_bytes Bytes of segments on disk (last retention pass).\n"
		"# TYPE moat_archive_disk_bytes gauge\nmoat_archive_disk_bytes %llu\n",
		(unsigned long long)s.offered, (unsigned long long)s.written,
		(unsigned long long)s.queue_lost, (unsigned long long)s.disk_lost,
		(unsigned long long)s.flows_offered, (unsigned long long)s.flows_written,
		(unsigned long long)s.flows_queue_lost, (unsigned long long)s.bytes_written,
		(unsigned long long)s.segments_opened, (unsigned long long)s.segments_closed,
		(unsigned long long)s.segments_expired, (unsigned long long)s.segments_recovered,
		(unsigned long long)s.torn_bytes_cut, (unsigned long long)s.write_errors, s.disk_full ? 1 : 0,
		(unsigned long long)s.queue_used, (unsigned long long)s.queue_size,
		(unsigned long long)s.disk_bytes);
}

/* ---- moatd glue ------------------------------------------------------------------------ */
int moat_archive_flag(struct moatd_config *c, int which, const char *val, char *err, size_t errlen)
{
	static bool ns_from_flags;
	static const int map[] = { -1, 0, 1, 2, 3, 4, 6 }; /* -> settings[] */
	char **dst;
	char e2[256];

	if (which < 0 || which >= MOAT_ARCHIVE_NOPTS)
		return -EINVAL;
	if (which == 0) {
		free(c->archive_dir);
		c->archive_dir = xstrdup(val);
		return 0;
	}
	dst = (char **)((char *)c + settings[map[which]].off);
	if (check_value(settings[map[which]].path, settings[map[which]].kind, val, e2, sizeof(e2))) {
		snprintf(err, errlen, "--%s: %s",
			 which == 6 ? "archive-namespace" : settings[map[which]].path, e2);
		return -EINVAL;
	}
	if (which == 6 && ns_from_flags && *dst) {
		/* repeated: added to the ones given before (flags replace the file's) */
		char *n = xasprintf("%s,%s", *dst, val);
		free(*dst);
		*dst = n;
		return 0;
	}
	if (which == 6)
		ns_from_flags = true; /* the first one replaces the file's setting */
	free(*dst);
	*dst = xstrdup(val);
	return 0;
}

int moat_archive_daemon_open(struct moatd *d, void (*log)(void *, int, const char *), char *err,
			     size_t errlen)
{
	struct moat_archive_opts *o;
	int rc;

	if (!d->cfg.archive_dir)
		return 0;
	o = xcalloc(1, sizeof(*o));
	rc = moat_archive_opts_from_config(&d->cfg, o, err, errlen);
	if (!rc) {
		o->log = log;
		rc = moat_archive_open(o, &d->archive, err, errlen);
	}
	free(o);
	return rc;
}

int moat_archive_daemon_reload(struct moatd *d, char *err, size_t errlen)
{
	struct moat_archive_opts *o;
	int rc;

	if (!d->archive)
		return 0;
	o = xcalloc(1, sizeof(*o));
	rc = moat_archive_opts_from_config(&d->cfg, o, err, errlen);
	if (!rc)
		moat_archive_reconfigure(d->archive, o);
	free(o);
	return rc;
}
