// SPDX-License-Identifier: Apache-2.0
/* moatctl archive list|query and moatctl policy replay. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "archive.h"
#include "moatctl.h"
#include "replay.h"
#include "util.h"

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : "";
}

static long long jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_integer(v) ? json_integer_value(v) : 0;
}

static void human(long long b, char *out, size_t len)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(out, len, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static int cmd_list(const struct gopts *g)
{
	json_t *j, *p, *s;
	size_t i, k;

	if (api_call(g, "GET", "/v1/archives", NULL, 0, &j, NULL, NULL))
		return 1;
	if (!strcmp(g->output, "json")) {
		char *t = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
		if (t)
			puts(t);
		free(t);
		json_decref(j);
		return 0;
	}
	if (!strcmp(g->output, "wide")) {
		printf("%-24s %-46s %-32s %-32s %10s\n", "NAMESPACE", "SEGMENT", "START", "END", "BYTES");
		json_array_foreach(json_object_get(j, "partitions"), i, p)
		{
			const char *ns = *jstr(p, "namespace") ? jstr(p, "namespace") : "(node)";
			json_array_foreach(json_object_get(p, "segments"), k, s)
				printf("%-24s %-46s %-32s %-32s %10lld\n", ns, jstr(s, "file"),
				       jstr(s, "start"),
				       json_is_true(json_object_get(s, "open")) ? "(open)" : jstr(s, "end"),
				       jint(s, "bytes"));
		}
	} else {
		printf("%-24s %8s %10s  %-32s %s\n", "NAMESPACE", "SEGMENTS", "SIZE", "OLDEST", "NEWEST");
		json_array_foreach(json_object_get(j, "partitions"), i, p)
		{
			json_t *segs = json_object_get(p, "segments"), *last;
			char h[32];
			size_t n = json_array_size(segs);
			if (!n)
				continue;
			last = json_array_get(segs, n - 1);
			human(jint(p, "bytes"), h, sizeof(h));
			printf("%-24s %8zu %10s  %-32s %s\n",
			       *jstr(p, "namespace") ? jstr(p, "namespace") : "(node)", n, h,
			       jstr(json_array_get(segs, 0), "start"),
			       json_is_true(json_object_get(last, "open")) ? "(recording)" :
									     jstr(last, "end"));
		}
	}
	if (json_is_object(json_object_get(j, "stats"))) {
		json_t *st = json_object_get(j, "stats");
		printf("\n%s: %lld events written, %lld lost (queue full), %lld copies lost (disk)%s\n",
		       jstr(j, "dir"), jint(st, "events_written"), jint(st, "events_lost_queue_full"),
		       jint(st, "event_copies_lost_disk"),
		       json_is_true(json_object_get(st, "disk_full")) ? "; WRITES FAILING NOW" : "");
	}
	json_decref(j);
	return 0;
}

/* ---- query: the result streamed into a file ----------------------------------------- */
struct sink {
	CURL *c;
	FILE *f;
	bool error;
	char *err;
	size_t elen;
	unsigned long long bytes;
};

static size_t q_write(char *ptr, size_t sz, size_t nm, void *ud)
{
	struct sink *s = ud;
	size_t n = sz * nm;
	long code = 0;

	curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &code);
	if (code != 200) {
		/* an error: JSON, kept to print */
		s->error = true;
		if (s->elen + n < 1u << 16) {
			s->err = xrealloc(s->err, s->elen + n + 1);
			memcpy(s->err + s->elen, ptr, n);
			s->elen += n;
			s->err[s->elen] = 0;
		}
		return n;
	}
	if (fwrite(ptr, 1, n, s->f) != n)
		return 0;
	s->bytes += n;
	return n;
}

static void add(char *path, size_t len, const char *k, const char *v)
{
	char *e;

	if (!v)
		return;
	e = url_escape(v);
	snprintf(path + strlen(path), len - strlen(path), "&%s=%s", k, e);
	free(e);
}

