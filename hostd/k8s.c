// SPDX-License-Identifier: Apache-2.0
/* The Kubernetes API source (k8s.h).
 *
 * Per kind, one thread with its own curl easy handle driven through a
 * private multi handle, so moat_k8s_stop() can wake it (curl_multi_wakeup)
 * instead of waiting for a watch to time out.  The thread keeps what it has
 * told the caller: key -> resourceVersion.  That map is what a relist is
 * compared with (unchanged objects are not sent again; missing ones are
 * deleted) and what bounds the objects per kind.
 *
 * Everything the server sends is bounded: a LIST page (retried with a
 * smaller limit when too big), a watch line, one object, an error body, the
 * number of pages of one LIST, objects per kind, and the queue (the thread
 * waits for the main loop, which holds the TCP stream back). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <curl/curl.h>

#include "k8s.h"
#include "util.h"

const struct moat_k8s_kind moat_k8s_kinds[] = {
	{ "Namespace", "", "v1", "namespaces", false },
	{ "Pod", "", "v1", "pods", true },
	{ "Node", "", "v1", "nodes", false },
	{ "Service", "", "v1", "services", true },
	{ "NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", true },
	{ "AdminNetworkPolicy", "policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies", false },
	{ "BaselineAdminNetworkPolicy", "policy.networking.k8s.io", "v1alpha1",
	  "baselineadminnetworkpolicies", false },
	{ "ClusterNetworkPolicy", "policy.networking.k8s.io", "v1alpha2", "clusternetworkpolicies", false },
	{ "Blueprint", "moat.io", "v1alpha1", "blueprints", false },
};
const size_t moat_k8s_nkinds = sizeof(moat_k8s_kinds) / sizeof(moat_k8s_kinds[0]);

#define MAX_KINDS    64
#define MAX_ERRBODY  (64u << 10) /* a non-200 body, for its message */
#define MAX_RV       128         /* resourceVersion: opaque, short in practice */
#define MAX_NAME     253
#define MAX_TOKEN    (64u << 10)
#define MAX_MSG      512
#define MIN_WATCH_NS 1000000000ull /* a shorter watch without events is a failure */

enum xend {
	XE_OK,       /* transfer completed */
	XE_STOP,     /* moat_k8s_stop() */
	XE_IDLE,     /* no byte for idle_timeout */
	XE_OVERFLOW, /* body or line over its bound */
	XE_GONE,     /* ERROR event with code 410 */
	XE_EVERR,    /* another ERROR event */
	XE_GARBAGE,  /* a line that is not a watch event */
	XE_RESYNC,   /* moat_k8s_resync(): end the watch, list again */
};

struct known {
	char *key; /* the hmap key */
	char *rv;
	uint64_t mark; /* the LIST that last saw it */
};

struct qev {
	struct qev *next;
	enum moat_k8s_ev type;
	const char *kind;
	char *key;
	json_t *obj;
	char *msg;
	size_t bytes;
};

struct kind_rt {
	struct moat_k8s *k;
	struct moat_k8s_kind kind; /* strings owned */
	char *api_version;         /* "v1", "group/version" */
	char *path;                /* "/api/v1/pods" */
	char *label;               /* "Pod (v1 pods)", for messages */
	pthread_t th;
	bool th_started;
	CURL *easy;
	CURLM *multi;

	/* thread only */
	struct hmap known;
	uint64_t mark;
	uint64_t rng;
	unsigned fails;
	unsigned limit;
	long retry_after_ms;
	bool relist;
	unsigned resync_seen; /* the moat_k8s.resync_gen this thread acted on */
	struct {
		bool watch;
		char *buf;
		size_t len, cap, max;
		long status;
		enum xend end;
		char msg[MAX_MSG];
		uint64_t last_rx_ns;
		uint64_t events;
	} x;

	/* under k->lock */
	const char *state;
	char rv[MAX_RV + 1];
	size_t nobjects;
	uint64_t n_events, n_lists, n_relists, n_reconnects, n_errors, n_rejected;
	char last_error[MAX_MSG + 128];
	time_t last_error_time;
	char last_sent[MAX_MSG + 128]; /* ERROR events are not repeated */
	bool initial_done;
};

struct moat_k8s {
	struct moat_k8s_conf conf;
	struct moat_k8s_opts o; /* defaults filled; pointers not kept */
	char *user_agent;
	int efd;
	atomic_bool stopping;
	atomic_uint resync_gen; /* moat_k8s_resync() calls */

	pthread_mutex_t lock;
	pthread_cond_t cond;  /* stop, for backoff sleeps (monotonic) */
	pthread_cond_t qcond; /* queue drained */
	struct qev *qhead, *qtail;
	size_t qn, qbytes;
	uint64_t delivered;
	bool synced;

	/* token_file cache, under lock */
	char *token;
	uint64_t token_read_ns;
	bool token_force;

