// SPDX-License-Identifier: Apache-2.0
/* The archive's control API.  See api_archive.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "api_archive.h"
#include "archive.h"
#include "daemon.h"
#include "util.h"

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
	struct MHD_Response *r;
	enum MHD_Result ret;

	json_decref(j);
	if (!s) { /* an answer jansson could not build: still an answer */
		s = xstrdup("{\"error\": \"the reply could not be encoded\"}");
		code = 500;
	}
	r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", "application/json");
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result error(struct MHD_Connection *conn, unsigned code, const char *msg)
{
	json_t *j = json_pack("{s:s}", "error", msg);

	if (!j) {
		/* the message quotes request bytes that are not UTF-8 */
		char *m = xstrdup(msg);
		for (char *p = m; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		j = json_pack("{s:s}", "error", m);
		free(m);
	}
	return reply(conn, code, j);
}

static const char *arg(struct MHD_Connection *conn, const char *k)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, k);
	return v && *v ? v : NULL;
}

static bool admin(const struct moat_principal *w)
{
	return w->role == MOAT_ROLE_PLATFORM_ADMIN;
}

static bool visible(const struct moat_principal *w, const struct moat_segment *s)
{
	if (!strcmp(s->part, MOAT_ARCHIVE_NODE_PART))
		return admin(w);
	return moat_principal_sees(w, s->ns);
}

static enum MHD_Result h_list(struct MHD_Connection *conn, struct moatd *d, const struct moat_principal *who)
{
	struct moat_segment *v;
	size_t n;
	json_t *parts = json_array(), *cur = NULL, *segs = NULL, *j;
	const char *curpart = "";
	uint64_t bytes = 0;
	int rc;

	moat_archive_flush(d->archive, 2000);
	rc = moat_archive_list(moat_archive_dir(d->archive), &v, &n);
	if (rc && rc != -ENOENT) {
		json_decref(parts);
		return error(conn, 500, strerror(-rc));
	}
	for (size_t i = 0; i < n; i++) {
		char a[48], b[48] = "";
		if (!visible(who, &v[i]))
			continue;
		if (strcmp(curpart, v[i].part)) {
			if (cur)
				json_object_set_new(cur, "bytes", json_integer((json_int_t)bytes));
			segs = json_array();
			cur = json_pack("{s:s,s:s?,s:o}", "partition", v[i].part, "namespace",
					*v[i].ns ? v[i].ns : NULL, "segments", segs);
			json_array_append_new(parts, cur);
			curpart = v[i].part;
			bytes = 0;
		}
		moat_time_format(v[i].start_ns, a, sizeof(a));
		if (v[i].end_ns)
			moat_time_format(v[i].end_ns, b, sizeof(b));
		json_array_append_new(segs, json_pack("{s:s,s:s,s:s?,s:I,s:b}", "file", v[i].file, "start", a,
						      "end", *b ? b : NULL, "bytes", (json_int_t)v[i].bytes,
						      "open", !v[i].end_ns));
		bytes += v[i].bytes;
	}
	if (cur)
		json_object_set_new(cur, "bytes", json_integer((json_int_t)bytes));
	free(v);
	j = json_pack("{s:s,s:o}", "node", d->cfg.node, "partitions", parts);
	if (admin(who)) {
		struct moat_archive_stats st;
		moat_archive_stats(d->archive, &st);
		json_object_set_new(j, "dir", json_string(moat_archive_dir(d->archive)));
		json_object_set_new(j, "stats",
				    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "events_offered",
					      (json_int_t)st.offered, "events_written",
					      (json_int_t)st.written, "events_lost_queue_full",
					      (json_int_t)st.queue_lost, "event_copies_lost_disk",
					      (json_int_t)st.disk_lost, "flows_written",
					      (json_int_t)st.flows_written, "bytes_written",
					      (json_int_t)st.bytes_written, "segments_recovered",
					      (json_int_t)st.segments_recovered, "disk_full", st.disk_full));
	}
	return reply(conn, 200, j);
}

