// SPDX-License-Identifier: Apache-2.0
/* Archive queries: the segments of the partitions a caller may see, read
 * side by side and merged in the order the archive received the events
 * (record ids run.n), each packet and flow filtered by time, namespace,
 * pod, verdict, policy and a tcpdump expression (libpcap's compiler), the
 * rules of other tenants' NetworkPolicies not named, copies of a packet
 * between two namespaces written once.  Output: pcapng (with the flow and
 * loss records) or pcap.  See archive.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <pcap/pcap.h>

#include "archive.h"
#include "util.h"

#define SLACK_NS (60ull * 1000000000ull) /* items may predate their segment's start */
#define REDACTED "a NetworkPolicy of another namespace"

enum {
	IT_NONE = 0,
	IT_EPB,
	IT_FLOW,
	IT_LOSS
};

struct src {
	char part[80], ns[64];
	char dir[PATH_MAX];
	struct moat_segment *segs;
	size_t nsegs, cur;
	int fd;
	struct pcapng_reader *r;
	struct pcapng_idb_view *idbs;
	int64_t *outid; /* segment interface -> output interface */
	size_t nidb;
	uint64_t last_run, last_n; /* of the last item read (loss records sort after it) */
	/* the pending item */
	int kind;
	uint64_t run, n, sub;
	uint64_t ts;
	struct pcapng_block blk;
	struct pcapng_epb_view epb;
	uint32_t ifid;
	char *text; /* EPB comment or JSON record, rewritten */
};

struct moat_aq {
	struct moat_archive_query q;
	char *ns, *pod, *policy, *node; /* owned copies */
	char **allowed;
	size_t nallowed;
	struct src *srcs;
	size_t nsrcs;
	pcap_t *pc;
	struct bpf_program prog;
	bool has_prog;
	struct pcapng_buf out;
	size_t out_off;
	bool header_done, done;
	/* output interfaces */
	struct ptrvec oifs;        /* "linktype|name|desc" strings */
	struct hmap oif_map;       /* key -> index+1 */
	uint64_t last_run, last_n; /* dedup of cross-partition copies */
	char last_loss[512];
	struct moat_aq_stats st;
};

/* A record id "RUN.N" (two decimal numbers); false if it is not one. */
static bool parse_id(const char *id, unsigned long long *run, unsigned long long *n)
{
	char *end;

	if (!id)
		return false;
	errno = 0;
	*run = strtoull(id, &end, 10);
	if (end == id || *end != '.' || errno)
		return false;
	id = end + 1;
	*n = strtoull(id, &end, 10);
	return end != id && !errno;
}

static bool sees(const struct moat_aq *q, const char *ns)
{
	if (q->q.all)
		return true;
	for (size_t i = 0; i < q->nallowed; i++)
		if (!strcmp(q->allowed[i], ns))
			return true;
	return false;
}

/* ---- opening ------------------------------------------------------------------- */
static int add_src(struct moat_aq *q, const char *dir, const struct moat_segment *segs, size_t n)
{
	struct src *s;
	size_t k = 0;

	if (q->nsrcs == MOAT_AQ_MAX_PARTS)
		return -E2BIG;
	q->srcs = xrealloc(q->srcs, (q->nsrcs + 1) * sizeof(*q->srcs));
	s = &q->srcs[q->nsrcs++];
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	snprintf(s->part, sizeof(s->part), "%s", segs[0].part);
	snprintf(s->ns, sizeof(s->ns), "%s", segs[0].ns);
	if (snprintf(s->dir, sizeof(s->dir), "%s/%s", dir, segs[0].part) >= (int)sizeof(s->dir))
		return -ENAMETOOLONG;
	s->segs = xcalloc(n, sizeof(*s->segs));
	for (size_t i = 0; i < n; i++) {
		const struct moat_segment *g = &segs[i];
		if (q->q.until_ns && g->start_ns > q->q.until_ns + SLACK_NS)
			continue;
		if (q->q.since_ns && g->end_ns && g->end_ns + SLACK_NS < q->q.since_ns)
			continue;
		s->segs[k++] = *g;
	}
	s->nsegs = k;
	q->st.segments += k;
	return 0;
}

