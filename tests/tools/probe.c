// SPDX-License-Identifier: Apache-2.0
/* probe: real traffic for moat's tests, demo and conformance runs.
 *
 *   probe serve   [--tcp P,..] [--udp P,..] [--sctp P,..] [--addr A] [--name N]
 *                 [--netns PATH] [-v]
 *   probe connect --proto tcp|udp|sctp ADDR PORT [--timeout SEC] [--src ADDR]
 *                 [--netns PATH] [--reply] [-q]
 *   probe batch   [--timeout SEC] [--parallel N] [-v]
 *                 < lines "ID NETNS_PATH PROTO ADDR PORT" (NETNS_PATH "-": current)
 *
 * Verdicts (connect's exit code and output, batch's second word):
 *   0 ok       TCP handshake done; UDP reply; SCTP INIT-ACK with our tag
 *   1 timeout  nothing came back in time: what a silent drop looks like
 *   2 refused  RST, ICMP error, or any local error (bad netns, no route)
 * Usage errors exit 64.
 *
 * SCTP: this kernel has no SCTP, so both sides use raw IP-protocol-132
 * sockets: the client sends an INIT, the server answers INITs to its ports
 * with an INIT-ACK (vtag = the INIT's initiate tag, CRC32c).  Only that
 * INIT-ACK counts: a peer without a server answers with ICMP protocol
 * unreachable and a server ignores INITs to ports it does not serve, so an
 * SCTP probe is only ever ok or timeout (refused only for local errors).
 *
 * UDP and SCTP replies leave from the address the request was sent to
 * (IP_PKTINFO / IPV6_PKTINFO): a reply from another local address (say
 * 169.254.1.1 on a node) would be dropped by the client's connected socket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define EX_USAGE_      64
#define MAX_PORTS      128 /* per protocol, keeps fds bounded */
#define MAX_JOBS       100000
#define MAX_PARALLEL   4096
#define DEF_PARALLEL   512
#define DEF_TIMEOUT_MS 2000
#define RESEND_MS      500 /* UDP/SCTP request retransmission */
#define NAME_MAX_      64
#define IPPROTO_SCTP_  132

enum verdict {
	V_OK = 0,
	V_TIMEOUT = 1,
	V_REFUSED = 2
};
static const char *const verdict_name[] = { "ok", "timeout", "refused" };

enum proto {
	P_TCP,
	P_UDP,
	P_SCTP
};

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

static const char *prog = "probe";
static bool quiet;               /* no reasons on stderr (batch children) */
static char what[320] = "probe"; /* prefix of reasons: "[ID] proto addr:port" */

static void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx_(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n, k;

	if (quiet)
		return;
	/* one write: batch children share stderr */
	n = snprintf(buf, sizeof(buf), "%s: %s: ", prog, what);
	if (n < 0 || n >= (int)sizeof(buf) / 2)
		n = (int)sizeof(buf) / 2;
	va_start(ap, fmt);
	k = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = k < 0 ? n : (n + k > (int)sizeof(buf) - 2 ? (int)sizeof(buf) - 2 : n + k);
	buf[n++] = '\n';
	if (write(STDERR_FILENO, buf, (size_t)n) < 0)
		return;
}

static void usage(FILE *f)
{
	fprintf(f, "usage:\n"
		   "  probe serve [--tcp P,..] [--udp P,..] [--sctp P,..] [--addr A] [--name N]\n"
		   "              [--netns PATH] [-v]\n"
		   "  probe connect --proto tcp|udp|sctp ADDR PORT [--timeout SEC] [--src ADDR]\n"
		   "              [--netns PATH] [--reply] [-q]\n"
		   "  probe batch [--timeout SEC] [--parallel N] [-v]  < 'ID NETNS PROTO ADDR PORT' lines\n"
		   "connect prints ok (exit 0), timeout (1) or refused (2); usage errors exit 64.\n"
		   "Ports: 80,81,9000-9010.  Addresses with ':' are IPv6.  SCTP runs on raw sockets\n"
		   "(INIT/INIT-ACK only) and is ok or timeout.\n");
}

static __attribute__((noreturn)) void usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fprintf(stderr, "run '%s help' for usage\n", prog);
	exit(EX_USAGE_);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* poll one fd until deadline: revents, 0 on timeout, -errno */
static int poll_until(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int64_t left = deadline - now_ms();
		int n;

		if (left <= 0)
			return 0;
		n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return p.revents;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

/* ---- parsing ----------------------------------------------------------------- */

static int parse_addr(const char *s, uint16_t port, struct addr *a)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST };
	struct addrinfo *res = NULL;
	char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 4];
	size_t n = strlen(s);

	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	if (s[0] == '[' && s[n - 1] == ']') { /* [v6] */
		memcpy(buf, s + 1, n - 2);
		buf[n - 2] = 0;
	} else {
		memcpy(buf, s, n + 1);
	}
	hints.ai_family = strchr(buf, ':') ? AF_INET6 : AF_INET;
	if (getaddrinfo(buf, NULL, &hints, &res) || !res)
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
	a->len = res->ai_addrlen;
	freeaddrinfo(res);
	if (a->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
	return 0;
}

static const char *addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)sa;
		inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
		port = ntohs(s->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else {
		const struct sockaddr_in6 *s = (const void *)sa;
		inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
		/* NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage): accept4 filled it (peer is zeroed before) */
		port = ntohs(s->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	}
	return buf;
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
	unsigned long v;

	if (parse_uint(s, 1, 65535, &v))
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* seconds, fractions allowed: "2", "0.5" */
static int parse_timeout(const char *s, int *ms)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 3600)
		return -EINVAL;
	*ms = (int)(v * 1000 + 0.5);
	if (*ms < 1)
		*ms = 1;
	return 0;
}

