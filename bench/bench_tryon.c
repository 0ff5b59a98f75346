/*
 * bench_tryon - the try-on path's own costs, with a worker running on the database
 * (bench/bench_tryon.sh starts one with the offline provider):
 *   1. POST /api/tryon's transaction (tryon_generations_create_tryon: photos checked,
 *      job enqueued, credits charged, generation recorded): calls/s and latency with
 *      1 and 2 threads;
 *   2. end to end: from the first request to the last result stored, try-ons/s, and the
 *      per-try-on time (generation created → finished) p50/p99.
 * argv: conninfo, storage folder, try-ons per thread (default 100). Prints figures;
 * asserts nothing.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tryon/billing.h>
#include <tryon/files.h>
#include <tryon/generations.h>
#include <vips/vips.h>

enum { USERS = 8 };

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct user {
  int64_t id;
  char person[TRYON_UUID_STR_LEN], item[TRYON_UUID_STR_LEN];
} user;

static user users[USERS];
static tryon_db *db;
static long per_thread = 100;

static void die(const char *what, const tryon_err *err) {
  fprintf(stderr, "bench_tryon: %s: %s\n", what, err ? tryon_err_message(err) : "");
  exit(1);
}

/* A photo as an upload would leave it: normalised, stored with its thumbnail, a row. */
static void store_photo(tryon_db_conn *c, tryon_storage *s, int64_t owner, int w, int h,
                        double shade, char id[TRYON_UUID_STR_LEN]) {
  VipsImage *img = NULL, *lin = NULL;
  void *jpeg = NULL;
  size_t len = 0;
  tryon_err err;
  double a[3] = {1, 1, 1}, b[3] = {shade, 255 - shade, 128};
  if (vips_black(&img, w, h, "bands", 3, NULL) != 0 ||
      vips_linear(img, &lin, a, b, 3, "uchar", TRUE, NULL) != 0 ||
      vips_jpegsave_buffer(lin, &jpeg, &len, "Q", 85, NULL) != 0)
    die("make a photo", NULL);
  g_object_unref(img);
  g_object_unref(lin);
  tryon_image im;
  if (tryon_image_normalise(jpeg, len, "image/jpeg", &im, &err) != TRYON_OK)
    die("normalise", &err);
  g_free(jpeg);
  tryon_uuid u;
  tryon_uuid_v4(&u);
  tryon_uuid_format(&u, id);
  char thumb[48];
  snprintf(thumb, sizeof thumb, "%s.thumb", id);
  if (tryon_storage_put(s, id, im.data, im.len, &err) != TRYON_OK ||
      tryon_storage_put(s, thumb, im.thumb, im.thumb_len, &err) != TRYON_OK ||
      tryon_db_exec(c, "BEGIN", 0, NULL, NULL, &err) != TRYON_OK ||
      tryon_uploads_insert(c, owner, id, &im, 1000, NULL, &err) != TRYON_OK ||
      tryon_db_exec(c, "COMMIT", 0, NULL, NULL, &err) != TRYON_OK)
    die("store a photo", &err);
  tryon_image_release(&im);
}

typedef struct runner {
  int index;
  double *lat;
  long n;
} runner;

static void *run(void *arg) {
  runner *r = arg;
  tryon_db_conn *c = NULL;
  tryon_err err;
  if (tryon_db_acquire(db, &c, &err) != TRYON_OK)
    die("acquire", &err);
  for (long i = 0; i < r->n; i++) {
    const user *u = &users[(r->index * 4 + i) % USERS];
    char key[64];
    snprintf(key, sizeof key, "bench-%d-%ld-%ld", r->index, i, (long)getpid());
    tryon_generations_tryon_params p = {.user_id = u->id,
                                        .person_upload_id = u->person,
                                        .item_upload_id = u->item,
                                        .category = "top",
                                        .idempotency_key = key};
    tryon_generations_created out;
    double t0 = now_ms();
    if (tryon_generations_create_tryon(c, &p, tryon_clock_now_ms(NULL), &out, NULL, &err) !=
        TRYON_OK)
      die("create", &err);
    r->lat[i] = now_ms() - t0;
  }
  tryon_db_release(c);
  return NULL;
}

