/* SPDX-License-Identifier: Apache-2.0 */
/* The hardware pre-filter's loader (xdp/prefilter.bpf.c): built for the host
 * (tests, software fallback) or bound to a device for hardware offload, its
 * maps, one-entry writers, counters and the hardware attach.
 *
 * Offloaded maps live on the NIC: every write is one firmware round trip,
 * one entry at a time (no batching), so callers write differences only
 * (hostd/prefilter.c).  The maps are never pinned: the pre-filter lives
 * with the process that loaded it, and the full program, which does not,
 * stays authoritative when it goes. */
#ifndef MOAT_PF_H
#define MOAT_PF_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include "moat/abi.h"

struct moat_pf;

struct moat_pf_opts {
	int ifindex;     /* > 0: offload program and maps to this device */
	__u32 max_src;   /* entries per family; 0 = MOAT_PF_MAX_SRC */
	__u32 max_dst;   /* 0 = MOAT_PF_MAX_DST */
	__u32 max_pairs; /* 0 = MOAT_PF_MAX_PAIRS */
};

enum moat_pf_tbl {
	MOAT_PF_T_LENS = 0,
	MOAT_PF_T_SRC4,
	MOAT_PF_T_SRC6,
	MOAT_PF_T_DST4,
	MOAT_PF_T_DST6,
	MOAT_PF_T_PAIRS,
	MOAT_PF_T_MAX,
};

const char *moat_pf_tbl_name(enum moat_pf_tbl t);
size_t moat_pf_key_size(enum moat_pf_tbl t);
size_t moat_pf_value_size(enum moat_pf_tbl t);

/* Loads the pre-filter.  Errors from the kernel (e.g. a device that refused
 * the program or a map) are described in err. */
int moat_pf_open(const struct moat_pf_opts *opts, struct moat_pf **ret, char *err, size_t errlen);
void moat_pf_close(struct moat_pf *pf);

/* The pre-filter object moat_pf_open() loads (the ELF built into this
 * binary), for the fit checker. */
const void *moat_pf_object(size_t *len);

bool moat_pf_offloaded(const struct moat_pf *pf);
int moat_pf_prog_fd(const struct moat_pf *pf);
int moat_pf_events_fd(const struct moat_pf *pf);
__u32 moat_pf_capacity(const struct moat_pf *pf, enum moat_pf_tbl t);

/* One entry each; every call is one map operation (one firmware round trip
 * when offloaded), counted in moat_pf_writes(). */
int moat_pf_put(struct moat_pf *pf, enum moat_pf_tbl t, const void *key, const void *val);
int moat_pf_del(struct moat_pf *pf, enum moat_pf_tbl t, const void *key);
int moat_pf_get(struct moat_pf *pf, enum moat_pf_tbl t, const void *key, void *val);
/* Some key of a table (to empty it); -ENOENT when it is empty. */
int moat_pf_first_key(struct moat_pf *pf, enum moat_pf_tbl t, void *key);
int moat_pf_set_config(struct moat_pf *pf, const struct moat_pf_config *cfg);
__u64 moat_pf_writes(const struct moat_pf *pf);

int moat_pf_stat(struct moat_pf *pf, __u32 idx, __u64 *value);

/* Tests: fn(arg) after every map write; after n more writes the next one
 * fails with -EIO, and so does every later one if stuck, until
 * moat_pf_fail_off(). */
void moat_pf_set_write_hook(struct moat_pf *pf, void (*fn)(void *arg), void *arg);
void moat_pf_fail_after(struct moat_pf *pf, unsigned n, bool stuck);
void moat_pf_fail_off(struct moat_pf *pf);

/* Hardware attach (XDP_FLAGS_HW_MODE) of an offloaded pre-filter; the
 * interface keeps any native program.  The attachment ends with
 * moat_pf_detach() or when pf is closed. */
int moat_pf_attach_hw(struct moat_pf *pf, char *err, size_t errlen);
void moat_pf_detach(struct moat_pf *pf);

#endif
