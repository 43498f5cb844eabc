// SPDX-License-Identifier: Apache-2.0
/* moatctl report: the segmentation report (GET /v1/report) for people.
 *   -o text   the namespace matrix, the pairs with traffic or policy, and two
 *             lists for least privilege: allowed but never used (with the
 *             rules that allow it, asked of /v1/explain) and denied but
 *             attempted (with the rules that denied it, from the flows)
 *   -o json   the daemon's answer as it is
 *   -o html   one self-contained page: inline CSS, the matrix as inline SVG,
 *             inline JS showing the flows of a clicked cell; every cell also
 *             has a <details> list, so the page works without JS
 * Everything that comes from the cluster is HTML-escaped (or, in text,
 * stripped of control characters). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>

#include "util.h"

int moatctl_report_main(const char *socket_path, const char *output, int argc, char **argv);

#define RPT_MAX_BODY        (64u << 20) /* refuse absurd answers */
#define RPT_MAX_EXPLAIN     256         /* /v1/explain calls for "allowed by" */
#define RPT_PODS_TRIED      4           /* pods per side tried for one cell */
#define RPT_MAX_REASONS     8           /* distinct deny rules listed per cell */
#define RPT_UNDECLARED_PORT 65000       /* report.c's probe for "any port" */

/* ---- talking to moatd ----------------------------------------------------- */
struct rbuf {
	char *p;
	size_t n;
};

static size_t rpt_write(char *ptr, size_t sz, size_t nm, void *ud)
{
	struct rbuf *b = ud;
	size_t add = sz * nm;

	if (b->n + add > RPT_MAX_BODY)
		return 0;
	b->p = xrealloc(b->p, b->n + add + 1);
	memcpy(b->p + b->n, ptr, add);
	b->n += add;
	b->p[b->n] = 0;
	return add;
}

/* As moatctl does it: $MOAT_TOKEN, or the first line of $MOAT_TOKEN_FILE. */
static struct curl_slist *rpt_auth(void)
{
	const char *t = getenv("MOAT_TOKEN"), *tf = getenv("MOAT_TOKEN_FILE");
	char line[512], hdr[600];

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
	return curl_slist_append(NULL, hdr);
}

/* GET path; the parsed JSON in *ret.  quiet: no message on failure (the
 * explain look-ups are optional). */
static int rpt_get(const char *sock, const char *path, json_t **ret, bool quiet)
{
	struct curl_slist *hdrs = rpt_auth();
	struct rbuf b = { 0 };
	char url[4096];
	CURL *c = curl_easy_init();
	CURLcode cc;
	long code = 0;
	json_error_t je;

	*ret = NULL;
	if (!c) {
		curl_slist_free_all(hdrs);
		return -ENOMEM;
	}
	snprintf(url, sizeof(url), "http://moatd%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, rpt_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	if (hdrs)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	if (cc != CURLE_OK) {
		if (!quiet && (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST))
			fprintf(stderr,
				"moatctl: cannot reach moatd at %s: is the daemon running? "
				"(start it, or point --socket/--node at it)\n",
				sock);
		else if (!quiet)
			fprintf(stderr, "moatctl: talking to moatd at %s: %s\n", sock,
				curl_easy_strerror(cc));
		free(b.p);
		return -EIO;
	}
	*ret = json_loadb(b.p ? b.p : "", b.n, 0, &je);
	if (!*ret) {
		if (!quiet)
			fprintf(stderr, "moatctl: moatd sent something that is not JSON (line %d: %s)\n",
				je.line, je.text);
		free(b.p);
		return -EPROTO;
	}
	if (code != 200) {
		json_t *e = json_object_get(*ret, "error");
		if (!quiet)
			fprintf(stderr, "moatctl: %s\n",
				json_is_string(e) ? json_string_value(e) : "request failed");
		json_decref(*ret);
		*ret = NULL;
		free(b.p);
		return -EINVAL;
	}
	free(b.p);
	return 0;
}

/* ---- the report as read ------------------------------------------------------ */
enum {
	CAT_USED,
	CAT_UNUSED,
	CAT_DENIED_TRIED,
	CAT_DENIED,
	CAT_OTHER,
	CAT_N
};

static const struct {
	const char *name, *label, *color, *key;
} cats[CAT_N] = {
	[CAT_USED] = { "allowed-used", "allowed, used", "#2e9d4f", "U" },
	[CAT_UNUSED] = { "allowed-unused", "allowed, never used", "#f2b632", "a" },
	[CAT_DENIED_TRIED] = { "denied-attempted", "denied, attempted", "#d9412b", "X" },
	[CAT_DENIED] = { "denied", "denied, not attempted", "#c9ced6", "." },
	[CAT_OTHER] = { "other", "unknown category", "#7a7f87", "?" },
};

struct rcell {
	json_t *j; /* the API's cell (borrowed from the root) */
	size_t from, to;
	int cat;
	char *allowed_by; /* allowed-unused: what /v1/explain names */
};

struct report {
	json_t *root;
	json_t *eps; /* /v1/endpoints, for explain look-ups */
	const char **ns;
	size_t nns;
	struct rcell *cells;
	size_t ncells;
	struct rcell **grid; /* nns x nns; NULL: left out by the API */
	int count[CAT_N];
	const char *filter_ns;
	char generated[32];
};

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

static int cat_of(const char *s)
{
	for (int i = 0; i < CAT_OTHER; i++)
		if (!strcmp(s, cats[i].name))
			return i;
	return CAT_OTHER;
}

