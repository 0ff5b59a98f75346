/*
 * The web app: the built files of webapp/dist loaded into memory at start, and served
 * from there (never a disk read per request) with the caching, encoding and framing
 * rules of include/tryon/api.h section 6.
 */
#include "api/api_internal.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Folders deeper than this are not the app's (Vite writes two levels). */
#define WEBAPP_DEPTH_MAX 8
/* The page Telegram frames: scripts and styles from here only, framed by Telegram's web
 * clients alone (web.telegram.org hosts both the K and A clients). */
#define PAGE_CSP                                                                          \
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " \
  "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "          \
  "frame-ancestors https://web.telegram.org https://*.telegram.org"

enum { ENC_IDENTITY, ENC_GZIP, ENC_BR, ENC_COUNT };

typedef struct webapp_variant {
  char *data; /* owned; NULL when this encoding was not built */
  size_t len;
  char etag[32];
} webapp_variant;

typedef struct webapp_file {
  char *path; /* owned: "/assets/index-3f2a.js" */
  const char *content_type;
  bool immutable; /* under /assets/: hashed names, cached for a year */
  bool html;
  bool merged; /* a .gz/.br sibling now held by its original (dropped after linking) */
  webapp_variant v[ENC_COUNT];
} webapp_file;

struct tryon__webapp {
  webapp_file *files; /* sorted by path */
  size_t n, cap;
  size_t total; /* bytes held, every variant */
  const webapp_file *index;
};

/* ---------------------------------------------------------------------------- types */

static const struct {
  const char *ext;
  const char *type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json; charset=utf-8"},
    {".map", "application/json; charset=utf-8"},
    {".webmanifest", "application/manifest+json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".webp", "image/webp"},
    {".avif", "image/avif"},
    {".gif", "image/gif"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".woff", "font/woff"},
    {".ttf", "font/ttf"},
    {".txt", "text/plain; charset=utf-8"},
    {".wasm", "application/wasm"},
};

const char *tryon__webapp_content_type(const char *path) {
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  const char *type = "application/octet-stream";
  if (dot != NULL && (slash == NULL || dot > slash)) {
    for (size_t i = 0; i < sizeof content_types / sizeof content_types[0]; i++) {
      if (strcasecmp(dot, content_types[i].ext) == 0) {
        type = content_types[i].type;
        break;
      }
    }
  }
  return type;
}

/* ---------------------------------------------------------------------------- loading */

static int by_path(const void *a, const void *b) {
  return strcmp(((const webapp_file *)a)->path, ((const webapp_file *)b)->path);
}

static webapp_file *find(const tryon__webapp *w, const char *path) {
  webapp_file key = {.path = (char *)path};
  return w->n ? bsearch(&key, w->files, w->n, sizeof *w->files, by_path) : NULL;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Reads `full` (size `size`, known from stat) into a new buffer. */
static tryon_status read_whole(const char *full, size_t size, char **out, tryon_err *err) {
  tryon_status st = TRYON_OK;
  FILE *fp = fopen(full, "rb");
  char *data = malloc(size ? size : 1);
  if (fp == NULL || data == NULL) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot read %s: %s", full, strerror(errno));
    goto out;
  }
  if (fread(data, 1, size, fp) != size) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot read %s: short read", full);
    goto out;
  }
  *out = data;
  data = NULL;
out:
  if (fp != NULL)
    fclose(fp);
  free(data);
  return st;
}

