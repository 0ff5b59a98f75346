/*
 * request.c - the three requests kie.ai is asked (upload, createTask, recordInfo),
 * built as owned tryon_http_request values, and the polling schedule.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <tryon/kie.h>

#include "kie_internal.h"

#ifndef TRYON_VERSION
#define TRYON_VERSION "0"
#endif

static const char *const aspect_ratios[] = {"1:1", "9:16", "16:9", "3:4",  "4:3", "3:2",
                                            "2:3", "5:4",  "4:5",  "21:9", "auto"};

bool tryon_kie_aspect_ratio_ok(const char *ratio) {
  if (ratio == NULL) {
    return false;
  }
  for (size_t i = 0; i < sizeof aspect_ratios / sizeof aspect_ratios[0]; i++) {
    if (strcmp(ratio, aspect_ratios[i]) == 0) {
      return true;
    }
  }
  return false;
}

static bool has_space_or_control(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
    if (*p <= 0x20 || *p == 0x7f) {
      return true;
    }
  }
  return false;
}

bool tryon__kie_url_ok(const char *s) {
  size_t skip;

  if (s == NULL) {
    return false;
  }
  if (strncmp(s, "https://", 8) == 0) {
    skip = 8;
  } else if (strncmp(s, "http://", 7) == 0) {
    skip = 7;
  } else {
    return false;
  }
  return s[skip] != '\0' && s[skip] != '/' && !has_space_or_control(s);
}

void tryon_kie_request_release(tryon_kie_request *r) {
  if (r == NULL) {
    return;
  }
  if (r->priv_.auth != NULL) {
    OPENSSL_cleanse(r->priv_.auth, strlen(r->priv_.auth));
    free(r->priv_.auth);
  }
  free(r->priv_.url);
  free(r->priv_.user_agent);
  free(r->priv_.file_name);
  cJSON_Delete(r->priv_.json);
  memset(r, 0, sizeof *r);
}

static char *dup_str(const char *s) {
  size_t n = strlen(s);
  char *p = malloc(n + 1);

  if (p != NULL) {
    memcpy(p, s, n + 1);
  }
  return p;
}

/* base + path (+ tail), with at most one '/' between base and path. */
static char *join_url(const char *base, const char *path, const char *tail) {
  size_t b = strlen(base);
  size_t p = strlen(path);
  size_t t = tail != NULL ? strlen(tail) : 0;
  char *u;

  while (b > 0 && base[b - 1] == '/') {
    b--;
  }
  u = malloc(b + p + t + 1);
  if (u != NULL) {
    memcpy(u, base, b);
    memcpy(u + b, path, p);
    if (t != 0) {
      memcpy(u + b + p, tail, t);
    }
    u[b + p + t] = '\0';
  }
  return u;
}

/* RFC 3986 percent-encoding: everything but the unreserved characters. */
static char *url_escape(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *o = malloc(3 * n + 1);
  size_t k = 0;

  if (o == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      o[k++] = (char)c;
    } else {
      o[k++] = '%';
      o[k++] = hex[c >> 4];
      o[k++] = hex[c & 15];
    }
  }
  o[k] = '\0';
  return o;
}

/*
 * The part every request shares: checks the configuration, then sets the URL, the
 * Authorization and Accept headers, the User-Agent, the label and the ceilings. `out`
 * has been zeroed by the caller.
 */