static long ns_index(const struct report *r, const char *name)
{
	for (size_t i = 0; i < r->nns; i++)
		if (!strcmp(r->ns[i], name))
			return (long)i;
	return -1;
}

static int report_load(struct report *r, json_t *root)
{
	json_t *names = json_object_get(root, "namespaces"), *cells = json_object_get(root, "cells"), *v;
	size_t i;

	if (!json_is_array(names) || !json_is_array(cells)) {
		fprintf(stderr, "moatctl: the report has no namespaces or cells (is moatd too old?)\n");
		return -EPROTO;
	}
	r->root = root;
	r->ns = xcalloc(json_array_size(names) + 1, sizeof(*r->ns));
	json_array_foreach(names, i, v) if (json_is_string(v)) r->ns[r->nns++] = json_string_value(v);
	r->grid = xcalloc(r->nns * r->nns + 1, sizeof(*r->grid));
	r->cells = xcalloc(json_array_size(cells) + 1, sizeof(*r->cells));
	json_array_foreach(cells, i, v)
	{
		long a = ns_index(r, jstr(v, "from")), b = ns_index(r, jstr(v, "to"));
		struct rcell *c;
		if (a < 0 || b < 0 || r->grid[(size_t)a * r->nns + (size_t)b])
			continue;
		c = &r->cells[r->ncells++];
		c->j = v;
		c->from = (size_t)a;
		c->to = (size_t)b;
		c->cat = cat_of(jstr(v, "category"));
		r->grid[c->from * r->nns + c->to] = c;
		r->count[c->cat]++;
	}
	return 0;
}

static void report_free(struct report *r)
{
	for (size_t i = 0; i < r->ncells; i++)
		free(r->cells[i].allowed_by);
	free(r->cells);
	free(r->grid);
	free(r->ns);
	json_decref(r->eps);
	json_decref(r->root);
}

/* ---- "allowed by": ask /v1/explain about one pod pair of the cell --------- */
static bool pod_usable(json_t *ep, const char *ns)
{
	return !strcmp(jstr(ep, "namespace"), ns) && !json_is_true(json_object_get(ep, "hostNetwork")) &&
	       json_array_size(json_object_get(ep, "ips")) > 0;
}

/* The first allowed port of the cell ("80/TCP"), else the undeclared one. */
static void cell_port(struct rcell *c, char *port, size_t plen, char *proto, size_t prlen)
{
	json_t *ports = json_object_get(c->j, "allowed_ports");
	const char *p = json_string_value(json_array_get(ports, 0)), *slash;

	if (p && (slash = strchr(p, '/')) && slash > p) {
		snprintf(port, plen, "%.*s", (int)(slash - p), p);
		snprintf(proto, prlen, "%s", slash + 1);
		return;
	}
	snprintf(port, plen, "%d", RPT_UNDECLARED_PORT);
	snprintf(proto, prlen, "TCP");
}

static char *explain_one(const char *sock, const char *sns, const char *spod, const char *dns,
			 const char *dpod, const char *port, const char *proto)
{
	char *from = xasprintf("%s/%s", sns, spod), *to = xasprintf("%s/%s", dns, dpod);
	char *ef = curl_easy_escape(NULL, from, 0), *et = curl_easy_escape(NULL, to, 0);
	char *ep = curl_easy_escape(NULL, proto, 0), *path, *out = NULL;
	json_t *x = NULL;
	const char *v;

	path = xasprintf("/v1/explain?from=%s&to=%s&port=%s&proto=%s", ef ? ef : "", et ? et : "", port,
			 ep ? ep : "TCP");
	if (ef && et && ep && !rpt_get(sock, path, &x, true)) {
		v = jstr(x, "verdict");
		if (!strcmp(v, "allow") || !strcmp(v, "audit"))
			out = xasprintf("ingress: %s; egress: %s",
					jstr(json_object_get(x, "ingress"), "decided_by"),
					jstr(json_object_get(x, "egress"), "decided_by"));
	}
	json_decref(x);
	free(path);
	curl_free(ef);
	curl_free(et);
	curl_free(ep);
	free(from);
	free(to);
	return out;
}

static void find_allowed_by(struct report *r, const char *sock)
{
	unsigned calls = 0;

	for (size_t i = 0; i < r->ncells; i++) {
		struct rcell *c = &r->cells[i];
		char port[16], proto[16];
		size_t si, di, ns = 0;
		json_t *s, *d;

		if (c->cat != CAT_UNUSED)
			continue;
		if (!r->eps && rpt_get(sock, "/v1/endpoints", &r->eps, true))
			return;
		cell_port(c, port, sizeof(port), proto, sizeof(proto));
		json_array_foreach(r->eps, si, s)
		{
			size_t nd = 0;
			if (c->allowed_by || ns >= RPT_PODS_TRIED || !pod_usable(s, r->ns[c->from]))
				continue;
			ns++;
			json_array_foreach(r->eps, di, d)
			{
				if (c->allowed_by || nd >= RPT_PODS_TRIED || calls >= RPT_MAX_EXPLAIN ||
				    !pod_usable(d, r->ns[c->to]))
					continue;
				nd++;
				calls++;
				c->allowed_by = explain_one(sock, r->ns[c->from], jstr(s, "name"),
							    r->ns[c->to], jstr(d, "name"), port, proto);
			}
		}
	}
}

