// SPDX-License-Identifier: Apache-2.0
/* The flight recorder without a datapath: synthetic events through the
 * archive's sink (the interface events.c uses), read back by queries and by
 * the pcapng reader.  Partitions and tenancy (a tenant never receives
 * another namespace's packets or flows, nor the names of its policies),
 * filters, rotation by size and age, retention by age and bytes per
 * namespace and node-wide, crash recovery of a torn segment, a full disk
 * (RLIMIT_FSIZE) and queue overflow accounting; settings and parsers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "archive.h"
#include "compile.h"
#include "config.h"
#include "pkt.h"
#include "srcdir.h"
#include "util.h"

#define T0  1795849200000000000ull /* 2026-11-28T07:00:00Z */
#define SEC 1000000000ull

static const char *world =
	"apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {addresses: [{type: InternalIP, address: 10.99.0.1}]}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: a, labels: {app: x}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.1}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: z, namespace: a, labels: {app: z}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.3}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: y, namespace: b, labels: {app: y}}\n"
	"spec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.2}\n---\n"
	"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-from-b, namespace: b}\n"
	"spec: {podSelector: {matchLabels: {app: y}}, ingress: [{from: [{podSelector: {}}]}]}\n";

struct fx {
	char dir[256];
	char mdir[300];
	struct moat_compiler *c;
	struct moat_archive *a;
	uint64_t clock; /* fake wall clock; 0 = real */
	char log[16][512];
	int nlog;
	uint32_t deny_rule; /* a/x -> b/y: b's NetworkPolicy isolates */
	uint32_t id_x, id_y, id_z;
};

static uint64_t fake_clock(void *arg)
{
	struct fx *f = arg;
	return __atomic_load_n(&f->clock, __ATOMIC_ACQUIRE);
}

static void logger(void *arg, int level, const char *msg)
{
	struct fx *f = arg;
	(void)level;
	if (f->nlog < 16)
		snprintf(f->log[f->nlog++], sizeof(f->log[0]), "%s", msg);
}

static void no_err(void *arg, const char *msg)
{
	(void)arg;
	fail_msg("manifests: %s", msg);
}

