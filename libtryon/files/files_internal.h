/*
 * Internal to the files module (and its tests).
 */
#ifndef TRYON_FILES_INTERNAL_H
#define TRYON_FILES_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

/* Whether an ICC profile may be handed to lcms (see image.c). */
bool tryon__files_icc_safe(const void *data, size_t len);

#endif
