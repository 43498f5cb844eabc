// SPDX-License-Identifier: Apache-2.0
/* moatctl: the operator's window into moatd (control API over its unix
 * socket, kubectl-style output) plus offline tools that need no daemon
 * (policy check, uninstall). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <curl/curl.h>
#include <jansson.h>

#include "compile.h"
#include "decode.h"
#include "manifest.h"
#include "pfmgr.h"

int moatctl_offload_main(int argc, char **argv);
#include "moatctl.h"
#include "srcdir.h"
#include "util.h"

/* struct gopts and the helpers below that moatctl_archive.c uses: moatctl.h */

struct buf {
	char *p;
	size_t n;
};

static size_t curl_write(char *ptr, size_t sz, size_t nm, void *ud)
{
	struct buf *b = ud;
	size_t add = sz * nm;

	if (b->n + add > 64u << 20)
		return 0; /* bounded: refuse absurd responses */
	b->p = xrealloc(b->p, b->n + add + 1);
	memcpy(b->p + b->n, ptr, add);
	b->n += add;
	b->p[b->n] = 0;
	return add;
}

const char *sock_path(const struct gopts *g, char *tmp, size_t len)
{
	if (g->socket)
		return g->socket;
	if (g->node) {
		snprintf(tmp, len, "/run/moat/%s.sock", g->node);
		return tmp;
	}
	{
		char host[256];
		if (gethostname(host, sizeof(host)))
			snprintf(host, sizeof(host), "default");
		snprintf(tmp, len, "/run/moat/%s.sock", host);
	}
	return tmp;
}

/* A bearer token for the API: $MOAT_TOKEN, or the first line of the file
 * $MOAT_TOKEN_FILE.  Root on the unix socket needs none. */
struct curl_slist *auth_header(void)
{
	const char *t = getenv("MOAT_TOKEN"), *tf = getenv("MOAT_TOKEN_FILE");
	char line[512], hdr[600];
	struct curl_slist *h;

	if (!t && tf) {
		FILE *f = fopen(tf, "r");
		if (f && fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\r\n")] = 0;
			t = line;
		}
		if (f)
			fclose(f);
	}
	if (!t || !*t)
		return NULL;
	snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", t);
	h = curl_slist_append(NULL, hdr);
	return h;
}

/* A request to the daemon; returns the parsed JSON (or text in *raw).
 * Non-2xx answers print the daemon's error and return -EINVAL (*code says
 * which, if given). */
int api_call(const struct gopts *g, const char *method, const char *path, const char *body, size_t blen,
	     json_t **ret, char **raw, long *codep)
{
	char tmp[512], url[2048];
	const char *sp = sock_path(g, tmp, sizeof(tmp));
	struct buf b = { 0 };
	struct curl_slist *hdrs = auth_header();
	CURL *c = curl_easy_init();
	CURLcode cc;
	long code = 0;
	json_error_t je;

	if (!c)
		return -ENOMEM;
	snprintf(url, sizeof(url), "http://moatd%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sp);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	if (strcmp(method, "GET")) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body ? blen : 0));
	}
	if (hdrs)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	if (codep)
		*codep = code;
	if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST) {
		fprintf(stderr,
			"moatctl: cannot reach moatd at %s: is the daemon running? "
			"(start it, or point --socket/--node at it)\n",
			sp);
		free(b.p);
		return -ECONNREFUSED;
	}
	if (cc != CURLE_OK) {
		fprintf(stderr, "moatctl: talking to moatd at %s: %s\n", sp, curl_easy_strerror(cc));
		free(b.p);
		return -EIO;
	}
	if (raw) {
		*raw = b.p ? b.p : xstrdup("");
		return code == 200 ? 0 : -EIO;
	}
	*ret = json_loadb(b.p ? b.p : "", b.n, 0, &je);
	free(b.p);
	if (!*ret) {
		fprintf(stderr, "moatctl: moatd sent something that is not JSON (line %d: %s)\n", je.line,
			je.text);
		return -EPROTO;
	}
	if (code != 200) {
		json_t *e = json_object_get(*ret, "error");
		fprintf(stderr, "moatctl: %s\n", json_is_string(e) ? json_string_value(e) : "request failed");
		json_decref(*ret);
		*ret = NULL;
		return -EINVAL;
	}
	return 0;
}

static int api_get(const struct gopts *g, const char *path, json_t **ret, char **raw)
{
	return api_call(g, "GET", path, NULL, 0, ret, raw, NULL);
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (s) {
		puts(s);
		free(s);
	}
}

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

