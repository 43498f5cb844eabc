// SPDX-License-Identifier: Apache-2.0
/* moatd's hardware pre-filter; see pfmgr.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/libbpf.h>

#include "pfmgr.h"
#include "prefilter.h"
#include "util.h"

#define PFMGR_SAMPLES 32

struct sample {
	uint64_t when; /* CLOCK_REALTIME, ns */
	struct moat_pf_event ev;
};

struct moat_pfmgr {
	struct moat_pfmgr_opts o;
	struct moat_pf *pf;
	struct moat_pfc *pfc;
	char ifname[64];
	bool pending; /* before() ran, after() not yet */
	struct perf_buffer *pb;
	struct sample samples[PFMGR_SAMPLES];
	size_t nsamples, next_sample;
	uint64_t samples_seen, samples_lost;
	uint64_t updates, update_errors;
	char why[200]; /* why there is none, or what failed last */
	char *error;   /* for moatd's recent errors */
};

int moat_pfmgr_new(const struct moat_pfmgr_opts *o, struct moat_pfmgr **ret)
{
	struct moat_pfmgr *m = xcalloc(1, sizeof(*m));

	m->o = *o;
	snprintf(m->why, sizeof(m->why), "no interface has a hardware pre-filter");
	*ret = m;
	return 0;
}

static void release(struct moat_pfmgr *m)
{
	perf_buffer__free(m->pb);
	m->pb = NULL;
	moat_pfc_free(m->pfc);
	m->pfc = NULL;
	moat_pf_close(m->pf); /* detaches it */
	m->pf = NULL;
	m->pending = false;
	m->ifname[0] = 0;
}

void moat_pfmgr_free(struct moat_pfmgr *m)
{
	if (!m)
		return;
	release(m);
	free(m->error);
	free(m);
}

static void fail(struct moat_pfmgr *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct moat_pfmgr *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->why, sizeof(m->why), fmt, ap);
	va_end(ap);
	free(m->error);
	m->error = xasprintf("pre-filter on %s: %s", m->ifname[0] ? m->ifname : "?", m->why);
	m->update_errors++;
}

char *moat_pfmgr_take_error(struct moat_pfmgr *m)
{
	char *e = m ? m->error : NULL;

	if (m)
		m->error = NULL;
	return e;
}

static void on_sample(void *ctx, int cpu, void *data, __u32 size)
{
	struct moat_pfmgr *m = ctx;
	struct sample *s;
	struct timespec ts;

	(void)cpu;
	m->samples_seen++;
	if (size < sizeof(struct moat_pf_event))
		return;
	s = &m->samples[m->next_sample];
	m->next_sample = (m->next_sample + 1) % PFMGR_SAMPLES;
	if (m->nsamples < PFMGR_SAMPLES)
		m->nsamples++;
	clock_gettime(CLOCK_REALTIME, &ts);
	s->when = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	memcpy(&s->ev, data, sizeof(s->ev));
}

static void on_lost(void *ctx, int cpu, __u64 n)
{
	(void)cpu;
	((struct moat_pfmgr *)ctx)->samples_lost += n;
}

static __u32 pf_flags(const struct moat_pfmgr *m)
{
	return (m->o.enforce ? MOAT_PF_CFG_ENFORCE : 0) | (m->o.no_samples ? 0 : MOAT_PF_CFG_SAMPLE);
}

static __u32 sample_mask(const struct moat_pfmgr *m)
{
	return m->o.sample_shift >= 32 ? 0xffffffffu : (1u << m->o.sample_shift) - 1;
}

/* The whole table set from one generation, both halves at once: only when
 * the full program's tables do not change meanwhile. */
static int write_all(struct moat_pfmgr *m, const struct moat_compiler *c, bool next)
{
	struct moat_pfc_stats st;
	int rc;

	if (!m->o.revoke)
		moat_pfc_build_empty(m->pfc, "established flows outlive policy changes (--no-revoke): "
					     "a stateless filter cannot know them");
	else
		moat_pfc_build(m->pfc, c, next);
	rc = moat_pfc_set_flags(m->pfc, m->pf, pf_flags(m), sample_mask(m));
	if (!rc)
		rc = moat_pfc_apply(m->pfc, m->pf);
	moat_pfc_get_stats(m->pfc, &st);
	if (rc && st.stuck) {
		fail(m, "the device takes no table writes (%s): pre-filter detached", strerror(-rc));
		release(m);
	} else if (rc) {
		fail(m, "table update failed (%s): passing everything until the next update", strerror(-rc));
	}
	m->updates++;
	return rc;
}

