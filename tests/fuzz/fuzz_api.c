// SPDX-License-Identifier: Apache-2.0
/* The control API (hostd/api.c, api_archive.c) on requests built from the
 * input, served the daemon's way: moat_api_start() on a unix socket in a
 * temporary directory (LLVMFuzzerInitialize), libmicrohttpd parsing the
 * request, the real router and handlers answering from a compiler loaded
 * with three namespaces (ns-a, ns-b, ns-c), pods, NetworkPolicies, an
 * AdminNetworkPolicy and a Blueprint (ns-a and ns-b), an (empty) flight-recorder archive
 * and a token file.  No datapath: /v1/status and /metrics (which read it)
 * are asked as /v1/whoami instead; observe and flows answer 503 (no events).
 *
 * Input: byte 0 picks the caller (no token: uid 0 over the socket, which
 * is platform-admin; a bad token; the platform-admin token; a viewer of
 * ns-a; a namespace-admin of ns-b); then a line "METHOD
 * PATH?QUERY" (cut at the first space, CR or LF in the path); the rest is
 * the body.  Dictionary: tests/fuzz/api.dict.
 *
 * Checked on every request:
 *   - a response always comes back (HTTP/1.x, a status code 200..599);
 *     JSON responses parse, and errors are {"error": text};
 *   - with a token the file does not know: 401 and nothing else;
 *   - tenancy: the answer to the ns-a viewer never holds a string only
 *     ns-b/ns-c objects carry (pod, label and policy names containing
 *     "hiddenb"/"hiddenc", the pods' addresses 10.0.2.x/10.0.3.x), unless
 *     the request itself holds it (explain echoes its from/to);
 *   - nothing crashes, leaks or reads out of bounds in the server threads
 *     (ASan, LeakSanitizer at exit).
 * FUZZ_VERBOSE=1 prints every request and its response. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <jansson.h>
#include "api.h"
#include "archive.h"
#include "auth.h"
#include "compile.h"
#include "daemon.h"
#include "decode.h"
#include "manifest.h"
#include "util.h"

static char dir[64] = "/tmp/fuzz-api-XXXXXX";
static char sock[96];
static struct moatd d;
static struct moat_api *api;

static const char *world =
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: ns-a, labels: {team: x}}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: ns-b, labels: {team: hiddenb-team}}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: ns-c}\n---\n"
	"apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {addresses: [{type: InternalIP, address: 10.99.0.1}]}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: ns-a, labels: {app: web}}\n"
	"spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}\n"
	"status: {podIP: 10.0.1.1}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: hiddenb-db, namespace: ns-b, labels: {app: hiddenb-app}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.2.1}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: hiddenc-job, namespace: ns-c, labels: {app: hiddenc-app}}\n"
	"spec: {nodeName: n2, containers: [{name: c}]}\nstatus: {podIP: 10.0.3.1}\n---\n"
	"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-in, namespace: ns-a}\n"
	"spec: {podSelector: {matchLabels: {app: web}}, ingress: [{from: [{namespaceSelector: {}}], ports: [{port: http}]}]}\n---\n"
	"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: hiddenb-pol, namespace: ns-b}\n"
	"spec: {podSelector: {}, egress: [{to: [{podSelector: {matchLabels: {app: hiddenb-app}}}]}], policyTypes: [Egress, Ingress]}\n---\n"
	"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: hiddenc-pol, namespace: ns-c}\n"
	"spec: {podSelector: {matchLabels: {app: hiddenc-app}}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}]}]}\n---\n"
	"apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: no-telnet}\n"
	"spec: {priority: 5, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], ports: [{portNumber: {protocol: TCP, port: 23}}]}]}\n---\n"
	"apiVersion: moat.io/v1alpha1\nkind: Blueprint\nmetadata: {name: base}\n"
	"spec:\n  version: \"2\"\n  namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}\n"
	"  parameters: [{name: port, default: \"8080\"}]\n"
	"  versions:\n  - version: \"1\"\n    networkPolicies:\n    - name: bp-deny\n      spec: {podSelector: {}}\n"
	"  - version: \"2\"\n    networkPolicies:\n    - name: bp-port\n"
	"      spec:\n        podSelector: {}\n        ingress: [{ports: [{port: \"${port}\"}]}]\n";

static const char *tokens =
	"tokens:\n"
	"- {user: root-ish, role: platform-admin, token: tok-admin-0123456789}\n"
	"- {user: alice, role: viewer, namespaces: [ns-a], token: tok-viewer-a-0123456789}\n"
	"- {user: bob, role: namespace-admin, namespaces: [ns-b], token: tok-admin-0123456789-b}\n";

static void die(const char *what, const char *err)
{
	fprintf(stderr, "fuzz_api: %s: %s\n", what, err);
	abort();
}

static void load_world(void)
{
	struct moat_docs docs = { 0 };
	struct moat_errs errs = { 0 };
	struct moat_compiler_opts co = { .node = "n1" };
	struct moat_tx *tx;
	struct moat_flush_stats st;
	char err[512];

	if (moat_compiler_new(&co, &d.comp))
		die("compiler", "new");
	if (moat_manifest_parse(world, strlen(world), "world.yaml", &docs, &errs))
		die("world", errs.n ? errs.v[0] : "?");
	for (size_t i = 0; i < docs.n; i++) {
		struct moat_object *o = NULL;
		if (moat_decode(docs.v[i].json, "world.yaml", &o, err, sizeof(err)))
			die("decode", err);
		if (moat_compiler_apply(d.comp, o))
			die("apply", "world");
	}
	moat_docs_free(&docs);
	moat_errs_free(&errs);
	if (moat_tx_begin(NULL, true, &tx) || moat_compiler_flush(d.comp, tx, &st, err, sizeof(err)))
		die("flush", err);
	moat_tx_abort(tx);
	moat_compiler_commit(d.comp);
}

static void cleanup(void)
{
	char cmd[128];

	moat_api_stop(api);
	moat_archive_close(d.archive);
	moat_auth_free(d.auth);
	moat_compiler_free(d.comp);
	pthread_mutex_destroy(&d.lock);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd)) {
		/* a leftover temporary directory */
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct moat_api_opts ao = { .mode = 0600 };
	struct moat_archive_opts aro;
	char path[128], audit[128], err[512];
	FILE *f;

	(void)argc;
	(void)argv;
	if (!mkdtemp(dir))
		die("mkdtemp", strerror(errno));
	snprintf(path, sizeof(path), "%s/tokens.yaml", dir);
	f = fopen(path, "w");
	if (!f || fputs(tokens, f) < 0 || fclose(f))
		die("tokens", strerror(errno));
	pthread_mutex_init(&d.lock, NULL);
	d.cfg.node = "n1";
	load_world();
	if (moat_auth_new(path, &d.auth, err, sizeof(err)))
		die("auth", err);
	moat_archive_opts_defaults(&aro);
	snprintf(path, sizeof(path), "%s/archive", dir);
	aro.dir = path;
	aro.node = "n1";
	if (moat_archive_open(&aro, &d.archive, err, sizeof(err)))
		die("archive", err);
	snprintf(sock, sizeof(sock), "%s/api.sock", dir);
	ao.socket = sock;
	snprintf(audit, sizeof(audit), "%s/audit.log", dir);
	ao.audit_log = audit;
	if (moat_api_start(&d, &ao, &api))
		die("api", "start");
	atexit(cleanup);
	return 0;
}