static int cmd_status(const struct gopts *g)
{
	json_t *j, *v;
	size_t i;
	const char *k;
	int rc = api_get(g, "/v1/status", &j, NULL);

	if (rc)
		return 1;
	if (!strcmp(g->output, "json")) {
		print_json(j);
		json_decref(j);
		return 0;
	}
	printf("node        %s\n", jstr(j, "node"));
	printf("generation  %lld (ABI %lld, %s)\n", jint(j, "generation"), jint(j, "abi"),
	       json_is_true(json_object_get(j, "adopted")) ? "adopted pinned state" : "fresh state");
	if (json_object_get(j, "upgrading_from_abi"))
		printf("upgrade     from ABI %lld pending: its programs enforce until a generation is built\n",
		       jint(j, "upgrading_from_abi"));
	printf("enforcing   %s\n", json_is_true(json_object_get(j, "enforce")) ? "yes" : "no (observe only)");
	printf("last apply  %s\n", jstr(json_object_get(j, "last_apply"), "message"));
	printf("\n%-28s %-20s %-9s %-8s %-8s %-20s %s\n", "INTERFACE", "POD", "HOOK", "IFINDEX", "MODE",
	       "PLAN", strcmp(g->output, "wide") ? "" : "WHY BETTER PLANS AND MODES WERE REJECTED");
	json_array_foreach(json_object_get(j, "interfaces"), i, v)
	{
		json_t *plan = json_object_get(v, "plan"); /* issue 6 */
		printf("%-28s %-20s %-9s %-8lld %-8s %-20s", jstr(v, "name"), jstr(v, "pod"), jstr(v, "hook"),
		       jint(v, "ifindex"), jstr(v, "mode"), plan ? jstr(plan, "kind") : "");
		if (!strcmp(g->output, "wide")) {
			json_t *w;
			const char *m;
			if (plan)
				printf(" [driver %s, profile %s]",
				       *jstr(plan, "driver") ? jstr(plan, "driver") : "?",
				       jstr(plan, "profile"));
			json_object_foreach(json_object_get(plan, "rejected"), m, w)
				printf(" %s: %s;", m, json_string_value(w));
			json_object_foreach(json_object_get(v, "rejected"), m, w)
				printf(" %s: %s;", m, json_string_value(w));
		} else if (plan && !strcmp(jstr(v, "hook"), "uplink")) {
			json_t *w;
			const char *m;
			/* the NIC's plan matters: say why a better one did not take */
			json_object_foreach(json_object_get(plan, "rejected"), m, w)
				printf(" %s: %s;", m, json_string_value(w));
		}
		if (*jstr(v, "error"))
			printf(" ERROR: %s", jstr(v, "error"));
		printf("\n");
	}
	printf("\n%-12s %10s %10s %6s\n", "TABLE", "ENTRIES", "CAPACITY", "USED");
	json_object_foreach(json_object_get(j, "tables"), k, v)
	{
		long long e = jint(v, "entries"), c = jint(v, "capacity");
		printf("%-12s %10lld %10lld %5.1f%%\n", k, e, c, c ? 100.0 * (double)e / (double)c : 0.0);
	}
	if (json_is_object(json_object_get(j, "prefilter"))) { /* issue 6 */
		printf("\n");
		moat_pfmgr_status_print(json_object_get(j, "prefilter"), stdout);
	}
	v = json_object_get(j, "recent_errors");
	if (json_array_size(v)) {
		json_t *e;
		printf("\nrecent errors:\n");
		json_array_foreach(v, i, e) printf("  %s\n", json_string_value(e));
	}
	json_decref(j);
	return 0;
}

static void labels_text(json_t *l, char *out, size_t len)
{
	const char *k;
	json_t *v;
	size_t n = 0;

	out[0] = 0;
	json_object_foreach(l, k, v)
	{
		int w = snprintf(out + n, len - n, "%s%s=%s", n ? "," : "", k, json_string_value(v));
		if (w < 0 || (size_t)w >= len - n)
			break;
		n += (size_t)w;
	}
}