int moat_aq_open(const char *dir, const struct moat_archive_query *in, struct moat_aq **ret, char *err,
		 size_t errlen)
{
	struct moat_aq *q = xcalloc(1, sizeof(*q));
	struct moat_segment *v = NULL;
	size_t n = 0, i, j;
	int rc;

	q->q = *in;
	q->ns = xstrdup(in->ns);
	q->pod = xstrdup(in->pod);
	q->policy = xstrdup(in->policy);
	q->node = xstrdup(in->node);
	q->q.ns = q->ns;
	q->q.pod = q->pod;
	q->q.policy = q->policy;
	q->q.node = q->node;
	q->q.filter = NULL;
	q->nallowed = in->all ? 0 : in->nallowed_ns;
	q->allowed = xcalloc(q->nallowed + 1, sizeof(char *));
	for (i = 0; i < q->nallowed; i++)
		q->allowed[i] = xstrdup(in->allowed_ns[i]);
	hmap_init(&q->oif_map);
	if (q->ns && *q->ns && !sees(q, q->ns)) {
		snprintf(err, errlen, "namespace %s is not yours", q->ns);
		rc = -EACCES;
		goto fail;
	}
	if (in->filter && *in->filter) {
		q->pc = pcap_open_dead(DLT_EN10MB, 65535);
		if (!q->pc) {
			snprintf(err, errlen, "libpcap: cannot open a dead handle");
			rc = -ENOMEM;
			goto fail;
		}
		if (pcap_compile(q->pc, &q->prog, in->filter, 1, PCAP_NETMASK_UNKNOWN)) {
			snprintf(err, errlen, "filter: %s", pcap_geterr(q->pc));
			rc = -EINVAL;
			goto fail;
		}
		q->has_prog = true;
	}
	rc = moat_archive_list(dir, &v, &n);
	if (rc == -ENOENT)
		rc = 0;
	if (rc) {
		snprintf(err, errlen, "%s: %s", dir, strerror(-rc));
		goto fail;
	}
	for (i = 0; i < n; i = j) {
		bool node = !strcmp(v[i].part, MOAT_ARCHIVE_NODE_PART);
		for (j = i; j < n && !strcmp(v[j].part, v[i].part); j++)
			;
		/* tenancy: whole partitions, decided here, on the server */
		if (node ? !q->q.all : !sees(q, v[i].ns))
			continue;
		if (q->ns && *q->ns && strcmp(v[i].ns, q->ns))
			continue;
		rc = add_src(q, dir, &v[i], j - i);
		if (rc) {
			snprintf(err, errlen, "more than %d namespaces: narrow the query with namespace=",
				 MOAT_AQ_MAX_PARTS);
			goto fail;
		}
	}
	free(v);
	*ret = q;
	return 0;
fail:
	free(v);
	moat_aq_free(q);
	return rc;
}

static void src_close_seg(struct src *s)
{
	pcapng_reader_free(s->r);
	s->r = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	free(s->idbs);
	free(s->outid);
	s->idbs = NULL;
	s->outid = NULL;
	s->nidb = 0;
}

void moat_aq_free(struct moat_aq *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->nsrcs; i++) {
		src_close_seg(&q->srcs[i]);
		free(q->srcs[i].segs);
		free(q->srcs[i].text);
	}
	free(q->srcs);
	if (q->has_prog)
		pcap_freecode(&q->prog);
	if (q->pc)
		pcap_close(q->pc);
	for (size_t i = 0; i < q->oifs.n; i++)
		free(q->oifs.v[i]);
	ptrvec_free(&q->oifs);
	hmap_free(&q->oif_map);
	pcapng_buf_free(&q->out);
	for (size_t i = 0; i < q->nallowed; i++)
		free(q->allowed[i]);
	free(q->allowed);
	free(q->ns);
	free(q->pod);
	free(q->policy);
	free(q->node);
	free(q);
}

void moat_aq_stats(const struct moat_aq *q, struct moat_aq_stats *st)
{
	*st = q->st;
}

/* ---- reading one partition ------------------------------------------------------- */
/* Opens the segment at s->cur; a segment renamed since it was listed (it
 * was closed meanwhile) is found by its start. */