int moat_pfmgr_take(struct moat_pfmgr *m, struct moat_pf *pf, const char *ifname,
		    const struct moat_compiler *c, char *err, size_t errlen)
{
	struct moat_pfc_limits lim;
	int rc;

	release(m);
	m->pf = pf;
	snprintf(m->ifname, sizeof(m->ifname), "%s", ifname ? ifname : "");
	memset(&lim, 0, sizeof(lim));
	lim.max_src = moat_pf_capacity(pf, MOAT_PF_T_SRC4);
	if (moat_pf_capacity(pf, MOAT_PF_T_SRC6) < lim.max_src)
		lim.max_src = moat_pf_capacity(pf, MOAT_PF_T_SRC6);
	lim.max_dst = moat_pf_capacity(pf, MOAT_PF_T_DST4);
	if (moat_pf_capacity(pf, MOAT_PF_T_DST6) < lim.max_dst)
		lim.max_dst = moat_pf_capacity(pf, MOAT_PF_T_DST6);
	lim.max_pairs = moat_pf_capacity(pf, MOAT_PF_T_PAIRS);
	moat_pfc_new(&lim, &m->pfc);
	if (!m->o.no_samples) {
		m->pb = perf_buffer__new(moat_pf_events_fd(pf), 8, on_sample, on_lost, m, NULL);
		if (!m->pb) /* no samples is no reason to go without the filter */
			fail(m, "sampled drops unavailable: %s", strerror(errno));
	}
	m->why[0] = 0;
	rc = write_all(m, c, false);
	if (rc && !m->pf) {
		snprintf(err, errlen, "%s", m->why);
		return rc;
	}
	return 0;
}

void moat_pfmgr_drop(struct moat_pfmgr *m, const char *why)
{
	if (!m || !m->pf)
		return;
	release(m);
	snprintf(m->why, sizeof(m->why), "%s", why ? why : "dropped");
}

bool moat_pfmgr_active(const struct moat_pfmgr *m)
{
	return m && m->pf;
}

const char *moat_pfmgr_ifname(const struct moat_pfmgr *m)
{
	return m && m->pf ? m->ifname : NULL;
}

void moat_pfmgr_before(struct moat_pfmgr *m, const struct moat_compiler *c)
{
	struct moat_pfc_stats st;
	int rc;

	if (!m || !m->pf)
		return;
	if (!m->o.revoke)
		moat_pfc_build_empty(m->pfc, "--no-revoke");
	else
		moat_pfc_build(m->pfc, c, true);
	rc = moat_pfc_apply_before(m->pfc, m->pf);
	m->pending = true;
	if (rc) {
		moat_pfc_get_stats(m->pfc, &st);
		if (st.stuck) {
			fail(m, "the device takes no table writes (%s): pre-filter detached", strerror(-rc));
			release(m);
		} else {
			fail(m, "table update failed (%s): passing everything until the next update",
			     strerror(-rc));
		}
	}
}

void moat_pfmgr_after(struct moat_pfmgr *m, struct moat_dp *dp)
{
	struct moat_pfc_stats st;
	int rc;

	if (!m || !m->pf || !m->pending)
		return;
	m->pending = false;
	/* no packet may still judge with the old tables when the second
	 * half lands: the settle waits for the grace period */
	moat_dp_settle(dp);
	rc = moat_pfc_apply_after(m->pfc, m->pf);
	m->updates++;
	moat_pfc_get_stats(m->pfc, &st);
	if (rc && st.stuck) {
		fail(m, "the device takes no table writes (%s): pre-filter detached", strerror(-rc));
		release(m);
	} else if (rc) {
		fail(m, "table update failed (%s): passing everything until the next update", strerror(-rc));
	}
}

void moat_pfmgr_resync(struct moat_pfmgr *m, const struct moat_compiler *c)
{
	if (!m || !m->pf)
		return;
	m->pending = false;
	/* the first half holds only what both generations deny: safe for
	 * the one that stays; bring the rest back to it */
	write_all(m, c, false);
}

