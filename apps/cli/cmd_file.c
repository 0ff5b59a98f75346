/*
 * cmd_file.c - file check: runs an image through the upload checks and normalisation
 * the server applies, and can write the normalised image and its thumbnail.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tryon/files.h>

#include "app.h"
#include "cli.h"

/* The type a file name implies, as a browser would declare it; NULL for none. */
static const char *mime_from_name(const char *path) {
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');

  if (dot == NULL || (slash != NULL && dot < slash))
    return NULL;
  if (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0)
    return "image/jpeg";
  if (strcasecmp(dot, ".png") == 0)
    return "image/png";
  return NULL;
}

/* Reads at most `cap` bytes of `path` into a new malloc buffer (caller frees). A file
 * longer than the upload ceiling is read only to one byte past it: that is enough for
 * the library to refuse it, and a huge file is never loaded. */
static tryon_status read_upload(const char *path, size_t cap, unsigned char **out, size_t *len,
                                tryon_err *err) {
  FILE *f = NULL;
  unsigned char *buf = NULL;
  size_t n = 0, got;
  tryon_status st = TRYON_OK;

  *out = NULL;
  *len = 0;
  buf = malloc(cap > 0 ? cap : 1);
  if (buf == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  f = fopen(path, "rb");
  if (f == NULL) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  while (n < cap && (got = fread(buf + n, 1, cap - n, f)) > 0)
    n += got;
  if (ferror(f)) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot read %s: %s", path, strerror(errno));
    goto out;
  }
  *out = buf;
  *len = n;
  buf = NULL;
out:
  if (f != NULL)
    fclose(f);
  free(buf);
  return st;
}

/* Writes `len` bytes to `path` through a temporary file in the same folder and a
 * rename, so a reader never sees half a file and a failure leaves `path` untouched. */
static tryon_status write_atomic(const char *path, const void *data, size_t len, tryon_err *err) {
  size_t cap = strlen(path) + sizeof ".tmp.XXXXXX";
  char *tmp = malloc(cap);
  const unsigned char *p = data;
  int fd = -1;
  tryon_status st = TRYON_OK;

  if (tmp == NULL) {
    st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
    goto out;
  }
  snprintf(tmp, cap, "%s.tmp.XXXXXX", path);
  fd = mkstemp(tmp);
  if (fd < 0) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot create a file next to %s: %s", path,
                       strerror(errno));
    free(tmp);
    tmp = NULL;
    goto out;
  }
  /* mkstemp makes the file 0600; an image is not a secret. */
  if (fchmod(fd, 0644) != 0)
    goto fail;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      goto fail;
    p += w;
    len -= (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0)
    goto fail;
  goto out;
fail:
  st = tryon_err_set(err, TRYON_E_IO, "cannot write %s: %s", path, strerror(errno));
  if (fd >= 0)
    close(fd);
  fd = -1;
  unlink(tmp);
out:
  free(tmp);
  return st;
}

static int cmd_file_check(const cli_args *a) {
  const char *path = a->pos[0], *out_path = cli_value(a, "--out"),
             *thumb_path = cli_value(a, "--thumb-out");
  unsigned char *data = NULL;
  size_t len = 0;
  tryon_image img = {0};
  tryon_err err;
  tryon_log_level level = TRYON_LOG_WARN;
  const char *env_level = getenv("TRYON_LOG_LEVEL");
  cJSON *doc = NULL;
  int rc = EXIT_OK;

  tryon_err_clear(&err);
  /* No configuration: only the log level, so TRYON_LOG_LEVEL=debug shows why libvips
   * refused a file. Log lines go to stderr, the JSON to stdout. */
  if (env_level != NULL && env_level[0] != '\0')
    (void)tryon_log_level_parse(env_level, &level);
  tryon_log_set_level(level < TRYON_LOG_WARN && level != TRYON_LOG_DEBUG ? TRYON_LOG_WARN : level);
  tryon_log_set_sink(tryon_app_log_sink, NULL);

  if (read_upload(path, (size_t)TRYON_FILES_MAX_BYTES + 1, &data, &len, &err) != TRYON_OK ||
      tryon_files_global_init(&err) != TRYON_OK ||
      tryon_image_normalise(data, len, mime_from_name(path), &img, &err) != TRYON_OK ||
      (out_path != NULL && write_atomic(out_path, img.data, img.len, &err) != TRYON_OK) ||
      (thumb_path != NULL && write_atomic(thumb_path, img.thumb, img.thumb_len, &err) != TRYON_OK))
    rc = EXIT_REFUSED;

  doc = cJSON_CreateObject();
  if (rc == EXIT_OK) {
    char hex[2 * sizeof img.sha256 + 1];
    tryon_hex_encode(img.sha256, sizeof img.sha256, hex);
    cJSON_AddBoolToObject(doc, "ok", true);
    cJSON_AddStringToObject(doc, "mime", img.mime);
    cJSON_AddNumberToObject(doc, "width", img.width);
    cJSON_AddNumberToObject(doc, "height", img.height);
    cJSON_AddNumberToObject(doc, "bytes", (double)img.len);
    cJSON_AddStringToObject(doc, "sha256", hex);
  } else {
    cJSON *e = NULL;
    cJSON_AddBoolToObject(doc, "ok", false);
    e = cJSON_AddObjectToObject(doc, "error");
    cJSON_AddStringToObject(e, "code", tryon_status_code(err.status));
    cJSON_AddStringToObject(e, "message", tryon_err_message(&err));
    fprintf(stderr, "tryonctl: file check: %s\n", tryon_err_message(&err));
  }
  cli_print_json(doc);
  tryon_image_release(&img);
  free(data);
  tryon_files_global_shutdown();
  return rc;
}

static const cli_command commands[] = {
    {.name = "check",
     .summary = "check and normalise an image as an upload would be",
     .help =
         "Runs an image file through the upload checks and normalisation the server applies\n"
         "and prints one JSON document: {\"ok\":true,\"mime\",\"width\",\"height\",\"bytes\",\n"
         "\"sha256\"} (of the normalised image) and exit 0, or {\"ok\":false,\"error\":{\"code\",\n"
         "\"message\"}} and exit 1. The declared type comes from the extension (.jpg/.jpeg:\n"
         "image/jpeg, .png: image/png, else none). Needs no configuration and no database.\n",
     .pos = {"PATH"},
     .too_many = "more than one file:",
     .options = {{"--out", CLI_WORD, "OUT",
                  "write the normalised image to OUT (atomically: a temporary file\n"
                  "in the same folder, then rename)",
                  "file"},
                 {"--thumb-out", CLI_WORD, "OUT", "write the thumbnail to OUT, the same way",
                  "file"}},
     .run = cmd_file_check},
};

const cli_group cli_group_file = {
    .name = "file",
    .summary = "check and normalise an image as an upload would be (file check)",
    .help = "Image files, as the upload endpoint sees them.\n",
    .commands = commands,
    .count = sizeof commands / sizeof commands[0]};