/* Adds the file at `full` as URL path `rel`; its bytes are read now. */
static tryon_status add_file(tryon__webapp *w, const char *rel, const char *full, size_t size,
                             size_t max_total, tryon_err *err) {
  tryon_status st = TRYON_OK;
  char *data = NULL, *path = NULL;

  if (size > max_total || w->total + size > max_total) {
    st = tryon_err_set(err, TRYON_E_CONFIG, "the web app is larger than %zu MiB",
                       max_total / (1024 * 1024));
    goto out;
  }
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 64;
    webapp_file *files =
        cap <= TRYON_WEBAPP_MAX_FILES ? realloc(w->files, cap * sizeof *files) : NULL;
    if (files == NULL) {
      st = tryon_err_set(err, TRYON_E_CONFIG, "the web app has more than %d files",
                         TRYON_WEBAPP_MAX_FILES);
      goto out;
    }
    w->files = files;
    w->cap = cap;
  }
  path = strdup(rel);
  if (path == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  st = read_whole(full, size, &data, err);
  if (st != TRYON_OK)
    goto out;
  webapp_file *f = &w->files[w->n++];
  memset(f, 0, sizeof *f);
  f->path = path;
  f->v[ENC_IDENTITY].data = data;
  f->v[ENC_IDENTITY].len = size;
  w->total += size;
  path = NULL;
  data = NULL;
out:
  free(path);
  free(data);
  return st;
}

/* Walks `dir` (URL prefix `rel`), adding every regular file whose name does not start
 * with a dot. */
static tryon_status walk(tryon__webapp *w, const char *dir, const char *rel, int depth,
                         size_t max_total, tryon_err *err) {
  tryon_status st = TRYON_OK;
  DIR *d = opendir(dir);
  struct dirent *e;
  char full[4096], sub[1024];
  struct stat sb;

  if (d == NULL) {
    st = tryon_err_set(err, TRYON_E_CONFIG, "cannot open TRYON_WEBAPP_DIR %s: %s", dir,
                       strerror(errno));
    goto out;
  }
  while (st == TRYON_OK && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    int a = snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
    int b = snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name);
    if (a < 0 || (size_t)a >= sizeof full || b < 0 || (size_t)b >= sizeof sub) {
      st = tryon_err_set(err, TRYON_E_CONFIG, "a path in the web app is too long: %s", full);
    } else if (lstat(full, &sb) != 0) {
      st = tryon_err_set(err, TRYON_E_IO, "cannot read %s: %s", full, strerror(errno));
    } else if (S_ISLNK(sb.st_mode)) {
      /* A link could serve anything on the machine (or loop): the build writes none. */
      st = tryon_err_set(err, TRYON_E_CONFIG, "the web app holds a symbolic link: %s", full);
    } else if (S_ISDIR(sb.st_mode)) {
      st =
          depth < WEBAPP_DEPTH_MAX
              ? walk(w, full, sub, depth + 1, max_total, err)
              : tryon_err_set(err, TRYON_E_CONFIG, "the web app's folders nest too deep: %s", full);
    } else if (S_ISREG(sb.st_mode)) {
      st = add_file(w, sub, full, (size_t)sb.st_size, max_total, err);
    }
  }
out:
  if (d != NULL)
    closedir(d);
  return st;
}

static void etag_of(const webapp_variant *v, const char *suffix, char out[32]) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  char hex[17];
  SHA256((const unsigned char *)v->data, v->len, md);
  tryon_hex_encode(md, 8, hex);
  snprintf(out, 32, "\"%s%s\"", hex, suffix);
}

/* Turns "x.js.gz" and "x.js.br" next to "x.js" into that file's variants (a sibling
 * without its original stays a file of its own), then types and tags every file. */