static int src_open_seg(struct src *s)
{
	const struct moat_segment *g = &s->segs[s->cur];
	char p[PATH_MAX + 300];

	snprintf(p, sizeof(p), "%s/%s", s->dir, g->file);
	s->fd = open(p, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0 && errno == ENOENT && !g->end_ns) {
		DIR *d = opendir(s->dir);
		struct dirent *de;
		char pfx[32];
		snprintf(pfx, sizeof(pfx), "%llu-", (unsigned long long)g->start_ns);
		while (d && (de = readdir(d)))
			if (!strncmp(de->d_name, pfx, strlen(pfx))) {
				snprintf(p, sizeof(p), "%s/%s", s->dir, de->d_name);
				s->fd = open(p, O_RDONLY | O_CLOEXEC);
				break;
			}
		if (d)
			closedir(d);
	}
	if (s->fd < 0)
		return -errno;
	pcapng_reader_new(s->fd, &s->r);
	return 0;
}

static bool side_is(const char *v, const char *want)
{
	const char *slash;

	if (!v || !want)
		return false;
	if (strchr(want, '/'))
		return !strcmp(v, want);
	slash = strchr(v, '/');
	return slash && !strcmp(slash + 1, want);
}

static const char *verdict_name(int v)
{
	return v == MOAT_VERDICT_ALLOW ? "allow" : v == MOAT_VERDICT_DENY ? "deny" : "audit";
}

static bool bpf_match(struct moat_aq *q, const uint8_t *data, uint32_t caplen, uint32_t len)
{
	struct pcap_pkthdr h;

	if (!q->has_prog)
		return true;
	memset(&h, 0, sizeof(h));
	h.caplen = caplen;
	h.len = len;
	return pcap_offline_filter(&q->prog, &h, data) != 0;
}

/* A packet's comment: filters, then the caller's view of it. */
static bool epb_accept(struct moat_aq *q, struct src *s)
{
	struct moat_rec r;
	const char *v, *id, *rule_ns;
	unsigned long long run = 0, n = 0;

	if (!s->epb.comment || moat_rec_parse(s->epb.comment, s->epb.comment_len, &r))
		return false; /* not ours: no tenancy can be shown for it */
	id = moat_rec_get(&r, "id");
	if (!parse_id(id, &run, &n))
		goto no;
	if (q->q.since_ns && s->ts < q->q.since_ns)
		goto no;
	if (q->q.until_ns && s->ts > q->q.until_ns)
		goto no;
	if (q->q.verdict >= 0 &&
	    (!(v = moat_rec_get(&r, "verdict")) || strcmp(v, verdict_name(q->q.verdict))))
		goto no;
	if (q->q.pod && *q->q.pod && !side_is(moat_rec_get(&r, "src"), q->q.pod) &&
	    !side_is(moat_rec_get(&r, "dst"), q->q.pod))
		goto no;
	rule_ns = moat_rec_get(&r, "rule_ns");
	if (rule_ns && !sees(q, rule_ns)) {
		moat_rec_set(&r, "rule", REDACTED);
		moat_rec_del(&r, "rule_ns");
	}
	if (q->q.policy && *q->q.policy && (!(v = moat_rec_get(&r, "rule")) || !strstr(v, q->q.policy)))
		goto no;
	if (!bpf_match(q, s->epb.data, s->epb.caplen, s->epb.origlen))
		goto no;
	s->run = run;
	s->n = n;
	s->sub = 0;
	free(s->text);
	s->text = moat_rec_format(&r);
	moat_rec_free(&r);
	return true;
no:
	moat_rec_free(&r);
	return false;
}

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void side_name(json_t *side, char *buf, size_t len)
{
	const char *ns = jstr(side, "namespace"), *pod = jstr(side, "pod");

	snprintf(buf, len, "%s/%s", ns ? ns : "", pod ? pod : "");
}

/* The first packet of a flow, as far as filters can tell: enough headers
 * for libpcap's filter to see the addresses, protocol and ports. */