static int parse_proto(const char *s, enum proto *p)
{
	if (!strcasecmp(s, "tcp"))
		*p = P_TCP;
	else if (!strcasecmp(s, "udp"))
		*p = P_UDP;
	else if (!strcasecmp(s, "sctp"))
		*p = P_SCTP;
	else
		return -EINVAL;
	return 0;
}

/* "80,81,9000-9010" appended to ports[*n] (max MAX_PORTS, no duplicates) */
static int parse_port_list(const char *s, uint16_t *ports, int *n)
{
	char *copy = strdup(s), *save = NULL, *tok;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *dash = strchr(tok, '-');
		uint16_t lo, hi;

		if (dash) {
			*dash = 0;
			if (parse_port(tok, &lo) || parse_port(dash + 1, &hi) || hi < lo) {
				err = -EINVAL;
				goto out;
			}
		} else {
			if (parse_port(tok, &lo)) {
				err = -EINVAL;
				goto out;
			}
			hi = lo;
		}
		for (unsigned p = lo; p <= hi; p++) {
			bool dup = false;

			for (int i = 0; i < *n; i++)
				dup |= ports[i] == p;
			if (dup)
				continue;
			if (*n >= MAX_PORTS) {
				err = -E2BIG;
				goto out;
			}
			ports[(*n)++] = (uint16_t)p;
		}
	}
	if (*n == 0)
		err = -EINVAL;
out:
	free(copy);
	return err;
}

static int enter_netns(const char *path)
{
	int fd, err = 0;

	if (!path || !strcmp(path, "-"))
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (setns(fd, CLONE_NEWNET))
		err = -errno;
	close(fd);
	return err;
}

static void raise_nofile(void)
{
	struct rlimit r;

	if (!getrlimit(RLIMIT_NOFILE, &r) && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

static void set_rcvbuf(int fd, int bytes)
{
	/* many probes at once must not overflow a datagram socket's queue */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

/* ---- SCTP on raw sockets ---------------------------------------------------- */

#define SCTP_HDR           12
#define CHUNK_INIT         1
#define CHUNK_INIT_ACK     2
#define INIT_LEN           20 /* chunk header + fixed INIT/INIT-ACK fields */
#define PARAM_STATE_COOKIE 7

static uint32_t crc32c_table[256];

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc32c_table[i] = c;
	}
}

static uint32_t crc32c(const uint8_t *p, size_t n)
{
	uint32_t c = ~0u;

	if (!crc32c_table[1])
		crc32c_init();
	while (n--)
		c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}
static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
}

/* The checksum field holds the CRC32c little-endian (as Linux's sctp_compute_cksum). */
static void sctp_set_csum(uint8_t *pkt, size_t len)
{
	uint32_t c;

	memset(pkt + 8, 0, 4);
	c = crc32c(pkt, len);
	pkt[8] = c & 0xff;
	pkt[9] = (c >> 8) & 0xff;
	pkt[10] = (c >> 16) & 0xff;
	pkt[11] = c >> 24;
}

static bool sctp_csum_ok(const uint8_t *pkt, size_t len)
{
	uint8_t buf[2048];
	uint32_t want, got;

	if (len > sizeof(buf) || len < SCTP_HDR)
		return false;
	memcpy(buf, pkt, len);
	got = (uint32_t)pkt[8] | (uint32_t)pkt[9] << 8 | (uint32_t)pkt[10] << 16 | (uint32_t)pkt[11] << 24;
	memset(buf + 8, 0, 4);
	want = crc32c(buf, len);
	return got == want;
}

static uint32_t rand32(void)
{
	uint32_t v = 0;

	while (getrandom(&v, sizeof(v), 0) != sizeof(v))
		;
	return v;
}

/* INIT or INIT-ACK (with an optional state cookie); returns its length */
static size_t sctp_build_init(uint8_t *pkt, uint8_t type, uint16_t sport, uint16_t dport, uint32_t vtag,
			      uint32_t itag, const char *cookie)
{
	size_t len = SCTP_HDR + INIT_LEN, clen = cookie ? strlen(cookie) : 0;
	uint8_t *c = pkt + SCTP_HDR;

	memset(pkt, 0, SCTP_HDR + INIT_LEN + 4 + NAME_MAX_ + 4);
	put16(pkt, sport);
	put16(pkt + 2, dport);
	put32(pkt + 4, vtag);
	c[0] = type;
	c[1] = 0;
	put32(c + 4, itag);
	put32(c + 8, 65535);     /* a_rwnd */
	put16(c + 12, 1);        /* outbound streams */
	put16(c + 14, 1);        /* inbound streams */
	put32(c + 16, rand32()); /* initial TSN */
	if (type == CHUNK_INIT_ACK) {
		/* INIT-ACK must carry a state cookie: ours is the server's name */
		if (clen > NAME_MAX_)
			clen = NAME_MAX_;
		put16(c + INIT_LEN, PARAM_STATE_COOKIE);
		put16(c + INIT_LEN + 2, (uint16_t)(4 + clen));
		memcpy(c + INIT_LEN + 4, cookie, clen);
		put16(c + 2, (uint16_t)(INIT_LEN + 4 + clen));
		len += (4 + clen + 3) & ~(size_t)3; /* zero padding to 4 bytes */
	} else {
		put16(c + 2, INIT_LEN);
	}
	sctp_set_csum(pkt, len);
	return len;
}