static int rm_rf_cb(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (!d)
		return unlink(path);
	while ((de = readdir(d))) {
		char p[1024];
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
		rm_rf_cb(p);
	}
	closedir(d);
	return rmdir(path);
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct moat_compiler_opts co = { .node = "n1" };
	struct moat_tx *tx;
	struct moat_flush_stats st;
	struct moat_explain x;
	char err[512], path[400];
	FILE *m;

	snprintf(f->dir, sizeof(f->dir), "/tmp/moat-test-archive.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->mdir, sizeof(f->mdir), "%s.m", f->dir);
	assert_int_equal(mkdir(f->mdir, 0700), 0);
	snprintf(path, sizeof(path), "%s/world.yaml", f->mdir);
	m = fopen(path, "w");
	fputs(world, m);
	fclose(m);
	assert_int_equal(moat_compiler_new(&co, &f->c), 0);
	assert_int_equal(moat_srcdir_load_once(f->mdir, f->c, no_err, NULL), 0);
	assert_int_equal(moat_tx_begin(NULL, true, &tx), 0);
	assert_int_equal(moat_compiler_flush(f->c, tx, &st, err, sizeof(err)), 0);
	moat_tx_abort(tx);
	moat_compiler_commit(f->c);
	assert_int_equal(moat_compiler_explain(f->c, "a/x", "b/y", IPPROTO_TCP, 80, &x, err, sizeof(err)), 0);
	assert_int_equal(x.verdict, MOAT_VERDICT_DENY);
	f->deny_rule = x.rule;
	f->id_x = x.src_identity;
	f->id_y = x.dst_identity;
	assert_int_equal(moat_compiler_explain(f->c, "a/x", "a/z", IPPROTO_TCP, 80, &x, err, sizeof(err)), 0);
	f->id_z = x.dst_identity;
	/* a fake clock just after the test traffic: the real one would rotate or expire
	 * the segments by age depending on the day the test runs */
	f->clock = T0 + 10 * SEC;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	moat_archive_close(f->a);
	moat_compiler_free(f->c);
	rm_rf_cb(f->dir);
	rm_rf_cb(f->mdir);
	free(f);
	return 0;
}

static void open_archive(struct fx *f, struct moat_archive_opts *o)
{
	char err[512];

	o->dir = f->dir;
	o->node = "n1";
	o->log = logger;
	o->log_arg = f;
	if (f->clock) {
		o->clock = fake_clock;
		o->clock_arg = f;
	}
	if (moat_archive_open(o, &f->a, err, sizeof(err)))
		fail_msg("archive: %s", err);
	moat_archive_refresh(f->a, f->c, NULL, 1);
}

static struct moat_archive_opts *opts(void)
{
	struct moat_archive_opts *o = xcalloc(1, sizeof(*o));
	moat_archive_opts_defaults(o);
	return o;
}

/* An event as events.c hands it over. */
static void ev(struct fx *f, const char *sns, const char *spod, const char *sip, uint32_t sid,
	       const char *dns, const char *dpod, const char *dip, uint32_t did, int proto, uint16_t sport,
	       uint16_t dport, int verdict, uint32_t rule, uint64_t wall)
{
	struct moat_ev e;
	struct moat_ev_sink s = moat_archive_sink(f->a);
	struct pkt p;

	memset(&e, 0, sizeof(e));
	pkt_init(&p);
	pkt_eth(&p, NULL, NULL);
	pkt_ip4(&p, pkt_a4(sip), pkt_a4(dip));
	if (proto == IPPROTO_TCP)
		pkt_tcp(&p, sport, dport, PKT_TCP_SYN);
	else
		pkt_udp(&p, sport, dport);
	assert_int_equal(pkt_finish(&p), 0);
	e.wall_ns = wall;
	e.raw.ts_ns = wall;
	e.raw.type = verdict == MOAT_VERDICT_DENY ? MOAT_EV_DENY : MOAT_EV_NEW_FLOW;
	e.raw.verdict = (uint8_t)verdict;
	e.raw.tier = verdict == MOAT_VERDICT_DENY ? MOAT_TIER_NETPOL : MOAT_TIER_DEFAULT;
	e.raw.rule = rule;
	e.raw.hook = MOAT_HOOK_FROM_POD;
	e.raw.dir = MOAT_DIR_INGRESS;
	e.raw.ifindex = 7;
	e.raw.src_identity = sid;
	e.raw.dst_identity = did;
	e.raw.pkt_len = (uint32_t)p.len;
	e.family = 4;
	e.proto = (uint8_t)proto;
	e.sport = sport;
	e.dport = dport;
	moat_addr_parse(sip, &e.src);
	moat_addr_parse(dip, &e.dst);
	snprintf(e.src_ns, sizeof(e.src_ns), "%s", sns);
	snprintf(e.src_pod, sizeof(e.src_pod), "%s", spod);
	snprintf(e.dst_ns, sizeof(e.dst_ns), "%s", dns);
	snprintf(e.dst_pod, sizeof(e.dst_pod), "%s", dpod);
	e.caplen = (uint16_t)(p.len < MOAT_EV_SNAP ? p.len : MOAT_EV_SNAP);
	memcpy(e.pkt, p.data, e.caplen);
	s.event(s.arg, &e);
}

static void flow(struct fx *f, bool start, const char *sns, const char *spod, const char *sip,
		 const char *dns, const char *dpod, const char *dip, uint16_t dport, int verdict,
		 uint32_t rule, uint64_t wall)
{
	struct moat_ev_sink s = moat_archive_sink(f->a);
	struct moat_flow fl;

	memset(&fl, 0, sizeof(fl));
	fl.first_ns = fl.last_ns = wall;
	fl.family = 4;
	fl.proto = IPPROTO_TCP;
	fl.sport = 40000;
	fl.dport = dport;
	moat_addr_parse(sip, &fl.src);
	moat_addr_parse(dip, &fl.dst);
	snprintf(fl.src_ns, sizeof(fl.src_ns), "%s", sns);
	snprintf(fl.src_pod, sizeof(fl.src_pod), "%s", spod);
	snprintf(fl.dst_ns, sizeof(fl.dst_ns), "%s", dns);
	snprintf(fl.dst_pod, sizeof(fl.dst_pod), "%s", dpod);
	fl.verdict = (uint8_t)verdict;
	fl.tier = verdict == MOAT_VERDICT_DENY ? MOAT_TIER_NETPOL : MOAT_TIER_DEFAULT;
	fl.rule = rule;
	fl.ended = !start;
	if (start)
		s.flow_start(s.arg, &fl);
	else
		s.flow(s.arg, &fl);
}

/* ---- reading back ------------------------------------------------------------------- */
struct result {
	size_t packets, flows, losses;
	char comments[64][512];
	char flowjson[16][1024];
	uint64_t ts[64];
};

/* Parses a pcapng (query output) held in memory. */
static void parse_result(const uint8_t *buf, size_t len, struct result *r)
{
	int fd = memfd_create("q", 0);
	struct pcapng_reader *rd;
	struct pcapng_block b;
	int rc;

	memset(r, 0, sizeof(*r));
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	lseek(fd, 0, SEEK_SET);
	pcapng_reader_new(fd, &rd);
	while ((rc = pcapng_next(rd, &b)) > 0) {
		if (b.type == PCAPNG_BT_EPB) {
			struct pcapng_epb_view e;
			assert_int_equal(pcapng_parse_epb(&b, &e), 0);
			if (r->packets < 64) {
				snprintf(r->comments[r->packets], sizeof(r->comments[0]), "%.*s",
					 (int)e.comment_len, e.comment ? e.comment : "");
				r->ts[r->packets] = e.ts_raw;
			}
			r->packets++;
		} else if (b.type == PCAPNG_BT_CUSTOM) {
			uint32_t pen;
			const uint8_t *d;
			size_t l;
			assert_int_equal(pcapng_parse_custom(&b, &pen, &d, &l), 0);
			if (strstr((const char *)d, "\"moat\":\"flow\"")) {
				if (r->flows < 16)
					snprintf(r->flowjson[r->flows], sizeof(r->flowjson[0]), "%.*s",
						 (int)l, d);
				r->flows++;
			} else {
				r->losses++;
			}
		}
	}
	assert_int_equal(rc, 0);
	pcapng_reader_free(rd);
	close(fd);
}

struct qargs {
	const char *tenant; /* NULL: platform-admin */
	const char *ns, *pod, *policy, *filter;
	int verdict;
	uint64_t since, until;
	int format;
};

static int query(struct fx *f, const struct qargs *qa, struct result *r, uint8_t **raw, size_t *rawlen)
{
	struct moat_archive_query q;
	struct moat_aq *aq;
	char err[512], *allowed[1];
	uint8_t *out = NULL, chunk[1000];
	size_t len = 0;
	ssize_t n;
	int rc;

	memset(&q, 0, sizeof(q));
	q.since_ns = qa->since;
	q.until_ns = qa->until;
	q.ns = qa->ns;
	q.pod = qa->pod;
	q.policy = qa->policy;
	q.filter = qa->filter;
	q.verdict = qa->verdict ? qa->verdict : -1;
	q.format = qa->format;
	q.flows = true;
	q.node = "n1";
	q.all = !qa->tenant;
	if (qa->tenant) {
		allowed[0] = (char *)qa->tenant;
		q.allowed_ns = allowed;
		q.nallowed_ns = 1;
	}
	moat_archive_flush(f->a, 5000);
	rc = moat_aq_open(f->dir, &q, &aq, err, sizeof(err));
	if (rc)
		return rc;
	while ((n = moat_aq_read(aq, chunk, sizeof(chunk))) > 0) {
		out = xrealloc(out, len + (size_t)n);
		memcpy(out + len, chunk, (size_t)n);
		len += (size_t)n;
	}
	assert_int_equal(n, 0);
	moat_aq_free(aq);
	if (qa->format == MOAT_AQ_PCAPNG)
		parse_result(out, len, r);
	if (raw) {
		*raw = out;
		*rawlen = len;
	} else {
		free(out);
	}
	return 0;
}

static size_t count_packets(struct fx *f, const struct qargs *qa)
{
	struct result *r = xcalloc(1, sizeof(*r));
	size_t n;

	assert_int_equal(query(f, qa, r, NULL, NULL), 0);
	n = r->packets;
	free(r);
	return n;
}

/* ---- partitions, tenancy, filters ------------------------------------------------------ */
static void traffic(struct fx *f)
{
	/* e1: a/x -> b/y denied by b's policy (both partitions)
	 * e2: a/x -> a/z allowed (a)
	 * e3: a/x -> the world, UDP 53 (a only)
	 * e4: the node -> the world (no pod: _node)
	 * e5: b/y -> the world, TCP 443 (b only) */
	ev(f, "a", "x", "10.0.1.1", f->id_x, "b", "y", "10.0.1.2", f->id_y, IPPROTO_TCP, 40000, 80,
	   MOAT_VERDICT_DENY, f->deny_rule, T0 + 1 * SEC);
	flow(f, true, "a", "x", "10.0.1.1", "b", "y", "10.0.1.2", 80, MOAT_VERDICT_DENY, f->deny_rule,
	     T0 + 1 * SEC);
	ev(f, "a", "x", "10.0.1.1", f->id_x, "a", "z", "10.0.1.3", f->id_z, IPPROTO_TCP, 40001, 5432,
	   MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW, T0 + 2 * SEC);
	ev(f, "a", "x", "10.0.1.1", f->id_x, "", "", "8.8.8.8", MOAT_ID_WORLD, IPPROTO_UDP, 40002, 53,
	   MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW, T0 + 3 * SEC);
	/* the node's identity is named by the node, as events.c does: not a namespace */
	ev(f, "n1", "", "10.99.0.1", 3, "", "", "1.1.1.1", MOAT_ID_WORLD, IPPROTO_TCP, 40003, 443,
	   MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW, T0 + 4 * SEC);
	ev(f, "b", "y", "10.0.1.2", f->id_y, "", "", "9.9.9.9", MOAT_ID_WORLD, IPPROTO_TCP, 40004, 443,
	   MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW, T0 + 5 * SEC);
}

static void test_partitions_and_tenancy(void **state)
{
	struct fx *f = *state;
	struct moat_archive_opts *o = opts();
	struct moat_segment *segs;
	struct result *r = xcalloc(1, sizeof(*r));
	size_t n;

	open_archive(f, o);
	traffic(f);
	moat_archive_flush(f->a, 5000);
	assert_int_equal(moat_archive_list(f->dir, &segs, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(segs[0].part, "_node");
	assert_string_equal(segs[1].ns, "a");
	assert_string_equal(segs[2].ns, "b");
	free(segs);

	/* platform-admin: every packet once (e1 is in two partitions) */
	assert_int_equal(query(f, &(struct qargs){ 0 }, r, NULL, NULL), 0);
	assert_int_equal(r->packets, 5);
	assert_int_equal(r->flows, 1);
	for (size_t i = 1; i < r->packets; i++)
		assert_true(r->ts[i] > r->ts[i - 1]); /* in arrival order */

	/* tenant a: e1, e2, e3; b's policy not named */
	assert_int_equal(query(f, &(struct qargs){ .tenant = "a" }, r, NULL, NULL), 0);
	assert_int_equal(r->packets, 3);
	assert_non_null(strstr(r->comments[0], "rule=\"a NetworkPolicy of another namespace\""));
	assert_null(strstr(r->comments[0], "only-from-b"));
	assert_null(strstr(r->comments[0], "rule_ns="));
	assert_non_null(strstr(r->comments[0], "verdict=deny"));
	assert_non_null(strstr(r->comments[0], "src=a/x"));
	assert_non_null(strstr(r->comments[0], "dst=b/y"));
	assert_int_equal(r->flows, 1);
	assert_null(strstr(r->flowjson[0], "only-from-b"));
	assert_non_null(strstr(r->flowjson[0], "a NetworkPolicy of another namespace"));
	for (size_t i = 0; i < r->packets; i++)
		assert_true(strstr(r->comments[i], "src=a/") || strstr(r->comments[i], "dst=a/"));

	/* tenant b: e1 and e5, its own policy named */
	assert_int_equal(query(f, &(struct qargs){ .tenant = "b" }, r, NULL, NULL), 0);
	assert_int_equal(r->packets, 2);
	assert_non_null(strstr(r->comments[0], "NetworkPolicy b/only-from-b isolates ingress"));
	assert_non_null(strstr(r->comments[0], "rule_ns=b"));
	assert_non_null(strstr(r->comments[1], "dst=9.9.9.9"));

	/* no filter combination gets a tenant anything of another namespace */
	{
		static const char *const nss[] = { NULL, "a", "b", "_node", "n1" };
		static const char *const pods[] = { NULL, "b/y", "y", "a/x" };
		static const char *const filters[] = { NULL, "host 10.0.1.2", "host 9.9.9.9", "host 1.1.1.1",
						       "tcp" };
		static const int verdicts[] = { 0, MOAT_VERDICT_DENY, MOAT_VERDICT_ALLOW };
		size_t checked = 0;
		for (size_t i = 0; i < 5; i++)
			for (size_t j = 0; j < 4; j++)
				for (size_t k = 0; k < 5; k++)
					for (size_t v = 0; v < 3; v++) {
						struct qargs qa = { .tenant = "a",
								    .ns = nss[i],
								    .pod = pods[j],
								    .filter = filters[k],
								    .verdict = verdicts[v] };
						int rc = query(f, &qa, r, NULL, NULL);
						if (nss[i] && strcmp(nss[i], "a")) {
							assert_int_equal(rc, -EACCES);
							continue;
						}
						assert_int_equal(rc, 0);
						for (size_t p = 0; p < r->packets; p++) {
							assert_true(strstr(r->comments[p], "src=a/") ||
								    strstr(r->comments[p], "dst=a/"));
							assert_null(strstr(r->comments[p], "9.9.9.9"));
							assert_null(strstr(r->comments[p], "1.1.1.1"));
							assert_null(strstr(r->comments[p], "only-from-b"));
						}
						for (size_t p = 0; p < r->flows; p++)
							assert_null(strstr(r->flowjson[p], "only-from-b"));
						checked++;
					}
		assert_true(checked == 4 * 5 * 3 * 2);
	}
	/* a tenant cannot find a policy of another namespace by its name */
	assert_int_equal(count_packets(f, &(struct qargs){ .tenant = "a", .policy = "only-from-b" }), 0);
	assert_int_equal(count_packets(f, &(struct qargs){ .tenant = "b", .policy = "only-from-b" }), 1);
	/* a tenant with no namespaces sees nothing */
	assert_int_equal(count_packets(f, &(struct qargs){ .tenant = "nobody" }), 0);

	/* filters, as platform-admin */
	assert_int_equal(count_packets(f, &(struct qargs){ .filter = "udp port 53" }), 1);
	assert_int_equal(count_packets(f, &(struct qargs){ .filter = "tcp and dst port 443" }), 2);
	assert_int_equal(count_packets(f, &(struct qargs){ .verdict = MOAT_VERDICT_DENY }), 1);
	assert_int_equal(count_packets(f, &(struct qargs){ .pod = "a/x" }), 3);
	assert_int_equal(count_packets(f, &(struct qargs){ .pod = "y" }), 2);
	assert_int_equal(count_packets(f, &(struct qargs){ .ns = "_node" }), 0); /* "_node" is no namespace */
	assert_int_equal(count_packets(f, &(struct qargs){ .since = T0 + 3 * SEC }), 3);
	assert_int_equal(count_packets(f, &(struct qargs){ .since = T0 + 2 * SEC, .until = T0 + 4 * SEC }),
			 3);
	assert_int_equal(count_packets(f, &(struct qargs){ .until = T0 }), 0);
	/* the flow passes the tcpdump filter by its addresses and ports */
	assert_int_equal(
		query(f, &(struct qargs){ .filter = "tcp dst port 80 and host 10.0.1.2" }, r, NULL, NULL), 0);
	assert_int_equal(r->packets, 1);
	assert_int_equal(r->flows, 1);
	assert_int_equal(query(f, &(struct qargs){ .filter = "port 81" }, r, NULL, NULL), 0);
	assert_int_equal(r->flows, 0);
	/* a bad filter is refused with libpcap's message */
	{
		struct moat_archive_query q = { .verdict = -1, .all = true, .filter = "port" };
		struct moat_aq *aq;
		char err[256];
		assert_int_equal(moat_aq_open(f->dir, &q, &aq, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "filter:"));
	}
	/* pcap: the same packets, no records */
	{
		uint8_t *raw;
		size_t len;
		uint32_t magic;
		assert_int_equal(
			query(f, &(struct qargs){ .format = MOAT_AQ_PCAP, .tenant = "a" }, r, &raw, &len), 0);
		memcpy(&magic, raw, 4);
		assert_int_equal(magic, 0xa1b23c4d);
		/* 3 records: header 24 + 3 x (16 + 54/54/42) */
		assert_int_equal(len, 24 + 3 * 16 + 54 + 54 + 42);
		free(raw);
	}
	free(r);
	free(o);
}

/* ---- rotation and retention -------------------------------------------------------------- */
static size_t segments(struct fx *f, const char *ns, size_t *closed, uint64_t *bytes)
{
	struct moat_segment *v;
	size_t n, k = 0;

	if (closed)
		*closed = 0;
	if (bytes)
		*bytes = 0;
	if (moat_archive_list(f->dir, &v, &n))
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].ns, ns))
			continue;
		k++;
		if (closed && v[i].end_ns)
			(*closed)++;
		if (bytes)
			*bytes += v[i].bytes;
	}
	free(v);
	return k;
}

