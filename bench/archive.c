// SPDX-License-Identifier: Apache-2.0
/* Archive benchmark (issue 5 point 5): how many verdict events per second
 * the flight recorder (hostd/archive.c) writes into pcapng segments.
 *
 * Phase 1, writer: synthetic events (128 packet bytes, pod names, half of
 * them between two namespaces, so written to two partitions) pushed through
 * the archive's sink as fast as the writer takes them (the producer backs
 * off while the queue is over half full, so nothing is lost and the writer
 * is the bottleneck).
 *   archive_write_events_per_s   events written per second (each to 1-2 partitions)
 *   archive_write_mb_per_s       segment bytes per second
 * Phase 2, pipeline: the enforcer run by BPF_PROG_TEST_RUN at a paced rate
 * (default 1 M/s, the sampler's target) emits events through the perf
 * buffer into the real consumer (hostd/events.c) with the archive as its
 * sink, every event between two namespaces.  Side by side in one run:
 *   archive_pipeline_delivered_per_s   events the consumer received per second
 *   archive_pipeline_written_per_s     of those, written into segments per second
 *   archive_pipeline_loss_ratio        archive queue losses / delivered
 *   archive_unaccounted                delivered - written - counted losses (must be 0)
 * The same run first measures the consumer alone (no sink) at the same rate:
 *   archive_pipeline_baseline_delivered_per_s
 * Both phases write into a fresh directory under --dir (default /var/tmp),
 * removed afterwards.
 *
 *   build/bench/archive [--seconds S] [--rate EVENTS_PER_S] [--dir DIR] [--no-pipeline]
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "archive.h"
#include "dp.h"
#include "events.h"
#include "bench.h"
#include "pkt.h"
#include "util.h"

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (!d) {
		unlink(path);
		return;
	}
	while ((de = readdir(d))) {
		char p[4400];
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
		rm_rf(p);
	}
	closedir(d);
	rmdir(path);
}

static uint64_t wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int open_archive(const char *dir, size_t queue, struct moat_archive **a)
{
	struct moat_archive_opts o;
	char err[256];

	moat_archive_opts_defaults(&o);
	o.dir = dir;
	o.node = "bench";
	o.queue_bytes = queue;
	if (moat_archive_open(&o, a, err, sizeof(err))) {
		fprintf(stderr, "archive: %s: %s\n", dir, err);
		return -1;
	}
	return 0;
}

/* ---- phase 1: the writer alone ---------------------------------------------- */
static int writer_phase(const char *base, double seconds, double *eps, double *mbps)
{
	char dir[4200];
	struct moat_archive *a;
	struct moat_archive_stats st;
	struct moat_ev_sink s;
	struct moat_ev ev;
	struct pkt p;
	uint64_t t0, t1, n = 0;
	static const char *const nss[] = { "shop", "pay", "dev", "ops", "web", "db", "cache", "auth" };

	snprintf(dir, sizeof(dir), "%s/writer", base);
	if (open_archive(dir, 64u << 20, &a))
		return -1;
	s = moat_archive_sink(a);
	memset(&ev, 0, sizeof(ev));
	pkt_init(&p);
	pkt_eth(&p, NULL, NULL);
	pkt_ip4(&p, htonl(0x0a000001), htonl(0x0a000002));
	pkt_tcp(&p, 40000, 5432, PKT_TCP_SYN);
	pkt_payload(&p, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 64);
	pkt_finish(&p);
	ev.caplen = (uint16_t)(p.len < MOAT_EV_SNAP ? p.len : MOAT_EV_SNAP);
	memcpy(ev.pkt, p.data, ev.caplen);
	ev.raw.type = MOAT_EV_NEW_FLOW;
	ev.raw.verdict = MOAT_VERDICT_ALLOW;
	ev.raw.tier = MOAT_TIER_DEFAULT;
	ev.raw.rule = MOAT_RULE_DEFAULT_ALLOW;
	ev.raw.hook = MOAT_HOOK_FROM_POD;
	ev.raw.ifindex = 7;
	ev.raw.src_identity = 17;
	ev.raw.dst_identity = 18;
	ev.raw.pkt_len = (uint32_t)p.len;
	ev.family = 4;
	ev.proto = IPPROTO_TCP;
	ev.sport = 40000;
	ev.dport = 5432;
	moat_addr_parse("10.0.0.1", &ev.src);
	moat_addr_parse("10.0.0.2", &ev.dst);
	t0 = moat_now_ns();
	while (moat_now_ns() - t0 < (uint64_t)(seconds * 1e9)) {
		for (int i = 0; i < 1024; i++, n++) {
			/* half within a namespace, half across two; 8 namespaces, 16 pods each */
			strcpy(ev.src_ns, nss[n % 8]);
			strcpy(ev.dst_ns, nss[(n + (n & 1)) % 8]);
			memcpy(ev.src_pod, "frontend-", 9);
			ev.src_pod[9] = (char)('a' + n % 16);
			ev.src_pod[10] = 0;
			memcpy(ev.dst_pod, "backend-", 8);
			ev.dst_pod[8] = (char)('a' + (n / 16) % 16);
			ev.dst_pod[9] = 0;
			ev.wall_ns = wall();
			ev.sport = (uint16_t)(1024 + n % 60000);
			s.event(s.arg, &ev);
		}
		moat_archive_stats(a, &st);
		while (st.queue_used > st.queue_size / 2) {
			struct timespec ts = { 0, 100000 };
			nanosleep(&ts, NULL);
			moat_archive_stats(a, &st);
		}
	}
	moat_archive_flush(a, 60000);
	t1 = moat_now_ns();
	moat_archive_stats(a, &st);
	*eps = (double)st.written / ((double)(t1 - t0) / 1e9);
	*mbps = (double)st.bytes_written / 1e6 / ((double)(t1 - t0) / 1e9);
	fprintf(stderr,
		"archive writer: %llu events offered, %llu written, %llu lost, %.1f MB in %.2f s: "
		"%.0f events/s, %.1f MB/s (%.0f bytes per event, both partitions)\n",
		(unsigned long long)st.offered, (unsigned long long)st.written,
		(unsigned long long)st.queue_lost, st.bytes_written / 1e6, (t1 - t0) / 1e9, *eps, *mbps,
		st.written ? (double)st.bytes_written / (double)st.written : 0.0);
	moat_archive_close(a);
	rm_rf(dir);
	return st.queue_lost ? -1 : 0;
}