static int cmd_get(const struct gopts *g, const char *what)
{
	json_t *j, *v;
	size_t i;
	char path[64];
	bool wide = !strcmp(g->output, "wide");
	int rc;

	if (!strcmp(what, "endpoint") || !strcmp(what, "ep"))
		what = "endpoints";
	if (!strcmp(what, "identity") || !strcmp(what, "id"))
		what = "identities";
	if (!strcmp(what, "policy") || !strcmp(what, "pol"))
		what = "policies";
	if (strcmp(what, "endpoints") && strcmp(what, "identities") && strcmp(what, "policies") &&
	    strcmp(what, "sources")) {
		fprintf(stderr,
			"moatctl get: unknown resource %s (endpoints, identities, policies, sources)\n",
			what);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/%s", what);
	rc = api_get(g, path, &j, NULL);
	if (rc)
		return 1;
	if (!strcmp(g->output, "json")) {
		print_json(j);
		json_decref(j);
		return 0;
	}
	if (!strcmp(what, "endpoints")) {
		printf("%-16s %-24s %-9s %-6s %-8s %s\n", "NAMESPACE", "NAME", "IDENTITY", "LOCAL", "IFINDEX",
		       "IPS");
		json_array_foreach(j, i, v)
		{
			json_t *ip;
			size_t k;
			printf("%-16s %-24s %-9lld %-6s %-8lld", jstr(v, "namespace"), jstr(v, "name"),
			       jint(v, "identity"), json_is_true(json_object_get(v, "local")) ? "yes" : "no",
			       jint(v, "ifindex"));
			json_array_foreach(json_object_get(v, "ips"), k, ip)
				printf("%s%s", k ? "," : " ", json_string_value(ip));
			if (wide)
				printf("  node=%s%s", jstr(v, "node"),
				       json_is_true(json_object_get(v, "hostNetwork")) ? " hostNetwork" : "");
			printf("\n");
		}
	} else if (!strcmp(what, "identities")) {
		char lbl[1024];
		printf("%-9s %-6s %-16s %-8s %s\n", "ID", "CLASS", "NAMESPACE", "MEMBERS", "LABELS");
		json_array_foreach(j, i, v)
		{
			labels_text(json_object_get(v, "labels"), lbl, sizeof(lbl));
			printf("%-9lld %-6s %-16s %-8lld %s\n", jint(v, "id"), jstr(v, "class"),
			       *jstr(v, "namespace") ? jstr(v, "namespace") : jstr(v, "node"),
			       jint(v, "members"), lbl);
		}
	} else if (!strcmp(what, "policies")) {
		printf("%-28s %-16s %-28s %-13s %-8s %-8s %s\n", "KIND", "NAMESPACE", "NAME", "TIER",
		       "PRIORITY", "SUBJECTS", "ENTRIES");
		json_array_foreach(j, i, v)
		{
			printf("%-28s %-16s %-28s %-13s %-8lld %-8lld %lld%s\n", jstr(v, "kind"),
			       *jstr(v, "namespace") ? jstr(v, "namespace") : "-", jstr(v, "name"),
			       jstr(v, "tier"), jint(v, "priority"), jint(v, "subjects"), jint(v, "entries"),
			       json_is_true(json_object_get(v, "audit")) ? "  (audit)" : "");
		}
	} else {
		printf("%-32s %-10s %-8s %s\n", "FILE", "STATUS", "OBJECTS", "ERRORS");
		json_array_foreach(j, i, v)
		{
			json_t *e;
			size_t k;
			printf("%-32s %-10s %-8lld %zu\n", jstr(v, "file"), jstr(v, "status"),
			       jint(v, "objects"), json_array_size(json_object_get(v, "errors")));
			json_array_foreach(json_object_get(v, "errors"), k, e)
				printf("    %s\n", json_string_value(e));
		}
	}
	json_decref(j);
	return 0;
}

char *url_escape(const char *s)
{
	CURL *c = curl_easy_init();
	char *e = c ? curl_easy_escape(c, s, 0) : NULL;
	char *r = xstrdup(e ? e : s);
	curl_free(e);
	if (c)
		curl_easy_cleanup(c);
	return r;
}

static int parse_port(const char *s, long *port, const char **proto)
{
	char *end;
	*port = strtol(s, &end, 10);
	if (end == s || *port < 0 || *port > 65535)
		return -EINVAL;
	*proto = *end == '/' ? end + 1 : "TCP";
	return 0;
}

static int cmd_explain(const struct gopts *g, int argc, char **argv)
{
	static const struct option o[] = { { "from", required_argument, NULL, 'f' },
					   { "to", required_argument, NULL, 't' },
					   { "port", required_argument, NULL, 'p' },
					   { 0 } };
	const char *from = NULL, *to = NULL, *proto = "TCP";
	char path[1024], *ef, *et;
	long port = 0;
	json_t *j;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
		if (c == 'f')
			from = optarg;
		else if (c == 't')
			to = optarg;
		else if (c == 'p') {
			if (parse_port(optarg, &port, &proto)) {
				fprintf(stderr,
					"moatctl explain: --port %s: expected PORT[/PROTO], e.g. 80/TCP\n",
					optarg);
				return 2;
			}
		} else
			return 2;
	}
	if (!from || !to) {
		fprintf(stderr,
			"usage: moatctl explain --from NS/POD|IP --to NS/POD|IP [--port PORT/PROTO]\n");
		return 2;
	}
	ef = url_escape(from);
	et = url_escape(to);
	snprintf(path, sizeof(path), "/v1/explain?from=%s&to=%s&port=%ld&proto=%s", ef, et, port, proto);
	free(ef);
	free(et);
	if (api_get(g, path, &j, NULL))
		return 1;
	if (!strcmp(g->output, "json")) {
		print_json(j);
	} else {
		json_t *s;
		printf("%s -> %s %ld/%s: %s\n", from, to, port, jstr(j, "proto"), jstr(j, "verdict"));
		printf("  decided by: %s (%s tier, %s)\n", jstr(j, "decided_by"), jstr(j, "tier"),
		       jstr(j, "direction"));
		s = json_object_get(j, "egress");
		if (json_is_object(s))
			printf("  egress of %s: %s by %s\n", from, jstr(s, "verdict"), jstr(s, "decided_by"));
		else
			printf("  egress of %s: not judged (not a pod)\n", from);
		s = json_object_get(j, "ingress");
		if (json_is_object(s))
			printf("  ingress of %s: %s by %s\n", to, jstr(s, "verdict"), jstr(s, "decided_by"));
		else
			printf("  ingress of %s: not judged (not a pod)\n", to);
	}
	json_decref(j);
	return 0;
}

/* ---- observe: stream verdicts as they happen -------------------------------- */
struct obs_out {
	bool json;
	char *line;
	size_t n;
	unsigned long count;
};

static void obs_side(json_t *s, char *out, size_t len)
{
	const char *ns = jstr(s, "namespace"), *pod = jstr(s, "pod"), *ip = jstr(s, "ip");
	long long port = jint(s, "port");

	if (*pod)
		snprintf(out, len, "%s/%s:%lld", ns, pod, port);
	else if (*ns)
		snprintf(out, len, "%s(%s):%lld", ip, ns, port);
	else
		snprintf(out, len, "%s:%lld", ip, port);
}

