/* SPDX-License-Identifier: Apache-2.0 */
/* The flight recorder: verdict events and flow records of one node written
 * into pcapng segments, partitioned by namespace, rotated by size and age,
 * expired by age and bytes (per namespace), crash-consistent; and the
 * queries over them.  docs/archives.md has the format and the reasons.
 *
 * Layout: DIR/<partition>/<start_ns>-open.pcapng while written,
 *         DIR/<partition>/<start_ns>-<end_ns>.pcapng once closed.
 * A partition is a namespace; a packet between two namespaces is written to
 * both, one with a world or node peer to its pod's namespace only, one with
 * no pod on either side to "_node" (platform-admin only).
 *
 * Threads: the event consumer hands events and flows to the sink, which
 * copies them into a bounded queue and never blocks (a full queue counts
 * the event as lost); one writer thread formats and writes.  The daemon
 * gives name snapshots (rules, interfaces) from its main loop. */
#ifndef MOAT_ARCHIVE_H
#define MOAT_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include "events.h"
#include "pcapng.h"

struct moat_compiler;
struct moat_ifaces;
struct moatd_config;

/* PEN of moat's custom blocks: 32473 is IANA's example enterprise number
 * (RFC 5612), used until moat has its own; readers must also check the
 * record's "moat" key. */
#define MOAT_ARCHIVE_PEN          32473u
#define MOAT_ARCHIVE_NODE_PART    "_node"
#define MOAT_ARCHIVE_MAX_NS_RULES 1024

struct moat_archive_limits {
	char ns[64];         /* "" = the default for every namespace */
	uint64_t max_age_ns; /* 0 = keep forever */
	uint64_t max_bytes;  /* 0 = no bound */
};

struct moat_archive_opts {
	const char *dir;
	const char *node;
	uint64_t segment_bytes; /* rotate when a segment reaches this */
	uint64_t segment_ns;    /* ... or is this old */
	uint64_t total_bytes;   /* node-wide cap over all partitions; 0 none */
	size_t queue_bytes;     /* the sink's queue */
	bool enforce;           /* denies were dropped (XDP_DROP) or only judged */
	struct moat_archive_limits defaults;
	struct moat_archive_limits ns[MOAT_ARCHIVE_MAX_NS_RULES];
	size_t nns;
	/* messages for the daemon's log (the library does not log) */
	void (*log)(void *arg, int level, const char *msg);
	void *log_arg;
	/* tests: the wall clock (NULL: CLOCK_REALTIME) */
	uint64_t (*clock)(void *arg);
	void *clock_arg;
};

void moat_archive_opts_defaults(struct moat_archive_opts *o);
/* The daemon's settings (strings as given) -> opts.  err names the setting. */
int moat_archive_opts_from_config(const struct moatd_config *c, struct moat_archive_opts *o, char *err,
				  size_t errlen);
/* Checks one setting from the configuration file (config.c): path is the
 * dotted key, v its value; 0 and *text (malloc'd, the value as a string)
 * or -EINVAL and err. */
int moat_archive_setting(const char *path, json_t *v, char **text, char *err, size_t errlen);

/* "64Mi", "1G", "4096" -> bytes; "7d", "90m", "30s", "3600" -> ns. */
int moat_parse_size(const char *s, uint64_t *out);
int moat_parse_duration(const char *s, uint64_t *out_ns);
/* "ns=7d:1Gi,other=1h:100Mi" (age or size may be empty) or a JSON object
 * {"ns": {"maxAge": "7d", "maxSize": "1Gi"}}. */
int moat_archive_parse_ns_limits(const char *s, struct moat_archive_opts *o, char *err, size_t errlen);
/* RFC 3339 ("2026-11-28T03:00:00Z", fractions and offsets allowed), "now",
 * relative ("-2h", "-30m", "-1d", "-90s", "+5m"), or "@UNIXSECONDS". */
