/* SPDX-License-Identifier: Apache-2.0 */
/* Pieces shared by the event benchmarks (sampler.c, archive.c).  A header:
 * each bench source is a program of its own. */
#ifndef MOAT_BENCH_H
#define MOAT_BENCH_H

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <bpf/bpf.h>
#include <arpa/inet.h>

#include "dp.h"
#include "pkt.h"
#include "util.h"

static inline void bench_pin_cpu(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

/* A UDP packet from 10.0.0.1 to a local pod 10.0.0.2 that no policy
 * selects: through moat_to_pod it is judged (default allow) and, with
 * conntrack bypassed or flushed, raises one event.  The pod gets its
 * ipcache entry here. */
static inline int bench_event_packet(struct moat_dp *dp, struct pkt *p)
{
	struct moat_ip4_key k = { .addr = htonl(0x0a000002) };
	struct moat_ip_info ii = { .identity = 100, .class = MOAT_CLASS_POD, .flags = MOAT_IP_F_LOCAL };
	struct moat_tx *tx;
	int err;

	pkt_init(p);
	pkt_eth(p, NULL, NULL);
	pkt_ip4(p, htonl(0x0a000001), htonl(0x0a000002));
	pkt_udp(p, 40000, 53);
	pkt_payload(p, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 64);
	pkt_finish(p);
	err = moat_tx_begin(dp, false, &tx);
	if (err)
		return err;
	err = moat_tx_put(tx, MOAT_T_IP4, &k, &ii);
	if (err) {
		moat_tx_abort(tx);
		return err;
	}
	err = moat_tx_commit(tx, NULL);
	return err ? err : moat_dp_settle(dp);
}

/* Runs prog on p at `rate` runs per second for `seconds`.  Each test run
 * with repeat > 1 swaps the kernel's XDP dispatcher (an RCU grace period,
 * ~16 ms): a call runs 100 ms worth, and the calls are paced.  Returns 0 or
 * -errno; *runs, the start and end times and the last call's ns per run. */
static inline int bench_paced_runs(int prog, const struct pkt *p, double rate, double seconds, uint64_t *runs,
				   uint64_t *t0, uint64_t *t1, uint64_t *ns_per_run)
{
	LIBBPF_OPTS(bpf_test_run_opts, topts, .data_in = p->data, .data_size_in = (__u32)p->len);
	const uint64_t chunk = (uint64_t)(rate / 10) ? (uint64_t)(rate / 10) : 1;

	*runs = 0;
	*t0 = moat_now_ns();
	for (;;) {
		uint64_t now = moat_now_ns(), target;
		if (now - *t0 >= (uint64_t)(seconds * 1e9))
			break;
		target = (uint64_t)((double)(now - *t0) / 1e9 * rate);
		if (*runs >= target) {
			struct timespec ts = { 0, 20000 };
			nanosleep(&ts, NULL);
			continue;
		}
		topts.repeat = (__u32)chunk;
		if (bpf_prog_test_run_opts(prog, &topts))
			return -errno;
		*runs += chunk;
		if (ns_per_run)
			*ns_per_run = topts.duration;
	}
	*t1 = moat_now_ns();
	return 0;
}

#endif