	size_t nkinds;
	struct kind_rt *kinds;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool stopping(const struct moat_k8s *k)
{
	return atomic_load(&((struct moat_k8s *)k)->stopping);
}

static bool resync_wanted(const struct kind_rt *t)
{
	return atomic_load(&t->k->resync_gen) != t->resync_seen;
}

static uint64_t rnd(struct kind_rt *t)
{
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

/* Printable, bounded copy of text from the server. */
static void clean_copy(char *dst, size_t dstlen, const char *src, size_t n)
{
	size_t o = 0;

	/* n bounds src, which may end (NUL) sooner: callers pass a literal with
	 * n = 300 */
	/* cppcheck-suppress arrayIndexOutOfBoundsCond ; src[i] ends the loop first */
	for (size_t i = 0; i < n && src[i] && o + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	dst[o] = 0;
}

/* ---- queue ------------------------------------------------------------------------------------ */

static void qev_free(struct qev *e)
{
	free(e->key);
	free(e->msg);
	json_decref(e->obj);
	free(e);
}

/* Caller holds the lock. */
static void enqueue_locked(struct moat_k8s *k, struct qev *e)
{
	uint64_t one = 1;

	if (k->qtail)
		k->qtail->next = e;
	else
		k->qhead = e;
	k->qtail = e;
	if (k->qn++ == 0 && write(k->efd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow: drain reads it to zero */
	}
	k->qbytes += e->bytes;
}

/* Waits while the queue is over its byte bound (never for an empty queue,
 * so one large object cannot stall).  -ECANCELED when stopping; e is freed
 * then. */
static int enqueue(struct moat_k8s *k, struct qev *e)
{
	pthread_mutex_lock(&k->lock);
	while (!stopping(k) && k->qn && k->qbytes + e->bytes > k->o.max_queue_bytes)
		pthread_cond_wait(&k->qcond, &k->lock);
	if (stopping(k)) {
		pthread_mutex_unlock(&k->lock);
		qev_free(e);
		return -ECANCELED;
	}
	enqueue_locked(k, e);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static struct qev *qev_new(struct kind_rt *t, enum moat_k8s_ev type, const char *key, json_t *obj,
			   size_t bytes)
{
	struct qev *e = xcalloc(1, sizeof(*e));

	e->type = type;
	e->kind = t ? t->kind.kind : NULL;
	e->key = key ? xstrdup(key) : NULL;
	e->obj = obj ? json_incref(obj) : NULL;
	e->bytes = bytes + (key ? strlen(key) : 0) + sizeof(*e);
	return e;
}

/* ---- status and errors ------------------------------------------------------------------------ */

static void set_state(struct kind_rt *t, const char *state)
{
	pthread_mutex_lock(&t->k->lock);
	t->state = state;
	pthread_mutex_unlock(&t->k->lock);
}

static void set_rv(struct kind_rt *t, const char *rv)
{
	pthread_mutex_lock(&t->k->lock);
	if (rv)
		snprintf(t->rv, sizeof(t->rv), "%s", rv);
	t->nobjects = t->known.n;
	pthread_mutex_unlock(&t->k->lock);
}

/* Records an error of this kind and queues it unless it repeats the last
 * one sent.  -ECANCELED when stopping. */
static int kind_error(struct kind_rt *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int kind_error(struct kind_rt *t, const char *fmt, ...)
{
	struct moat_k8s *k = t->k;
	char body[MAX_MSG], msg[MAX_MSG + 128];
	struct qev *e = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s: %s", t->label, body);
	pthread_mutex_lock(&k->lock);
	t->n_errors++;
	snprintf(t->last_error, sizeof(t->last_error), "%s", msg);
	t->last_error_time = time(NULL);
	if (strcmp(t->last_sent, t->last_error)) {
		snprintf(t->last_sent, sizeof(t->last_sent), "%s", t->last_error);
		e = qev_new(t, MOAT_K8S_ERROR, NULL, NULL, 0);
		e->msg = xstrdup(t->last_error);
	}
	pthread_mutex_unlock(&k->lock);
	return e ? enqueue(k, e) : 0;
}

/* The kind works again: the next error is news. */
static void kind_ok(struct kind_rt *t)
{
	t->fails = 0;
	pthread_mutex_lock(&t->k->lock);
	t->last_sent[0] = 0;
	pthread_mutex_unlock(&t->k->lock);
}

/* The kind's first LIST is settled; the last one to settle queues SYNCED
 * behind everything the lists queued. */
static void initial_done(struct kind_rt *t)
{
	struct moat_k8s *k = t->k;
	bool all = true;

	pthread_mutex_lock(&k->lock);
	t->initial_done = true;
	for (size_t i = 0; i < k->nkinds; i++)
		all &= k->kinds[i].initial_done;
	if (all && !k->synced) {
		k->synced = true;
		enqueue_locked(k, qev_new(NULL, MOAT_K8S_SYNCED, NULL, NULL, 0));
	}
	pthread_mutex_unlock(&k->lock);
}

/* ---- auth ------------------------------------------------------------------------------------- */

static char *read_token_file(const char *path, char *err, size_t errlen)
{
	char *buf = xcalloc(1, MAX_TOKEN + 1);
	size_t n;
	FILE *f = fopen(path, "re");

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(buf);
		return NULL;
	}
	n = fread(buf, 1, MAX_TOKEN + 1, f);
	fclose(f);
	if (n > MAX_TOKEN) {
		snprintf(err, errlen, "%s: longer than %u bytes", path, MAX_TOKEN);
		free(buf);
		return NULL;
	}
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = 0;
	if (!n) {
		snprintf(err, errlen, "%s: empty", path);
		free(buf);
		return NULL;
	}
	return buf;
}

/* The bearer token to send now (malloc'd) or NULL.  A token file is re-read
 * when older than token_reread_ms or after a 401; if it cannot be read the
 * last good token is kept and the problem reported. */
static char *current_token(struct kind_rt *t)
{
	struct moat_k8s *k = t->k;
	char err[MAX_MSG] = "", *tok = NULL, *ret;
	uint64_t now = moat_now_ns();
	bool reread;

	if (!k->conf.token_file)
		return k->conf.token ? xstrdup(k->conf.token) : NULL;
	pthread_mutex_lock(&k->lock);
	reread = k->token_force || !k->token ||
		 now - k->token_read_ns > (uint64_t)k->o.token_reread_ms * 1000000;
	if (reread) {
		tok = read_token_file(k->conf.token_file, err, sizeof(err));
		k->token_read_ns = now;
		k->token_force = false;
		if (tok) {
			free(k->token);
			k->token = tok;
		}
	}
	ret = k->token ? xstrdup(k->token) : k->conf.token ? xstrdup(k->conf.token) : NULL;
	pthread_mutex_unlock(&k->lock);
	if (err[0])
		kind_error(t, "token: %s%s", err, ret ? "; using the last token read" : "");
	return ret;
}

/* ---- one HTTP transfer -------------------------------------------------------------------------- */

static int process_line(struct kind_rt *t, char *line, size_t len);

static void xbuf_append(struct kind_rt *t, const char *p, size_t n)
{
	if (!t->x.buf || t->x.len + n + 1 > t->x.cap) {
		size_t cap = t->x.cap ? t->x.cap : 16384;
		while (cap < t->x.len + n + 1)
			cap *= 2;
		t->x.buf = xrealloc(t->x.buf, cap);
		t->x.cap = cap;
	}
	memcpy(t->x.buf + t->x.len, p, n);
	t->x.len += n;
	t->x.buf[t->x.len] = 0;
}

static size_t on_write(char *p, size_t sz, size_t nmemb, void *ud)
{
	struct kind_rt *t = ud;
	size_t n = sz * nmemb;

	t->x.last_rx_ns = moat_now_ns();
	if (stopping(t->k)) {
		t->x.end = XE_STOP;
		return 0;
	}
	if (!t->x.status)
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->x.status);
	if (t->x.status != 200) {
		/* an error body: keep its beginning for the message */
		if (t->x.len < MAX_ERRBODY)
			xbuf_append(t, p, n < MAX_ERRBODY - t->x.len ? n : MAX_ERRBODY - t->x.len);
		return n;
	}
	if (!t->x.watch) {
		if (t->x.len + n > t->x.max) {
			t->x.end = XE_OVERFLOW;
			snprintf(t->x.msg, sizeof(t->x.msg), "response of more than %zu bytes", t->x.max);
			return 0;
		}
		xbuf_append(t, p, n);
		return n;
	}
	/* a watch: one event per line */
	while (n) {
		char *nl = memchr(p, '\n', n);
		size_t seg = nl ? (size_t)(nl - p) : n;

		if (t->x.len + seg > t->x.max) {
			t->x.end = XE_OVERFLOW;
			snprintf(t->x.msg, sizeof(t->x.msg), "watch event of more than %zu bytes", t->x.max);
			return 0;
		}
		xbuf_append(t, p, seg);
		if (!nl)
			break;
		p += seg + 1;
		n -= seg + 1;
		if (process_line(t, t->x.buf, t->x.len))
			return 0;
		t->x.len = 0;
	}
	return sz * nmemb;
}

static size_t on_header(char *p, size_t sz, size_t nmemb, void *ud)
{
	struct kind_rt *t = ud;

	(void)p;
	t->x.last_rx_ns = moat_now_ns();
	return sz * nmemb;
}

static CURLcode set_common(struct kind_rt *t, const char *url, struct curl_slist **hdrs)
{
	struct moat_k8s *k = t->k;
	const struct moat_k8s_conf *c = &k->conf;
	CURL *h = t->easy;
	char *tok = current_token(t), *auth;
	CURLcode rc = CURLE_OK;

	*hdrs = curl_slist_append(NULL, "Accept: application/json");
	if (tok) {
		auth = xasprintf("Authorization: Bearer %s", tok);
		*hdrs = curl_slist_append(*hdrs, auth);
		explicit_bzero(auth, strlen(auth));
		free(auth);
		explicit_bzero(tok, strlen(tok));
		free(tok);
	}
	if (!*hdrs)
		return CURLE_OUT_OF_MEMORY;
#define SET(opt, val)                                       \
	do {                                                \
		if (rc == CURLE_OK)                         \
			rc = curl_easy_setopt(h, opt, val); \
	} while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_HTTPHEADER, *hdrs);
	SET(CURLOPT_USERAGENT, k->user_agent);
	SET(CURLOPT_ACCEPT_ENCODING, "gzip");
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)k->o.connect_timeout_ms);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_TCP_KEEPIDLE, 30L);
	SET(CURLOPT_TCP_KEEPINTVL, 10L);
	SET(CURLOPT_WRITEFUNCTION, on_write);
	SET(CURLOPT_WRITEDATA, t);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, t);
	if (c->ca_data) {
		struct curl_blob b = { .data = c->ca_data, .len = c->ca_len, .flags = CURL_BLOB_NOCOPY };
		SET(CURLOPT_CAINFO_BLOB, &b);
	} else if (c->ca_file) {
		SET(CURLOPT_CAINFO, c->ca_file);
	}
	if (c->insecure) {
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (c->cert_data) {
		struct curl_blob b = { .data = c->cert_data, .len = c->cert_len, .flags = CURL_BLOB_NOCOPY };
		SET(CURLOPT_SSLCERT_BLOB, &b);
		SET(CURLOPT_SSLCERTTYPE, "PEM");
	} else if (c->cert_file) {
		SET(CURLOPT_SSLCERT, c->cert_file);
		SET(CURLOPT_SSLCERTTYPE, "PEM");
	}
	if (c->key_data) {
		struct curl_blob b = { .data = c->key_data, .len = c->key_len, .flags = CURL_BLOB_NOCOPY };
		SET(CURLOPT_SSLKEY_BLOB, &b);
		SET(CURLOPT_SSLKEYTYPE, "PEM");
	} else if (c->key_file) {
		SET(CURLOPT_SSLKEY, c->key_file);
		SET(CURLOPT_SSLKEYTYPE, "PEM");
	}
#undef SET
	return rc;
}