static void obs_print(struct obs_out *o, const char *line, size_t len)
{
	json_t *j;
	json_error_t je;
	char s[300], d[300];
	const char *t;

	if (!len)
		return;
	o->count++;
	if (o->json) {
		fwrite(line, 1, len, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		return;
	}
	j = json_loadb(line, len, 0, &je);
	if (!j)
		return;
	obs_side(json_object_get(j, "src"), s, sizeof(s));
	obs_side(json_object_get(j, "dst"), d, sizeof(d));
	t = jstr(j, "time");
	printf("%s %-6s %-9s %s -> %s %s  %s (%s, %s)\n", strlen(t) > 11 ? t + 11 : t, jstr(j, "verdict"),
	       jstr(j, "type"), s, d, jstr(j, "proto"), jstr(j, "decided_by"), jstr(j, "tier"),
	       jstr(j, "direction"));
	fflush(stdout);
	json_decref(j);
}

/* cppcheck-suppress constParameter ; libcurl's CURLOPT_WRITEFUNCTION type */
static size_t obs_write(char *ptr, size_t sz, size_t nm, void *ud)
{
	struct obs_out *o = ud;
	size_t add = sz * nm;

	for (size_t i = 0; i < add; i++) {
		if (ptr[i] == '\n') {
			obs_print(o, o->line, o->n);
			o->n = 0;
			continue;
		}
		if (o->n < 1u << 20) {
			o->line = xrealloc(o->line, o->n + 1);
			o->line[o->n++] = ptr[i];
		}
	}
	return add;
}

static int cmd_observe(const struct gopts *g, int argc, char **argv)
{
	static const struct option o[] = {
		{ "namespace", required_argument, NULL, 'n' }, { "pod", required_argument, NULL, 'p' },
		{ "ip", required_argument, NULL, 'i' },        { "port", required_argument, NULL, 'P' },
		{ "protocol", required_argument, NULL, 'r' },  { "verdict", required_argument, NULL, 'v' },
		{ "type", required_argument, NULL, 't' },      { "policy", required_argument, NULL, 'y' },
		{ "label", required_argument, NULL, 'l' },     { "follow", no_argument, NULL, 'f' },
		{ "last", required_argument, NULL, 'L' },      { 0 }
	};
	static const char *const keys[] = {
		['n'] = "namespace", ['p'] = "pod",  ['i'] = "ip",     ['P'] = "port", ['r'] = "proto",
		['v'] = "verdict",   ['t'] = "type", ['y'] = "policy", ['l'] = "label"
	};
	char path[2048] = "/v1/observe?x=1", tmp[512];
	struct obs_out out = { .json = !strcmp(g->output, "json") };
	bool follow = false;
	CURL *c;
	CURLcode cc;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "f", o, NULL)) != -1) {
		char *e;
		size_t l = strlen(path);
		switch (opt) {
		case 'f':
			follow = true;
			break;
		case 'L':
			snprintf(path + l, sizeof(path) - l, "&last=%s", optarg);
			break;
		case 'l':
		case 'n':
		case 'p':
		case 'i':
		case 'P':
		case 'r':
		case 'v':
		case 't':
		case 'y':
			e = url_escape(optarg);
			snprintf(path + l, sizeof(path) - l, "&%s=%s", keys[opt], e);
			free(e);
			break;
		default:
			return 2;
		}
	}
	if (follow)
		strncat(path, "&follow=1", sizeof(path) - strlen(path) - 1);
	c = curl_easy_init();
	snprintf(tmp, sizeof(tmp), "http://moatd%s", path);
	{
		char sp[512];
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock_path(g, sp, sizeof(sp)));
		curl_easy_setopt(c, CURLOPT_URL, tmp);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, obs_write);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
		curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
		struct curl_slist *hdrs = auth_header();
		if (hdrs)
			curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		cc = curl_easy_perform(c);
		curl_slist_free_all(hdrs);
		if (cc != CURLE_OK) {
			fprintf(stderr, "moatctl observe: %s (is moatd running at %s?)\n",
				curl_easy_strerror(cc), sp);
			curl_easy_cleanup(c);
			free(out.line);
			return 1;
		}
	}
	if (out.n)
		obs_print(&out, out.line, out.n);
	curl_easy_cleanup(c);
	free(out.line);
	return 0;
}

static int cmd_flows(const struct gopts *g, int argc, char **argv)
{
	json_t *j, *v;
	size_t i;
	char path[1024] = "/v1/flows?x=1";

	for (int k = 1; k + 1 < argc; k += 2) {
		const char *key = argv[k][0] == '-' && argv[k][1] == '-' ? argv[k] + 2 : NULL;
		char *e;
		if (!key) {
			fprintf(stderr,
				"usage: moatctl flows [--namespace NS] [--pod POD] [--verdict V] ...\n");
			return 2;
		}
		e = url_escape(argv[k + 1]);
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "&%s=%s",
			 !strcmp(key, "protocol") ? "proto" : key, e);
		free(e);
	}
	if (api_get(g, path, &j, NULL))
		return 1;
	if (!strcmp(g->output, "json")) {
		print_json(j);
	} else {
		printf("%-42s %-42s %-5s %-6s %8s %10s  %s\n", "SOURCE", "DESTINATION", "PROTO", "VERDICT",
		       "PACKETS", "BYTES", "DECIDED BY");
		json_array_foreach(j, i, v)
		{
			char s[300], d[300];
			obs_side(json_object_get(v, "src"), s, sizeof(s));
			obs_side(json_object_get(v, "dst"), d, sizeof(d));
			printf("%-42s %-42s %-5s %-6s %8lld %10lld  %s\n", s, d, jstr(v, "proto"),
			       jstr(v, "verdict"), jint(v, "packets"), jint(v, "bytes"),
			       jstr(v, "decided_by"));
		}
	}
	json_decref(j);
	return 0;
}

