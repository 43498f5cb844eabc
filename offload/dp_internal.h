/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the offload/ sources; not part of its interface. */
#ifndef MOAT_DP_INTERNAL_H
#define MOAT_DP_INTERNAL_H

#include <pthread.h>
#include <sys/types.h>
#include "dp.h"

struct moat_bpf;
struct tx_op;

/* Physical tables beyond the logical ones of enum moat_tbl: the endpoints
 * of small ifindexes live in an array (MOAT_TBL_EPA).  Transactions route
 * each MOAT_T_EP key to it or to the hash; callers see one table. */
#define MOAT_T_EPA  MOAT_T_MAX
#define MOAT_T_PHYS (MOAT_T_MAX + 1)

struct moat_dp {
	struct moat_bpf *skel;
	char *pin_dir;
	bool no_pin;
	struct moat_config *cfg; /* mmapped moat_config[0] */
	size_t cfg_len;
	int tbl_fd[MOAT_T_PHYS][2]; /* inner maps of slots a, b */
	int outer_fd[MOAT_T_PHYS];
	__u32 tbl_cap[MOAT_T_PHYS];
	const __u8 *arr_mem[MOAT_T_PHYS][2]; /* array slots, mmapped read-only */
	size_t arr_len[MOAT_T_PHYS];
	__u32 generation;    /* last generation handed out */
	bool inactive_dirty; /* inactive slot may differ from the live one */
	char *aside;         /* the old ABI's state during an upgrade (upgrade.c) */
	__u32 upgraded_from; /* its ABI version */

	/* the last commit, to be replayed into the other slot */
	pthread_mutex_t settle_lock;
	pthread_cond_t settle_cond;
	pthread_t settle_thread;
	bool settle_running;
	bool settle_pending;
	int settle_err;
	struct moat_tx *pending;

	/* the links this process attached or adopted: held open, so that
	 * they stay attached if their pins are removed (moat_dp_repin) */
	struct moat_held_link {
		char *name;
		int fd;
	} * held;
	size_t nheld, held_cap;
};

void moat_dp_held_free(struct moat_dp *dp);
/* The physical table that holds key of logical table t. */
enum moat_tbl moat_tbl_route(const struct moat_dp *dp, enum moat_tbl t, const void *key);
/* moat_dp_repin's first half: missing map pins; how many restored or -errno */
int moat_dp_repin_maps(struct moat_dp *dp);
int moat_dp_mkdir_p(const char *path, mode_t mode);
/* upgrade.c: moves the old ABI's pins aside; picks up an interrupted move */
int moat_dp_upgrade_prepare(struct moat_dp *dp, __u32 old_abi);
int moat_dp_upgrade_resume(struct moat_dp *dp);

int moat_bpffs_ensure(void);

#endif