/* Every segment of the archive reads to a clean end. */
static void all_clean(struct fx *f)
{
	struct moat_segment *v;
	size_t n;

	assert_int_equal(moat_archive_list(f->dir, &v, &n), 0);
	for (size_t i = 0; i < n; i++) {
		char p[700];
		struct pcapng_reader *r;
		struct pcapng_block b;
		int fd, rc;
		snprintf(p, sizeof(p), "%s/%s/%s", f->dir, v[i].part, v[i].file);
		fd = open(p, O_RDONLY);
		assert_true(fd >= 0);
		pcapng_reader_new(fd, &r);
		while ((rc = pcapng_next(r, &b)) > 0)
			;
		if (rc)
			fail_msg("%s: %d", p, rc);
		pcapng_reader_free(r);
		close(fd);
	}
	free(v);
}

static void test_rotation_by_size(void **state)
{
	struct fx *f = *state;
	struct moat_archive_opts *o = opts();
	size_t closed, n;

	o->segment_bytes = 4096;
	open_archive(f, o);
	for (int i = 0; i < 300; i++)
		ev(f, "a", "x", "10.0.1.1", f->id_x, "a", "z", "10.0.1.3", f->id_z, IPPROTO_TCP,
		   (uint16_t)(30000 + i), 80, MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW, T0 + (uint64_t)i);
	assert_int_equal(count_packets(f, &(struct qargs){ 0 }), 300);
	n = segments(f, "a", &closed, NULL);
	assert_true(n >= 10);
	assert_int_equal(closed, n - 1);
	all_clean(f);
	/* no segment much above the size (a block can end past it) */
	{
		struct moat_segment *v;
		size_t m;
		moat_archive_list(f->dir, &v, &m);
		for (size_t i = 0; i < m; i++)
			assert_true(v[i].bytes <= 4096 + 1024);
		free(v);
	}
	free(o);
}