/* Sends one request, returns the whole response (malloc'd). */
static char *roundtrip(const char *req, size_t len, size_t *rlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char *out = NULL;
	size_t n = 0, cap = 0;

	assert(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect", strerror(errno));
	for (size_t off = 0; off < len;) {
		ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (w <= 0)
			break; /* the server may answer and close early */
		off += (size_t)w;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			out = xrealloc(out, cap);
		}
		if (poll(&p, 1, 10000) <= 0)
			die("response", "none within 10 s");
		r = recv(fd, out + n, cap - n - 1, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (!out)
		out = xrealloc(out, 1);
	out[n] = 0;
	*rlen = n;
	return out;
}

static const char *const HIDDEN[] = { "hiddenb", "hiddenc", "10.0.2.", "10.0.3." };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const toks[] = { NULL, "tok-nope-0123456789", "tok-admin-0123456789",
					    "tok-viewer-a-0123456789", "tok-admin-0123456789-b" };
	const char *p = (const char *)data, *end = p + size, *nl, *sp;
	char method[16], path[2048], *req, *resp, *body;
	size_t rlen, blen, plen;
	int who, code;

	if (size < 1)
		return 0;
	who = data[0] % 5;
	p++;
	nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl)
		nl = end;
	sp = memchr(p, ' ', (size_t)(nl - p));
	if (!sp)
		return 0;
	snprintf(method, sizeof(method), "%.*s", (int)(sp - p), p);
	for (const char *m = method; *m; m++)
		if (*m < 'A' || *m > 'Z')
			return 0; /* an HTTP token; anything else is libmicrohttpd's business */
	if (!method[0])
		return 0;
	sp++;
	plen = 0;
	while (sp + plen < nl && sp[plen] != ' ' && sp[plen] != '\r' && plen < sizeof(path) - 1 &&
	       (unsigned char)sp[plen] > 0x20 && sp[plen] != 0x7f)
		plen++;
	if (!plen || sp[0] != '/')
		return 0;
	snprintf(path, sizeof(path), "%.*s", (int)plen, sp);
	/* what reads the datapath (absent here) */
	if (!strncmp(path, "/v1/status", 10) || !strncmp(path, "/metrics", 8))
		memcpy(path, "/v1/whoami", 11);
	body = nl < end ? (char *)nl + 1 : (char *)end;
	blen = (size_t)(end - body);
	{
		char hdr[2400];
		int hl = snprintf(
			hdr, sizeof(hdr),
			"%s %s HTTP/1.1\r\nHost: moat\r\nConnection: close\r\n%s%s%sContent-Length: %zu\r\n\r\n",
			method, path, toks[who] ? "Authorization: Bearer " : "", toks[who] ? toks[who] : "",
			toks[who] ? "\r\n" : "", blen);
		req = xcalloc(1, (size_t)hl + blen + 1);
		memcpy(req, hdr, (size_t)hl);
		memcpy(req + hl, body, blen);
		resp = roundtrip(req, (size_t)hl + blen, &rlen);
		free(req);
	}
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "%s %s\n%.1500s\n\n", method, path, resp);
	/* a well-formed request always gets an answer (the connection closed
	 * without one when a handler gave up) */
	if (rlen == 0) {
		fprintf(stderr, "no response to %s %s\n", method, path);
		abort();
	}
	assert(!strncmp(resp, "HTTP/1.1 ", 9) || !strncmp(resp, "HTTP/1.0 ", 9));
	code = atoi(resp + 9);
	assert(code >= 200 && code < 600);
	if (who == 1)
		assert(code == 401 || code == 400 || code == 413 || code == 414 || code == 431 ||
		       code == 505);
	if (who == 3) {
		const char *rb = strstr(resp, "\r\n\r\n");
		/* the request as the server reads it: percent-decoded */
		char *dec = xcalloc(1, size + 1);
		size_t dlen = 0;
		for (size_t i = 0; i < size; i++) {
			unsigned x;
			if (data[i] == '%' && i + 2 < size &&
			    sscanf((const char *)data + i + 1, "%2x", &x) == 1) {
				dec[dlen++] = (char)x;
				i += 2;
			} else {
				dec[dlen++] = data[i] == '+' ? ' ' : (char)data[i];
			}
		}
		for (size_t i = 0; rb && i < sizeof(HIDDEN) / sizeof(HIDDEN[0]); i++) {
			/* as sent or as decoded (an echo may show either) */
			bool asked = memmem(dec, dlen, HIDDEN[i], strlen(HIDDEN[i])) ||
				     memmem(data, size, HIDDEN[i], strlen(HIDDEN[i]));
			if (!asked && strstr(rb, HIDDEN[i])) {
				fprintf(stderr, "viewer of ns-a got \"%s\":\n%s\n", HIDDEN[i], resp);
				abort();
			}
		}
		free(dec);
	}
	if (strstr(resp, "Content-Type: application/json")) {
		const char *rb = strstr(resp, "\r\n\r\n");
		json_t *j;
		assert(rb);
		j = json_loads(rb + 4, JSON_DECODE_ANY, NULL);
		assert(j);
		if (code >= 400)
			assert(json_is_string(json_object_get(j, "error")));
		json_decref(j);
	}
	free(resp);
	return 0;
}