void moat_pfmgr_configure(struct moat_pfmgr *m, const struct moat_pfmgr_opts *o,
			  const struct moat_compiler *c)
{
	bool rebuild;

	if (!m)
		return;
	rebuild = m->o.revoke != o->revoke;
	m->o = *o;
	if (!m->pf)
		return;
	if (rebuild)
		write_all(m, c, false);
	else if (moat_pfc_set_flags(m->pfc, m->pf, pf_flags(m), sample_mask(m)))
		fail(m, "cannot write its settings");
}

void moat_pfmgr_poll(struct moat_pfmgr *m)
{
	if (m && m->pb)
		perf_buffer__consume(m->pb);
}

static const char *group_name(int g)
{
	static const char *const n[MOAT_PF_G_MAX] = { "tcp", "udp", "sctp", "other" };
	return g >= 0 && g < MOAT_PF_G_MAX ? n[g] : "?";
}

static void addr_text(int family, const __u8 *a, char *out, size_t len)
{
	if (!inet_ntop(family == 6 ? AF_INET6 : AF_INET, a, out, (socklen_t)len))
		snprintf(out, len, "?");
}

struct pairs_json {
	json_t *a;
	size_t n;
};

static int pair_cb(const struct moat_pfc_pair_view *v, void *arg)
{
	struct pairs_json *pj = arg;
	char addr[64], pfx[80];
	json_t *groups = json_array(), *rules = json_object();

	if (pj->n++ >= 256)
		return 1; /* bounded answer */
	addr_text(v->family, v->addr, addr, sizeof(addr));
	snprintf(pfx, sizeof(pfx), "%s/%u", addr, v->plen);
	for (int g = 0; g < MOAT_PF_G_MAX; g++)
		if (v->deny & (1u << g)) {
			json_array_append_new(groups, json_string(group_name(g)));
			json_object_set_new(rules, group_name(g), json_integer(v->rule[g]));
		}
	json_array_append_new(pj->a, json_pack("{s:s,s:i,s:o,s:o}", "source", pfx, "identity",
					       (json_int_t)v->identity, "deny", groups, "rules", rules));
	return 0;
}