/* SCTP payload of a raw datagram: IPv4 raw sockets include the IP header */
static const uint8_t *sctp_payload(int family, const uint8_t *buf, size_t n, size_t *len)
{
	if (family == AF_INET) {
		size_t ihl;

		if (n < 20 || (buf[0] >> 4) != 4 || buf[9] != IPPROTO_SCTP_)
			return NULL;
		ihl = (size_t)(buf[0] & 0xf) * 4;
		if (ihl < 20 || n < ihl)
			return NULL;
		buf += ihl;
		n -= ihl;
	}
	if (n < SCTP_HDR + INIT_LEN)
		return NULL;
	*len = n;
	return buf;
}

/* ---- client probes ----------------------------------------------------------- */

struct probe_req {
	enum proto proto;
	struct addr dst;
	const struct addr *src;
	int timeout_ms;
	char *reply; /* optional: what the server said */
	size_t reply_len;
};

static int open_sock(int family, int type, int protocol, const struct addr *src)
{
	int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);

	if (fd < 0)
		return -errno;
	if (src) {
		struct addr s = *src;

		if (s.ss.ss_family != family) {
			close(fd);
			return -EAFNOSUPPORT;
		}
		if (bind(fd, (struct sockaddr *)&s.ss, s.len)) {
			int err = -errno;
			close(fd);
			return err;
		}
	}
	return fd;
}

static void copy_reply(struct probe_req *r, const char *data, size_t n)
{
	size_t i, k = 0;

	if (!r->reply || !r->reply_len)
		return;
	for (i = 0; i < n && k + 1 < r->reply_len; i++) {
		char c = data[i];
		if (c == '\n' || c == '\r' || c == 0)
			break;
		r->reply[k++] = (c >= 0x20 && c < 0x7f) ? c : '?';
	}
	r->reply[k] = 0;
}

static enum verdict probe_tcp(struct probe_req *r)
{
	int64_t deadline = now_ms() + r->timeout_ms;
	int fd, ev, soerr = 0;
	socklen_t sl = sizeof(soerr);
	char buf[256];
	enum verdict v;

	fd = open_sock(r->dst.ss.ss_family, SOCK_STREAM, 0, r->src);
	if (fd < 0) {
		warnx_("socket/bind: %s", strerror(-fd));
		return V_REFUSED;
	}
	if (connect(fd, (struct sockaddr *)&r->dst.ss, r->dst.len) && errno != EINPROGRESS) {
		warnx_("connect: %s", strerror(errno));
		v = V_REFUSED;
		goto out;
	}
	ev = poll_until(fd, POLLOUT, deadline);
	if (ev == 0) {
		v = V_TIMEOUT;
		goto out;
	}
	if (ev < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl)) {
		warnx_("poll: %s", strerror(ev < 0 ? -ev : errno));
		v = V_REFUSED;
		goto out;
	}
	if (soerr) {
		warnx_("%s", strerror(soerr));
		v = soerr == ETIMEDOUT ? V_TIMEOUT : V_REFUSED;
		goto out;
	}
	v = V_OK;
	if (r->reply) {
		size_t got = 0;

		r->reply[0] = 0;
		while (got < sizeof(buf) - 1 && poll_until(fd, POLLIN, deadline) > 0) {
			ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
			if (n <= 0)
				break;
			got += (size_t)n;
			if (memchr(buf, '\n', got))
				break;
		}
		copy_reply(r, buf, got);
	}
out:
	close(fd);
	return v;
}

static enum verdict probe_udp(struct probe_req *r)
{
	int64_t deadline = now_ms() + r->timeout_ms;
	static const char req[] = "probe\n";
	char buf[512];
	enum verdict v = V_TIMEOUT;
	int fd;

	fd = open_sock(r->dst.ss.ss_family, SOCK_DGRAM, 0, r->src);
	if (fd < 0) {
		warnx_("socket/bind: %s", strerror(-fd));
		return V_REFUSED;
	}
	/* connected: an ICMP port unreachable comes back as ECONNREFUSED */
	if (connect(fd, (struct sockaddr *)&r->dst.ss, r->dst.len)) {
		warnx_("connect: %s", strerror(errno));
		v = V_REFUSED;
		goto out;
	}
	while (now_ms() < deadline) {
		int64_t next = now_ms() + RESEND_MS;

		if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) < 0 && errno != EAGAIN && errno != ENOBUFS &&
		    errno != EPERM) {
			/* EPERM: a local firewall dropped it, which is a drop */
			warnx_("send: %s", strerror(errno));
			v = V_REFUSED;
			goto out;
		}
		for (;;) {
			int ev = poll_until(fd, POLLIN, next < deadline ? next : deadline);
			ssize_t n;

			if (ev == 0)
				break;
			if (ev < 0) {
				warnx_("poll: %s", strerror(-ev));
				v = V_REFUSED;
				goto out;
			}
			n = recv(fd, buf, sizeof(buf), 0);
			if (n >= 0) {
				copy_reply(r, buf, (size_t)n);
				v = V_OK;
				goto out;
			}
			if (errno == EAGAIN || errno == EINTR)
				continue;
			warnx_("%s", strerror(errno));
			v = V_REFUSED;
			goto out;
		}
	}
out:
	close(fd);
	return v;
}

static enum verdict probe_sctp(struct probe_req *r)
{
	int64_t deadline = now_ms() + r->timeout_ms;
	int family = r->dst.ss.ss_family, fd;
	uint16_t dport, sport = (uint16_t)(49152 + rand32() % 16384);
	uint32_t itag;
	uint8_t pkt[256], buf[2048];
	struct addr dst = r->dst;
	enum verdict v = V_TIMEOUT;
	bool sent = false;
	size_t len;