static int cmd_query(const struct gopts *g, int argc, char **argv)
{
	static const struct option o[] = { { "since", required_argument, NULL, 's' },
					   { "until", required_argument, NULL, 'u' },
					   { "namespace", required_argument, NULL, 'n' },
					   { "pod", required_argument, NULL, 'p' },
					   { "verdict", required_argument, NULL, 'v' },
					   { "policy", required_argument, NULL, 'y' },
					   { "filter", required_argument, NULL, 'f' },
					   { "format", required_argument, NULL, 'F' },
					   { "no-flows", no_argument, NULL, 'N' },
					   { "write", required_argument, NULL, 'w' },
					   { 0 } };
	const char *since = NULL, *until = NULL, *ns = NULL, *pod = NULL, *verdict = NULL, *policy = NULL;
	const char *filter = NULL, *format = "pcapng", *out = NULL;
	char path[8192] = "/v1/archives/query?x=1", url[8300], tmp[512], sp[512];
	struct timespec ts;
	struct sink s = { 0 };
	struct curl_slist *hdrs;
	uint64_t now, t;
	bool flows = true;
	CURLcode cc;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "w:", o, NULL)) != -1) {
		switch (c) {
		case 's':
			since = optarg;
			break;
		case 'u':
			until = optarg;
			break;
		case 'n':
			ns = optarg;
			break;
		case 'p':
			pod = optarg;
			break;
		case 'v':
			verdict = optarg;
			break;
		case 'y':
			policy = optarg;
			break;
		case 'f':
			filter = optarg;
			break;
		case 'F':
			format = optarg;
			break;
		case 'N':
			flows = false;
			break;
		case 'w':
			out = optarg;
			break;
		default:
			return 2;
		}
	}
	if (!out || optind < argc) {
		fprintf(stderr,
			"usage: moatctl archive query -w FILE [--since T] [--until T] [--namespace NS] "
			"[--pod [NS/]POD] [--verdict allow|deny|audit] [--policy TEXT] [--filter EXPR] "
			"[--format pcapng|pcap] [--no-flows]\n"
			"  T: RFC 3339 (2026-11-28T03:00:00Z), relative (-2h, -30m), or now\n");
		return 2;
	}
	if (strcmp(format, "pcapng") && strcmp(format, "pcap")) {
		fprintf(stderr, "moatctl archive query: --format must be pcapng or pcap\n");
		return 2;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	/* relative times are relative to now, here: sent as absolute ones */
	if (since) {
		if (moat_time_parse(since, now, &t)) {
			fprintf(stderr,
				"moatctl archive query: --since %s: not RFC 3339 (2026-11-28T03:00:00Z) "
				"or relative (-2h)\n",
				since);
			return 2;
		}
		moat_time_format(t, tmp, sizeof(tmp));
		add(path, sizeof(path), "since", tmp);
	}
	if (until) {
		if (moat_time_parse(until, now, &t)) {
			fprintf(stderr, "moatctl archive query: --until %s: not RFC 3339 or relative\n",
				until);
			return 2;
		}
		moat_time_format(t, tmp, sizeof(tmp));
		add(path, sizeof(path), "until", tmp);
	}
	add(path, sizeof(path), "namespace", ns);
	add(path, sizeof(path), "pod", pod);
	add(path, sizeof(path), "verdict", verdict);
	add(path, sizeof(path), "policy", policy);
	add(path, sizeof(path), "filter", filter);
	add(path, sizeof(path), "format", format);
	if (!flows)
		add(path, sizeof(path), "flows", "0");

	s.f = strcmp(out, "-") ? fopen(out, "wb") : stdout;
	if (!s.f) {
		fprintf(stderr, "moatctl archive query: %s: %s\n", out, strerror(errno));
		return 1;
	}
	s.c = curl_easy_init();
	snprintf(url, sizeof(url), "http://moatd%s", path);
	curl_easy_setopt(s.c, CURLOPT_UNIX_SOCKET_PATH, sock_path(g, sp, sizeof(sp)));
	curl_easy_setopt(s.c, CURLOPT_URL, url);
	curl_easy_setopt(s.c, CURLOPT_WRITEFUNCTION, q_write);
	curl_easy_setopt(s.c, CURLOPT_WRITEDATA, &s);
	hdrs = auth_header();
	if (hdrs)
		curl_easy_setopt(s.c, CURLOPT_HTTPHEADER, hdrs);
	cc = curl_easy_perform(s.c);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(s.c);
	if (s.f != stdout && fclose(s.f) && cc == CURLE_OK && !s.error) {
		fprintf(stderr, "moatctl archive query: %s: %s\n", out, strerror(errno));
		rc = 1;
	}
	if (cc != CURLE_OK) {
		fprintf(stderr, "moatctl archive query: %s (is moatd running at %s?)\n",
			curl_easy_strerror(cc), sp);
		rc = 1;
	} else if (s.error) {
		json_error_t je;
		json_t *e = json_loadb(s.err ? s.err : "", s.elen, 0, &je);
		fprintf(stderr, "moatctl archive query: %s\n",
			e && *jstr(e, "error") ? jstr(e, "error") : "request refused");
		json_decref(e);
		rc = 1;
	} else if (s.f != stdout) {
		fprintf(stderr, "%s: %llu bytes (%s)\n", out, s.bytes, format);
	}
	if (rc && s.f != stdout)
		unlink(out);
	free(s.err);
	return rc;
}

