/* SPDX-License-Identifier: GPL-2.0-only */
/* The maps of the enforcer.  All are pinned by name, so a restarted or
 * upgraded daemon reuses them (after checking moat_meta's ABI version) and
 * enforcement never has a gap.  Policy-derived tables exist twice (slots a
 * and b behind an ARRAY_OF_MAPS, whose slots the loader sets); moat_config.active says which slot is
 * live, so a new generation becomes visible with one write. */
#ifndef MOAT_MAPS_BPF_H
#define MOAT_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "moat/abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct moat_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct moat_config);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MOAT_STAT_MAX);
	__type(key, __u32);
	__type(value, struct moat_stat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MOAT_MAX_RULES);
	__type(key, __u32);
	__type(value, struct moat_rule_stat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_rulestats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_CT);
	__type(key, struct moat_ct4_key);
	__type(value, struct moat_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_ct4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_CT);
	__type(key, struct moat_ct6_key);
	__type(value, struct moat_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_ct6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_DENY);
	__type(key, struct moat_ct4_key);
	__type(value, struct moat_deny_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_deny4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_DENY);
	__type(key, struct moat_ct6_key);
	__type(value, struct moat_deny_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_deny6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_FRAGS);
	__type(key, struct moat_frag4_key);
	__type(value, struct moat_frag_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_frag4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MOAT_MAX_FRAGS);
	__type(key, struct moat_frag6_key);
	__type(value, struct moat_frag_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_frag6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MOAT_EVS_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} moat_evstats SEC(".maps");

/* ---- generation-switched tables ----------------------------------------
 * The inner template (no pinning: libbpf refuses pinned inner definitions)
 * and the two pinned slot maps share one definition.  Slots are set when
 * the outer map is created; a reused outer map keeps pointing at the
 * reused, pinned slot maps. */
#define MOAT_DEFINE_SWITCHED(name, maptype, K, V, max, flg) \
	struct name##_inner {                               \
		__uint(type, maptype);                      \
		__uint(max_entries, max);                   \
		__uint(key_size, sizeof(K));                \
		__uint(value_size, sizeof(V));              \
		__uint(map_flags, flg);                     \
	};                                                  \
	struct {                                            \
		__uint(type, maptype);                      \
		__uint(max_entries, max);                   \
		__type(key, K);                             \
		__type(value, V);                           \
		__uint(map_flags, flg);                     \
		__uint(pinning, LIBBPF_PIN_BY_NAME);        \
	} name##_a SEC(".maps"), name##_b SEC(".maps");     \
	struct {                                            \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);   \
		__uint(max_entries, 2);                     \
		__type(key, __u32);                         \
		__uint(pinning, LIBBPF_PIN_BY_NAME);        \
		__array(values, struct name##_inner);       \
	} name SEC(".maps")

MOAT_DEFINE_SWITCHED(moat_ep, BPF_MAP_TYPE_HASH, __u32, struct moat_endpoint, MOAT_MAX_ENDPOINTS, 0);
/* The arrays are mmappable: user space reads a whole slot in place when it
 * sweeps one (offload/tx.c), instead of a system call per element. */
MOAT_DEFINE_SWITCHED(moat_epa, BPF_MAP_TYPE_ARRAY, __u32, struct moat_endpoint, MOAT_EP_ARRAY_MAX,
		     BPF_F_MMAPABLE);
MOAT_DEFINE_SWITCHED(moat_ip4, BPF_MAP_TYPE_HASH, struct moat_ip4_key, struct moat_ip_info, MOAT_MAX_IPS,
		     BPF_F_NO_PREALLOC);
MOAT_DEFINE_SWITCHED(moat_ip6, BPF_MAP_TYPE_HASH, struct moat_ip6_key, struct moat_ip_info, MOAT_MAX_IPS,
		     BPF_F_NO_PREALLOC);
MOAT_DEFINE_SWITCHED(moat_net4, BPF_MAP_TYPE_LPM_TRIE, struct moat_net4_key, struct moat_net_info,
		     MOAT_MAX_NETS, BPF_F_NO_PREALLOC);
MOAT_DEFINE_SWITCHED(moat_net6, BPF_MAP_TYPE_LPM_TRIE, struct moat_net6_key, struct moat_net_info,
		     MOAT_MAX_NETS, BPF_F_NO_PREALLOC);
MOAT_DEFINE_SWITCHED(moat_subj, BPF_MAP_TYPE_ARRAY, __u32, struct moat_subject, MOAT_MAX_IDENTITIES,
		     BPF_F_MMAPABLE);
MOAT_DEFINE_SWITCHED(moat_ports, BPF_MAP_TYPE_LPM_TRIE, struct moat_port_key, struct moat_port_class,
		     MOAT_MAX_PORTRANGES, BPF_F_NO_PREALLOC);
MOAT_DEFINE_SWITCHED(moat_pol, BPF_MAP_TYPE_HASH, struct moat_policy_key, struct moat_policy_val,
		     MOAT_MAX_POLICY, BPF_F_NO_PREALLOC);

#endif