static bool wait_for(bool (*cond)(struct fx *), struct fx *f)
{
	for (int i = 0; i < 500; i++) {
		if (cond(f))
			return true;
		usleep(10000);
	}
	return cond(f);
}

static bool both_closed(struct fx *f)
{
	size_t ca, cb;
	return segments(f, "a", &ca, NULL) == 1 && ca == 1 && segments(f, "b", &cb, NULL) == 1 && cb == 1;
}

static bool a_expired(struct fx *f)
{
	return segments(f, "a", NULL, NULL) == 0 && segments(f, "b", NULL, NULL) == 1;
}

static void test_age_rotation_and_retention(void **state)
{
	struct fx *f = *state;
	struct moat_archive_opts *o = opts();
	char err[256];

	f->clock = T0;
	o->segment_ns = 10 * SEC;
	assert_int_equal(moat_archive_parse_ns_limits("a=60s:,b=1h:1Gi", o, err, sizeof(err)), 0);
	open_archive(f, o);
	ev(f, "a", "x", "10.0.1.1", f->id_x, "a", "z", "10.0.1.3", f->id_z, IPPROTO_TCP, 1, 80,
	   MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW, T0);
	ev(f, "b", "y", "10.0.1.2", f->id_y, "", "", "9.9.9.9", MOAT_ID_WORLD, IPPROTO_TCP, 1, 443,
	   MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW, T0);
	moat_archive_flush(f->a, 5000);
	assert_int_equal(segments(f, "a", NULL, NULL), 1);
	/* older than segmentAge: closed even when nothing more comes */
	__atomic_store_n(&f->clock, T0 + 11 * SEC, __ATOMIC_RELEASE);
	assert_true(wait_for(both_closed, f));
	/* two minutes on: a's retention (60 s) expires its segment, b's (1 h) does not */
	__atomic_store_n(&f->clock, T0 + 200 * SEC, __ATOMIC_RELEASE);
	assert_true(wait_for(a_expired, f));
	/* reconfigured: b down to 1 minute */
	assert_int_equal(moat_archive_parse_ns_limits("b=1m:", o, err, sizeof(err)), 0);
	moat_archive_reconfigure(f->a, o);
	__atomic_store_n(&f->clock, T0 + 400 * SEC, __ATOMIC_RELEASE);
	for (int i = 0; i < 500 && segments(f, "b", NULL, NULL); i++)
		usleep(10000);
	assert_int_equal(segments(f, "b", NULL, NULL), 0);
	{
		/* counted just after the unlink the loop above saw: wait for it */
		struct moat_archive_stats st;
		moat_archive_stats(f->a, &st);
		for (int i = 0; i < 500 && st.segments_expired < 2; i++) {
			usleep(10000);
			moat_archive_stats(f->a, &st);
		}
		assert_int_equal(st.segments_expired, 2);
	}
	free(o);
}

