// SPDX-License-Identifier: Apache-2.0
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <bpf/libbpf.h>

#include "log.h"

int moat_log_level = MOAT_LOG_INFO;

static const char *const names[] = { "error", "warn", "info", "debug", "verbose" };

void moat_log(int level, const char *fmt, ...)
{
	char buf[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if (level > moat_log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
		tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		names[level < 0 ? 0 :
		      level > 4 ? 4 :
				  level],
		buf);
}

int moat_log_parse_level(const char *s)
{
	for (int i = 0; i < 5; i++)
		if (!strcasecmp(s, names[i]))
			return i;
	return -1;
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char buf[1024];
	int ours = level == LIBBPF_WARN ? MOAT_LOG_INFO :
		   level == LIBBPF_INFO ? MOAT_LOG_DEBUG :
					  MOAT_LOG_VERBOSE;
	size_t n;

	if (ours > moat_log_level)
		return 0;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = 0;
	moat_log(ours, "  libbpf: %s", buf);
	return 0;
}

void moat_log_hook_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
