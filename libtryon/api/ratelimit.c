/*
 * Token buckets in a fixed-size, sharded table.
 *
 * Tokens are counted in millionths so that refill needs no floating point: a bucket
 * gains `rate` tokens a second, that is rate * 1000 millionths a millisecond. The table
 * never grows: a key probes PROBE slots of its shard; a new key takes an empty slot or
 * else the longest-idle one among those it probed.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tryon/api.h>

#define SHARDS 32
#define SLOTS 512 /* per shard, a power of two */
#define PROBE 16
#define KEY_MAX 64
#define ONE 1000000LL /* one token, in millionths */

typedef struct bucket {
  uint64_t hash; /* 0: an empty slot */
  int64_t tokens;
  int64_t last_ms;
  char key[KEY_MAX];
} bucket;

typedef struct shard {
  pthread_mutex_t mu;
  bucket slots[SLOTS];
} shard;

struct tryon_ratelimit {
  int64_t rate; /* tokens per second */
  int64_t capacity;
  char seed[17]; /* random per limiter: a client cannot pick keys that collide */
  shard shards[SHARDS];
};

tryon_ratelimit *tryon_ratelimit_new(int rate_per_s, int burst) {
  if (rate_per_s < 1 || burst < 1)
    return NULL;
  tryon_ratelimit *rl = calloc(1, sizeof *rl);
  if (rl == NULL)
    return NULL;
  rl->rate = rate_per_s;
  rl->capacity = (int64_t)burst * ONE;
  tryon_uuid u;
  tryon_uuid_v4(&u);
  tryon_hex_encode(u.b, 8, rl->seed);
  for (int i = 0; i < SHARDS; i++)
    pthread_mutex_init(&rl->shards[i].mu, NULL);
  return rl;
}

void tryon_ratelimit_free(tryon_ratelimit *rl) {
  if (rl == NULL)
    return;
  for (int i = 0; i < SHARDS; i++)
    pthread_mutex_destroy(&rl->shards[i].mu);
  free(rl);
}

/* The key's hash under this limiter's seed; never 0 (0 marks an empty slot). */
static uint64_t hash_key(const tryon_ratelimit *rl, const char *k) {
  char buf[KEY_MAX + sizeof rl->seed];
  snprintf(buf, sizeof buf, "%s%.*s", rl->seed, KEY_MAX - 1, k);
  uint64_t h = tryon_hash64(buf);
  return h ? h : 1;
}

static bucket *find_or_claim(tryon_ratelimit *rl, shard *s, uint64_t h, const char *key,
                             int64_t now_ms) {
  bucket *victim = NULL;
  size_t start = (size_t)(h >> 32) & (SLOTS - 1);
  for (size_t i = 0; i < PROBE; i++) {
    bucket *b = &s->slots[(start + i) & (SLOTS - 1)];
    if (b->hash == h && strncmp(b->key, key, KEY_MAX - 1) == 0)
      return b;
    if (b->hash == 0) {
      victim = b; /* slots are never emptied, so the key is not further on */
      break;
    }
    if (victim == NULL || b->last_ms < victim->last_ms)
      victim = b;
  }
  victim->hash = h;
  victim->tokens = rl->capacity;
  victim->last_ms = now_ms;
  size_t n = strnlen(key, KEY_MAX - 1);
  memcpy(victim->key, key, n);
  victim->key[n] = '\0';
  return victim;
}

bool tryon_ratelimit_take(tryon_ratelimit *rl, const char *key, int64_t now_ms,
                          int *retry_after_s) {
  uint64_t h = hash_key(rl, key);
  shard *s = &rl->shards[h % SHARDS];
  bool ok;

  pthread_mutex_lock(&s->mu);
  bucket *b = find_or_claim(rl, s, h, key, now_ms);
  if (now_ms > b->last_ms) {
    /* Cap the gap before multiplying: a long-idle bucket is simply full. */
    int64_t dt = now_ms - b->last_ms;
    int64_t full_after = rl->capacity / (rl->rate * 1000) + 1;
    int64_t gained = dt >= full_after ? rl->capacity : dt * rl->rate * 1000;
    b->tokens = b->tokens + gained > rl->capacity ? rl->capacity : b->tokens + gained;
  }
  /* A clock that stepped back restarts the count from now instead of starving the key. */
  b->last_ms = now_ms;
  ok = b->tokens >= ONE;
  if (ok) {
    b->tokens -= ONE;
  } else if (retry_after_s != NULL) {
    int64_t per_ms = rl->rate * 1000;
    int64_t wait_ms = (ONE - b->tokens + per_ms - 1) / per_ms;
    int64_t secs = (wait_ms + 999) / 1000;
    *retry_after_s = secs < 1 ? 1 : (int)secs;
  }
  pthread_mutex_unlock(&s->mu);
  return ok;
}
