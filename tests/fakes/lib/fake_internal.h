/*
 * fake_internal.h — what the files of the fake library share (not for fakes: they use
 * fake.h). request.c owns the request and its reply; fake.c the server around them.
 */
#ifndef TRYON_FAKE_INTERNAL_H
#define TRYON_FAKE_INTERNAL_H

#include <microhttpd.h>

#include "fake.h"

#define MAX_REPLY_HEADERS 16

typedef struct part {
  fake_part pub;
  char *name, *filename, *content_type;
  unsigned char *data;
  size_t len, cap;
} part;

typedef struct reply_header {
  char *name, *value;
} reply_header;

struct fake_request {
  fake *f;
  const char *fake_name; /* for messages */
  struct MHD_Connection *c;
  char *uri; /* raw, with the query */
  const char *path, *method;
  const fake_route *route;
  const char *tail;
  unsigned char *body;
  size_t len, cap;
  bool started, too_big;
  bool json_parsed, form_parsed, form_ok;
  cJSON *json;
  part **parts;
  size_t nparts, parts_cap;
  /* the reply */
  bool replied, drop;
  unsigned int status;
  char *type;
  unsigned char *rbody;
  size_t rlen;
  reply_header hdrs[MAX_REPLY_HEADERS];
  size_t nhdrs;
};

/* Appends `n` bytes to a growing buffer, always NUL-terminated; false beyond
 * FAKE_MAX_BODY or when out of memory. */
bool fake__grow(unsigned char **buf, size_t *len, size_t *cap, const void *p, size_t n);
/* Frees a request and everything it holds. NULL: no-op. */
void fake__request_free(fake_request *r);
/* Queues the reply left in `r` (HTTP 500 when none); MHD_NO (the connection closes)
 * for a drop. */
enum MHD_Result fake__request_send(fake_request *r);

#endif
