/* SPDX-License-Identifier: Apache-2.0 */
/* Where the datapath runs on an interface: NIC profiles (hw/DRIVER.json), the
 * run-time probe of the interface, and the attach plan with its fallbacks.
 *
 *   profile   what a driver (or model) can do, as data: XDP modes, whether
 *             it has hardware offload and that offload's constraints.
 *   probe     what the kernel says of this interface now: driver name
 *             (ethtool ETHTOOL_GDRVINFO) and the XDP features
 *             (NETDEV_A_DEV_XDP_FEATURES over the "netdev" generic-netlink
 *             family).  When the probe answers, it overrides the profile.
 *   plan      hardware pre-filter + native program, native only, or
 *             generic; moat_plan_decide() is pure, moat_plan_execute()
 *             tries it and falls back, recording why each better choice
 *             failed.
 *
 * The full program never goes to hardware (it needs LPM tries, per-CPU and
 * LRU maps, tail-call-free but long code, timestamps: see docs/offload.md);
 * only the pre-filter (xdp/prefilter.bpf.c, loader offload/pf.h) does, in
 * the hardware slot beside the full program in the native (or generic) one.
 * Functions return 0 or a negative errno and do not log. */
#ifndef MOAT_PLAN_H
#define MOAT_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <net/if.h>
#include <linux/types.h>
#include "dp.h"

struct moat_pf;
struct moat_pf_opts;

#define MOAT_NIC_PROFILE_SCHEMA "moat.io/nic-profile/v1"
#define MOAT_NIC_PROFILE_DIR    "hw" /* relative to the source tree */

/* NETDEV_XDP_ACT_* of include/uapi/linux/netdev.h (kernel 6.3+), and the
 * names the profiles use for them. */
#define MOAT_XDP_F_BASIC        (1u << 0)
#define MOAT_XDP_F_REDIRECT     (1u << 1)
#define MOAT_XDP_F_NDO_XMIT     (1u << 2)
#define MOAT_XDP_F_XSK_ZEROCOPY (1u << 3)
#define MOAT_XDP_F_HW_OFFLOAD   (1u << 4)
#define MOAT_XDP_F_RX_SG        (1u << 5)
#define MOAT_XDP_F_NDO_XMIT_SG  (1u << 6)
#define MOAT_XDP_F_COUNT        7
const char *moat_xdp_feature_name(unsigned bit); /* "basic", ...; NULL past the end */

/* Atomic operations an offload supports (profile "atomics"). */
#define MOAT_ATOMIC_ADD     (1u << 0)
#define MOAT_ATOMIC_AND     (1u << 1)
#define MOAT_ATOMIC_OR      (1u << 2)
#define MOAT_ATOMIC_XOR     (1u << 3)
#define MOAT_ATOMIC_FETCH   (1u << 4) /* the fetching forms of the above */
#define MOAT_ATOMIC_XCHG    (1u << 5)
#define MOAT_ATOMIC_CMPXCHG (1u << 6)

enum moat_perf_output {
	MOAT_PERF_ANY = 0,     /* any flags */
	MOAT_PERF_CURRENT_CPU, /* index bits must be BPF_F_CURRENT_CPU */
	MOAT_PERF_NONE,        /* not available */
};

/* Limits a profile marks as reported by the firmware at run time (the
 * value given is typical, not guaranteed). */
#define MOAT_FW_MAX_INSNS   (1u << 0)
#define MOAT_FW_MAX_STACK   (1u << 1)
#define MOAT_FW_MAX_PKT_OFF (1u << 2)
#define MOAT_FW_MAX_MAPS    (1u << 3)
#define MOAT_FW_MAX_ENTRIES (1u << 4)
#define MOAT_FW_MAX_KEY     (1u << 5)
#define MOAT_FW_MAX_VALUE   (1u << 6)
#define MOAT_FW_MAX_ELEM    (1u << 7)
#define MOAT_FW_HELPERS     (1u << 8)

#define MOAT_NIC_MAX_HELPERS 32
#define MOAT_NIC_MAX_DRIVERS 8

struct moat_nic_offload {
	bool supported;
	int isa;                 /* highest BPF ISA version: 1..4 */
	__u32 max_insns;         /* 0: no limit known */
	__u32 max_stack;         /* bytes over the call chain */
	__u32 max_packet_offset; /* 0: unknown (not checked) */
	__u64 map_types;         /* bit per BPF_MAP_TYPE_* created on the device */
	__u64 host_map_types;    /* bit per type that may stay on the host */
	__u32 map_flags;         /* allowed map_flags bits (nfp: none) */
	__u32 max_maps;
	__u64 max_entries; /* one budget shared by every offloaded map */
	__u32 max_key_size, max_value_size;
	__u32 max_elem_size; /* round_up(key, 8) + round_up(value, 8) */
	size_t nhelpers;
	__u32 helpers[MOAT_NIC_MAX_HELPERS]; /* allowed helper ids */
	bool tail_calls, lpm, percpu_maps, modulo, map_value_stores, bpf_calls;
	bool map_keys_on_stack; /* map helper keys/values: stack, constant 4-aligned offset */
	enum moat_perf_output perf_event_output;
	__u32 atomics;           /* MOAT_ATOMIC_* */
	__u32 actions;           /* bit per XDP_* return code */
	bool ctx_write_rx_queue; /* stores to xdp_md.rx_queue_index */
	__u32 fw_reported;       /* MOAT_FW_* */
};