/* ---- shared wording ---------------------------------------------------------- */
/* "80/TCP, 443/TCP", "any port" or "none"; into buf. */
static const char *ports_str(json_t *cell, char *buf, size_t len)
{
	json_t *ports = json_object_get(cell, "allowed_ports"), *v;
	size_t i, o = 0;

	buf[0] = 0;
	if (json_is_true(json_object_get(cell, "all_ports"))) {
		snprintf(buf, len, "any port");
		return buf;
	}
	json_array_foreach(ports, i, v)
	{
		int k = snprintf(buf + o, len - o, "%s%s", o ? ", " : "",
				 json_string_value(v) ? json_string_value(v) : "?");
		if (k < 0 || (size_t)k >= len - o) {
			buf[o] = 0; /* whole entries only */
			break;
		}
		o += (size_t)k;
	}
	if (!buf[0])
		snprintf(buf, len, "none");
	return buf;
}

/* "web/frontend:40154" or "10.1.2.3:80". */
static const char *side_str(json_t *s, char *buf, size_t len)
{
	const char *ns = jstr(s, "namespace"), *pod = jstr(s, "pod"), *ip = jstr(s, "ip");

	if (*ns && *pod)
		snprintf(buf, len, "%s/%s:%lld", ns, pod, jint(s, "port"));
	else if (*ns)
		snprintf(buf, len, "%s(%s):%lld", ip, ns, jint(s, "port"));
	else
		snprintf(buf, len, "%s:%lld", *ip ? ip : "?", jint(s, "port"));
	return buf;
}

struct reason {
	const char *rule;
	long long attempts;
};

/* The rules behind the denied flows of a cell, most attempts first. */
static size_t deny_reasons(json_t *cell, struct reason *out, size_t max)
{
	json_t *fl = json_object_get(cell, "flows"), *f;
	size_t i, n = 0;

	json_array_foreach(fl, i, f)
	{
		const char *rule = jstr(f, "decided_by");
		long long a = jint(f, "denied_attempts");
		size_t k;
		if (strcmp(jstr(f, "verdict"), "deny"))
			continue;
		for (k = 0; k < n && strcmp(out[k].rule, rule); k++)
			;
		if (k == n) {
			if (n == max)
				continue;
			out[n].rule = rule;
			out[n++].attempts = 0;
		}
		out[k].attempts += a ? a : 1;
	}
	for (size_t a = 1; a < n; a++)
		for (size_t b = a; b > 0 && out[b].attempts > out[b - 1].attempts; b--) {
			struct reason t = out[b];
			out[b] = out[b - 1];
			out[b - 1] = t;
		}
	return n;
}