/* Runs one request to completion, stop, idle timeout or a callback's
 * verdict.  Returns the curl result; t->x says the rest. */
static CURLcode transfer(struct kind_rt *t, const char *url, bool watch)
{
	struct moat_k8s *k = t->k;
	uint64_t idle_ns = (uint64_t)k->o.idle_timeout_ms * 1000000;
	uint64_t deadline;
	struct curl_slist *hdrs = NULL;
	CURLcode res;
	CURLMcode mc;
	CURLMsg *m;
	int running = 1, left;
	curl_off_t ra = 0;

	t->x.watch = watch;
	t->x.len = 0;
	t->x.status = 0;
	t->x.end = XE_OK;
	t->x.msg[0] = 0;
	t->x.events = 0;
	t->x.max = watch ? k->o.max_object_bytes : k->o.max_page_bytes;
	t->x.last_rx_ns = moat_now_ns();
	t->retry_after_ms = 0;
	/* a watch ends at timeoutSeconds; a hung one is caught by idle_ns */
	deadline = t->x.last_rx_ns + (watch ? ((uint64_t)k->o.watch_timeout_s * 1000 + 30000) :
					      (uint64_t)k->o.request_timeout_ms) *
					     1000000;

	curl_easy_reset(t->easy);
	res = set_common(t, url, &hdrs);
	if (res != CURLE_OK)
		goto out;
	mc = curl_multi_add_handle(t->multi, t->easy);
	if (mc != CURLM_OK) {
		res = CURLE_FAILED_INIT;
		goto out;
	}
	res = CURLE_OK;
	while (running) {
		uint64_t now;
		int wait_ms;

		mc = curl_multi_perform(t->multi, &running);
		if (mc != CURLM_OK) {
			res = CURLE_FAILED_INIT;
			break;
		}
		if (!running)
			break;
		now = moat_now_ns();
		if (stopping(k)) {
			t->x.end = XE_STOP;
			break;
		}
		if (t->x.watch && resync_wanted(t)) {
			t->x.end = XE_RESYNC;
			break;
		}
		if (now - t->x.last_rx_ns >= idle_ns) {
			t->x.end = XE_IDLE;
			snprintf(t->x.msg, sizeof(t->x.msg), "no data for %u ms", k->o.idle_timeout_ms);
			break;
		}
		if (now >= deadline) {
			res = CURLE_OPERATION_TIMEDOUT;
			break;
		}
		wait_ms = (int)((t->x.last_rx_ns + idle_ns - now) / 1000000) + 1;
		if (wait_ms > 1000)
			wait_ms = 1000;
		curl_multi_poll(t->multi, NULL, 0, wait_ms, NULL);
	}
	while ((m = curl_multi_info_read(t->multi, &left)))
		if (m->msg == CURLMSG_DONE && m->easy_handle == t->easy)
			res = m->data.result;
	if (!t->x.status)
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->x.status);
	if (curl_easy_getinfo(t->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
		t->retry_after_ms = ra > k->o.backoff_max_ms / 1000 ? (long)k->o.backoff_max_ms :
								      (long)ra * 1000;
	curl_multi_remove_handle(t->multi, t->easy);
out:
	curl_slist_free_all(hdrs);
	return res;
}

/* Message of a Kubernetes Status body, or the body's beginning. */
static void status_message(struct kind_rt *t, char *out, size_t outlen)
{
	json_t *j = t->x.len ? json_loadb(t->x.buf, t->x.len, 0, NULL) : NULL;
	const char *m = json_string_value(json_object_get(j, "message"));

	if (m)
		clean_copy(out, outlen, m, 300);
	else if (t->x.len)
		clean_copy(out, outlen, t->x.buf, t->x.len < 200 ? t->x.len : 200);
	else
		snprintf(out, outlen, "no body");
	json_decref(j);
}

enum outcome {
	O_OK,
	O_STOP,
	O_RETRY,  /* same operation after backoff */
	O_RELIST, /* resourceVersion too old, or lost events */
};

/* Classifies a failed transfer, reports it, sets the kind's state.  what:
 * "list" or "watch". */
static enum outcome failed(struct kind_rt *t, const char *what, CURLcode res)
{
	char sm[400];

	if (t->x.end == XE_STOP)
		return O_STOP;
	if (t->x.status && t->x.status != 200) {
		status_message(t, sm, sizeof(sm));
		switch (t->x.status) {
		case 401:
			pthread_mutex_lock(&t->k->lock);
			t->k->token_force = true;
			t->state = "unauthorized";
			pthread_mutex_unlock(&t->k->lock);
			kind_error(t, "%s: HTTP 401 Unauthorized: %s", what, sm);
			return O_RETRY;
		case 403:
			set_state(t, "forbidden");
			kind_error(t, "%s: HTTP 403 Forbidden (RBAC: moatd needs list and watch): %s", what,
				   sm);
			return O_RETRY;
		case 404:
			set_state(t, "not-found");
			kind_error(t, "%s: the server has no resource %s %s (CRD not installed?); retrying",
				   what, t->api_version, t->kind.resource);
			return O_RETRY;
		case 410:
			return O_RELIST;
		default:
			kind_error(t, "%s: HTTP %ld: %s", what, t->x.status, sm);
			return O_RETRY;
		}
	}
	switch (t->x.end) {
	case XE_IDLE:
		kind_error(t, "%s: %s; reconnecting", what, t->x.msg);
		return O_RETRY;
	case XE_OVERFLOW:
		kind_error(t, "%s: %s; relisting", what, t->x.msg);
		return O_RELIST;
	case XE_GONE:
	case XE_RESYNC:
		return O_RELIST;
	case XE_EVERR:
	case XE_GARBAGE:
		kind_error(t, "%s: %s; reconnecting", what, t->x.msg);
		return O_RETRY;
	default:
		break;
	}
	kind_error(t, "%s: %s", what, curl_easy_strerror(res));
	return O_RETRY;
}

/* ---- objects ---------------------------------------------------------------------------------- */

/* Checks an object of this kind and gives its key and resourceVersion;
 * fills kind and apiVersion if missing (list items lack them). */
static int object_identity(struct kind_rt *t, json_t *obj, char **key, const char **rv, char *msg,
			   size_t msglen)
{
	json_t *md = json_object_get(obj, "metadata");
	const char *kind = json_string_value(json_object_get(obj, "kind"));
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *ns = json_string_value(json_object_get(md, "namespace"));

	*rv = json_string_value(json_object_get(md, "resourceVersion"));
	if (!json_is_object(obj) || !json_is_object(md)) {
		snprintf(msg, msglen, "object without metadata");
		return -EINVAL;
	}
	if (kind && strcmp(kind, t->kind.kind)) {
		snprintf(msg, msglen, "object of kind \"%.64s\" in a %s stream", kind, t->kind.kind);
		return -EINVAL;
	}
	if (!name || !*name || strlen(name) > MAX_NAME || strchr(name, '/')) {
		snprintf(msg, msglen, "object without a valid metadata.name");
		return -EINVAL;
	}
	if (t->kind.namespaced && (!ns || !*ns || strlen(ns) > MAX_NAME || strchr(ns, '/'))) {
		snprintf(msg, msglen, "%s %.253s without a valid metadata.namespace", t->kind.kind, name);
		return -EINVAL;
	}
	if (!*rv || !**rv || strlen(*rv) > MAX_RV) {
		snprintf(msg, msglen, "%s %.253s without a valid metadata.resourceVersion", t->kind.kind,
			 name);
		return -EINVAL;
	}
	if (!kind)
		json_object_set_new(obj, "kind", json_string(t->kind.kind));
	if (!json_object_get(obj, "apiVersion"))
		json_object_set_new(obj, "apiVersion", json_string(t->api_version));
	*key = t->kind.namespaced ? xasprintf("%s/%s/%s", t->kind.kind, ns, name) :
				    xasprintf("%s/%s", t->kind.kind, name);
	return 0;
}

static void known_free(struct known *e)
{
	free(e->key);
	free(e->rv);
	free(e);
}

/* Records an added/changed object and queues an UPSERT, unless it is the
 * version already sent.  1 when over max_objects (not recorded). */
static int upsert(struct kind_rt *t, const char *key, const char *rv, json_t *obj, size_t bytes)
{
	struct known *e = hmap_gets(&t->known, key);

	if (e) {
		e->mark = t->mark;
		if (!strcmp(e->rv, rv))
			return 0;
		free(e->rv);
		e->rv = xstrdup(rv);
	} else {
		if (t->known.n >= t->k->o.max_objects)
			return 1;
		e = xcalloc(1, sizeof(*e));
		e->key = xstrdup(key);
		e->rv = xstrdup(rv);
		e->mark = t->mark;
		hmap_put(&t->known, e->key, strlen(e->key), e, NULL);
	}
	return enqueue(t->k, qev_new(t, MOAT_K8S_UPSERT, key, obj, bytes));
}

static int forget(struct kind_rt *t, const char *key, json_t *obj)
{
	struct known *e = hmap_del(&t->known, key, strlen(key));

	if (!e)
		return 0; /* never sent: nothing to take back */
	known_free(e);
	return enqueue(t->k, qev_new(t, MOAT_K8S_DELETE, key, obj, 0));
}

/* One watch line.  0 to go on; otherwise t->x.end says why to stop. */
static int process_line(struct kind_rt *t, char *line, size_t len)
{
	json_error_t je;
	json_t *ev, *obj;
	const char *type, *rv = NULL;
	char *key = NULL, msg[300];
	int rc = 0;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (!len)
		return 0;
	ev = json_loadb(line, len, 0, &je);
	if (!ev) {
		t->x.end = XE_GARBAGE;
		clean_copy(msg, sizeof(msg), je.text, sizeof(je.text));
		snprintf(t->x.msg, sizeof(t->x.msg), "a watch line is not JSON (%s)", msg);
		return -1;
	}
	type = json_string_value(json_object_get(ev, "type"));
	obj = json_object_get(ev, "object");
	if (!type || !json_is_object(obj)) {
		t->x.end = XE_GARBAGE;
		snprintf(t->x.msg, sizeof(t->x.msg), "a watch line is not an event (type, object)");
		rc = -1;
		goto out;
	}
	if (!strcmp(type, "ERROR")) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		const char *m = json_string_value(json_object_get(obj, "message"));
		clean_copy(msg, sizeof(msg), m ? m : "no message", 300);
		t->x.end = code == 410 ? XE_GONE : XE_EVERR;
		snprintf(t->x.msg, sizeof(t->x.msg), "ERROR event %lld: %s", (long long)code, msg);
		rc = -1;
		goto out;
	}
	if (!strcmp(type, "BOOKMARK")) {
		rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
		if (!rv || !*rv || strlen(rv) > MAX_RV) {
			t->x.end = XE_GARBAGE;
			snprintf(t->x.msg, sizeof(t->x.msg), "BOOKMARK without a resourceVersion");
			rc = -1;
			goto out;
		}
		goto done;
	}
	if (strcmp(type, "ADDED") && strcmp(type, "MODIFIED") && strcmp(type, "DELETED")) {
		t->x.end = XE_GARBAGE;
		clean_copy(msg, sizeof(msg), type, 40);
		snprintf(t->x.msg, sizeof(t->x.msg), "unknown watch event type \"%s\"", msg);
		rc = -1;
		goto out;
	}
	if (object_identity(t, obj, &key, &rv, msg, sizeof(msg))) {
		t->x.end = XE_GARBAGE;
		snprintf(t->x.msg, sizeof(t->x.msg), "%s event: %s", type, msg);
		rc = -1;
		goto out;
	}
	if (type[0] == 'D') {
		rc = forget(t, key, obj);
	} else {
		rc = upsert(t, key, rv, obj, len);
		if (rc == 1) {
			pthread_mutex_lock(&t->k->lock);
			t->n_rejected++;
			pthread_mutex_unlock(&t->k->lock);
			rc = kind_error(t, "more than %zu objects: %s ignored", t->k->o.max_objects, key);
		}
	}
	if (rc) {
		t->x.end = XE_STOP;
		rc = -1;
		goto out;
	}
done:
	if (!t->x.events++)
		kind_ok(t); /* a working watch */
	pthread_mutex_lock(&t->k->lock);
	t->n_events++;
	pthread_mutex_unlock(&t->k->lock);
	set_rv(t, rv);
out:
	free(key);
	json_decref(ev);
	return rc;
}

