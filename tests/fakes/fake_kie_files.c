/*
 * fake-kie's upload host and file server (PROVIDERS.md section 1, "Upload"): the three
 * uploads, the uploaded files under /files, and the result images under /results, made
 * with libvips. The API host is fake_kie.c; fake_kie.h is what the two share.
 *
 * Uploaded files are held in memory, up to --max-memory-mb, behind the fake's lock.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <vips/vips.h>

#include "fake.h"
#include "fake_kie.h"

#define GENERATED_W 512 /* the generated result when there is no source */
#define GENERATED_H 768

typedef struct file {
  struct file *next;
  char id[40];
  char *name;
  char *path;
  char mime[64];
  unsigned char *data;
  size_t len;
  char uploaded_at[32];
} file;

static fake *F;
static size_t max_memory;
static size_t memory; /* bytes held by uploaded files */
static file *files;   /* newest first */
static uint64_t file_counter;

static void file_free(file *f) {
  if (f == NULL)
    return;
  free(f->name);
  free(f->path);
  free(f->data);
  free(f);
}

static file *file_find(const char *id) {
  for (file *f = files; f != NULL; f = f->next)
    if (strcmp(f->id, id) == 0)
      return f;
  return NULL;
}

/* malloc that aborts when out of memory, as fake_strdup does. */
static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) {
    fputs("fake-kie: out of memory\n", stderr);
    abort();
  }
  return p;
}

static unsigned char *memdup(const unsigned char *p, size_t n) {
  unsigned char *d = xmalloc(n);
  if (n > 0)
    memcpy(d, p, n);
  return d;
}

/* ---------------------------------------------------------------- images (libvips) */

/* A real image: `src` decoded (when given and decodable) with a magenta band across its
 * top eighth, else a generated 512x768 gradient with the same band; encoded as JPEG or
 * PNG. *out is malloc'd. */
static bool make_result(const unsigned char *src, size_t src_len, bool jpeg, unsigned char **out,
                        size_t *out_len) {
  VipsImage *t[12] = {0};
  VipsImage *img = NULL;
  void *buf = NULL;
  size_t len = 0;
  bool ok = false;
  if (src != NULL && src_len > 0)
    t[0] = vips_image_new_from_buffer(src, src_len, "", "access", VIPS_ACCESS_RANDOM, NULL);
  if (t[0] != NULL) {
    img = t[0];
    if (vips_image_hasalpha(img)) {
      if (vips_flatten(img, &t[1], NULL))
        goto out;
      img = t[1];
    }
    if (vips_colourspace(img, &t[2], VIPS_INTERPRETATION_sRGB, NULL))
      goto out;
    img = t[2];
    if (vips_cast_uchar(img, &t[3], NULL))
      goto out;
    img = t[3];
  } else {
    vips_error_clear();
    if (vips_xyz(&t[4], GENERATED_W, GENERATED_H, NULL) ||
        vips_extract_band(t[4], &t[5], 0, NULL) || vips_extract_band(t[4], &t[6], 1, NULL) ||
        vips_linear1(t[5], &t[7], 255.0 / (GENERATED_W - 1), 0, NULL) ||
        vips_linear1(t[6], &t[8], 255.0 / (GENERATED_H - 1), 0, NULL) ||
        vips_linear1(t[5], &t[9], 0, 96, NULL))
      goto out;
    VipsImage *bands[3] = {t[7], t[8], t[9]};
    if (vips_bandjoin(bands, &t[10], 3, NULL) || vips_cast_uchar(t[10], &t[11], NULL))
      goto out;
    img = t[11];
  }
  VipsImage *mem = vips_image_copy_memory(img);
  if (mem == NULL)
    goto out;
  int w = vips_image_get_width(mem), h = vips_image_get_height(mem);
  int nb = vips_image_get_bands(mem);
  double ink[4] = {255, 0, 255, 255};
  int band_h = h / 8 > 0 ? h / 8 : 1;
  if (vips_draw_rect(mem, ink, nb < 4 ? nb : 4, 0, 0, w, band_h, "fill", TRUE, NULL)) {
    g_object_unref(mem);
    goto out;
  }
  int rc = jpeg ? vips_jpegsave_buffer(mem, &buf, &len, "Q", 90, NULL)
                : vips_pngsave_buffer(mem, &buf, &len, NULL);
  g_object_unref(mem);
  if (rc)
    goto out;
  *out = malloc(len);
  if (*out == NULL)
    goto out;
  memcpy(*out, buf, len);
  *out_len = len;
  ok = true;
out:
  if (!ok)
    vips_error_clear();
  g_free(buf);
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (t[i] != NULL)
      g_object_unref(t[i]);
  return ok;
}