static void link_variants(tryon__webapp *w) {
  static const struct {
    const char *suffix;
    int enc;
  } sib[] = {{".gz", ENC_GZIP}, {".br", ENC_BR}};
  char base[1024];
  size_t kept = 0;

  qsort(w->files, w->n, sizeof *w->files, by_path);
  for (size_t i = 0; i < w->n; i++) {
    webapp_file *f = &w->files[i];
    for (size_t s = 0; s < 2 && !f->merged; s++) {
      size_t n = strlen(f->path), m = strlen(sib[s].suffix);
      if (!ends_with(f->path, sib[s].suffix) || n - m >= sizeof base)
        continue;
      memcpy(base, f->path, n - m);
      base[n - m] = '\0';
      webapp_file *orig = find(w, base);
      if (orig == NULL || orig->merged || orig->v[sib[s].enc].data != NULL)
        continue;
      orig->v[sib[s].enc] = f->v[ENC_IDENTITY];
      f->v[ENC_IDENTITY].data = NULL;
      f->merged = true; /* dropped below, so that `find` sees a sorted array meanwhile */
    }
  }
  for (size_t i = 0; i < w->n; i++) {
    if (w->files[i].merged)
      free(w->files[i].path);
    else
      w->files[kept++] = w->files[i];
  }
  w->n = kept; /* removing entries keeps the order */
  for (size_t i = 0; i < w->n; i++) {
    webapp_file *f = &w->files[i];
    f->content_type = tryon__webapp_content_type(f->path);
    f->html = strncmp(f->content_type, "text/html", 9) == 0;
    f->immutable = strncmp(f->path, "/assets/", 8) == 0;
    etag_of(&f->v[ENC_IDENTITY], "", f->v[ENC_IDENTITY].etag);
    if (f->v[ENC_GZIP].data != NULL)
      etag_of(&f->v[ENC_IDENTITY], "-gz", f->v[ENC_GZIP].etag);
    if (f->v[ENC_BR].data != NULL)
      etag_of(&f->v[ENC_IDENTITY], "-br", f->v[ENC_BR].etag);
  }
}

tryon_status tryon__webapp_load(const char *dir, size_t max_total, tryon__webapp **out,
                                tryon_err *err) {
  tryon_status st = TRYON_OK;
  tryon__webapp *w = calloc(1, sizeof *w);
  size_t n = strlen(dir);

  *out = NULL;
  if (w == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  while (n > 1 && dir[n - 1] == '/')
    n--; /* "dist/" and "dist" name the same folder */
  char root[2048];
  if (n >= sizeof root) {
    st = tryon_err_set(err, TRYON_E_CONFIG, "TRYON_WEBAPP_DIR is too long");
    goto out;
  }
  snprintf(root, sizeof root, "%.*s", (int)n, dir);
  st = walk(w, root, "", 0, max_total, err);
  if (st != TRYON_OK)
    goto out;
  link_variants(w);
  w->index = find(w, "/index.html");
  if (w->index == NULL) {
    st =
        tryon_err_set(err, TRYON_E_CONFIG,
                      "TRYON_WEBAPP_DIR %s has no index.html (build the app: npm run build)", root);
    goto out;
  }
  *out = w;
  w = NULL;
out:
  tryon__webapp_free(w);
  return st;
}

void tryon__webapp_free(tryon__webapp *w) {
  if (w == NULL)
    return;
  for (size_t i = 0; i < w->n; i++) {
    free(w->files[i].path);
    for (int e = 0; e < ENC_COUNT; e++)
      free(w->files[i].v[e].data);
  }
  free(w->files);
  free(w);
}

size_t tryon__webapp_bytes(const tryon__webapp *w) {
  return w ? w->total : 0;
}

size_t tryon__webapp_files(const tryon__webapp *w) {
  return w ? w->n : 0;
}

/* ---------------------------------------------------------------------------- serving */

bool tryon__webapp_owns(const char *path) {
  static const char *const api_paths[] = {"/api", "/files", "/webhooks"};
  static const char *const probes[] = {"/healthz", "/readyz", "/metrics"};
  bool owns = path[0] == '/';
  for (size_t i = 0; owns && i < sizeof api_paths / sizeof api_paths[0]; i++) {
    size_t n = strlen(api_paths[i]);
    if (strncmp(path, api_paths[i], n) == 0 && (path[n] == '\0' || path[n] == '/'))
      owns = false;
  }
  for (size_t i = 0; owns && i < sizeof probes / sizeof probes[0]; i++) {
    if (strcmp(path, probes[i]) == 0)
      owns = false;
  }
  return owns;
}

/* The weight an Accept-Encoding header gives `coding` (explicitly, else through "*");
 * -1 when it names neither. */
static double coding_weight(const char *ae, const char *coding) {
  double named = -1, star = -1;
  const char *p = ae;
  while (*p) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    const char *tok = p;
    while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
      p++;
    size_t len = (size_t)(p - tok);
    double q = 1;
    while (*p && *p != ',') {
      /* parameters: only q matters */
      while (*p == ' ' || *p == '\t' || *p == ';')
        p++;
      if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
        char *end = NULL;
        q = strtod(p + 2, &end);
        p = end && end > p + 2 ? end : p + 2;
      } else {
        while (*p && *p != ',' && *p != ';')
          p++;
      }
    }
    if (len == 1 && tok[0] == '*')
      star = q;
    else if (len > 0 && len == strlen(coding) && strncasecmp(tok, coding, len) == 0)
      named = q;
  }
  return named >= 0 ? named : star;
}