	do
		itag = rand32();
	while (!itag);
	if (family == AF_INET) {
		dport = ntohs(((struct sockaddr_in *)&dst.ss)->sin_port);
		((struct sockaddr_in *)&dst.ss)->sin_port = 0;
	} else {
		dport = ntohs(((struct sockaddr_in6 *)&dst.ss)->sin6_port);
		((struct sockaddr_in6 *)&dst.ss)->sin6_port = 0; /* raw: 0 or the protocol */
	}
	fd = open_sock(family, SOCK_RAW, IPPROTO_SCTP_, NULL);
	if (fd < 0) {
		warnx_("raw socket: %s", strerror(-fd));
		return V_REFUSED;
	}
	if (r->src) {
		struct addr s = *r->src;

		if (family == AF_INET)
			((struct sockaddr_in *)&s.ss)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&s.ss)->sin6_port = 0;
		if (s.ss.ss_family != family || bind(fd, (struct sockaddr *)&s.ss, s.len)) {
			warnx_("bind: %s",
			       s.ss.ss_family != family ? "address family mismatch" : strerror(errno));
			v = V_REFUSED;
			goto out;
		}
	}
	/* connected: the kernel hands us only packets from the target */
	if (connect(fd, (struct sockaddr *)&dst.ss, dst.len)) {
		warnx_("connect: %s", strerror(errno));
		v = V_REFUSED;
		goto out;
	}
	len = sctp_build_init(pkt, CHUNK_INIT, sport, dport, 0, itag, NULL);
	while (now_ms() < deadline) {
		int64_t next = now_ms() + RESEND_MS;

		if (send(fd, pkt, len, MSG_NOSIGNAL) < 0) {
			/* Only a first, local failure (no route, bad address) is an error:
			 * later ones are pending ICMP errors, which mean nothing here. */
			if (!sent && errno != EPERM && errno != EAGAIN && errno != ENOBUFS) {
				warnx_("send: %s", strerror(errno));
				v = V_REFUSED;
				goto out;
			}
		}
		sent = true;
		for (;;) {
			int ev = poll_until(fd, POLLIN, next < deadline ? next : deadline);
			const uint8_t *s, *c;
			size_t sl;
			ssize_t n;

			if (ev <= 0)
				break;
			n = recv(fd, buf, sizeof(buf), 0);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					continue;
				continue; /* ICMP error reported on the socket: ignore */
			}
			s = sctp_payload(family, buf, (size_t)n, &sl);
			if (!s)
				continue;
			c = s + SCTP_HDR;
			if (get16(s) != dport || get16(s + 2) != sport || get32(s + 4) != itag ||
			    c[0] != CHUNK_INIT_ACK || get16(c + 2) < INIT_LEN ||
			    get16(c + 2) > sl - SCTP_HDR || !sctp_csum_ok(s, sl))
				continue;
			if (r->reply) {
				size_t off = INIT_LEN, clen = get16(c + 2);

				r->reply[0] = 0;
				while (off + 4 <= clen) {
					uint16_t pt = get16(c + off), pl = get16(c + off + 2);
					if (pl < 4 || off + pl > clen)
						break;
					if (pt == PARAM_STATE_COOKIE) {
						copy_reply(r, (const char *)c + off + 4, pl - 4u);
						break;
					}
					off += (pl + 3u) & ~3u;
				}
			}
			v = V_OK;
			goto out;
		}
	}
out:
	close(fd);
	return v;
}

static enum verdict run_probe(struct probe_req *r, const char *id)
{
	static const char *const pn[] = { "tcp", "udp", "sctp" };
	char a[80];

	snprintf(what, sizeof(what), "%s%s%s %s", id ? id : "", id ? " " : "", pn[r->proto],
		 addr_str((struct sockaddr *)&r->dst.ss, a, sizeof(a)));
	switch (r->proto) {
	case P_TCP:
		return probe_tcp(r);
	case P_UDP:
		return probe_udp(r);
	case P_SCTP:
		return probe_sctp(r);
	}
	return V_REFUSED;
}

static int cmd_connect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "proto", required_argument, NULL, 'p' }, { "timeout", required_argument, NULL, 't' },
		{ "src", required_argument, NULL, 's' },   { "netns", required_argument, NULL, 'n' },
		{ "reply", no_argument, NULL, 'r' },       { "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },        { 0 },
	};
	struct probe_req r = { .timeout_ms = DEF_TIMEOUT_MS };
	const char *src = NULL, *netns = NULL;
	bool have_proto = false, want_reply = false;
	struct addr srca;
	char reply[NAME_MAX_ + 1] = "";
	uint16_t port;
	enum verdict v;
	int c, err;

	while ((c = getopt_long(argc, argv, "p:t:s:n:rqh", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_proto(optarg, &r.proto))
				usage_error("bad protocol '%s' (tcp, udp or sctp)", optarg);
			have_proto = true;
			break;
		case 't':
			if (parse_timeout(optarg, &r.timeout_ms))
				usage_error("bad timeout '%s' (seconds, > 0)", optarg);
			break;
		case 's':
			src = optarg;
			break;
		case 'n':
			netns = optarg;
			break;
		case 'r':
			want_reply = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage_error("connect: bad option");
		}
	}
	if (!have_proto)
		usage_error("connect: --proto is required");
	if (argc - optind != 2)
		usage_error("connect: need ADDR PORT");
	if (parse_port(argv[optind + 1], &port))
		usage_error("bad port '%s'", argv[optind + 1]);
	if (parse_addr(argv[optind], port, &r.dst))
		usage_error("bad address '%s'", argv[optind]);
	if (src) {
		if (parse_addr(src, 0, &srca))
			usage_error("bad source address '%s'", src);
		if (srca.ss.ss_family != r.dst.ss.ss_family)
			usage_error("--src and ADDR must be the same IP version");
		r.src = &srca;
	}
	err = enter_netns(netns);
	if (err) {
		warnx_("netns %s: %s", netns, strerror(-err));
		puts("refused");
		return V_REFUSED;
	}
	if (want_reply) {
		r.reply = reply;
		r.reply_len = sizeof(reply);
	}
	v = run_probe(&r, NULL);
	if (v == V_OK && want_reply && reply[0])
		printf("ok %s\n", reply);
	else
		puts(verdict_name[v]);
	return v;
}