static int cmd_metrics(const struct gopts *g)
{
	char *raw = NULL;
	int rc = api_get(g, "/metrics", NULL, &raw);

	if (raw)
		fputs(raw, stdout);
	free(raw);
	return rc ? 1 : 0;
}

/* ---- offline: policy check ------------------------------------------------ */
struct check_ctx {
	int errors;
	json_t *list;
};

static void check_err(void *arg, const char *msg)
{
	struct check_ctx *cc = arg;
	cc->errors++;
	if (cc->list)
		json_array_append_new(cc->list, json_string(msg));
	else
		fprintf(stderr, "error: %s\n", msg);
}

static int cmd_policy_check(const struct gopts *g, int argc, char **argv)
{
	struct moat_compiler_opts co = { 0 };
	struct moat_compiler *c;
	struct moat_dp_opts dpo = { .no_pin = true };
	struct moat_flush_stats st = { 0 };
	struct check_ctx cc = { 0 };
	struct moat_tx *tx = NULL;
	struct moat_dp *dp = NULL;
	char err[512];
	bool json = !strcmp(g->output, "json");
	__u32 caps[MOAT_T_MAX] = { 0 };
	int rc;

	if (argc < 1) {
		fprintf(stderr, "usage: moatctl policy check DIR [--node NAME]\n");
		return 2;
	}
	/* capacities as a default datapath would have them */
	caps[MOAT_T_EP] = MOAT_MAX_ENDPOINTS;
	caps[MOAT_T_IP4] = caps[MOAT_T_IP6] = MOAT_MAX_IPS;
	caps[MOAT_T_NET4] = caps[MOAT_T_NET6] = MOAT_MAX_NETS;
	caps[MOAT_T_SUBJ] = MOAT_MAX_IDENTITIES;
	caps[MOAT_T_PORTS] = MOAT_MAX_PORTRANGES;
	caps[MOAT_T_POL] = MOAT_MAX_POLICY;
	memcpy(co.cap, caps, sizeof(caps));
	co.node = g->node;
	(void)dpo;
	(void)dp;
	if (json)
		cc.list = json_array();
	moat_compiler_new(&co, &c);
	rc = moat_srcdir_load_once(argv[0], c, check_err, &cc);
	if (rc < 0) {
		fprintf(stderr, "moatctl policy check: %s: %s\n", argv[0], strerror(-rc));
		moat_compiler_free(c);
		return 2;
	}
	rc = moat_tx_begin(NULL, true, &tx);
	if (!rc)
		rc = moat_compiler_flush(c, tx, &st, err, sizeof(err));
	if (tx)
		moat_tx_abort(tx);
	if (rc == -ENOSPC)
		check_err(&cc, err);
	if (json) {
		json_t *t = json_object();
		for (int i = 0; i < MOAT_T_MAX; i++)
			json_object_set_new(t, moat_tbl_name(i),
					    json_pack("{s:i,s:i}", "entries", (json_int_t)st.entries[i],
						      "capacity", (json_int_t)caps[i]));
		print_json(json_pack("{s:b,s:o,s:o,s:i,s:i}", "ok", cc.errors == 0, "errors", cc.list,
				     "tables", t, "identities", st.identities, "rules", st.rules));
	} else {
		printf("%s: %d error(s); %u identities, %u rules\n", argv[0], cc.errors, st.identities,
		       st.rules);
		printf("%-12s %10s %10s %6s\n", "TABLE", "ENTRIES", "CAPACITY", "USED");
		for (int i = 0; i < MOAT_T_MAX; i++)
			printf("%-12s %10u %10u %5.1f%%\n", moat_tbl_name(i), st.entries[i], caps[i],
			       caps[i] ? 100.0 * st.entries[i] / caps[i] : 0.0);
	}
	moat_compiler_free(c);
	return cc.errors ? 1 : 0;
}

/* ---- blueprints ------------------------------------------------------------------ */
static char **json_lines(json_t *j, size_t *n)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL, *p, *save = NULL;
	char **v = NULL;

	*n = 0;
	if (!s)
		return NULL;
	for (p = strtok_r(s, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
		v = xrealloc(v, (*n + 1) * sizeof(*v));
		v[(*n)++] = xstrdup(p);
	}
	free(s);
	return v;
}

