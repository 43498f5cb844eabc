// SPDX-License-Identifier: Apache-2.0
/* Datapath benchmark (issue 2): per-packet cost under BPF_PROG_TEST_RUN and
 * throughput into a veth with live frames.  Prints one JSON object of
 * metrics on stdout, progress and the detail of every round on stderr.
 *
 *   build/bench/datapath [--repeat N] [--rounds N] [--veth-rounds N] [--veth-packets N]
 *                        [--cpu N] [--no-veth] [--xdp-filter OBJ] [--perf SECONDS]
 *
 * --perf samples the CPU running the test runs with `perf record -e cpu-clock`
 * for that many seconds per case (established, new flow, denied) and prints
 * the profile by symbol on stderr: the enforcer's subprograms (moat_parse,
 * moat_ip_lookup, decide, ...) and the kernel's map code show separately.
 *
 * Runs as root.  The process moves itself into a private, unnamed network
 * namespace (unshare) holding the veth pair mbench-a <-> mbench-b, so
 * everything it creates there (links, XDP attachments, nftables tables,
 * iptables rules) disappears with the process, whatever way it ends.
 *
 * The world (real objects through the real decoder and compiler): 1,000
 * namespaces ns-0..ns-999, 100 pods each (100,000 pods, every pod IP in the
 * ipcache), pod p-j labelled app=a(j%10), so 10 identities per namespace.
 * Each namespace ns-i is one node n<i>; this node is n0.  "N rules" = N
 * NetworkPolicy objects, policy number i (0 <= i < N) living in namespace
 * ns-(i%1000) with k = i/1000:
 *     podSelector app=a<k>, policyTypes [Ingress],
 *     ingress: [ { from: [ podSelector app=a<(k+1)%10> ], ports: [ TCP 8000+k ] } ]
 * i.e. one rule (one peer, one port) per policy, each selecting a distinct
 * subject identity.  N = 10, 1,000 and 10,000 are applied incrementally
 * (the first N policies), each as one generation.
 *
 * The measured flow is allowed by policy 0: ns-0/p-1 (app=a1, 10.16.0.2)
 * -> ns-0/p-0 (app=a0, 10.16.0.1) TCP 40000 -> 8000, seen by moat_from_pod
 * on the host-side interface of p-1 (the endpoint table names mbench-b as
 * p-1's interface).  The denied packet: the same pods, TCP SYN to port 9999
 * (p-0 is isolated and no rule allows 9999).
 */
#include <errno.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/in.h>
#include <netpacket/packet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <jansson.h>

#include "compile.h"
#include "decode.h"
#include "dp.h"
#include "dpfix.h"
#include "pkt.h"
#include "util.h"
#include "xdp/bench.skel.h"

#define NNS         1000
#define PODS_PER_NS 100
#define NAPPS       10
#define MAX_ROUNDS  64

static unsigned opt_repeat = 1000000, opt_rounds = 9, opt_veth_rounds = 5, opt_cpu = 1;
static unsigned opt_veth_pkts = 2000000;
static bool opt_veth = true;
static unsigned opt_perf; /* seconds of perf sampling per case; 0 = off */
static const char *opt_filt = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_all.o";

static const char *const VETH[2] = { "mbench-a", "mbench-b" };

/* ---- output --------------------------------------------------------------- */
struct metric {
	char name[64];
	double v;
};
static struct metric metrics[256];
static int nmetrics;

static void put(const char *name, double v)
{
	for (int i = 0; i < nmetrics; i++) {
		if (!strcmp(metrics[i].name, name)) {
			metrics[i].v = v;
			return;
		}
	}
	if (nmetrics < (int)(sizeof(metrics) / sizeof(metrics[0]))) {
		snprintf(metrics[nmetrics].name, sizeof(metrics[nmetrics].name), "%s", name);
		metrics[nmetrics++].v = v;
	}
}

static void putf(double v, const char *fmt, ...)
{
	char name[64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	put(name, v);
}

static void print_metrics(void)
{
	printf("{");
	for (int i = 0; i < nmetrics; i++)
		printf("%s\n  \"%s\": %.4g", i ? "," : "", metrics[i].name, metrics[i].v);
	printf("\n}\n");
}

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "datapath bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "  ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[MAX_ROUNDS];

	if (n <= 0)
		return 0;
	memcpy(s, v, (size_t)n * sizeof(*s));
	qsort(s, (size_t)n, sizeof(*s), cmp_dbl);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double best_min(const double *v, int n)
{
	double b = v[0];

	for (int i = 1; i < n; i++)
		if (v[i] < b)
			b = v[i];
	return b;
}

static double best_max(const double *v, int n)
{
	double b = v[0];

	for (int i = 1; i < n; i++)
		if (v[i] > b)
			b = v[i];
	return b;
}

static double loadavg1(void)
{
	double v = -1;
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fscanf(f, "%lf", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static void sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	if (rc != 0)
		die("command failed (%d): %s", rc, cmd);
}

/* First number after "needle" in a command's output; -1 if none. */
static long long sh_number(const char *needle, const char *fmt, ...)
{
	char cmd[1024], line[1024];
	long long v = -1;
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, needle);
		if (p && v < 0)
			v = strtoll(p + strlen(needle), NULL, 10);
	}
	pclose(f);
	return v;
}

/* ---- the world -------------------------------------------------------------- */
static struct moat_object *dec(json_t *j)
{
	struct moat_object *o = NULL;
	char err[512];

	if (!j)
		die("json_pack failed");
	if (moat_decode(j, "bench", &o, err, sizeof(err)) || !o)
		die("decode: %s", err);
	json_decref(j);
	return o;
}

static void pod_ip(int ns, int j, char *buf, size_t len)
{
	int id = ns * PODS_PER_NS + j + 1;

	snprintf(buf, len, "10.%d.%d.%d", 16 + (id >> 16), (id >> 8) & 0xff, id & 0xff);
}

static json_t *pod_json(int ns, int j)
{
	char ip[32], name[32], nsn[32], app[16], node[16];

	pod_ip(ns, j, ip, sizeof(ip));
	snprintf(name, sizeof(name), "p-%d", j);
	snprintf(nsn, sizeof(nsn), "ns-%d", ns);
	snprintf(app, sizeof(app), "a%d", j % NAPPS);
	snprintf(node, sizeof(node), "n%d", ns);
	return json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:{s:s,s:[{s:s}]},s:{s:s}}", "apiVersion", "v1",
			 "kind", "Pod", "metadata", "name", name, "namespace", nsn, "labels", "app", app,
			 "spec", "nodeName", node, "containers", "name", "c", "status", "podIP", ip);
}

