// SPDX-License-Identifier: Apache-2.0
/* Verdict event consumer.  See events.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "events.h"
#include "util.h"

struct names_pod {
	__u8 key[17];
	char ns[64];
	char pod[128];
};

struct names_id {
	uint32_t id;
	char ns[64];
};

struct moat_names {
	struct hmap pods; /* addr key -> names_pod */
	struct hmap ids;  /* id -> names_id */
	int refs;
};

struct flow_ent {
	__u8 key[40]; /* family, proto, src, dst, sport, dport */
	struct moat_flow f;
	struct flow_ent *older, *newer; /* recency list */
};

struct moat_events {
	struct moat_dp *dp;
	struct perf_buffer *pb;
	pthread_t thread;
	volatile int stop;
	struct moat_ev_sink sink;

	pthread_mutex_t lock; /* ring, flows, names, stats */
	pthread_cond_t cond;
	struct moat_ev *ring;
	size_t ring_size;
	uint64_t head; /* seq of the newest event; ring[seq % size] */
	struct moat_names *names;

	struct hmap flows;
	struct flow_ent *newest, *oldest;
	size_t nflows, max_flows;
	size_t nended; /* of nflows: ended, kept until evicted */

	uint64_t last_seq[1024]; /* per CPU; 0 = none seen */
	bool seen[1024];
	struct moat_events_stats st;
	__u64 base[MOAT_EVS_MAX]; /* pinned datapath counters when we started */
	int64_t clock_delta;      /* realtime - monotonic, ns */
};