static size_t flow_packet(json_t *j, uint8_t *p)
{
	json_t *src = json_object_get(j, "src"), *dst = json_object_get(j, "dst");
	const char *sip = jstr(src, "ip"), *dip = jstr(dst, "ip");
	int proto = (int)json_integer_value(json_object_get(j, "proto_num"));
	uint16_t sp = htons((uint16_t)json_integer_value(json_object_get(src, "port")));
	uint16_t dp = htons((uint16_t)json_integer_value(json_object_get(dst, "port")));
	size_t l = 14, l4 = proto == IPPROTO_TCP ? 20 : proto == IPPROTO_SCTP ? 12 : 8;
	bool v6 = sip && strchr(sip, ':');
	uint8_t *ip = p + 14, *t;

	memset(p, 0, 128);
	if (!sip || !dip)
		return 0;
	p[12] = v6 ? 0x86 : 0x08;
	p[13] = v6 ? 0xdd : 0x00;
	if (v6) {
		ip[0] = 0x60;
		ip[4] = (uint8_t)(l4 >> 8);
		ip[5] = (uint8_t)l4;
		ip[6] = (uint8_t)proto;
		ip[7] = 64;
		if (inet_pton(AF_INET6, sip, ip + 8) != 1 || inet_pton(AF_INET6, dip, ip + 24) != 1)
			return 0;
		l += 40;
	} else {
		ip[0] = 0x45;
		ip[2] = (uint8_t)((20 + l4) >> 8);
		ip[3] = (uint8_t)(20 + l4);
		ip[8] = 64;
		ip[9] = (uint8_t)proto;
		if (inet_pton(AF_INET, sip, ip + 12) != 1 || inet_pton(AF_INET, dip, ip + 16) != 1)
			return 0;
		l += 20;
	}
	t = p + l;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
		memcpy(t, &sp, 2);
		memcpy(t + 2, &dp, 2);
		if (proto == IPPROTO_TCP)
			t[12] = 0x50;
		if (proto == IPPROTO_UDP) {
			t[4] = 0;
			t[5] = 8;
		}
	} else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		t[0] = proto == IPPROTO_ICMP ? 8 : 128; /* echo request */
		memcpy(t + 4, &sp, 2);
	}
	return l + l4;
}

static bool json_accept(struct moat_aq *q, struct src *s, const uint8_t *data, size_t len)
{
	json_error_t je;
	json_t *j;
	const char *kind, *v, *id, *rule_ns;
	unsigned long long run = 0, n = 0;
	bool ok = false;

	while (len && !data[len - 1])
		len--; /* padding */
	j = json_loadb((const char *)data, len, 0, &je);
	if (!j || !(kind = jstr(j, "moat")))
		goto out;
	if (!strcmp(kind, "loss")) {
		run = (unsigned long long)json_integer_value(json_object_get(j, "run"));
		s->kind = IT_LOSS;
		s->run = run;
		s->n = run == s->last_run ? s->last_n : 0;
		s->sub = 1;
		ok = true;
		goto emit;
	}
	if (strcmp(kind, "flow") || !q->q.flows || q->q.format != MOAT_AQ_PCAPNG)
		goto out;
	id = jstr(j, "id");
	if (!parse_id(id, &run, &n))
		goto out;
	{
		uint64_t first = (uint64_t)json_integer_value(json_object_get(j, "first_ns"));
		uint64_t last = (uint64_t)json_integer_value(json_object_get(j, "last_ns"));
		if (q->q.since_ns && last < q->q.since_ns)
			goto out;
		if (q->q.until_ns && first > q->q.until_ns)
			goto out;
	}
	if (q->q.verdict >= 0 && (!(v = jstr(j, "verdict")) || strcmp(v, verdict_name(q->q.verdict))))
		goto out;
	if (q->q.pod && *q->q.pod) {
		char a[200], b[200];
		side_name(json_object_get(j, "src"), a, sizeof(a));
		side_name(json_object_get(j, "dst"), b, sizeof(b));
		if (!side_is(a, q->q.pod) && !side_is(b, q->q.pod))
			goto out;
	}
	rule_ns = jstr(j, "rule_ns");
	if (rule_ns && !sees(q, rule_ns)) {
		json_object_set_new(j, "rule", json_string(REDACTED));
		json_object_del(j, "rule_ns");
		json_object_del(j, "rule_dir");
	}
	if (q->q.policy && *q->q.policy && (!(v = jstr(j, "rule")) || !strstr(v, q->q.policy)))
		goto out;
	if (q->has_prog) {
		uint8_t pkt[128];
		size_t pl = flow_packet(j, pkt);
		if (!pl || !bpf_match(q, pkt, (uint32_t)pl, (uint32_t)pl))
			goto out;
	}
	s->kind = IT_FLOW;
	s->run = run;
	s->n = n;
	s->sub = 0;
	ok = true;
emit:
	free(s->text);
	s->text = json_dumps(j, JSON_COMPACT);
	ok = ok && s->text;
out:
	json_decref(j);
	return ok;
}