int moat_time_parse(const char *s, uint64_t now_ns, uint64_t *out_ns);
void moat_time_format(uint64_t ns, char *buf, size_t len);

struct moat_archive;

/* Opens (creates) the directory, recovers segments left open by a crash
 * (torn tail cut, renamed closed), starts the writer. */
int moat_archive_open(const struct moat_archive_opts *o, struct moat_archive **ret, char *err, size_t errlen);
/* Stops the writer after draining the queue; closes every segment. */
void moat_archive_close(struct moat_archive *a);
/* Retention and rotation settings (the directory and node stay). */
void moat_archive_reconfigure(struct moat_archive *a, const struct moat_archive_opts *o);
const char *moat_archive_dir(const struct moat_archive *a);

/* The sink for events.c. */
struct moat_ev_sink moat_archive_sink(struct moat_archive *a);
/* Where node-wide losses before the archive are read from (may be NULL). */
void moat_archive_set_events(struct moat_archive *a, struct moat_events *e);
/* Name snapshots from the daemon's state (call with the daemon lock held):
 * rule descriptions when the generation changed, interfaces always. */
void moat_archive_refresh(struct moat_archive *a, const struct moat_compiler *c, struct moat_ifaces *fi,
			  uint32_t generation);
/* Waits until everything handed to the sink so far is on disk (or counted
 * lost); -ETIMEDOUT after timeout_ms. */
int moat_archive_flush(struct moat_archive *a, int timeout_ms);

struct moat_archive_stats {
	uint64_t offered;    /* events handed to the sink */
	uint64_t written;    /* events written (to one or more partitions) */
	uint64_t queue_lost; /* events the full queue refused */
	uint64_t flows_offered, flows_written, flows_queue_lost;
	uint64_t disk_lost; /* event copies not written (disk full, write error) */
	uint64_t bytes_written;
	uint64_t segments_opened, segments_closed, segments_expired, segments_recovered;
	uint64_t torn_bytes_cut;
	uint64_t write_errors;
	uint64_t queue_used, queue_size;
	uint64_t disk_bytes; /* segments on disk, after the last retention pass */
	bool disk_full;      /* a write is failing now */
};
void moat_archive_stats(struct moat_archive *a, struct moat_archive_stats *st);
/* Prometheus text for /metrics (caller frees). */
char *moat_archive_metrics(struct moat_archive *a);

/* ---- segments on disk ------------------------------------------------------ */
struct moat_segment {
	char part[80]; /* partition directory name */
	char ns[64];   /* namespace ("" for _node) */
	char file[64];
	uint64_t start_ns, end_ns; /* end 0: open */
	uint64_t bytes;
};

/* Every segment under dir, sorted by partition then start.  Caller frees. */
int moat_archive_list(const char *dir, struct moat_segment **out, size_t *n);
/* A partition directory name <-> namespace. */
void moat_archive_part_name(const char *ns, char *out, size_t len);
int moat_archive_part_ns(const char *part, char *ns, size_t len);

/* ---- moat records in EPB comments ----------------------------------------- */
/* The comment of an archived packet: "moat: key=value ..." with quoted
 * values where needed.  Parsed back for filters and redaction. */
#define MOAT_REC_MAX_KV 32
struct moat_rec {
	size_t n;
	char *key[MOAT_REC_MAX_KV];
	char *val[MOAT_REC_MAX_KV];
	char *store;
};
int moat_rec_parse(const char *s, size_t len, struct moat_rec *r);
const char *moat_rec_get(const struct moat_rec *r, const char *key);
void moat_rec_set(struct moat_rec *r, const char *key, const char *val);
void moat_rec_del(struct moat_rec *r, const char *key);
char *moat_rec_format(const struct moat_rec *r);
void moat_rec_free(struct moat_rec *r);

/* ---- queries ------------------------------------------------------------------ */
#define MOAT_AQ_PCAPNG    0
#define MOAT_AQ_PCAP      1
#define MOAT_AQ_MAX_PARTS 256

