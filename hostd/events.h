/* SPDX-License-Identifier: Apache-2.0 */
/* Verdict events: the perf-buffer consumer, enrichment with names, flow
 * aggregation, and the in-memory ring that live observers and `--last N`
 * read.  One consumer thread drains every CPU's ring with batched wakeups;
 * every loss is counted: perf ring overruns (PERF_RECORD_LOST), failed
 * outputs and rate-limit suppressions (moat_evstats), and gaps in the
 * per-CPU sequence numbers. */
#ifndef MOAT_EVENTS_H
#define MOAT_EVENTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "dp.h"
#include "model.h"

#define MOAT_EV_SNAP 128 /* packet bytes kept per event in memory */

/* Names a snapshot can give an event: who was talking. */
struct moat_names;

/* One event, decoded and enriched. */
struct moat_ev {
	uint64_t seq;     /* global, in arrival order */
	uint64_t wall_ns; /* CLOCK_REALTIME */
	struct moat_event raw;
	uint8_t family; /* 4 or 6, 0 if not IP */
	uint8_t proto;
	uint8_t tcp_flags;
	uint8_t pad;
	uint16_t sport, dport;
	struct moat_addr src, dst;
	char src_ns[64], src_pod[128]; /* "" when not a pod */
	char dst_ns[64], dst_pod[128];
	uint16_t caplen;
	uint8_t pkt[MOAT_EV_SNAP];
};

/* A flow record: one 5-tuple as the initiator opened it. */
struct moat_flow {
	uint64_t first_ns, last_ns; /* CLOCK_REALTIME */
	uint8_t family, proto;
	uint16_t sport, dport;
	struct moat_addr src, dst;
	char src_ns[64], src_pod[128], dst_ns[64], dst_pod[128];
	uint32_t src_identity, dst_identity;
	uint8_t verdict; /* MOAT_VERDICT_* of its first packet */
	uint8_t tier;
	uint8_t tcp_flags; /* union seen in events */
	uint8_t ended;
	uint32_t rule;
	uint64_t packets, bytes; /* from conntrack at flow end; else sampled */
	uint64_t denied;         /* denied attempts (deny flows) */
};

struct moat_events_stats {
	uint64_t delivered;  /* events received by user space */
	uint64_t perf_lost;  /* PERF_RECORD_LOST counts */
	uint64_t seq_gaps;   /* events missing by sequence number */
	uint64_t emitted;    /* datapath: outputs that succeeded */
	uint64_t failed;     /* datapath: outputs that failed (ring full) */
	uint64_t suppressed; /* datapath: deny events held back by the rate limit */
	uint64_t flows_active, flows_ended, flows_evicted;
	uint64_t sink_dropped; /* events the archive could not take */
};

/* Where enriched events and finished flows go (the archive). */
struct moat_ev_sink {
	void (*event)(void *arg, const struct moat_ev *ev);
	void (*flow)(void *arg, const struct moat_flow *fl);       /* ended or evicted */
	void (*flow_start)(void *arg, const struct moat_flow *fl); /* archive: a new flow record */
	void *arg;
};

struct moat_events;

struct moat_events_opts {
	size_t ring;            /* events kept for observers (default 65536) */
	size_t max_flows;       /* flow table bound (default 262144) */
	unsigned pages_per_cpu; /* perf ring (default 1024 pages = 4 MiB) */
	unsigned wakeup;        /* events per wakeup (default 128) */
	struct moat_ev_sink sink;
};

int moat_events_start(struct moat_dp *dp, const struct moat_events_opts *o, struct moat_events **ret);
void moat_events_stop(struct moat_events *e);
void moat_events_stats(struct moat_events *e, struct moat_events_stats *st);

/* Names: built by the daemon after each generation (identity -> namespace,
 * address -> pod), published atomically; the consumer reads the current one. */
struct moat_names *moat_names_new(void);
void moat_names_add_pod(struct moat_names *n, const struct moat_addr *a, const char *ns, const char *pod);
void moat_names_add_identity(struct moat_names *n, uint32_t id, const char *ns);
void moat_events_set_names(struct moat_events *e, struct moat_names *n); /* takes ownership */

/* A filter over events and flows, as observers and queries give it. */
struct moat_ev_filter {
	const char *ns;     /* either side in this namespace */
	const char *pod;    /* either side this pod ("ns/name" or "name") */
	const char *ip;     /* either side this address */
	int port;           /* destination port; -1 any */
	int proto;          /* -1 any */
	int verdict;        /* -1 any, else MOAT_VERDICT_* */
	int type;           /* -1 any, else MOAT_EV_* */
	uint32_t rule;      /* 0 any */
	const char *policy; /* substring of the rule's description */
	char **allowed_ns;  /* tenancy: NULL = all; else both... see api */
	size_t nallowed_ns;
	/* by labels: either side's identity among ids (sorted), resolved by
	 * the caller from a selector */
	bool by_ids;
	const uint32_t *ids;
	size_t nids;
	struct moat_selector *label_sel; /* the selector, owned by the API */
	uint32_t *ids_owned;
};

bool moat_ev_match(const struct moat_ev *ev, const struct moat_ev_filter *f, const char *ruledesc);
bool moat_flow_match(const struct moat_flow *fl, const struct moat_ev_filter *f, const char *ruledesc);

/* Copies matching events with seq > after (oldest first), at most max; the
 * last seq returned in *ret_last.  Blocks up to timeout_ms for new ones when
 * none match yet (timeout 0: do not wait). */
size_t moat_events_read(struct moat_events *e, uint64_t after, struct moat_ev *out, size_t max,
			int timeout_ms, uint64_t *ret_last);
/* The sequence number of the newest event (0: none yet). */
uint64_t moat_events_head(struct moat_events *e);
/* Snapshot of flows (active and recently ended), newest first. */
size_t moat_events_flows(struct moat_events *e, struct moat_flow *out, size_t max);

json_t *moat_ev_json(const struct moat_ev *ev, const char *ruledesc);
json_t *moat_flow_json(const struct moat_flow *fl, const char *ruledesc);

/* Conntrack garbage collection hands expired flows over as ended flows. */
void moat_events_flow_expired(struct moat_events *e, const struct moat_ct_view *v);

#endif
