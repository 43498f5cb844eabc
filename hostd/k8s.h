/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes API source: list/watch of every kind the engine reads, for
 * moatd's single-threaded main loop.
 *
 * One thread per kind (blocking libcurl there) LISTs the resource in pages
 * (limit/continue), then WATCHes from the list's resourceVersion with
 * bookmarks, resuming from the last resourceVersion seen after a dropped
 * stream.  A "410 Gone" (HTTP status, or an ERROR event with code 410) makes
 * it relist; objects that vanished in between are deleted then.  Failures
 * are retried with exponential backoff and jitter.  Events go through a
 * bounded queue; an eventfd says when it is not empty.
 *
 * What is never done: deleting anything because the API server is away or
 * answers errors.  Only a complete, successful LIST produces deletions (of
 * objects it no longer has), or a DELETED watch event.  While the server is
 * unreachable the last state stays with the caller.
 *
 * Wiring into a main loop (epoll):
 *
 *	struct moat_k8s_opts o = { .kubeconfig = path };   // or .in_cluster = true
 *	struct moat_k8s *k;
 *	char err[512];
 *	if (moat_k8s_start(&o, &k, err, sizeof(err)))  ... die(err)
 *	epoll_ctl(ep, EPOLL_CTL_ADD, moat_k8s_fd(k), EPOLLIN);
 *	...on EPOLLIN:  moat_k8s_drain(k, on_event, d);  then flush the compiler
 *	...at exit:     moat_k8s_stop(k);
 *
 *	static void on_event(void *arg, const struct moat_k8s_event *ev)
 *	{
 *		switch (ev->type) {
 *		case MOAT_K8S_UPSERT:  moat_decode(ev->obj, ev->key, &o, ...); on an
 *		                       error keep the last good version of ev->key;
 *		                       else moat_compiler_apply(); break;
 *		case MOAT_K8S_DELETE:  moat_compiler_delete(c, ev->key); break;
 *		case MOAT_K8S_SYNCED:  first full state is in: compile/commit; break;
 *		case MOAT_K8S_ERROR:   log ev->msg; break;
 *		}
 *	}
 *
 * Keys are what moat_object_key() gives for the decoded object: "Kind/ns/name"
 * for namespaced kinds, "Kind/name" otherwise.
 *
 * Nothing here logs; errors come back as text (start) or as ERROR events.
 */
#ifndef MOAT_K8S_H
#define MOAT_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define MOAT_K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* One resource to list and watch.  The table is data, so moat's own CRDs are
 * one more line. */
struct moat_k8s_kind {
	const char *kind;     /* as objects say it: "NetworkPolicy" */
	const char *group;    /* "" for the core group */
	const char *version;  /* "v1" */
	const char *resource; /* plural: "networkpolicies" */
	bool namespaced;
};

/* Every kind moat_decode() reads: namespaces, pods, nodes, services,
 * networkpolicies, adminnetworkpolicies, baselineadminnetworkpolicies,
 * clusternetworkpolicies, blueprints (moat.io). */
extern const struct moat_k8s_kind moat_k8s_kinds[];
extern const size_t moat_k8s_nkinds;

/* How to reach the API server: from a kubeconfig, from the pod's service
 * account, or filled in by hand.  *_data fields hold PEM bytes and win over
 * the matching *_file; a readable token_file wins over token. */
struct moat_k8s_conf {
	char *server; /* "https://host:port[/prefix]", no trailing '/' */
	char *ca_file;
	char *ca_data;
	size_t ca_len;
	bool insecure; /* insecure-skip-tls-verify */
	char *token;
	char *token_file; /* re-read periodically: tokens rotate */
	char *cert_file, *key_file;
	char *cert_data, *key_data;
	size_t cert_len, key_len;
	char *context; /* kubeconfig context used, or "in-cluster" */
};

/* Reads a kubeconfig (YAML or JSON, via the manifest loader).  context NULL
 * means current-context.  Relative paths are taken from the file's
 * directory.  Supports server, certificate-authority(-data),
 * insecure-skip-tls-verify, token, tokenFile, client-certificate(-data),
 * client-key(-data); exec/auth-provider/username/password/proxy-url/
 * tls-server-name are refused with a message.  0, or -errno with text. */
int moat_k8s_conf_kubeconfig(const char *path, const char *context, struct moat_k8s_conf *out, char *err,
			     size_t errlen);
/* In-cluster: KUBERNETES_SERVICE_HOST/PORT, sa_dir/token (must be
 * readable), sa_dir/ca.crt (if present).  sa_dir NULL = MOAT_K8S_SA_DIR. */
int moat_k8s_conf_in_cluster(const char *sa_dir, struct moat_k8s_conf *out, char *err, size_t errlen);
void moat_k8s_conf_free(struct moat_k8s_conf *c); /* frees the contents */