static void phase(int threads) {
  runner rs[2];
  pthread_t th[2];
  double *all = calloc((size_t)(threads * per_thread), sizeof *all);
  double t0 = now_ms();
  for (int t = 0; t < threads; t++) {
    rs[t] = (runner){.index = t + threads * 10, .lat = all + t * per_thread, .n = per_thread};
    pthread_create(&th[t], NULL, run, &rs[t]);
  }
  for (int t = 0; t < threads; t++)
    pthread_join(th[t], NULL);
  double el = now_ms() - t0;
  long n = threads * per_thread;
  qsort(all, (size_t)n, sizeof *all, cmp);
  printf("  %d thread(s): %.0f try-ons queued/s, p50 %.2f ms, p99 %.2f ms\n", threads,
         (double)n * 1000.0 / el, all[n / 2], all[(long)((double)(n - 1) * 0.99)]);
  free(all);
}

static double value(tryon_db_conn *c, const char *sql) {
  PGresult *res = NULL;
  tryon_err err;
  if (tryon_db_exec(c, sql, 0, NULL, &res, &err) != TRYON_OK)
    die(sql, &err);
  double v = PQgetisnull(res, 0, 0) ? 0 : strtod(PQgetvalue(res, 0, 0), NULL);
  PQclear(res);
  return v;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_tryon CONNINFO STORAGE_DIR [TRYONS_PER_THREAD]\n");
    return 2;
  }
  if (argc > 3)
    per_thread = strtol(argv[3], NULL, 10);
  if (per_thread < 1 || per_thread > 100000)
    per_thread = 100;
  tryon_err err;
  tryon_storage *storage = NULL;
  tryon_db_conn *c = NULL;
  tryon_db_options o = {.conninfo = argv[1], .pool_size = 3, .acquire_timeout_ms = 10000};
  if (tryon_files_global_init(&err) != TRYON_OK || tryon_db_new(&o, &db, &err) != TRYON_OK ||
      tryon_storage_local_new(argv[2], &storage, &err) != TRYON_OK ||
      tryon_db_acquire(db, &c, &err) != TRYON_OK)
    die("set-up", &err);
  /* Users with a 1024x1365 person photo, a 600x600 item and credits for everything. */
  for (int i = 0; i < USERS; i++) {
    char sql[160], key[64];
    snprintf(sql, sizeof sql,
             "INSERT INTO users (telegram_id) VALUES (%d) ON CONFLICT (telegram_id) DO UPDATE"
             " SET telegram_id = excluded.telegram_id RETURNING id",
             880000 + i);
    users[i].id = (int64_t)value(c, sql);
    store_photo(c, storage, users[i].id, 1024, 1365, 40.0 + i, users[i].person);
    store_photo(c, storage, users[i].id, 600, 600, 200.0 - i, users[i].item);
    snprintf(key, sizeof key, "grant:bench-%d-%ld", i, (long)getpid());
    tryon_billing_result r;
    if (tryon_billing_grant(c, users[i].id, 100000, key, "bench", NULL, tryon_clock_now_ms(NULL),
                            &r, &err) != TRYON_OK)
      die("grant", &err);
  }
  double start = value(c, "SELECT extract(epoch FROM now()) * 1000");
  printf("== POST /api/tryon's transaction (%ld try-ons a thread)\n", per_thread);
  phase(1);
  phase(2);
  long total = 3 * per_thread;
  printf("== end to end with the running worker (offline provider), %ld try-ons\n", total);
  for (int i = 0; i < 6000; i++) {
    if (value(c, "SELECT count(*) FROM generations WHERE status IN ('queued', 'running')") == 0)
      break;
    usleep(100 * 1000);
  }
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT (extract(epoch FROM max(finished_at)) * 1000 - %.0f) FROM generations", start);
  double span = value(c, sql);
  printf("  %.1f try-ons/s (all %ld done %.1f s after the first request); failed: %.0f\n",
         (double)total * 1000.0 / span, total, span / 1000.0,
         value(c, "SELECT count(*) FROM generations WHERE status = 'failed'"));
  printf("  per try-on, started -> finished: p50 %.0f ms, p99 %.0f ms\n",
         value(c, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
                  " finished_at - started_at) * 1000) FROM generations"),
         value(c, "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM"
                  " finished_at - started_at) * 1000) FROM generations"));
  tryon_db_release(c);
  tryon_storage_free(storage);
  tryon_db_free(db);
  tryon_files_global_shutdown();
  return 0;
}
