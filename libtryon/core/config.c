/*
 * config.c - defaults, then a .env file, then the environment, then validation, all
 * driven by TRYON_CONFIG_MAP so that the list of settings exists once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include <tryon/core.h>

#include "internal.h"

/* A .env file is a handful of lines; anything this large is a mistake (a wrong path). */
#define DOTENV_MAX_BYTES ((size_t)1 << 20)
/* How much of a bad value a message shows, and the size of its quoted, escaped form. */
#define QUOTE_MAX 64
#define QUOTE_BUF (2 * QUOTE_MAX + 8)
/* One problem's text, and the room kept at the end of the message for "; and N more". */
#define PROBLEM_MAX 512
#define PROBLEMS_RESERVE 32
#define SECRET_MIN_BYTES 32

typedef enum var_kind {
  KIND_STR,
  KIND_URL,
  KIND_DBURL,
  KIND_PORT,
  KIND_INT_POOL,
  KIND_INT_MS,
  KIND_LEVEL,
  KIND_SECRET,
  KIND_TOKEN,
  KIND_INT_S,
  KIND_INT_RATE,
  KIND_BOOL,
} var_kind;

/* VAR_<field> is each variable's index in vars[]. */
/* clang-format off */
enum {
#define TRYON__X(field, name, kind, def, needs) VAR_##field,
  TRYON_CONFIG_MAP(TRYON__X)
#undef TRYON__X
  VAR_COUNT
};
/* clang-format on */

typedef struct var_def {
  const char *name;
  var_kind kind;
  const char *def; /* NULL: no default */
  unsigned needs;  /* TRYON_CONFIG_NEED_* bits of the programs that require it */
} var_def;

static const var_def vars[VAR_COUNT] = {
#define TRYON__X(field, name, kind, def, needs) {name, KIND_##kind, def, needs},
    TRYON_CONFIG_MAP(TRYON__X)
#undef TRYON__X
};

/* One validated value; which member is meaningful depends on the kind. */
typedef struct var_value {
  char *s;
  int num;
  tryon_log_level level;
} var_value;

/* DBURL, SECRET and TOKEN values are never echoed and are wiped before being freed. */
static int kind_is_secret(var_kind kind) {
  return kind == KIND_DBURL || kind == KIND_SECRET || kind == KIND_TOKEN;
}

/* Kinds stored as an owned string (the others become numbers). */
static int kind_is_text(var_kind kind) {
  return kind == KIND_STR || kind == KIND_URL || kind_is_secret(kind);
}

static void secret_free(char *s) {
  if (s != NULL) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

/* ------------------------------------------------------------------ problem list */

/* Every problem found, joined with "; " into one message no longer than tryon_err can
 * hold. Once one does not fit, it and all later ones are only counted, so the message
 * keeps the order of the map and ends with "; and N more". */
typedef struct problems {
  tryon_buf text;
  size_t count;
  size_t dropped;
  int nomem;
} problems;

static void problems_add(problems *pr, const char *fmt, ...) TRYON_PRINTF(2, 3);

static void problems_add(problems *pr, const char *fmt, ...) {
  char one[PROBLEM_MAX];
  const char *sep = pr->count != 0 ? "; " : "";
  const size_t limit = TRYON_ERR_MESSAGE_MAX - 1 - PROBLEMS_RESERVE;
  va_list ap;
  int n;
  size_t len;

  va_start(ap, fmt);
  n = vsnprintf(one, sizeof one, fmt, ap);
  va_end(ap);
  if (n < 0) {
    n = snprintf(one, sizeof one, "invalid configuration");
  }
  len = (size_t)n;
  if (len >= sizeof one) {
    len = tryon__utf8_trim_partial(one, sizeof one - 1);
  }
  pr->count++;
  if (pr->dropped != 0 || pr->text.len + strlen(sep) + len > limit) {
    pr->dropped++;
    return;
  }
  if (tryon_buf_append_str(&pr->text, sep) != TRYON_OK ||
      tryon_buf_append(&pr->text, one, len) != TRYON_OK) {
    pr->nomem = 1;
  }
}

/* Writes `v` as a short double-quoted string for a message: at most QUOTE_MAX bytes,
 * control characters and broken UTF-8 as '?', quotes and backslashes escaped. */
static void quote_value(const char *v, char out[QUOTE_BUF]) {
  const unsigned char *p = (const unsigned char *)v;
  size_t n = strlen(v);
  size_t shown = n;
  size_t o = 0;

  if (shown > QUOTE_MAX) {
    shown = tryon__utf8_trim_partial(v, QUOTE_MAX);
  }
  out[o++] = '"';
  for (size_t i = 0; i < shown;) {
    size_t len = tryon__utf8_seq_len(p + i, shown - i);
    if (len == 0 || (len == 1 && (p[i] < 0x20 || p[i] == 0x7f))) {
      out[o++] = '?';
      i++;
      continue;
    }
    if (p[i] == '"' || p[i] == '\\') {
      out[o++] = '\\';
    }
    memcpy(out + o, p + i, len);
    o += len;
    i += len;
  }
  if (shown < n) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o++] = '"';
  out[o] = '\0';
}