json_t *moat_pfmgr_status(const struct moat_pfmgr *m)
{
	struct moat_pfc_stats st;
	json_t *j, *counters, *samples;
	static const struct {
		__u32 idx;
		const char *name;
	} cs[] = {
		{ MOAT_PF_STAT_PASS, "passed" },
		{ MOAT_PF_STAT_DROP, "dropped" },
		{ MOAT_PF_STAT_DROP_BYTES, "dropped_bytes" },
		{ MOAT_PF_STAT_WOULD_DROP, "would_drop" },
		{ MOAT_PF_STAT_SKIPPED, "skipped" },
		{ MOAT_PF_STAT_SAMPLED, "sampled" },
	};
	struct pairs_json pj;

	if (!m || !m->pf)
		return json_pack("{s:b,s:s}", "active", false, "why", m ? m->why : "");
	moat_pfc_get_stats(m->pfc, &st);
	counters = json_object();
	for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]); i++) {
		__u64 v = 0;
		if (!moat_pf_stat(m->pf, cs[i].idx, &v))
			json_object_set_new(counters, cs[i].name, json_integer((json_int_t)v));
	}
	samples = json_array();
	for (size_t i = 0; i < m->nsamples; i++) {
		const struct sample *s =
			&m->samples[(m->next_sample + PFMGR_SAMPLES - m->nsamples + i) % PFMGR_SAMPLES];
		char sa[64], da[64];
		addr_text(s->ev.family, s->ev.saddr, sa, sizeof(sa));
		addr_text(s->ev.family, s->ev.daddr, da, sizeof(da));
		json_array_append_new(samples,
				      json_pack("{s:I,s:s,s:s,s:i,s:i,s:i,s:i,s:b}", "time_ns",
						(json_int_t)s->when, "src", sa, "dst", da, "proto",
						s->ev.proto, "identity", (json_int_t)s->ev.identity, "rule",
						(json_int_t)s->ev.rule, "len", (json_int_t)s->ev.pkt_len,
						"dropped", s->ev.dropped));
	}
	pj.a = json_array();
	pj.n = 0;
	moat_pfc_pairs(m->pfc, pair_cb, &pj);
	j = json_pack("{s:b,s:s,s:b,s:b,s:s?}", "active", true, "interface", m->ifname, "offloaded",
		      moat_pf_offloaded(m->pf), "enforce", m->o.enforce, "why", m->why[0] ? m->why : NULL);
	json_object_set_new(j, "tables",
			    json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:b,s:s?}", "regions",
				      st.regions, "regions_in_cluster", st.regions_in_cluster, "trees",
				      st.trees, "trees_placed", st.trees_placed, "trees_no_room",
				      st.trees_no_room, "sources4", st.src[0], "sources6", st.src[1],
				      "destinations4", st.dst[0], "destinations6", st.dst[1], "pairs",
				      st.pairs, "lengths4", st.lens[0], "lengths6", st.lens[1], "disabled",
				      st.disabled, "why_empty", st.why_empty[0] ? st.why_empty : NULL));
	json_object_set_new(j, "capacity",
			    json_pack("{s:i,s:i,s:i}", "sources",
				      (json_int_t)moat_pf_capacity(m->pf, MOAT_PF_T_SRC4), "destinations",
				      (json_int_t)moat_pf_capacity(m->pf, MOAT_PF_T_DST4), "pairs",
				      (json_int_t)moat_pf_capacity(m->pf, MOAT_PF_T_PAIRS)));
	json_object_set_new(j, "last_update",
			    json_pack("{s:I,s:f,s:f}", "writes", (json_int_t)st.writes, "build_ms",
				      st.build_ns / 1e6, "apply_ms", st.apply_ns / 1e6));
	json_object_set_new(j, "abi", json_integer(MOAT_PF_ABI_VERSION));
	json_object_set_new(j, "updates", json_integer((json_int_t)m->updates));
	json_object_set_new(j, "update_errors", json_integer((json_int_t)m->update_errors));
	json_object_set_new(j, "writes_total", json_integer((json_int_t)moat_pf_writes(m->pf)));
	json_object_set_new(j, "counters", counters);
	json_object_set_new(j, "pairs", pj.a);
	json_object_set_new(j, "samples", samples);
	json_object_set_new(j, "samples_seen", json_integer((json_int_t)m->samples_seen));
	json_object_set_new(j, "samples_lost", json_integer((json_int_t)m->samples_lost));
	return j;
}

static long long jint_of(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_integer(v) ? json_integer_value(v) : 0;
}

void moat_pfmgr_status_print(json_t *st, FILE *out)
{
	json_t *t = json_object_get(st, "tables"), *c = json_object_get(st, "counters");
	const char *why = json_string_value(json_object_get(st, "why"));

	if (!json_is_true(json_object_get(st, "active"))) {
		fprintf(out, "prefilter   none: %s\n", why ? why : "");
		return;
	}
	fprintf(out,
		"prefilter   %s (%s, %s): %lld pairs, %lld+%lld source prefixes, "
		"%lld+%lld destinations; dropped %lld (%lld bytes), would drop %lld, "
		"passed %lld, skipped %lld\n",
		json_string_value(json_object_get(st, "interface")),
		json_is_true(json_object_get(st, "offloaded")) ? "hardware" : "host",
		json_is_true(json_object_get(st, "enforce")) ? "enforcing" : "observe only",
		jint_of(t, "pairs"), jint_of(t, "sources4"), jint_of(t, "sources6"),
		jint_of(t, "destinations4"), jint_of(t, "destinations6"), jint_of(c, "dropped"),
		jint_of(c, "dropped_bytes"), jint_of(c, "would_drop"), jint_of(c, "passed"),
		jint_of(c, "skipped"));
	if (json_string_value(json_object_get(t, "why_empty")))
		fprintf(out, "            nothing placed: %s\n",
			json_string_value(json_object_get(t, "why_empty")));
	if (jint_of(t, "trees_no_room"))
		fprintf(out, "            %lld prefix trees left to the full program: no room\n",
			jint_of(t, "trees_no_room"));
	if (why)
		fprintf(out, "            %s\n", why);
}
