/* SPDX-License-Identifier: Apache-2.0 */
/* offload/: loading the datapath, pinning, attach-mode selection and the
 * typed, generation-switched table writers.  The only code that includes
 * the BPF skeleton.  Functions return 0 or a negative errno and do not log;
 * where a caller needs detail, it is returned in a buffer. */
#ifndef MOAT_DP_H
#define MOAT_DP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>
#include "moat/abi.h"

#define MOAT_PIN_ROOT "/sys/fs/bpf/moat"

struct moat_dp;

struct moat_dp_opts {
	const char *pin_dir; /* default MOAT_PIN_ROOT "/default" */
	bool events;         /* emit perf events (default on) */
	bool bench_no_ct;    /* benchmarks only: every packet is a new flow */
	bool reset;          /* discard pinned maps of another ABI version */
	bool no_pin;         /* tests: private maps, nothing pinned */
	__u32 max_policy;    /* decision entries; 0 = default */
	__u32 max_ips;
	__u32 max_ct;
	__u32 max_identities;
	__u32 max_rules;
};

/* Opens the datapath: reuses the pinned maps under pin_dir when their ABI
 * version matches; pinned state of another ABI version is set aside for an
 * upgrade in place (below), or discarded with opts->reset; a pin directory
 * whose meta is not moat's: -EPROTO unless opts->reset.  Else creates and
 * pins the maps.  *ret_adopted says whether existing state was found.  bpffs is
 * mounted at /sys/fs/bpf if it is not; a pin_dir elsewhere that is not on
 * bpffs: -EMEDIUMTYPE, nothing created. */
int moat_dp_open(const struct moat_dp_opts *opts, struct moat_dp **ret_dp, bool *ret_adopted);
void moat_dp_close(struct moat_dp *dp);

/* ---- upgrades across ABI versions (upgrade.c) ----------------------------
 * moat_dp_open() moves pinned state of another ABI version aside (all but
 * its links, which the first attach updates in place) and opens fresh maps.
 * Until then the old programs go on enforcing the old state. */
struct btf;
/* The old ABI version while its state is aside (0: no upgrade pending). */
__u32 moat_dp_upgrading(const struct moat_dp *dp);
/* Copies conntrack entries the new maps lack, when the old maps' keys and
 * entries have the same BTF layout (-EPROTOTYPE otherwise: nothing copied).
 * Carried entries are judged again on their next packet. */
int moat_dp_upgrade_carry(struct moat_dp *dp, __u64 *ret_carried);
/* Removes the old state: after every link has the new program. */
int moat_dp_upgrade_finish(struct moat_dp *dp);
/* Whether two BTF types lay out the same bytes: kinds, sizes, member names
 * and offsets, through typedefs and modifiers. */
bool moat_btf_same_layout(const struct btf *a, __u32 ida, const struct btf *b, __u32 idb);
/* Removes every pin (maps, programs, links) under the pin directory: the
 * explicit uninstall.  Pinned links are detached first (another process,
 * a running moatd, may hold them too). */
int moat_dp_uninstall(const char *pin_dir);

const char *moat_dp_pin_dir(const struct moat_dp *dp);
int moat_dp_prog_fd(const struct moat_dp *dp, int hook);
int moat_dp_map_fd(const struct moat_dp *dp, const char *name);

/* ---- run-time configuration -------------------------------------------- */
struct moat_config *moat_dp_config(struct moat_dp *dp); /* mmapped, live */
__u32 moat_dp_generation(const struct moat_dp *dp);     /* live generation */

/* ---- attaching ------------------------------------------------------------ */
enum moat_mode {
	MOAT_MODE_AUTO = 0,
	MOAT_MODE_HW,
	MOAT_MODE_NATIVE,
	MOAT_MODE_GENERIC,
	MOAT_MODE_MAX,
};
const char *moat_mode_name(enum moat_mode m);
int moat_mode_parse(const char *s, enum moat_mode *ret);

struct moat_attach_req {
	int hook;            /* MOAT_HOOK_* */
	int ifindex;         /* in netns_fd's namespace */
	int netns_fd;        /* -1: the caller's namespace */
	enum moat_mode mode; /* AUTO: hw -> native -> generic */
	bool hw_capable;     /* the NIC profile/probe says hw offload exists */
	const char *name;    /* link pin name, unique per node */
};

