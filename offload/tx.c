// SPDX-License-Identifier: Apache-2.0
/* Generation-switched table transactions.
 *
 * Both slots hold the same content between commits.  A commit writes its
 * changes into the inactive slot (with an undo log: a failed write leaves
 * that slot as it was), then publishes it with two release stores: the
 * slot's generation, then the active index.  After an RCU grace period no
 * packet can still be reading the old slot, and a helper thread replays the
 * same changes into it.  A packet therefore sees one generation or the
 * next, never a mixture.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <bpf/bpf.h>

#include "dp.h"
#include "dp_internal.h"

#define OP_KEY_MAX 24
#define OP_VAL_MAX 40

struct tx_op {
	__u8 tbl;
	__u8 del;
	__u8 had_old; /* undo: the key existed before */
	__u8 pad;
	__u8 key[OP_KEY_MAX];
	__u8 val[OP_VAL_MAX];
	__u8 old[OP_VAL_MAX];
};

struct moat_tx {
	struct moat_dp *dp;
	bool full;
	struct tx_op *ops;
	size_t n, cap;
};

_Static_assert(sizeof(struct moat_policy_key) <= OP_KEY_MAX, "key fits");
_Static_assert(sizeof(struct moat_net6_key) <= OP_KEY_MAX, "key fits");
_Static_assert(sizeof(struct moat_subject) <= OP_VAL_MAX, "value fits");
_Static_assert(sizeof(struct moat_endpoint) <= OP_VAL_MAX, "value fits");
_Static_assert(sizeof(struct moat_policy_val) <= OP_VAL_MAX, "value fits");

int moat_tx_begin(struct moat_dp *dp, bool full, struct moat_tx **ret_tx)
{
	struct moat_tx *tx = calloc(1, sizeof(*tx));

	if (!tx)
		return -ENOMEM;
	tx->dp = dp;
	tx->full = full;
	*ret_tx = tx;
	return 0;
}

static void tx_free(struct moat_tx *tx)
{
	if (!tx)
		return;
	free(tx->ops);
	free(tx);
}

void moat_tx_abort(struct moat_tx *tx)
{
	tx_free(tx);
}

size_t moat_tx_ops(const struct moat_tx *tx)
{
	return tx->n;
}

static struct tx_op *tx_push(struct moat_tx *tx)
{
	if (tx->n == tx->cap) {
		size_t ncap = tx->cap ? tx->cap * 2 : 256;
		struct tx_op *n = realloc(tx->ops, ncap * sizeof(*n));
		if (!n)
			return NULL;
		tx->ops = n;
		tx->cap = ncap;
	}
	memset(&tx->ops[tx->n], 0, sizeof(tx->ops[0]));
	return &tx->ops[tx->n++];
}

int moat_tx_put(struct moat_tx *tx, enum moat_tbl t, const void *key, const void *val)
{
	struct tx_op *op;

	if (t >= MOAT_T_MAX)
		return -EINVAL;
	op = tx_push(tx);
	if (!op)
		return -ENOMEM;
	op->tbl = moat_tbl_route(tx->dp, t, key);
	memcpy(op->key, key, moat_tbl_key_size(t));
	memcpy(op->val, val, moat_tbl_value_size(t));
	return 0;
}

int moat_tx_del(struct moat_tx *tx, enum moat_tbl t, const void *key)
{
	struct tx_op *op;

	if (t >= MOAT_T_MAX)
		return -EINVAL;
	op = tx_push(tx);
	if (!op)
		return -ENOMEM;
	op->tbl = moat_tbl_route(tx->dp, t, key);
	op->del = 1;
	memcpy(op->key, key, moat_tbl_key_size(t));
	return 0;
}

static bool tbl_is_array(enum moat_tbl t)
{
	return t == MOAT_T_SUBJ || t == MOAT_T_EPA;
}

/* Elements of the tables that are not preallocated come from the kernel's
 * BPF memory allocator, whose per-CPU caches are refilled asynchronously
 * (irq_work): a burst of updates, the first generation into fresh maps
 * above all, can find a cache empty and get ENOMEM with plenty of memory
 * free (seen on a loaded 2-CPU VM).  Such an update is retried after a short
 * pause, for up to about 200 ms, before the transaction fails. */
static const char *fault_path;

static void fault_init(void)
{
	fault_path = getenv("MOAT_FAULT_ENOMEM");
}

/* Fault injection for tests (tests/e2e/faults.sh): while the file named by
 * $MOAT_FAULT_ENOMEM exists, table updates fail with ENOMEM, as when the
 * kernel's allocator is dry.  Unset: one getenv per process. */
static bool fault_enomem(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, fault_init);
	return fault_path && !access(fault_path, F_OK);
}

static int map_update(int fd, const void *key, const void *val)
{
	for (int i = 0;; i++) {
		if (fault_enomem())
			errno = ENOMEM;
		else if (!bpf_map_update_elem(fd, key, val, BPF_ANY))
			return 0;
		if (errno != ENOMEM || i == 100)
			return -errno;
		usleep(i < 10 ? 100 : 2000);
	}
}