/* ----------------------------------------------------------------- .env parsing */

typedef enum line_result {
  LINE_OK,
  LINE_BLANK,
  LINE_NOMEM,
  LINE_SYNTAX,
  LINE_NAME,
  LINE_UNTERMINATED,
  LINE_TRAILING,
  LINE_NUL,
} line_result;

/* Why a line was refused. Never the line itself: it may hold a secret. */
static const char *line_reason(line_result r) {
  switch (r) {
    case LINE_OK:
    case LINE_BLANK:
    case LINE_NOMEM:
      break;
    case LINE_SYNTAX:
      return "expected NAME=value";
    case LINE_NAME:
      return "invalid variable name";
    case LINE_UNTERMINATED:
      return "unterminated quoted value";
    case LINE_TRAILING:
      return "unexpected text after the closing quote";
    case LINE_NUL:
      return "contains a NUL byte";
  }
  return "malformed line";
}

static int is_blank(char c) {
  return c == ' ' || c == '\t';
}

static int is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static char *dup_range(const char *s, size_t n) {
  char *p = malloc(n + 1);

  if (p != NULL) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

/* A double-quoted value starting at p[*i] == '"'. \n, \" and \\ are escapes; any other
 * backslash is kept as written, so Windows-style paths survive. */
static line_result parse_dquoted(const char *p, size_t n, size_t *i, char **value) {
  char *v = malloc(n - *i);
  size_t o = 0;
  size_t k = *i + 1;

  if (v == NULL) {
    return LINE_NOMEM;
  }
  for (; k < n && p[k] != '"'; k++) {
    if (p[k] == '\\' && k + 1 < n) {
      char e = p[k + 1];
      if (e == 'n' || e == '"' || e == '\\') {
        v[o++] = e == 'n' ? '\n' : e;
        k++;
        continue;
      }
    }
    v[o++] = p[k];
  }
  if (k >= n) {
    v[o] = '\0';
    secret_free(v);
    return LINE_UNTERMINATED;
  }
  v[o] = '\0';
  *i = k + 1;
  *value = v;
  return LINE_OK;
}

/*
 * Parses one line (without its newline) into a name (pointing into the line) and an
 * owned value. Accepted: blank lines, "# comments", optional "export ", NAME=value
 * with optional blanks around '=', 'single-quoted' (literal) and "double-quoted"
 * values, and unquoted values, which are trimmed and end at a " #" comment.
 */
static line_result parse_line(const char *p, size_t n, const char **name, size_t *name_len,
                              char **value) {
  size_t i = 0;
  size_t start;
  size_t end;

  *value = NULL;
  if (memchr(p, '\0', n) != NULL) {
    return LINE_NUL;
  }
  while (i < n && is_blank(p[i])) {
    i++;
  }
  if (i == n || p[i] == '#') {
    return LINE_BLANK;
  }
  if (n - i > 6 && memcmp(p + i, "export", 6) == 0 && is_blank(p[i + 6])) {
    i += 6;
    while (i < n && is_blank(p[i])) {
      i++;
    }
  }
  start = i;
  while (i < n && is_name_char(p[i])) {
    i++;
  }
  if (i == start) {
    return LINE_SYNTAX;
  }
  if (p[start] >= '0' && p[start] <= '9') {
    return LINE_NAME;
  }
  *name = p + start;
  *name_len = i - start;
  while (i < n && is_blank(p[i])) {
    i++;
  }
  if (i == n || p[i] != '=') {
    return LINE_SYNTAX;
  }
  i++;
  while (i < n && is_blank(p[i])) {
    i++;
  }

  if (i < n && (p[i] == '\'' || p[i] == '"')) {
    line_result r;
    if (p[i] == '\'') {
      const char *close = memchr(p + i + 1, '\'', n - i - 1);
      if (close == NULL) {
        return LINE_UNTERMINATED;
      }
      *value = dup_range(p + i + 1, (size_t)(close - (p + i + 1)));
      if (*value == NULL) {
        return LINE_NOMEM;
      }
      i = (size_t)(close - p) + 1;
    } else {
      r = parse_dquoted(p, n, &i, value);
      if (r != LINE_OK) {
        return r;
      }
    }
    while (i < n && is_blank(p[i])) {
      i++;
    }
    if (i < n && p[i] != '#') {
      secret_free(*value);
      *value = NULL;
      return LINE_TRAILING;
    }
    return LINE_OK;
  }

  /* Unquoted: a '#' starts a comment only after a blank, so KEY=a#b keeps its '#'. */
  start = i;
  end = n;
  for (size_t k = i; k < n; k++) {
    if (p[k] == '#' && is_blank(p[k - 1])) {
      end = k;
      break;
    }
  }
  while (end > start && is_blank(p[end - 1])) {
    end--;
  }
  *value = dup_range(p + start, end - start);
  return *value != NULL ? LINE_OK : LINE_NOMEM;
}

static int var_index(const char *name, size_t len) {
  for (int i = 0; i < VAR_COUNT; i++) {
    if (strlen(vars[i].name) == len && memcmp(vars[i].name, name, len) == 0) {
      return i;
    }
  }
  return -1;
}

/* Reads the whole file into `b`. A missing file is no problem; an unreadable or
 * oversized one is reported as a problem. Only running out of memory fails. */
static tryon_status dotenv_read(const char *path, tryon_buf *b, problems *pr) {
  char chunk[4096];
  FILE *f = NULL;
  size_t n;
  int partial = 0;
  tryon_status st = TRYON_OK;

  /* "e": close on exec, so a program that spawns children does not leak the fd. */
  f = fopen(path, "re");
  if (f == NULL) {
    int e = errno;
    char why[128];
    if (e != ENOENT) {
      /* strerror_r, not strerror: loading may happen on any thread. */
      if (strerror_r(e, why, sizeof why) != 0) {
        snprintf(why, sizeof why, "error %d", e);
      }
      problems_add(pr, "%s cannot be opened (%s)", path, why);
    }
    goto out;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    st = tryon_buf_append(b, chunk, n);
    if (st == TRYON_E_TOO_LARGE) {
      problems_add(pr, "%s is larger than %zu bytes", path, (size_t)DOTENV_MAX_BYTES);
      st = TRYON_OK;
      partial = 1;
      goto out;
    }
    if (st != TRYON_OK) {
      goto out;
    }
  }
  if (ferror(f)) {
    problems_add(pr, "%s cannot be read", path);
    partial = 1;
  }

out:
  /* Part of a file is not applied: its cut last line would add a bogus problem, and
   * the problem already reported makes the load fail anyway. */
  if (partial && b->cap != 0) {
    OPENSSL_cleanse(b->data, b->len);
    tryon_buf_release(b);
  }
  OPENSSL_cleanse(chunk, sizeof chunk);
  if (f != NULL) {
    fclose(f);
  }
  return st;
}

/* Applies each line of the file; a later line wins over an earlier one. Names that are
 * not settings (other tools' variables) are ignored. */
static tryon_status dotenv_apply(const char *data, size_t len, const char *path,
                                 char *vals[VAR_COUNT], problems *pr) {
  size_t pos = 0;
  size_t line_no = 0;
  tryon_status st = TRYON_OK;

  /* Editors on some systems start the file with a byte order mark. */
  if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) {
    pos = 3;
  }
  while (pos < len) {
    const char *line = data + pos;
    const char *nl = memchr(line, '\n', len - pos);
    size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;
    const char *name = NULL;
    size_t name_len = 0;
    char *value = NULL;
    line_result r;
    int idx;

    pos += n + (nl != NULL ? 1 : 0);
    line_no++;
    if (n > 0 && line[n - 1] == '\r') {
      n--;
    }
    r = parse_line(line, n, &name, &name_len, &value);
    if (r == LINE_NOMEM) {
      st = TRYON_E_NOMEM;
      goto out;
    }
    if (r == LINE_BLANK) {
      continue;
    }
    if (r != LINE_OK) {
      problems_add(pr, "%s line %zu: %s", path, line_no, line_reason(r));
      continue;
    }
    idx = var_index(name, name_len);
    if (idx < 0 || value[0] == '\0') {
      /* Empty counts as unset: it clears an earlier line of the same file too. */
      if (idx >= 0) {
        secret_free(vals[idx]);
        vals[idx] = NULL;
      }
      secret_free(value);
      continue;
    }
    secret_free(vals[idx]);
    vals[idx] = value;
  }

out:
  return st;
}