struct moat_attach_info {
	enum moat_mode mode;          /* the mode that took */
	bool replaced;                /* an existing link got the new program */
	char why[MOAT_MODE_MAX][160]; /* why each rejected mode failed */
};

int moat_dp_attach(struct moat_dp *dp, const struct moat_attach_req *req, struct moat_attach_info *info);
/* Detaches and unpins the link of that name; -ENOENT if there is none. */
int moat_dp_detach(struct moat_dp *dp, const char *name);
/* Calls fn for every pinned link: its name and whether its interface still
 * exists (a link whose device vanished is defunct). */
int moat_dp_links(struct moat_dp *dp, int (*fn)(const char *name, bool alive, void *arg), void *arg);
/* Pins removed from under a running process (its pin directory deleted, a
 * file unlinked) are pinned again from its own references: the maps (meta
 * last) and the links it holds that are still attached (a link's pin
 * removed does not detach it while this process holds it).  Returns how
 * many pins were restored (0: nothing was missing), or -errno. */
int moat_dp_repin(struct moat_dp *dp);

/* ---- generation-switched tables ------------------------------------------ */
enum moat_tbl {
	MOAT_T_EP = 0,
	MOAT_T_IP4,
	MOAT_T_IP6,
	MOAT_T_NET4,
	MOAT_T_NET6,
	MOAT_T_SUBJ,
	MOAT_T_PORTS,
	MOAT_T_POL,
	MOAT_T_MAX,
};
const char *moat_tbl_name(enum moat_tbl t);
size_t moat_tbl_key_size(enum moat_tbl t);
size_t moat_tbl_value_size(enum moat_tbl t);
__u32 moat_dp_tbl_capacity(const struct moat_dp *dp, enum moat_tbl t);

/* A transaction collects puts and deletes, applies them to the inactive
 * slot, and switches the datapath to it at once.  The other slot is brought
 * level afterwards (moat_dp_settle), after an RCU grace period, so no packet
 * ever reads a half-written table.  A full transaction first empties the
 * tables (start-up resync). */
struct moat_tx;
int moat_tx_begin(struct moat_dp *dp, bool full, struct moat_tx **ret_tx);
int moat_tx_put(struct moat_tx *tx, enum moat_tbl t, const void *key, const void *val);
int moat_tx_del(struct moat_tx *tx, enum moat_tbl t, const void *key);
size_t moat_tx_ops(const struct moat_tx *tx);
/* Applies and switches; on error nothing was switched and the live
 * generation is untouched.  The tx is consumed either way. */
int moat_tx_commit(struct moat_tx *tx, __u32 *ret_generation);
void moat_tx_abort(struct moat_tx *tx);
/* Waits for the grace period and replays the last commit into the other
 * slot.  Runs in a helper thread after each commit; explicit calls wait. */
int moat_dp_settle(struct moat_dp *dp);

/* Reads one table of the live slot (for explain, dumps and tests). */
int moat_dp_lookup(struct moat_dp *dp, enum moat_tbl t, const void *key, void *val);

/* ---- counters ------------------------------------------------------------ */
int moat_dp_stat(struct moat_dp *dp, __u32 idx, __u64 *packets, __u64 *bytes);
int moat_dp_rule_stat(struct moat_dp *dp, __u32 rule, __u64 *packets, __u64 *bytes);
int moat_dp_event_stat(struct moat_dp *dp, __u32 idx, __u64 *value);

/* ---- conntrack --------------------------------------------------------- */
struct moat_ct_view {
	int family;
	__u8 a_addr[16], b_addr[16];
	__u16 a_port, b_port; /* host order */
	__u8 proto;
	struct moat_ct_entry e;
};
/* Walks both CT maps; fn returns 1 to delete the entry, 0 to keep it,
 * negative to stop. */
int moat_dp_ct_walk(struct moat_dp *dp, int (*fn)(const struct moat_ct_view *v, void *arg), void *arg);
int moat_dp_ct_flush(struct moat_dp *dp);

/* Kernel clock used by the datapath for CT timestamps. */
__u64 moat_ktime_coarse_ns(void);

#endif
