// SPDX-License-Identifier: Apache-2.0
/* moatd: the node daemon.  A linear start-up, then one event loop:
 *   open (or adopt) the pinned datapath -> load the manifests -> resolve
 *   local pod interfaces -> compile one full generation -> attach -> serve
 * then react to manifest changes (inotify), link/route changes (netlink),
 * signals and a periodic timer.  SIGTERM and SIGINT leave enforcement in
 * place (programs and maps stay pinned); `moatctl uninstall` removes it. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/timerfd.h>
#include <time.h>

#include <sys/prctl.h>
#include <sys/capability.h>
#include "api.h"
#include "archive.h"
#include "auth.h"
#include "config.h"
#include "daemon.h"
#include "events.h"
#include "k8s_source.h"
#include "hwplan.h"
#include "log.h"
#include "pfmgr.h"
#include "srcdir.h"
#include "util.h"

void moatd_error(struct moatd *d, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	if (!msg)
		return;
	pr_err("%s", msg);
	if (d->nerrors == MOAT_RECENT_ERRORS) {
		free(d->errors[0]);
		memmove(d->errors, d->errors + 1, (MOAT_RECENT_ERRORS - 1) * sizeof(char *));
		d->nerrors--;
	}
	d->errors[d->nerrors++] = msg;
}

static void archive_log(void *arg, int level, const char *msg)
{
	(void)arg;
	moat_log(level, "%s", msg);
}

static void src_err(void *arg, const char *msg)
{
	moatd_error(arg, "%s", msg);
}

static void record_latency(struct moatd *d, double s)
{
	static const double bounds[12] = {
		0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 5
	};

	for (int i = 0; i < 12; i++)
		if (s <= bounds[i]) {
			d->lat_bucket[i]++;
			break;
		}
	d->lat_sum += s;
	d->applies++;
}

int moatd_apply(struct moatd *d, bool full)
{
	struct moat_flush_stats st;
	struct moat_tx *tx;
	char err[256];
	uint64_t t0 = moat_now_ns(), t1;
	__u32 gen = 0;
	int rc;

	if (!full && !moat_compiler_dirty(d->comp)) {
		/* nothing for the datapath, but files may have been read (one
		 * removed after its change was refused, a change that alters no
		 * object): they are settled as they are */
		if (d->src)
			moat_srcdir_applied(d->src, true, NULL);
		return 0;
	}
	/* Kubernetes mode before the first complete list: what is pinned stays */
	if (d->k8s_hold)
		return 0;
	rc = moat_tx_begin(d->dp, full, &tx);
	if (rc)
		return rc;
	rc = moat_compiler_flush(d->comp, tx, &st, err, sizeof(err));
	t1 = moat_now_ns();
	if (rc) {
		moat_tx_abort(tx);
		moat_compiler_abort(d->comp);
		d->apply_errors++;
		d->last.error = rc;
		snprintf(d->last.message, sizeof(d->last.message),
			 "change refused, generation %u stays enforced: %s", moat_dp_generation(d->dp), err);
		moatd_error(d, "%s", d->last.message);
		if (d->src)
			moat_srcdir_applied(d->src, false, d->last.message);
		/* the compiler is back at the enforced state: settle it */
		if (moat_compiler_dirty(d->comp) && !moat_tx_begin(d->dp, false, &tx)) {
			if (moat_compiler_flush(d->comp, tx, &st, err, sizeof(err))) {
				moat_tx_abort(tx);
				moat_compiler_abort(d->comp);
			} else if (!st.ops) {
				/* nothing to write: the generation named above stays */
				moat_tx_abort(tx);
				moat_compiler_commit(d->comp);
			} else if (moat_tx_commit(tx, &gen)) {
				moat_compiler_abort(d->comp);
			} else {
				moat_compiler_commit(d->comp);
			}
		}
		return -ENOSPC;
	}
	if (!st.ops && !full) {
		moat_tx_abort(tx);
		moat_compiler_commit(d->comp);
		if (d->src)
			moat_srcdir_applied(d->src, true, NULL);
		return 0;
	}
	moat_pfmgr_before(d->pfmgr, d->comp); /* pre-filter: first half (issue 6) */
	rc = moat_tx_commit(tx, &gen);
	if (rc) {
		moat_compiler_abort(d->comp);
		moat_pfmgr_resync(d->pfmgr, d->comp);
		d->apply_errors++;
		d->last.error = rc;
		snprintf(d->last.message, sizeof(d->last.message),
			 "datapath update failed (%s), generation %u stays enforced", strerror(-rc),
			 moat_dp_generation(d->dp));
		moatd_error(d, "%s", d->last.message);
		if (d->src)
			moat_srcdir_applied(d->src, false, d->last.message);
		/* not the input's fault: tried again, from the files or with
		 * every object sent again by the API server (the compiler went
		 * back to what is enforced) */
		if (full || !d->retry)
			d->retry = full ? 2 : 1;
		d->retry_backoff_ms = d->retry_backoff_ms ? d->retry_backoff_ms * 2 : 1000;
		if (d->retry_backoff_ms > 30000)
			d->retry_backoff_ms = 30000;
		d->retry_at_ns = moat_now_ns() + d->retry_backoff_ms * 1000000ull;
		return rc;
	}
	moat_compiler_commit(d->comp);
	d->retry_backoff_ms = 0;
	d->k8s_retry_full = false;
	moat_pfmgr_after(d->pfmgr, d->dp); /* pre-filter: second half */
	d->names_dirty = true;
	if (d->src)
		moat_srcdir_applied(d->src, true, NULL);
	d->last.when_ns = (uint64_t)time(NULL) * 1000000000ull;
	d->last.compile_ns = t1 - t0;
	d->last.commit_ns = moat_now_ns() - t1;
	d->last.ops = st.ops;
	d->last.generation = gen;
	d->last.error = 0;
	snprintf(d->last.message, sizeof(d->last.message),
		 "generation %u live: %zu changes, %u subjects compiled, %u identities, "
		 "%u decision entries",
		 gen, st.ops, st.subjects_compiled, st.identities, st.entries[MOAT_T_POL]);
	record_latency(d, (double)(moat_now_ns() - t0) / 1e9);
	pr_info("%s (compile %.2f ms, commit %.2f ms)", d->last.message, d->last.compile_ns / 1e6,
		d->last.commit_ns / 1e6);
	return 0;
}