/* The first entry for a name wins, as with getenv; an empty one counts as unset. The
 * values are borrowed from envp. */
static void env_collect(const char *const *envp, const char *vals[VAR_COUNT]) {
  unsigned char seen[VAR_COUNT] = {0};

  for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
    const char *eq = strchr(envp[i], '=');
    int idx;

    if (eq == NULL) {
      continue;
    }
    idx = var_index(envp[i], (size_t)(eq - envp[i]));
    if (idx < 0 || seen[idx]) {
      continue;
    }
    seen[idx] = 1;
    if (eq[1] != '\0') {
      vals[idx] = eq + 1;
    }
  }
}

/* -------------------------------------------------------------------- validation */

static void kind_range(var_kind kind, long *lo, long *hi) {
  *lo = 1;
  *hi = 1;
  switch (kind) {
    case KIND_PORT:
      *hi = 65535;
      break;
    case KIND_INT_POOL:
      *hi = 200;
      break;
    case KIND_INT_MS:
      *hi = 3600000;
      break;
    case KIND_INT_S:
      *hi = 31536000; /* a year */
      break;
    case KIND_INT_RATE:
      *hi = 1000000;
      break;
    case KIND_STR:
    case KIND_URL:
    case KIND_DBURL:
    case KIND_LEVEL:
    case KIND_SECRET:
    case KIND_TOKEN:
    case KIND_BOOL:
      break;
  }
}