/* Loads s's next item that passes the filters; false at its end. */
static bool src_next(struct moat_aq *q, struct src *s)
{
	struct pcapng_block b;
	int rc;

	s->kind = IT_NONE;
	for (;;) {
		if (!s->r) {
			if (s->cur >= s->nsegs)
				return false;
			if (src_open_seg(s)) {
				s->cur++;
				continue;
			}
		}
		rc = pcapng_next(s->r, &b);
		if (rc <= 0) {
			/* a torn tail is the end of a segment being written, or of
			 * one a crash left (recovery cuts it at the next start) */
			if (rc == -EBADMSG)
				q->st.bad_segments++;
			src_close_seg(s);
			s->cur++;
			continue;
		}
		switch (b.type) {
		case PCAPNG_BT_SHB:
			/* a new section: interface ids start over */
			free(s->idbs);
			free(s->outid);
			s->idbs = NULL;
			s->outid = NULL;
			s->nidb = 0;
			break;
		case PCAPNG_BT_IDB: {
			struct pcapng_idb_view iv;
			if (pcapng_parse_idb(&b, &iv) || s->nidb >= 65536)
				break;
			s->idbs = xrealloc(s->idbs, (s->nidb + 1) * sizeof(*s->idbs));
			s->outid = xrealloc(s->outid, (s->nidb + 1) * sizeof(*s->outid));
			s->idbs[s->nidb] = iv;
			s->idbs[s->nidb].opts = NULL;
			s->outid[s->nidb++] = -1;
			break;
		}
		case PCAPNG_BT_EPB:
			if (pcapng_parse_epb(&b, &s->epb) || s->epb.ifid >= s->nidb)
				break;
			s->ts = pcapng_ts_ns(&s->idbs[s->epb.ifid], s->epb.ts_raw);
			s->ifid = s->epb.ifid;
			if (!epb_accept(q, s)) {
				/* filtered out, but its position orders later loss records */
				struct moat_rec r;
				unsigned long long run, n;
				if (s->epb.comment &&
				    !moat_rec_parse(s->epb.comment, s->epb.comment_len, &r)) {
					if (parse_id(moat_rec_get(&r, "id"), &run, &n)) {
						s->last_run = run;
						s->last_n = n;
					}
					moat_rec_free(&r);
				}
				break;
			}
			s->kind = IT_EPB;
			s->blk = b;
			s->last_run = s->run;
			s->last_n = s->n;
			return true;
		case PCAPNG_BT_CUSTOM:
		case PCAPNG_BT_CUSTOM_NC: {
			uint32_t pen;
			const uint8_t *d;
			size_t l;
			if (pcapng_parse_custom(&b, &pen, &d, &l) || pen != MOAT_ARCHIVE_PEN)
				break;
			if (!json_accept(q, s, d, l))
				break;
			s->blk = b;
			if (s->kind == IT_FLOW) {
				s->last_run = s->run;
				s->last_n = s->n;
			}
			return true;
		}
		default:
			break; /* ISBs and anything else: not carried over */
		}
	}
}