/* The mime type from the first bytes, or NULL. */
static const char *sniff(const unsigned char *p, size_t n) {
  if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
    return "image/png";
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
    return "image/jpeg";
  if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
    return "image/webp";
  if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
    return "image/gif";
  return NULL;
}

/* "<own base>/files/<id>/..." → the file id in `id` (cap 40); else false. Accepts the
 * fake's own host as 127.0.0.1 or localhost. Sets *is_result for "/results/<taskId>.x". */
bool kie_own_url(const char *url, char *what, size_t cap, bool *is_result) {
  char b1[64], b2[64];
  snprintf(b1, sizeof b1, "http://127.0.0.1:%d/", fake_port(F));
  snprintf(b2, sizeof b2, "http://localhost:%d/", fake_port(F));
  const char *rest = NULL;
  if (strncmp(url, b1, strlen(b1)) == 0)
    rest = url + strlen(b1);
  else if (strncmp(url, b2, strlen(b2)) == 0)
    rest = url + strlen(b2);
  if (rest == NULL)
    return false;
  const char *p;
  if (strncmp(rest, "files/", 6) == 0) {
    p = rest + 6;
    *is_result = false;
  } else if (strncmp(rest, "results/", 8) == 0) {
    p = rest + 8;
    *is_result = true;
  } else {
    return false;
  }
  size_t n = *is_result ? strcspn(p, ".?#") : strcspn(p, "/?#");
  if (n == 0 || n >= cap)
    return false;
  memcpy(what, p, n);
  what[n] = '\0';
  return true;
}

/* A copy of the bytes of the fake's file at `url` (malloc'd), or NULL. */
static unsigned char *own_file_bytes(const char *url, size_t *len, char *mime, size_t mime_cap) {
  char id[96];
  bool is_result = false;
  unsigned char *copy = NULL;
  if (!kie_own_url(url, id, sizeof id, &is_result) || is_result)
    return NULL;
  fake_lock(F);
  file *f = file_find(id);
  if (f != NULL && (copy = malloc(f->len ? f->len : 1)) != NULL) {
    memcpy(copy, f->data, f->len);
    *len = f->len;
    if (mime != NULL)
      snprintf(mime, mime_cap, "%s", f->mime);
  }
  fake_unlock(F);
  return copy;
}

/* --------------------------------------------------------------------------- uploads */

static bool b64_decode(const char *in, size_t n, unsigned char **out, size_t *out_len) {
  /* Strip whitespace first: EVP_DecodeBlock wants a clean multiple of four. */
  char *clean = malloc(n + 4);
  if (clean == NULL)
    return false;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (!isspace((unsigned char)in[i]))
      clean[m++] = in[i];
  while (m % 4 != 0)
    clean[m++] = '=';
  unsigned char *buf = malloc(m / 4 * 3 + 1);
  if (buf == NULL) {
    free(clean);
    return false;
  }
  int k = m ? EVP_DecodeBlock(buf, (const unsigned char *)clean, (int)m) : 0;
  if (k < 0) {
    free(clean);
    free(buf);
    return false;
  }
  size_t pad = 0;
  for (size_t i = m; i > 0 && clean[i - 1] == '=' && pad < 2; i--)
    pad++;
  free(clean);
  *out = buf;
  *out_len = (size_t)k - pad;
  return true;
}

static void iso_now(char *out, size_t cap) {
  int64_t ms = fake_wall_ms();
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char base[24];
  size_t n = strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  base[n] = '\0';
  snprintf(out, cap, "%.19s.%03uZ", base, (unsigned)(ms % 1000) % 1000u);
}

static const char *ext_for(const char *mime) {
  static const char *const known[][2] = {
      {"image/png", "png"}, {"image/jpeg", "jpg"}, {"image/webp", "webp"}, {"image/gif", "gif"}};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(mime, known[i][0]) == 0)
      return known[i][1];
  return "bin";
}

/* NULL when an upload may be stored there under that name, else why not. */
static const char *upload_invalid(const char *upload_path, const char *name) {
  size_t pl = upload_path != NULL ? strlen(upload_path) : 0;
  if (pl == 0)
    return "uploadPath is required";
  if (upload_path[0] == '/' || upload_path[pl - 1] == '/')
    return "uploadPath must not start or end with /";
  if (name != NULL && (strchr(name, '/') != NULL || strcmp(name, "..") == 0 ||
                       strcmp(name, ".") == 0 || strlen(name) > 200))
    return "fileName is not a plain file name";
  return NULL;
}

/* Stores `data` (taken) and answers like the upload host. `name` may be NULL (a random
 * one is made), `mime_hint` too. */