int tryon__webapp_pick_encoding(const char *accept_encoding, bool have_gzip, bool have_br) {
  int enc = ENC_IDENTITY;
  if (accept_encoding != NULL) {
    if (have_br && coding_weight(accept_encoding, "br") > 0)
      enc = ENC_BR;
    else if (have_gzip && (coding_weight(accept_encoding, "gzip") > 0 ||
                           coding_weight(accept_encoding, "x-gzip") > 0))
      enc = ENC_GZIP;
  }
  return enc;
}

/* Whether If-None-Match `inm` names `etag` (weak comparison, or "*"). */
static bool etag_listed(const char *inm, const char *etag) {
  size_t n = strlen(etag);
  const char *p = inm;
  bool hit = false;
  while (*p && !hit) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (strncmp(p, "W/", 2) == 0)
      p += 2;
    const char *tok = p;
    while (*p && *p != ',' && *p != ' ' && *p != '\t')
      p++;
    size_t len = (size_t)(p - tok);
    hit = (len == 1 && tok[0] == '*') || (len == n && strncmp(tok, etag, n) == 0);
  }
  return hit;
}

void tryon__webapp_serve(const tryon__webapp *w, const tryon_api_request *req,
                         tryon_api_response *resp) {
  const webapp_file *f = find(w, req->path);
  resp->route = "webapp";
  if (f == NULL && strncmp(req->path, "/assets/", 8) == 0) {
    /* A hashed asset that is not there is a stale page asking: index.html would be
     * parsed as a script, so say so plainly. */
    tryon__api_fail(resp, 404, "not_found", "no such file");
    return;
  }
  if (f == NULL)
    f = w->index; /* a route of the app: the app finds its own screen */
  int enc = tryon__webapp_pick_encoding(tryon__api_header(req, "Accept-Encoding"),
                                        f->v[ENC_GZIP].data != NULL, f->v[ENC_BR].data != NULL);
  const webapp_variant *v = &f->v[enc];
  tryon_api_response_header(resp, "Cache-Control",
                            f->immutable ? "public, max-age=31536000, immutable" : "no-cache");
  tryon_api_response_header(resp, "ETag", v->etag);
  tryon_api_response_header(resp, "Vary", "Accept-Encoding");
  if (f->html) {
    /* Telegram's web clients show the app in an iframe: framing by them is allowed here
     * (and X-Frame-Options left out, which could only forbid it). */
    resp->framable = true;
    tryon_api_response_header(resp, "Content-Security-Policy", PAGE_CSP);
    tryon_api_response_header(resp, "Cross-Origin-Resource-Policy", "cross-origin");
  }
  const char *inm = tryon__api_header(req, "If-None-Match");
  resp->content_type = f->content_type; /* a 304 names the type it stands for */
  if (inm != NULL && etag_listed(inm, v->etag)) {
    resp->status = 304;
    return;
  }
  if (enc != ENC_IDENTITY)
    tryon_api_response_header(resp, "Content-Encoding", enc == ENC_BR ? "br" : "gzip");
  resp->content_type = f->content_type;
  resp->static_body = v->data;
  resp->static_len = v->len;
  resp->status = 200;
}