static void test_retention_by_bytes(void **state)
{
	struct fx *f = *state;
	struct moat_archive_opts *o = opts();
	char err[256];
	uint64_t ba, bb;
	size_t closed;

	o->segment_bytes = 64 << 10;
	o->total_bytes = 96 << 10;
	assert_int_equal(
		moat_archive_parse_ns_limits("{\"a\": {\"maxSize\": \"32Ki\"}}", o, err, sizeof(err)), 0);
	open_archive(f, o);
	for (int round = 0; round < 10; round++) {
		for (int i = 0; i < 200; i++) {
			ev(f, "a", "x", "10.0.1.1", f->id_x, "a", "z", "10.0.1.3", f->id_z, IPPROTO_TCP,
			   (uint16_t)(1000 + i), 80, MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW,
			   T0 + (uint64_t)i);
			ev(f, "b", "y", "10.0.1.2", f->id_y, "", "", "9.9.9.9", MOAT_ID_WORLD, IPPROTO_TCP,
			   (uint16_t)(1000 + i), 443, MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW,
			   T0 + (uint64_t)i);
		}
		moat_archive_flush(f->a, 5000);
	}
	/* retention runs after each rotation: wait for the last pass */
	for (int i = 0; i < 300; i++) {
		segments(f, "a", NULL, &ba);
		segments(f, "b", NULL, &bb);
		if (ba <= (32 << 10) + (16 << 10) && ba + bb <= (96 << 10) + (64 << 10))
			break;
		usleep(10000);
	}
	/* a: its bound plus the segment being written (16 KiB: half its bound) */
	segments(f, "a", &closed, &ba);
	assert_true(ba <= (32 << 10) + (16 << 10));
	{
		struct moat_archive_stats st;
		moat_archive_stats(f->a, &st);
		assert_true(st.segments_expired >= 10);
	}
	/* what is left is the newest: the last round's packets are there */
	assert_true(count_packets(f, &(struct qargs){ .ns = "a" }) > 0);
	/* node-wide: the bound plus what is open */
	segments(f, "b", NULL, &bb);
	assert_true(ba + bb <= (96 << 10) + (64 << 10));
	all_clean(f);
	free(o);
}