/* ---- list and watch --------------------------------------------------------------------------- */

static char *escaped(struct kind_rt *t, const char *s)
{
	char *e = curl_easy_escape(t->easy, s, 0), *r;

	if (!e)
		return NULL;
	r = xstrdup(e);
	curl_free(e);
	return r;
}

/* One LIST page, the body in t->x.buf: queues what changed, gives the
 * page's resourceVersion and continue token (NULL: the last page).  O_OK,
 * O_RETRY (reported) or O_STOP. */
static enum outcome list_page(struct kind_rt *t, char **rv, char **cont)
{
	struct moat_k8s *k = t->k;
	json_error_t je;
	json_t *body, *md, *items, *it;
	const char *c, *r;
	char msg[300];
	enum outcome out = O_RETRY;
	size_t i;
	int rc;

	body = json_loadb(t->x.buf, t->x.len, 0, &je);
	md = json_object_get(body, "metadata");
	items = json_object_get(body, "items");
	r = json_string_value(json_object_get(md, "resourceVersion"));
	if (!body || !json_is_object(md) || !(json_is_array(items) || json_is_null(items)) || !r || !*r ||
	    strlen(r) > MAX_RV) {
		clean_copy(msg, sizeof(msg), body ? "no items or metadata.resourceVersion" : je.text, 200);
		kind_error(t, "list: not a %sList: %s", t->kind.kind, msg);
		goto out;
	}
	json_array_foreach(items, i, it)
	{
		const char *orv;
		char *key = NULL;
		size_t bytes;

		if (object_identity(t, it, &key, &orv, msg, sizeof(msg))) {
			if (kind_error(t, "list: item %zu: %s; ignored", i, msg))
				goto stop;
			continue;
		}
		/* measured as delivered: with the kind and apiVersion just set */
		bytes = json_dumpb(it, NULL, 0, JSON_COMPACT);
		if (bytes > k->o.max_object_bytes) {
			struct known *e = hmap_gets(&t->known, key);
			if (e)
				e->mark = t->mark; /* keep its last good version */
			rc = kind_error(t, "%s: %zu bytes, more than %zu; %s", key, bytes,
					k->o.max_object_bytes, e ? "the last good version stays" : "ignored");
			free(key);
			if (rc)
				goto stop;
			continue;
		}
		rc = upsert(t, key, orv, it, bytes);
		if (rc == 1) {
			kind_error(t, "list: more than %zu objects; the list is not applied in full",
				   k->o.max_objects);
			free(key);
			goto out;
		}
		free(key);
		if (rc)
			goto stop;
	}
	free(*rv);
	*rv = xstrdup(r);
	c = json_string_value(json_object_get(md, "continue"));
	free(*cont);
	*cont = c && *c ? xstrdup(c) : NULL;
	if (*cont && strlen(*cont) > MAX_ERRBODY) {
		kind_error(t, "list: continue token of more than %u bytes", MAX_ERRBODY);
		goto out;
	}
	out = O_OK;
	goto out;
stop:
	out = O_STOP;
out:
	json_decref(body);
	return out;
}