/* true/false, yes/no, on/off, 1/0, in any case. */
static int parse_bool(const char *v, int *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (strcasecmp(v, yes[i]) == 0) {
      *out = 1;
      return 1;
    }
    if (strcasecmp(v, no[i]) == 0) {
      *out = 0;
      return 1;
    }
  }
  return 0;
}

/* A decimal integer in [lo, hi], the whole string, no blanks or '+' around it. */
static int parse_int(const char *v, long lo, long hi, int *out) {
  char *end = NULL;
  long n;

  if (!((v[0] >= '0' && v[0] <= '9') || (v[0] == '-' && v[1] >= '0' && v[1] <= '9'))) {
    return 0;
  }
  errno = 0;
  n = strtol(v, &end, 10);
  if (errno != 0 || *end != '\0' || n < lo || n > hi) {
    return 0;
  }
  *out = (int)n;
  return 1;
}

static int has_space_or_control(const char *v) {
  for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
    if (*p <= 0x20 || *p == 0x7f) {
      return 1;
    }
  }
  return 0;
}

/* http:// or https://, then an authority with a non-empty host and, if there is a
 * port, a valid one; no blanks or control characters anywhere. */
static int url_ok(const char *v) {
  const char *auth;
  const char *auth_end;
  const char *host;
  const char *after;

  if (strncasecmp(v, "http://", 7) == 0) {
    auth = v + 7;
  } else if (strncasecmp(v, "https://", 8) == 0) {
    auth = v + 8;
  } else {
    return 0;
  }
  if (has_space_or_control(v)) {
    return 0;
  }
  auth_end = auth + strcspn(auth, "/?#");
  host = auth;
  for (const char *p = auth; p < auth_end; p++) {
    if (*p == '@') {
      host = p + 1;
    }
  }
  if (host < auth_end && *host == '[') {
    const char *close = memchr(host, ']', (size_t)(auth_end - host));
    if (close == NULL || close == host + 1) {
      return 0;
    }
    after = close + 1;
  } else {
    after = host;
    while (after < auth_end && *after != ':') {
      after++;
    }
    if (after == host) {
      return 0;
    }
  }
  if (after < auth_end) {
    long port = 0;
    const char *p = after + 1;
    if (*after != ':' || p == auth_end || auth_end - p > 5) {
      return 0;
    }
    for (; p < auth_end; p++) {
      if (*p < '0' || *p > '9') {
        return 0;
      }
      port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535) {
      return 0;
    }
  }
  return 1;
}

/* Whether libpq can parse `v`. Its error text is not used: it quotes pieces of the
 * string, which may be the password. */
