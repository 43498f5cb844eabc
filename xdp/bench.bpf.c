// SPDX-License-Identifier: GPL-2.0-only
/* Reference programs for benchmarks: the floor (empty program), a bare
 * XDP_DROP, a counting XDP_DROP/XDP_PASS for the receiving end, and the
 * XDP_TX program that turns BPF_PROG_TEST_RUN live frames into traffic. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bench_count SEC(".maps");

SEC("xdp")
int bench_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int bench_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int bench_count_drop(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *c = bpf_map_lookup_elem(&bench_count, &k);
	if (c)
		*c += 1;
	return XDP_DROP;
}

SEC("xdp")
int bench_count_pass(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *c = bpf_map_lookup_elem(&bench_count, &k);
	if (c)
		*c += 1;
	return XDP_PASS;
}

SEC("xdp")
int bench_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}