/* A line diff (longest common subsequence) of two JSON values. */
static void print_line_diff(json_t *before, json_t *after)
{
	size_t na, nb;
	char **a = json_lines(before, &na), **b = json_lines(after, &nb);

	if (na > 3000 || nb > 3000) {
		printf("      (too large to show line by line)\n");
	} else {
		unsigned short *t = xcalloc((na + 1) * (nb + 1), sizeof(*t));
#define T(i, j) t[(i) * (nb + 1) + (j)]
		for (size_t i = na; i-- > 0;)
			for (size_t j = nb; j-- > 0;)
				T(i, j) = !strcmp(a[i], b[j])       ? T(i + 1, j + 1) + 1 :
					  T(i + 1, j) > T(i, j + 1) ? T(i + 1, j) :
								      T(i, j + 1);
		/* the edit script, then printed with three lines of context */
		size_t i = 0, j = 0, nops = 0, *ln = xcalloc(na + nb + 1, sizeof(*ln));
		char *op = xcalloc(na + nb + 1, 1);
		while (i < na || j < nb) {
			if (i < na && j < nb && !strcmp(a[i], b[j])) {
				op[nops] = ' ';
				ln[nops++] = i;
				i++, j++;
			} else if (j < nb && (i == na || T(i, j + 1) >= T(i + 1, j))) {
				op[nops] = '+';
				ln[nops++] = j++;
			} else {
				op[nops] = '-';
				ln[nops++] = i++;
			}
		}
		bool gap = false;
		for (size_t k = 0; k < nops; k++) {
			bool near = false;
			for (size_t q = k >= 3 ? k - 3 : 0; q < nops && q <= k + 3; q++)
				near |= op[q] != ' ';
			if (!near) {
				if (!gap)
					printf("      ...\n");
				gap = true;
				continue;
			}
			gap = false;
			printf("    %c %s\n", op[k], op[k] == '+' ? b[ln[k]] : a[ln[k]]);
		}
		free(ln);
		free(op);
#undef T
		free(t);
	}
	for (size_t i = 0; i < na; i++)
		free(a[i]);
	for (size_t i = 0; i < nb; i++)
		free(b[i]);
	free(a);
	free(b);
}

static void print_ns_list(json_t *a)
{
	size_t i;
	json_t *v;

	json_array_foreach(a, i, v)
	{
		if (i == 8 && json_array_size(a) > 9) {
			printf(" and %zu more", json_array_size(a) - 8);
			break;
		}
		printf("%s%s", i ? ", " : "", json_string_value(v));
	}
}

/* Prints one diff; returns whether it changes anything. */
static bool print_bp_diff(json_t *d)
{
	json_t *nss = json_object_get(d, "namespaces"), *ch = json_object_get(d, "changes"), *x;
	size_t i;

	printf("Blueprint %s: spec.version %s -> %s\n", jstr(d, "blueprint"),
	       json_is_string(json_object_get(d, "from")) ? jstr(d, "from") : "(new)", jstr(d, "to"));
	json_array_foreach(nss, i, x)
		printf("  namespace %s: %s -> %s%s\n", jstr(x, "namespace"),
		       json_is_string(json_object_get(x, "from")) ? jstr(x, "from") : "none",
		       json_is_string(json_object_get(x, "to")) ? jstr(x, "to") : "none",
		       json_is_true(json_object_get(x, "pinned")) ? " (pinned)" : "");
	json_array_foreach(ch, i, x)
	{
		const char *c = jstr(x, "change");
		printf("%c %s in ",
		       !strcmp(c, "added")   ? '+' :
		       !strcmp(c, "removed") ? '-' :
					       '~',
		       jstr(x, "policy"));
		print_ns_list(json_object_get(x, "namespaces"));
		printf(" (%s)\n", c);
		print_line_diff(json_object_get(x, "before"), json_object_get(x, "after"));
	}
	json_array_foreach(json_object_get(d, "errors"), i, x)
		printf("! %s%s%s\n",
		       json_is_string(json_object_get(x, "namespace")) ? jstr(x, "namespace") : "",
		       json_is_string(json_object_get(x, "namespace")) ? ": " : "", jstr(x, "message"));
	if (!json_array_size(nss) && !json_array_size(ch))
		printf("  no change\n");
	return json_array_size(nss) || json_array_size(ch);
}

static char *read_input(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	char *buf;

	if (!f)
		return NULL;
	buf = xcalloc(1, (1u << 20) + 1);
	*len = fread(buf, 1, 1u << 20, f);
	if (f != stdin)
		fclose(f);
	return buf;
}

static void local_err(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "warning: %s\n", msg);
}

/* Diffs computed here, against a manifest directory instead of a daemon. */
static int bp_diff_local(const char *dir, const char *body, size_t blen, json_t **out)
{
	struct moat_compiler_opts co = { 0 };
	struct moat_compiler *c;
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	char err[1024];
	int rc = 0;

	moat_compiler_new(&co, &c);
	if (moat_srcdir_load_once(dir, c, local_err, NULL) < 0) {
		fprintf(stderr, "moatctl: cannot read %s\n", dir);
		moat_compiler_free(c);
		return -ENOENT;
	}
	*out = json_array();
	if (moat_manifest_parse(body, blen, "input", &docs, &errs)) {
		fprintf(stderr, "moatctl: %s\n", errs.n ? errs.v[0] : "unparsable input");
		rc = -EINVAL;
	}
	for (size_t i = 0; !rc && i < docs.n; i++) {
		struct moat_object *o = NULL;
		rc = moat_decode(docs.v[i].json, "input", &o, err, sizeof(err));
		if (!rc && (!o || o->kind != MOAT_O_BLUEPRINT)) {
			snprintf(err, sizeof(err), "input: document %zu is not a Blueprint", i + 1);
			rc = -EINVAL;
		}
		if (rc)
			fprintf(stderr, "moatctl: %s\n", err);
		else
			json_array_append_new(*out, moat_compiler_blueprint_diff(c, o->u.blueprint));
		moat_object_free(o);
	}
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	moat_compiler_free(c);
	return rc;
}