/* Every page of a LIST came in: what the server no longer has is gone, rv
 * is where the watch starts.  O_OK or O_STOP. */
static enum outcome list_complete(struct kind_rt *t, const char *rv)
{
	struct moat_k8s *k = t->k;
	struct ptrvec gone = { 0 };
	size_t it = 0;
	void *v;
	int rc = 0;

	while (hmap_next(&t->known, &it, NULL, NULL, &v))
		if (((struct known *)v)->mark != t->mark)
			ptrvec_push(&gone, ((struct known *)v)->key);
	for (size_t i = 0; i < gone.n && !rc; i++) {
		char *key = xstrdup(gone.v[i]);
		rc = forget(t, key, NULL);
		free(key);
	}
	ptrvec_free(&gone);
	if (rc)
		return O_STOP;
	set_rv(t, rv);
	pthread_mutex_lock(&k->lock);
	t->n_lists++;
	if (t->relist)
		t->n_relists++;
	pthread_mutex_unlock(&k->lock);
	return O_OK;
}

/* LISTs the whole resource page by page, queues what changed, then deletes
 * what the list no longer has.  Nothing is deleted unless every page came
 * in. */
static enum outcome do_list(struct kind_rt *t)
{
	struct moat_k8s *k = t->k;
	char *cont = NULL, *rv = NULL, msg[300];
	size_t pages = 0, max_pages;
	enum outcome out = O_RETRY;

	t->mark++;
	t->limit = k->o.page_size;
	max_pages = k->o.max_objects / (k->o.page_size ? k->o.page_size : 1) + 64;
	for (;;) {
		char *url, *ec = cont ? escaped(t, cont) : NULL;
		CURLcode res;

		url = xasprintf("%s%s?limit=%u%s%s", k->conf.server, t->path, t->limit,
				ec ? "&continue=" : "", ec ? ec : "");
		free(ec);
		res = transfer(t, url, false);
		free(url);
		if (res == CURLE_OK && t->x.status == 200 && t->x.end == XE_OK) {
			/* fine */
		} else if (t->x.end == XE_OVERFLOW && t->x.status == 200 && t->limit > 1) {
			t->limit /= 2; /* the same page again, in smaller parts */
			continue;
		} else if (t->x.status == 410) {
			/* the continue token expired: start over */
			status_message(t, msg, sizeof(msg));
			if (!cont) {
				kind_error(t, "list: HTTP 410: %s", msg);
				goto out;
			}
			free(cont);
			cont = NULL;
			t->mark++;
			if (++pages > max_pages)
				goto toomany;
			continue;
		} else {
			out = failed(t, "list", res);
			if (out == O_RELIST)
				out = O_RETRY;
			goto out;
		}
		out = list_page(t, &rv, &cont);
		if (out != O_OK)
			goto out;
		out = O_RETRY;
		if (!cont)
			break;
		if (++pages > max_pages)
			goto toomany;
	}
	out = list_complete(t, rv);
	goto out;
toomany:
	kind_error(t, "list: more than %zu pages", max_pages);
out:
	free(cont);
	free(rv);
	if (t->x.cap > (1u << 20)) { /* do not sit on a page's worth of memory */
		free(t->x.buf);
		t->x.buf = NULL;
		t->x.cap = t->x.len = 0;
	}
	return out;
}