static json_t *policy_json(int i)
{
	int ns = i % NNS, k = i / NNS;
	char name[32], nsn[32], sel[16], from[16];

	snprintf(name, sizeof(name), "np-%d", k);
	snprintf(nsn, sizeof(nsn), "ns-%d", ns);
	snprintf(sel, sizeof(sel), "a%d", k % NAPPS);
	snprintf(from, sizeof(from), "a%d", (k + 1) % NAPPS);
	return json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:{s:{s:s}},s:[s],"
			 "s:[{s:[{s:{s:{s:s}}}],s:[{s:s,s:i}]}]}}",
			 "apiVersion", "networking.k8s.io/v1", "kind", "NetworkPolicy", "metadata", "name",
			 name, "namespace", nsn, "spec", "podSelector", "matchLabels", "app", sel,
			 "policyTypes", "Ingress", "ingress", "from", "podSelector", "matchLabels", "app",
			 from, "ports", "protocol", "TCP", "port", 8000 + k);
}

/* Compiles what changed and makes it live in dp. */
static void flush_into(struct moat_compiler *c, struct moat_dp *dp, struct moat_flush_stats *st)
{
	struct moat_tx *tx;
	char err[256];

	if (moat_tx_begin(dp, false, &tx))
		die("tx_begin");
	if (moat_compiler_flush(c, tx, st, err, sizeof(err)))
		die("flush: %s", err);
	if (moat_tx_commit(tx, NULL))
		die("commit failed");
	moat_compiler_commit(c);
	if (moat_dp_settle(dp))
		die("settle failed");
}

static int live_fd_named(struct moat_dp *dp, const char *base)
{
	char name[32];
	__u32 active = __atomic_load_n(&moat_dp_config(dp)->active, __ATOMIC_ACQUIRE) & 1;

	snprintf(name, sizeof(name), "%s_%c", base, active ? 'b' : 'a');
	return moat_dp_map_fd(dp, name);
}

static int live_fd(struct moat_dp *dp, enum moat_tbl t)
{
	return live_fd_named(dp, moat_tbl_name(t));
}

/* A second datapath instance gets the same tables: the difference between
 * the live slots of the two, as one transaction.  (Not a full transaction:
 * the loader empties a slot key by key from the first key each time, which
 * is quadratic in the table size -- 30 s for 100,000 ipcache entries.) */
static void clone_tables(struct moat_dp *from, struct moat_dp *to)
{
	struct moat_tx *tx;
	__u8 key[64], next[64], val[64], oval[64];

	if (moat_tx_begin(to, false, &tx))
		die("tx_begin (clone)");
	for (int t = 0; t < MOAT_T_MAX; t++) {
		int fd = live_fd(from, t), ofd = live_fd(to, t);
		size_t vs = moat_tbl_value_size(t);
		void *prev = NULL;

		if (fd < 0 || ofd < 0)
			die("no live map for table %s", moat_tbl_name(t));
		/* entries that are new or differ */
		while (bpf_map_get_next_key(fd, prev, next) == 0) {
			memcpy(key, next, sizeof(key));
			prev = key;
			if (bpf_map_lookup_elem(fd, key, val))
				continue;
			if (!bpf_map_lookup_elem(ofd, key, oval) && !memcmp(val, oval, vs))
				continue;
			if (moat_tx_put(tx, t, key, val))
				die("tx_put (clone)");
		}
		/* entries the source no longer has (arrays: every index exists) */
		if (t == MOAT_T_SUBJ)
			continue;
		prev = NULL;
		while (bpf_map_get_next_key(ofd, prev, next) == 0) {
			memcpy(key, next, sizeof(key));
			prev = key;
			if (bpf_map_lookup_elem(fd, key, val) && errno == ENOENT && moat_tx_del(tx, t, key))
				die("tx_del (clone)");
		}
	}
	/* endpoints of small ifindexes: the array beside moat_ep */
	{
		int fd = live_fd_named(from, MOAT_TBL_EPA), ofd = live_fd_named(to, MOAT_TBL_EPA);
		struct moat_endpoint ep, oep;

		for (__u32 i = 0; i < MOAT_EP_ARRAY_MAX; i++) {
			if (bpf_map_lookup_elem(fd, &i, &ep) || bpf_map_lookup_elem(ofd, &i, &oep))
				die("endpoint array (clone)");
			if (!memcmp(&ep, &oep, sizeof(ep)))
				continue;
			if ((ep.flags & MOAT_EP_F_VALID) ? moat_tx_put(tx, MOAT_T_EP, &i, &ep) :
							   moat_tx_del(tx, MOAT_T_EP, &i))
				die("tx_put (clone)");
		}
	}
	if (moat_tx_commit(tx, NULL) || moat_dp_settle(to))
		die("commit (clone)");
}

/* ---- running programs ------------------------------------------------------- */
static int trun(int fd, int ifindex, const void *data, size_t len, __u32 repeat, double *ns)
{
	LIBBPF_OPTS(bpf_test_run_opts, o);
	struct xdp_md ctx = { .data_end = (__u32)len, .ingress_ifindex = (__u32)ifindex };

	o.data_in = data;
	o.data_size_in = (__u32)len;
	o.ctx_in = &ctx;
	o.ctx_size_in = sizeof(ctx);
	o.repeat = repeat;
	if (bpf_prog_test_run_opts(fd, &o))
		return -errno;
	if (ns)
		*ns = o.duration;
	return (int)o.retval;
}

static void trun_expect(const char *what, int fd, int ifindex, const struct pkt *p, int want)
{
	int rc = trun(fd, ifindex, p->data, p->len, 1, NULL);

	if (rc != want)
		die("%s: XDP action %d, expected %d", what, rc, want);
}

static __u64 dstat(struct moat_dp *dp, __u32 idx)
{
	__u64 pk = 0, by = 0;

	if (moat_dp_stat(dp, idx, &pk, &by))
		die("stat %u", idx);
	return pk;
}