static uint64_t now_real(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- names ------------------------------------------------------------ */
struct moat_names *moat_names_new(void)
{
	struct moat_names *n = xcalloc(1, sizeof(*n));
	hmap_init(&n->pods);
	hmap_init(&n->ids);
	n->refs = 1;
	return n;
}

static void names_key(const struct moat_addr *a, __u8 k[17])
{
	k[0] = (__u8)a->family;
	memcpy(k + 1, a->a, 16);
}

void moat_names_add_pod(struct moat_names *n, const struct moat_addr *a, const char *ns, const char *pod)
{
	struct names_pod *p = xcalloc(1, sizeof(*p));
	void *old = NULL;

	names_key(a, p->key);
	snprintf(p->ns, sizeof(p->ns), "%s", ns);
	snprintf(p->pod, sizeof(p->pod), "%s", pod);
	hmap_put(&n->pods, p->key, sizeof(p->key), p, &old);
	free(old);
}

void moat_names_add_identity(struct moat_names *n, uint32_t id, const char *ns)
{
	struct names_id *p = xcalloc(1, sizeof(*p));
	void *old = NULL;

	p->id = id;
	snprintf(p->ns, sizeof(p->ns), "%s", ns ? ns : "");
	hmap_put(&n->ids, &p->id, sizeof(p->id), p, &old);
	free(old);
}

static void names_put(struct moat_names *n)
{
	size_t it = 0;
	void *v;

	if (!n || --n->refs > 0)
		return;
	while (hmap_next(&n->pods, &it, NULL, NULL, &v))
		free(v);
	it = 0;
	while (hmap_next(&n->ids, &it, NULL, NULL, &v))
		free(v);
	hmap_free(&n->pods);
	hmap_free(&n->ids);
	free(n);
}

void moat_events_set_names(struct moat_events *e, struct moat_names *n)
{
	struct moat_names *old;

	pthread_mutex_lock(&e->lock);
	old = e->names;
	e->names = n;
	pthread_mutex_unlock(&e->lock);
	names_put(old);
}

static void name_side(const struct moat_names *n, const struct moat_addr *a, uint32_t id, char *ns,
		      size_t nsl, char *pod, size_t podl)
{
	__u8 k[17];
	const struct names_pod *p;
	const struct names_id *i;

	ns[0] = pod[0] = 0;
	if (!n)
		return;
	if (a->family) {
		names_key(a, k);
		p = hmap_get(&n->pods, k, sizeof(k));
		if (p) {
			snprintf(ns, nsl, "%s", p->ns);
			snprintf(pod, podl, "%s", p->pod);
			return;
		}
	}
	i = hmap_get(&n->ids, &id, sizeof(id));
	if (i)
		snprintf(ns, nsl, "%s", i->ns);
}

/* ---- packet bytes -> 5-tuple --------------------------------------------- */
static void parse_tuple(struct moat_ev *ev)
{
	const uint8_t *p = ev->pkt, *end = ev->pkt + ev->caplen;
	uint16_t et;
	uint8_t nh;

	if (end - p < 14)
		return;
	et = (uint16_t)(p[12] << 8 | p[13]);
	p += 14;
	for (int i = 0; i < 2 && (et == 0x8100 || et == 0x88a8); i++) {
		if (end - p < 4)
			return;
		et = (uint16_t)(p[2] << 8 | p[3]);
		p += 4;
	}
	if (et == 0x0800) {
		if (end - p < 20)
			return;
		ev->family = 4;
		ev->src.family = ev->dst.family = 4;
		memcpy(ev->src.a, p + 12, 4);
		memcpy(ev->dst.a, p + 16, 4);
		nh = p[9];
		if ((p[6] & 0x1f) || p[7])
			return; /* later fragment: no ports */
		p += (p[0] & 0xf) * 4;
	} else if (et == 0x86dd) {
		if (end - p < 40)
			return;
		ev->family = 6;
		ev->src.family = ev->dst.family = 6;
		memcpy(ev->src.a, p + 8, 16);
		memcpy(ev->dst.a, p + 24, 16);
		nh = p[6];
		p += 40;
		for (int i = 0; i < 8 && (nh == 0 || nh == 43 || nh == 60 || nh == 44 || nh == 51); i++) {
			if (end - p < 8)
				return;
			uint8_t nn = p[0];
			p += nh == 44 ? 8 : nh == 51 ? (p[1] + 2) * 4 : (p[1] + 1) * 8;
			nh = nn;
		}
	} else {
		return;
	}
	ev->proto = nh;
	if ((nh == IPPROTO_TCP || nh == IPPROTO_UDP || nh == IPPROTO_SCTP) && end - p >= 4) {
		ev->sport = (uint16_t)(p[0] << 8 | p[1]);
		ev->dport = (uint16_t)(p[2] << 8 | p[3]);
		if (nh == IPPROTO_TCP && end - p >= 14)
			ev->tcp_flags = p[13];
	} else if ((nh == IPPROTO_ICMP || nh == IPPROTO_ICMPV6) && end - p >= 8) {
		ev->sport = ev->dport = (uint16_t)(p[4] << 8 | p[5]);
	}
}

/* ---- flows ----------------------------------------------------------------- */
static void flow_key(__u8 k[40], uint8_t fam, uint8_t proto, const struct moat_addr *s,
		     const struct moat_addr *d, uint16_t sp, uint16_t dp)
{
	memset(k, 0, 40);
	k[0] = fam;
	k[1] = proto;
	memcpy(k + 2, s->a, 16);
	memcpy(k + 18, d->a, 16);
	memcpy(k + 34, &sp, 2);
	memcpy(k + 36, &dp, 2);
}

static void lru_unlink(struct moat_events *e, struct flow_ent *f)
{
	if (f->older)
		f->older->newer = f->newer;
	else
		e->oldest = f->newer;
	if (f->newer)
		f->newer->older = f->older;
	else
		e->newest = f->older;
	f->older = f->newer = NULL;
}

static void lru_push(struct moat_events *e, struct flow_ent *f)
{
	f->older = e->newest;
	f->newer = NULL;
	if (e->newest)
		e->newest->newer = f;
	e->newest = f;
	if (!e->oldest)
		e->oldest = f;
}

/* Forgets a flow; an active one is handed to the sink first (an ended one
 * was handed over when it ended). */
static void flow_drop(struct moat_events *e, struct flow_ent *f, bool evicted)
{
	if (f->f.ended) {
		e->nended--;
	} else {
		if (e->sink.flow)
			e->sink.flow(e->sink.arg, &f->f);
		if (evicted)
			e->st.flows_evicted++;
	}
	lru_unlink(e, f);
	hmap_del(&e->flows, f->key, sizeof(f->key));
	e->nflows--;
	free(f);
}

/* A flow ended: its record is final (the sink gets it now) and stays
 * listed among the recent flows until newer ones push it out. */
static void flow_finish(struct moat_events *e, struct flow_ent *f)
{
	f->f.ended = 1;
	e->st.flows_ended++;
	e->nended++;
	if (e->sink.flow)
		e->sink.flow(e->sink.arg, &f->f);
}

static struct flow_ent *flow_find(struct moat_events *e, const struct moat_ev *ev, bool *reverse)
{
	__u8 k[40];
	struct flow_ent *f;

	flow_key(k, ev->family, ev->proto, &ev->src, &ev->dst, ev->sport, ev->dport);
	f = hmap_get(&e->flows, k, sizeof(k));
	if (f) {
		*reverse = false;
		return f;
	}
	flow_key(k, ev->family, ev->proto, &ev->dst, &ev->src, ev->dport, ev->sport);
	f = hmap_get(&e->flows, k, sizeof(k));
	*reverse = f != NULL;
	return f;
}

static void flow_event(struct moat_events *e, const struct moat_ev *ev)
{
	struct flow_ent *f;
	bool rev = false;

	if (!ev->family)
		return;
	f = flow_find(e, ev, &rev);
	if (f && f->f.ended) {
		if (ev->raw.type == MOAT_EV_FLOW_END)
			return;         /* already final */
		flow_drop(e, f, false); /* the 5-tuple is reused: a new flow */
		f = NULL;
	}
	if (!f && (ev->raw.type == MOAT_EV_NEW_FLOW || ev->raw.type == MOAT_EV_DENY ||
		   ev->raw.type == MOAT_EV_AUDIT || ev->raw.type == MOAT_EV_SAMPLE)) {
		while (e->nflows >= e->max_flows && e->oldest)
			flow_drop(e, e->oldest, true);
		f = xcalloc(1, sizeof(*f));
		flow_key(f->key, ev->family, ev->proto, &ev->src, &ev->dst, ev->sport, ev->dport);
		f->f.first_ns = ev->wall_ns;
		f->f.family = ev->family;
		f->f.proto = ev->proto;
		f->f.sport = ev->sport;
		f->f.dport = ev->dport;
		f->f.src = ev->src;
		f->f.dst = ev->dst;
		memcpy(f->f.src_ns, ev->src_ns, sizeof(f->f.src_ns));
		memcpy(f->f.src_pod, ev->src_pod, sizeof(f->f.src_pod));
		memcpy(f->f.dst_ns, ev->dst_ns, sizeof(f->f.dst_ns));
		memcpy(f->f.dst_pod, ev->dst_pod, sizeof(f->f.dst_pod));
		f->f.src_identity = ev->raw.src_identity;
		f->f.dst_identity = ev->raw.dst_identity;
		f->f.verdict = ev->raw.verdict;
		f->f.tier = ev->raw.tier;
		f->f.rule = ev->raw.rule;
		hmap_put(&e->flows, f->key, sizeof(f->key), f, NULL);
		e->nflows++;
		lru_push(e, f);
		if (e->sink.flow_start) /* the archive records flows as they start */
			e->sink.flow_start(e->sink.arg, &f->f);
	}
	if (!f)
		return;
	lru_unlink(e, f);
	lru_push(e, f);
	f->f.last_ns = ev->wall_ns;
	f->f.tcp_flags |= ev->tcp_flags;
	if (ev->raw.type == MOAT_EV_DENY) {
		f->f.denied++;
		if (f->f.verdict != MOAT_VERDICT_DENY) {
			/* a flow now denied (revoked): its verdict changes */
			f->f.verdict = MOAT_VERDICT_DENY;
			f->f.rule = ev->raw.rule;
			f->f.tier = ev->raw.tier;
		}
	} else {
		f->f.packets++;
		f->f.bytes += ev->raw.pkt_len;
	}
	if (ev->raw.type == MOAT_EV_FLOW_END) {
		if (ev->raw.flow_packets) {
			f->f.packets = ev->raw.flow_packets;
			f->f.bytes = ev->raw.flow_bytes;
		}
		flow_finish(e, f);
	}
}

void moat_events_flow_expired(struct moat_events *e, const struct moat_ct_view *v)
{
	struct moat_ev ev;
	struct flow_ent *f;
	bool rev;

	memset(&ev, 0, sizeof(ev));
	ev.family = (uint8_t)v->family;
	ev.proto = v->proto;
	ev.src.family = ev.dst.family = v->family;
	/* the initiator is endpoint a unless MOAT_CT_INIT_B */
	if (v->e.flags & MOAT_CT_INIT_B) {
		memcpy(ev.src.a, v->b_addr, 16);
		memcpy(ev.dst.a, v->a_addr, 16);
		ev.sport = v->b_port;
		ev.dport = v->a_port;
	} else {
		memcpy(ev.src.a, v->a_addr, 16);
		memcpy(ev.dst.a, v->b_addr, 16);
		ev.sport = v->a_port;
		ev.dport = v->b_port;
	}
	pthread_mutex_lock(&e->lock);
	f = flow_find(e, &ev, &rev);
	if (f && !f->f.ended) {
		f->f.packets = v->e.packets;
		f->f.bytes = v->e.bytes;
		f->f.last_ns = now_real();
		flow_finish(e, f);
	}
	pthread_mutex_unlock(&e->lock);
}

/* ---- consumer ------------------------------------------------------------------ */
struct sample {
	struct perf_event_header h;
	__u32 size;
	__u8 data[];
};

struct lost {
	struct perf_event_header h;
	__u64 id;
	__u64 lost;
};

static void deliver(struct moat_events *e, int cpu, const struct moat_event *raw, const __u8 *pkt,
		    size_t caplen)
{
	struct moat_ev *ev;
	uint64_t seq;

	e->st.delivered++;
	if (cpu >= 0 && cpu < 1024) {
		if (e->seen[cpu] && raw->seq > e->last_seq[cpu] + 1)
			e->st.seq_gaps += raw->seq - e->last_seq[cpu] - 1;
		e->last_seq[cpu] = raw->seq;
		e->seen[cpu] = true;
	}
	seq = ++e->head;
	ev = &e->ring[seq % e->ring_size];
	memset(ev, 0, offsetof(struct moat_ev, pkt));
	ev->seq = seq;
	ev->raw = *raw;
	ev->wall_ns = raw->ts_ns + (uint64_t)e->clock_delta;
	ev->caplen = (uint16_t)(caplen < MOAT_EV_SNAP ? caplen : MOAT_EV_SNAP);
	memcpy(ev->pkt, pkt, ev->caplen);
	parse_tuple(ev);
	name_side(e->names, &ev->src, raw->src_identity, ev->src_ns, sizeof(ev->src_ns), ev->src_pod,
		  sizeof(ev->src_pod));
	name_side(e->names, &ev->dst, raw->dst_identity, ev->dst_ns, sizeof(ev->dst_ns), ev->dst_pod,
		  sizeof(ev->dst_pod));
	flow_event(e, ev);
	if (e->sink.event)
		e->sink.event(e->sink.arg, ev);
}

static enum bpf_perf_event_ret on_record(void *ctx, int cpu, struct perf_event_header *h)
{
	struct moat_events *e = ctx;

	if (h->type == PERF_RECORD_SAMPLE) {
		const struct sample *s = (const void *)h;
		struct moat_event raw; /* copied: the record is only 4-byte aligned */
		if (s->size < sizeof(raw))
			return LIBBPF_PERF_EVENT_CONT;
		memcpy(&raw, s->data, sizeof(raw));
		size_t cap = raw.cap_len;
		if (cap > s->size - sizeof(raw))
			cap = s->size - sizeof(raw);
		pthread_mutex_lock(&e->lock);
		deliver(e, cpu, &raw, s->data + sizeof(raw), cap);
		pthread_mutex_unlock(&e->lock);
	} else if (h->type == PERF_RECORD_LOST) {
		const struct lost *l = (const void *)h;
		pthread_mutex_lock(&e->lock);
		e->st.perf_lost += l->lost;
		pthread_mutex_unlock(&e->lock);
	}
	return LIBBPF_PERF_EVENT_CONT;
}

static void *consumer(void *arg)
{
	struct moat_events *e = arg;
	int n;

	while (!e->stop) {
		uint64_t before = e->st.delivered;
		/* batched wakeups keep the cost low under load; draining on the
		 * timeout bounds the delay on a quiet node to 50 ms */
		n = perf_buffer__poll(e->pb, 50);
		if (n == 0)
			perf_buffer__consume(e->pb);
		if (n > 0 || e->st.delivered != before) {
			pthread_mutex_lock(&e->lock);
			pthread_cond_broadcast(&e->cond);
			pthread_mutex_unlock(&e->lock);
		}
	}
	perf_buffer__consume(e->pb);
	return NULL;
}

int moat_events_start(struct moat_dp *dp, const struct moat_events_opts *o, struct moat_events **ret)
{
	struct moat_events *e = xcalloc(1, sizeof(*e));
	struct perf_event_attr attr;
	LIBBPF_OPTS(perf_buffer_raw_opts, ropts);
	int fd = moat_dp_map_fd(dp, MOAT_MAP_EVENTS), err;

	if (fd < 0) {
		free(e);
		return fd;
	}
	e->dp = dp;
	e->ring_size = o && o->ring ? o->ring : 65536;
	e->max_flows = o && o->max_flows ? o->max_flows : 262144;
	if (o)
		e->sink = o->sink;
	e->ring = xcalloc(e->ring_size, sizeof(*e->ring));
	e->clock_delta = (int64_t)(now_real() - now_mono());
	hmap_init(&e->flows);
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->cond, NULL);

	memset(&attr, 0, sizeof(attr));
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_BPF_OUTPUT;
	attr.sample_type = PERF_SAMPLE_RAW;
	attr.sample_period = 1;
	/* batched wakeups: one per `wakeup` events, not one per event */
	attr.wakeup_events = o && o->wakeup ? o->wakeup : 128;
	/* the datapath's counters are pinned and outlive daemons: count from here */
	for (int i = 0; i < MOAT_EVS_MAX; i++)
		moat_dp_event_stat(dp, (__u32)i, &e->base[i]);
	e->pb = perf_buffer__new_raw(fd, o && o->pages_per_cpu ? o->pages_per_cpu : 1024, &attr, on_record, e,
				     &ropts);
	if (!e->pb) {
		err = -errno;
		goto fail;
	}
	if (pthread_create(&e->thread, NULL, consumer, e)) {
		err = -EAGAIN;
		goto fail;
	}
	*ret = e;
	return 0;
fail:
	perf_buffer__free(e->pb);
	free(e->ring);
	hmap_free(&e->flows);
	free(e);
	return err;
}