static void store_upload(fake_request *r, unsigned char *data, size_t len, const char *upload_path,
                         const char *name, const char *mime_hint) {
  const char *invalid = upload_invalid(upload_path, name);
  if (invalid != NULL) {
    free(data);
    kie_upload_error(r, 400, invalid);
    return;
  }
  const char *mime = sniff(data, len);
  if (mime == NULL)
    mime = mime_hint != NULL && mime_hint[0] ? mime_hint : "application/octet-stream";
  file *f = xmalloc(sizeof *f);
  memset(f, 0, sizeof *f);
  unsigned char rnd[8];
  if (RAND_bytes(rnd, sizeof rnd) != 1)
    memset(rnd, 0x5a, sizeof rnd);
  char hex[17], gen_name[64];
  for (int i = 0; i < 8; i++)
    snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
  snprintf(gen_name, sizeof gen_name, "%s.%s", hex, ext_for(mime));
  f->name = fake_strdup(name != NULL && name[0] ? name : gen_name);
  size_t path_len = strlen(upload_path) + 1 + strlen(f->name) + 1;
  f->path = xmalloc(path_len);
  snprintf(f->path, path_len, "%s/%s", upload_path, f->name);
  snprintf(f->mime, sizeof f->mime, "%s", mime);
  f->data = data;
  f->len = len;
  iso_now(f->uploaded_at, sizeof f->uploaded_at);

  fake_lock(F);
  if (len > max_memory - memory) {
    fake_unlock(F);
    file_free(f);
    char why[128];
    snprintf(why, sizeof why, "the fake's memory limit (%zu bytes) is reached", max_memory);
    kie_upload_error(r, 413, why);
    return;
  }
  memory += len;
  snprintf(f->id, sizeof f->id, "%" PRIu64 "%s", ++file_counter, hex);
  f->next = files;
  files = f;
  char *esc = curl_easy_escape(NULL, f->name, 0);
  char url[512];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/files/%s/%s", fake_port(F), f->id,
           esc ? esc : "x");
  curl_free(esc);
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddBoolToObject(doc, "success", true);
  cJSON_AddNumberToObject(doc, "code", 200);
  cJSON_AddStringToObject(doc, "msg", "File uploaded successfully");
  cJSON *d = cJSON_AddObjectToObject(doc, "data");
  cJSON_AddStringToObject(d, "fileName", f->name);
  cJSON_AddStringToObject(d, "filePath", f->path);
  cJSON_AddStringToObject(d, "downloadUrl", url);
  cJSON_AddNumberToObject(d, "fileSize", (double)f->len);
  cJSON_AddStringToObject(d, "mimeType", f->mime);
  cJSON_AddStringToObject(d, "uploadedAt", f->uploaded_at);
  fake_unlock(F);
  fake_reply_json(r, 200, doc);
}

void kie_handle_stream_upload(fake_request *r, void *ud) {
  (void)ud;
  if (!kie_admit(r))
    return;
  const char *ct = fake_request_header(r, "Content-Type");
  const fake_part *part = fake_request_part(r, "file");
  const fake_part *path = fake_request_part(r, "uploadPath");
  const fake_part *fname = fake_request_part(r, "fileName");
  const char *invalid = ct == NULL || strncasecmp(ct, "multipart/form-data", 19) != 0
                            ? "multipart/form-data expected"
                        : !fake_request_is_form(r) ? "bad multipart body"
                        : part == NULL             ? "file is required"
                                                   : NULL;
  if (invalid != NULL) {
    kie_upload_error(r, 400, invalid);
    return;
  }
  const char *name = fname != NULL && fname->data[0] ? (const char *)fname->data
                     : part->filename != NULL && part->filename[0] != '\0' ? part->filename
                                                                           : NULL;
  store_upload(r, memdup(part->data, part->len), part->len,
               path != NULL ? (const char *)path->data : NULL, name, part->content_type);
}

void kie_handle_base64_upload(fake_request *r, void *ud) {
  (void)ud;
  const cJSON *body = kie_admit_json(r);
  if (body == NULL)
    return;
  const cJSON *b = cJSON_GetObjectItemCaseSensitive(body, "base64Data");
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "uploadPath");
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "fileName");
  if (!cJSON_IsString(b) || b->valuestring[0] == '\0') {
    kie_upload_error(r, 400, "base64Data is required");
    return;
  }
  const char *s = b->valuestring;
  char mime[64] = "";
  if (strncmp(s, "data:", 5) == 0) {
    const char *comma = strchr(s, ',');
    const char *semi = strstr(s, ";base64");
    if (comma == NULL || semi == NULL || semi > comma) {
      kie_upload_error(r, 400, "base64Data is not a base64 data url");
      return;
    }
    snprintf(mime, sizeof mime, "%.*s", (int)(semi - s - 5), s + 5);
    s = comma + 1;
  }
  unsigned char *data = NULL;
  size_t len = 0;
  if (!b64_decode(s, strlen(s), &data, &len)) {
    kie_upload_error(r, 400, "base64Data is not valid base64");
    return;
  }
  store_upload(r, data, len, cJSON_IsString(p) ? p->valuestring : NULL,
               cJSON_IsString(n) ? n->valuestring : NULL, mime);
}