/* ---- crash recovery ---------------------------------------------------------------------- */
static void test_recovery(void **state)
{
	struct fx *f = *state;
	struct moat_archive_opts *o = opts();
	struct pcapng_buf b = { 0 };
	struct pcapng_idb_info idb = { .linktype = 1, .snaplen = 65535, .name = "veth" };
	uint8_t data[60] = { 0 };
	char p[600];
	size_t whole;
	struct moat_segment *v;
	size_t n;
	int fd;

	pcapng_put_shb(&b, NULL);
	pcapng_put_idb(&b, &idb);
	for (int i = 0; i < 3; i++) {
		char c[64];
		struct pcapng_epb_info e = { .ts_ns = T0 + (uint64_t)i * SEC,
					     .data = data,
					     .caplen = 60,
					     .origlen = 60,
					     .comment = c };
		snprintf(c, sizeof(c), "moat: verdict=allow id=1.%d", i + 1);
		pcapng_put_epb(&b, &e);
	}
	whole = b.len;
	{
		struct pcapng_epb_info e = {
			.ts_ns = T0 + 9 * SEC, .data = data, .caplen = 60, .origlen = 60
		};
		pcapng_put_epb(&b, &e);
	}
	snprintf(p, sizeof(p), "%s/a", f->dir);
	mkdir(p, 0750);
	/* killed in the middle of the fourth packet's block */
	snprintf(p, sizeof(p), "%s/a/%llu-open.pcapng", f->dir, (unsigned long long)T0);
	fd = open(p, O_WRONLY | O_CREAT, 0640);
	assert_int_equal(write(fd, b.p, whole + 37), (ssize_t)(whole + 37));
	{
		/* last written before its last packet's time: the packet's time counts */
		struct timespec ts[2] = { { (time_t)(T0 / SEC) + 1, 0 }, { (time_t)(T0 / SEC) + 1, 0 } };
		assert_int_equal(futimens(fd, ts), 0);
	}
	close(fd);
	/* and a segment that never got a whole block */
	snprintf(p, sizeof(p), "%s/b", f->dir);
	mkdir(p, 0750);
	snprintf(p, sizeof(p), "%s/b/%llu-open.pcapng", f->dir, (unsigned long long)T0);
	fd = open(p, O_WRONLY | O_CREAT, 0640);
	assert_int_equal(write(fd, b.p, 20), 20);
	close(fd);

	open_archive(f, o);
	assert_int_equal(moat_archive_list(f->dir, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].ns, "a");
	assert_int_equal(v[0].start_ns, T0);
	assert_int_equal(v[0].end_ns, T0 + 2 * SEC); /* its last whole packet */
	assert_int_equal(v[0].bytes, whole);
	free(v);
	all_clean(f);
	{
		struct moat_archive_stats st;
		moat_archive_stats(f->a, &st);
		assert_int_equal(st.segments_recovered, 2);
		assert_int_equal(st.torn_bytes_cut, 37 + 20);
	}
	assert_true(f->nlog >= 2);
	assert_non_null(strstr(f->log[0], "recovered") ? f->log[0] : f->log[1]);
	/* what was recovered is queryable */
	assert_int_equal(count_packets(f, &(struct qargs){ 0 }), 3);
	pcapng_buf_free(&b);
	free(o);
}

/* ---- a full disk --------------------------------------------------------------------------- */
static int count_log(struct fx *f, const char *what)
{
	int n = 0;
	for (int i = 0; i < f->nlog; i++)
		n += strstr(f->log[i], what) != NULL;
	return n;
}

static void test_disk_full(void **state)
{
	struct fx *f = *state;
	struct moat_archive_opts *o = opts();
	struct moat_archive_stats st;
	struct rlimit old, lim;
	uint64_t written_before;

	signal(SIGXFSZ, SIG_IGN);
	o->segment_bytes = 1 << 20;
	open_archive(f, o);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	/* files may not grow past 16 KiB: writes fail like on a full disk */
	lim.rlim_cur = 16 << 10;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < 100; i++)
			ev(f, "a", "x", "10.0.1.1", f->id_x, "a", "z", "10.0.1.3", f->id_z, IPPROTO_TCP,
			   (uint16_t)(1000 + i), 80, MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW,
			   T0 + (uint64_t)i);
		moat_archive_flush(f->a, 5000);
	}
	moat_archive_stats(f->a, &st);
	assert_true(st.disk_full);
	assert_true(st.disk_lost > 0);
	assert_true(st.write_errors > 0);
	/* the sink never blocked and counted everything */
	assert_int_equal(st.offered, 2000);
	assert_int_equal(st.queue_lost, 0);
	assert_int_equal(count_log(f, "cannot write"), 1); /* logged once */
	/* every file is whole: a failed write leaves no partial block */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	all_clean(f);
	written_before = st.written;
	/* space again (after the 1 s back-off, on the fake clock) */
	__atomic_store_n(&f->clock, f->clock + 2 * SEC, __ATOMIC_RELEASE);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 100; i++)
			ev(f, "a", "x", "10.0.1.1", f->id_x, "a", "z", "10.0.1.3", f->id_z, IPPROTO_TCP,
			   (uint16_t)(2000 + i), 80, MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW,
			   T0 + 10 * SEC);
		moat_archive_flush(f->a, 5000);
		usleep(600000);
	}
	moat_archive_stats(f->a, &st);
	assert_false(st.disk_full);
	assert_true(st.written >= written_before + 100);
	assert_int_equal(count_log(f, "writing again"), 1);
	all_clean(f);
	/* the losses are in the archive: epb_dropcount on later packets or ISBs */
	moat_archive_close(f->a);
	f->a = NULL;
	{
		struct moat_segment *v;
		size_t n;
		uint64_t drops = 0;
		assert_int_equal(moat_archive_list(f->dir, &v, &n), 0);
		for (size_t i = 0; i < n; i++) {
			char p[700];
			struct pcapng_reader *r;
			struct pcapng_block b;
			int fd;
			snprintf(p, sizeof(p), "%s/%s/%s", f->dir, v[i].part, v[i].file);
			fd = open(p, O_RDONLY);
			pcapng_reader_new(fd, &r);
			while (pcapng_next(r, &b) > 0) {
				struct pcapng_epb_view e;
				if (b.type == PCAPNG_BT_EPB && !pcapng_parse_epb(&b, &e) && e.has_dropcount)
					drops += e.dropcount;
			}
			pcapng_reader_free(r);
			close(fd);
		}
		free(v);
		assert_true(drops > 0);
		assert_true(drops <= st.disk_lost);
	}
	free(o);
}