struct qstate {
	struct moat_aq *aq;
};

static ssize_t q_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct qstate *s = cls;
	ssize_t n;

	(void)pos;
	n = moat_aq_read(s->aq, (uint8_t *)buf, max);
	if (n < 0)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	return n ? n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void q_free(void *cls)
{
	struct qstate *s = cls;

	moat_aq_free(s->aq);
	free(s);
}

static int time_arg(struct MHD_Connection *conn, const char *k, uint64_t now, uint64_t *out, char *err,
		    size_t errlen)
{
	const char *v = arg(conn, k);

	*out = 0;
	if (!v)
		return 0;
	if (moat_time_parse(v, now, out)) {
		snprintf(err, errlen,
			 "%s: \"%s\" is not a time (RFC 3339 like 2026-11-28T03:00:00Z, "
			 "or relative like -2h)",
			 k, v);
		return -EINVAL;
	}
	return 0;
}

static enum MHD_Result h_query(struct MHD_Connection *conn, struct moatd *d, const struct moat_principal *who)
{
	struct moat_archive_query q;
	struct MHD_Response *r;
	struct qstate *s;
	enum MHD_Result ret;
	struct timespec ts;
	const char *v;
	char err[512];
	uint64_t now;
	int rc;

	memset(&q, 0, sizeof(q));
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (time_arg(conn, "since", now, &q.since_ns, err, sizeof(err)) ||
	    time_arg(conn, "until", now, &q.until_ns, err, sizeof(err)))
		return error(conn, 400, err);
	if (q.since_ns && q.until_ns && q.until_ns < q.since_ns)
		return error(conn, 400, "until is before since");
	q.verdict = -1;
	if ((v = arg(conn, "verdict"))) {
		q.verdict = !strcmp(v, "allow") ? MOAT_VERDICT_ALLOW :
			    !strcmp(v, "deny")  ? MOAT_VERDICT_DENY :
			    !strcmp(v, "audit") ? MOAT_VERDICT_AUDIT :
						  -1;
		if (q.verdict < 0)
			return error(conn, 400, "verdict must be allow, deny or audit");
	}
	v = arg(conn, "format");
	if (!v || !strcmp(v, "pcapng"))
		q.format = MOAT_AQ_PCAPNG;
	else if (!strcmp(v, "pcap"))
		q.format = MOAT_AQ_PCAP;
	else
		return error(conn, 400, "format must be pcapng or pcap");
	q.flows = !(v = arg(conn, "flows")) || strcmp(v, "0");
	q.ns = arg(conn, "namespace");
	q.pod = arg(conn, "pod");
	q.policy = arg(conn, "policy");
	q.filter = arg(conn, "filter");
	q.node = d->cfg.node;
	/* tenancy: decided here, from who is asking, whatever the filters say */
	q.all = admin(who);
	q.allowed_ns = (char **)who->ns;
	q.nallowed_ns = who->nns;
	/* what was handed to the archive before this request is on disk */
	moat_archive_flush(d->archive, 2000);
	s = xcalloc(1, sizeof(*s));
	rc = moat_aq_open(moat_archive_dir(d->archive), &q, &s->aq, err, sizeof(err));
	if (rc) {
		free(s);
		return error(conn, rc == -EACCES ? 403 : 400, err);
	}
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, q_read, s, q_free);
	MHD_add_response_header(r, "Content-Type",
				q.format == MOAT_AQ_PCAP ? "application/vnd.tcpdump.pcap" :
							   "application/x-pcapng");
	ret = MHD_queue_response(conn, 200, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result moat_api_archives(struct MHD_Connection *conn, struct moatd *d,
				  const struct moat_principal *who, const char *url)
{
	if (!d->archive)
		return error(conn, 404, "no archive on this node (moatd --archive-dir DIR)");
	if (!strcmp(url, "/v1/archives"))
		return h_list(conn, d, who);
	if (!strcmp(url, "/v1/archives/query"))
		return h_query(conn, d, who);
	return error(conn, 404, "no such endpoint");
}