/* ---- text -------------------------------------------------------------------- */
/* Cluster strings on a terminal: no control characters. */
static const char *tclean(const char *s, char *buf, size_t len)
{
	size_t o = 0;

	for (; *s && o + 1 < len; s++)
		buf[o++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
	buf[o] = 0;
	return buf;
}

static void text_matrix(FILE *o, const struct report *r)
{
	char b[128];

	fprintf(o,
		"Matrix (rows: from; columns: to, numbered like the rows):\n  U allowed-used  a allowed-unused  "
		"X denied-attempted  . denied  (blank: not shown: filtered out, or not your namespaces)\n");
	fprintf(o, "%*s", 30, "");
	for (size_t t = 0; t < r->nns; t++)
		fprintf(o, "%3zu", t + 1);
	fputc('\n', o);
	for (size_t f = 0; f < r->nns; f++) {
		fprintf(o, "  %3zu %-24.24s", f + 1, tclean(r->ns[f], b, sizeof(b)));
		for (size_t t = 0; t < r->nns; t++) {
			const struct rcell *c = r->grid[f * r->nns + t];
			fprintf(o, "%3s", c ? cats[c->cat].key : "");
		}
		fputc('\n', o);
	}
	fputc('\n', o);
}

static void text_flow(FILE *o, json_t *f)
{
	char s[300], d[300], a[400], b[400], rule[600];

	side_str(json_object_get(f, "src"), s, sizeof(s));
	side_str(json_object_get(f, "dst"), d, sizeof(d));
	fprintf(o, "        %s -> %s %s %s", tclean(s, a, sizeof(a)), tclean(d, b, sizeof(b)),
		jstr(f, "proto"), jstr(f, "verdict"));
	if (!strcmp(jstr(f, "verdict"), "deny"))
		fprintf(o, ", %lld attempt(s)", jint(f, "denied_attempts") ? jint(f, "denied_attempts") : 1);
	fprintf(o, ", last %s: %s\n", jstr(f, "last"), tclean(jstr(f, "decided_by"), rule, sizeof(rule)));
}

static void write_text(FILE *o, const struct report *r)
{
	char a[128], b[128], p[512], rule[600];
	size_t shown = 0, quiet = 0, nunused = 0, ntried = 0;

	fprintf(o, "Segmentation report for node %s\n", tclean(jstr(r->root, "node"), a, sizeof(a)));
	fprintf(o, "Scope: %s\n", tclean(jstr(r->root, "scope"), p, sizeof(p)));
	fprintf(o, "Namespaces: %zu%s%s%s\n", r->nns, r->filter_ns ? " (filter: namespace " : "",
		r->filter_ns ? tclean(r->filter_ns, a, sizeof(a)) : "", r->filter_ns ? ")" : "");
	if (json_is_true(json_object_get(r->root, "truncated")))
		fprintf(o, "Note: the daemon truncated the report (too many namespaces or identities)\n");
	fprintf(o, "Cells: %d allowed-used, %d allowed-unused, %d denied-attempted, %d denied\n\n",
		r->count[CAT_USED], r->count[CAT_UNUSED], r->count[CAT_DENIED_TRIED], r->count[CAT_DENIED]);
	if (r->nns)
		text_matrix(o, r);

	/* pairs with traffic or something allowed */
	for (size_t i = 0; i < r->ncells; i++) {
		const struct rcell *c = &r->cells[i];
		if (!json_is_true(json_object_get(c->j, "allowed")) && !jint(c->j, "flows_used") &&
		    !jint(c->j, "denied_attempts")) {
			quiet++;
			continue;
		}
		if (!shown++)
			fprintf(o, "%-24s %-24s %-17s %-30s %6s %7s\n", "FROM", "TO", "CATEGORY",
				"ALLOWED PORTS", "USED", "DENIED");
		fprintf(o, "%-24s %-24s %-17s %-30s %6lld %7lld\n", tclean(r->ns[c->from], a, sizeof(a)),
			tclean(r->ns[c->to], b, sizeof(b)), cats[c->cat].name, ports_str(c->j, p, sizeof(p)),
			jint(c->j, "flows_used"), jint(c->j, "denied_attempts"));
	}
	if (!shown)
		fprintf(o, "No namespace pair has traffic or allowed policy.\n");
	if (quiet)
		fprintf(o, "(%zu more pair(s) denied and never attempted)\n", quiet);

	fprintf(o, "\nAllowed but never used (least privilege: is this needed?):\n");
	for (size_t i = 0; i < r->ncells; i++) {
		const struct rcell *c = &r->cells[i];
		if (c->cat != CAT_UNUSED)
			continue;
		nunused++;
		fprintf(o, "  %s -> %s  %s\n", tclean(r->ns[c->from], a, sizeof(a)),
			tclean(r->ns[c->to], b, sizeof(b)), ports_str(c->j, p, sizeof(p)));
		fprintf(o, "      allowed by: %s\n",
			c->allowed_by ? tclean(c->allowed_by, rule, sizeof(rule)) :
					"(not found: no pod pair to ask about)");
	}
	if (!nunused)
		fprintf(o, "  (none)\n");

	fprintf(o, "\nDenied and attempted:\n");
	for (size_t i = 0; i < r->ncells; i++) {
		const struct rcell *c = &r->cells[i];
		struct reason rs[RPT_MAX_REASONS];
		size_t n, k;
		json_t *f;
		if (!jint(c->j, "denied_attempts"))
			continue;
		ntried++;
		fprintf(o, "  %s -> %s  %lld denied attempt(s)%s\n", tclean(r->ns[c->from], a, sizeof(a)),
			tclean(r->ns[c->to], b, sizeof(b)), jint(c->j, "denied_attempts"),
			c->cat == CAT_DENIED_TRIED ? "" : " (other traffic of this pair is allowed)");
		n = deny_reasons(c->j, rs, RPT_MAX_REASONS);
		for (k = 0; k < n; k++)
			fprintf(o, "      denied by: %s (%lld)\n", tclean(rs[k].rule, rule, sizeof(rule)),
				rs[k].attempts);
		json_array_foreach(json_object_get(c->j, "flows"), k,
				   f) if (!strcmp(jstr(f, "verdict"), "deny")) text_flow(o, f);
	}
	if (!ntried)
		fprintf(o, "  (none)\n");
}

/* ---- HTML ------------------------------------------------------------------------ */
static void hesc(FILE *o, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&':
			fputs("&amp;", o);
			break;
		case '<':
			fputs("&lt;", o);
			break;
		case '>':
			fputs("&gt;", o);
			break;
		case '"':
			fputs("&quot;", o);
			break;
		case '\'':
			fputs("&#39;", o);
			break;
		default:
			fputc(*s, o);
		}
	}
}

/* JSON inside <script>: '<', '>' and '&' only occur inside strings, where
 * \u escapes mean the same; so no "</script>" or "<!--" can close it. */
static void json_in_script(FILE *o, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	for (char *p = s; p && *p; p++) {
		if (*p == '<')
			fputs("\\u003c", o);
		else if (*p == '>')
			fputs("\\u003e", o);
		else if (*p == '&')
			fputs("\\u0026", o);
		else
			fputc(*p, o);
	}
	free(s);
}