int moatctl_archive(const struct gopts *g, int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "list"))
		return cmd_list(g);
	if (argc >= 2 && !strcmp(argv[1], "query"))
		return cmd_query(g, argc - 1, argv + 1);
	fprintf(stderr, "usage: moatctl archive list | archive query -w FILE [filters]\n");
	return 2;
}

/* ---- policy replay ---------------------------------------------------------------------- */
static void print_groups(json_t *a, const char *title, const char *verb)
{
	size_t i, k;
	json_t *gr, *ex;

	if (!json_array_size(a))
		return;
	printf("\n%s\n", title);
	json_array_foreach(a, i, gr)
	{
		printf("  namespace %s: %lld flow(s) %s %s\n", jstr(gr, "namespace"), jint(gr, "flows"), verb,
		       jstr(gr, "rule"));
		json_array_foreach(json_object_get(gr, "examples"), k, ex)
			printf("    %s -> %s %s/%lld  x%lld  (was %s: %s; first seen %s)\n", jstr(ex, "src"),
			       jstr(ex, "dst"), jstr(ex, "proto"), jint(ex, "port"), jint(ex, "flows"),
			       jstr(ex, "was"), jstr(ex, "was_rule"), jstr(ex, "first_seen"));
	}
}

static long long total(json_t *a)
{
	size_t i;
	json_t *g;
	long long n = 0;

	json_array_foreach(a, i, g) n += jint(g, "flows");
	return n;
}

int moatctl_policy_replay(const struct gopts *g, int argc, char **argv)
{
	static const struct option o[] = { { "archive", required_argument, NULL, 'a' },
					   { "policies", required_argument, NULL, 'p' },
					   { "node", required_argument, NULL, 'n' },
					   { 0 } };
	struct moat_replay_opts ro = { .node = NULL };
	char err[1024];
	json_t *j, *e;
	size_t i;
	int c, rc;
	long long denied;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
		switch (c) {
		case 'a':
			ro.archive = optarg;
			break;
		case 'p':
			ro.policies = optarg;
			break;
		case 'n':
			ro.node = optarg;
			break;
		default:
			return 2;
		}
	}
	if (!ro.archive || !ro.policies || optind < argc) {
		fprintf(stderr,
			"usage: moatctl policy replay --archive DIR|SEGMENT|QUERY.pcapng --policies DIR "
			"[--node NAME]\n"
			"  DIR: the complete candidate object set (Nodes, Namespaces, Pods, policies),\n"
			"  as moatd --manifests reads it.  Exit 1: flows would be newly denied.\n");
		return 2;
	}
	rc = moat_replay(&ro, &j, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "moatctl policy replay: %s\n", err);
		return 2;
	}
	denied = total(json_object_get(j, "newly_denied"));
	if (!strcmp(g->output, "json")) {
		char *t = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
		if (t)
			puts(t);
		free(t);
	} else {
		json_t *sk = json_object_get(j, "skipped");
		const char *k;
		json_t *v;
		long long nsk = 0;
		json_object_foreach(sk, k, v) nsk += json_integer_value(v);
		printf("replayed %lld of %lld archived flows (%lld file(s)%s) through %s: %lld newly denied, "
		       "%lld newly allowed, %lld newly audited, %lld no longer audited, %lld unchanged",
		       jint(j, "replayed"), jint(j, "flows"), jint(j, "files"),
		       jint(j, "bad_files") ? ", some with a torn or bad tail" : "", ro.policies, denied,
		       total(json_object_get(j, "newly_allowed")), total(json_object_get(j, "newly_audited")),
		       total(json_object_get(j, "no_longer_audited")), jint(j, "unchanged"));
		if (nsk) {
			printf("; %lld skipped (", nsk);
			i = 0;
			json_object_foreach(sk, k, v)
				printf("%s%s: %lld", i++ ? ", " : "", k, (long long)json_integer_value(v));
			printf(")");
		}
		printf("\n");
		print_groups(json_object_get(j, "newly_denied"), "NEWLY DENIED (would break)", "denied by");
		print_groups(json_object_get(j, "newly_allowed"), "NEWLY ALLOWED", "no longer denied by");
		print_groups(json_object_get(j, "newly_audited"),
			     "NEWLY AUDITED (allowed; would be denied when enforced)", "audited by");
		print_groups(json_object_get(j, "no_longer_audited"), "NO LONGER AUDITED", "were audited by");
	}
	e = json_object_get(j, "load_errors");
	for (i = 0; i < json_array_size(e); i++)
		fprintf(stderr, "error: %s\n", json_string_value(json_array_get(e, i)));
	rc = json_array_size(e) ? 2 : denied ? 1 : 0;
	json_decref(j);
	return rc;
}