static tryon_status dburl_check(const char *v, int *ok) {
  char *errmsg = NULL;
  PQconninfoOption *opts = PQconninfoParse(v, &errmsg);
  tryon_status st = TRYON_OK;

  *ok = opts != NULL;
  if (opts == NULL && errmsg == NULL) {
    /* libpq's way of saying it ran out of memory. */
    st = TRYON_E_NOMEM;
  }
  for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
    if (o->val != NULL) {
      OPENSSL_cleanse(o->val, strlen(o->val));
    }
  }
  PQconninfoFree(opts);
  if (errmsg != NULL) {
    OPENSSL_cleanse(errmsg, strlen(errmsg));
    PQfreemem(errmsg);
  }
  return st;
}

/* Checks one variable's value (NULL: unset) and converts it into `out`. A bad value adds
 * a problem; only running out of memory fails. */
static tryon_status validate(int i, const char *v, unsigned needs, var_value *out, problems *pr) {
  const var_def *d = &vars[i];
  char q[QUOTE_BUF];
  long lo;
  long hi;
  int ok = 1;
  tryon_status st = TRYON_OK;

  if (v == NULL) {
    if ((d->needs & needs) != 0) {
      problems_add(pr, "%s is missing", d->name);
    }
    goto out;
  }
  switch (d->kind) {
    case KIND_STR:
      break;
    case KIND_URL:
      ok = url_ok(v);
      if (!ok) {
        quote_value(v, q);
        problems_add(pr, "%s must be an http:// or https:// URL with a host (got %s)", d->name, q);
      }
      break;
    case KIND_DBURL:
      st = dburl_check(v, &ok);
      if (st == TRYON_OK && !ok) {
        problems_add(pr, "%s is not a valid PostgreSQL connection string", d->name);
      }
      break;
    case KIND_BOOL:
      ok = parse_bool(v, &out->num);
      if (!ok) {
        quote_value(v, q);
        problems_add(pr, "%s must be true or false (got %s)", d->name, q);
      }
      break;
    case KIND_PORT:
    case KIND_INT_POOL:
    case KIND_INT_MS:
    case KIND_INT_S:
    case KIND_INT_RATE:
      kind_range(d->kind, &lo, &hi);
      ok = parse_int(v, lo, hi, &out->num);
      if (!ok) {
        quote_value(v, q);
        problems_add(pr, "%s must be an integer from %ld to %ld (got %s)", d->name, lo, hi, q);
      }
      break;
    case KIND_LEVEL:
      ok = tryon_log_level_parse(v, &out->level) == TRYON_OK;
      if (!ok) {
        quote_value(v, q);
        problems_add(pr, "%s must be one of debug, info, warn, error (got %s)", d->name, q);
      }
      break;
    case KIND_SECRET:
      ok = strlen(v) >= SECRET_MIN_BYTES;
      if (!ok) {
        problems_add(pr, "%s must be at least %d bytes", d->name, SECRET_MIN_BYTES);
      }
      break;
    case KIND_TOKEN:
      /* A token pasted with a stray newline or space fails far away, at the first
       * Telegram call; catching it here names the variable. */
      ok = !has_space_or_control(v);
      if (!ok) {
        problems_add(pr, "%s must not contain spaces or control characters", d->name);
      }
      break;
  }
  if (st != TRYON_OK || !ok || !kind_is_text(d->kind)) {
    goto out;
  }
  out->s = strdup(v);
  if (out->s == NULL) {
    st = TRYON_E_NOMEM;
  }

out:
  return st;
}

/* ------------------------------------------------------------------ load/release */

/* Moving a validated value into the struct: the X-macro expands to one typed assignment
 * per field, so a field whose C type does not match its kind fails to compile. */
#define STORE_STR(dst, v) \
  do {                    \
    (dst) = (v).s;        \
    (v).s = NULL;         \
  } while (0)
#define STORE_URL STORE_STR
#define STORE_DBURL STORE_STR
#define STORE_SECRET STORE_STR
#define STORE_TOKEN STORE_STR
#define STORE_PORT(dst, v) ((dst) = (v).num)
#define STORE_INT_POOL STORE_PORT
#define STORE_INT_MS STORE_PORT
#define STORE_INT_S STORE_PORT
#define STORE_INT_RATE STORE_PORT
#define STORE_BOOL(dst, v) ((dst) = (v).num != 0)
#define STORE_LEVEL(dst, v) ((dst) = (v).level)

