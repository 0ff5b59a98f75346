/*
 * The web app served by the API (include/tryon/api.h section 6), without a network or a
 * database: a temporary folder stands for webapp/dist; requests go through
 * tryon_api_plan_request as the transport sends them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tryon/api.h>

#include "api/api_internal.h"

#include "api_test.h"
#include "testsupport.h"

#define PAGE_CSP                                                                          \
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " \
  "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "          \
  "frame-ancestors https://web.telegram.org https://*.telegram.org"

static const char INDEX[] = "<!doctype html><title>tryon</title><div id=root></div>";
static const char APP_JS[] = "console.log('app');";

typedef struct fixture {
  char dir[64];
  tryon_config cfg;
  tryon_db *db;
  tryon_api *api;
} fixture;

static void write_file(const char *dir, const char *rel, const char *data, size_t len) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(data, 1, len, fp), len);
  fclose(fp);
}

static void make_dist(const char *dir) {
  char sub[128];
  snprintf(sub, sizeof sub, "%s/assets", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  write_file(dir, "index.html", INDEX, strlen(INDEX));
  write_file(dir, "index.html.gz", "GZ-INDEX", 8);
  write_file(dir, "favicon.svg", "<svg/>", 6);
  write_file(dir, ".hidden", "secret", 6);
  write_file(dir, "assets/app-1a2b.js", APP_JS, strlen(APP_JS));
  write_file(dir, "assets/app-1a2b.js.gz", "GZ-JS", 5);
  write_file(dir, "assets/app-1a2b.js.br", "BR-JS", 5);
  write_file(dir, "assets/app-9f.css", "body{}", 6);
  write_file(dir, "assets/font.woff2", "wOF2", 4);
  write_file(dir, "assets/orphan.txt.br", "BR-ORPHAN", 9); /* no original: a file itself */
}

/* An API over `dir` (a database that is never reached: nothing here needs it). */
static tryon_status open_api(fixture *f, const char *dir, tryon_err *err) {
  char webapp[96];
  snprintf(webapp, sizeof webapp, "TRYON_WEBAPP_DIR=%s", dir);
  const char *env[] = {"TRYON_DATABASE_URL=host=/nonexistent dbname=x",
                       "TRYON_BOT_TOKEN=12345:test-token",
                       "TRYON_JWT_SECRET=0123456789abcdef0123456789abcdef",
                       "TRYON_PUBLIC_URL=https://app.example.com",
                       webapp,
                       NULL};
  assert_int_equal(tryon_config_load(&f->cfg, env, NULL, TRYON_CONFIG_NEED_AUTH, err), TRYON_OK);
  tryon_db_options dbo = {.conninfo = f->cfg.database_url,
                          .pool_size = 1,
                          .acquire_timeout_ms = 100,
                          .connect_timeout_s = 1};
  assert_int_equal(tryon_db_new(&dbo, &f->db, err), TRYON_OK);
  tryon_api_options apo = {.cfg = &f->cfg, .db = f->db};
  return tryon_api_new(&apo, &f->api, err);
}

static void close_api(fixture *f) {
  tryon_api_free(f->api);
  f->api = NULL;
  tryon_db_free(f->db);
  f->db = NULL;
  tryon_config_release(&f->cfg);
}

static void remove_tree(const char *dir) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  tryon_err err;
  snprintf(f->dir, sizeof f->dir, "/tmp/tryon-webapp-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  make_dist(f->dir);
  EXPECT_STATUS(open_api(f, f->dir, &err), TRYON_OK, &err, "open the api");
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  close_api(f);
  remove_tree(f->dir);
  free(f);
  return 0;
}

/* Plans (and, unless done, handles) a body-less request. */
static void serve(fixture *f, const char *method, const char *path, hdrs *h,
                  tryon_api_response *resp, tryon_api_plan *plan) {
  api_serve(f->api, method, path, h, resp, plan);
}

/* The bytes an answer carries, whichever way it holds them. */
static void body_of(const tryon_api_response *r, const char **data, size_t *len) {
  *data = r->static_body ? r->static_body : r->body.data;
  *len = r->static_body ? r->static_len : r->body.len;
}