struct moat_archive_query {
	uint64_t since_ns, until_ns; /* 0: open */
	const char *ns;              /* only this namespace */
	const char *pod;             /* either side: "ns/name" or "name" */
	int verdict;                 /* -1 any, else MOAT_VERDICT_* */
	const char *policy;          /* substring of the deciding rule (as the caller sees it) */
	const char *filter;          /* tcpdump expression */
	int format;                  /* MOAT_AQ_* */
	bool flows;                  /* include flow records (pcapng) */
	/* tenancy: all = platform-admin; else only these namespaces, and
	 * rules of NetworkPolicies of other namespaces are not named */
	bool all;
	char **allowed_ns;
	size_t nallowed_ns;
	const char *node; /* for the output's section header */
};

struct moat_aq;
/* Selects partitions and segments; compiles the filter.  -EINVAL with err
 * for a bad filter; -EACCES when ns is not the caller's. */
int moat_aq_open(const char *dir, const struct moat_archive_query *q, struct moat_aq **ret, char *err,
		 size_t errlen);
/* Next bytes of the result; 0 at the end, negative on error. */
ssize_t moat_aq_read(struct moat_aq *q, uint8_t *buf, size_t max);
void moat_aq_free(struct moat_aq *q);
struct moat_aq_stats {
	uint64_t packets, flows, segments, bad_segments;
};
void moat_aq_stats(const struct moat_aq *q, struct moat_aq_stats *st);

/* ---- reading records back (replay) --------------------------------------------- */
/* Calls fn with every moat JSON record (flows, losses) of a file (a
 * segment or a query result) or of every segment under a directory.
 * Reading stops at a torn or bad block of a file (counted in *bad). */
int moat_archive_records(const char *path, int (*fn)(json_t *rec, void *arg), void *arg, size_t *files,
			 size_t *bad);

#endif

/* ---- moatd (daemon glue, archive.c) --------------------------------------------- */
struct moatd;
/* Command-line flags: MOAT_ARCHIVE_OPTIONS(first) in getopt's table, and
 * moat_archive_flag(cfg, opt - first, optarg) for each of them. */
#define MOAT_ARCHIVE_NOPTS 7
#define MOAT_ARCHIVE_OPTIONS(first)                                               \
	{ "archive-dir", required_argument, NULL, (first) },                      \
		{ "archive-segment-size", required_argument, NULL, (first) + 1 }, \
		{ "archive-segment-age", required_argument, NULL, (first) + 2 },  \
		{ "archive-max-age", required_argument, NULL, (first) + 3 },      \
		{ "archive-max-size", required_argument, NULL, (first) + 4 },     \
		{ "archive-total-size", required_argument, NULL, (first) + 5 },   \
	{                                                                         \
		"archive-namespace", required_argument, NULL, (first) + 6         \
	}
#define MOAT_ARCHIVE_USAGE                                                                      \
	"  --archive-dir DIR    flight recorder: pcapng segments per namespace under DIR\n"     \
	"  --archive-segment-size SIZE --archive-segment-age AGE   rotation (64Mi, 1h)\n"       \
	"  --archive-max-age AGE --archive-max-size SIZE   retention per namespace (7d, 1Gi)\n" \
	"  --archive-total-size SIZE   node-wide cap over all namespaces (default none)\n"      \
	"  --archive-namespace NS=AGE:SIZE   retention of one namespace (repeatable)\n"
int moat_archive_flag(struct moatd_config *c, int which, const char *val, char *err, size_t errlen);
/* Opens d->archive from d->cfg (when archive_dir is set); log is the
 * daemon's logger for the writer's messages. */
int moat_archive_daemon_open(struct moatd *d, void (*log)(void *arg, int level, const char *msg), char *err,
			     size_t errlen);
/* After SIGHUP reloaded d->cfg: retention, rotation, enforce. */
int moat_archive_daemon_reload(struct moatd *d, char *err, size_t errlen);