static enum outcome do_watch(struct kind_rt *t)
{
	struct moat_k8s *k = t->k;
	char rv[MAX_RV + 1], *erv, *url;
	uint64_t t0 = moat_now_ns();
	CURLcode res;

	pthread_mutex_lock(&k->lock);
	memcpy(rv, t->rv, sizeof(rv));
	pthread_mutex_unlock(&k->lock);
	erv = escaped(t, rv);
	if (!erv)
		return O_RETRY;
	url = xasprintf("%s%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%u",
			k->conf.server, t->path, erv, k->o.watch_timeout_s);
	free(erv);
	res = transfer(t, url, true);
	free(url);
	if (t->x.status == 200 && t->x.end == XE_OK &&
	    (res == CURLE_OK || res == CURLE_PARTIAL_FILE || res == CURLE_RECV_ERROR) && t->x.len == 0) {
		/* The server ended the watch between events (timeoutSeconds, or a
		 * dropped connection that lost nothing): resume from rv.  One that
		 * ends at once without an event counts as a failure. */
		if (res != CURLE_OK)
			kind_error(t, "watch: connection lost (%s); resuming from resourceVersion %s",
				   curl_easy_strerror(res), rv);
		if (res != CURLE_OK || (!t->x.events && moat_now_ns() - t0 < MIN_WATCH_NS))
			t->fails++;
		return O_OK;
	}
	if (t->x.status == 200 && t->x.end == XE_OK) {
		/* cut in the middle of an event: that event comes again */
		kind_error(t, "watch: connection lost inside an event (%s); resuming from resourceVersion %s",
			   curl_easy_strerror(res), rv);
		t->fails++;
		return O_RETRY;
	}
	if (t->x.end == XE_RESYNC)
		return O_RELIST;
	if (t->x.end == XE_GONE || t->x.status == 410) {
		if (!t->x.events && moat_now_ns() - t0 < MIN_WATCH_NS)
			t->fails++;
		return O_RELIST;
	}
	t->fails++;
	return failed(t, "watch", res);
}

/* Sleeps the backoff for t->fails; false when stopping. */
static bool backoff(struct kind_rt *t)
{
	struct moat_k8s *k = t->k;
	unsigned sh = t->fails > 16 ? 16 : t->fails - 1;
	uint64_t d = (uint64_t)k->o.backoff_min_ms << sh, ms;
	struct timespec ts;

	if (d > k->o.backoff_max_ms)
		d = k->o.backoff_max_ms;
	ms = d / 2 + rnd(t) % (d / 2 + 1); /* jitter: [d/2, d] */
	if ((uint64_t)t->retry_after_ms > ms)
		ms = (uint64_t)t->retry_after_ms;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&k->lock);
	if (!strcmp(t->state, "listing") || !strcmp(t->state, "watching"))
		t->state = "backoff";
	while (!stopping(k))
		if (pthread_cond_timedwait(&k->cond, &k->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&k->lock);
	return !stopping(k);
}