static int op_apply(int fd, enum moat_tbl t, bool del, const void *key, const void *val)
{
	static const __u8 zero[OP_VAL_MAX];

	if (del) {
		if (tbl_is_array(t))
			return map_update(fd, key, zero);
		if (bpf_map_delete_elem(fd, key) && errno != ENOENT)
			return -errno;
		return 0;
	}
	return map_update(fd, key, val);
}

/* Empties every table of a slot. */
/* Every key of a hash or trie map, collected before anything is deleted:
 * deleting the cursor key would restart get_next_key at the first key and
 * make a sweep quadratic (30 s of kernel time for 100,000 entries). */
static int keys_collect(int fd, size_t ksz, __u8 **ret, size_t *n)
{
	__u8 *buf = NULL, next[OP_KEY_MAX];
	size_t cap = 0;

	*n = 0;
	while (bpf_map_get_next_key(fd, *n ? buf + (*n - 1) * ksz : NULL, next) == 0) {
		if (*n == cap) {
			__u8 *nb = realloc(buf, (cap ? cap * 2 : 1024) * ksz);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap = cap ? cap * 2 : 1024;
		}
		memcpy(buf + (*n)++ * ksz, next, ksz);
	}
	if (errno != ENOENT) {
		int err = -errno;
		free(buf);
		return err;
	}
	*ret = buf;
	return 0;
}

/* Every value of an array slot, in order: in place where the array is
 * mmapped (a sweep of the subject and endpoint arrays took ~100 ms with a
 * lookup per slot), else copied into *owned by lookups. */
static int array_view(const struct moat_dp *dp, int t, __u32 slot, const __u8 **view, __u8 **owned)
{
	size_t vsz = moat_tbl_value_size(t);
	int fd = dp->tbl_fd[t][slot];
	__u8 *vals;

	*owned = NULL;
	if (dp->arr_mem[t][slot]) {
		*view = dp->arr_mem[t][slot];
		return 0;
	}
	vals = malloc((size_t)dp->tbl_cap[t] * vsz);
	if (!vals)
		return -ENOMEM;
	for (__u32 i = 0; i < dp->tbl_cap[t]; i++)
		if (bpf_map_lookup_elem(fd, &i, vals + (size_t)i * vsz)) {
			int err = -errno;
			free(vals);
			return err;
		}
	*view = *owned = vals;
	return 0;
}

static int slot_clear(struct moat_dp *dp, __u32 slot)
{
	static const __u8 zero[OP_VAL_MAX];

	for (int t = 0; t < MOAT_T_PHYS; t++) {
		int fd = dp->tbl_fd[t][slot];
		size_t ksz = moat_tbl_key_size(t), n;
		__u8 *keys = NULL;
		int err;

		if (tbl_is_array(t)) {
			size_t vsz = moat_tbl_value_size(t);
			const __u8 *cur;
			__u8 *owned;

			if ((err = array_view(dp, t, slot, &cur, &owned)))
				return err;
			for (__u32 i = 0; i < dp->tbl_cap[t] && !err; i++)
				if (memcmp(cur + (size_t)i * vsz, zero, vsz) &&
				    bpf_map_update_elem(fd, &i, zero, BPF_ANY))
					err = -errno;
			free(owned);
			if (err)
				return err;
			continue;
		}
		if ((err = keys_collect(fd, ksz, &keys, &n)))
			return err;
		for (size_t i = 0; i < n; i++)
			if (bpf_map_delete_elem(fd, keys + i * ksz) && errno != ENOENT) {
				err = -errno;
				break;
			}
		free(keys);
		if (err)
			return err;
	}
	return 0;
}

/* Makes slot dst a copy of slot src. */
static int slot_copy(struct moat_dp *dp, __u32 src, __u32 dst)
{
	__u8 key[OP_KEY_MAX], next[OP_KEY_MAX], val[OP_VAL_MAX];
	void *prev;
	int err;

	for (int t = 0; t < MOAT_T_PHYS; t++) {
		int sfd = dp->tbl_fd[t][src], dfd = dp->tbl_fd[t][dst];
		size_t vsz = moat_tbl_value_size(t), ksz = moat_tbl_key_size(t);

		if (tbl_is_array(t)) {
			const __u8 *sv = NULL, *dv = NULL;
			__u8 *sown = NULL, *down = NULL;

			err = array_view(dp, t, src, &sv, &sown);
			if (!err)
				err = array_view(dp, t, dst, &dv, &down);
			for (__u32 i = 0; i < dp->tbl_cap[t] && !err; i++) {
				const __u8 *a = sv + (size_t)i * vsz;
				if (memcmp(a, dv + (size_t)i * vsz, vsz) &&
				    bpf_map_update_elem(dfd, &i, a, BPF_ANY))
					err = -errno;
			}
			free(sown);
			free(down);
			if (err)
				return err;
			continue;
		}
		/* drop what src does not have */
		{
			__u8 *keys = NULL;
			size_t n;
			if ((err = keys_collect(dfd, ksz, &keys, &n)))
				return err;
			for (size_t i = 0; i < n && !err; i++)
				if (bpf_map_lookup_elem(sfd, keys + i * ksz, val) && errno == ENOENT &&
				    bpf_map_delete_elem(dfd, keys + i * ksz) && errno != ENOENT)
					err = -errno;
			free(keys);
			if (err)
				return err;
		}
		prev = NULL;
		while (bpf_map_get_next_key(sfd, prev, next) == 0) {
			memcpy(key, next, ksz);
			prev = key;
			if (bpf_map_lookup_elem(sfd, key, val))
				continue;
			err = op_apply(dfd, t, false, key, val);
			if (err)
				return err;
		}
	}
	return 0;
}

