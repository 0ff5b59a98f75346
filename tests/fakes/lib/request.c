/*
 * The request a handler sees and the reply it leaves (fake.h "requests", "replies"):
 * the body, the query and headers through libmicrohttpd, JSON parsed once, forms run
 * through libmicrohttpd's post processor once; the reply queued by fake.c afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_internal.h"

static int64_t clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fake_mono_ms(void) {
  return clock_ms(CLOCK_MONOTONIC);
}

int64_t fake_wall_ms(void) {
  return clock_ms(CLOCK_REALTIME);
}

char *fake_strdup(const char *s) {
  char *d = strdup(s != NULL ? s : "");
  if (d == NULL) {
    fputs("fake: out of memory\n", stderr);
    abort();
  }
  return d;
}

bool fake__grow(unsigned char **buf, size_t *len, size_t *cap, const void *p, size_t n) {
  if (n > FAKE_MAX_BODY - *len)
    return false;
  if (*len + n + 1 > *cap) {
    size_t nc = *cap ? *cap : 4096;
    while (nc < *len + n + 1)
      nc *= 2;
    unsigned char *nb = realloc(*buf, nc);
    if (nb == NULL)
      return false;
    *buf = nb, *cap = nc;
  }
  if (n > 0)
    memcpy(*buf + *len, p, n);
  *len += n;
  (*buf)[*len] = '\0';
  return true;
}

/* ------------------------------------------------------------------------ requests */

const char *fake_request_method(const fake_request *r) {
  return r->method;
}

const char *fake_request_path(const fake_request *r) {
  return r->path;
}

const char *fake_request_tail(const fake_request *r) {
  return r->tail != NULL ? r->tail : "";
}

const char *fake_request_query(const fake_request *r) {
  const char *q = r->uri != NULL ? strchr(r->uri, '?') : NULL;
  return q != NULL ? q + 1 : "";
}

const char *fake_request_arg(const fake_request *r, const char *name) {
  return MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, name);
}

const char *fake_request_header(const fake_request *r, const char *name) {
  return MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, name);
}

const unsigned char *fake_request_body(const fake_request *r, size_t *len) {
  if (len != NULL)
    *len = r->len;
  return r->body != NULL ? r->body : (const unsigned char *)"";
}

const cJSON *fake_request_json(fake_request *r) {
  if (!r->json_parsed) {
    r->json_parsed = true;
    if (r->len > 0)
      r->json = cJSON_ParseWithLength((const char *)r->body, r->len);
  }
  return r->json;
}

fake *fake_request_fake(const fake_request *r) {
  return r->f;
}

const fake_route *fake_request_route(const fake_request *r) {
  return r->route;
}

static enum MHD_Result on_form_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *filename, const char *content_type,
                                     const char *transfer_encoding, const char *data, uint64_t off,
                                     size_t size) {
  (void)kind, (void)transfer_encoding;
  fake_request *r = cls;
  if (key == NULL)
    return MHD_YES;
  if (off == 0 || r->nparts == 0) {
    if (r->nparts == r->parts_cap) {
      size_t nc = r->parts_cap ? 2 * r->parts_cap : 8;
      part **np = realloc(r->parts, nc * sizeof *np);
      if (np == NULL)
        return MHD_NO;
      r->parts = np, r->parts_cap = nc;
    }
    part *p = calloc(1, sizeof *p);
    if (p == NULL)
      return MHD_NO;
    p->name = fake_strdup(key);
    p->filename = filename != NULL ? fake_strdup(filename) : NULL;
    p->content_type = content_type != NULL ? fake_strdup(content_type) : NULL;
    r->parts[r->nparts++] = p;
  }
  part *p = r->parts[r->nparts - 1];
  if (!fake__grow(&p->data, &p->len, &p->cap, data, size))
    return MHD_NO;
  return MHD_YES;
}