/* Expired conntrack entries: removed here so the LRU keeps room. */
struct gc_ctx {
	__u64 now;
	const struct moat_config *cfg;
	uint64_t deleted;
	struct moat_events *events;
};

static int gc_cb(const struct moat_ct_view *v, void *arg)
{
	struct gc_ctx *g = arg;
	const struct moat_ct_entry *e = &v->e;
	__u64 to;
	bool closing = (e->flags & MOAT_CT_RST) ||
		       ((e->flags & MOAT_CT_FIN_INIT) && (e->flags & MOAT_CT_FIN_RESP));

	if (v->proto == IPPROTO_TCP)
		to = closing                          ? g->cfg->ct_tcp_close_timeout_s :
		     !(e->flags & MOAT_CT_SEEN_REPLY) ? g->cfg->ct_syn_timeout_s :
							g->cfg->ct_tcp_timeout_s;
	else
		to = g->cfg->ct_other_timeout_s;
	if (g->now > e->last_seen_ns && g->now - e->last_seen_ns > to * 1000000000ull) {
		g->deleted++;
		if (g->events)
			moat_events_flow_expired(g->events, v); /* the flow's end record */
		return 1;
	}
	return 0;
}

static void ct_gc(struct moatd *d)
{
	struct gc_ctx g = { .now = moat_ktime_coarse_ns(),
			    .cfg = moat_dp_config(d->dp),
			    .events = d->events };

	moat_dp_ct_walk(d->dp, gc_cb, &g);
	d->ct_gc_deleted += g.deleted;
	if (g.deleted)
		pr_debug("conntrack: %llu expired entries removed", (unsigned long long)g.deleted);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: moatd --node NAME (--manifests DIR | --kubeconfig FILE | --in-cluster) [options]\n"
		"  --node NAME          this node (pods with spec.nodeName NAME are enforced here)\n"
		"  --manifests DIR      standalone: Kubernetes objects as JSON/YAML files, watched\n"
		"  --kubeconfig FILE    list and watch the Kubernetes API (current-context of FILE)\n"
		"  --in-cluster         list and watch the Kubernetes API as the pod's service account\n"
		"  --pin-dir DIR        bpffs directory (default /sys/fs/bpf/moat/NODE)\n"
		"  --socket PATH        control API socket (default /run/moat/NODE.sock)\n"
		"  --socket-mode MODE   octal permissions of the socket (default 0660)\n"
		"  --mode MODE          attach mode: auto|hw|native|generic (default auto)\n"
		"  --netns-dirs LIST    where pod netns files live (default /run/netns:/var/run/netns)\n"
		"  --uplink IFNAME      also judge traffic to local pods on this interface\n"
		"  --veth-prefix LIST   enforce on pod veths with these name prefixes as soon as they\n"
		"                       appear, before the pod is known (fail closed); e.g. cali,lxc\n"
		"  --no-local-node      do not exempt traffic from the pod's own node\n"
		"  --no-revoke          keep established flows that a new policy denies\n"
		"  --observe-only       judge and count, never drop\n"
		"  --max-policy N       decision table capacity\n"
		"  --reset              discard pinned state of another ABI version instead of\n"
		"                       upgrading it in place\n"
		"  --config FILE        settings file (YAML/JSON); flags override it; SIGHUP reloads it\n"
		"  --keep-caps          do not drop capabilities after start-up\n"
		"  --tokens FILE        API tokens -> users, roles, namespaces (uid 0 on the socket is admin)\n"
		"  --audit-log FILE     append every change made through the API (JSON lines)\n"
		"  --api-port N --tls-cert PEM --tls-key PEM   also serve the API over HTTPS\n"
		"  --hw-profiles DIR    NIC profiles (default /usr/share/moat/hw, else the tree's hw/)\n"
		"  --prefilter-shadow   keep a hardware pre-filter's tables in a host copy that no\n"
		"                       packet reaches (what an offload NIC would hold; docs/offload.md)\n"
		"  --log-level LEVEL    error|warn|info|debug|verbose\n" MOAT_ARCHIVE_USAGE);
}