static const char html_css[] =
	"body{font:14px/1.4 system-ui,'DejaVu Sans',sans-serif;margin:16px 24px;color:#1d2228;background:#fff}"
	"h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 6px}"
	".meta{color:#555;margin:0 0 10px}"
	".legend{list-style:none;padding:0;margin:6px 0 10px;display:flex;flex-wrap:wrap;gap:14px}"
	".legend li{display:flex;align-items:center;gap:6px}"
	".top{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}"
	"#matrix-wrap{overflow:auto;max-width:100%}"
	"#matrix text{font:12px system-ui,'DejaVu Sans',sans-serif;fill:#1d2228}"
	"#matrix .n{font-size:11px;text-anchor:middle;pointer-events:none}"
	"#matrix .cell[data-cat=allowed-used] .n,#matrix .cell[data-cat=denied-attempted] .n{fill:#fff}"
	"#matrix .cell{cursor:pointer}#matrix .cell.sel rect{stroke:#111;stroke-width:3}"
	"#matrix .cell:focus rect,#matrix .cell:hover rect{stroke:#333;stroke-width:2}"
	"#panel{min-width:360px;max-width:720px;flex:1;border:1px solid #d8dce1;border-radius:6px;padding:8px 14px;"
	"background:#fafbfc;overflow-x:auto}"
	"#panel dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0}#panel dd{margin:0}"
	"#panel dt{color:#555}#panel table{width:100%}td.ep{white-space:nowrap}"
	"#panel h2{margin-top:4px}.muted{color:#666}"
	"table{border-collapse:collapse;font-size:12px;margin:6px 0}"
	"th,td{border-bottom:1px solid #e3e6ea;padding:3px 8px;text-align:left;vertical-align:top}"
	"td.r,th.r{text-align:right}tr.v-deny td{background:#fbeae7}"
	".badge{display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;font-size:12px}"
	".badge.c-allowed-unused,.badge.c-denied{color:#1d2228}"
	".c-allowed-used{background:#2e9d4f}.c-allowed-unused{background:#f2b632}"
	".c-denied-attempted{background:#d9412b}.c-denied{background:#c9ced6}.c-other{background:#7a7f87}"
	"details{margin:2px 0;border-left:4px solid #c9ced6;padding-left:8px}"
	"details.c-allowed-used{border-color:#2e9d4f}details.c-allowed-unused{border-color:#f2b632}"
	"details.c-denied-attempted{border-color:#d9412b}"
	"details[class]{background:none}summary{cursor:pointer}"
	"ul.lp li{margin:3px 0}code{font-size:12px}";

/* Shows the flows of a clicked cell in #panel (DOM only, textContent: no
 * cluster string is ever parsed as HTML).  For tests and tools it also
 * writes each cell's place on the page (data-box) and follows
 * "#cell-N" by clicking cell N. */
static const char html_js[] =
	"(function(){'use strict';\n"
	"var data=JSON.parse(document.getElementById('moat-data').textContent);\n"
	"var panel=document.getElementById('panel'),sel=null;\n"
	"var label={'allowed-used':'allowed, used','allowed-unused':'allowed, never used',"
	"'denied-attempted':'denied, attempted','denied':'denied, not attempted'};\n"
	"function el(t,c,x){var e=document.createElement(t);if(c)e.className=c;if(x!=null)e.textContent=String(x);return e;}\n"
	"function side(s){if(!s)return '?';var w=s.namespace&&s.pod?s.namespace+'/'+s.pod:(s.ip||'?');"
	"return w+':'+s.port;}\n"
	"function fact(dl,k,v){dl.appendChild(el('dt',null,k));dl.appendChild(el('dd',null,v));}\n"
	"function show(i){var c=data.cells[i];if(!c)return;\n"
	" if(sel)sel.classList.remove('sel');sel=document.getElementById('c'+i);if(sel)sel.classList.add('sel');\n"
	" panel.textContent='';panel.setAttribute('data-cell',String(i));panel.setAttribute('data-category',c.category);\n"
	" panel.appendChild(el('h2',null,c.from+' \\u2192 '+c.to));\n"
	" var p=el('p');p.appendChild(el('span','badge c-'+c.category,label[c.category]||c.category));panel.appendChild(p);\n"
	" var dl=el('dl');fact(dl,'Allowed ports',c.ports);fact(dl,'Flows used',c.flows_used);\n"
	" fact(dl,'Denied attempts',c.denied_attempts);if(c.allowed_by)fact(dl,'Allowed by',c.allowed_by);\n"
	" panel.appendChild(dl);\n"
	" if(!c.flows.length){panel.appendChild(el('p','muted','No flows of this pair seen on this node.'));return;}\n"
	" var t=el('table','flows'),h=el('tr');\n"
	" ['Source','Destination','Verdict','Decided by','Packets','Denied','Last (UTC)'].forEach("
	"function(x,k){h.appendChild(el('th',k==4||k==5?'r':null,x));});t.appendChild(h);\n"
	" c.flows.forEach(function(f){var r=el('tr','v-'+f.verdict);\n"
	"  [side(f.src),side(f.dst)+'/'+f.proto,f.verdict,f.decided_by||'',f.packets,f.denied_attempts,(f.last||'').slice(11,19)]"
	".forEach(function(x,k){r.appendChild(el('td',k<2?'ep':k==4||k==5?'r':null,x));});t.appendChild(r);});\n"
	" panel.appendChild(t);}\n"
	"var cells=document.querySelectorAll('#matrix .cell');\n"
	"Array.prototype.forEach.call(cells,function(g){\n"
	" g.addEventListener('click',function(ev){ev.preventDefault();show(+g.getAttribute('data-i'));});\n"
	" g.addEventListener('keydown',function(ev){if(ev.key==='Enter'||ev.key===' '){ev.preventDefault();"
	"show(+g.getAttribute('data-i'));}});\n"
	" var b=g.querySelector('rect').getBoundingClientRect();\n"
	" g.setAttribute('data-box',[b.left+window.scrollX,b.top+window.scrollY,b.width,b.height].map(Math.round).join(','));});\n"
	"var m=/^#cell-(\\d+)$/.exec(location.hash);\n"
	"if(m){var g=document.getElementById('c'+m[1]);if(g)g.dispatchEvent(new MouseEvent('click',{bubbles:true,cancelable:true}));}\n"
	"document.documentElement.setAttribute('data-js','ready');\n"
	"})();\n";

#define CW  76 /* matrix cell */
#define CH  46
#define GAP 3

