// SPDX-License-Identifier: Apache-2.0
/* Compiler benchmark (issue 3): a full compile of 10,000 NetworkPolicies over
 * 1,000 namespaces and 100,000 pods, then single changes (one policy edited,
 * one pod relabelled) applied incrementally, each until its generation is
 * live in a real (unpinned) datapath.  Prints a JSON object of metrics.
 *
 *   build/bench/compile [--namespaces N] [--pods-per-ns N] [--changes N]
 *                       [--no-datapath]
 *
 * The world, shaped like a multi-tenant cluster: namespace ns-i (labels
 * team=t(i%20), env=prod|dev); ns-0 runs DNS (app=dns), ns-1 the ingress
 * controller (app=ingress), ns-2 monitoring (app=prometheus).  In each
 * namespace 100 pods of 10 deployments: app=a0..a9 (10 replicas each,
 * identical labels, so 10 identities per namespace), tier web (a0-a2),
 * api (a3-a6) or db (a7-a9), named port http=8080.  Ten NetworkPolicies per
 * namespace:
 *   np-0  default deny ingress and egress for every pod
 *   np-1..np-7  app=a(k): ingress from app=a(k-1) on TCP 8080+k and on the
 *         named port http, and from prometheus in team=t0 namespaces
 *   np-8  egress for everyone: DNS (ns-0 app=dns) on UDP/TCP 53, the db tier
 *         of the namespace on TCP 5432-5439 (a port range), the world
 *         except 10.0.0.0/8 on TCP 443 (an ipBlock)
 *   np-9  the web tier: ingress from the ingress controller (ns-1) on 80/443
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <jansson.h>

#include "compile.h"
#include "decode.h"
#include "dp.h"
#include "util.h"

static int npods_per_ns = 100, nns = 1000, nchanges = 100;
static const int npol_per_ns = 10;

static struct moat_object *dec(json_t *j)
{
	struct moat_object *o = NULL;
	char err[512];

	if (moat_decode(j, "bench", &o, err, sizeof(err))) {
		fprintf(stderr, "decode: %s\n", err);
		exit(1);
	}
	json_decref(j);
	return o;
}

static const char *app_of(int ns, int j, int app)
{
	static char buf[16];

	if (ns == 0 && j == 0)
		return "dns";
	if (ns == 1 && j == 0)
		return "ingress";
	if (ns == 2 && j == 0)
		return "prometheus";
	snprintf(buf, sizeof(buf), "a%d", app);
	return buf;
}

static json_t *pod_json(int ns, int j, int app)
{
	char ip[32], name[32], nsn[32];
	int id = ns * npods_per_ns + j;
	const char *appv = app_of(ns, j, app);

	snprintf(ip, sizeof(ip), "10.%d.%d.%d", 16 + (id >> 16), (id >> 8) & 0xff, id & 0xff);
	snprintf(name, sizeof(name), "p-%d", j);
	snprintf(nsn, sizeof(nsn), "ns-%d", ns);
	return json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s}},s:{s:s,s:[{s:s,s:[{s:s,s:i,s:s}]}]},s:{s:s}}",
			 "apiVersion", "v1", "kind", "Pod", "metadata", "name", name, "namespace", nsn,
			 "labels", "app", appv, "tier",
			 app < 3 ? "web" :
			 app < 7 ? "api" :
				   "db",
			 "spec", "nodeName", ns % 2 ? "n2" : "n1", "containers", "name", "c", "ports", "name",
			 "http", "containerPort", 8080, "protocol", "TCP", "status", "podIP", ip);
}

static json_t *np_json(int ns, int k, int port_shift)
{
	char name[32], nsn[32], sel[16], from[16];
	json_t *spec;

	snprintf(name, sizeof(name), "np-%d", k);
	snprintf(nsn, sizeof(nsn), "ns-%d", ns);
	snprintf(sel, sizeof(sel), "a%d", k);
	snprintf(from, sizeof(from), "a%d", k - 1);
	if (k == 0)
		spec = json_pack("{s:{},s:[s,s]}", "podSelector", "policyTypes", "Ingress", "Egress");
	else if (k <= 7)
		spec = json_pack("{s:{s:{s:s}},s:[s],s:[{s:[{s:{s:{s:s}}},{s:{s:{s:s}},s:{s:{s:s}}}],"
				 "s:[{s:s,s:i},{s:s}]}]}",
				 "podSelector", "matchLabels", "app", sel, "policyTypes", "Ingress",
				 "ingress", "from", "podSelector", "matchLabels", "app", from,
				 "namespaceSelector", "matchLabels", "team", "t0", "podSelector",
				 "matchLabels", "app", "prometheus", "ports", "protocol", "TCP", "port",
				 8080 + k + port_shift, "port", "http");
	else if (k == 8)
		spec = json_pack("{s:{},s:[s],s:[{s:[{s:{s:{s:s}},s:{s:{s:s}}}],s:[{s:s,s:i},{s:s,s:i}]},"
				 "{s:[{s:{s:{s:s}}}],s:[{s:s,s:i,s:i}]},"
				 "{s:[{s:{s:s,s:[s]}}],s:[{s:s,s:i}]}]}",
				 "podSelector", "policyTypes", "Egress", "egress", "to", "namespaceSelector",
				 "matchLabels", "kubernetes.io/metadata.name", "ns-0", "podSelector",
				 "matchLabels", "app", "dns", "ports", "protocol", "UDP", "port", 53,
				 "protocol", "TCP", "port", 53, "to", "podSelector", "matchLabels", "tier",
				 "db", "ports", "protocol", "TCP", "port", 5432 + port_shift, "endPort",
				 5439 + port_shift, "to", "ipBlock", "cidr", "0.0.0.0/0", "except",
				 "10.0.0.0/8", "ports", "protocol", "TCP", "port", 443);
	else
		spec = json_pack(
			"{s:{s:{s:s}},s:[s],s:[{s:[{s:{s:{s:s}},s:{s:{s:s}}}],s:[{s:s,s:i},{s:s,s:i}]}]}",
			"podSelector", "matchLabels", "tier", "web", "policyTypes", "Ingress", "ingress",
			"from", "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name", "ns-1",
			"podSelector", "matchLabels", "app", "ingress", "ports", "protocol", "TCP", "port",
			80 + port_shift, "protocol", "TCP", "port", 443);
	return json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "apiVersion", "networking.k8s.io/v1", "kind",
			 "NetworkPolicy", "metadata", "name", name, "namespace", nsn, "spec", spec);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, int n, double p)
{
	int i = (int)(p * (n - 1) + 0.5);
	return v[i] / 1e6;
}

/* One change all the way to a live generation. */
static uint64_t apply_live(struct moat_compiler *c, struct moat_dp *dp, struct moat_object *o)
{
	uint64_t t0 = moat_now_ns();
	struct moat_flush_stats st;
	struct moat_tx *tx;
	char err[256];

	moat_compiler_apply(c, o);
	moat_tx_begin(dp, false, &tx);
	if (moat_compiler_flush(c, tx, &st, err, sizeof(err))) {
		fprintf(stderr, "flush: %s\n", err);
		exit(1);
	}
	if (dp) {
		if (moat_tx_commit(tx, NULL)) {
			fprintf(stderr, "commit failed\n");
			exit(1);
		}
	} else {
		moat_tx_abort(tx);
	}
	moat_compiler_commit(c);
	return moat_now_ns() - t0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "namespaces", required_argument, NULL, 'n' },
					      { "pods-per-ns", required_argument, NULL, 'p' },
					      { "changes", required_argument, NULL, 'c' },
					      { "no-datapath", no_argument, NULL, 'D' },
					      { 0 } };
	struct moat_compiler_opts co = { .node = "n1" };
	struct moat_dp_opts dpo = { .no_pin = true, .events = false };
	struct moat_compiler *c;
	struct moat_dp *dp = NULL;
	struct moat_flush_stats st;
	struct moat_tx *tx;
	struct rusage ru;
	bool use_dp = true;
	uint64_t t0, t_load, t_compile, t_commit = 0, *lat;
	char err[256];
	int o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			nns = atoi(optarg);
			break;
		case 'p':
			npods_per_ns = atoi(optarg);
			break;
		case 'c':
			nchanges = atoi(optarg);
			break;
		case 'D':
			use_dp = false;
			break;
		default:
			return 2;
		}
	}
	if (use_dp) {
		dpo.max_policy = 4u << 20;
		dpo.max_ips = 1u << 18;
		if (moat_dp_open(&dpo, &dp, NULL)) {
			fprintf(stderr,
				"datapath unavailable (root? bpffs?): measuring the compiler alone\n");
			dp = NULL;
		}
	}
	if (dp)
		for (int t = 0; t < MOAT_T_MAX; t++)
			co.cap[t] = moat_dp_tbl_capacity(dp, t);
	moat_compiler_new(&co, &c);

	/* decoding is not compiling: build the objects first */
	t0 = moat_now_ns();
	for (int i = 0; i < nns; i++) {
		char nsn[32], team[16];
		snprintf(nsn, sizeof(nsn), "ns-%d", i);
		snprintf(team, sizeof(team), "t%d", i % 20);
		moat_compiler_apply(c, dec(json_pack("{s:s,s:s,s:{s:s,s:{s:s,s:s}}}", "apiVersion", "v1",
						     "kind", "Namespace", "metadata", "name", nsn, "labels",
						     "team", team, "env", i % 2 ? "prod" : "dev")));
		for (int j = 0; j < npods_per_ns; j++)
			moat_compiler_apply(c, dec(pod_json(i, j, j % 10)));
		for (int k = 0; k < npol_per_ns; k++)
			moat_compiler_apply(c, dec(np_json(i, k, 0)));
	}
	t_load = moat_now_ns() - t0;

	t0 = moat_now_ns();
	moat_tx_begin(dp, true, &tx);
	if (moat_compiler_flush(c, tx, &st, err, sizeof(err))) {
		fprintf(stderr, "flush: %s\n", err);
		return 1;
	}
	t_compile = moat_now_ns() - t0;
	if (dp) {
		t0 = moat_now_ns();
		if (moat_tx_commit(tx, NULL)) {
			fprintf(stderr, "commit failed\n");
			return 1;
		}
		t_commit = moat_now_ns() - t0;
		moat_dp_settle(dp);
	} else {
		moat_tx_abort(tx);
	}
	moat_compiler_commit(c);
	fprintf(stderr,
		"full compile: %d namespaces, %d pods, %d policies: %u identities, %u entries, "
		"%zu ops; objects %.2f s, compile %.3f s, datapath write %.3f s\n",
		nns, nns * npods_per_ns, nns * npol_per_ns, st.identities, st.entries[MOAT_T_POL], st.ops,
		t_load / 1e9, t_compile / 1e9, t_commit / 1e9);

	lat = calloc((size_t)nchanges, sizeof(*lat));
	/* one policy changed: its port moves */
	for (int i = 0; i < nchanges; i++) {
		int ns = (i * 37) % nns, k = (i * 7) % npol_per_ns;
		lat[i] = apply_live(c, dp, dec(np_json(ns, k, 1 + i)));
		if (getenv("MOAT_BENCH_VERBOSE") && lat[i] > 5000000)
			fprintf(stderr, "slow policy change %d: ns-%d np-%d %.2f ms\n", i, ns, k,
				lat[i] / 1e6);
		if (dp)
			moat_dp_settle(dp); /* changes arrive one at a time */
	}
	qsort(lat, (size_t)nchanges, sizeof(*lat), cmp_u64);
	double pol50 = pct(lat, nchanges, 0.5), pol99 = pct(lat, nchanges, 0.99);
	/* one pod relabelled: it moves to another app (another identity) */
	for (int i = 0; i < nchanges; i++) {
		int ns = (i * 53) % nns, j = (i * 11) % npods_per_ns;
		lat[i] = apply_live(c, dp, dec(pod_json(ns, j, (j + 1 + i) % 10)));
		if (dp)
			moat_dp_settle(dp);
	}
	qsort(lat, (size_t)nchanges, sizeof(*lat), cmp_u64);
	double pod50 = pct(lat, nchanges, 0.5), pod99 = pct(lat, nchanges, 0.99);
	getrusage(RUSAGE_SELF, &ru);

	printf("{\"compile_full_s_10000\": %.4f, \"compile_full_write_s_10000\": %.4f, "
	       "\"compile_entries_10000\": %u, \"update_policy_ms_p50\": %.3f, \"update_policy_ms_p99\": %.3f, "
	       "\"update_pod_ms_p50\": %.3f, \"update_pod_ms_p99\": %.3f, \"daemon_peak_rss_mb\": %.1f}\n",
	       t_compile / 1e9, t_commit / 1e9, st.entries[MOAT_T_POL], pol50, pol99, pod50, pod99,
	       ru.ru_maxrss / 1024.0);
	free(lat);
	moat_compiler_free(c);
	moat_dp_close(dp);
	return 0;
}