/* ---- output ------------------------------------------------------------------------- */
static int64_t out_iface(struct moat_aq *q, struct src *s)
{
	struct pcapng_idb_view *iv = &s->idbs[s->ifid];
	char key[512];
	uintptr_t idx;
	int64_t id;

	if (s->outid[s->ifid] >= 0)
		return s->outid[s->ifid];
	snprintf(key, sizeof(key), "%u|%s|%s", iv->linktype, iv->name, iv->description);
	idx = (uintptr_t)hmap_gets(&q->oif_map, key);
	if (idx) {
		id = (int64_t)idx - 1;
	} else {
		struct pcapng_idb_info info = { .linktype = iv->linktype,
						.snaplen = iv->snaplen,
						.name = iv->name,
						.description = iv->description };
		char *k = xstrdup(key);
		if (pcapng_put_idb(&q->out, &info)) {
			free(k);
			return -1;
		}
		id = (int64_t)q->oifs.n;
		ptrvec_push(&q->oifs, k);
		hmap_put(&q->oif_map, k, strlen(k), (void *)(uintptr_t)(id + 1), NULL);
	}
	s->outid[s->ifid] = id;
	return id;
}

static void emit(struct moat_aq *q, struct src *s)
{
	if (s->kind == IT_EPB) {
		/* the same packet from two namespaces' partitions: once */
		if (s->run == q->last_run && s->n == q->last_n)
			return;
		q->last_run = s->run;
		q->last_n = s->n;
		if (q->q.format == MOAT_AQ_PCAP) {
			pcap_put_record(&q->out, s->ts, s->epb.data, s->epb.caplen, s->epb.origlen);
		} else {
			int64_t id = out_iface(q, s);
			struct pcapng_epb_info e = {
				.ts_ns = s->ts,
				.data = s->epb.data,
				.caplen = s->epb.caplen,
				.origlen = s->epb.origlen,
				.flags = s->epb.flags,
				.has_dropcount = s->epb.has_dropcount,
				.dropcount = s->epb.dropcount,
				.has_packetid = s->epb.has_packetid,
				.packetid = s->epb.packetid,
				.has_verdict = s->epb.has_verdict,
				.verdict_type = s->epb.verdict_type,
				.verdict = s->epb.verdict,
				.comment = s->text,
			};
			if (id < 0)
				return;
			e.ifid = (uint32_t)id;
			pcapng_put_epb(&q->out, &e);
		}
		q->st.packets++;
	} else if (s->kind == IT_FLOW) {
		if (s->run == q->last_run && s->n == q->last_n)
			return;
		q->last_run = s->run;
		q->last_n = s->n;
		pcapng_put_custom(&q->out, MOAT_ARCHIVE_PEN, s->text, strlen(s->text));
		q->st.flows++;
	} else if (s->kind == IT_LOSS && q->q.format == MOAT_AQ_PCAPNG) {
		/* node-wide counters: every partition has them; once per change */
		const char *c = strstr(s->text, "\"counts\"");
		const char *lc = strstr(q->last_loss, "\"counts\"");
		if (c && lc && !strcmp(c, lc))
			return;
		snprintf(q->last_loss, sizeof(q->last_loss), "%s", s->text);
		pcapng_put_custom(&q->out, MOAT_ARCHIVE_PEN, s->text, strlen(s->text));
	}
}

static void header(struct moat_aq *q)
{
	char c[1024], since[48] = "-", until[48] = "-";
	struct pcapng_shb_info shb = {
		.userappl = "moatd archive query", .os = "Linux", .hardware = q->node, .comment = c
	};

	if (q->q.format == MOAT_AQ_PCAP) {
		pcap_put_header(&q->out, 65535, DLT_EN10MB);
		return;
	}
	if (q->q.since_ns)
		moat_time_format(q->q.since_ns, since, sizeof(since));
	if (q->q.until_ns)
		moat_time_format(q->q.until_ns, until, sizeof(until));
	snprintf(c, sizeof(c),
		 "moat archive query: node %s, since %s, until %s%s%s%s%s%s%s; "
		 "flow and loss records are custom blocks (PEN %u, JSON); see docs/archives.md",
		 q->node ? q->node : "?", since, until, q->ns ? ", namespace " : "", q->ns ? q->ns : "",
		 q->pod ? ", pod " : "", q->pod ? q->pod : "", q->policy ? ", policy " : "",
		 q->policy ? q->policy : "", MOAT_ARCHIVE_PEN);
	pcapng_put_shb(&q->out, &shb);
}