/* The result image of task `id` once it succeeded (malloc'd), else NULL: the task's first
 * image when it is one of the fake's files, else a generated one (make_result). */
static unsigned char *result_bytes(const char *id, bool jpeg, size_t *len) {
  char src_url[2048];
  if (!kie_task_result_source(id, src_url, sizeof src_url))
    return NULL;
  size_t slen = 0;
  unsigned char *src = src_url[0] ? own_file_bytes(src_url, &slen, NULL, 0) : NULL, *out = NULL;
  bool ok = make_result(src, slen, jpeg, &out, len);
  free(src);
  return ok ? out : NULL;
}

void kie_handle_url_upload(fake_request *r, void *ud) {
  (void)ud;
  const cJSON *body = kie_admit_json(r);
  if (body == NULL)
    return;
  const cJSON *u = cJSON_GetObjectItemCaseSensitive(body, "fileUrl");
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "uploadPath");
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "fileName");
  if (!cJSON_IsString(u) || !kie_is_http_url(u->valuestring)) {
    kie_upload_error(r, 400, "fileUrl is required");
    return;
  }
  /* The fake never goes out: only its own files and results can be "downloaded". */
  const char *url = u->valuestring;
  char what[96], mime[64] = "";
  bool is_result = false;
  size_t len = 0;
  unsigned char *data = NULL;
  if (kie_own_url(url, what, sizeof what, &is_result))
    data = is_result ? result_bytes(what, strstr(url, ".jpg") != NULL, &len)
                     : own_file_bytes(url, &len, mime, sizeof mime);
  if (data == NULL) {
    kie_upload_error(r, 500, "Failed to download the file from fileUrl");
    return;
  }
  const char *name = cJSON_IsString(n) ? n->valuestring : NULL;
  char last[256] = "";
  if (name == NULL) { /* the URL's last path segment */
    const char *q = url + strcspn(url, "?#"), *sl = q;
    while (sl > url && sl[-1] != '/')
      sl--;
    snprintf(last, sizeof last, "%.*s", (int)(q - sl), sl);
    name = last[0] ? last : NULL;
  }
  store_upload(r, data, len, cJSON_IsString(p) ? p->valuestring : NULL, name, mime);
}

/* ------------------------------------------------------------------ downloads */

void kie_handle_get_file(fake_request *r, void *ud) {
  (void)ud;
  const char *rest = fake_request_tail(r); /* <id>/<name> */
  char id[40];
  size_t n = strcspn(rest, "/");
  snprintf(id, sizeof id, "%.*s", (int)n, rest);
  fake_lock(F);
  file *f = n < sizeof id && rest[n] == '/' ? file_find(id) : NULL;
  if (f != NULL && strcmp(f->name, rest + n + 1) == 0)
    fake_reply(r, 200, f->mime, f->data, f->len);
  else
    fake_reply_text(r, 404, "not found");
  fake_unlock(F);
}

void kie_handle_get_result(fake_request *r, void *ud) {
  (void)ud;
  const char *rest = fake_request_tail(r); /* <taskId>.png|.jpg|.jpeg */
  const char *dot = strrchr(rest, '.');
  bool jpeg = dot != NULL && (strcmp(dot, ".jpg") == 0 || strcmp(dot, ".jpeg") == 0);
  char id[96];
  size_t len = 0;
  unsigned char *img = NULL;
  if (dot != NULL && dot != rest && (size_t)(dot - rest) < sizeof id &&
      (jpeg || strcmp(dot, ".png") == 0)) {
    snprintf(id, sizeof id, "%.*s", (int)(dot - rest), rest);
    img = result_bytes(id, jpeg, &len);
  }
  if (img != NULL)
    fake_reply(r, 200, jpeg ? "image/jpeg" : "image/png", img, len);
  else
    fake_reply_text(r, 404, "not found");
  free(img);
}

/* ------------------------------------------------------------------------ lifecycle */

void kie_files_init(fake *f, size_t max_bytes) {
  F = f;
  max_memory = max_bytes;
}

void kie_files_reset(void) {
  while (files != NULL) {
    file *f = files;
    files = f->next;
    file_free(f);
  }
  memory = 0;
}