static void svg_text_trunc(FILE *o, const char *s, size_t max)
{
	size_t l = strlen(s);

	if (l <= max) {
		hesc(o, s);
		return;
	}
	/* cut on a UTF-8 boundary */
	while (max && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	char *t = xasprintf("%.*s", (int)max, s);
	hesc(o, t);
	fputs("\xe2\x80\xa6", o);
	free(t);
}

static void html_matrix(FILE *o, const struct report *r)
{
	size_t maxl = 4;
	int lw, th, w, h;

	for (size_t i = 0; i < r->nns; i++)
		if (strlen(r->ns[i]) > maxl)
			maxl = strlen(r->ns[i]);
	if (maxl > 24)
		maxl = 25;
	lw = 24 + 7 * (int)maxl;             /* row labels */
	th = 30 + (int)(5.2 * (double)maxl); /* column labels at -45 degrees */
	w = lw + (int)r->nns * CW + th;
	h = th + (int)r->nns * CH + 8;
	fprintf(o,
		"<div id=\"matrix-wrap\"><svg id=\"matrix\" xmlns=\"http://www.w3.org/2000/svg\" "
		"width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
		"aria-label=\"namespace matrix: rows are sources, columns destinations\">\n",
		w, h, w, h);
	fprintf(o,
		"<text x=\"4\" y=\"%d\" style=\"font-size:11px;fill:#666\">from \xe2\x86\x93 / to \xe2\x86\x92</text>\n",
		th - 6);
	for (size_t t = 0; t < r->nns; t++) {
		fprintf(o, "<text transform=\"translate(%d,%d) rotate(-45)\"><title>",
			lw + (int)t * CW + CW / 2, th - 6);
		hesc(o, r->ns[t]);
		fputs("</title>", o);
		svg_text_trunc(o, r->ns[t], 24);
		fputs("</text>\n", o);
	}
	for (size_t f = 0; f < r->nns; f++) {
		int y = th + (int)f * CH;
		fprintf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\"><title>", lw - 8, y + CH / 2 + 4);
		hesc(o, r->ns[f]);
		fputs("</title>", o);
		svg_text_trunc(o, r->ns[f], 24);
		fputs("</text>\n", o);
		for (size_t t = 0; t < r->nns; t++) {
			const struct rcell *c = r->grid[f * r->nns + t];
			int x = lw + (int)t * CW;
			long long used, den;
			if (!c) {
				fprintf(o,
					"<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fff\" "
					"stroke=\"#d8dce1\" stroke-dasharray=\"3 3\"><title>not shown: filtered out, or not your namespaces</title></rect>\n",
					x + GAP / 2, y + GAP / 2, CW - GAP, CH - GAP);
				continue;
			}
			used = jint(c->j, "flows_used");
			den = jint(c->j, "denied_attempts");
			fprintf(o,
				"<a class=\"cell\" id=\"c%zu\" href=\"#d%zu\" data-i=\"%zu\" data-cat=\"%s\" data-from=\"",
				(size_t)(c - r->cells), (size_t)(c - r->cells), (size_t)(c - r->cells),
				cats[c->cat].name);
			hesc(o, r->ns[f]);
			fputs("\" data-to=\"", o);
			hesc(o, r->ns[t]);
			fputs("\"><title>", o);
			hesc(o, r->ns[f]);
			fputs(" \xe2\x86\x92 ", o);
			hesc(o, r->ns[t]);
			fprintf(o, ": %s, %lld flow(s) used, %lld denied attempt(s)</title>",
				cats[c->cat].label, used, den);
			fprintf(o,
				"<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"3\" fill=\"%s\"/>",
				x + GAP / 2, y + GAP / 2, CW - GAP, CH - GAP, cats[c->cat].color);
			if (used && den)
				fprintf(o,
					"<text class=\"n\" x=\"%d\" y=\"%d\">%lld used</text>"
					"<text class=\"n\" x=\"%d\" y=\"%d\">%lld denied</text>",
					x + CW / 2, y + CH / 2 - 2, used, x + CW / 2, y + CH / 2 + 11, den);
			else if (used || den)
				fprintf(o, "<text class=\"n\" x=\"%d\" y=\"%d\">%lld %s</text>", x + CW / 2,
					y + CH / 2 + 4, used ? used : den, used ? "used" : "denied");
			else
				fprintf(o, "<text class=\"n\" x=\"%d\" y=\"%d\">0</text>", x + CW / 2,
					y + CH / 2 + 4);
			fputs("</a>\n", o);
		}
	}
	fputs("</svg></div>\n", o);
}

static void html_flows_table(FILE *o, json_t *flows)
{
	json_t *f;
	size_t i;
	char s[300], d[300];

	fputs("<table><tr><th>Source</th><th>Destination</th><th>Proto</th><th>Verdict</th><th>Decided by</th>"
	      "<th class=\"r\">Packets</th><th class=\"r\">Denied</th><th>Last seen</th></tr>\n",
	      o);
	json_array_foreach(flows, i, f)
	{
		fputs("<tr class=\"v-", o);
		hesc(o, jstr(f, "verdict"));
		fputs("\"><td>", o);
		hesc(o, side_str(json_object_get(f, "src"), s, sizeof(s)));
		fputs("</td><td>", o);
		hesc(o, side_str(json_object_get(f, "dst"), d, sizeof(d)));
		fputs("</td><td>", o);
		hesc(o, jstr(f, "proto"));
		fputs("</td><td>", o);
		hesc(o, jstr(f, "verdict"));
		fputs("</td><td>", o);
		hesc(o, jstr(f, "decided_by"));
		fprintf(o, "</td><td class=\"r\">%lld</td><td class=\"r\">%lld</td><td>", jint(f, "packets"),
			jint(f, "denied_attempts"));
		hesc(o, jstr(f, "last"));
		fputs("</td></tr>\n", o);
	}
	fputs("</table>\n", o);
}