void moat_events_stop(struct moat_events *e)
{
	size_t it = 0;
	void *v;

	if (!e)
		return;
	e->stop = 1;
	pthread_join(e->thread, NULL);
	perf_buffer__free(e->pb);
	while (hmap_next(&e->flows, &it, NULL, NULL, &v))
		free(v);
	hmap_free(&e->flows);
	names_put(e->names);
	free(e->ring);
	free(e);
}

void moat_events_stats(struct moat_events *e, struct moat_events_stats *st)
{
	__u64 v;

	pthread_mutex_lock(&e->lock);
	*st = e->st;
	st->flows_active = e->nflows - e->nended;
	pthread_mutex_unlock(&e->lock);
	if (!moat_dp_event_stat(e->dp, MOAT_EVS_EMITTED, &v))
		st->emitted = v - e->base[MOAT_EVS_EMITTED];
	if (!moat_dp_event_stat(e->dp, MOAT_EVS_FAILED, &v))
		st->failed = v - e->base[MOAT_EVS_FAILED];
	if (!moat_dp_event_stat(e->dp, MOAT_EVS_SUPPRESSED, &v))
		st->suppressed = v - e->base[MOAT_EVS_SUPPRESSED];
}

/* ---- filters and reading ---------------------------------------------------- */
static bool side_pod_match(const char *ns, const char *pod, const char *want)
{
	const char *slash = strchr(want, '/');

	if (!*pod)
		return false;
	if (slash)
		return !strncmp(ns, want, (size_t)(slash - want)) && ns[slash - want] == 0 &&
		       !strcmp(pod, slash + 1);
	return !strcmp(pod, want);
}