/* ---- batch ------------------------------------------------------------------- */

struct job {
	char *id;
	char *netns;
	struct probe_req req;
	enum verdict v;
};

static void free_jobs(struct job *jobs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(jobs[i].id);
		free(jobs[i].netns);
	}
	free(jobs);
}

/* "ID NETNS PROTO ADDR PORT"; blank lines and # comments are skipped */
static int read_jobs(FILE *in, int timeout_ms, struct job **out, size_t *count)
{
	struct job *jobs = NULL;
	size_t n = 0, cap = 0, lineno = 0, llen = 0;
	char *line = NULL;
	int err = 0;

	while (getline(&line, &llen, in) >= 0) {
		char *f[6], *save = NULL, *p;
		int nf = 0;
		uint16_t port;
		struct job *j;

		lineno++;
		if (strlen(line) > 4096) {
			fprintf(stderr, "%s: line %zu: too long\n", prog, lineno);
			err = -EINVAL;
			goto out;
		}
		for (p = strtok_r(line, " \t\r\n", &save); p && nf < 6; p = strtok_r(NULL, " \t\r\n", &save))
			f[nf++] = p;
		if (nf == 0 || f[0][0] == '#')
			continue;
		if (nf != 5) {
			fprintf(stderr, "%s: line %zu: expected 'ID NETNS PROTO ADDR PORT'\n", prog, lineno);
			err = -EINVAL;
			goto out;
		}
		if (n == MAX_JOBS) {
			fprintf(stderr, "%s: more than %d probes\n", prog, MAX_JOBS);
			err = -E2BIG;
			goto out;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			struct job *nj = realloc(jobs, ncap * sizeof(*jobs));

			if (!nj) {
				err = -ENOMEM;
				goto out;
			}
			jobs = nj;
			cap = ncap;
		}
		j = &jobs[n];
		memset(j, 0, sizeof(*j));
		j->req.timeout_ms = timeout_ms;
		if (parse_proto(f[2], &j->req.proto) || parse_port(f[4], &port) ||
		    parse_addr(f[3], port, &j->req.dst) || strlen(f[0]) > 256 || strlen(f[1]) >= PATH_MAX) {
			fprintf(stderr, "%s: line %zu: bad protocol, address, port or ID\n", prog, lineno);
			err = -EINVAL;
			goto out;
		}
		j->id = strdup(f[0]);
		j->netns = strdup(f[1]);
		n++;
		if (!j->id || !j->netns) {
			err = -ENOMEM;
			goto out;
		}
	}
	if (ferror(in))
		err = -EIO;
out:
	free(line);
	if (err) {
		free_jobs(jobs, n);
		return err;
	}
	*out = jobs;
	*count = n;
	return 0;
}

static __attribute__((noreturn)) void batch_child(struct job *j)
{
	int err;

	/* backstop: a child never outlives its probe by much */
	alarm((unsigned)(j->req.timeout_ms / 1000 + 5));
	err = enter_netns(j->netns);
	if (err) {
		quiet = false;
		snprintf(what, sizeof(what), "%s", j->id);
		warnx_("netns %s: %s", j->netns, strerror(-err));
		_exit(V_REFUSED);
	}
	_exit(run_probe(&j->req, j->id));
}

static int cmd_batch(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "parallel", required_argument, NULL, 'P' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int timeout_ms = DEF_TIMEOUT_MS, c, err;
	unsigned long parallel = DEF_PARALLEL;
	bool verbose = false;
	struct job *jobs = NULL;
	size_t n = 0, next = 0, running = 0, done = 0, counts[3] = { 0 };
	pid_t *pids = NULL;
	size_t *slot_job = NULL;
	int64_t t0 = now_ms();

	while ((c = getopt_long(argc, argv, "t:P:vh", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_timeout(optarg, &timeout_ms))
				usage_error("bad timeout '%s' (seconds, > 0)", optarg);
			break;
		case 'P':
			if (parse_uint(optarg, 1, MAX_PARALLEL, &parallel))
				usage_error("bad --parallel '%s' (1..%d)", optarg, MAX_PARALLEL);
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage_error("batch: bad option");
		}
	}
	if (optind != argc)
		usage_error("batch: probes come on stdin, not as arguments");
	err = read_jobs(stdin, timeout_ms, &jobs, &n);
	if (err)
		return EX_USAGE_;
	quiet = !verbose; /* children inherit: reasons only with -v */
	raise_nofile();
	pids = calloc(parallel, sizeof(*pids));
	slot_job = calloc(parallel, sizeof(*slot_job));
	if (!pids || !slot_job) {
		fprintf(stderr, "%s: out of memory\n", prog);
		err = -ENOMEM;
		goto out;
	}
	fflush(NULL);
	while (done < n) {
		while (next < n && running < parallel) {
			size_t s = 0;
			pid_t pid;

			while (pids[s])
				s++;
			pid = fork();
			if (pid == 0)
				batch_child(&jobs[next]);
			if (pid < 0) {
				if (running > 0)
					break; /* EAGAIN: wait for a child, then retry */
				fprintf(stderr, "%s: %s: fork: %s\n", prog, jobs[next].id, strerror(errno));
				jobs[next++].v = V_REFUSED;
				done++;
				continue;
			}
			pids[s] = pid;
			slot_job[s] = next++;
			running++;
		}
		if (running == 0)
			continue;
		for (;;) {
			int st;
			pid_t pid = waitpid(-1, &st, 0);
			size_t s;

			if (pid < 0) {
				if (errno == EINTR)
					continue;
				fprintf(stderr, "%s: waitpid: %s\n", prog, strerror(errno));
				err = -errno;
				goto out;
			}
			for (s = 0; s < parallel && pids[s] != pid; s++)
				;
			if (s == parallel)
				continue; /* not ours */
			if (WIFEXITED(st) && WEXITSTATUS(st) <= V_REFUSED) {
				jobs[slot_job[s]].v = (enum verdict)WEXITSTATUS(st);
			} else {
				fprintf(stderr, "%s: %s: probe died (status %#x)\n", prog,
					jobs[slot_job[s]].id, st);
				jobs[slot_job[s]].v = V_REFUSED;
			}
			pids[s] = 0;
			running--;
			done++;
			break;
		}
	}
	for (size_t i = 0; i < n; i++) {
		printf("%s %s\n", jobs[i].id, verdict_name[jobs[i].v]);
		counts[jobs[i].v]++;
	}
	if (verbose)
		fprintf(stderr, "%s: %zu probes in %.2f s: %zu ok, %zu timeout, %zu refused\n", prog, n,
			(double)(now_ms() - t0) / 1000, counts[V_OK], counts[V_TIMEOUT], counts[V_REFUSED]);
out:
	free(pids);
	free(slot_job);
	free_jobs(jobs, n);
	if (fflush(stdout))
		err = -EIO;
	return err ? V_REFUSED : 0;
}