static void html_pair(FILE *o, const struct report *r, const struct rcell *c)
{
	fprintf(o, "<a href=\"#d%zu\">", (size_t)(c - r->cells));
	hesc(o, r->ns[c->from]);
	fputs(" \xe2\x86\x92 ", o);
	hesc(o, r->ns[c->to]);
	fputs("</a>", o);
}

static void write_html(FILE *o, const struct report *r)
{
	json_t *data = json_object(), *arr = json_array();
	char p[512];
	size_t n;

	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
	      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n<title>moat segmentation report: ",
	      o);
	hesc(o, jstr(r->root, "node"));
	fprintf(o, "</title>\n<style>%s</style>\n</head><body>\n", html_css);
	fputs("<h1>Segmentation report</h1>\n<p class=\"meta\">node <b>", o);
	hesc(o, jstr(r->root, "node"));
	fputs("</b> &middot; generated ", o);
	hesc(o, r->generated);
	if (r->filter_ns) {
		fputs(" &middot; namespace filter <b>", o);
		hesc(o, r->filter_ns);
		fputs("</b>", o);
	}
	fputs("<br>scope: ", o);
	hesc(o, jstr(r->root, "scope"));
	if (json_is_true(json_object_get(r->root, "truncated")))
		fputs("<br><b>the daemon truncated this report</b> (too many namespaces or identities)", o);
	fputs("</p>\n<ul class=\"legend\" id=\"legend\">\n", o);
	for (int k = 0; k < CAT_OTHER; k++)
		fprintf(o,
			"<li data-cat=\"%s\"><svg width=\"16\" height=\"16\"><rect width=\"16\" height=\"16\" rx=\"3\" "
			"fill=\"%s\"/></svg>%s <b>%d</b></li>\n",
			cats[k].name, cats[k].color, cats[k].label, r->count[k]);
	if (r->ncells < r->nns * r->nns)
		fputs("<li data-cat=\"none\"><svg width=\"16\" height=\"16\"><rect x=\"0.5\" y=\"0.5\" width=\"15\" "
		      "height=\"15\" fill=\"#fff\" stroke=\"#aab\" stroke-dasharray=\"3 3\"/></svg>not shown "
		      "(filtered out, or not your namespaces)</li>\n",
		      o);
	fputs("</ul>\n<div class=\"top\">\n", o);
	html_matrix(o, r);
	fputs("<section id=\"panel\" aria-live=\"polite\"><h2>Flows behind a cell</h2>"
	      "<p class=\"muted\">Click a cell of the matrix to see its flows here "
	      "(without JavaScript: the list below).</p></section>\n</div>\n",
	      o);

	/* least privilege */
	fputs("<h2>Allowed but never used</h2>\n<ul class=\"lp\" id=\"unused\">\n", o);
	n = 0;
	for (size_t i = 0; i < r->ncells; i++) {
		const struct rcell *c = &r->cells[i];
		if (c->cat != CAT_UNUSED)
			continue;
		n++;
		fputs("<li>", o);
		html_pair(o, r, c);
		fputs(": ", o);
		hesc(o, ports_str(c->j, p, sizeof(p)));
		fputs("<br><span class=\"muted\">allowed by</span> <code>", o);
		hesc(o, c->allowed_by ? c->allowed_by : "(not found: no pod pair to ask about)");
		fputs("</code></li>\n", o);
	}
	fputs(n ? "</ul>\n" : "<li class=\"muted\">none</li></ul>\n", o);
	fputs("<h2>Denied and attempted</h2>\n<ul class=\"lp\" id=\"attempted\">\n", o);
	n = 0;
	for (size_t i = 0; i < r->ncells; i++) {
		const struct rcell *c = &r->cells[i];
		struct reason rs[RPT_MAX_REASONS];
		size_t nr;
		if (!jint(c->j, "denied_attempts"))
			continue;
		n++;
		fputs("<li>", o);
		html_pair(o, r, c);
		fprintf(o, ": %lld denied attempt(s)%s", jint(c->j, "denied_attempts"),
			c->cat == CAT_DENIED_TRIED ? "" : " (other traffic of this pair is allowed)");
		nr = deny_reasons(c->j, rs, RPT_MAX_REASONS);
		for (size_t k = 0; k < nr; k++) {
			fputs("<br><span class=\"muted\">denied by</span> <code>", o);
			hesc(o, rs[k].rule);
			fprintf(o, "</code> (%lld)", rs[k].attempts);
		}
		fputs("</li>\n", o);
	}
	fputs(n ? "</ul>\n" : "<li class=\"muted\">none</li></ul>\n", o);

	/* every cell, with its flows: works without JS */
	fputs("<h2>Flows behind each cell</h2>\n<div id=\"cells\">\n", o);
	for (size_t i = 0; i < r->ncells; i++) {
		const struct rcell *c = &r->cells[i];
		json_t *flows = json_object_get(c->j, "flows");
		fprintf(o,
			"<details id=\"d%zu\" class=\"c-%s\"><summary><span class=\"badge c-%s\">%s</span> ",
			i, cats[c->cat].name, cats[c->cat].name, cats[c->cat].label);
		hesc(o, r->ns[c->from]);
		fputs(" \xe2\x86\x92 ", o);
		hesc(o, r->ns[c->to]);
		fprintf(o, ": %lld flow(s) used, %lld denied attempt(s)</summary>\n<p>Allowed ports: ",
			jint(c->j, "flows_used"), jint(c->j, "denied_attempts"));
		hesc(o, ports_str(c->j, p, sizeof(p)));
		if (c->allowed_by) {
			fputs("<br>Allowed by: <code>", o);
			hesc(o, c->allowed_by);
			fputs("</code>", o);
		}
		fputs("</p>\n", o);
		if (json_array_size(flows))
			html_flows_table(o, flows);
		else
			fputs("<p class=\"muted\">No flows of this pair seen on this node.</p>\n", o);
		fputs("</details>\n", o);

		json_array_append_new(
			arr, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:s?,s:o}", "from", r->ns[c->from], "to",
				       r->ns[c->to], "category", cats[c->cat].name, "ports", p, "flows_used",
				       (json_int_t)jint(c->j, "flows_used"), "denied_attempts",
				       (json_int_t)jint(c->j, "denied_attempts"), "allowed_by", c->allowed_by,
				       "flows", json_is_array(flows) ? json_incref(flows) : json_array()));
	}
	fputs("</div>\n", o);
	json_object_set_new(data, "cells", arr);
	fputs("<script type=\"application/json\" id=\"moat-data\">", o);
	json_in_script(o, data);
	fprintf(o, "</script>\n<script>\n%s</script>\n</body></html>\n", html_js);
	json_decref(data);
}