static bool ns_allowed(const struct moat_ev_filter *f, const char *a, const char *b)
{
	if (!f->allowed_ns)
		return true;
	for (size_t i = 0; i < f->nallowed_ns; i++)
		if (!strcmp(a, f->allowed_ns[i]) || !strcmp(b, f->allowed_ns[i]))
			return true;
	return false;
}

static bool common_match(const struct moat_ev_filter *f, const char *sns, const char *spod, const char *dns,
			 const char *dpod, const struct moat_addr *s, const struct moat_addr *d, int proto,
			 int dport, int verdict, uint32_t rule, const char *ruledesc)
{
	char b1[64], b2[64];

	if (!ns_allowed(f, sns, dns))
		return false;
	if (f->ns && strcmp(sns, f->ns) && strcmp(dns, f->ns))
		return false;
	if (f->pod && !side_pod_match(sns, spod, f->pod) && !side_pod_match(dns, dpod, f->pod))
		return false;
	if (f->ip &&
	    (!s->family || (strcmp(moat_addr_str(s, b1), f->ip) && strcmp(moat_addr_str(d, b2), f->ip))))
		return false;
	if (f->port >= 0 && dport != f->port)
		return false;
	if (f->proto >= 0 && proto != f->proto)
		return false;
	if (f->verdict >= 0 && verdict != f->verdict)
		return false;
	if (f->rule && rule != f->rule)
		return false;
	if (f->policy && (!ruledesc || !strstr(ruledesc, f->policy)))
		return false;
	return true;
}