/* ---- queue overflow ------------------------------------------------------------------------- */
static void test_queue_overflow(void **state)
{
	struct fx *f = *state;
	struct moat_archive_opts *o = opts();
	struct moat_archive_stats st;
	struct moat_segment *v;
	size_t n;
	uint64_t isb_drops = 0, epb_drops = 0, unattributed = 0;

	o->queue_bytes = 64 << 10;
	open_archive(f, o);
	for (int i = 0; i < 50000; i++)
		ev(f, "a", "x", "10.0.1.1", f->id_x, "a", "z", "10.0.1.3", f->id_z, IPPROTO_TCP,
		   (uint16_t)(1000 + i % 1000), 80, MOAT_VERDICT_ALLOW, MOAT_RULE_DEFAULT_ALLOW,
		   T0 + (uint64_t)i);
	moat_archive_flush(f->a, 5000);
	moat_archive_stats(f->a, &st);
	assert_int_equal(st.offered, 50000);
	assert_true(st.queue_lost > 0);
	assert_int_equal(st.written + st.queue_lost, 50000);
	moat_archive_close(f->a);
	f->a = NULL;
	/* every loss is in the archive: on the interface (epb_dropcount,
	 * and the ISBs count each once) or in the loss record */
	assert_int_equal(moat_archive_list(f->dir, &v, &n), 0);
	for (size_t i = 0; i < n; i++) {
		char p[700];
		struct pcapng_reader *r;
		struct pcapng_block b;
		int fd;
		snprintf(p, sizeof(p), "%s/%s/%s", f->dir, v[i].part, v[i].file);
		fd = open(p, O_RDONLY);
		pcapng_reader_new(fd, &r);
		while (pcapng_next(r, &b) > 0) {
			if (b.type == PCAPNG_BT_EPB) {
				struct pcapng_epb_view e;
				if (!pcapng_parse_epb(&b, &e) && e.has_dropcount)
					epb_drops += e.dropcount;
			} else if (b.type == PCAPNG_BT_ISB) {
				uint32_t ifid;
				const uint8_t *op;
				size_t ol, pos = 0;
				struct pcapng_opt opt;
				pcapng_parse_isb(&b, &ifid, &op, &ol);
				while (pcapng_opt_next(op, ol, &pos, &opt) > 0)
					if (opt.code == PCAPNG_ISB_IFDROP) {
						uint64_t d;
						memcpy(&d, opt.val, 8);
						isb_drops += d;
					}
			} else if (b.type == PCAPNG_BT_CUSTOM) {
				uint32_t pen;
				const uint8_t *d;
				size_t l;
				const char *u;
				pcapng_parse_custom(&b, &pen, &d, &l);
				u = strstr((const char *)d, "\"archive_unattributed\":");
				if (u)
					unattributed = strtoull(u + 23, NULL, 10);
			}
		}
		pcapng_reader_free(r);
		close(fd);
	}
	free(v);
	assert_int_equal(isb_drops + unattributed, st.queue_lost);
	assert_true(epb_drops <= isb_drops);
	free(o);
}