struct moat_k8s_opts {
	/* where: conf if set, else in_cluster, else kubeconfig */
	const struct moat_k8s_conf *conf;
	bool in_cluster;
	const char *sa_dir; /* in-cluster files; NULL = MOAT_K8S_SA_DIR */
	const char *kubeconfig;
	const char *context; /* kubeconfig context; NULL = current-context */
	/* what: NULL = moat_k8s_kinds */
	const struct moat_k8s_kind *kinds;
	size_t nkinds;
	/* 0 = the default in brackets */
	unsigned page_size;          /* LIST limit [500] */
	unsigned watch_timeout_s;    /* timeoutSeconds asked of the server [300] */
	unsigned idle_timeout_ms;    /* no byte on a stream for this long: reconnect
				      * [90000; the server sends a bookmark each minute] */
	unsigned connect_timeout_ms; /* [10000] */
	unsigned request_timeout_ms; /* one LIST page [60000] */
	unsigned backoff_min_ms;     /* [250] */
	unsigned backoff_max_ms;     /* [30000] */
	unsigned token_reread_ms;    /* token_file re-read [60000] */
	size_t max_object_bytes;     /* one watch event line / one list item [3 MiB] */
	size_t max_page_bytes;       /* one LIST response body [64 MiB] */
	size_t max_objects;          /* objects held per kind [300000] */
	size_t max_queue_bytes;      /* queued undelivered objects [256 MiB] */
	const char *user_agent;      /* ["moatd"] */
};

enum moat_k8s_ev {
	MOAT_K8S_UPSERT, /* key, obj: added or changed (or seen anew by a relist) */
	MOAT_K8S_DELETE, /* key; obj: the final object from a DELETED event, or
			    * NULL when a relist no longer has it */
	MOAT_K8S_SYNCED, /* once: every kind finished its first LIST (kinds the
			    * server lacks (404) or refuses (403) count as finished;
			    * the status says which) */
	MOAT_K8S_ERROR,  /* msg; repeated identical messages of a kind are sent
			    * once until that kind works again */
};

struct moat_k8s_event {
	enum moat_k8s_ev type;
	const char *kind;  /* "Pod"; NULL for SYNCED */
	const char *key;   /* UPSERT, DELETE */
	const json_t *obj; /* UPSERT: the object, with kind and apiVersion set;
				* borrowed: json_incref to keep it */
	const char *msg;   /* ERROR: "Kind (resource): what: why" */
};

/* Called by moat_k8s_drain(), in order (per kind, the order of the API). */
typedef void (*moat_k8s_event_fn)(void *arg, const struct moat_k8s_event *ev);

struct moat_k8s;

/* Loads the configuration and starts the threads.  0, or -errno with text
 * in err (bad kubeconfig, missing token...).  Being unable to reach the
 * server is not an error here: it shows as ERROR events and status. */
int moat_k8s_start(const struct moat_k8s_opts *o, struct moat_k8s **ret, char *err, size_t errlen);
/* Readable (EPOLLIN) while events are queued. */
int moat_k8s_fd(const struct moat_k8s *k);
/* Delivers every queued event to fn, in order; returns how many.  Main
 * thread only; fn must not call moat_k8s_stop. */
int moat_k8s_drain(struct moat_k8s *k, moat_k8s_event_fn fn, void *arg);
/* Whether SYNCED has been queued. */
bool moat_k8s_synced(const struct moat_k8s *k);
/* Any thread: every kind ends its watch and lists again, sending every
 * object again, changed or not (what is gone is deleted as after any
 * relist).  For a caller that lost what it was sent (a datapath update
 * that failed and was rolled back). */
void moat_k8s_resync(struct moat_k8s *k);
/* For the control API and metrics:
 *   {"server", "context", "auth": "token"|"client-certificate"|"none",
 *    "synced", "queued", "queued_bytes", "delivered",
 *    "kinds": [{"kind", "resource", "apiVersion",
 *    "state": "starting"|"listing"|"watching"|"backoff"|"forbidden"|
 *             "not-found"|"unauthorized"|"stopped",
 *    "resourceVersion", "objects", "events" (watch events, bookmarks
 *    included), "lists", "relists" (lists after 410 or lost events),
 *    "reconnects", "errors" (every occurrence), "rejected" (objects over
 *    max_objects), "last_error" (absent if none), "last_error_time"}]}
 * Never contains credentials.  New reference. */
json_t *moat_k8s_status(const struct moat_k8s *k);
/* Stops and joins the threads (within about a second), frees everything,
 * undelivered events included.  NULL is fine. */
void moat_k8s_stop(struct moat_k8s *k);

/* ---- test entry points (tests/fuzz/fuzz_watch.c) ----
 * A moat_k8s without threads, libcurl or a server (opts: kinds and bounds;
 * credentials ignored), and bytes fed to one kind's decoder as they would
 * come from the server with HTTP 200, through the same code the thread
 * runs.  list = false: a watch stream, in write callbacks of `chunk` bytes
 * (0: one), lines split and decoded as they complete.  list = true: the
 * pages of one LIST, separated by NUL bytes, while each has a continue
 * token; the LIST completes (deletions of what it lacks, its
 * resourceVersion) after the page without one.  Events and errors are
 * queued as usual (moat_k8s_drain, moat_k8s_status); free with
 * moat_k8s_stop.  Returns 0; -EPROTO when a line, a page or a bound stopped
 * the decoder (-ESTALE: an ERROR event with code 410), -EPIPE when the
 * bytes ended inside a watch event or before the LIST's last page,
 * -ECANCELED when stopping. */
int moat_k8s_test_new(const struct moat_k8s_opts *opts, struct moat_k8s **ret);
int moat_k8s_test_feed(struct moat_k8s *k, size_t kind, bool list, const void *data, size_t len,
		       size_t chunk);

#endif
