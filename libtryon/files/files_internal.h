/*
 * Internal to the files module (and its tests).
 */
#ifndef TRYON_FILES_INTERNAL_H
#define TRYON_FILES_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <tryon/core.h>

/* Whether an ICC profile may be handed to lcms (see image.c). */
bool tryon__files_icc_safe(const void *data, size_t len);

/* Logs what libvips said (debug only: it is for us, not the user) and clears its error
 * buffer, which would otherwise grow with every refused image. */
void tryon__files_vips_log_reason(const char *stage);
/* tryon__files_vips_log_reason, then sets `st` with a user-readable message, returned. */
tryon_status tryon__files_vips_failed(tryon_err *err, tryon_status st, const char *stage,
                                      const char *message);

#endif