/* ---- serve ------------------------------------------------------------------- */

enum skind {
	S_TCP,
	S_UDP,
	S_SCTP,
	S_SIGNAL
};

struct lsock {
	int fd;
	enum skind kind;
	int family;
	uint16_t port;
};

struct server {
	char name[NAME_MAX_ + 1];
	char line[NAME_MAX_ + 2]; /* name + '\n' */
	size_t line_len;
	uint16_t sctp_ports[MAX_PORTS];
	int n_sctp;
	bool verbose;
	struct lsock *socks;
	int n_socks, cap_socks;
};

static int add_sock(struct server *sv, int fd, enum skind kind, int family, uint16_t port)
{
	if (sv->n_socks == sv->cap_socks) {
		int ncap = sv->cap_socks ? sv->cap_socks * 2 : 16;
		struct lsock *ns = realloc(sv->socks, (size_t)ncap * sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		sv->socks = ns;
		sv->cap_socks = ncap;
	}
	sv->socks[sv->n_socks++] = (struct lsock){ .fd = fd, .kind = kind, .family = family, .port = port };
	return 0;
}

/* A listening/bound socket for one family; bind address from --addr or the wildcard. */
static int open_server_sock(int family, int type, int protocol, uint16_t port, const struct addr *bind_addr)
{
	struct addr a = { 0 };
	int fd, one = 1, err;

	fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
	if (fd < 0)
		return -errno;
	if (bind_addr) {
		a = *bind_addr;
	} else if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&a.ss;
		s->sin_family = AF_INET;
		a.len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a.ss;
		s->sin6_family = AF_INET6;
		a.len = sizeof(*s);
	}
	if (family == AF_INET)
		((struct sockaddr_in *)&a.ss)->sin_port = type == SOCK_RAW ? 0 : htons(port);
	else
		((struct sockaddr_in6 *)&a.ss)->sin6_port = type == SOCK_RAW ? 0 : htons(port);
	/* raw sockets are per family anyway (and refuse IPV6_V6ONLY) */
	if (family == AF_INET6 && type != SOCK_RAW &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)))
		goto fail;
	if (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		goto fail;
	if (type != SOCK_STREAM) {
		if (family == AF_INET && setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)))
			goto fail;
		if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)))
			goto fail;
		set_rcvbuf(fd, 4 << 20);
	}
	if (bind(fd, (struct sockaddr *)&a.ss, a.len))
		goto fail;
	if (type == SOCK_STREAM && listen(fd, 4096))
		goto fail;
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