static int cmd_blueprint(const struct gopts *g, int argc, char **argv)
{
	static const struct option o[] = { { "to", required_argument, NULL, 't' },
					   { "dry-run", no_argument, NULL, 'd' },
					   { "manifests", required_argument, NULL, 'm' },
					   { 0 } };
	const char *to = NULL, *dir = NULL, *sub = argc > 1 ? argv[1] : "";
	bool dry = false, json = !strcmp(g->output, "json");
	json_t *j = NULL, *x;
	char path[512];
	int opt, rc;
	size_t i;

	/* options anywhere after the subcommand: a fresh scan (optind 0) of
	 * the arguments after "blueprint" */
	argc--;
	argv++;
	optind = 0;
	while ((opt = getopt_long(argc, argv, "", o, NULL)) != -1) {
		switch (opt) {
		case 't':
			to = optarg;
			break;
		case 'd':
			dry = true;
			break;
		case 'm':
			dir = optarg;
			break;
		default:
			return 2;
		}
	}
	if (!strcmp(sub, "status")) {
		if (api_get(g, "/v1/blueprints", &j, NULL))
			return 1;
		if (json) {
			print_json(j);
		} else {
			printf("%-22s %-10s %-24s %-10s %s\n", "BLUEPRINT", "CURRENT", "NAMESPACE", "RUNNING",
			       "PINNED");
			json_array_foreach(j, i, x)
			{
				size_t k;
				json_t *n;
				if (optind < argc && strcmp(jstr(x, "name"), argv[optind]))
					continue;
				if (!json_array_size(json_object_get(x, "namespaces")))
					printf("%-22s %-10s %-24s %-10s %s\n", jstr(x, "name"),
					       jstr(x, "version"), "(none)", "", "");
				json_array_foreach(json_object_get(x, "namespaces"), k, n)
					printf("%-22s %-10s %-24s %-10s %s\n", jstr(x, "name"),
					       jstr(x, "version"), jstr(n, "namespace"), jstr(n, "version"),
					       json_is_true(json_object_get(n, "pinned")) ? "yes" : "no");
				json_array_foreach(json_object_get(x, "errors"), k, n)
					printf("! %s: %s\n", jstr(x, "name"), jstr(n, "message"));
			}
		}
		json_decref(j);
		return 0;
	}
	if (!strcmp(sub, "diff") && optind < argc) {
		const char *what = argv[optind];
		bool any = false;
		if (to) {
			snprintf(path, sizeof(path), "/v1/blueprints/%s/diff?to=%s", what, to);
			rc = api_call(g, "POST", path, NULL, 0, &j, NULL, NULL);
			if (!rc)
				j = json_pack("[o]", j);
		} else {
			size_t len = 0;
			char *body = read_input(what, &len);
			if (!body) {
				fprintf(stderr,
					"moatctl: %s: %s (give a file of Blueprints, or NAME --to VERSION)\n",
					what, strerror(errno));
				return 2;
			}
			rc = dir ? bp_diff_local(dir, body, len, &j) :
				   api_call(g, "POST", "/v1/blueprints/diff", body, len, &j, NULL, NULL);
			free(body);
		}
		if (rc) {
			json_decref(j);
			return 2;
		}
		if (json)
			print_json(j);
		json_array_foreach(j, i, x)
		{
			if (json)
				any |= json_array_size(json_object_get(x, "namespaces")) ||
				       json_array_size(json_object_get(x, "changes"));
			else
				any |= print_bp_diff(x);
		}
		json_decref(j);
		return any ? 1 : 0; /* like diff(1) */
	}
	if (!strcmp(sub, "rollback") && optind < argc) {
		int n = snprintf(path, sizeof(path), "/v1/blueprints/%s/rollback?dryRun=%s", argv[optind],
				 dry ? "true" : "false");
		if (to)
			snprintf(path + n, sizeof(path) - (size_t)n, "&to=%s", to);
		if (api_call(g, "POST", path, NULL, 0, &j, NULL, NULL))
			return 1;
		if (json) {
			print_json(j);
		} else if (dry) {
			printf("dry run: nothing written\n");
			print_bp_diff(j);
		} else {
			printf("Blueprint %s: spec.version %s -> %s written to %s\n", argv[optind],
			       jstr(j, "from"), jstr(j, "to"), jstr(j, "written"));
			print_bp_diff(json_object_get(j, "diff"));
		}
		json_decref(j);
		return 0;
	}
	fprintf(stderr, "usage: moatctl blueprint status [NAME]\n"
			"       moatctl blueprint diff FILE [--manifests DIR] | diff NAME --to VERSION\n"
			"       moatctl blueprint rollback NAME [--to VERSION] [--dry-run]\n");
	return 2;
}

static int cmd_uninstall(const struct gopts *g, int argc, char **argv)
{
	char tmp[512];
	const char *dir = argc > 0 ? argv[0] : NULL;
	int rc;

	if (!dir) {
		if (!g->node) {
			fprintf(stderr, "usage: moatctl uninstall PIN_DIR | moatctl --node NAME uninstall\n");
			return 2;
		}
		snprintf(tmp, sizeof(tmp), "%s/%s", MOAT_PIN_ROOT, g->node);
		dir = tmp;
	}
	rc = moat_dp_uninstall(dir);
	if (rc) {
		fprintf(stderr, "moatctl uninstall: %s: %s\n", dir, strerror(-rc));
		return 1;
	}
	printf("removed %s: programs detached, maps released\n", dir);
	return 0;
}