/* ---- parsers and settings --------------------------------------------------------------------- */
static void test_parsers(void **state)
{
	uint64_t v;
	char b[64], err[256];
	struct moat_rec r;
	char *s;

	(void)state;
	assert_int_equal(moat_parse_size("64Mi", &v), 0);
	assert_int_equal(v, 64ull << 20);
	assert_int_equal(moat_parse_size("1.5G", &v), 0);
	assert_int_equal(v, 1500000000ull);
	assert_int_equal(moat_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(moat_parse_size("-1", &v), -EINVAL);
	assert_int_equal(moat_parse_size("1Q", &v), -EINVAL);
	assert_int_equal(moat_parse_size("", &v), -EINVAL);
	assert_int_equal(moat_parse_duration("7d", &v), 0);
	assert_int_equal(v, 7ull * 86400 * SEC);
	assert_int_equal(moat_parse_duration("90m", &v), 0);
	assert_int_equal(v, 5400 * SEC);
	assert_int_equal(moat_parse_duration("3600", &v), 0);
	assert_int_equal(v, 3600 * SEC);
	assert_int_equal(moat_parse_duration("5 m", &v), -EINVAL);

	assert_int_equal(moat_time_parse("2026-11-28T07:00:00Z", 0, &v), 0);
	assert_int_equal(v, T0);
	assert_int_equal(moat_time_parse("2026-11-28T08:00:00.5+01:00", 0, &v), 0);
	assert_int_equal(v, T0 + SEC / 2);
	assert_int_equal(moat_time_parse("2026-11-28T07:00:00.000000001z", 0, &v), 0);
	assert_int_equal(v, T0 + 1);
	assert_int_equal(moat_time_parse("-2h", T0, &v), 0);
	assert_int_equal(v, T0 - 7200 * SEC);
	assert_int_equal(moat_time_parse("+5m", T0, &v), 0);
	assert_int_equal(v, T0 + 300 * SEC);
	assert_int_equal(moat_time_parse("now", T0, &v), 0);
	assert_int_equal(v, T0);
	assert_int_equal(moat_time_parse("@1795849200", 0, &v), 0);
	assert_int_equal(v, T0);
	assert_int_equal(moat_time_parse("2026-11-28T07:00:00", 0, &v), -EINVAL); /* no zone */
	assert_int_equal(moat_time_parse("2026-13-28T07:00:00Z", 0, &v), -EINVAL);
	assert_int_equal(moat_time_parse("yesterday", 0, &v), -EINVAL);
	assert_int_equal(moat_time_parse("-2x", T0, &v), -EINVAL);
	moat_time_format(T0 + 5, b, sizeof(b));
	assert_string_equal(b, "2026-11-28T07:00:00.000000005Z");

	/* partition names: namespaces are DNS labels; anything else is escaped */
	moat_archive_part_name("shop", b, sizeof(b));
	assert_string_equal(b, "shop");
	moat_archive_part_name("", b, sizeof(b));
	assert_string_equal(b, "_node");
	moat_archive_part_name("../x", b, sizeof(b));
	assert_null(strchr(b, '/'));
	assert_int_equal(moat_archive_part_ns(b, err, sizeof(err)), 0);
	assert_string_equal(err, "../x");
	moat_archive_part_name("_node", b, sizeof(b));
	assert_string_not_equal(b, "_node");
	assert_int_equal(moat_archive_part_ns("a/b", err, sizeof(err)), -EINVAL);
	assert_int_equal(moat_archive_part_ns("Upper", err, sizeof(err)), -EINVAL);

	/* comment records round trip, quotes and backslashes included */
	memset(&r, 0, sizeof(r));
	moat_rec_set(&r, "verdict", "deny");
	moat_rec_set(&r, "rule", "AdminNetworkPolicy x ingress[0] \"say \\\"hi\\\"\"");
	moat_rec_set(&r, "empty", "");
	s = moat_rec_format(&r);
	moat_rec_free(&r);
	assert_int_equal(moat_rec_parse(s, strlen(s), &r), 0);
	assert_string_equal(moat_rec_get(&r, "verdict"), "deny");
	assert_string_equal(moat_rec_get(&r, "rule"), "AdminNetworkPolicy x ingress[0] \"say \\\"hi\\\"\"");
	assert_string_equal(moat_rec_get(&r, "empty"), "");
	moat_rec_del(&r, "verdict");
	assert_null(moat_rec_get(&r, "verdict"));
	moat_rec_free(&r);
	free(s);
	assert_int_equal(moat_rec_parse("moat: a=\"unterminated", 21, &r), -EINVAL);
	assert_int_equal(moat_rec_parse("other: a=b", 10, &r), -EINVAL);
	assert_int_equal(moat_rec_parse("moat: =b", 8, &r), -EINVAL);

	/* namespace limits */
	{
		struct moat_archive_opts *o = opts();
		assert_int_equal(moat_archive_parse_ns_limits("a=7d:1Gi,b=:10Mi", o, err, sizeof(err)), 0);
		assert_int_equal(o->nns, 2);
		assert_int_equal(o->ns[0].max_age_ns, 7ull * 86400 * SEC);
		assert_int_equal(o->ns[1].max_bytes, 10ull << 20);
		assert_int_equal(o->ns[1].max_age_ns, o->defaults.max_age_ns);
		assert_int_equal(moat_archive_parse_ns_limits("a=7x", o, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "maxAge"));
		assert_int_equal(moat_archive_parse_ns_limits("Bad_NS=1d", o, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "Bad_NS"));
		assert_int_equal(moat_archive_parse_ns_limits("{\"a\": {\"maxAge\": 3600, \"other\": 1}}", o,
							      err, sizeof(err)),
				 -EINVAL);
		assert_non_null(strstr(err, "a.other"));
		free(o);
	}
}

static void test_config(void **state)
{
	struct fx *f = *state;
	struct moatd_config c;
	struct moat_archive_opts *o = opts();
	char p[400], err[512];
	FILE *fp;

	moatd_config_defaults(&c);
	snprintf(p, sizeof(p), "%s/moatd.yaml", f->dir);
	fp = fopen(p, "w");
	fputs("node: n1\narchive:\n  dir: /var/lib/moat/archive\n  segmentSize: 8Mi\n  segmentAge: 10m\n"
	      "  maxAge: 2d\n  maxSize: 100Mi\n  totalSize: 1Gi\n"
	      "  namespaces: {shop: {maxAge: 30d, maxSize: 5Gi}, dev: {maxAge: 1h}}\n",
	      fp);
	fclose(fp);
	assert_int_equal(moatd_config_load(p, &c, false, err, sizeof(err)), 0);
	assert_string_equal(c.archive_dir, "/var/lib/moat/archive");
	assert_int_equal(moat_archive_opts_from_config(&c, o, err, sizeof(err)), 0);
	assert_int_equal(o->segment_bytes, 8ull << 20);
	assert_int_equal(o->segment_ns, 600 * SEC);
	assert_int_equal(o->defaults.max_age_ns, 2 * 86400 * SEC);
	assert_int_equal(o->total_bytes, 1ull << 30);
	assert_int_equal(o->nns, 2);
	assert_int_equal(o->ns[0].max_bytes, 5ull << 30);
	assert_int_equal(o->ns[1].max_age_ns, 3600 * SEC);
	assert_int_equal(o->ns[1].max_bytes, 100ull << 20);

	/* a bad value: the setting is named, the running settings stay */
	fp = fopen(p, "w");
	fputs("archive:\n  maxAge: forever\n", fp);
	fclose(fp);
	assert_int_equal(moatd_config_load(p, &c, true, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "archive.maxAge"));
	assert_non_null(strstr(err, "forever"));
	assert_string_equal(c.archive_max_age, "2d");
	fp = fopen(p, "w");
	fputs("archive:\n  namespaces: {shop: {maxAge: 1d, maxBytes: 5}}\n", fp);
	fclose(fp);
	assert_int_equal(moatd_config_load(p, &c, true, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "shop.maxBytes"));
	fp = fopen(p, "w");
	fputs("archive:\n  retention: 1d\n", fp);
	fclose(fp);
	assert_int_equal(moatd_config_load(p, &c, true, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "archive.retention"));
	/* the flag form, repeated */
	assert_int_equal(moat_archive_flag(&c, 6, "a=1h:1Mi", err, sizeof(err)), 0);
	assert_int_equal(moat_archive_flag(&c, 6, "b=2h", err, sizeof(err)), 0);
	assert_string_equal(c.archive_namespaces, "a=1h:1Mi,b=2h");
	assert_int_equal(moat_archive_flag(&c, 3, "soon", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "archive.maxAge"));
	{
		/* the configuration's strings (the daemon keeps them for its life) */
		char **owned[] = { &c.node,
				   &c.archive_dir,
				   &c.archive_segment_size,
				   &c.archive_segment_age,
				   &c.archive_max_age,
				   &c.archive_max_size,
				   &c.archive_total_size,
				   &c.archive_queue_size,
				   &c.archive_namespaces };
		for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
			free(owned[i][0]);
	}
	free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parsers),
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partitions_and_tenancy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_by_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_age_rotation_and_retention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_by_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recovery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_overflow, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
