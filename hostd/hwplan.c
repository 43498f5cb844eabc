// SPDX-License-Identifier: Apache-2.0
/* moatd's attach plans; see hwplan.h. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "hwplan.h"
#include "fitcheck.h"
#include "pf.h"
#include "pfmgr.h"
#include "util.h"

struct fit_cache {
	char profile[PATH_MAX]; /* profile file */
	bool fits;
	char why[240];
};

struct moat_hwplan {
	char *dir;
	struct moat_pfmgr *pfmgr;
	bool prefilter;
	struct fit_cache fit[8];
	size_t nfit;
};

int moat_hwplan_new(const char *dir, struct moat_pfmgr *pfmgr, bool prefilter, struct moat_hwplan **ret)
{
	struct moat_hwplan *hp = xcalloc(1, sizeof(*hp));

	hp->dir = xstrdup(dir);
	hp->pfmgr = pfmgr;
	hp->prefilter = prefilter;
	*ret = hp;
	return 0;
}

void moat_hwplan_free(struct moat_hwplan *hp)
{
	if (!hp)
		return;
	free(hp->dir);
	free(hp);
}

void moat_hwplan_set_prefilter(struct moat_hwplan *hp, bool prefilter)
{
	if (hp)
		hp->prefilter = prefilter;
}

char *moat_hwplan_default_dir(void)
{
	char exe[PATH_MAX], *slash;
	ssize_t n;

	if (access("/usr/share/moat/hw/default.json", R_OK) == 0)
		return xstrdup("/usr/share/moat/hw");
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		slash = strrchr(exe, '/');
		if (slash) {
			char *d;
			*slash = 0;
			d = xasprintf("%s/../hw", exe); /* <tree>/<build dir>/moatd */
			if (access(d, R_OK) == 0) {
				char *r = realpath(d, NULL);
				free(d);
				if (r)
					return r;
			} else {
				free(d);
			}
		}
	}
	return xstrdup("/usr/share/moat/hw");
}

const char *moat_iface_plan_kind(const struct moat_iface_plan *p)
{
	return p && p->valid ? moat_plan_kind_name(p->kind) : "";
}

/* Does the pre-filter built into moatd fit the profile?  Checked once per
 * profile file: the object never changes while moatd runs. */