static int parse_args(int argc, char **argv, struct moatd_config *c)
{
	enum {
		O_NODE = 1,
		O_MAN,
		O_PIN,
		O_SOCK,
		O_SMODE,
		O_MODE,
		O_NETNS,
		O_UPLINK,
		O_VETH,
		O_NOLOCAL,
		O_NOREVOKE,
		O_OBSERVE,
		O_MAXPOL,
		O_RESET,
		O_LOG,
		O_HELP,
		O_CONFIG,
		O_KUBECONFIG,
		O_KEEPCAPS,
		O_TOKENS,
		O_AUDIT,
		O_PORT,
		O_CERT,
		O_KEY,
		O_INCLUSTER,
		O_PFSHADOW,
		O_HWPROF,
		O_ARCHIVE /* the archive's flags: O_ARCHIVE .. + MOAT_ARCHIVE_NOPTS - 1 */
	};
	static const struct option opts[] = { { "config", required_argument, NULL, O_CONFIG },
					      { "node", required_argument, NULL, O_NODE },
					      { "manifests", required_argument, NULL, O_MAN },
					      { "kubeconfig", required_argument, NULL, O_KUBECONFIG },
					      { "in-cluster", no_argument, NULL, O_INCLUSTER },
					      { "pin-dir", required_argument, NULL, O_PIN },
					      { "socket", required_argument, NULL, O_SOCK },
					      { "socket-mode", required_argument, NULL, O_SMODE },
					      { "mode", required_argument, NULL, O_MODE },
					      { "netns-dirs", required_argument, NULL, O_NETNS },
					      { "uplink", required_argument, NULL, O_UPLINK },
					      { "veth-prefix", required_argument, NULL, O_VETH },
					      { "no-local-node", no_argument, NULL, O_NOLOCAL },
					      { "no-revoke", no_argument, NULL, O_NOREVOKE },
					      { "observe-only", no_argument, NULL, O_OBSERVE },
					      { "max-policy", required_argument, NULL, O_MAXPOL },
					      { "reset", no_argument, NULL, O_RESET },
					      { "keep-caps", no_argument, NULL, O_KEEPCAPS },
					      { "tokens", required_argument, NULL, O_TOKENS },
					      { "audit-log", required_argument, NULL, O_AUDIT },
					      { "api-port", required_argument, NULL, O_PORT },
					      { "tls-cert", required_argument, NULL, O_CERT },
					      { "tls-key", required_argument, NULL, O_KEY },
					      { "log-level", required_argument, NULL, O_LOG },
					      { "prefilter-shadow", no_argument, NULL, O_PFSHADOW },
					      { "hw-profiles", required_argument, NULL, O_HWPROF },
					      { "help", no_argument, NULL, O_HELP },
					      MOAT_ARCHIVE_OPTIONS(O_ARCHIVE),
					      { 0 } };
	int o, lvl;
	char err[512];
	bool flag_man = false, flag_kube = false;

	moatd_config_defaults(c);
	/* first pass: the config file, so that flags override it */
	opterr = 0;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1)
		if (o == O_CONFIG)
			c->config_file = xstrdup(optarg);
	if (c->config_file && moatd_config_load(c->config_file, c, false, err, sizeof(err))) {
		fprintf(stderr, "moatd: %s\n", err);
		return -EINVAL;
	}
	moat_log_level = c->log_level;
	opterr = 1;
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case O_CONFIG:
			break;
		case O_NODE:
			free(c->node);
			c->node = xstrdup(optarg);
			break;
		case O_MAN:
			free(c->manifests);
			c->manifests = xstrdup(optarg);
			flag_man = true;
			break;
		case O_KUBECONFIG:
			free(c->kubeconfig);
			c->kubeconfig = xstrdup(optarg);
			c->in_cluster = false;
			flag_kube = true;
			break;
		case O_INCLUSTER:
			free(c->kubeconfig);
			c->kubeconfig = NULL;
			c->in_cluster = true;
			flag_kube = true;
			break;
		case O_PIN:
			free(c->pin_dir);
			c->pin_dir = xstrdup(optarg);
			break;
		case O_SOCK:
			free(c->socket);
			c->socket = xstrdup(optarg);
			break;
		case O_SMODE:
			c->socket_mode = (unsigned)strtoul(optarg, NULL, 8);
			break;
		case O_MODE:
			if (moat_mode_parse(optarg, &c->mode)) {
				fprintf(stderr, "moatd: --mode: %s is not auto, hw, native or generic\n",
					optarg);
				return -EINVAL;
			}
			break;
		case O_NETNS:
			free(c->netns_dirs);
			c->netns_dirs = xstrdup(optarg);
			break;
		case O_UPLINK:
			free(c->uplink);
			c->uplink = xstrdup(optarg);
			break;
		case O_VETH:
			free(c->veth_prefixes);
			c->veth_prefixes = xstrdup(optarg);
			break;
		case O_NOLOCAL:
			c->allow_local_node = false;
			break;
		case O_NOREVOKE:
			c->revoke = false;
			break;
		case O_OBSERVE:
			c->enforce = false;
			break;
		case O_MAXPOL:
			c->max_policy = (__u32)strtoul(optarg, NULL, 10);
			break;
		case O_RESET:
			c->reset = true;
			break;
		case O_KEEPCAPS:
			c->keep_caps = true;
			break;
		case O_TOKENS:
			free(c->tokens_file);
			c->tokens_file = xstrdup(optarg);
			break;
		case O_AUDIT:
			free(c->audit_log);
			c->audit_log = xstrdup(optarg);
			break;
		case O_PORT:
			c->api_port = (__u32)strtoul(optarg, NULL, 10);
			break;
		case O_CERT:
			free(c->tls_cert);
			c->tls_cert = xstrdup(optarg);
			break;
		case O_KEY:
			free(c->tls_key);
			c->tls_key = xstrdup(optarg);
			break;
		case O_PFSHADOW:
			c->prefilter_shadow = true;
			break;
		case O_HWPROF:
			free(c->hw_profiles);
			c->hw_profiles = xstrdup(optarg);
			break;
		case O_LOG:
			lvl = moat_log_parse_level(optarg);
			if (lvl < 0) {
				fprintf(stderr, "moatd: --log-level: unknown level %s\n", optarg);
				return -EINVAL;
			}
			c->log_level = lvl;
			moat_log_level = lvl;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		case O_ARCHIVE ... O_ARCHIVE + MOAT_ARCHIVE_NOPTS - 1:
			if (moat_archive_flag(c, o - O_ARCHIVE, optarg, err, sizeof(err))) {
				fprintf(stderr, "moatd: %s\n", err);
				return -EINVAL;
			}
			break;
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (!c->node) {
		char host[256];
		if (gethostname(host, sizeof(host)))
			return -errno;
		c->node = xstrdup(host);
	}
	/* one source: a flag picks it over the config file's */
	if (flag_man && flag_kube) {
		fprintf(stderr, "moatd: --manifests and --kubeconfig/--in-cluster exclude each other\n");
		return -EINVAL;
	}
	if (flag_man) {
		free(c->kubeconfig);
		c->kubeconfig = NULL;
		c->in_cluster = false;
	} else if (flag_kube) {
		free(c->manifests);
		c->manifests = NULL;
	}
	if (!!c->manifests + !!c->kubeconfig + c->in_cluster != 1) {
		fprintf(stderr, "moatd: exactly one of --manifests DIR, --kubeconfig FILE, --in-cluster "
				"(or manifests, kubeconfig, inCluster in the config file)\n");
		return -EINVAL;
	}
	if (!c->pin_dir)
		c->pin_dir = xasprintf("%s/%s", MOAT_PIN_ROOT, c->node);
	if (!c->socket)
		c->socket = xasprintf("/run/moat/%s.sock", c->node);
	return 0;
}