static tryon_status common_init(const tryon_kie_config *cfg, const char *base, const char *path,
                                const char *tail, tryon_kie_request *out, tryon_err *err) {
  static const char bearer[] = "Authorization: Bearer ";
  const char *ua;
  size_t klen;
  tryon_status st = TRYON_OK;

  if (cfg->api_key == NULL || cfg->api_key[0] == '\0') {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie: no api key configured");
    goto out;
  }
  /* A key pasted with a stray newline would break the header (or be refused by the
   * http layer with a less useful message); never quote it. */
  if (has_space_or_control(cfg->api_key)) {
    st = tryon_err_set(err, TRYON_E_INVALID,
                       "kie: the api key contains spaces or control characters");
    goto out;
  }
  if (!tryon__kie_url_ok(base)) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie: the %s url is not an http(s) url",
                       base == cfg->upload_url ? "upload" : "api");
    goto out;
  }
  ua = cfg->user_agent != NULL && cfg->user_agent[0] != '\0' ? cfg->user_agent
                                                             : "tryon/" TRYON_VERSION;
  if (strpbrk(ua, "\r\n") != NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie: the user agent contains a line break");
    goto out;
  }
  klen = strlen(cfg->api_key);
  out->priv_.url = join_url(base, path, tail);
  out->priv_.user_agent = dup_str(ua);
  out->priv_.auth = malloc(sizeof bearer + klen);
  if (out->priv_.url == NULL || out->priv_.user_agent == NULL || out->priv_.auth == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "kie: out of memory");
    goto out;
  }
  memcpy(out->priv_.auth, bearer, sizeof bearer - 1);
  memcpy(out->priv_.auth + sizeof bearer - 1, cfg->api_key, klen + 1);
  out->priv_.headers[0] = out->priv_.auth;
  out->priv_.headers[1] = "Accept: application/json";
  out->priv_.headers[2] = NULL;

  out->http.url = out->priv_.url;
  out->http.headers = out->priv_.headers;
  out->http.user_agent = out->priv_.user_agent;
  out->http.log_label = "kie";
  out->http.max_response_bytes = TRYON_KIE_ANSWER_MAX;
  out->http.timeout_ms = TRYON_KIE_TIMEOUT_MS;

out:
  return st;
}

/* --------------------------------------------------------------------------- upload */

static bool file_name_ok(const char *s) {
  size_t n = strlen(s);

  if (n == 0 || n > TRYON_KIE_FILE_NAME_MAX || s[0] == '.') {
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

static const char *mime_canonical(const char *mime) {
  static const char *const ok[] = {"image/jpeg", "image/png", "image/webp"};

  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    if (strcmp(mime, ok[i]) == 0) {
      return ok[i];
    }
  }
  return NULL;
}

tryon_status tryon_kie_upload_request(const tryon_kie_config *cfg, const void *data, size_t len,
                                      const char *mime, const char *file_name,
                                      tryon_kie_request *out, tryon_err *err) {
  const char *ctype;
  tryon_status st = TRYON_OK;

  if (out == NULL) {
    return tryon_err_set(err, TRYON_E_INVALID, "kie: no request to build into");
  }
  memset(out, 0, sizeof *out);
  if (cfg == NULL || data == NULL || mime == NULL || file_name == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie upload: missing argument");
    goto out;
  }
  if (len == 0) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie upload: the file is empty");
    goto out;
  }
  if (len > TRYON_KIE_UPLOAD_MAX) {
    st = tryon_err_set(err, TRYON_E_TOO_LARGE, "kie upload: %zu bytes, over the %u-byte limit", len,
                       TRYON_KIE_UPLOAD_MAX);
    goto out;
  }
  ctype = mime_canonical(mime);
  if (ctype == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID,
                       "kie upload: the type must be image/jpeg, image/png or image/webp");
    goto out;
  }
  if (!file_name_ok(file_name)) {
    st = tryon_err_set(err, TRYON_E_INVALID,
                       "kie upload: the file name must be 1 to %d characters of A-Z a-z 0-9 . _ - "
                       "not starting with '.'",
                       TRYON_KIE_FILE_NAME_MAX);
    goto out;
  }
  st = common_init(cfg, cfg->upload_url, "/api/file-stream-upload", NULL, out, err);
  if (st != TRYON_OK) {
    goto out;
  }
  out->priv_.file_name = dup_str(file_name);
  if (out->priv_.file_name == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "kie: out of memory");
    goto out;
  }
  out->priv_.parts[0] = (tryon_http_part){.name = "file",
                                          .data = data,
                                          .len = len,
                                          .filename = out->priv_.file_name,
                                          .content_type = ctype};
  /* No leading or trailing '/' in uploadPath: kie refuses it. */
  out->priv_.parts[1] = (tryon_http_part){
      .name = "uploadPath", .data = TRYON_KIE_UPLOAD_PATH, .len = TRYON_HTTP_ZERO_TERMINATED};
  out->priv_.parts[2] = (tryon_http_part){
      .name = "fileName", .data = out->priv_.file_name, .len = TRYON_HTTP_ZERO_TERMINATED};
  out->http.method = "POST";
  out->http.parts = out->priv_.parts;
  out->http.nparts = 3;
  out->http.timeout_ms = TRYON_KIE_UPLOAD_TIMEOUT_MS;