/* ---- phase 2: datapath -> consumer -> archive ---------------------------------- */
static int pipeline_phase(const char *base, double rate, double seconds, bool archive)
{
	struct moat_dp_opts dpo = { .no_pin = true, .events = true, .bench_no_ct = true };
	struct moat_events_opts eo = { .ring = 4096, .max_flows = 1024 };
	struct moat_events_stats es;
	struct moat_archive_stats as;
	struct moat_archive *a = NULL;
	struct moat_events *ev;
	struct moat_names *names;
	struct moat_dp *dp;
	struct moat_config *cfg;
	struct moat_addr x, y;
	struct pkt p;
	char dir[4200];
	uint64_t t0 = 0, t1 = 0, runs = 0;
	int prog;

	if (moat_dp_open(&dpo, &dp, NULL)) {
		fprintf(stderr, "archive: cannot load the datapath (root? BPF?): pipeline phase skipped\n");
		return 1;
	}
	cfg = moat_dp_config(dp);
	cfg->snaplen = 128;
	prog = moat_dp_prog_fd(dp, MOAT_HOOK_TO_POD);
	if (bench_event_packet(dp, &p)) {
		fprintf(stderr, "archive: cannot give the packet's pod an identity\n");
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/pipeline", base);
	if (archive) {
		if (open_archive(dir, 64u << 20, &a))
			return -1;
		eo.sink = moat_archive_sink(a);
	}
	bench_pin_cpu(1);
	if (moat_events_start(dp, &eo, &ev)) {
		fprintf(stderr, "archive: cannot start the consumer\n");
		return -1;
	}
	bench_pin_cpu(0);
	/* both ends named: every event goes to two namespaces' partitions */
	names = moat_names_new();
	moat_addr_parse("10.0.0.1", &x);
	moat_addr_parse("10.0.0.2", &y);
	moat_names_add_pod(names, &x, "shop", "frontend-0");
	moat_names_add_pod(names, &y, "pay", "backend-0");
	moat_events_set_names(ev, names);
	moat_archive_set_events(a, ev);
	if (bench_paced_runs(prog, &p, rate, seconds, &runs, &t0, &t1, NULL)) {
		fprintf(stderr, "archive: test run failed: %s\n", strerror(errno));
		return -1;
	}
	/* drain the rings, then the archive's queue */
	for (int i = 0; i < 100; i++) {
		usleep(20000);
		moat_events_stats(ev, &es);
		if (es.delivered >= es.emitted)
			break;
	}
	moat_events_stats(ev, &es);
	if (!archive) {
		double secs = (double)(t1 - t0) / 1e9;
		fprintf(stderr,
			"consumer alone: %llu runs in %.2f s (%.0f/s offered); emitted %llu, failed %llu, "
			"delivered %llu\n",
			(unsigned long long)runs, secs, runs / secs, (unsigned long long)es.emitted,
			(unsigned long long)es.failed, (unsigned long long)es.delivered);
		printf(", \"archive_pipeline_baseline_delivered_per_s\": %.0f", es.delivered / secs);
		moat_events_stop(ev);
		moat_dp_close(dp);
		return 0;
	}
	moat_archive_flush(a, 60000);
	moat_events_stats(ev, &es);
	moat_archive_stats(a, &as);
	{
		double secs = (double)(t1 - t0) / 1e9;
		long long unaccounted =
			(long long)es.delivered - (long long)as.written - (long long)as.queue_lost;
		fprintf(stderr,
			"archive pipeline: %llu runs in %.2f s (%.0f/s offered); emitted %llu, failed %llu, "
			"delivered %llu; archive: written %llu, lost (queue full) %llu, %.1f MB\n",
			(unsigned long long)runs, secs, runs / secs, (unsigned long long)es.emitted,
			(unsigned long long)es.failed, (unsigned long long)es.delivered,
			(unsigned long long)as.written, (unsigned long long)as.queue_lost,
			as.bytes_written / 1e6);
		printf(", \"archive_pipeline_delivered_per_s\": %.0f, \"archive_pipeline_written_per_s\": %.0f, "
		       "\"archive_pipeline_loss_ratio\": %.6f, \"archive_unaccounted\": %lld",
		       es.delivered / secs, as.written / secs,
		       es.delivered ? (double)as.queue_lost / (double)es.delivered : 0.0, unaccounted);
	}
	moat_archive_set_events(a, NULL);
	moat_events_stop(ev);
	moat_archive_close(a);
	moat_dp_close(dp);
	rm_rf(dir);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "seconds", required_argument, NULL, 's' },
					      { "rate", required_argument, NULL, 'r' },
					      { "dir", required_argument, NULL, 'd' },
					      { "no-pipeline", no_argument, NULL, 'n' },
					      { 0 } };
	const char *base = "/var/tmp";
	double seconds = 3, rate = 1e6, eps = 0, mbps = 0;
	bool pipeline = true;
	char dir[4096];
	int o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			seconds = atof(optarg);
			break;
		case 'r':
			rate = atof(optarg);
			break;
		case 'd':
			base = optarg;
			break;
		case 'n':
			pipeline = false;
			break;
		default:
			return 2;
		}
	}
	snprintf(dir, sizeof(dir), "%s/moat-bench-archive.XXXXXX", base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "archive: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	rc = writer_phase(dir, seconds, &eps, &mbps);
	printf("{\"archive_write_events_per_s\": %.0f, \"archive_write_mb_per_s\": %.1f", eps, mbps);
	/* side by side: the consumer alone, then with the archive as its sink */
	if (!rc && pipeline)
		rc = pipeline_phase(dir, rate, seconds, false);
	if (!rc && pipeline)
		rc = pipeline_phase(dir, rate, seconds, true) < 0 ? 1 : 0;
	printf("}\n");
	rm_rf(dir);
	return rc < 0 ? 1 : rc;
}