static bool id_in(const struct moat_ev_filter *f, uint32_t id)
{
	size_t lo = 0, hi = f->nids;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (f->ids[mid] == id)
			return true;
		if (f->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

bool moat_ev_match(const struct moat_ev *ev, const struct moat_ev_filter *f, const char *ruledesc)
{
	if (f->type >= 0 && ev->raw.type != f->type)
		return false;
	if (f->by_ids && !id_in(f, ev->raw.src_identity) && !id_in(f, ev->raw.dst_identity))
		return false;
	return common_match(f, ev->src_ns, ev->src_pod, ev->dst_ns, ev->dst_pod, &ev->src, &ev->dst,
			    ev->family ? ev->proto : -2, ev->dport, ev->raw.verdict, ev->raw.rule, ruledesc);
}

bool moat_flow_match(const struct moat_flow *fl, const struct moat_ev_filter *f, const char *ruledesc)
{
	if (f->by_ids && !id_in(f, fl->src_identity) && !id_in(f, fl->dst_identity))
		return false;
	return common_match(f, fl->src_ns, fl->src_pod, fl->dst_ns, fl->dst_pod, &fl->src, &fl->dst,
			    fl->proto, fl->dport, fl->verdict, fl->rule, ruledesc);
}

uint64_t moat_events_head(struct moat_events *e)
{
	uint64_t h;

	pthread_mutex_lock(&e->lock);
	h = e->head;
	pthread_mutex_unlock(&e->lock);
	return h;
}

size_t moat_events_read(struct moat_events *e, uint64_t after, struct moat_ev *out, size_t max,
			int timeout_ms, uint64_t *ret_last)
{
	size_t n = 0;
	uint64_t from;

	pthread_mutex_lock(&e->lock);
	if (timeout_ms > 0 && e->head <= after) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&e->cond, &e->lock, &ts);
	}
	from = after + 1;
	/* events older than the ring are gone */
	if (e->head >= e->ring_size && from <= e->head - e->ring_size)
		from = e->head - e->ring_size + 1;
	for (uint64_t s = from; s <= e->head && n < max; s++)
		out[n++] = e->ring[s % e->ring_size];
	*ret_last = n ? out[n - 1].seq : (after > e->head ? e->head : after);
	pthread_mutex_unlock(&e->lock);
	return n;
}