/* After start-up moatd needs only: CAP_BPF (maps), CAP_NET_ADMIN (attach,
 * netlink), CAP_SYS_ADMIN (entering pod network namespaces; pinning),
 * CAP_PERFMON (event buffers) and CAP_DAC_READ_SEARCH (manifests, netns
 * files).  Everything else leaves the effective, permitted and bounding
 * sets, and no_new_privs stops regaining anything through exec. */
static int drop_privileges(void)
{
	static const cap_value_t keep[] = { CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON,
					    CAP_DAC_READ_SEARCH };
	cap_t caps = cap_init();
	int err = 0;

	if (!caps)
		return -errno;
	for (cap_value_t v = 0; v <= CAP_LAST_CAP; v++) {
		bool k = false;
		for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
			k |= keep[i] == v;
		if (!k && prctl(PR_CAPBSET_DROP, v, 0, 0, 0) && errno != EINVAL) {
			err = -errno;
			goto out;
		}
	}
	if (cap_set_flag(caps, CAP_EFFECTIVE, sizeof(keep) / sizeof(keep[0]), keep, CAP_SET) ||
	    cap_set_flag(caps, CAP_PERMITTED, sizeof(keep) / sizeof(keep[0]), keep, CAP_SET) ||
	    cap_set_proc(caps)) {
		err = -errno;
		goto out;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		err = -errno;
out:
	cap_free(caps);
	return err;
}

static void apply_config(struct moatd *d)
{
	struct moat_config *cfg = moat_dp_config(d->dp);
	__u32 f = cfg->flags;

	/* single 4-byte stores into the mmapped config: each is atomic */
	__atomic_store_n(&cfg->ct_tcp_timeout_s, d->cfg.ct_tcp_s, __ATOMIC_RELAXED);
	__atomic_store_n(&cfg->ct_tcp_close_timeout_s, d->cfg.ct_close_s, __ATOMIC_RELAXED);
	__atomic_store_n(&cfg->ct_other_timeout_s, d->cfg.ct_other_s, __ATOMIC_RELAXED);
	__atomic_store_n(&cfg->ct_syn_timeout_s, d->cfg.ct_syn_s, __ATOMIC_RELAXED);
	__atomic_store_n(&cfg->sample_every, d->cfg.sample_every, __ATOMIC_RELAXED);
	__atomic_store_n(&cfg->deny_events_per_s, d->cfg.deny_rate, __ATOMIC_RELAXED);
	__atomic_store_n(&cfg->deny_events_burst, d->cfg.deny_burst, __ATOMIC_RELAXED);
	__atomic_store_n(&cfg->snaplen, d->cfg.snaplen, __ATOMIC_RELAXED);

	f = d->cfg.revoke ? f | MOAT_CFG_REVOKE_ESTABLISHED : f & ~MOAT_CFG_REVOKE_ESTABLISHED;
	f = d->cfg.allow_local_node ? f | MOAT_CFG_ALLOW_LOCAL_NODE : f & ~MOAT_CFG_ALLOW_LOCAL_NODE;
	f = d->cfg.enforce ? f | MOAT_CFG_ENFORCE : f & ~MOAT_CFG_ENFORCE;
	__atomic_store_n(&cfg->flags, f, __ATOMIC_RELEASE);
	if (d->comp)
		moat_compiler_set_allow_local_node(d->comp, d->cfg.allow_local_node);
	{
		struct moat_pfmgr_opts po = { .enforce = d->cfg.enforce,
					      .revoke = d->cfg.revoke,
					      .sample_shift = 6 };
		moat_pfmgr_configure(d->pfmgr, &po, d->comp);
		moat_hwplan_set_prefilter(d->hwplan, d->cfg.revoke);
	}
}

static int names_pod_cb(const struct moat_endpoint_view *v, void *arg)
{
	if (!v->host_network)
		for (size_t i = 0; i < v->nips; i++)
			moat_names_add_pod(arg, &v->ips[i], v->ns, v->name);
	return 0;
}

static int names_id_cb(const struct moat_ident_view *v, void *arg)
{
	moat_names_add_identity(arg, v->id, v->ns ? v->ns : v->node);
	return 0;
}

/* Who is who, for the event consumer: rebuilt at most once a second. */
static void names_refresh(struct moatd *d)
{
	struct moat_names *n;

	if (!d->events || !d->names_dirty)
		return;
	n = moat_names_new();
	moat_compiler_endpoints(d->comp, names_pod_cb, n);
	moat_compiler_identities(d->comp, names_id_cb, n);
	moat_events_set_names(d->events, n);
	d->names_dirty = false;
}

/* Attaches every interface.  During an upgrade across ABI versions the
 * links still run the old programs on the old state: they switch to the new
 * programs only once the new maps hold a committed generation, with
 * conntrack carried over just before and again just after the switch (the
 * flows the old programs opened meanwhile).  Then the old state goes. */
static int attach_interfaces(struct moatd *d)
{
	__u32 old_abi = moat_dp_upgrading(d->dp);
	__u64 before = 0, after = 0;
	int rc, cerr, ferr;

	if (!old_abi)
		return moat_ifaces_attach(d->ifaces, d->comp);
	if (!moat_dp_generation(d->dp)) {
		if (!d->upgrade_held)
			pr_warn("upgrade from ABI %u held: no generation committed yet; the old datapath "
				"keeps enforcing",
				old_abi);
		d->upgrade_held = true;
		return -EAGAIN;
	}
	cerr = moat_dp_upgrade_carry(d->dp, &before);
	rc = moat_ifaces_attach(d->ifaces, d->comp);
	if (!cerr)
		cerr = moat_dp_upgrade_carry(d->dp, &after);
	if (!cerr)
		pr_info("upgraded in place from ABI %u to %u: links switched to the new programs; "
			"%llu conntrack entries carried over (%llu before the switch, %llu after), "
			"each judged again on its next packet",
			old_abi, MOAT_ABI_VERSION, (unsigned long long)(before + after),
			(unsigned long long)before, (unsigned long long)after);
	else if (cerr == -EPROTOTYPE)
		pr_warn("upgraded in place from ABI %u to %u: links switched to the new programs; "
			"conntrack not carried over (its layout differs): open flows are judged again as "
			"new ones, and replies of flows allowed in one direction only are dropped",
			old_abi, MOAT_ABI_VERSION);
	else
		pr_warn("upgraded in place from ABI %u to %u: links switched to the new programs; "
			"carrying conntrack over failed after %llu entries: %s",
			old_abi, MOAT_ABI_VERSION, (unsigned long long)(before + after), strerror(-cerr));
	ferr = moat_dp_upgrade_finish(d->dp);
	if (ferr)
		pr_warn("could not remove the old ABI's pins: %s (moatctl uninstall PIN_DIR/abi%u "
			"removes them)",
			strerror(-ferr), old_abi);
	d->upgrade_held = false;
	return rc;
}

static void sync_interfaces(struct moatd *d)
{
	int rc;

	if (moat_ifaces_resolve(d->ifaces, d->comp) > 0)
		moatd_apply(d, false);
	rc = attach_interfaces(d);
	if (rc == -EAGAIN)
		pr_debug("some interfaces are not attached yet; retrying");
}

/* Pins removed from outside (the pin directory deleted): the maps and the
 * links moatd holds are pinned again, so that enforcement outlives the
 * daemon as before; every interface is attached again (the links it held
 * were never detached; ones detached meanwhile are created anew). */
static void check_pins(struct moatd *d)
{
	int n = moat_dp_repin(d->dp);

	if (n < 0) {
		if (n != d->repin_error)
			moatd_error(d,
				    "pin directory %s: cannot pin the datapath again: %s "
				    "(enforcement goes on while moatd runs; it would not survive a stop)",
				    d->cfg.pin_dir, strerror(-n));
		d->repin_error = n;
		return;
	}
	d->repin_error = 0;
	if (!n)
		return;
	d->pins_restored += (uint64_t)n;
	moatd_error(d,
		    "pin directory %s: %d pins were removed from outside; pinned again "
		    "(enforcement went on: moatd holds its maps and links)",
		    d->cfg.pin_dir, n);
	moat_ifaces_reattach(d->ifaces);
	sync_interfaces(d);
}

static volatile sig_atomic_t stop;

static char *slurp(const char *path)
{
	FILE *f = path ? fopen(path, "rb") : NULL;
	char *b = NULL;
	size_t n = 0;

	if (!f)
		return NULL;
	b = xcalloc(1, 1 << 16);
	n = fread(b, 1, (1 << 16) - 1, f);
	fclose(f);
	b[n] = 0;
	return b;
}

int main(int argc, char **argv)
{
	struct moatd d;
	struct moat_dp_opts dpo = { .events = true };
	struct moat_compiler_opts co = { 0 };
	struct moat_ifaces_opts io = { 0 };
	struct epoll_event ev, evs[8];
	struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	sigset_t mask;
	int ep = -1, sfd = -1, tfd = -1, err, exitcode = 1;
	uint64_t last_gc = 0;
	char *sockdir;

	/* before any thread exists: every thread inherits the mask, so the
	 * signals reach only the signalfd of the main loop */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* a descriptor is held for every attached link (two per pod): as many
	 * as allowed (the API polls, descriptors above FD_SETSIZE are fine) */
	{
		struct rlimit rl;
		if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	memset(&d, 0, sizeof(d));
	pthread_mutex_init(&d.lock, NULL);
	d.start_ns = moat_now_ns();
	if (parse_args(argc, argv, &d.cfg)) {
		moatd_config_free(&d.cfg);
		return 2;
	}
	moat_log_hook_libbpf();

	/* the datapath first: an adopted one keeps enforcing meanwhile */
	{
		struct statfs sfs;
		if (statfs("/sys/fs/bpf", &sfs) || sfs.f_type != 0xcafe4a11 /* BPF_FS_MAGIC */)
			pr_info("no bpf filesystem at /sys/fs/bpf: mounting one");
	}
	dpo.pin_dir = d.cfg.pin_dir;
	dpo.reset = d.cfg.reset;
	dpo.max_policy = d.cfg.max_policy;
	err = moat_dp_open(&dpo, &d.dp, &d.adopted);
	if (err == -EPROTO)
		pr_err("pinned state under %s is not moat's or is incomplete; "
		       "restart with --reset to replace it",
		       d.cfg.pin_dir);
	else if (err == -EMEDIUMTYPE)
		pr_err("pin directory %s is not on a bpf filesystem: mount one there "
		       "(mount -t bpf bpf DIR) or choose a --pin-dir under /sys/fs/bpf",
		       d.cfg.pin_dir);
	else if (err)
		pr_err("could not load the datapath: %s", strerror(-err));
	if (err) {
		err = 0; /* said above */
		goto out;
	}
	pr_info("datapath %s under %s (ABI %d, generation %u)", d.adopted ? "adopted" : "created",
		d.cfg.pin_dir, MOAT_ABI_VERSION, moat_dp_generation(d.dp));
	if (moat_dp_upgrading(d.dp))
		pr_info("pinned state of ABI %u set aside: its programs keep enforcing until the first "
			"generation is built, then every link switches in place",
			moat_dp_upgrading(d.dp));
	apply_config(&d);

	co.node = d.cfg.node;
	for (int t = 0; t < MOAT_T_MAX; t++)
		co.cap[t] = moat_dp_tbl_capacity(d.dp, t);
	co.cap[MOAT_T_SUBJ] = moat_dp_tbl_capacity(d.dp, MOAT_T_SUBJ);
	co.max_identities = moat_dp_tbl_capacity(d.dp, MOAT_T_SUBJ);
	err = moat_compiler_new(&co, &d.comp);
	if (err)
		goto out;
	moat_compiler_set_allow_local_node(d.comp, d.cfg.allow_local_node);
	{
		struct moat_pfmgr_opts po = { .enforce = d.cfg.enforce,
					      .revoke = d.cfg.revoke,
					      .sample_shift = 6 };
		moat_pfmgr_new(&po, &d.pfmgr);
		if (d.cfg.prefilter_shadow) {
			struct moat_pf *pf;
			char perr[256];
			if (moat_pf_open(NULL, &pf, perr, sizeof(perr)) ||
			    moat_pfmgr_take(d.pfmgr, pf, "(shadow)", d.comp, perr, sizeof(perr)))
				pr_warn("--prefilter-shadow: %s", perr);
		}
	}

	io.mode = d.cfg.mode;
	io.netns_dirs = d.cfg.netns_dirs;
	io.uplink = d.cfg.uplink;
	io.veth_prefixes = d.cfg.veth_prefixes;
	{ /* attach plans from NIC profiles and probes (issue 6) */
		char *hwdir = d.cfg.hw_profiles ? xstrdup(d.cfg.hw_profiles) : moat_hwplan_default_dir();
		moat_hwplan_new(hwdir, d.pfmgr, d.cfg.revoke, &d.hwplan);
		free(hwdir);
		io.hwplan = d.hwplan;
	}
	err = moat_ifaces_new(d.dp, &io, &d.ifaces);
	if (err) {
		pr_err("could not open netlink: %s", strerror(-err));
		goto out;
	}

	if (d.cfg.manifests) {
		err = moat_srcdir_open(d.cfg.manifests, &d.src);
		if (err) {
			pr_err("could not watch %s: %s", d.cfg.manifests, strerror(-err));
			goto out;
		}
		moat_srcdir_scan(d.src, d.comp, src_err, &d);
		moat_ifaces_resolve(d.ifaces, d.comp);
		/* one full generation: clears whatever an older daemon left that the
		 * manifests no longer say, in a single switch */
		err = moatd_apply(&d, true);
		if (err)
			pr_warn("the first generation was refused; enforcing what was pinned before");
		attach_interfaces(&d);
	} else {
		/* Kubernetes: the first full generation waits for the first lists */
		d.k8s_hold = true;
	}

	sockdir = xstrdup(d.cfg.socket);
	if (strrchr(sockdir, '/')) {
		*strrchr(sockdir, '/') = 0;
		mkdir(sockdir, 0750);
	}
	free(sockdir);
	{
		struct moat_events_opts eo = { 0 };
		char aerr[512];
		/* the flight recorder (archive.h), fed by the event consumer */
		if (moat_archive_daemon_open(&d, archive_log, aerr, sizeof(aerr)))
			moatd_error(&d, "archive: %s (not recording; enforcement is not affected)", aerr);
		if (d.archive)
			eo.sink = moat_archive_sink(d.archive);
		err = moat_events_start(d.dp, &eo, &d.events);
		if (err)
			pr_warn("verdict events unavailable: %s (enforcement is not affected)",
				strerror(-err));
		moat_archive_set_events(d.archive, d.events);
		moat_archive_refresh(d.archive, d.comp, d.ifaces, moat_dp_generation(d.dp));
		names_refresh(&d);
	}
	{
		char aerr[512];
		err = moat_auth_new(d.cfg.tokens_file, &d.auth, aerr, sizeof(aerr));
		if (err) {
			pr_err("tokens: %s", aerr);
			goto out;
		}
	}
	{
		struct moat_api_opts ao = { .socket = d.cfg.socket,
					    .mode = d.cfg.socket_mode,
					    .audit_log = d.cfg.audit_log,
					    .tcp_port = (unsigned short)d.cfg.api_port };
		char *cert = NULL, *key = NULL;
		if (d.cfg.api_port) {
			cert = slurp(d.cfg.tls_cert);
			key = slurp(d.cfg.tls_key);
			if (!cert || !key) {
				pr_err("--api-port needs readable --tls-cert and --tls-key");
				err = -EINVAL;
				goto out;
			}
			ao.tls_cert = cert;
			ao.tls_key = key;
		}
		err = moat_api_start(&d, &ao, &d.api);
		free(cert);
		free(key);
	}
	if (err) {
		pr_err("could not serve the control API on %s: %s", d.cfg.socket, strerror(-err));
		goto out;
	}
	if (!d.cfg.keep_caps) {
		err = drop_privileges();
		if (err)
			pr_warn("could not drop capabilities: %s (continuing with the current set)",
				strerror(-err));
		else
			pr_info("capabilities reduced to bpf, net_admin, sys_admin, perfmon, dac_read_search");
	}
	if (!d.cfg.manifests) {
		/* after dropping capabilities: the watch threads inherit the reduced set */
		struct moat_k8s_opts ko = { .in_cluster = d.cfg.in_cluster,
					    .kubeconfig = d.cfg.kubeconfig,
					    .sa_dir = d.cfg.sa_dir,
					    .watch_timeout_s = d.cfg.k8s_watch_s,
					    .backoff_max_ms = d.cfg.k8s_backoff_max_ms,
					    .idle_timeout_ms = d.cfg.k8s_idle_ms };
		char kerr[512];
		err = moat_k8s_source_start(&ko, &d.k8s, kerr, sizeof(kerr));
		if (err) {
			pr_err("Kubernetes API: %s", kerr);
			goto out;
		}
		moat_auth_use_k8s(d.auth, d.k8s);
	}
	pr_info("moatd ready: node %s, %s %s, API %s", d.cfg.node,
		d.cfg.manifests ? "manifests" : "Kubernetes API",
		d.cfg.manifests  ? d.cfg.manifests :
		d.cfg.in_cluster ? "in-cluster" :
				   d.cfg.kubeconfig,
		d.cfg.socket);

	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	timerfd_settime(tfd, 0, &its, NULL);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || tfd < 0 || ep < 0) {
		err = -errno;
		goto out;
	}
	ev.events = EPOLLIN;
	ev.data.u32 = d.src ? 1 : 5;
	epoll_ctl(ep, EPOLL_CTL_ADD, d.src ? moat_srcdir_fd(d.src) : moat_k8s_source_fd(d.k8s), &ev);
	ev.data.u32 = 2;
	epoll_ctl(ep, EPOLL_CTL_ADD, moat_ifaces_fd(d.ifaces), &ev);
	ev.data.u32 = 3;
	epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
	ev.data.u32 = 4;
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);

	while (!stop) {
		int n = epoll_wait(ep, evs, 8, -1);
		bool links = false, changed = false, tick = false;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		pthread_mutex_lock(&d.lock);
		for (int i = 0; i < n; i++) {
			switch (evs[i].data.u32) {
			case 1:
				changed |= moat_srcdir_process(d.src, d.comp, src_err, &d) > 0;
				break;
			case 2: {
				uint64_t r = moat_ifaces_resyncs(d.ifaces);
				links |= moat_ifaces_ready(d.ifaces);
				if (moat_ifaces_resyncs(d.ifaces) != r)
					pr_warn("netlink: link and route notifications were lost (receive buffer "
						"overrun); interfaces and routes re-read from the kernel (resync %llu)",
						(unsigned long long)moat_ifaces_resyncs(d.ifaces));
				break;
			}
			case 5:
				changed |= moat_k8s_source_drain(d.k8s, d.comp, src_err, &d) > 0;
				break;
			case 3: {
				struct signalfd_siginfo si;
				if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
					if (si.ssi_signo == SIGHUP) {
						char cerr[512];
						if (d.cfg.config_file &&
						    moatd_config_load(d.cfg.config_file, &d.cfg, true, cerr,
								      sizeof(cerr)))
							moatd_error(
								&d,
								"SIGHUP: %s; keeping the running settings",
								cerr);
						moat_log_level = d.cfg.log_level;
						apply_config(&d);
						if (moat_archive_daemon_reload(&d, cerr, sizeof(cerr)))
							moatd_error(
								&d,
								"SIGHUP: archive: %s; keeping its settings",
								cerr);
						if (moat_auth_reload(d.auth, cerr, sizeof(cerr)))
							moatd_error(
								&d,
								"SIGHUP: tokens: %s; keeping the old ones",
								cerr);
						if (d.src) {
							pr_info("SIGHUP: settings reloaded, rescanning %s",
								d.cfg.manifests);
							moat_srcdir_scan(d.src, d.comp, src_err, &d);
							changed = true;
						} else {
							pr_info("SIGHUP: settings reloaded");
						}
					} else {
						stop = 1;
					}
				}
				break;
			}
			case 4: {
				uint64_t x;
				if (read(tfd, &x, sizeof(x)) > 0)
					tick = true;
				break;
			}
			}
		}
		if (d.k8s_hold && (changed || tick)) {
			char why[512];
			if (moat_k8s_source_ready(d.k8s, why, sizeof(why))) {
				/* the first complete picture: one full generation, then attach */
				d.k8s_hold = false;
				moat_ifaces_resolve(d.ifaces, d.comp);
				if (moatd_apply(&d, true))
					pr_warn("the first generation was refused; enforcing what was pinned before");
				attach_interfaces(&d);
				pr_info("Kubernetes API: first full generation built");
				changed = false;
			}
		}
		if (changed) {
			moat_ifaces_resolve(d.ifaces, d.comp);
			moatd_apply(&d, d.k8s_retry_full);
		}
		if ((changed || links || tick) && !d.k8s_hold)
			sync_interfaces(&d);
		if (tick && d.retry && d.src && moat_now_ns() >= d.retry_at_ns) {
			bool full = d.retry == 2;
			pr_info("retrying the change whose datapath update failed (%sfrom the files)",
				full ? "a full generation, " : "");
			moat_srcdir_scan(d.src, d.comp, src_err, &d);
			moat_ifaces_resolve(d.ifaces, d.comp);
			d.retry = 0;
			if (!moatd_apply(&d, full))
				sync_interfaces(&d);
		} else if (tick && d.retry && d.k8s && !d.k8s_hold && moat_now_ns() >= d.retry_at_ns) {
			/* the objects come back through the drain, which applies them */
			d.k8s_retry_full = d.retry == 2;
			pr_info("retrying the change whose datapath update failed (%severy object sent again "
				"by the Kubernetes API)",
				d.k8s_retry_full ? "a full generation, " : "");
			d.retry = 0;
			moat_k8s_source_resync(d.k8s);
		}
		if (tick) {
			char *pe = moat_pfmgr_take_error(d.pfmgr);
			check_pins(&d);
			moat_pfmgr_poll(d.pfmgr);
			if (pe)
				moatd_error(&d, "%s", pe);
			free(pe);
			names_refresh(&d);
			moat_archive_refresh(d.archive, d.comp, d.ifaces, moat_dp_generation(d.dp));
		}
		if (tick && moat_now_ns() - last_gc > (uint64_t)d.cfg.gc_interval_ms * 1000000ull) {
			ct_gc(&d);
			last_gc = moat_now_ns();
		}
		pthread_mutex_unlock(&d.lock);
	}
	pthread_mutex_lock(&d.lock);
	check_pins(&d); /* what stays in place after we are gone is pinned */
	pthread_mutex_unlock(&d.lock);
	pr_info("moatd stopping; enforcement stays in place (generation %u)", moat_dp_generation(d.dp));
	exitcode = 0;
out:
	if (err && exitcode)
		pr_err("moatd: %s", strerror(-err));
	moat_api_stop(d.api);
	moat_k8s_source_stop(d.k8s);
	moat_auth_free(d.auth);
	moat_archive_set_events(d.archive, NULL); /* before the events go */
	moat_events_stop(d.events);
	moat_archive_close(d.archive);
	moat_srcdir_free(d.src);
	moat_ifaces_free(d.ifaces);
	moat_hwplan_free(d.hwplan);
	moat_pfmgr_free(d.pfmgr);
	moat_compiler_free(d.comp);
	moat_dp_close(d.dp);
	moatd_config_free(&d.cfg);
	for (size_t i = 0; i < d.nerrors; i++)
		free(d.errors[i]);
	if (ep >= 0)
		close(ep);
	if (sfd >= 0)
		close(sfd);
	if (tfd >= 0)
		close(tfd);
	return exitcode;
}
