/*
 * bench_files - figures for tryon_image_normalise: normalisations per second and the
 * peak resident memory, for a ~1 MB and a ~5 MB photo (made here: gradient + noise,
 * which compresses like a camera picture), with one and with two threads calling at
 * once. Or give your own files:
 *
 *   build/bench/bench_files [PHOTO...]
 *
 * Prints one line per figure; asserts nothing. Peak RSS is getrusage's ru_maxrss,
 * reset before each run through /proc/self/clear_refs where the kernel allows it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <tryon/core.h>
#include <tryon/files.h>
#include <vips/vips.h>

enum { MAX_THREADS = 2, MIN_RUNS = 6 };
#define MIN_SECONDS 4.0

typedef struct photo {
  char label[64];
  void *data;
  size_t len;
} photo;

typedef struct runner {
  const photo *p;
  int runs;
  int failures;
} runner;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resident memory now, from /proc/self/statm (KiB), or 0. */
static long rss_now_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, resident = 0;
  if (f != NULL) {
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
      resident = 0;
    fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static long peak_rss_kib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* Linux: writing 5 resets the peak RSS the kernel keeps (and getrusage reports). */
static bool reset_peak_rss(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  bool ok = f != NULL && fputs("5", f) >= 0;
  if (f != NULL && fclose(f) != 0)
    ok = false;
  return ok;
}

/*
 * A w x h photo-like JPEG of at most `max_bytes`: a diagonal colour gradient with
 * Gaussian noise (sigma `noise`) on each band, at the highest quality that fits.
 */
static int make_photo(int w, int h, double noise, size_t max_bytes, photo *out) {
  VipsImage *scope = vips_image_new();
  VipsImage **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(scope), 12);
  int rc = -1;

  if (vips_xyz(&t[0], w, h, NULL) != 0 || vips_extract_band(t[0], &t[1], 0, NULL) != 0 ||
      vips_extract_band(t[0], &t[2], 1, NULL) != 0 ||
      vips_linear1(t[1], &t[3], 255.0 / w, 0, NULL) != 0 ||
      vips_linear1(t[2], &t[4], 255.0 / h, 0, NULL) != 0 || vips_add(t[3], t[4], &t[5], NULL) ||
      vips_linear1(t[5], &t[6], 0.5, 0, NULL) != 0)
    goto out;
  VipsImage *bands[3];
  for (int b = 0; b < 3; b++) {
    VipsImage *n = NULL, *sum = NULL;
    if (vips_gaussnoise(&n, w, h, "mean", 0.0, "sigma", noise, "seed", 7 + b, NULL) != 0)
      goto out;
    vips_object_local(scope, n);
    if (vips_add(b == 1 ? t[3] : b == 2 ? t[4] : t[6], n, &sum, NULL) != 0)
      goto out;
    vips_object_local(scope, sum);
    bands[b] = sum;
  }
  if (vips_bandjoin(bands, &t[7], 3, NULL) != 0 || vips_cast_uchar(t[7], &t[8], NULL) != 0 ||
      vips_copy(t[8], &t[9], "interpretation", VIPS_INTERPRETATION_sRGB, NULL) != 0 ||
      (t[10] = vips_image_copy_memory(t[9])) == NULL)
    goto out;
  for (int q = 98; q >= 50; q -= 2) {
    void *buf = NULL;
    size_t len = 0;
    if (vips_jpegsave_buffer(t[10], &buf, &len, "Q", q, "subsample_mode",
                             VIPS_FOREIGN_SUBSAMPLE_OFF, NULL) != 0)
      goto out;
    if (len <= max_bytes) {
      out->data = buf;
      out->len = len;
      snprintf(out->label, sizeof out->label, "%dx%d JPEG %.2f MB (Q%d)", w, h, (double)len / 1e6,
               q);
      rc = 0;
      goto out;
    }
    g_free(buf);
  }
out:
  if (rc != 0)
    vips_error_clear();
  g_object_unref(scope);
  return rc;
}

static int load_photo(const char *path, photo *out) {
  gchar *buf = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &buf, &len, NULL))
    return -1;
  out->data = buf;
  out->len = len;
  snprintf(out->label, sizeof out->label, "%.40s (%.2f MB)", path, (double)len / 1e6);
  return 0;
}

static void *run_loop(void *arg) {
  runner *r = arg;
  for (int i = 0; i < r->runs; i++) {
    tryon_image img = {0};
    if (tryon_image_normalise(r->p->data, r->p->len, NULL, &img, NULL) != TRYON_OK)
      r->failures++;
    tryon_image_release(&img);
  }
  return NULL;
}

/* Runs `threads` callers, each normalising the photo `runs` times; returns seconds. */
static double timed(const photo *p, int threads, int runs, int *failures) {
  pthread_t th[MAX_THREADS];
  runner r[MAX_THREADS];
  double t0 = now_s();

  for (int i = 0; i < threads; i++) {
    r[i] = (runner){.p = p, .runs = runs};
    pthread_create(&th[i], NULL, run_loop, &r[i]);
  }
  *failures = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    *failures += r[i].failures;
  }
  return now_s() - t0;
}

static void bench(const photo *p, int threads) {
  int failures = 0, runs;
  double one, secs;
  bool reset;
  long before;

  /* One warm-up call sizes the run to about MIN_SECONDS. */
  one = timed(p, 1, 1, &failures);
  runs = (int)(MIN_SECONDS / (one > 1e-3 ? one : 1e-3)) + 1;
  if (runs < MIN_RUNS)
    runs = MIN_RUNS;
  before = rss_now_kib();
  reset = reset_peak_rss();
  secs = timed(p, threads, runs, &failures);
  printf("%s, %d thread(s): %.2f normalisations/s (%.0f ms each per thread), peak RSS %.0f MiB"
         " (+%.0f MiB over the %.0f MiB before the run)%s%s\n",
         p->label, threads, (double)(runs * threads) / secs, secs * 1e3 / runs,
         (double)peak_rss_kib() / 1024.0, (double)(peak_rss_kib() - before) / 1024.0,
         (double)before / 1024.0, reset ? "" : " (process peak, not reset)",
         failures ? " - SOME FAILED" : "");
}

int main(int argc, char **argv) {
  photo photos[16];
  int n = 0, rc = 1;
  tryon_err err;

  tryon_err_clear(&err);
  if (tryon_files_global_init(&err) != TRYON_OK) {
    fprintf(stderr, "bench_files: %s\n", tryon_err_message(&err));
    return 1;
  }
  if (argc > 1) {
    for (int i = 1; i < argc && n < 16; i++) {
      if (load_photo(argv[i], &photos[n]) != 0) {
        fprintf(stderr, "bench_files: cannot read %s\n", argv[i]);
        goto out;
      }
      n++;
    }
  } else {
    /* A 1 MB photo (3 MP) and one just under the 5 MiB ceiling (12 MP, a phone's). */
    if (make_photo(2048, 1536, 8.0, 1000000, &photos[n++]) != 0 ||
        make_photo(4032, 3024, 10.0, TRYON_FILES_MAX_BYTES, &photos[n++]) != 0) {
      fprintf(stderr, "bench_files: cannot make the test photos\n");
      goto out;
    }
  }
  printf("baseline peak RSS after start-up: %.0f MiB\n", (double)peak_rss_kib() / 1024.0);
  for (int i = 0; i < n; i++) {
    for (int threads = 1; threads <= MAX_THREADS; threads++)
      bench(&photos[i], threads);
  }
  rc = 0;
out:
  for (int i = 0; i < n; i++)
    g_free(photos[i].data);
  tryon_files_global_shutdown();
  return rc;
}