/* hostd/moatctl_report.c */
int moatctl_report_main(const char *socket_path, const char *output, int argc, char **argv);

static void usage(FILE *f)
{
	fprintf(f,
		"usage: moatctl [--socket PATH | --node NAME] [-o json|wide] COMMAND\n"
		"  status                         attach modes, generation, table fill, errors\n"
		"  get endpoints|identities|policies|sources\n"
		"  explain --from NS/POD|IP --to NS/POD|IP --port PORT/PROTO\n"
		"  metrics                        Prometheus text\n"
		"  observe [--follow] [--last N] [--namespace NS] [--pod [NS/]POD] [--ip IP]\n"
		"          [--port N] [--protocol P] [--verdict allow|deny|audit] [--type T] [--policy TEXT]\n"
		"          [--label SELECTOR]     e.g. --label 'app=web,tier!=db' (either side's pod)\n"
		"                                 live verdicts (-o json: one object per line)\n"
		"  flows [--namespace NS] [--pod POD] [--verdict V] ...   flow records\n"
		"  policy check DIR               validate manifests and report capacity (no daemon)\n"
		"  policy replay --archive SPEC --policies DIR [--node N]   archived flows through a\n"
		"                                 candidate policy set: what changes (exit 1: newly denied)\n"
		"  archive list                   flight recorder segments (by namespace)\n"
		"  archive query -w FILE [--since T] [--until T] [--namespace NS] [--pod P] [--verdict V]\n"
		"          [--policy TEXT] [--filter EXPR] [--format pcapng|pcap]   packets and flows\n"
		"  report [--namespace NS] [-o text|json|html] [--out FILE]\n"
		"                                 segmentation: allowed vs observed, namespace by namespace\n"
		"  blueprint status [NAME]        which namespaces run which version\n"
		"  blueprint diff FILE [--manifests DIR] | diff NAME --to VERSION\n"
		"                                 what a blueprint change would change (exit 1: something)\n"
		"  blueprint rollback NAME [--to VERSION] [--dry-run]\n"
		"  offload check --profile hw/nfp.json OBJECT | probe IFNAME | profiles [DIR]\n"
		"                                 NIC offload: fit check, probe and plan (no daemon)\n"
		"  uninstall [PIN_DIR]            detach and remove everything pinned\n");
}

int main(int argc, char **argv)
{
	static const struct option o[] = { { "socket", required_argument, NULL, 's' },
					   { "node", required_argument, NULL, 'n' },
					   { "output", required_argument, NULL, 'o' },
					   { "help", no_argument, NULL, 'h' },
					   { 0 } };
	struct gopts g = { .output = "" };
	int c, rc;

	/* options up to the command; the command parses its own */
	while ((c = getopt_long(argc, argv, "+o:h", o, NULL)) != -1) {
		switch (c) {
		case 's':
			g.socket = optarg;
			break;
		case 'n':
			g.node = optarg;
			break;
		case 'o':
			g.output = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(g.output, "") && strcmp(g.output, "json") && strcmp(g.output, "wide") &&
	    strcmp(g.output, "text") && strcmp(g.output, "html")) {
		fprintf(stderr, "moatctl: -o must be json, wide, text or html\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	argc -= optind;
	argv += optind;
	/* allow -o after the command too (kubectl habit) */
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "-o")) {
			g.output = argv[i + 1];
			memmove(&argv[i], &argv[i + 2], (size_t)(argc - i - 2) * sizeof(char *));
			argc -= 2;
			break;
		}
	if (!strcmp(argv[0], "status"))
		rc = cmd_status(&g);
	else if (!strcmp(argv[0], "get") && argc > 1)
		rc = cmd_get(&g, argv[1]);
	else if (!strcmp(argv[0], "explain"))
		rc = cmd_explain(&g, argc, argv);
	else if (!strcmp(argv[0], "metrics"))
		rc = cmd_metrics(&g);
	else if (!strcmp(argv[0], "observe"))
		rc = cmd_observe(&g, argc, argv);
	else if (!strcmp(argv[0], "flows"))
		rc = cmd_flows(&g, argc, argv);
	else if (!strcmp(argv[0], "policy") && argc > 1 && !strcmp(argv[1], "replay")) /* moatctl_archive.c */
		rc = moatctl_policy_replay(&g, argc - 1, argv + 1);
	else if (!strcmp(argv[0], "archive")) /* moatctl_archive.c */
		rc = moatctl_archive(&g, argc, argv);
	else if (!strcmp(argv[0], "policy") && argc > 1 && !strcmp(argv[1], "check"))
		rc = cmd_policy_check(&g, argc - 2, argv + 2);
	else if (!strcmp(argv[0], "report")) {
		char sp[512];
		rc = moatctl_report_main(sock_path(&g, sp, sizeof(sp)), g.output, argc, argv);
	} else if (!strcmp(argv[0], "blueprint"))
		rc = cmd_blueprint(&g, argc, argv);
	else if (!strcmp(argv[0], "offload")) /* issue 6: hostd/moatctl_offload.c */
		rc = moatctl_offload_main(argc, argv);
	else if (!strcmp(argv[0], "uninstall"))
		rc = cmd_uninstall(&g, argc - 1, argv + 1);
	else {
		usage(stderr);
		rc = 2;
	}
	curl_global_cleanup();
	return rc;
}