/* ---- micro-programs: the cost of single operations ------------------------- */
#define INS(c, d, s, o, i) \
	((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define R0 BPF_REG_0
#define R1 BPF_REG_1
#define R2 BPF_REG_2
#define R3 BPF_REG_3
#define R4 BPF_REG_4
#define FP BPF_REG_10

struct prog {
	struct bpf_insn i[1024];
	int n;
};

static void ins(struct prog *p, struct bpf_insn x)
{
	if (p->n >= (int)(sizeof(p->i) / sizeof(p->i[0])))
		die("micro-program too long");
	p->i[p->n++] = x;
}

static void ld_map(struct prog *p, int reg, int fd)
{
	ins(p, INS(BPF_LD | BPF_DW | BPF_IMM, reg, BPF_PSEUDO_MAP_FD, 0, fd));
	ins(p, INS(0, 0, 0, 0, 0));
}

static void stack_ptr(struct prog *p, int reg, int off)
{
	ins(p, INS(BPF_ALU64 | BPF_MOV | BPF_X, reg, FP, 0, 0));
	ins(p, INS(BPF_ALU64 | BPF_ADD | BPF_K, reg, 0, 0, off));
}

/* Stores len bytes (multiple of 4) at fp+off. */
static void stack_bytes(struct prog *p, int off, const void *data, size_t len)
{
	for (size_t k = 0; k < len; k += 4) {
		__s32 w;
		memcpy(&w, (const __u8 *)data + k, 4);
		ins(p, INS(BPF_ST | BPF_MEM | BPF_W, FP, 0, (__s16)(off + (int)k), w));
	}
}

static void call(struct prog *p, int fn)
{
	ins(p, INS(BPF_JMP | BPF_CALL, 0, 0, 0, fn));
}

static int prog_load(struct prog *p)
{
	static char log[65536];
	LIBBPF_OPTS(bpf_prog_load_opts, o, .log_buf = log, .log_size = sizeof(log), .log_level = 0);
	int fd;

	ins(p, INS(BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, XDP_PASS));
	ins(p, INS(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
	fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "mbench_micro", "GPL", p->i, (size_t)p->n, &o);
	if (fd < 0) {
		o.log_level = 1;
		fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "mbench_micro", "GPL", p->i, (size_t)p->n, &o);
		die("micro-program load: %s\n%s", strerror(errno), log);
	}
	return fd;
}

enum micro_kind {
	M_LOOKUP,      /* bpf_map_lookup_elem(map, key) */
	M_OUTER_INNER, /* outer array-of-maps [slot], then inner lookup */
	M_UPDATE,      /* bpf_map_update_elem(map, key, 64 zero bytes, BPF_ANY) */
	M_HELPER,      /* a helper without arguments */
};

#define MICRO_N 16

static int micro_prog(enum micro_kind kind, int fd, const void *key, size_t ksz, __u32 slot, int n)
{
	struct prog p = { .n = 0 };
	const int KEY = -64, SLOT = -72, VAL = -160;

	if (kind != M_HELPER)
		stack_bytes(&p, KEY, key, ksz);
	if (kind == M_OUTER_INNER)
		stack_bytes(&p, SLOT, &slot, 4);
	if (kind == M_UPDATE)
		for (int k = 0; k < 64; k += 8)
			ins(&p, INS(BPF_ST | BPF_MEM | BPF_DW, FP, 0, (__s16)(VAL + k), 0));
	for (int r = 0; r < n; r++) {
		switch (kind) {
		case M_LOOKUP:
			ld_map(&p, R1, fd);
			stack_ptr(&p, R2, KEY);
			call(&p, BPF_FUNC_map_lookup_elem);
			break;
		case M_OUTER_INNER:
			ld_map(&p, R1, fd);
			stack_ptr(&p, R2, SLOT);
			call(&p, BPF_FUNC_map_lookup_elem);
			ins(&p, INS(BPF_JMP | BPF_JEQ | BPF_K, R0, 0, 4, 0));
			ins(&p, INS(BPF_ALU64 | BPF_MOV | BPF_X, R1, R0, 0, 0));
			stack_ptr(&p, R2, KEY);
			call(&p, BPF_FUNC_map_lookup_elem);
			break;
		case M_UPDATE:
			ld_map(&p, R1, fd);
			stack_ptr(&p, R2, KEY);
			stack_ptr(&p, R3, VAL);
			ins(&p, INS(BPF_ALU64 | BPF_MOV | BPF_K, R4, 0, 0, BPF_ANY));
			call(&p, BPF_FUNC_map_update_elem);
			break;
		case M_HELPER:
			call(&p, fd); /* fd is the helper id here */
			break;
		}
	}
	return prog_load(&p);
}

/* ns per operation: (t(16 ops) - t(0 ops)) / 16, median over rounds, both
 * programs run side by side in each round. */
static double micro(const char *name, enum micro_kind kind, int fd, const void *key, size_t ksz, __u32 slot,
		    const struct pkt *pk, int ifindex)
{
	int f0 = micro_prog(kind, fd, key, ksz, slot, 0);
	int fn = micro_prog(kind, fd, key, ksz, slot, MICRO_N);
	double d[MAX_ROUNDS], t0 = 0, tn = 0;

	for (unsigned r = 0; r < opt_rounds; r++) {
		if (trun(f0, ifindex, pk->data, pk->len, opt_repeat, &t0) < 0 ||
		    trun(fn, ifindex, pk->data, pk->len, opt_repeat, &tn) < 0)
			die("micro %s: test run failed", name);
		d[r] = (tn - t0) / MICRO_N;
	}
	close(f0);
	close(fn);
	note("op %-28s %6.1f ns", name, median(d, (int)opt_rounds));
	return median(d, (int)opt_rounds);
}

/* ---- xdp-filter, the peer ------------------------------------------------------ */
#define XF_SRC (1u << 0)
#define XF_DST (1u << 1)
#define XF_TCP (1u << 2)

struct xfilt {
	struct bpf_object *obj;
	int prog_fd;
};

static int percpu_put(int fd, const void *key, __u64 v)
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 vals[256];

	if (ncpu <= 0 || ncpu > 256)
		return -EINVAL;
	for (int i = 0; i < ncpu; i++)
		vals[i] = v;
	return bpf_map_update_elem(fd, key, vals, BPF_ANY) ? -errno : 0;
}

/* xdp-filter in allow mode (a hit on a matching field drops), its tables
 * holding an entry for every field of the measured packet -- each one for
 * the other direction, so every lookup hits and the packet still passes --
 * and the IPv4 table filled to its 10,000 entries. */
static int xfilt_open(struct xfilt *x, const __u8 *dmac, const __u8 *smac, __be32 saddr, __be32 daddr,
		      __u16 sport, __u16 dport)
{
	struct bpf_program *prog;
	struct bpf_map *m;
	int fd;

	x->obj = bpf_object__open_file(opt_filt, NULL);
	if (!x->obj)
		return -errno;
	bpf_object__for_each_map(m, x->obj)
		bpf_map__set_pin_path(m, NULL);
	if (bpf_object__load(x->obj))
		return -errno;
	prog = bpf_object__next_program(x->obj, NULL);
	if (!prog)
		return -ENOENT;
	x->prog_fd = bpf_program__fd(prog);

	fd = bpf_object__find_map_fd_by_name(x->obj, "filter_ethernet");
	if (fd >= 0) {
		__u8 k[6];
		memcpy(k, dmac, 6);
		percpu_put(fd, k, XF_SRC);
		memcpy(k, smac, 6);
		percpu_put(fd, k, XF_DST);
	}
	fd = bpf_object__find_map_fd_by_name(x->obj, "filter_ipv4");
	if (fd >= 0) {
		percpu_put(fd, &daddr, XF_SRC);
		percpu_put(fd, &saddr, XF_DST);
		for (int i = 0; i < 9998; i++) {
			__be32 a = htonl(0x0a400000u + (__u32)i); /* 10.64.x.x: no pod */
			percpu_put(fd, &a, XF_SRC | XF_DST);
		}
	}
	fd = bpf_object__find_map_fd_by_name(x->obj, "filter_ports");
	if (fd >= 0) {
		__u32 k = htons(dport);
		percpu_put(fd, &k, XF_SRC | XF_TCP);
		k = htons(sport);
		percpu_put(fd, &k, XF_DST | XF_TCP);
	}
	return 0;
}

/* ---- the network namespace ------------------------------------------------------ */
static void get_mac(const char *dev, __u8 mac[6])
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	if (s < 0 || ioctl(s, SIOCGIFHWADDR, &ifr))
		die("SIOCGIFHWADDR %s: %s", dev, strerror(errno));
	close(s);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
}