static void *kind_main(void *arg)
{
	struct kind_rt *t = arg;
	bool need_list = true;

	while (!stopping(t->k)) {
		enum outcome o;

		if (t->fails && !backoff(t))
			break;
		if (resync_wanted(t)) {
			/* every object is sent again by the list: forget the
			 * versions sent (keys stay, so what is gone is deleted) */
			size_t it = 0;
			void *v;
			t->resync_seen = atomic_load(&t->k->resync_gen);
			while (hmap_next(&t->known, &it, NULL, NULL, &v))
				((struct known *)v)->rv[0] = '\0';
			need_list = true;
			t->relist = true;
		}
		if (need_list) {
			set_state(t, "listing");
			o = do_list(t);
			if (o == O_STOP)
				break;
			if (o != O_OK) {
				const char *st = t->state;
				t->fails++;
				/* a kind the server lacks or refuses does not hold up SYNCED */
				if (!strcmp(st, "not-found") || !strcmp(st, "forbidden"))
					initial_done(t);
				continue;
			}
			kind_ok(t);
			initial_done(t);
			need_list = false;
			t->relist = false;
		}
		set_state(t, "watching");
		o = do_watch(t);
		if (o == O_STOP)
			break;
		if (o == O_RELIST) {
			need_list = true;
			t->relist = true;
		}
		if (o != O_OK || t->fails) {
			pthread_mutex_lock(&t->k->lock);
			t->n_reconnects++;
			pthread_mutex_unlock(&t->k->lock);
		}
	}
	set_state(t, "stopped");
	return NULL;
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void conf_copy(struct moat_k8s_conf *d, const struct moat_k8s_conf *s)
{
	memset(d, 0, sizeof(*d));
	d->server = dup_or_null(s->server);
	d->ca_file = dup_or_null(s->ca_file);
	d->insecure = s->insecure;
	d->token = dup_or_null(s->token);
	d->token_file = dup_or_null(s->token_file);
	d->cert_file = dup_or_null(s->cert_file);
	d->key_file = dup_or_null(s->key_file);
	d->context = dup_or_null(s->context);
	if (s->ca_data) {
		d->ca_data = xcalloc(1, s->ca_len + 1);
		memcpy(d->ca_data, s->ca_data, s->ca_len);
		d->ca_len = s->ca_len;
	}
	if (s->cert_data) {
		d->cert_data = xcalloc(1, s->cert_len + 1);
		memcpy(d->cert_data, s->cert_data, s->cert_len);
		d->cert_len = s->cert_len;
	}
	if (s->key_data) {
		d->key_data = xcalloc(1, s->key_len + 1);
		memcpy(d->key_data, s->key_data, s->key_len);
		d->key_len = s->key_len;
	}
}

#define DEF(f, v)                   \
	do {                        \
		if (!o->f)          \
			o->f = (v); \
	} while (0)

static void defaults(struct moat_k8s_opts *o)
{
	DEF(page_size, 500);
	DEF(watch_timeout_s, 300);
	DEF(idle_timeout_ms, 90000);
	DEF(connect_timeout_ms, 10000);
	DEF(request_timeout_ms, 60000);
	DEF(backoff_min_ms, 250);
	DEF(backoff_max_ms, 30000);
	DEF(token_reread_ms, 60000);
	DEF(max_object_bytes, 3u << 20);
	DEF(max_page_bytes, 64u << 20);
	DEF(max_objects, 300000);
	DEF(max_queue_bytes, 256u << 20);
	if (o->backoff_max_ms < o->backoff_min_ms)
		o->backoff_max_ms = o->backoff_min_ms;
}

static void kind_free(struct kind_rt *t)
{
	size_t it = 0;
	void *v;

	while (hmap_next(&t->known, &it, NULL, NULL, &v))
		known_free(v);
	hmap_free(&t->known);
	if (t->multi)
		curl_multi_cleanup(t->multi);
	if (t->easy)
		curl_easy_cleanup(t->easy);
	free(t->x.buf);
	free((char *)t->kind.kind);
	free((char *)t->kind.group);
	free((char *)t->kind.version);
	free((char *)t->kind.resource);
	free(t->api_version);
	free(t->path);
	free(t->label);
}

static int kind_init(struct moat_k8s *k, size_t i, const struct moat_k8s_kind *s, uint64_t seed, char *err,
		     size_t errlen)
{
	struct kind_rt *t = &k->kinds[i];

	t->k = k;
	hmap_init(&t->known);
	if (!s->kind || !s->version || !s->resource) {
		snprintf(err, errlen, "kind %zu: kind, version and resource are needed", i);
		return -EINVAL;
	}
	t->kind.kind = xstrdup(s->kind);
	t->kind.group = xstrdup(s->group ? s->group : "");
	t->kind.version = xstrdup(s->version);
	t->kind.resource = xstrdup(s->resource);
	t->kind.namespaced = s->namespaced;
	t->api_version = *t->kind.group ? xasprintf("%s/%s", t->kind.group, t->kind.version) :
					  xstrdup(t->kind.version);
	t->path = *t->kind.group ? xasprintf("/apis/%s/%s", t->api_version, t->kind.resource) :
				   xasprintf("/api/%s/%s", t->kind.version, t->kind.resource);
	t->label = xasprintf("%s (%s %s)", t->kind.kind, t->api_version, t->kind.resource);
	t->state = "starting";
	t->rng = (seed ^ (0x9e3779b97f4a7c15ull * (i + 1))) | 1;
	return 0;
}

int moat_k8s_start(const struct moat_k8s_opts *opts, struct moat_k8s **ret, char *err, size_t errlen)
{
	const struct moat_k8s_kind *kinds = opts->kinds ? opts->kinds : moat_k8s_kinds;
	size_t nkinds = opts->kinds ? opts->nkinds : moat_k8s_nkinds;
	struct moat_k8s *k = NULL;
	pthread_condattr_t ca;
	uint64_t seed = 0;
	char e[MAX_MSG] = "";
	int rc = 0;

	*ret = NULL;
	if (!nkinds || nkinds > MAX_KINDS) {
		snprintf(err, errlen, "between 1 and %d kinds", MAX_KINDS);
		return -EINVAL;
	}
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		snprintf(err, errlen, "libcurl: %s", curl_easy_strerror(curl_init_rc));
		return -ENOMEM;
	}
	json_object_seed(0); /* before any thread makes a jansson object */
	k = xcalloc(1, sizeof(*k));
	k->efd = -1;
	k->o = *opts;
	defaults(&k->o);
	k->o.conf = NULL;
	k->o.kubeconfig = k->o.context = k->o.sa_dir = k->o.user_agent = NULL;
	k->o.kinds = NULL;
	if (opts->conf)
		conf_copy(&k->conf, opts->conf);
	else if (opts->in_cluster)
		rc = moat_k8s_conf_in_cluster(opts->sa_dir, &k->conf, e, sizeof(e));
	else if (opts->kubeconfig)
		rc = moat_k8s_conf_kubeconfig(opts->kubeconfig, opts->context, &k->conf, e, sizeof(e));
	else
		snprintf(e, sizeof(e), "no kubeconfig and not in-cluster");
	if (!opts->conf && (e[0] || !k->conf.server)) {
		snprintf(err, errlen, "%s", e[0] ? e : "no server");
		free(k);
		return rc ? rc : -EINVAL;
	}
	if (!k->conf.server ||
	    (strncmp(k->conf.server, "https://", 8) && strncmp(k->conf.server, "http://", 7))) {
		snprintf(err, errlen, "server must be an http(s) URL");
		rc = -EINVAL;
		goto fail;
	}
	/* a token that cannot be read at all is a configuration error */
	if (k->conf.token_file && !k->conf.token) {
		char *tok = read_token_file(k->conf.token_file, e, sizeof(e));
		if (!tok) {
			snprintf(err, errlen, "%s", e);
			rc = -ENOENT;
			goto fail;
		}
		k->token = tok;
		k->token_read_ns = moat_now_ns();
	}
	k->user_agent = xstrdup(opts->user_agent ? opts->user_agent : "moatd");
	pthread_mutex_init(&k->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&k->qcond, NULL);
	k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (k->efd < 0) {
		rc = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(-rc));
		goto fail;
	}
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = moat_now_ns();
	k->nkinds = nkinds;
	k->kinds = xcalloc(nkinds, sizeof(*k->kinds));
	for (size_t i = 0; i < nkinds; i++) {
		rc = kind_init(k, i, &kinds[i], seed, err, errlen);
		if (rc)
			goto fail;
		k->kinds[i].easy = curl_easy_init();
		k->kinds[i].multi = curl_multi_init();
		if (!k->kinds[i].easy || !k->kinds[i].multi) {
			snprintf(err, errlen, "libcurl: cannot create a handle");
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (size_t i = 0; i < nkinds; i++) {
		rc = -pthread_create(&k->kinds[i].th, NULL, kind_main, &k->kinds[i]);
		if (rc) {
			snprintf(err, errlen, "pthread_create: %s", strerror(-rc));
			goto fail;
		}
		k->kinds[i].th_started = true;
	}
	*ret = k;
	return 0;
fail:
	moat_k8s_stop(k);
	return rc;
}

void moat_k8s_stop(struct moat_k8s *k)
{
	struct qev *e, *n;

	if (!k)
		return;
	if (k->kinds) {
		pthread_mutex_lock(&k->lock);
		atomic_store(&k->stopping, true);
		pthread_cond_broadcast(&k->cond);
		pthread_cond_broadcast(&k->qcond);
		pthread_mutex_unlock(&k->lock);
		for (size_t i = 0; i < k->nkinds; i++)
			if (k->kinds[i].multi)
				curl_multi_wakeup(k->kinds[i].multi);
		for (size_t i = 0; i < k->nkinds; i++)
			if (k->kinds[i].th_started)
				pthread_join(k->kinds[i].th, NULL);
		for (size_t i = 0; i < k->nkinds; i++)
			kind_free(&k->kinds[i]);
		free(k->kinds);
	}
	for (e = k->qhead; e; e = n) {
		n = e->next;
		qev_free(e);
	}
	if (k->efd >= 0) {
		close(k->efd);
		pthread_mutex_destroy(&k->lock);
		pthread_cond_destroy(&k->cond);
		pthread_cond_destroy(&k->qcond);
	}
	if (k->token) {
		explicit_bzero(k->token, strlen(k->token));
		free(k->token);
	}
	moat_k8s_conf_free(&k->conf);
	free(k->user_agent);
	free(k);
}

void moat_k8s_resync(struct moat_k8s *k)
{
	atomic_fetch_add(&k->resync_gen, 1);
	for (size_t i = 0; i < k->nkinds; i++)
		if (k->kinds[i].multi)
			curl_multi_wakeup(k->kinds[i].multi);
}

int moat_k8s_fd(const struct moat_k8s *k)
{
	return k->efd;
}

int moat_k8s_drain(struct moat_k8s *k, moat_k8s_event_fn fn, void *arg)
{
	struct qev *e, *n;
	uint64_t v;
	int cnt = 0;

	pthread_mutex_lock(&k->lock);
	if (read(k->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing was signalled */
	}
	e = k->qhead;
	k->qhead = k->qtail = NULL;
	k->qn = 0;
	k->qbytes = 0;
	pthread_cond_broadcast(&k->qcond);
	pthread_mutex_unlock(&k->lock);
	for (; e; e = n) {
		struct moat_k8s_event ev = {
			.type = e->type, .kind = e->kind, .key = e->key, .obj = e->obj, .msg = e->msg
		};
		n = e->next;
		fn(arg, &ev);
		qev_free(e);
		cnt++;
	}
	pthread_mutex_lock(&k->lock);
	k->delivered += (uint64_t)cnt;
	pthread_mutex_unlock(&k->lock);
	return cnt;
}

bool moat_k8s_synced(const struct moat_k8s *k)
{
	bool s;

	pthread_mutex_lock(&((struct moat_k8s *)k)->lock);
	s = k->synced;
	pthread_mutex_unlock(&((struct moat_k8s *)k)->lock);
	return s;
}

json_t *moat_k8s_status(const struct moat_k8s *kc)
{
	struct moat_k8s *k = (struct moat_k8s *)kc;
	json_t *kinds = json_array(), *st;
	const char *auth = k->conf.cert_data || k->conf.cert_file ? "client-certificate" :
			   k->conf.token || k->conf.token_file    ? "token" :
								    "none";

	pthread_mutex_lock(&k->lock);
	for (size_t i = 0; i < k->nkinds; i++) {
		struct kind_rt *t = &k->kinds[i];
		json_array_append_new(
			kinds,
			json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s?,s:I}", "kind",
				  t->kind.kind, "resource", t->kind.resource, "apiVersion", t->api_version,
				  "state", t->state, "resourceVersion", t->rv, "objects",
				  (json_int_t)t->nobjects, "events", (json_int_t)t->n_events, "lists",
				  (json_int_t)t->n_lists, "relists", (json_int_t)t->n_relists, "reconnects",
				  (json_int_t)t->n_reconnects, "errors", (json_int_t)t->n_errors, "rejected",
				  (json_int_t)t->n_rejected, "last_error",
				  t->last_error[0] ? t->last_error : NULL, "last_error_time",
				  (json_int_t)t->last_error_time));
	}
	st = json_pack("{s:s,s:s?,s:s,s:b,s:I,s:I,s:I,s:o}", "server", k->conf.server, "context",
		       k->conf.context, "auth", auth, "synced", k->synced, "queued", (json_int_t)k->qn,
		       "queued_bytes", (json_int_t)k->qbytes, "delivered", (json_int_t)k->delivered, "kinds",
		       kinds);
	pthread_mutex_unlock(&k->lock);
	return st;
}