size_t moat_events_flows(struct moat_events *e, struct moat_flow *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&e->lock);
	for (struct flow_ent *f = e->newest; f && n < max; f = f->older)
		out[n++] = f->f;
	pthread_mutex_unlock(&e->lock);
	return n;
}

/* ---- JSON ---------------------------------------------------------------------- */
static const char *type_name(int t)
{
	switch (t) {
	case MOAT_EV_DENY:
		return "deny";
	case MOAT_EV_NEW_FLOW:
		return "new-flow";
	case MOAT_EV_FLOW_END:
		return "flow-end";
	case MOAT_EV_SAMPLE:
		return "sample";
	case MOAT_EV_AUDIT:
		return "audit";
	default:
		return "unknown";
	}
}

static const char *verdict_s(int v)
{
	return v == MOAT_VERDICT_ALLOW ? "allow" :
	       v == MOAT_VERDICT_DENY  ? "deny" :
	       v == MOAT_VERDICT_AUDIT ? "audit" :
					 "none";
}

static void time_str(uint64_t ns, char *buf, size_t len)
{
	time_t s = (time_t)(ns / 1000000000ull);
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06lluZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (unsigned long long)(ns % 1000000000ull) / 1000);
}

static json_t *side(const struct moat_addr *a, uint16_t port, const char *ns, const char *pod, uint32_t id)
{
	char b[64];
	json_t *j = json_object();

	if (a->family)
		json_object_set_new(j, "ip", json_string(moat_addr_str(a, b)));
	json_object_set_new(j, "port", json_integer(port));
	if (*ns)
		json_object_set_new(j, "namespace", json_string(ns));
	if (*pod)
		json_object_set_new(j, "pod", json_string(pod));
	json_object_set_new(j, "identity", json_integer(id));
	return j;
}

