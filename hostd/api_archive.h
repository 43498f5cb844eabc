/* SPDX-License-Identifier: Apache-2.0 */
/* The archive's control API (api_archive.c), dispatched from api.c:
 *   GET /v1/archives          segments the caller may see
 *   GET /v1/archives/query?since=&until=&namespace=&pod=&verdict=&policy=
 *                          &filter=<tcpdump expression>&format=pcapng|pcap&flows=0|1
 *                             the matching packets (and flow records), streamed
 * Tenancy on the server: a caller who is not platform-admin reads only the
 * partitions of its namespaces (see archive.h). */
#ifndef MOAT_API_ARCHIVE_H
#define MOAT_API_ARCHIVE_H

#include <microhttpd.h>
#include "auth.h"

struct moatd;

enum MHD_Result moat_api_archives(struct MHD_Connection *conn, struct moatd *d,
				  const struct moat_principal *who, const char *url);

#endif