/* ---- test entry points (k8s.h) ---------------------------------------------------------------- */

int moat_k8s_test_new(const struct moat_k8s_opts *opts, struct moat_k8s **ret)
{
	const struct moat_k8s_kind *kinds = opts->kinds ? opts->kinds : moat_k8s_kinds;
	size_t nkinds = opts->kinds ? opts->nkinds : moat_k8s_nkinds;
	struct moat_k8s *k;
	char err[MAX_MSG];
	int rc;

	*ret = NULL;
	if (!nkinds || nkinds > MAX_KINDS)
		return -EINVAL;
	k = xcalloc(1, sizeof(*k));
	k->o = *opts;
	defaults(&k->o);
	k->o.conf = NULL;
	k->o.kubeconfig = k->o.context = k->o.sa_dir = k->o.user_agent = NULL;
	k->o.kinds = NULL;
	k->conf.server = xstrdup("http://test.invalid");
	k->user_agent = xstrdup("moatd");
	pthread_mutex_init(&k->lock, NULL);
	pthread_cond_init(&k->cond, NULL);
	pthread_cond_init(&k->qcond, NULL);
	k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (k->efd < 0) {
		rc = -errno;
		pthread_mutex_destroy(&k->lock);
		pthread_cond_destroy(&k->cond);
		pthread_cond_destroy(&k->qcond);
		moat_k8s_stop(k);
		return rc;
	}
	k->nkinds = nkinds;
	k->kinds = xcalloc(nkinds, sizeof(*k->kinds));
	for (size_t i = 0; i < nkinds; i++) {
		rc = kind_init(k, i, &kinds[i], 1, err, sizeof(err));
		if (rc) {
			moat_k8s_stop(k);
			return rc;
		}
	}
	*ret = k;
	return 0;
}

int moat_k8s_test_feed(struct moat_k8s *k, size_t kind, bool list, const void *data, size_t len, size_t chunk)
{
	struct kind_rt *t;
	const char *p = data;
	char *rv = NULL, *cont = NULL;
	enum outcome o = O_OK;
	bool more;
	int rc = 0;

	if (kind >= k->nkinds)
		return -EINVAL;
	t = &k->kinds[kind];
	if (!chunk)
		chunk = len ? len : 1;
	t->x.watch = !list;
	t->x.max = list ? k->o.max_page_bytes : k->o.max_object_bytes;
	t->x.len = 0;
	t->x.status = 200;
	t->x.end = XE_OK;
	t->x.msg[0] = 0;
	t->x.events = 0;
	if (list)
		t->mark++;
	do {
		/* a list: pages end at NUL bytes */
		const char *nul = list ? memchr(p, 0, len) : NULL;
		size_t seg = nul ? (size_t)(nul - p) : len;

		more = nul != NULL;
		t->x.len = 0;
		if (t->x.buf)
			t->x.buf[0] = 0;
		for (size_t off = 0; off < seg && t->x.end == XE_OK;) {
			size_t n = seg - off < chunk ? seg - off : chunk;
			if (on_write((char *)p + off, 1, n, t) != n)
				break;
			off += n;
		}
		if (t->x.end != XE_OK) {
			o = failed(t, list ? "list" : "watch", CURLE_OK);
			rc = t->x.end == XE_GONE ? -ESTALE : -EPROTO;
			goto out;
		}
		if (!list)
			break;
		if (!t->x.buf)
			xbuf_append(t, "", 0);
		o = list_page(t, &rv, &cont);
		if (o != O_OK) {
			rc = -EPROTO;
			goto out;
		}
		p += seg + (more ? 1 : 0);
		len -= seg + (more ? 1 : 0);
	} while (more && cont);
	if (list) {
		if (cont) {
			rc = -EPIPE; /* the next page never came */
			goto out;
		}
		o = list_complete(t, rv);
	} else if (t->x.len) {
		kind_error(t, "watch: connection lost inside an event");
		rc = -EPIPE;
	}
out:
	free(rv);
	free(cont);
	if (o == O_STOP && !rc)
		rc = -ECANCELED;
	return rc;
}