static void test_webapp__paths_map_to_files_index_or_404(void **state) {
  fixture *f = *state;
  static const struct {
    const char *method;
    const char *path;
    int status;
    const char *body; /* NULL: not a web app answer (the API's) */
    const char *type;
  } cases[] = {
      {"GET", "/", 200, INDEX, "text/html; charset=utf-8"},
      {"HEAD", "/", 200, INDEX, "text/html; charset=utf-8"},
      {"GET", "/index.html", 200, INDEX, "text/html; charset=utf-8"},
      {"GET", "/history", 200, INDEX, "text/html; charset=utf-8"},
      {"GET", "/tryon/step/2", 200, INDEX, "text/html; charset=utf-8"},
      {"GET", "/missing.png", 200, INDEX, "text/html; charset=utf-8"},
      {"GET", "/favicon.svg", 200, "<svg/>", "image/svg+xml"},
      {"GET", "/assets/app-1a2b.js", 200, APP_JS, "text/javascript; charset=utf-8"},
      {"GET", "/assets/app-9f.css", 200, "body{}", "text/css; charset=utf-8"},
      {"GET", "/assets/font.woff2", 200, "wOF2", "font/woff2"},
      {"GET", "/assets/orphan.txt.br", 200, "BR-ORPHAN", "application/octet-stream"},
      {"GET", "/assets/gone-0000.js", 404, NULL, NULL},
      {"GET", "/assets/app-1a2b.js.gz", 404, NULL, NULL}, /* a variant, not a file */
      {"GET", "/.hidden", 200, INDEX, "text/html; charset=utf-8"},
      {"GET", "/api/nope", 404, NULL, NULL},
      {"GET", "/api", 404, NULL, NULL},
      {"GET", "/files/x", 403, NULL, NULL},
      {"GET", "/webhooks/nope", 404, NULL, NULL},
      {"GET", "/healthz", 200, NULL, NULL},
      {"GET", "/metrics", 404, NULL, NULL}, /* no metrics token: as before */
      {"POST", "/history", 405, NULL, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    hdrs h = {{NULL}};
    tryon_api_response r;
    tryon_api_plan plan;
    const char *data;
    size_t len;
    serve(f, cases[i].method, cases[i].path, &h, &r, &plan);
    if (r.status != cases[i].status)
      fail_msg("%s %s: status %d, want %d", cases[i].method, cases[i].path, r.status,
               cases[i].status);
    if (cases[i].body != NULL) {
      /* Answered in the plan, from memory: never a dispatch thread, never the disk. */
      assert_true(plan.done);
      assert_false(plan.blocking);
      body_of(&r, &data, &len);
      assert_non_null(r.static_body);
      assert_int_equal(len, strlen(cases[i].body));
      assert_memory_equal(data, cases[i].body, len);
      assert_string_equal(r.content_type, cases[i].type);
      assert_string_equal(r.route, "webapp");
    } else {
      assert_null(r.static_body);
      assert_string_equal(r.content_type, "application/json; charset=utf-8");
    }
    if (cases[i].status == 405)
      assert_string_equal(resp_header(&r, "Allow"), "GET, HEAD");
    tryon_api_response_release(&r);
  }
}

static void test_webapp__encoding_negotiation(void **state) {
  fixture *f = *state;
  static const struct {
    const char *path;
    const char *accept; /* NULL: no header */
    const char *body;
    const char *encoding; /* NULL: no Content-Encoding */
  } cases[] = {
      {"/assets/app-1a2b.js", NULL, APP_JS, NULL},
      {"/assets/app-1a2b.js", "gzip, deflate, br", "BR-JS", "br"},
      {"/assets/app-1a2b.js", "gzip", "GZ-JS", "gzip"},
      {"/assets/app-1a2b.js", "GZIP;q=0.5", "GZ-JS", "gzip"},
      {"/assets/app-1a2b.js", "br;q=0, gzip", "GZ-JS", "gzip"},
      {"/assets/app-1a2b.js", "br;q=0, gzip;q=0", APP_JS, NULL},
      {"/assets/app-1a2b.js", "*", "BR-JS", "br"},
      {"/assets/app-1a2b.js", "*;q=0", APP_JS, NULL},
      {"/assets/app-1a2b.js", "identity", APP_JS, NULL},
      {"/assets/app-1a2b.js", "deflate", APP_JS, NULL},
      {"/assets/app-1a2b.js", "x-gzip", "GZ-JS", "gzip"},
      {"/assets/app-1a2b.js", "brotli, gzipped", APP_JS, NULL}, /* names, not prefixes */
      {"/", "br, gzip", "GZ-INDEX", "gzip"},                    /* no .br built */
      {"/history", "gzip", "GZ-INDEX", "gzip"},
      {"/assets/app-9f.css", "br, gzip", "body{}", NULL}, /* no variants at all */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    hdrs h = {{"Accept-Encoding"}, {cases[i].accept}};
    if (cases[i].accept == NULL)
      h.names[0] = NULL;
    tryon_api_response r;
    tryon_api_plan plan;
    const char *data;
    size_t len;
    serve(f, "GET", cases[i].path, &h, &r, &plan);
    assert_int_equal(r.status, 200);
    body_of(&r, &data, &len);
    if (len != strlen(cases[i].body) || memcmp(data, cases[i].body, len) != 0)
      fail_msg("%s with %s: got %.*s", cases[i].path, cases[i].accept, (int)len, data);
    const char *ce = resp_header(&r, "Content-Encoding");
    if (cases[i].encoding == NULL)
      assert_null(ce);
    else
      assert_string_equal(ce, cases[i].encoding);
    assert_string_equal(resp_header(&r, "Vary"), "Accept-Encoding");
    tryon_api_response_release(&r);
  }
}

static void test_webapp__caching_and_security_headers(void **state) {
  fixture *f = *state;
  static const struct {
    const char *path;
    const char *cache;
    bool html;
  } cases[] = {
      {"/", "no-cache", true},
      {"/wallet", "no-cache", true},
      {"/favicon.svg", "no-cache", false},
      {"/assets/app-1a2b.js", "public, max-age=31536000, immutable", false},
      {"/assets/app-9f.css", "public, max-age=31536000, immutable", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    hdrs h = {{NULL}};
    tryon_api_response r;
    tryon_api_plan plan;
    serve(f, "GET", cases[i].path, &h, &r, &plan);
    assert_int_equal(r.status, 200);
    assert_string_equal(resp_header(&r, "Cache-Control"), cases[i].cache);
    assert_string_equal(resp_header(&r, "X-Content-Type-Options"), "nosniff");
    if (cases[i].html) {
      assert_string_equal(resp_header(&r, "Content-Security-Policy"), PAGE_CSP);
      assert_null(resp_header(&r, "X-Frame-Options"));
    } else {
      /* Only pages are framed; anything else keeps the API's strict policy. */
      assert_string_equal(resp_header(&r, "Content-Security-Policy"),
                          "default-src 'none'; frame-ancestors 'none'");
      assert_string_equal(resp_header(&r, "X-Frame-Options"), "DENY");
    }
    tryon_api_response_release(&r);
  }
  /* JSON answers keep today's headers, the unknown asset's 404 among them. */
  static const char *const json_paths[] = {"/healthz", "/assets/gone.js", "/api/nope"};
  for (size_t i = 0; i < sizeof json_paths / sizeof json_paths[0]; i++) {
    hdrs h = {{NULL}};
    tryon_api_response r;
    tryon_api_plan plan;
    serve(f, "GET", json_paths[i], &h, &r, &plan);
    assert_string_equal(resp_header(&r, "X-Frame-Options"), "DENY");
    assert_string_equal(resp_header(&r, "Content-Security-Policy"),
                        "default-src 'none'; frame-ancestors 'none'");
    assert_string_equal(resp_header(&r, "Cache-Control"), "no-store");
    tryon_api_response_release(&r);
  }
}

static void test_webapp__etag_and_304(void **state) {
  fixture *f = *state;
  hdrs h = {{NULL}};
  tryon_api_response r;
  tryon_api_plan plan;
  char plain[40], gz[40], br[40];

  serve(f, "GET", "/assets/app-1a2b.js", &h, &r, &plan);
  snprintf(plain, sizeof plain, "%s", resp_header(&r, "ETag"));
  tryon_api_response_release(&r);
  h = (hdrs){{"Accept-Encoding"}, {"gzip"}};
  serve(f, "GET", "/assets/app-1a2b.js", &h, &r, &plan);
  snprintf(gz, sizeof gz, "%s", resp_header(&r, "ETag"));
  tryon_api_response_release(&r);
  h = (hdrs){{"Accept-Encoding"}, {"br"}};
  serve(f, "GET", "/assets/app-1a2b.js", &h, &r, &plan);
  snprintf(br, sizeof br, "%s", resp_header(&r, "ETag"));
  tryon_api_response_release(&r);
  /* Strong, quoted, and one per encoding (each variant is its own representation). */
  assert_int_equal(plain[0], '"');
  assert_string_not_equal(plain, gz);
  assert_string_not_equal(plain, br);
  assert_string_not_equal(gz, br);

  char weak[48], list[96];
  snprintf(weak, sizeof weak, "W/%s", plain);
  snprintf(list, sizeof list, "\"other\", %s", plain);
  const struct {
    const char *accept;
    const char *inm;
    int status;
  } cases[] = {
      {NULL, plain, 304},   {NULL, weak, 304}, {NULL, list, 304},
      {NULL, "*", 304},     {NULL, gz, 200},   {"gzip", gz, 304},
      {"gzip", plain, 200}, {"br", br, 304},   {NULL, "\"nope\"", 200},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    h = (hdrs){{"If-None-Match", cases[i].accept ? "Accept-Encoding" : NULL},
               {cases[i].inm, cases[i].accept}};
    serve(f, "GET", "/assets/app-1a2b.js", &h, &r, &plan);
    if (r.status != cases[i].status)
      fail_msg("If-None-Match %s, Accept-Encoding %s: %d", cases[i].inm, cases[i].accept, r.status);
    if (r.status == 304) {
      assert_null(r.static_body);
      assert_int_equal(r.body.len, 0);
      assert_non_null(resp_header(&r, "ETag"));
      assert_string_equal(resp_header(&r, "Cache-Control"), "public, max-age=31536000, immutable");
      assert_string_equal(r.content_type, "text/javascript; charset=utf-8");
    }
    tryon_api_response_release(&r);
  }
  /* index.html revalidates too, and its 304 still carries the page's policy. */
  h = (hdrs){{NULL}};
  serve(f, "GET", "/", &h, &r, &plan);
  snprintf(plain, sizeof plain, "%s", resp_header(&r, "ETag"));
  tryon_api_response_release(&r);
  h = (hdrs){{"If-None-Match"}, {plain}};
  serve(f, "GET", "/settings", &h, &r, &plan);
  assert_int_equal(r.status, 304);
  assert_string_equal(resp_header(&r, "Content-Security-Policy"), PAGE_CSP);
  assert_null(resp_header(&r, "X-Frame-Options"));
  tryon_api_response_release(&r);
}

static void test_webapp__content_types_by_extension(void **state) {
  (void)state;
  static const struct {
    const char *path;
    const char *type;
  } cases[] = {
      {"/index.html", "text/html; charset=utf-8"},
      {"/a/b.JS", "text/javascript; charset=utf-8"},
      {"/x.mjs", "text/javascript; charset=utf-8"},
      {"/x.css", "text/css; charset=utf-8"},
      {"/x.json", "application/json; charset=utf-8"},
      {"/manifest.webmanifest", "application/manifest+json"},
      {"/x.png", "image/png"},
      {"/x.jpeg", "image/jpeg"},
      {"/x.webp", "image/webp"},
      {"/x.ico", "image/x-icon"},
      {"/x.woff2", "font/woff2"},
      {"/x.wasm", "application/wasm"},
      {"/x.unknown", "application/octet-stream"},
      {"/dir.d/noext", "application/octet-stream"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_string_equal(tryon__webapp_content_type(cases[i].path), cases[i].type);
}

/* A folder that is missing, has no index.html, or is too big stops the API at start
 * with a message that says which. */
static void test_webapp__refuses_to_start_on_a_bad_folder(void **state) {
  (void)state;
  char dir[64], big[128];
  tryon_err err;
  fixture f = {{0}};

  tryon_err_clear(&err);
  assert_int_equal(open_api(&f, "/nonexistent/webapp/dist", &err), TRYON_E_CONFIG);
  assert_non_null(strstr(tryon_err_message(&err), "cannot open TRYON_WEBAPP_DIR"));
  assert_null(f.api);
  close_api(&f);

  snprintf(dir, sizeof dir, "/tmp/tryon-webapp-XXXXXX");
  assert_non_null(mkdtemp(dir));
  write_file(dir, "app.js", "x", 1);
  tryon_err_clear(&err);
  assert_int_equal(open_api(&f, dir, &err), TRYON_E_CONFIG);
  assert_non_null(strstr(tryon_err_message(&err), "has no index.html"));
  close_api(&f);

  /* Over the limit: a sparse file, so the test writes nothing and nothing is read. */
  write_file(dir, "index.html", INDEX, strlen(INDEX));
  snprintf(big, sizeof big, "%s/huge.bin", dir);
  int fd = open(big, O_WRONLY | O_CREAT, 0600);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)TRYON_WEBAPP_MAX_BYTES + 1), 0);
  close(fd);
  tryon_err_clear(&err);
  assert_int_equal(open_api(&f, dir, &err), TRYON_E_CONFIG);
  assert_non_null(strstr(tryon_err_message(&err), "larger than 64 MiB"));
  close_api(&f);

  /* A symbolic link could serve any file of the machine: refused (review finding). */
  assert_int_equal(unlink(big), 0);
  char link_path[128];
  snprintf(link_path, sizeof link_path, "%s/leak.txt", dir);
  assert_int_equal(symlink("/etc/hostname", link_path), 0);
  tryon_err_clear(&err);
  assert_int_equal(open_api(&f, dir, &err), TRYON_E_CONFIG);
  assert_non_null(strstr(tryon_err_message(&err), "symbolic link"));
  close_api(&f);
  assert_int_equal(unlink(link_path), 0);

  /* Fixed, it starts; a trailing slash names the same folder. */
  char slash[80];
  snprintf(slash, sizeof slash, "%s/", dir);
  tryon_err_clear(&err);
  EXPECT_STATUS(open_api(&f, slash, &err), TRYON_OK, &err, "open with a trailing slash");
  assert_int_equal(tryon__webapp_files(f.api->webapp), 2);
  close_api(&f);
  remove_tree(dir);
}

/* Without TRYON_WEBAPP_DIR nothing changes: / is a JSON 404 as it always was. */
static void test_webapp__unset_means_no_app(void **state) {
  (void)state;
  tryon_config cfg = {0};
  tryon_db *db = NULL;
  tryon_api *api = NULL;
  tryon_err err;
  const char *env[] = {"TRYON_DATABASE_URL=host=/nonexistent dbname=x",
                       "TRYON_BOT_TOKEN=12345:test-token",
                       "TRYON_JWT_SECRET=0123456789abcdef0123456789abcdef", NULL};
  assert_int_equal(tryon_config_load(&cfg, env, NULL, TRYON_CONFIG_NEED_AUTH, &err), TRYON_OK);
  tryon_db_options dbo = {.conninfo = cfg.database_url, .pool_size = 1};
  assert_int_equal(tryon_db_new(&dbo, &db, &err), TRYON_OK);
  tryon_api_options apo = {.cfg = &cfg, .db = db};
  assert_int_equal(tryon_api_new(&apo, &api, &err), TRYON_OK);
  hdrs h = {{NULL}};
  tryon_api_request req = {.method = "GET", .path = "/", .header = lookup, .header_ud = &h};
  tryon_api_response r;
  tryon_api_plan plan;
  tryon_api_response_init(&r);
  tryon_api_plan_request(api, &req, &plan, &r);
  assert_int_equal(r.status, 404);
  assert_null(r.static_body);
  assert_string_equal(resp_header(&r, "X-Frame-Options"), "DENY");
  tryon_api_response_release(&r);
  tryon_api_free(api);
  tryon_db_free(db);
  tryon_config_release(&cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_webapp__paths_map_to_files_index_or_404, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_webapp__encoding_negotiation, setup, teardown),
      cmocka_unit_test_setup_teardown(test_webapp__caching_and_security_headers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_webapp__etag_and_304, setup, teardown),
      cmocka_unit_test(test_webapp__content_types_by_extension),
      cmocka_unit_test(test_webapp__refuses_to_start_on_a_bad_folder),
      cmocka_unit_test(test_webapp__unset_means_no_app),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