out:
  if (st != TRYON_OK) {
    tryon_kie_request_release(out);
  }
  return st;
}

/* ----------------------------------------------------------------------- createTask */

/* Characters of valid UTF-8 `s` as UTF-16 units; -1 when s is not valid UTF-8 (overlong
 * forms, surrogates and values past U+10FFFF included). */
static long utf16_units(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  long units = 0;

  while (*p != '\0') {
    unsigned char c = *p;
    size_t need;
    unsigned long cp;
    if (c < 0x80) {
      p++;
      units++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      cp = c & 0x07;
    } else {
      return -1;
    }
    for (size_t i = 1; i <= need; i++) {
      if ((p[i] & 0xc0) != 0x80) {
        return -1;
      }
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (need == 3 && (cp < 0x10000 || cp > 0x10ffff))) {
      return -1;
    }
    units += cp >= 0x10000 ? 2 : 1;
    p += need + 1;
  }
  return units;
}

tryon_status tryon_kie_create_request(const tryon_kie_config *cfg, const char *prompt,
                                      const char *const *image_urls, size_t n,
                                      const char *output_format, const char *aspect_ratio,
                                      tryon_kie_request *out, tryon_err *err) {
  const char *model;
  cJSON *root = NULL;
  cJSON *input;
  cJSON *urls;
  long units;
  tryon_status st = TRYON_OK;

  if (out == NULL) {
    return tryon_err_set(err, TRYON_E_INVALID, "kie: no request to build into");
  }
  memset(out, 0, sizeof *out);
  if (cfg == NULL || prompt == NULL || (image_urls == NULL && n != 0)) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie create: missing argument");
    goto out;
  }
  units = utf16_units(prompt);
  if (units < 0) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie create: the prompt is not valid UTF-8");
    goto out;
  }
  if (units == 0) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie create: the prompt is empty");
    goto out;
  }
  if (units > TRYON_KIE_PROMPT_MAX) {
    st = tryon_err_set(err, TRYON_E_TOO_LARGE,
                       "kie create: the prompt has %ld characters, over the %d allowed", units,
                       TRYON_KIE_PROMPT_MAX);
    goto out;
  }
  if (n < 1 || n > TRYON_KIE_IMAGES_MAX) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie create: %zu images, expected 1 to %d", n,
                       TRYON_KIE_IMAGES_MAX);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (!tryon__kie_url_ok(image_urls[i]) || strlen(image_urls[i]) >= TRYON_KIE_URL_MAX) {
      st = tryon_err_set(err, TRYON_E_INVALID,
                         "kie create: image %zu is not an http(s) url under %d bytes", i,
                         TRYON_KIE_URL_MAX);
      goto out;
    }
  }
  if (output_format == NULL) {
    output_format = "png";
  }
  if (strcmp(output_format, "png") != 0 && strcmp(output_format, "jpeg") != 0) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie create: output format must be png or jpeg");
    goto out;
  }
  if (aspect_ratio == NULL) {
    aspect_ratio = "auto";
  }
  if (!tryon_kie_aspect_ratio_ok(aspect_ratio)) {
    st = tryon_err_set(err, TRYON_E_INVALID,
                       "kie create: the aspect ratio is not one createTask accepts");
    goto out;
  }
  model = cfg->model != NULL && cfg->model[0] != '\0' ? cfg->model : TRYON_KIE_DEFAULT_MODEL;
  if (has_space_or_control(model)) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie create: the model name is malformed");
    goto out;
  }
  if (cfg->callback_url != NULL && cfg->callback_url[0] != '\0' &&
      !tryon__kie_url_ok(cfg->callback_url)) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie create: the callback url is not an http(s) url");
    goto out;
  }
  st = common_init(cfg, cfg->api_url, "/api/v1/jobs/createTask", NULL, out, err);
  if (st != TRYON_OK) {
    goto out;
  }

  /* Every field explicit, so a change of kie's defaults changes nothing here. */
  root = cJSON_CreateObject();
  if (root == NULL || cJSON_AddStringToObject(root, "model", model) == NULL) {
    goto nomem;
  }
  if (cfg->callback_url != NULL && cfg->callback_url[0] != '\0' &&
      cJSON_AddStringToObject(root, "callBackUrl", cfg->callback_url) == NULL) {
    goto nomem;
  }
  input = cJSON_AddObjectToObject(root, "input");
  if (input == NULL || cJSON_AddStringToObject(input, "prompt", prompt) == NULL) {
    goto nomem;
  }
  urls = cJSON_AddArrayToObject(input, "image_urls");
  if (urls == NULL) {
    goto nomem;
  }
  for (size_t i = 0; i < n; i++) {
    cJSON *u = cJSON_CreateString(image_urls[i]);
    if (u == NULL || !cJSON_AddItemToArray(urls, u)) {
      cJSON_Delete(u);
      goto nomem;
    }
  }
  if (cJSON_AddStringToObject(input, "output_format", output_format) == NULL ||
      cJSON_AddStringToObject(input, "aspect_ratio", aspect_ratio) == NULL) {
    goto nomem;
  }
  out->priv_.json = root;
  root = NULL;
  out->http.method = "POST";
  out->http.json = out->priv_.json;
  /* One attempt: a createTask retried after a timeout or a reset may have created a
   * task already, and each task is billed by kie. The verdict says whether to try
   * again; the job decides. */
  out->http.max_attempts = 1;
  goto out;

