// SPDX-License-Identifier: Apache-2.0
/* Attaching the enforcer: mode selection hardware -> native -> generic,
 * with the reason each rejected mode failed; pinned bpf_links so that
 * enforcement outlives the daemon; atomic program replacement through
 * bpf_link_update; attaching inside another network namespace (pod-side
 * veths) while keeping our own mount namespace and its bpffs pins. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>
#include <linux/if_link.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "dp.h"
#include "dp_internal.h"

static const char *const mode_names[MOAT_MODE_MAX] = {
	[MOAT_MODE_AUTO] = "auto",
	[MOAT_MODE_HW] = "hw",
	[MOAT_MODE_NATIVE] = "native",
	[MOAT_MODE_GENERIC] = "generic",
};

const char *moat_mode_name(enum moat_mode m)
{
	return m < MOAT_MODE_MAX ? mode_names[m] : "?";
}

int moat_mode_parse(const char *s, enum moat_mode *ret)
{
	for (int m = 0; m < MOAT_MODE_MAX; m++) {
		if (!strcmp(s, mode_names[m])) {
			*ret = m;
			return 0;
		}
	}
	if (!strcmp(s, "drv") || !strcmp(s, "driver")) {
		*ret = MOAT_MODE_NATIVE;
		return 0;
	}
	if (!strcmp(s, "skb")) {
		*ret = MOAT_MODE_GENERIC;
		return 0;
	}
	return -EINVAL;
}

static const __u32 mode_flags[MOAT_MODE_MAX] = {
	[MOAT_MODE_HW] = XDP_FLAGS_HW_MODE,
	[MOAT_MODE_NATIVE] = XDP_FLAGS_DRV_MODE,
	[MOAT_MODE_GENERIC] = XDP_FLAGS_SKB_MODE,
};

static int link_path(const struct moat_dp *dp, const char *name, char *buf, size_t len)
{
	if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	if ((size_t)snprintf(buf, len, "%s/links/%s", dp->pin_dir, name) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* The ifindex a pinned XDP link is attached to; 0 if its device is gone. */
static int link_ifindex(int link_fd, __u32 *ifindex)
{
	struct bpf_link_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(link_fd, &info, &len))
		return -errno;
	if (info.type != BPF_LINK_TYPE_XDP)
		return -EINVAL;
	*ifindex = info.xdp.ifindex;
	return 0;
}

static struct moat_held_link *held_find(struct moat_dp *dp, const char *name)
{
	for (size_t i = 0; i < dp->nheld; i++)
		if (!strcmp(dp->held[i].name, name))
			return &dp->held[i];
	return NULL;
}