/* Applies the ops to one slot.  With undo, every op first records what it
 * overwrites and a failure restores the slot exactly. */
static int ops_apply(struct moat_dp *dp, __u32 slot, struct moat_tx *tx, bool undo)
{
	size_t i;
	int err = 0;

	for (i = 0; i < tx->n; i++) {
		struct tx_op *op = &tx->ops[i];
		int fd = dp->tbl_fd[op->tbl][slot];

		if (undo) {
			op->had_old = bpf_map_lookup_elem(fd, op->key, op->old) == 0;
			if (!op->had_old && errno != ENOENT) {
				err = -errno;
				break;
			}
		}
		err = op_apply(fd, op->tbl, op->del, op->key, op->val);
		if (err)
			break;
	}
	if (!err || !undo)
		return err;
	while (i-- > 0) {
		struct tx_op *op = &tx->ops[i];
		int fd = dp->tbl_fd[op->tbl][slot];
		int r = op_apply(fd, op->tbl, !op->had_old, op->key, op->old);
		if (r)
			dp->inactive_dirty = true; /* could not restore: re-level later */
	}
	return err;
}

static void *settle_main(void *arg)
{
	struct moat_dp *dp = arg;
	struct moat_tx *tx;
	__u32 old_slot;
	int err = 0;

	/* Every XDP program run that started before the switch has ended
	 * once an RCU grace period has passed. */
	if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0))
		usleep(50000); /* membarrier unavailable: XDP runs are microseconds */

	pthread_mutex_lock(&dp->settle_lock);
	tx = dp->pending;
	dp->pending = NULL;
	pthread_mutex_unlock(&dp->settle_lock);

	old_slot = !(__atomic_load_n(&dp->cfg->active, __ATOMIC_ACQUIRE) & 1);
	if (tx) {
		if (tx->full)
			err = slot_clear(dp, old_slot);
		if (!err)
			err = ops_apply(dp, old_slot, tx, false);
		if (err)
			dp->inactive_dirty = true;
		tx_free(tx);
	}

	pthread_mutex_lock(&dp->settle_lock);
	dp->settle_err = err;
	dp->settle_pending = false;
	pthread_cond_broadcast(&dp->settle_cond);
	pthread_mutex_unlock(&dp->settle_lock);
	return NULL;
}

int moat_dp_settle(struct moat_dp *dp)
{
	int err;

	pthread_mutex_lock(&dp->settle_lock);
	while (dp->settle_pending)
		pthread_cond_wait(&dp->settle_cond, &dp->settle_lock);
	err = dp->settle_err;
	dp->settle_err = 0;
	if (dp->settle_running) {
		dp->settle_running = false;
		pthread_mutex_unlock(&dp->settle_lock);
		pthread_join(dp->settle_thread, NULL);
		return err;
	}
	pthread_mutex_unlock(&dp->settle_lock);
	return err;
}

int moat_tx_commit(struct moat_tx *tx, __u32 *ret_generation)
{
	struct moat_dp *dp = tx->dp;
	__u32 active, inactive, gen;
	int err;

	/* the previous commit must have reached both slots */
	(void)moat_dp_settle(dp);

	active = __atomic_load_n(&dp->cfg->active, __ATOMIC_ACQUIRE) & 1;
	inactive = !active;
	if (dp->inactive_dirty && !tx->full) {
		err = slot_copy(dp, active, inactive);
		if (err)
			goto fail;
		dp->inactive_dirty = false;
	}
	if (tx->full) {
		err = slot_clear(dp, inactive);
		if (!err)
			err = ops_apply(dp, inactive, tx, false);
		if (err) {
			dp->inactive_dirty = true;
			goto fail;
		}
		dp->inactive_dirty = false;
	} else {
		err = ops_apply(dp, inactive, tx, true);
		if (err)
			goto fail;
	}

	gen = ++dp->generation;
	__atomic_store_n(&dp->cfg->slot_gen[inactive], gen, __ATOMIC_RELEASE);
	__atomic_store_n(&dp->cfg->active, inactive, __ATOMIC_RELEASE);
	if (ret_generation)
		*ret_generation = gen;

	pthread_mutex_lock(&dp->settle_lock);
	dp->pending = tx;
	dp->settle_pending = true;
	dp->settle_running = true;
	if (pthread_create(&dp->settle_thread, NULL, settle_main, dp)) {
		dp->settle_running = false;
		pthread_mutex_unlock(&dp->settle_lock);
		settle_main(dp); /* no thread: settle inline */
		return 0;
	}
	pthread_mutex_unlock(&dp->settle_lock);
	return 0;
fail:
	tx_free(tx);
	return err;
}