bool fake_request_is_form(fake_request *r) {
  if (r->form_parsed)
    return r->form_ok;
  r->form_parsed = true;
  struct MHD_PostProcessor *pp = MHD_create_post_processor(r->c, 64 * 1024, on_form_field, r);
  if (pp == NULL)
    return false; /* not a form content type */
  r->form_ok = r->len == 0 || MHD_post_process(pp, (const char *)r->body, r->len) == MHD_YES;
  MHD_destroy_post_processor(pp);
  for (size_t i = 0; i < r->nparts; i++) {
    part *p = r->parts[i];
    if (p->data == NULL)
      (void)fake__grow(&p->data, &p->len, &p->cap, "", 0);
    p->pub = (fake_part){.name = p->name,
                         .filename = p->filename,
                         .content_type = p->content_type,
                         .data = p->data != NULL ? p->data : (const unsigned char *)"",
                         .len = p->len};
  }
  return r->form_ok;
}

const fake_part *fake_request_part_at(fake_request *r, size_t i) {
  (void)fake_request_is_form(r);
  return i < r->nparts ? &r->parts[i]->pub : NULL;
}

const fake_part *fake_request_part(fake_request *r, const char *name) {
  const fake_part *p;
  for (size_t i = 0; (p = fake_request_part_at(r, i)) != NULL; i++)
    if (strcmp(p->name, name) == 0)
      return p;
  return NULL;
}

void fake__request_free(fake_request *r) {
  if (r == NULL)
    return;
  free(r->uri);
  free(r->body);
  cJSON_Delete(r->json);
  for (size_t i = 0; i < r->nparts; i++) {
    free(r->parts[i]->name);
    free(r->parts[i]->filename);
    free(r->parts[i]->content_type);
    free(r->parts[i]->data);
    free(r->parts[i]);
  }
  free(r->parts);
  free(r->type);
  free(r->rbody);
  for (size_t i = 0; i < r->nhdrs; i++) {
    free(r->hdrs[i].name);
    free(r->hdrs[i].value);
  }
  free(r);
}

/* ------------------------------------------------------------------------- replies */

void fake_reply(fake_request *r, unsigned int status, const char *content_type, const void *body,
                size_t len) {
  free(r->type);
  free(r->rbody);
  r->rbody = malloc(len ? len : 1);
  if (r->rbody == NULL) {
    fputs("fake: out of memory\n", stderr);
    abort();
  }
  if (len > 0)
    memcpy(r->rbody, body, len);
  r->rlen = len;
  r->type = fake_strdup(content_type);
  r->status = status;
  r->replied = true;
  r->drop = false;
}

void fake_reply_json(fake_request *r, unsigned int status, cJSON *doc) {
  char *text = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  if (text == NULL) {
    fake_reply_text(r, 500, "cannot print the answer");
    return;
  }
  fake_reply(r, status, "application/json; charset=utf-8", text, strlen(text));
  cJSON_free(text);
}

void fake_reply_text(fake_request *r, unsigned int status, const char *text) {
  fake_reply(r, status, "text/plain; charset=utf-8", text, strlen(text));
}

void fake_reply_drop(fake_request *r) {
  r->replied = true;
  r->drop = true;
}

void fake_reply_header(fake_request *r, const char *name, const char *value) {
  if (r->nhdrs == MAX_REPLY_HEADERS) {
    fprintf(stderr, "%s: more than %d reply headers, %s dropped\n", r->fake_name, MAX_REPLY_HEADERS,
            name);
    return;
  }
  r->hdrs[r->nhdrs].name = fake_strdup(name);
  r->hdrs[r->nhdrs].value = fake_strdup(value);
  r->nhdrs++;
}

/* Queues the reply left in `r`; MHD_NO (the connection closes) for a drop. */
enum MHD_Result fake__request_send(fake_request *r) {
  if (!r->replied) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "error", "the fake gave no answer");
    fake_reply_json(r, 500, e);
  }
  if (r->drop)
    return MHD_NO;
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(r->rlen, r->rbody, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL)
    return MHD_NO;
  r->rbody = NULL; /* libmicrohttpd frees it with the response */
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->type);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  for (size_t i = 0; i < r->nhdrs; i++)
    MHD_add_response_header(resp, r->hdrs[i].name, r->hdrs[i].value);
  enum MHD_Result ret = MHD_queue_response(r->c, r->status, resp);
  MHD_destroy_response(resp);
  return ret;
}
