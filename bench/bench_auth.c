/*
 * bench_auth - figures for the auth module: the cost of one initData check (HMAC, a
 * realistic sign-in payload), of one Ed25519 check (Telegram's production vector), and
 * of issuing and of verifying one session token.
 *
 *   build/bench/bench_auth [ITERATIONS]      (default 100000 each)
 *
 * Prints one line per figure; asserts nothing. Needs no database and no network.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tryon/auth.h>

#define BOT_TOKEN "7342037359:AAbench-token-not-a-real-one-0123456789"
#define JWT_SECRET "bench-secret-0123456789abcdef0123456789abcdef"

/* A sign-in as a real client sends it: query_id, a full user object, auth_date. */
#define INITDATA_FIELDS                                                                         \
  "query_id=AAHdF6IQAAAAAN0XohDhrOrc&user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22"     \
  "%D0%92%D0%BB%D0%B0%D0%B4%D0%B8%D1%81%D0%BB%D0%B0%D0%B2%22%2C%22last_name%22%3A%22Kibenko%22" \
  "%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%3A%22ru%22%2C%22is_premium%22%3A"   \
  "true%2C%22allows_write_to_pm%22%3Atrue%2C%22photo_url%22%3A%22https%3A%5C%2F%5C%2Ft.me%5C%"  \
  "2Fi%5C%2Fuserpic%5C%2F320%5C%2F4FPEE4tmP3ATHa57u6MqTDih13LTOiMoKoLDRG4PnSA.svg%22%7D&"       \
  "chat_instance=8134722200314281151&chat_type=private&auth_date=1733584787"

/* Telegram's production-signed vector (tests/data/telegram/initdata_vectors.json). */
#define ED25519_BOT_ID INT64_C(7342037359)
#define ED25519_INITDATA                                                                        \
  "user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22Vladislav%20%2B%20-%20%3F%20%5C%2F%22%" \
  "2C%22last_name%22%3A%22Kibenko%22%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%"  \
  "3A%22ru%22%2C%22is_premium%22%3Atrue%2C%22allows_write_to_pm%22%3Atrue%2C%22photo_url%22%"   \
  "3A%22https%3A%5C%2F%5C%2Ft.me%5C%2Fi%5C%2Fuserpic%5C%2F320%5C%2F4FPEE4tmP3ATHa57u6MqTDih13L" \
  "TOiMoKoLDRG4PnSA.svg%22%7D&chat_instance=8134722200314281151&chat_type=private&auth_date="   \
  "1733584787&hash=2174df5b000556d044f3f020384e879c8efcab55ddea2ced4eb752e93e7080d6&signature=" \
  "zL-ucjNyREiHDE8aihFwpfR9aggP2xiAo3NSpfe-p7IbCisNlDKlo7Kb6G4D0Ao2mBrSgEk4maLSdv6MLIlADQ"

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void report(const char *what, int64_t ns, long n, long failures) {
  printf("%-40s %9.0f ns/op  (%ld runs, %ld failures)\n", what, (double)ns / (double)n, n,
         failures);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
  char signed_data[2048];
  char token[TRYON_JWT_MAX];
  tryon_fixed_clock fc;
  tryon_err err;
  long failures = 0;
  int64_t t0;

  if (n <= 0) {
    fprintf(stderr, "usage: bench_auth [ITERATIONS]\n");
    return 2;
  }
  tryon_fixed_clock_init(&fc, INT64_C(1733584787) * 1000);
  if (tryon_initdata_sign(INITDATA_FIELDS, BOT_TOKEN, signed_data, sizeof signed_data, &err) !=
      TRYON_OK) {
    fprintf(stderr, "bench_auth: %s\n", tryon_err_message(&err));
    return 1;
  }

  {
    tryon_initdata_options opt = {.method = TRYON_INITDATA_HMAC,
                                  .bot_token = BOT_TOKEN,
                                  .max_age_s = 86400,
                                  .max_future_s = 60,
                                  .clock = &fc.clock};
    size_t len = strlen(signed_data);
    tryon_initdata out;
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
      failures += tryon_initdata_verify(signed_data, len, &opt, &out, NULL) != TRYON_OK;
    }
    char label[64];
    snprintf(label, sizeof label, "initdata verify, HMAC (%zu bytes)", len);
    report(label, now_ns() - t0, n, failures);
  }

  {
    tryon_initdata_options opt = {.method = TRYON_INITDATA_ED25519,
                                  .bot_id = ED25519_BOT_ID,
                                  .max_age_s = 86400,
                                  .max_future_s = 60,
                                  .clock = &fc.clock};
    size_t len = strlen(ED25519_INITDATA);
    tryon_initdata out;
    failures = 0;
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
      failures += tryon_initdata_verify(ED25519_INITDATA, len, &opt, &out, NULL) != TRYON_OK;
    }
    char label[64];
    snprintf(label, sizeof label, "initdata verify, Ed25519 (%zu bytes)", len);
    report(label, now_ns() - t0, n, failures);
  }

  failures = 0;
  t0 = now_ns();
  for (long i = 0; i < n; i++) {
    failures += tryon_jwt_issue(JWT_SECRET, strlen(JWT_SECRET), 1000 + i, 3600, &fc.clock, token,
                                sizeof token, NULL, NULL) != TRYON_OK;
  }
  report("jwt issue", now_ns() - t0, n, failures);

  {
    size_t len = strlen(token);
    tryon_jwt_claims claims;
    failures = 0;
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
      failures += tryon_jwt_verify(JWT_SECRET, strlen(JWT_SECRET), token, len, 30, &fc.clock,
                                   &claims, NULL) != TRYON_OK;
    }
    report("jwt verify", now_ns() - t0, n, failures);
  }
  return 0;
}
