/*
 * api_test.h - what the api module's test programs share: request headers as a small
 * table, a response header by name, and one body-less request planned and handled.
 * Header-only (static inline), for the test programs in libtryon/api/tests.
 */
#ifndef TRYON_API_TEST_H
#define TRYON_API_TEST_H

#include <string.h>
#include <strings.h>

#include <tryon/api.h>

/* Up to four request headers. */
typedef struct hdrs {
  const char *names[4];
  const char *values[4];
} hdrs;

/* A tryon_api_header_fn over `hdrs`. */
static inline const char *lookup(void *ud, const char *name) {
  const hdrs *h = ud;
  for (int i = 0; i < 4 && h->names[i]; i++) {
    if (strcasecmp(h->names[i], name) == 0)
      return h->values[i];
  }
  return NULL;
}

/* A response header's value by name, or NULL. */
static inline const char *resp_header(const tryon_api_response *r, const char *name) {
  for (size_t i = 0; i < r->nheaders; i++) {
    if (strcasecmp(r->headers[i].name, name) == 0)
      return r->headers[i].value;
  }
  return NULL;
}

/* Plans (and, unless done, handles) a body-less request from 192.0.2.7. */
static inline void api_serve(tryon_api *api, const char *method, const char *path, hdrs *h,
                             tryon_api_response *resp, tryon_api_plan *plan) {
  tryon_api_request req = {
      .method = method, .path = path, .client_ip = "192.0.2.7", .header = lookup, .header_ud = h};
  tryon_api_response_init(resp);
  tryon_api_plan_request(api, &req, plan, resp);
  if (!plan->done)
    tryon_api_handle(api, plan, &req, resp);
}

#endif /* TRYON_API_TEST_H */