/* Receive counter of a device (every frame its NAPI took, whatever the XDP
 * program then did with it), from the kernel's link statistics. */
static __u64 rx_packets(const char *dev)
{
	struct ifaddrs *ifa, *i;
	__u64 v = 0;

	if (getifaddrs(&ifa))
		die("getifaddrs: %s", strerror(errno));
	for (i = ifa; i; i = i->ifa_next) {
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_PACKET && i->ifa_data &&
		    !strcmp(i->ifa_name, dev))
			v = ((struct rtnl_link_stats *)i->ifa_data)->rx_packets;
	}
	freeifaddrs(ifa);
	return v;
}

static void pin_cpu(unsigned cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity(%u): %s", cpu, strerror(errno));
}

/* ---- packets -------------------------------------------------------------------- */
static void tcp_pkt(struct pkt *p, const __u8 *dmac, const __u8 *smac, const char *s, const char *d, __u16 sp,
		    __u16 dpt, __u8 flags)
{
	pkt_init(p);
	pkt_eth(p, dmac, smac);
	pkt_ip4(p, pkt_a4(s), pkt_a4(d));
	pkt_tcp(p, sp, dpt, flags);
	if (pkt_finish(p))
		die("packet build failed");
}

/* Source lines of the enforcer's JITed code, from the kernel's line info:
 * samples are attributed to the last line record at or before their
 * address, across the program and its subprograms. */
struct jline {
	__u64 addr;
	const char *file, *text;
	__u32 line;
	unsigned long hits;
};

static int cmp_jline_addr(const void *a, const void *b)
{
	const struct jline *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int cmp_jline_hits(const void *a, const void *b)
{
	const struct jline *x = a, *y = b;
	return x->hits > y->hits ? -1 : x->hits < y->hits;
}

static void perf_lines(int prog_fd, const char *data)
{
	struct bpf_prog_info info = { 0 };
	__u32 ilen = sizeof(info), nl, nj;
	struct bpf_line_info *li;
	__u64 *jli, *ksyms, lo = ~0ull;
	__u32 *jlens, nk;
	struct btf *btf;
	struct jline *jl;
	unsigned long total = 0, other = 0;
	char cmd[256], line[128];
	FILE *f;

	if (bpf_obj_get_info_by_fd(prog_fd, &info, &ilen))
		return;
	nl = info.nr_line_info;
	nj = info.nr_jited_line_info;
	nk = info.nr_jited_ksyms;
	if (!nl || nl != nj || !info.btf_id) {
		note("no line info for the program");
		return;
	}
	li = calloc(nl, sizeof(*li));
	jli = calloc(nj, sizeof(*jli));
	ksyms = calloc(nk, sizeof(*ksyms));
	jlens = calloc(nk, sizeof(*jlens));
	jl = calloc(nl, sizeof(*jl));
	memset(&info, 0, sizeof(info));
	info.nr_line_info = nl;
	info.line_info_rec_size = sizeof(*li);
	info.line_info = (__u64)(unsigned long)li;
	info.nr_jited_line_info = nj;
	info.jited_line_info_rec_size = sizeof(__u64);
	info.jited_line_info = (__u64)(unsigned long)jli;
	info.nr_jited_ksyms = nk;
	info.jited_ksyms = (__u64)(unsigned long)ksyms;
	info.nr_jited_func_lens = nk;
	info.jited_func_lens = (__u64)(unsigned long)jlens;
	ilen = sizeof(info);
	if (bpf_obj_get_info_by_fd(prog_fd, &info, &ilen))
		goto out;
	btf = btf__load_from_kernel_by_id(info.btf_id);
	if (!btf)
		goto out;
	for (__u32 i = 0; i < nl; i++) {
		const char *fn = btf__name_by_offset(btf, li[i].file_name_off);
		const char *sl = fn ? strrchr(fn, '/') : NULL;
		jl[i].addr = jli[i];
		jl[i].file = sl ? sl + 1 : fn ? fn : "?";
		jl[i].text = btf__name_by_offset(btf, li[i].line_off);
		jl[i].line = BPF_LINE_INFO_LINE_NUM(li[i].line_col);
		if (jli[i] < lo)
			lo = jli[i];
	}
	qsort(jl, nl, sizeof(*jl), cmp_jline_addr);
	snprintf(cmd, sizeof(cmd), "perf script -i %s -F ip 2>/dev/null", data);
	f = popen(cmd, "r");
	while (f && fgets(line, sizeof(line), f)) {
		__u64 ip = strtoull(line, NULL, 16);
		bool in = false;
		total++;
		for (__u32 k = 0; k < nk; k++)
			if (ip >= ksyms[k] && ip < ksyms[k] + jlens[k])
				in = true;
		if (!in) {
			other++;
			continue;
		}
		/* last record at or before ip */
		__u32 a = 0, b = nl;
		while (b - a > 1) {
			__u32 m = (a + b) / 2;
			if (jl[m].addr <= ip)
				a = m;
			else
				b = m;
		}
		jl[a].hits++;
	}
	if (f)
		pclose(f);
	qsort(jl, nl, sizeof(*jl), cmp_jline_hits);
	fprintf(stderr, "  by source line (%% of all samples; %.1f%% outside the enforcer's own code):\n",
		total ? 100.0 * other / total : 0);
	for (__u32 i = 0; i < nl && i < 25 && jl[i].hits; i++) {
		const char *t = jl[i].text ? jl[i].text : "";
		while (*t == ' ' || *t == '\t')
			t++;
		fprintf(stderr, "  %5.1f%%  %s:%u  %.90s\n", 100.0 * jl[i].hits / total, jl[i].file,
			jl[i].line, t);
	}
	btf__free(btf);
out:
	free(li);
	free(jli);
	free(ksyms);
	free(jlens);
	free(jl);
}

/* Samples the benchmark CPU while one case runs, prints the profile by
 * symbol and by source line. */
static void perf_case(const char *name, int fd, int ifindex, const struct pkt *p)
{
	char data[64], cmd[512];
	uint64_t end;
	pid_t pid;
	int st;

	snprintf(data, sizeof(data), "/tmp/mbench-perf-%d.data", (int)getpid());
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		char secs[16], cpu[16];
		snprintf(secs, sizeof(secs), "%u", opt_perf);
		snprintf(cpu, sizeof(cpu), "%u", opt_cpu);
		execlp("perf", "perf", "record", "-q", "-e", "cpu-clock", "-F", "20000", "-C", cpu, "-o",
		       data, "--", "sleep", secs, (char *)NULL);
		_exit(127);
	}
	usleep(300000);
	end = moat_now_ns() + (uint64_t)opt_perf * 1000000000ull;
	while (moat_now_ns() < end)
		if (trun(fd, ifindex, p->data, p->len, 100000, NULL) < 0)
			break;
	waitpid(pid, &st, 0);
	fprintf(stderr, "profile: %s\n", name);
	snprintf(cmd, sizeof(cmd),
		 "perf report -q -i %s --stdio --sort sym 2>/dev/null | awk 'NF && n++ < 16' >&2", data);
	if (system(cmd) != 0)
		note("perf report failed");
	perf_lines(fd, data);
	unlink(data);
}