/* Keeps fd (owned from now on) as the link of that name. */
static int held_put(struct moat_dp *dp, const char *name, int fd)
{
	struct moat_held_link *h = held_find(dp, name);

	if (h) {
		if (h->fd != fd)
			close(h->fd);
		h->fd = fd;
		return 0;
	}
	if (dp->nheld == dp->held_cap) {
		size_t cap = dp->held_cap ? dp->held_cap * 2 : 16;
		struct moat_held_link *v = realloc(dp->held, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		dp->held = v;
		dp->held_cap = cap;
	}
	h = &dp->held[dp->nheld];
	h->name = strdup(name);
	if (!h->name)
		return -ENOMEM;
	h->fd = fd;
	dp->nheld++;
	return 0;
}

static void held_drop(struct moat_dp *dp, const char *name)
{
	struct moat_held_link *h = held_find(dp, name);

	if (!h)
		return;
	close(h->fd);
	free(h->name);
	*h = dp->held[--dp->nheld];
}

void moat_dp_held_free(struct moat_dp *dp)
{
	for (size_t i = 0; i < dp->nheld; i++) {
		close(dp->held[i].fd);
		free(dp->held[i].name);
	}
	free(dp->held);
	dp->held = NULL;
	dp->nheld = dp->held_cap = 0;
}

int moat_dp_repin(struct moat_dp *dp)
{
	char path[PATH_MAX];
	int n, err;

	if (dp->no_pin)
		return 0;
	n = moat_dp_repin_maps(dp);
	if (n < 0)
		return n;
	snprintf(path, sizeof(path), "%s/links", dp->pin_dir);
	err = moat_dp_mkdir_p(path, 0700);
	if (err)
		return err;
	for (size_t i = 0; i < dp->nheld;) {
		struct moat_held_link *h = &dp->held[i];
		__u32 ifindex = 0;
		if (link_path(dp, h->name, path, sizeof(path)) || !access(path, F_OK)) {
			i++;
			continue;
		}
		if (link_ifindex(h->fd, &ifindex) || !ifindex) {
			/* detached (its device gone, or uninstalled): let it go */
			held_drop(dp, h->name);
			continue;
		}
		if (bpf_obj_pin(h->fd, path))
			return -errno;
		n++;
		i++;
	}
	return n;
}

static void why(struct moat_attach_info *info, enum moat_mode m, const char *fmt, int err)
{
	char buf[128];

	snprintf(buf, sizeof(buf), fmt, strerror(-err));
	snprintf(info->why[m], sizeof(info->why[m]), "%s", buf);
}

int moat_dp_attach(struct moat_dp *dp, const struct moat_attach_req *req, struct moat_attach_info *info)
{
	char path[PATH_MAX];
	int prog_fd, link_fd = -1, self_ns = -1, err;
	enum moat_mode first, last;
	__u32 cur_if = 0;

	memset(info, 0, sizeof(*info));
	if (dp->no_pin)
		return -EOPNOTSUPP;
	err = link_path(dp, req->name, path, sizeof(path));
	if (err)
		return err;
	prog_fd = moat_dp_prog_fd(dp, req->hook);
	if (prog_fd < 0)
		return prog_fd;

	if (req->netns_fd >= 0) {
		self_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (self_ns < 0)
			return -errno;
		if (setns(req->netns_fd, CLONE_NEWNET)) {
			err = -errno;
			close(self_ns);
			return err;
		}
	}

	/* An existing link on the same interface gets the new program in one
	 * step: there is no moment without a program. */
	link_fd = bpf_obj_get(path);
	if (link_fd >= 0) {
		if (link_ifindex(link_fd, &cur_if) == 0 && cur_if == (__u32)req->ifindex) {
			struct bpf_link_info li;
			__u32 len = sizeof(li);
			memset(&li, 0, sizeof(li));
			if (bpf_link_update(link_fd, prog_fd, NULL) == 0) {
				info->replaced = true;
				info->mode = MOAT_MODE_NATIVE;
				/* The mode is fixed at link creation; report what the
				 * kernel has. */
				if (bpf_obj_get_info_by_fd(link_fd, &li, &len) == 0) {
					LIBBPF_OPTS(bpf_xdp_query_opts, q);
					if (bpf_xdp_query(req->ifindex, 0, &q) == 0) {
						if (q.attach_mode == XDP_ATTACHED_SKB)
							info->mode = MOAT_MODE_GENERIC;
						else if (q.attach_mode == XDP_ATTACHED_HW)
							info->mode = MOAT_MODE_HW;
					}
				}
				err = 0;
				goto out;
			}
		}
		/* stale (device gone or reused): drop it */
		close(link_fd);
		link_fd = -1;
		unlink(path);
		held_drop(dp, req->name);
	}

	first = req->mode == MOAT_MODE_AUTO ? MOAT_MODE_HW : req->mode;
	last = req->mode == MOAT_MODE_AUTO ? MOAT_MODE_GENERIC : req->mode;
	err = -ENODEV;
	for (enum moat_mode m = first; m <= last; m++) {
		LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = mode_flags[m]);

		if (m == MOAT_MODE_HW && req->mode == MOAT_MODE_AUTO && !req->hw_capable) {
			snprintf(info->why[m], sizeof(info->why[m]),
				 "the NIC has no XDP hardware offload (profile and probe)");
			continue;
		}
		link_fd = bpf_link_create(prog_fd, req->ifindex, BPF_XDP, &lo);
		if (link_fd >= 0) {
			info->mode = m;
			err = 0;
			break;
		}
		err = -errno;
		if (m == MOAT_MODE_HW)
			why(info, m,
			    "kernel refused hardware mode: %s (the full program is "
			    "not offloadable; see docs/offload.md)",
			    err);
		else if (m == MOAT_MODE_NATIVE && err == -EOPNOTSUPP)
			why(info, m, "driver has no native XDP: %s", err);
		else if (err == -EBUSY || err == -EEXIST)
			why(info, m, "another XDP program is attached: %s", err);
		else
			why(info, m, "%s", err);
	}
	if (err)
		goto out;
	if (bpf_obj_pin(link_fd, path)) {
		err = -errno;
		goto out;
	}
out:
	/* held: the link stays attached even if its pin is removed */
	if (link_fd >= 0 && (err || held_put(dp, req->name, link_fd)))
		close(link_fd);
	if (self_ns >= 0) {
		if (setns(self_ns, CLONE_NEWNET) && !err)
			err = -errno;
		close(self_ns);
	}
	return err;
}

int moat_dp_detach(struct moat_dp *dp, const char *name)
{
	char path[PATH_MAX];
	int fd, err;

	err = link_path(dp, name, path, sizeof(path));
	if (err)
		return err;
	fd = bpf_obj_get(path);
	if (fd < 0) {
		err = -errno;
		if (!held_find(dp, name))
			return err;
		err = 0; /* its pin removed: the link we hold */
	} else {
		/* Detach now, even if another process still holds the link. */
		if (bpf_link_detach(fd) && errno != EINVAL && errno != ENOLINK)
			err = -errno;
		close(fd);
		if (unlink(path) && !err)
			err = -errno;
	}
	if (held_find(dp, name)) {
		bpf_link_detach(held_find(dp, name)->fd);
		held_drop(dp, name);
	}
	return err;
}

int moat_dp_links(struct moat_dp *dp, int (*fn)(const char *name, bool alive, void *arg), void *arg)
{
	char dir[PATH_MAX], path[PATH_MAX + 256];
	struct dirent *de;
	DIR *d;
	int err = 0;

	snprintf(dir, sizeof(dir), "%s/links", dp->pin_dir);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		__u32 ifindex = 0;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		if (link_ifindex(fd, &ifindex))
			ifindex = 0;
		close(fd);
		err = fn(de->d_name, ifindex != 0, arg);
		if (err)
			break;
	}
	closedir(d);
	return err;
}