static void serve_tcp(struct server *sv, struct lsock *l)
{
	for (;;) {
		struct sockaddr_storage peer = { 0 };
		socklen_t pl = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		char b[80];

		if (fd < 0)
			return; /* EAGAIN, or a connection reset before accept */
		if (sv->verbose)
			fprintf(stderr, "%s: tcp/%u <- %s\n", prog, l->port,
				addr_str((struct sockaddr *)&peer, b, sizeof(b)));
		if (send(fd, sv->line, sv->line_len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && sv->verbose)
			fprintf(stderr, "%s: tcp send: %s\n", prog, strerror(errno));
		close(fd);
	}
}

/* Reply with src = the request's destination; cmsg copied from the request's pktinfo. */
static ssize_t reply_from_dst(int fd, int family, const void *data, size_t len, struct sockaddr_storage *peer,
			      socklen_t pl, const struct msghdr *req)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr m = { .msg_name = peer, .msg_namelen = pl, .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	memset(&ctl, 0, sizeof(ctl));
	for (c = CMSG_FIRSTHDR((struct msghdr *)req); c; c = CMSG_NXTHDR((struct msghdr *)req, c)) {
		if (family == AF_INET && c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo in, out = { 0 };
			struct cmsghdr *o;

			memcpy(&in, CMSG_DATA(c), sizeof(in));
			out.ipi_spec_dst = in.ipi_spec_dst; /* our local address of the request */
			m.msg_control = ctl.buf;
			m.msg_controllen = CMSG_SPACE(sizeof(out));
			o = CMSG_FIRSTHDR(&m);
			o->cmsg_level = IPPROTO_IP;
			o->cmsg_type = IP_PKTINFO;
			o->cmsg_len = CMSG_LEN(sizeof(out));
			memcpy(CMSG_DATA(o), &out, sizeof(out));
			break;
		}
		if (family == AF_INET6 && c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo in, out = { 0 };
			struct cmsghdr *o;

			memcpy(&in, CMSG_DATA(c), sizeof(in));
			if (!IN6_IS_ADDR_MULTICAST(&in.ipi6_addr))
				out.ipi6_addr = in.ipi6_addr;
			/* link-local needs the interface; others follow the routes */
			if (IN6_IS_ADDR_LINKLOCAL(&in.ipi6_addr) ||
			    IN6_IS_ADDR_LINKLOCAL(&((struct sockaddr_in6 *)peer)->sin6_addr))
				out.ipi6_ifindex = in.ipi6_ifindex;
			m.msg_control = ctl.buf;
			m.msg_controllen = CMSG_SPACE(sizeof(out));
			o = CMSG_FIRSTHDR(&m);
			o->cmsg_level = IPPROTO_IPV6;
			o->cmsg_type = IPV6_PKTINFO;
			o->cmsg_len = CMSG_LEN(sizeof(out));
			memcpy(CMSG_DATA(o), &out, sizeof(out));
			break;
		}
	}
	return sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void serve_dgram(struct server *sv, struct lsock *l)
{
	for (int budget = 256; budget > 0; budget--) {
		uint8_t buf[2048];
		union {
			char b[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
			struct cmsghdr align;
		} ctl;
		struct sockaddr_storage peer;
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr m = { .msg_name = &peer,
				    .msg_namelen = sizeof(peer),
				    .msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = ctl.b,
				    .msg_controllen = sizeof(ctl.b) };
		ssize_t n = recvmsg(l->fd, &m, MSG_DONTWAIT);
		char b[80];

		if (n < 0)
			return; /* EAGAIN, or an ICMP error queued on the socket */
		if (l->kind == S_UDP) {
			if (sv->verbose)
				fprintf(stderr, "%s: udp/%u <- %s\n", prog, l->port,
					addr_str((struct sockaddr *)&peer, b, sizeof(b)));
			if (reply_from_dst(l->fd, l->family, sv->line, sv->line_len, &peer, m.msg_namelen,
					   &m) < 0 &&
			    sv->verbose)
				fprintf(stderr, "%s: udp reply: %s\n", prog, strerror(errno));
			continue;
		}

		/* SCTP: answer an INIT to a served port, ignore everything else */
		const uint8_t *s, *c;
		size_t sl;
		uint16_t sport, dport;
		bool served = false;
		uint8_t out[SCTP_HDR + INIT_LEN + 4 + NAME_MAX_ + 4];
		size_t ol;

		s = sctp_payload(l->family, buf, (size_t)n, &sl);
		if (!s)
			continue;
		c = s + SCTP_HDR;
		sport = get16(s);
		dport = get16(s + 2);
		for (int i = 0; i < sv->n_sctp; i++)
			served |= sv->sctp_ports[i] == dport;
		if (!served || c[0] != CHUNK_INIT || get32(s + 4) != 0 || get16(c + 2) < INIT_LEN ||
		    get16(c + 2) > sl - SCTP_HDR || get32(c + 4) == 0 || !sctp_csum_ok(s, sl))
			continue;
		if (l->family == AF_INET) {
			/* the raw IPv4 header tells us where the INIT was sent */
			struct sockaddr_in *p = (struct sockaddr_in *)&peer;
			p->sin_port = 0;
		} else {
			((struct sockaddr_in6 *)&peer)->sin6_port = 0;
		}
		if (sv->verbose) {
			addr_str((struct sockaddr *)&peer, b, sizeof(b));
			fprintf(stderr, "%s: sctp/%u <- %s port %u\n", prog, dport, b, sport);
		}
		ol = sctp_build_init(out, CHUNK_INIT_ACK, dport, sport, get32(c + 4), rand32() | 1, sv->name);
		if (reply_from_dst(l->fd, l->family, out, ol, &peer, m.msg_namelen, &m) < 0 && sv->verbose)
			fprintf(stderr, "%s: sctp reply: %s\n", prog, strerror(errno));
	}
}

static void print_ports(const char *label, const uint16_t *p, int n)
{
	if (!n)
		return;
	fprintf(stderr, " %s", label);
	for (int i = 0; i < n; i++)
		fprintf(stderr, "%c%u", i ? ',' : ' ', p[i]);
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tcp", required_argument, NULL, 'T' },
		{ "udp", required_argument, NULL, 'U' },
		{ "sctp", required_argument, NULL, 'S' },
		{ "addr", required_argument, NULL, 'a' },
		{ "name", required_argument, NULL, 'N' },
		{ "netns", required_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint16_t tcp[MAX_PORTS], udp[MAX_PORTS];
	int n_tcp = 0, n_udp = 0, c, err = 0, ep = -1, sfd = -1;
	const char *addr = NULL, *name = NULL, *netns = NULL;
	struct server sv = { 0 };
	struct addr bind_addr;
	int families[2], n_fam = 0;
	sigset_t mask;

	while ((c = getopt_long(argc, argv, "T:U:S:a:N:n:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'T':
			if (parse_port_list(optarg, tcp, &n_tcp))
				usage_error("bad --tcp '%s' (ports 1-65535, at most %d)", optarg, MAX_PORTS);
			break;
		case 'U':
			if (parse_port_list(optarg, udp, &n_udp))
				usage_error("bad --udp '%s' (ports 1-65535, at most %d)", optarg, MAX_PORTS);
			break;
		case 'S':
			if (parse_port_list(optarg, sv.sctp_ports, &sv.n_sctp))
				usage_error("bad --sctp '%s' (ports 1-65535, at most %d)", optarg, MAX_PORTS);
			break;
		case 'a':
			addr = optarg;
			break;
		case 'N':
			name = optarg;
			break;
		case 'n':
			netns = optarg;
			break;
		case 'v':
			sv.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage_error("serve: bad option");
		}
	}
	if (optind != argc)
		usage_error("serve: unexpected argument '%s'", argv[optind]);
	if (!n_tcp && !n_udp && !sv.n_sctp)
		usage_error("serve: nothing to serve (--tcp, --udp or --sctp)");
	if (addr && parse_addr(addr, 0, &bind_addr))
		usage_error("bad --addr '%s'", addr);
	if (name) {
		if (strlen(name) > NAME_MAX_ || strpbrk(name, "\n\r"))
			usage_error("bad --name (at most %d characters, one line)", NAME_MAX_);
		strcpy(sv.name, name);
	} else if (gethostname(sv.name, sizeof(sv.name) - 1)) {
		strcpy(sv.name, "probe");
	}
	sv.line_len = (size_t)snprintf(sv.line, sizeof(sv.line), "%s\n", sv.name);
	err = enter_netns(netns);
	if (err) {
		fprintf(stderr, "%s: netns %s: %s\n", prog, netns, strerror(-err));
		return 1;
	}
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);

	if (addr) {
		families[n_fam++] = bind_addr.ss.ss_family;
	} else {
		families[n_fam++] = AF_INET;
		families[n_fam++] = AF_INET6;
	}
	for (int f = 0; f < n_fam; f++) {
		int fam = families[f];
		const struct addr *ba = addr ? &bind_addr : NULL;
		/* IPv6 may be off in a netns: without --addr, serve IPv4 only then */
		bool optional = !addr && fam == AF_INET6;
		int fd;

		for (int i = 0; i < n_tcp + n_udp; i++) {
			bool is_tcp = i < n_tcp;
			uint16_t port = is_tcp ? tcp[i] : udp[i - n_tcp];

			fd = open_server_sock(fam, is_tcp ? SOCK_STREAM : SOCK_DGRAM, 0, port, ba);
			if (fd < 0) {
				if (optional && (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL))
					break;
				fprintf(stderr, "%s: %s/%u (%s): %s\n", prog, is_tcp ? "tcp" : "udp", port,
					fam == AF_INET ? "IPv4" : "IPv6", strerror(-fd));
				err = fd;
				goto out;
			}
			err = add_sock(&sv, fd, is_tcp ? S_TCP : S_UDP, fam, port);
			if (err) {
				close(fd);
				goto out;
			}
		}
		if (sv.n_sctp) {
			fd = open_server_sock(fam, SOCK_RAW, IPPROTO_SCTP_, 0, ba);
			if (fd < 0) {
				if (optional && (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL))
					continue;
				fprintf(stderr, "%s: sctp raw socket (%s): %s\n", prog,
					fam == AF_INET ? "IPv4" : "IPv6", strerror(-fd));
				err = fd;
				goto out;
			}
			err = add_sock(&sv, fd, S_SCTP, fam, 0);
			if (err) {
				close(fd);
				goto out;
			}
		}
	}

	/* TERM/INT through a signalfd: no race between a flag and epoll_wait */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || ep < 0) {
		err = -errno;
		fprintf(stderr, "%s: epoll/signalfd: %s\n", prog, strerror(errno));
		goto out;
	}
	err = add_sock(&sv, sfd, S_SIGNAL, 0, 0);
	if (err)
		goto out;
	for (int i = 0; i < sv.n_socks; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, sv.socks[i].fd, &ev)) {
			err = -errno;
			fprintf(stderr, "%s: epoll_ctl: %s\n", prog, strerror(errno));
			goto out;
		}
	}
	fprintf(stderr, "%s: serving as '%s'", prog, sv.name);
	print_ports("tcp", tcp, n_tcp);
	print_ports("udp", udp, n_udp);
	print_ports("sctp(raw)", sv.sctp_ports, sv.n_sctp);
	fprintf(stderr, " on %s\n", addr ? addr : "0.0.0.0 and ::");
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			fprintf(stderr, "%s: epoll_wait: %s\n", prog, strerror(errno));
			goto out;
		}
		for (int i = 0; i < n; i++) {
			struct lsock *l = &sv.socks[evs[i].data.u32];

			switch (l->kind) {
			case S_TCP:
				serve_tcp(&sv, l);
				break;
			case S_UDP:
			case S_SCTP:
				serve_dgram(&sv, l);
				break;
			case S_SIGNAL:
				err = 0;
				goto out;
			}
		}
	}
out:
	for (int i = 0; i < sv.n_socks; i++)
		close(sv.socks[i].fd);
	free(sv.socks);
	if (ep >= 0)
		close(ep);
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2) {
		usage(stderr);
		return EX_USAGE_;
	}
	cmd = argv[1];
	/* getopt_long on the subcommand's arguments */
	argv[1] = argv[0];
	argc--;
	argv++;
	optind = 1;
	if (!strcmp(cmd, "serve"))
		return cmd_serve(argc, argv);
	if (!strcmp(cmd, "connect"))
		return cmd_connect(argc, argv);
	if (!strcmp(cmd, "batch"))
		return cmd_batch(argc, argv);
	if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		usage(stdout);
		return 0;
	}
	usage_error("unknown command '%s'", cmd);
}