struct moat_nic_profile {
	char name[32];
	char description[160];
	size_t ndrivers;
	char drivers[MOAT_NIC_MAX_DRIVERS][32]; /* ETHTOOL_GDRVINFO names */
	__u32 modes;                            /* bit per enum moat_mode (HW, NATIVE, GENERIC) */
	__u32 features;                         /* MOAT_XDP_F_* the driver is known to announce */
	struct moat_nic_offload off;
};

/* Reads and validates one profile file: the schema is closed (an unknown
 * key is an error, so a typo cannot silently drop a constraint) and every
 * value is checked.  err says which field is wrong. */
int moat_nic_profile_load(const char *path, struct moat_nic_profile *p, char *err, size_t errlen);
/* The profile whose "drivers" names driver, else dir/default.json.  path
 * (may be NULL) receives the file used. */
int moat_nic_profile_find(const char *dir, const char *driver, struct moat_nic_profile *p, char *path,
			  size_t pathlen, char *err, size_t errlen);
/* Helper name by id ("map_lookup_elem"); NULL if unknown. */
const char *moat_bpf_helper_name(__u32 id);

/* ---- probe ------------------------------------------------------------------ */
struct moat_nic_probe {
	char ifname[IF_NAMESIZE];
	bool have_driver; /* ETHTOOL_GDRVINFO answered */
	char driver[32], version[32], fw_version[32], bus_info[32];
	bool have_features; /* the netdev family answered */
	__u64 xdp_features; /* NETDEV_XDP_ACT_* = MOAT_XDP_F_* */
	__u32 xdp_zc_max_segs;
	char why[160]; /* what could not be asked, and why */
};
/* Asks the kernel about ifindex (in the caller's network namespace).
 * Partial answers are answers: -ENODEV only if the interface is gone. */
int moat_nic_probe(int ifindex, struct moat_nic_probe *out);

/* ---- plan ------------------------------------------------------------------ */
enum moat_plan_kind {
	MOAT_PLAN_HW_PREFILTER = 0, /* pre-filter in hardware + full program native */
	MOAT_PLAN_NATIVE,           /* full program native only */
	MOAT_PLAN_GENERIC,          /* full program generic (skb) */
	MOAT_PLAN_KIND_MAX,
};
const char *moat_plan_kind_name(enum moat_plan_kind k);

struct moat_plan_opts {
	enum moat_mode requested; /* AUTO, or a mode forced by the operator */
	bool prefilter;           /* a pre-filter is wanted at all */
	/* the pre-filter object was fit-checked against this profile
	 * (hostd/fitcheck.h): without it hardware is not tried */
	bool prefilter_fits;
	bool foreign_netns; /* the interface is in another namespace */
};

struct moat_attach_plan {
	enum moat_plan_kind kind; /* the best candidate, tried first */
	bool try_hw_prefilter;
	enum moat_mode full_mode; /* first mode for the full program */
	bool full_may_fall_back;  /* native -> generic */
	/* why each better kind was ruled out; "" for the chosen one */
	char why[MOAT_PLAN_KIND_MAX][200];
};

/* Pure: what to try, from profile, probe (may be NULL) and options. */
void moat_plan_decide(const struct moat_nic_profile *prof, const struct moat_nic_probe *probe,
		      const struct moat_plan_opts *opts, struct moat_attach_plan *plan);

struct moat_plan_result {
	enum moat_plan_kind kind;          /* what took */
	struct moat_attach_info full;      /* the full program's attach */
	struct moat_pf *pf;                /* the pre-filter in hardware, or NULL (caller closes) */
	char why[MOAT_PLAN_KIND_MAX][200]; /* the plan's reasons, then what failed */
};

/* Carries a plan out on req->ifindex: the pre-filter loaded for the device
 * (program and maps with its ifindex) and attached in hardware mode, then
 * the full program through moat_dp_attach().  A failed hardware step is
 * recorded and the plan continues without it; if the full program cannot
 * be attached at all, the pre-filter is not left behind.  req->mode and
 * req->hw_capable are not used: the plan decides (the full program is never
 * attached in hardware).  pfo may be NULL (default sizes).  The pre-filter
 * starts with empty tables, which pass everything: filling them is
 * hostd/prefilter.h's (incremental, two halves around each generation). */
int moat_plan_execute(struct moat_dp *dp, const struct moat_attach_req *req,
		      const struct moat_attach_plan *plan, const struct moat_pf_opts *pfo,
		      struct moat_plan_result *res);

#endif