static bool key_less(const struct src *a, const struct src *b)
{
	if (a->run != b->run)
		return a->run < b->run;
	if (a->n != b->n)
		return a->n < b->n;
	return a->sub < b->sub;
}

/* Produces the next output item into q->out; false when done. */
static bool step(struct moat_aq *q)
{
	struct src *best = NULL;

	if (!q->header_done) {
		q->header_done = true;
		header(q);
		for (size_t i = 0; i < q->nsrcs; i++)
			src_next(q, &q->srcs[i]);
		return true;
	}
	for (size_t i = 0; i < q->nsrcs; i++) {
		struct src *s = &q->srcs[i];
		if (s->kind != IT_NONE && (!best || key_less(s, best)))
			best = s;
	}
	if (!best)
		return false;
	emit(q, best);
	src_next(q, best);
	return true;
}

ssize_t moat_aq_read(struct moat_aq *q, uint8_t *buf, size_t max)
{
	size_t n;

	while (q->out.len - q->out_off < max && !q->done) {
		if (q->out_off && q->out_off == q->out.len) {
			q->out.len = q->out_off = 0;
		}
		if (!step(q))
			q->done = true;
	}
	n = q->out.len - q->out_off;
	if (n > max)
		n = max;
	memcpy(buf, q->out.p + q->out_off, n);
	q->out_off += n;
	if (q->out_off == q->out.len)
		q->out.len = q->out_off = 0;
	return (ssize_t)n;
}

/* ---- records (replay) ------------------------------------------------------------ */
static int records_file(const char *path, int (*fn)(json_t *, void *), void *arg, size_t *bad)
{
	struct pcapng_reader *r;
	struct pcapng_block b;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	pcapng_reader_new(fd, &r);
	while ((rc = pcapng_next(r, &b)) > 0) {
		uint32_t pen;
		const uint8_t *d;
		size_t l;
		json_error_t je;
		json_t *j;

		if ((b.type != PCAPNG_BT_CUSTOM && b.type != PCAPNG_BT_CUSTOM_NC) ||
		    pcapng_parse_custom(&b, &pen, &d, &l) || pen != MOAT_ARCHIVE_PEN)
			continue;
		while (l && !d[l - 1])
			l--;
		j = json_loadb((const char *)d, l, 0, &je);
		if (json_is_object(j) && jstr(j, "moat")) {
			int frc = fn(j, arg);
			if (frc) {
				json_decref(j);
				rc = frc;
				break;
			}
		}
		json_decref(j);
	}
	pcapng_reader_free(r);
	close(fd);
	if (rc < 0 && rc != -ENODATA && rc != -EBADMSG)
		return rc;
	if (rc == -EBADMSG || rc == -ENODATA)
		(*bad)++;
	return 0;
}

int moat_archive_records(const char *path, int (*fn)(json_t *rec, void *arg), void *arg, size_t *files,
			 size_t *bad)
{
	struct stat st;
	struct moat_segment *v = NULL;
	size_t n = 0;
	int rc;

	*files = *bad = 0;
	if (stat(path, &st))
		return -errno;
	if (!S_ISDIR(st.st_mode)) {
		*files = 1;
		return records_file(path, fn, arg, bad);
	}
	rc = moat_archive_list(path, &v, &n);
	if (!rc && !n) {
		/* a partition directory itself: its segment files */
		DIR *d = opendir(path);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			size_t l = strlen(de->d_name);
			char p[PATH_MAX + 256];
			if (l < 8 || strcmp(de->d_name + l - 7, ".pcapng"))
				continue;
			snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
			(*files)++;
			rc = records_file(p, fn, arg, bad);
			if (rc)
				break;
		}
		if (d)
			closedir(d);
		return rc;
	}
	for (size_t i = 0; i < n && !rc; i++) {
		char p[PATH_MAX + 256];
		snprintf(p, sizeof(p), "%s/%s/%s", path, v[i].part, v[i].file);
		(*files)++;
		rc = records_file(p, fn, arg, bad);
		if (rc == -ENOENT)
			rc = 0; /* expired meanwhile */
	}
	free(v);
	return rc;
}