/* ---- the command ------------------------------------------------------------------ */
static void report_usage(FILE *f)
{
	fprintf(f, "usage: moatctl report [--namespace NS] [--out FILE] [-o text|json|html]\n"
		   "  the segmentation report of this node: namespace pairs, what policy allows\n"
		   "  (cluster-wide) beside the flows this node judged\n"
		   "  -o html writes one self-contained page (default with --out FILE.html)\n");
}

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcasecmp(s + a - b, suf);
}

int moatctl_report_main(const char *socket_path, const char *output, int argc, char **argv)
{
	static const struct option lo[] = { { "namespace", required_argument, NULL, 'n' },
					    { "out", required_argument, NULL, 'O' },
					    { "output", required_argument, NULL, 'o' },
					    { "help", no_argument, NULL, 'h' },
					    { 0 } };
	struct report r = { 0 };
	const char *out_path = NULL, *fmt = output ? output : "";
	char path[1024] = "/v1/report", *tmp = NULL;
	json_t *root;
	FILE *o = stdout;
	time_t now = time(NULL);
	struct tm tm;
	int opt, rc = 0;

	optind = 1;
	opterr = 1;
	while ((opt = getopt_long(argc, argv, "+n:o:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'n':
			r.filter_ns = optarg;
			break;
		case 'O':
			out_path = optarg;
			break;
		case 'o':
			fmt = optarg;
			break;
		case 'h':
			report_usage(stdout);
			return 0;
		default:
			report_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "moatctl report: unexpected argument '%s'\n", argv[optind]);
		report_usage(stderr);
		return 2;
	}
	if (!*fmt && out_path && (ends_with(out_path, ".html") || ends_with(out_path, ".htm")))
		fmt = "html";
	if (!*fmt || !strcmp(fmt, "wide"))
		fmt = "text";
	if (strcmp(fmt, "text") && strcmp(fmt, "json") && strcmp(fmt, "html")) {
		fprintf(stderr, "moatctl report: -o must be text, json or html\n");
		return 2;
	}
	if (r.filter_ns) {
		char *e = curl_easy_escape(NULL, r.filter_ns, 0);
		if (!e)
			return 1;
		snprintf(path, sizeof(path), "/v1/report?namespace=%s", e);
		curl_free(e);
	}
	if (rpt_get(socket_path, path, &root, false))
		return 1;
	if (report_load(&r, root)) {
		json_decref(root);
		return 1;
	}
	gmtime_r(&now, &tm);
	strftime(r.generated, sizeof(r.generated), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (strcmp(fmt, "json"))
		find_allowed_by(&r, socket_path);

	if (out_path) {
		/* whole or nothing: a reader never sees half a page */
		tmp = xasprintf("%s.tmp.%d", out_path, (int)getpid());
		o = fopen(tmp, "w");
		if (!o) {
			fprintf(stderr, "moatctl report: %s: %s\n", tmp, strerror(errno));
			free(tmp);
			report_free(&r);
			return 1;
		}
	}
	if (!strcmp(fmt, "json")) {
		char *s = json_dumps(r.root, JSON_INDENT(2) | JSON_SORT_KEYS);
		if (s)
			fprintf(o, "%s\n", s);
		free(s);
	} else if (!strcmp(fmt, "html")) {
		write_html(o, &r);
	} else {
		write_text(o, &r);
	}
	if (out_path) {
		if (ferror(o) | fclose(o) || rename(tmp, out_path)) {
			fprintf(stderr, "moatctl report: writing %s: %s\n", out_path, strerror(errno));
			unlink(tmp);
			rc = 1;
		}
		free(tmp);
	} else if (fflush(o)) {
		rc = 1;
	}
	report_free(&r);
	return rc;
}
