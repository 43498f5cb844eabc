// SPDX-License-Identifier: Apache-2.0
/* attachcheck: which XDP mode does moat's loader pick on an interface, and
 * why were the better modes rejected?  For tests/e2e/attach_modes.sh.
 *
 *   attachcheck [--netns PATH] [--mode auto|hw|native|generic]
 *               [--hook from-pod|to-pod|uplink] [--keep] IFNAME
 *
 * Opens the datapath with a private temporary pin directory, attaches the
 * hook's program to IFNAME (in PATH's network namespace, default ours) with
 * moat_dp_attach, prints
 *
 *   mode generic
 *   why hw: the NIC has no XDP hardware offload (profile and probe)
 *   why native: driver has no native XDP: Operation not supported
 *
 * then detaches and removes every pin (moat_dp_uninstall), unless --keep is
 * given: then it prints "pin-dir DIR" and waits for SIGTERM/SIGINT or EOF on
 * stdin before cleaning up (so a test can look at the attached program).
 * Exit 0 attached, 1 attach failed (the why lines say why), 2 other
 * errors, 64 usage. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dp.h"

static void usage(void)
{
	fprintf(stderr, "usage: attachcheck [--netns PATH] [--mode auto|hw|native|generic]\n"
			"                   [--hook from-pod|to-pod|uplink] [--keep] IFNAME\n");
	exit(64);
}

static volatile sig_atomic_t stop;
static void on_sig(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "netns", required_argument, NULL, 'n' },
					      { "mode", required_argument, NULL, 'm' },
					      { "hook", required_argument, NULL, 'k' },
					      { "keep", no_argument, NULL, 'K' },
					      { 0 } };
	const char *netns = NULL, *ifname;
	enum moat_mode mode = MOAT_MODE_AUTO;
	int hook = MOAT_HOOK_UPLINK, ns_fd = -1, self_fd = -1, ifindex, c, err, rc = 0;
	bool keep = false, adopted = false;
	char pin_dir[] = MOAT_PIN_ROOT "/attachcheck-XXXXXX"; /* bpffs refuses dots */
	struct moat_dp_opts dopts = { 0 };
	struct moat_attach_req req = { 0 };
	struct moat_attach_info info;
	struct moat_dp *dp = NULL;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			netns = optarg;
			break;
		case 'm':
			if (moat_mode_parse(optarg, &mode))
				usage();
			break;
		case 'k':
			if (!strcmp(optarg, "from-pod"))
				hook = MOAT_HOOK_FROM_POD;
			else if (!strcmp(optarg, "to-pod"))
				hook = MOAT_HOOK_TO_POD;
			else if (!strcmp(optarg, "uplink"))
				hook = MOAT_HOOK_UPLINK;
			else
				usage();
			break;
		case 'K':
			keep = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1)
		usage();
	ifname = argv[optind];

	/* The interface index is looked up inside its namespace; the datapath
	 * is opened in ours (bpffs pins belong to our mount namespace). */
	if (netns) {
		ns_fd = open(netns, O_RDONLY | O_CLOEXEC);
		self_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		if (ns_fd < 0 || self_fd < 0 || setns(ns_fd, CLONE_NEWNET)) {
			fprintf(stderr, "attachcheck: netns %s: %s\n", netns, strerror(errno));
			return 2;
		}
	}
	ifindex = (int)if_nametoindex(ifname);
	if (netns && setns(self_fd, CLONE_NEWNET)) {
		fprintf(stderr, "attachcheck: back to own netns: %s\n", strerror(errno));
		return 2;
	}
	if (!ifindex) {
		fprintf(stderr, "attachcheck: no interface %s\n", ifname);
		return 2;
	}

	if (!mkdtemp(pin_dir)) {
		fprintf(stderr, "attachcheck: mkdtemp %s: %s (is bpffs mounted?)\n", pin_dir,
			strerror(errno));
		return 2;
	}
	dopts.pin_dir = pin_dir;
	dopts.events = false;
	/* small tables: this only needs the programs */
	dopts.max_policy = 1024;
	dopts.max_ips = 1024;
	dopts.max_ct = 1024;
	err = moat_dp_open(&dopts, &dp, &adopted);
	if (err) {
		fprintf(stderr, "attachcheck: moat_dp_open: %s\n", strerror(-err));
		moat_dp_uninstall(pin_dir);
		return 2;
	}
	req.hook = hook;
	req.ifindex = ifindex;
	req.netns_fd = ns_fd;
	req.mode = mode;
	req.hw_capable = false;
	req.name = "attachcheck";
	err = moat_dp_attach(dp, &req, &info);
	if (err) {
		printf("mode none\n");
		printf("error %s\n", strerror(-err));
		rc = 1;
	} else {
		printf("mode %s\n", moat_mode_name(info.mode));
	}
	for (int m = MOAT_MODE_HW; m < MOAT_MODE_MAX; m++)
		if (info.why[m][0])
			printf("why %s: %s\n", moat_mode_name(m), info.why[m]);
	if (!err && keep) {
		printf("pin-dir %s\n", pin_dir);
		fflush(stdout);
		signal(SIGTERM, on_sig);
		signal(SIGINT, on_sig);
		char b[64];
		while (!stop && read(0, b, sizeof(b)) > 0)
			;
	}
	fflush(stdout);
	if (!err && moat_dp_detach(dp, "attachcheck"))
		rc = rc ? rc : 2;
	moat_dp_close(dp);
	if (moat_dp_uninstall(pin_dir)) {
		fprintf(stderr, "attachcheck: uninstall %s failed\n", pin_dir);
		rc = rc ? rc : 2;
	}
	if (ns_fd >= 0)
		close(ns_fd);
	if (self_fd >= 0)
		close(self_fd);
	return rc;
}
