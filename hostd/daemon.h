/* SPDX-License-Identifier: Apache-2.0 */
/* moatd's state, shared by its main loop (moatd.c), the manifest source
 * (srcdir.c) and the control API (api.c).  The API runs in its own thread:
 * it takes `lock` around every access to this state. */
#ifndef MOAT_DAEMON_H
#define MOAT_DAEMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "dp.h"
#include "compile.h"
#include "ifaces.h"

struct moat_srcdir;
struct moat_api;
struct moat_events;
struct moat_auth;
struct moat_pfmgr;
struct moat_hwplan;
struct moat_archive;
struct moat_k8s_source;

#define MOAT_RECENT_ERRORS 64

struct moatd_config {
	char *config_file;
	char *kubeconfig;
	/* Kubernetes source (k8s_source.h): --in-cluster or --kubeconfig */
	bool in_cluster;
	char *sa_dir; /* service-account token and ca.crt */
	__u32 k8s_watch_s, k8s_backoff_max_ms, k8s_idle_ms;
	char *tokens_file;
	char *audit_log;
	__u32 api_port;
	char *tls_cert, *tls_key;
	int log_level;
	__u32 ct_tcp_s, ct_close_s, ct_other_s, ct_syn_s;
	__u32 sample_every, deny_rate, deny_burst, snaplen;
	char *node;
	char *manifests; /* standalone: manifest directory */
	char *pin_dir;
	char *socket;         /* control API unix socket */
	unsigned socket_mode; /* default 0660 */
	char *netns_dirs;
	char *uplink;
	char *veth_prefixes;
	enum moat_mode mode;
	bool reset; /* discard pinned state of another ABI */
	bool keep_caps;
	bool prefilter_shadow; /* pre-filter tables kept in a host copy (issue 6) */
	char *hw_profiles;     /* NIC profile directory (issue 6) */
	bool allow_local_node;
	bool revoke;
	bool enforce;
	__u32 max_policy;
	__u32 gc_interval_ms;
	/* archive (archive.c): the flight recorder; values as given, checked there */
	char *archive_dir;
	char *archive_segment_size, *archive_segment_age, *archive_max_age, *archive_max_size;
	char *archive_total_size, *archive_queue_size, *archive_namespaces;
};

struct moatd_apply {
	uint64_t when_ns; /* CLOCK_REALTIME */
	uint64_t compile_ns;
	uint64_t commit_ns;
	size_t ops;
	__u32 generation;
	int error;
	char message[512];
};

struct moatd {
	struct moatd_config cfg;
	pthread_mutex_t lock;
	struct moat_dp *dp;
	struct moat_compiler *comp;
	struct moat_ifaces *ifaces;
	struct moat_srcdir *src;
	struct moat_api *api;
	struct moat_events *events;
	struct moat_auth *auth;
	struct moat_pfmgr *pfmgr;     /* hardware pre-filter (issue 6), or none */
	struct moat_hwplan *hwplan;   /* attach plans (issue 6) */
	struct moat_archive *archive; /* NULL: no flight recorder (archive.h) */
	struct moat_k8s_source *k8s;  /* Kubernetes mode (src is NULL then) */
	bool k8s_hold;                /* no generation before the first full list */
	bool names_dirty;             /* rebuild the events' name snapshot */
	bool adopted;
	uint64_t start_ns;
	struct moatd_apply last;
	uint64_t applies, apply_errors;
	/* apply latency histogram, seconds buckets for /metrics */
	uint64_t lat_bucket[12];
	double lat_sum;
	/* recent errors (bad manifests, attach failures), newest last */
	char *errors[MOAT_RECENT_ERRORS];
	size_t nerrors;
	uint64_t ct_gc_deleted;
	uint64_t pins_restored; /* pins removed from outside and pinned again */
	/* a commit that failed in the kernel (ENOMEM, ...): retried from the
	 * files or the API server, with back-off; 2: the failed one was a full
	 * generation */
	int retry;
	uint64_t retry_at_ns, retry_backoff_ms;
	bool k8s_retry_full; /* Kubernetes: the resent objects make a full generation */
	int repin_error;     /* the last failure to pin again (logged once) */
	bool upgrade_held;   /* an ABI upgrade waits for its first generation */
};

/* Records a problem for `moatctl status` (and logs it). */
void moatd_error(struct moatd *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Compiles pending changes into a new generation; 0 if nothing to do. */
int moatd_apply(struct moatd *d, bool full);

#endif