/* ---- main ------------------------------------------------------------------------- */
int main(int argc, char **argv)
{
	static const struct option lopts[] = { { "repeat", required_argument, NULL, 'r' },
					       { "rounds", required_argument, NULL, 'R' },
					       { "veth-rounds", required_argument, NULL, 'W' },
					       { "veth-packets", required_argument, NULL, 'v' },
					       { "cpu", required_argument, NULL, 'c' },
					       { "no-veth", no_argument, NULL, 'V' },
					       { "xdp-filter", required_argument, NULL, 'x' },
					       { "perf", required_argument, NULL, 'p' },
					       { 0 } };
	static const int phases[] = { 10, 1000, 10000 };
	struct moat_dp_opts dpo = { .no_pin = true, .events = true };
	struct moat_dp *dp_ct, *dp_new;
	struct moat_compiler_opts co = { .node = "n0" };
	struct moat_compiler *c;
	struct moat_flush_stats st;
	struct bench_bpf *bb;
	struct xfilt xf = { 0 };
	struct pkt syn, synack, ack, deny;
	char s_ip[32], d_ip[32];
	__u8 mac_a[6], mac_b[6];
	int if_a, if_b, fd_from, fd_to, fd_new_from, fd_floor, o;
	int npol = 0;
	double floor_all[MAX_ROUNDS * 3];
	int nfloor_all = 0;
	uint64_t t0;

	while ((o = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (o) {
		case 'r':
			opt_repeat = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'R':
			opt_rounds = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'W':
			opt_veth_rounds = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'v':
			opt_veth_pkts = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'c':
			opt_cpu = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'V':
			opt_veth = false;
			break;
		case 'x':
			opt_filt = optarg;
			break;
		case 'p':
			opt_perf = (unsigned)strtoul(optarg, NULL, 0);
			break;
		default:
			return 2;
		}
	}
	if (opt_rounds < 1 || opt_rounds > MAX_ROUNDS || opt_veth_rounds < 1 || opt_veth_rounds > MAX_ROUNDS)
		die("--rounds and --veth-rounds must be 1..%d", MAX_ROUNDS);
	if (geteuid() != 0)
		die("needs root (BPF, network namespaces)");
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stderr, NULL, _IOLBF, 0);
	libbpf_set_print(NULL);
	if (opt_cpu >= (unsigned)libbpf_num_possible_cpus())
		opt_cpu = 0;
	pin_cpu(opt_cpu);
	put("bench_loadavg_start", loadavg1());

	/* a private network namespace with the veth pair */
	{
		int ifx[2];
		if (fix_private_netns(VETH, ifx))
			die("private netns with veth pair failed");
		if_a = ifx[0];
		if_b = ifx[1];
		sh("ip link set dev lo up && ip link set dev %s up && ip link set dev %s up", VETH[0],
		   VETH[1]);
		/* the receiver takes frames without an XDP program only with GRO */
		sh("ethtool -K %s gro on >/dev/null 2>&1", VETH[1]);
		get_mac(VETH[0], mac_a);
		get_mac(VETH[1], mac_b);
	}

	/* datapaths: conntrack as shipped, and every packet a new flow */
	t0 = moat_now_ns();
	if (moat_dp_open(&dpo, &dp_ct, NULL))
		die("loading the datapath failed");
	dpo.bench_no_ct = true;
	dpo.events = false;
	if (moat_dp_open(&dpo, &dp_new, NULL))
		die("loading the no-conntrack datapath failed");
	note("two datapath instances loaded in %.1f s", (moat_now_ns() - t0) / 1e9);
	fd_from = moat_dp_prog_fd(dp_ct, MOAT_HOOK_FROM_POD);
	fd_to = moat_dp_prog_fd(dp_ct, MOAT_HOOK_TO_POD);
	fd_new_from = moat_dp_prog_fd(dp_new, MOAT_HOOK_FROM_POD);
	bb = bench_bpf__open_and_load();
	if (!bb)
		die("bench programs: %s", strerror(errno));
	fd_floor = bpf_program__fd(bb->progs.bench_pass);

	/* the world */
	for (int t = 0; t < MOAT_T_MAX; t++)
		co.cap[t] = moat_dp_tbl_capacity(dp_ct, t);
	if (moat_compiler_new(&co, &c))
		die("compiler");
	t0 = moat_now_ns();
	for (int i = 0; i < NNS; i++) {
		char nsn[32], team[16];
		snprintf(nsn, sizeof(nsn), "ns-%d", i);
		snprintf(team, sizeof(team), "t%d", i % 20);
		moat_compiler_apply(c, dec(json_pack("{s:s,s:s,s:{s:s,s:{s:s}}}", "apiVersion", "v1", "kind",
						     "Namespace", "metadata", "name", nsn, "labels", "team",
						     team)));
		for (int j = 0; j < PODS_PER_NS; j++)
			moat_compiler_apply(c, dec(pod_json(i, j)));
	}
	if (moat_compiler_set_endpoint(c, "ns-0", "p-1", if_b))
		die("endpoint");
	note("world: %d namespaces, %d pods (%.1f s)", NNS, NNS * PODS_PER_NS, (moat_now_ns() - t0) / 1e9);

	pod_ip(0, 1, s_ip, sizeof(s_ip));
	pod_ip(0, 0, d_ip, sizeof(d_ip));
	tcp_pkt(&syn, mac_b, mac_a, s_ip, d_ip, 40000, 8000, PKT_TCP_SYN);
	tcp_pkt(&synack, mac_a, mac_b, d_ip, s_ip, 8000, 40000, PKT_TCP_SYN | PKT_TCP_ACK);
	tcp_pkt(&ack, mac_b, mac_a, s_ip, d_ip, 40000, 8000, PKT_TCP_ACK);
	tcp_pkt(&deny, mac_b, mac_a, s_ip, d_ip, 40001, 9999, PKT_TCP_SYN);
	putf((double)ack.len, "xdp_packet_bytes");

	if (xfilt_open(&xf, mac_b, mac_a, pkt_a4(s_ip), pkt_a4(d_ip), 40000, 8000))
		die("xdp-filter %s did not load", opt_filt);

	/* ---- 1. per-packet cost, BPF_PROG_TEST_RUN ---------------------------------- */
	fprintf(stderr, "per-packet cost: repeat %u, %u rounds, CPU %u\n", opt_repeat, opt_rounds, opt_cpu);
	for (size_t ph = 0; ph < sizeof(phases) / sizeof(phases[0]); ph++) {
		int n = phases[ph];
		double fl[MAX_ROUNDS], est[MAX_ROUNDS], nf[MAX_ROUNDS], xfv[MAX_ROUNDS], est_to[MAX_ROUNDS],
			dn[MAX_ROUNDS];
		__u64 ce0, ce1, cn0, cn1;
		__u32 counts[MOAT_T_MAX];

		t0 = moat_now_ns();
		for (; npol < n; npol++)
			moat_compiler_apply(c, dec(policy_json(npol)));
		flush_into(c, dp_ct, &st);
		clone_tables(dp_ct, dp_new);
		moat_compiler_counts(c, counts);
		note("%d rules: %u identities, %u decision entries, %u ipcache entries, "
		     "%u subjects (%.1f s)",
		     n, st.identities, counts[MOAT_T_POL], counts[MOAT_T_IP4], counts[MOAT_T_SUBJ],
		     (moat_now_ns() - t0) / 1e9);
		putf(counts[MOAT_T_POL], "xdp_decision_entries_%d", n);
		putf(counts[MOAT_T_IP4], "xdp_ipcache_entries_%d", n);

		/* the flow: SYN, SYN-ACK (so it is established), then ACKs */
		moat_dp_ct_flush(dp_ct);
		trun_expect("SYN of the allowed flow", fd_from, if_b, &syn, XDP_PASS);
		trun_expect("SYN-ACK of the allowed flow", fd_to, if_b, &synack, XDP_PASS);
		trun_expect("ACK of the allowed flow", fd_from, if_b, &ack, XDP_PASS);
		trun_expect("the denied packet", fd_new_from, if_b, &deny, XDP_DROP);
		trun_expect("new flow", fd_new_from, if_b, &syn, XDP_PASS);
		trun_expect("xdp-filter", xf.prog_fd, if_b, &ack, XDP_PASS);

		ce0 = dstat(dp_ct, MOAT_STAT_CT_ESTABLISHED);
		cn0 = dstat(dp_new, MOAT_STAT_CT_NEW);
		for (unsigned r = 0; r < opt_rounds; r++) {
			if (trun(fd_floor, if_b, ack.data, ack.len, opt_repeat, &fl[r]) != XDP_PASS ||
			    trun(fd_from, if_b, ack.data, ack.len, opt_repeat, &est[r]) != XDP_PASS ||
			    trun(fd_new_from, if_b, syn.data, syn.len, opt_repeat, &nf[r]) != XDP_PASS ||
			    trun(xf.prog_fd, if_b, ack.data, ack.len, opt_repeat, &xfv[r]) != XDP_PASS ||
			    trun(fd_to, if_b, ack.data, ack.len, opt_repeat, &est_to[r]) != XDP_PASS ||
			    trun(fd_new_from, if_b, deny.data, deny.len, opt_repeat, &dn[r]) != XDP_DROP)
				die("test run failed or gave another verdict");
			note("%5d rules round %u: floor %5.1f  established %5.1f (to_pod %5.1f)  "
			     "new flow %5.1f  denied %5.1f  xdp-filter %5.1f ns",
			     n, r, fl[r], est[r], est_to[r], nf[r], dn[r], xfv[r]);
			floor_all[nfloor_all++] = fl[r];
		}
		ce1 = dstat(dp_ct, MOAT_STAT_CT_ESTABLISHED);
		cn1 = dstat(dp_new, MOAT_STAT_CT_NEW);
		/* every established run went through conntrack (from_pod and to_pod) */
		if (ce1 - ce0 != 2ull * opt_repeat * opt_rounds)
			die("established path not taken: %llu of %llu", (unsigned long long)(ce1 - ce0),
			    2ull * opt_repeat * opt_rounds);
		if (cn1 - cn0 != (__u64)opt_repeat * opt_rounds)
			die("new-flow path not taken: %llu of %llu", (unsigned long long)(cn1 - cn0),
			    (unsigned long long)opt_repeat * opt_rounds);
		putf(median(fl, (int)opt_rounds), "xdp_floor_ns_%d", n);
		putf(median(est, (int)opt_rounds), "xdp_established_ns_%d", n);
		putf(median(est_to, (int)opt_rounds), "xdp_established_to_pod_ns_%d", n);
		putf(median(nf, (int)opt_rounds), "xdp_new_flow_ns_%d", n);
		putf(median(dn, (int)opt_rounds), "xdp_denied_ns_%d", n);
		putf(median(xfv, (int)opt_rounds), "xdp_filter_peer_ns_%d", n);
		/* fastest round: what the code costs when nothing else ran on
		 * the CPU (other work only ever adds time) */
		putf(best_min(fl, (int)opt_rounds), "xdp_floor_ns_%d_best", n);
		putf(best_min(est, (int)opt_rounds), "xdp_established_ns_%d_best", n);
		putf(best_min(nf, (int)opt_rounds), "xdp_new_flow_ns_%d_best", n);
		putf(best_min(xfv, (int)opt_rounds), "xdp_filter_peer_ns_%d_best", n);
		if (n == 10000)
			put("xdp_filter_peer_ns", median(xfv, (int)opt_rounds));
	}
	put("xdp_floor_ns", median(floor_all, nfloor_all));

	/* ---- where the time goes: single operations on the real maps ------------- */
	fprintf(stderr, "single operations (16 in a row, minus 0 in a row), 10000 rules:\n");
	{
		__u32 slot = __atomic_load_n(&moat_dp_config(dp_ct)->active, __ATOMIC_ACQUIRE) & 1;
		struct moat_ip4_key ipk = { .addr = pkt_a4(d_ip) };
		struct moat_ct4_key ctk;
		struct moat_policy_key polk = { 0 }, polmiss;
		struct moat_ip_info ii;
		__u32 ifk = (__u32)if_b, statk = MOAT_STAT_CT_ESTABLISHED, idk;
		int ctfd = moat_dp_map_fd(dp_ct, MOAT_MAP_CT4);

		if (bpf_map_get_next_key(ctfd, NULL, &ctk))
			die("no conntrack entry");
		if (bpf_map_lookup_elem(live_fd(dp_ct, MOAT_T_IP4), &ipk, &ii))
			die("destination not in the ipcache");
		idk = ii.identity;
		polk.subject = ii.identity;
		ipk.addr = pkt_a4(s_ip);
		if (bpf_map_lookup_elem(live_fd(dp_ct, MOAT_T_IP4), &ipk, &ii))
			die("source not in the ipcache");
		polk.peer = ii.identity;
		polk.proto = IPPROTO_TCP;
		polk.port = 8000;
		{
			struct moat_policy_val pv;
			if (bpf_map_lookup_elem(live_fd(dp_ct, MOAT_T_POL), &polk, &pv))
				die("the allowing decision entry is not where expected");
		}
		polmiss = polk;
		polmiss.port = 9999;
		ipk.addr = pkt_a4(d_ip);

		put("op_hash_ipcache_ns",
		    micro("ipcache lookup (hit)", M_OUTER_INNER, moat_dp_map_fd(dp_ct, MOAT_TBL_IP4), &ipk,
			  sizeof(ipk), slot, &ack, if_b));
		put("op_array_endpoint_ns",
		    micro("endpoint lookup (inner array by ifindex)", M_OUTER_INNER,
			  moat_dp_map_fd(dp_ct, MOAT_TBL_EPA), &ifk, sizeof(ifk), slot, &ack, if_b));
		put("op_array_subject_ns",
		    micro("subject lookup (inner array)", M_OUTER_INNER, moat_dp_map_fd(dp_ct, MOAT_TBL_SUBJ),
			  &idk, sizeof(idk), slot, &ack, if_b));
		put("op_hash_policy_hit_ns",
		    micro("decision lookup (hit)", M_OUTER_INNER, moat_dp_map_fd(dp_ct, MOAT_TBL_POL), &polk,
			  sizeof(polk), slot, &ack, if_b));
		put("op_hash_policy_miss_ns",
		    micro("decision lookup (miss)", M_OUTER_INNER, moat_dp_map_fd(dp_ct, MOAT_TBL_POL),
			  &polmiss, sizeof(polmiss), slot, &ack, if_b));
		put("op_lru_ct_lookup_ns",
		    micro("conntrack lookup (hit)", M_LOOKUP, ctfd, &ctk, sizeof(ctk), 0, &ack, if_b));
		put("op_lru_ct_update_ns",
		    micro("conntrack update (replace)", M_UPDATE, moat_dp_map_fd(dp_new, MOAT_MAP_CT4), &ctk,
			  sizeof(ctk), 0, &ack, if_b));
		put("op_percpu_stat_ns",
		    micro("per-CPU counter lookup", M_LOOKUP, moat_dp_map_fd(dp_ct, MOAT_MAP_STATS), &statk,
			  sizeof(statk), 0, &ack, if_b));
		put("op_ktime_coarse_ns", micro("bpf_ktime_get_coarse_ns", M_HELPER,
						BPF_FUNC_ktime_get_coarse_ns, NULL, 0, 0, &ack, if_b));
		put("op_jiffies64_ns",
		    micro("bpf_jiffies64 (inlined)", M_HELPER, BPF_FUNC_jiffies64, NULL, 0, 0, &ack, if_b));
	}

	if (opt_perf) {
		perf_case("established (moat_from_pod, conntrack hit)", fd_from, if_b, &ack);
		perf_case("new flow (moat_from_pod, bench_no_ct)", fd_new_from, if_b, &syn);
		perf_case("denied (moat_from_pod, bench_no_ct)", fd_new_from, if_b, &deny);
	}

	/* ---- 2. throughput into a veth, live frames ---------------------------------- */
	if (opt_veth) {
		enum {
			S_BARE,
			S_MOAT,
			S_NFT,
			S_IPT,
			S_IPTL,
			S_NONE,
			S_MOAT_PASS,
			S_MAX
		};
		static const char *const sname[S_MAX] = {
			"veth_drop_mpps_bare",
			"veth_drop_mpps_moat",
			"veth_drop_mpps_nft",
			"veth_drop_mpps_iptables",
			"veth_drop_mpps_iptables_legacy",
			"veth_pass_mpps_none",
			"veth_pass_mpps_moat",
		};
		double mpps[S_MAX][MAX_ROUNDS];
		int fd_tx = bpf_program__fd(bb->progs.bench_tx);
		int fd_cnt = bpf_program__fd(bb->progs.bench_count_drop);
		int cnt_map = bpf_map__fd(bb->maps.bench_count);
		bool have_legacy = system("command -v iptables-legacy >/dev/null 2>&1") == 0;
		char rule[256];

		snprintf(rule, sizeof(rule), "-s %s -d %s -p tcp --dport 9999 -j DROP", s_ip, d_ip);
		fprintf(stderr,
			"veth throughput: %u live frames per run into %s, %u rounds, "
			"generator on CPU %u\n",
			opt_veth_pkts, VETH[1], opt_veth_rounds, opt_cpu);
		for (unsigned r = 0; r < opt_veth_rounds; r++) {
			/* each round starts with another set-up, so no set-up
			 * always runs right after the same other one */
			for (int si = 0; si < S_MAX; si++) {
				int s = (si + (int)r) % S_MAX;
				const struct pkt *fr = s >= S_NONE ? &ack : &deny;
				LIBBPF_OPTS(bpf_test_run_opts, to, .flags = BPF_F_TEST_XDP_LIVE_FRAMES);
				struct xdp_md ctx = { .data_end = (__u32)fr->len,
						      .ingress_ifindex = (__u32)if_a };
				__u64 rx0, rx1, c0 = 0, c1 = 0, pc[256] = { 0 };
				long long cnt = -1;
				double secs;
				__u32 zero = 0;
				int err = 0;

				if (s == S_IPTL && !have_legacy) {
					mpps[s][r] = 0;
					continue;
				}
				/* set up the receiver */
				switch (s) {
				case S_BARE:
					memset(pc, 0, sizeof(pc));
					bpf_map_update_elem(cnt_map, &zero, pc, BPF_ANY);
					err = bpf_xdp_attach(if_b, fd_cnt, XDP_FLAGS_DRV_MODE, NULL);
					break;
				case S_MOAT:
					c0 = dstat(dp_ct, MOAT_STAT_DROP(MOAT_DROP_POLICY));
					err = bpf_xdp_attach(if_b, fd_from, XDP_FLAGS_DRV_MODE, NULL);
					break;
				case S_MOAT_PASS:
					c0 = dstat(dp_ct, MOAT_STAT_CT_ESTABLISHED);
					err = bpf_xdp_attach(if_b, fd_from, XDP_FLAGS_DRV_MODE, NULL);
					break;
				case S_NFT:
					sh("nft -f - <<'EOF'\n"
					   "table inet mbench {\n"
					   "  chain pre { type filter hook prerouting priority raw; "
					   "ip saddr %s ip daddr %s tcp dport 9999 counter drop; }\n"
					   "}\nEOF",
					   s_ip, d_ip);
					break;
				case S_IPT:
					sh("iptables -t raw -A PREROUTING %s", rule);
					break;
				case S_IPTL:
					sh("iptables-legacy -t raw -A PREROUTING %s", rule);
					break;
				}
				if (err)
					die("XDP attach to %s: %s", VETH[1], strerror(-err));
				usleep(20000);
				rx0 = rx_packets(VETH[1]);
				ctx.data_end = (__u32)fr->len;
				to.data_in = fr->data;
				to.data_size_in = (__u32)fr->len;
				to.ctx_in = &ctx;
				to.ctx_size_in = sizeof(ctx);
				to.repeat = opt_veth_pkts;
				t0 = moat_now_ns();
				if (bpf_prog_test_run_opts(fd_tx, &to))
					die("live frames: %s", strerror(errno));
				secs = (moat_now_ns() - t0) / 1e9;
				usleep(50000); /* let the receiver's NAPI finish */
				rx1 = rx_packets(VETH[1]);
				/* the receiver's own count, and tear down */
				switch (s) {
				case S_BARE: {
					int ncpu = libbpf_num_possible_cpus();
					bpf_map_lookup_elem(cnt_map, &zero, pc);
					cnt = 0;
					for (int k = 0; k < ncpu && k < 256; k++)
						cnt += (long long)pc[k];
					bpf_xdp_detach(if_b, XDP_FLAGS_DRV_MODE, NULL);
					break;
				}
				case S_MOAT:
					c1 = dstat(dp_ct, MOAT_STAT_DROP(MOAT_DROP_POLICY));
					cnt = (long long)(c1 - c0);
					bpf_xdp_detach(if_b, XDP_FLAGS_DRV_MODE, NULL);
					break;
				case S_MOAT_PASS:
					c1 = dstat(dp_ct, MOAT_STAT_CT_ESTABLISHED);
					cnt = (long long)(c1 - c0);
					bpf_xdp_detach(if_b, XDP_FLAGS_DRV_MODE, NULL);
					break;
				case S_NFT:
					cnt = sh_number("packets ", "nft list table inet mbench");
					sh("nft delete table inet mbench");
					break;
				case S_IPT:
					cnt = sh_number("", "iptables -t raw -L PREROUTING -v -x -n | "
							    "awk 'NR==3{print $1}'");
					sh("iptables -t raw -D PREROUTING %s", rule);
					break;
				case S_IPTL:
					cnt = sh_number("", "iptables-legacy -t raw -L PREROUTING -v -x -n | "
							    "awk 'NR==3{print $1}'");
					sh("iptables-legacy -t raw -D PREROUTING %s", rule);
					break;
				case S_NONE:
					cnt = (long long)(rx1 - rx0);
					break;
				}
				/* the receiving side's count: what its program or rule saw */
				if (cnt < 0)
					die("%s: no receive count", sname[s]);
				mpps[s][r] = (double)cnt / secs / 1e6;
				note("round %u %-31s %6.3f Mpps  (received %lld, rx counter %llu, "
				     "sent %u in %.3f s)",
				     r, sname[s], mpps[s][r], cnt, (unsigned long long)(rx1 - rx0),
				     opt_veth_pkts, secs);
				if ((double)cnt < 0.5 * (double)opt_veth_pkts)
					note("  warning: fewer than half of the frames were counted");
			}
		}
		for (int s = 0; s < S_MAX; s++)
			if (s != S_IPTL || have_legacy)
				put(sname[s], median(mpps[s], (int)opt_veth_rounds));
		for (int s = 0; s < S_MAX; s++)
			if (s != S_IPTL || have_legacy)
				putf(best_max(mpps[s], (int)opt_veth_rounds), "%s_best", sname[s]);

		/* In-situ cost per packet on the receiver (kernel.bpf_stats run
		 * time / run count), in extra runs: the statistics themselves
		 * cost two clock reads per run, so they stay off above. */
		{
			static const struct {
				const char *name;
				int which; /* 0 bare drop, 1 moat deny, 2 moat pass */
			} cases[] = {
				{ "veth_insitu_ns_bare_drop", 0 },
				{ "veth_insitu_ns_moat_drop", 1 },
				{ "veth_insitu_ns_moat_pass", 2 },
			};
			int sfd = bpf_enable_stats(BPF_STATS_RUN_TIME);

			for (size_t k = 0; sfd >= 0 && k < sizeof(cases) / sizeof(cases[0]); k++) {
				int pfd = cases[k].which ? fd_from : fd_cnt;
				const struct pkt *fr = cases[k].which == 2 ? &ack : &deny;
				LIBBPF_OPTS(bpf_test_run_opts, to, .flags = BPF_F_TEST_XDP_LIVE_FRAMES);
				struct xdp_md ctx = { .data_end = (__u32)fr->len,
						      .ingress_ifindex = (__u32)if_a };
				struct bpf_prog_info i0 = { 0 }, i1 = { 0 };
				__u32 il = sizeof(i0);

				if (bpf_xdp_attach(if_b, pfd, XDP_FLAGS_DRV_MODE, NULL))
					die("XDP attach for in-situ statistics");
				usleep(20000);
				bpf_obj_get_info_by_fd(pfd, &i0, &il);
				to.data_in = fr->data;
				to.data_size_in = (__u32)fr->len;
				to.ctx_in = &ctx;
				to.ctx_size_in = sizeof(ctx);
				to.repeat = opt_veth_pkts;
				if (bpf_prog_test_run_opts(fd_tx, &to))
					die("live frames: %s", strerror(errno));
				usleep(50000);
				il = sizeof(i1);
				bpf_obj_get_info_by_fd(pfd, &i1, &il);
				bpf_xdp_detach(if_b, XDP_FLAGS_DRV_MODE, NULL);
				if (i1.run_cnt > i0.run_cnt) {
					double v = (double)(i1.run_time_ns - i0.run_time_ns) /
						   (double)(i1.run_cnt - i0.run_cnt);
					note("in situ %-26s %6.1f ns per packet (%llu runs)", cases[k].name,
					     v, (unsigned long long)(i1.run_cnt - i0.run_cnt));
					put(cases[k].name, v);
				}
			}
			if (sfd >= 0)
				close(sfd);
			else
				note("kernel.bpf_stats unavailable: no in-situ costs");
		}
	}

	put("bench_loadavg_end", loadavg1());
	print_metrics();
	if (xf.obj)
		bpf_object__close(xf.obj);
	bench_bpf__destroy(bb);
	moat_compiler_free(c);
	moat_dp_close(dp_new);
	moat_dp_close(dp_ct);
	return 0;
}