#define RELEASE_STR(f) free(f)
#define RELEASE_URL RELEASE_STR
#define RELEASE_DBURL(f) secret_free(f)
#define RELEASE_SECRET RELEASE_DBURL
#define RELEASE_TOKEN RELEASE_DBURL
#define RELEASE_PORT(f) ((void)0)
#define RELEASE_INT_POOL RELEASE_PORT
#define RELEASE_INT_MS RELEASE_PORT
#define RELEASE_INT_S RELEASE_PORT
#define RELEASE_INT_RATE RELEASE_PORT
#define RELEASE_BOOL RELEASE_PORT
#define RELEASE_LEVEL RELEASE_PORT

tryon_status tryon_config_load(tryon_config *cfg, const char *const *envp, const char *dotenv_path,
                               unsigned needs, tryon_err *err) {
  char *dotenv_vals[VAR_COUNT] = {0};
  const char *env_vals[VAR_COUNT] = {0};
  var_value vals[VAR_COUNT];
  tryon_config tmp;
  tryon_buf file;
  problems pr = {.count = 0};
  tryon_status st = TRYON_OK;

  memset(vals, 0, sizeof vals);
  memset(&tmp, 0, sizeof tmp);
  tryon_buf_init(&file, DOTENV_MAX_BYTES);
  tryon_buf_init(&pr.text, TRYON_ERR_MESSAGE_MAX - 1);
  if (cfg == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "no configuration to load into");
    goto out;
  }
  memset(cfg, 0, sizeof *cfg);

  if (dotenv_path != NULL) {
    st = dotenv_read(dotenv_path, &file, &pr);
    if (st == TRYON_OK) {
      st = dotenv_apply(file.data, file.len, dotenv_path, dotenv_vals, &pr);
    }
    if (st != TRYON_OK) {
      goto out;
    }
  }
  env_collect(envp, env_vals);

  for (int i = 0; i < VAR_COUNT; i++) {
    const char *v = env_vals[i] != NULL ? env_vals[i] : dotenv_vals[i];
    st = validate(i, v != NULL ? v : vars[i].def, needs, &vals[i], &pr);
    if (st != TRYON_OK) {
      goto out;
    }
  }
  /* Settings that only make sense together. A callback URL invites anyone who learns it
   * to post "this task has news": without the signing key nothing tells kie.ai's calls
   * from anyone else's, and each one cuts a Retry-After wait short. */
  if (vals[VAR_kie_callback_url].s != NULL && vals[VAR_kie_webhook_hmac_key].s == NULL)
    problems_add(&pr, "TRYON_KIE_WEBHOOK_HMAC_KEY is required when TRYON_KIE_CALLBACK_URL is set");
  if (pr.nomem) {
    st = TRYON_E_NOMEM;
    goto out;
  }
  if (pr.count != 0) {
    if (pr.dropped != 0 && tryon_buf_appendf(&pr.text, "; and %zu more", pr.dropped) != TRYON_OK) {
      st = TRYON_E_NOMEM;
      goto out;
    }
    st = tryon_err_set(err, TRYON_E_CONFIG, "%s", pr.text.data);
    goto out;
  }

#define TRYON__X(field, name, kind, def, needs) STORE_##kind(tmp.field, vals[VAR_##field]);
  TRYON_CONFIG_MAP(TRYON__X)
#undef TRYON__X
  *cfg = tmp;

out:
  if (st == TRYON_E_NOMEM) {
    tryon_err_set(err, st, "out of memory loading the configuration");
  }
  for (int i = 0; i < VAR_COUNT; i++) {
    if (kind_is_secret(vars[i].kind)) {
      secret_free(vals[i].s);
    } else {
      free(vals[i].s);
    }
    secret_free(dotenv_vals[i]);
  }
  if (file.cap != 0) {
    OPENSSL_cleanse(file.data, file.len);
  }
  tryon_buf_release(&file);
  tryon_buf_release(&pr.text);
  return st;
}

void tryon_config_release(tryon_config *cfg) {
  if (cfg == NULL) {
    return;
  }
#define TRYON__X(field, name, kind, def, needs) RELEASE_##kind(cfg->field);
  TRYON_CONFIG_MAP(TRYON__X)
#undef TRYON__X
  memset(cfg, 0, sizeof *cfg);
}

size_t tryon_config_var_count(void) {
  return VAR_COUNT;
}

const char *tryon_config_var_name(size_t i) {
  return i < VAR_COUNT ? vars[i].name : NULL;
}