nomem:
  st = tryon_err_set(err, TRYON_E_NOMEM, "kie: out of memory");

out:
  cJSON_Delete(root);
  if (st != TRYON_OK) {
    tryon_kie_request_release(out);
  }
  return st;
}

/* ----------------------------------------------------------------------- recordInfo */

tryon_status tryon_kie_record_request(const tryon_kie_config *cfg, const char *task_id,
                                      tryon_kie_request *out, tryon_err *err) {
  char *escaped = NULL;
  size_t n;
  tryon_status st = TRYON_OK;

  if (out == NULL) {
    return tryon_err_set(err, TRYON_E_INVALID, "kie: no request to build into");
  }
  memset(out, 0, sizeof *out);
  if (cfg == NULL || task_id == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie record: missing argument");
    goto out;
  }
  n = strlen(task_id);
  if (n == 0 || n >= TRYON_KIE_TASK_ID_MAX) {
    st = tryon_err_set(err, TRYON_E_INVALID, "kie record: the task id must be 1 to %d bytes",
                       TRYON_KIE_TASK_ID_MAX - 1);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)task_id[i];
    if (c < 0x20 || c == 0x7f) {
      st = tryon_err_set(err, TRYON_E_INVALID, "kie record: the task id has control characters");
      goto out;
    }
  }
  escaped = url_escape(task_id);
  if (escaped == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "kie: out of memory");
    goto out;
  }
  {
    static const char q[] = "?taskId=";
    size_t e = strlen(escaped);
    char *tail = malloc(sizeof q + e);
    if (tail == NULL) {
      st = tryon_err_set(err, TRYON_E_NOMEM, "kie: out of memory");
      goto out;
    }
    memcpy(tail, q, sizeof q - 1);
    memcpy(tail + sizeof q - 1, escaped, e + 1);
    st = common_init(cfg, cfg->api_url, "/api/v1/jobs/recordInfo", tail, out, err);
    free(tail);
  }
  if (st != TRYON_OK) {
    goto out;
  }
  out->http.method = "GET";

out:
  free(escaped);
  if (st != TRYON_OK) {
    tryon_kie_request_release(out);
  }
  return st;
}

/* -------------------------------------------------------------------------- polling */

int64_t tryon_kie_poll_delay_ms(int poll_index) {
  static const int64_t steps[] = {2500, 2500, 4000, 6000, 8000, 10000};
  const int last = (int)(sizeof steps / sizeof steps[0]) - 1;

  if (poll_index < 0) {
    poll_index = 0;
  }
  return steps[poll_index < last ? poll_index : last];
}