json_t *moat_ev_json(const struct moat_ev *ev, const char *ruledesc)
{
	char ts[64];
	json_t *j;

	time_str(ev->wall_ns, ts, sizeof(ts));
	j = json_pack("{s:s,s:I,s:s,s:s,s:s,s:i,s:s?,s:s,s:s,s:i,s:i,s:o,s:o,s:s,s:i}", "time", ts, "seq",
		      (json_int_t)ev->seq, "type", type_name(ev->raw.type), "verdict",
		      verdict_s(ev->raw.verdict), "tier",
		      ev->raw.tier == MOAT_TIER_ADMIN    ? "admin" :
		      ev->raw.tier == MOAT_TIER_NETPOL   ? "networkpolicy" :
		      ev->raw.tier == MOAT_TIER_BASELINE ? "baseline" :
		      ev->raw.tier == MOAT_TIER_CT       ? "established" :
		      ev->raw.tier == MOAT_TIER_DATAPATH ? "datapath" :
							   "default",
		      "rule", (int)ev->raw.rule, "decided_by", ruledesc, "direction",
		      ev->raw.dir == MOAT_DIR_EGRESS ? "egress" : "ingress", "hook",
		      ev->raw.hook == MOAT_HOOK_FROM_POD ? "from-pod" :
		      ev->raw.hook == MOAT_HOOK_TO_POD   ? "to-pod" :
							   "uplink",
		      "ifindex", (int)ev->raw.ifindex, "len", (int)ev->raw.pkt_len, "src",
		      side(&ev->src, ev->sport, ev->src_ns, ev->src_pod, ev->raw.src_identity), "dst",
		      side(&ev->dst, ev->dport, ev->dst_ns, ev->dst_pod, ev->raw.dst_identity), "proto",
		      ev->family ? moat_proto_name(ev->proto) : "non-ip", "generation",
		      (int)ev->raw.generation);
	if (ev->raw.type == MOAT_EV_DENY && ev->raw.drop_reason)
		json_object_set_new(j, "drop_reason", json_integer(ev->raw.drop_reason));
	if (ev->proto == IPPROTO_TCP && ev->tcp_flags)
		json_object_set_new(j, "tcp_flags", json_integer(ev->tcp_flags));
	if (ev->raw.type == MOAT_EV_FLOW_END)
		json_object_set_new(j, "flow",
				    json_pack("{s:I,s:I}", "packets", (json_int_t)ev->raw.flow_packets,
					      "bytes", (json_int_t)ev->raw.flow_bytes));
	return j;
}

json_t *moat_flow_json(const struct moat_flow *fl, const char *ruledesc)
{
	char a[64], b[64];

	time_str(fl->first_ns, a, sizeof(a));
	time_str(fl->last_ns ? fl->last_ns : fl->first_ns, b, sizeof(b));
	return json_pack("{s:s,s:s,s:s,s:o,s:o,s:s,s:s,s:i,s:s?,s:I,s:I,s:I,s:i,s:b}", "first", a, "last", b,
			 "proto", moat_proto_name(fl->proto), "src",
			 side(&fl->src, fl->sport, fl->src_ns, fl->src_pod, fl->src_identity), "dst",
			 side(&fl->dst, fl->dport, fl->dst_ns, fl->dst_pod, fl->dst_identity), "verdict",
			 verdict_s(fl->verdict), "tier",
			 fl->tier == MOAT_TIER_ADMIN    ? "admin" :
			 fl->tier == MOAT_TIER_NETPOL   ? "networkpolicy" :
			 fl->tier == MOAT_TIER_BASELINE ? "baseline" :
							  "default",
			 "rule", (int)fl->rule, "decided_by", ruledesc, "packets", (json_int_t)fl->packets,
			 "bytes", (json_int_t)fl->bytes, "denied_attempts", (json_int_t)fl->denied,
			 "tcp_flags", fl->tcp_flags, "ended", fl->ended);
}