static const struct fit_cache *fits(struct moat_hwplan *hp, const char *path,
				    const struct moat_nic_profile *prof)
{
	struct moat_fit_report r;
	struct fit_cache *fc;
	char fdpath[64], err[160];
	const void *obj;
	size_t len;
	int fd, rc;

	for (size_t i = 0; i < hp->nfit; i++)
		if (!strcmp(hp->fit[i].profile, path))
			return &hp->fit[i];
	fc = &hp->fit[hp->nfit < 8 ? hp->nfit++ : 7];
	memset(fc, 0, sizeof(*fc));
	snprintf(fc->profile, sizeof(fc->profile), "%s", path);
	obj = moat_pf_object(&len);
	fd = memfd_create("moat-prefilter.bpf.o", MFD_CLOEXEC);
	if (fd < 0 || write(fd, obj, len) != (ssize_t)len) {
		snprintf(fc->why, sizeof(fc->why), "cannot check the pre-filter: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return fc;
	}
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	memset(&r, 0, sizeof(r));
	rc = moat_fit_check(fdpath, prof, &r, err, sizeof(err));
	close(fd);
	if (rc) {
		snprintf(fc->why, sizeof(fc->why), "cannot check the pre-filter: %.160s", err);
	} else if (r.nviol) {
		snprintf(fc->why, sizeof(fc->why), "%zu violations of profile %.31s, first: %.100s (insn %d)",
			 r.nviol, prof->name, r.viol[0].msg, r.viol[0].insn);
	} else {
		fc->fits = true;
	}
	moat_fit_report_free(&r);
	return fc;
}

static int probe_in(int netns_fd, int ifindex, struct moat_nic_probe *probe)
{
	int self = -1, rc;

	if (netns_fd >= 0) {
		self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (self < 0)
			return -errno;
		if (setns(netns_fd, CLONE_NEWNET)) {
			rc = -errno;
			close(self);
			return rc;
		}
	}
	rc = moat_nic_probe(ifindex, probe);
	if (self >= 0) {
		if (setns(self, CLONE_NEWNET) && !rc)
			rc = -errno;
		close(self);
	}
	return rc;
}

int moat_hwplan_attach(struct moat_hwplan *hp, struct moat_dp *dp, const struct moat_attach_req *req,
		       const struct moat_compiler *c, const char *ifname, struct moat_attach_info *info,
		       struct moat_iface_plan *plan)
{
	struct moat_nic_probe probe;
	struct moat_nic_profile prof;
	struct moat_plan_opts po;
	struct moat_attach_plan ap;
	struct moat_plan_result res;
	char path[PATH_MAX], err[200];
	bool probed;
	int rc;

	memset(plan, 0, sizeof(*plan));
	memset(&probe, 0, sizeof(probe));
	plan->valid = true;
	rc = probe_in(req->netns_fd, req->ifindex, &probe);
	if (rc == -ENODEV)
		return rc;
	probed = probe.have_driver || probe.have_features;
	snprintf(plan->driver, sizeof(plan->driver), "%s", probe.have_driver ? probe.driver : "");
	plan->have_features = probe.have_features;
	plan->xdp_features = probe.xdp_features;
	if (moat_nic_profile_find(hp->dir, probe.have_driver ? probe.driver : NULL, &prof, path, sizeof(path),
				  err, sizeof(err))) {
		/* no profiles: the loader's own hw -> native -> generic order */
		snprintf(plan->why[MOAT_PLAN_HW_PREFILTER], sizeof(plan->why[0]),
			 "no NIC profile under %.60s: %.90s", hp->dir, err);
		rc = moat_dp_attach(dp, req, info);
		plan->kind = info->mode == MOAT_MODE_GENERIC ? MOAT_PLAN_GENERIC : MOAT_PLAN_NATIVE;
		if (info->mode == MOAT_MODE_GENERIC)
			snprintf(plan->why[MOAT_PLAN_NATIVE], sizeof(plan->why[0]), "%s",
				 info->why[MOAT_MODE_NATIVE]);
		return rc;
	}
	snprintf(plan->profile, sizeof(plan->profile), "%.63s",
		 strrchr(path, '/') ? strrchr(path, '/') + 1 : path);

	memset(&po, 0, sizeof(po));
	po.requested = req->mode;
	po.prefilter = hp->prefilter && hp->pfmgr && req->hook == MOAT_HOOK_UPLINK;
	po.foreign_netns = req->netns_fd >= 0;
	po.prefilter_fits = false;
	if (po.prefilter && prof.off.supported) {
		const struct fit_cache *fc = fits(hp, path, &prof);
		po.prefilter_fits = fc->fits;
		if (!fc->fits)
			snprintf(err, sizeof(err), "%.190s", fc->why);
	}
	moat_plan_decide(&prof, probed ? &probe : NULL, &po, &ap);
	if (po.prefilter && prof.off.supported && !po.prefilter_fits)
		snprintf(ap.why[MOAT_PLAN_HW_PREFILTER], sizeof(ap.why[0]),
			 "the pre-filter does not fit: %.160s", err);
	/* the probe is advice, what succeeds decides: with no mode forced,
	 * native is still tried before generic (the kernel's own refusal is
	 * then recorded beside the probe's) */
	if (ap.full_mode == MOAT_MODE_GENERIC && req->mode == MOAT_MODE_AUTO) {
		ap.full_mode = MOAT_MODE_NATIVE;
		ap.full_may_fall_back = true;
	}
	rc = moat_plan_execute(dp, req, &ap, NULL, &res);
	*info = res.full;
	plan->kind = res.kind;
	memcpy(plan->why, res.why, sizeof(plan->why));
	if (rc)
		return rc;
	if (res.pf) {
		if (moat_pfmgr_take(hp->pfmgr, res.pf, ifname, c, err, sizeof(err))) {
			snprintf(plan->why[MOAT_PLAN_HW_PREFILTER], sizeof(plan->why[0]),
				 "the pre-filter's tables could not be written: %.140s", err);
			plan->kind = info->mode == MOAT_MODE_GENERIC ? MOAT_PLAN_GENERIC : MOAT_PLAN_NATIVE;
		}
	} else if (req->hook == MOAT_HOOK_UPLINK && hp->pfmgr && moat_pfmgr_ifname(hp->pfmgr) &&
		   !strcmp(moat_pfmgr_ifname(hp->pfmgr), ifname)) {
		moat_pfmgr_drop(hp->pfmgr, "the interface's plan has no hardware pre-filter any more");
	}
	return 0;
}

void moat_hwplan_detached(struct moat_hwplan *hp, const char *ifname)
{
	const char *cur = hp && hp->pfmgr ? moat_pfmgr_ifname(hp->pfmgr) : NULL;

	if (cur && ifname && !strcmp(cur, ifname))
		moat_pfmgr_drop(hp->pfmgr, "its interface is gone");
}
