/* SPDX-License-Identifier: Apache-2.0 */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H

#include <stdbool.h>
#include "daemon.h"

void moatd_config_defaults(struct moatd_config *c);
/* Frees every string setting (the table's and config_file). */
void moatd_config_free(struct moatd_config *c);
/* Reads FILE over *c (only the settings that may change at run time when
 * only_live).  On error *c is unchanged and err names the setting. */
int moatd_config_load(const char *file, struct moatd_config *c, bool only_live, char *err, size_t errlen);

#endif
