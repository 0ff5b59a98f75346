/*
 * Image storage: the interface and the local filesystem backend.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <tryon/files.h>

struct tryon_storage {
  const tryon_storage_ops *ops;
  void *impl;
};

tryon_storage *tryon_storage_new(const tryon_storage_ops *ops, void *impl) {
  tryon_storage *s = calloc(1, sizeof *s);
  if (s == NULL) {
    ops->free(impl);
    return NULL;
  }
  s->ops = ops;
  s->impl = impl;
  return s;
}

void tryon_storage_free(tryon_storage *s) {
  if (s == NULL)
    return;
  s->ops->free(s->impl);
  free(s);
}

bool tryon_storage_key_valid(const char *key) {
  tryon_uuid u;
  char id[TRYON_UUID_STR_LEN];
  size_t n = key ? strlen(key) : 0;
  if (n == TRYON_UUID_STR_LEN - 1 + strlen(".thumb") && strcmp(key + 36, ".thumb") == 0)
    n = 36;
  if (n != 36)
    return false;
  memcpy(id, key, 36);
  id[36] = '\0';
  /* Lower case only: one spelling per object. */
  for (size_t i = 0; i < 36; i++) {
    if (id[i] >= 'A' && id[i] <= 'F')
      return false;
  }
  return tryon_uuid_parse(id, &u) == TRYON_OK;
}

static tryon_status check_key(const char *key, tryon_err *err) {
  if (!tryon_storage_key_valid(key))
    return tryon_err_set(err, TRYON_E_INVALID, "invalid storage key");
  return TRYON_OK;
}

tryon_status tryon_storage_put(tryon_storage *s, const char *key, const void *data, size_t len,
                               tryon_err *err) {
  tryon_status st = check_key(key, err);
  return st != TRYON_OK ? st : s->ops->put(s->impl, key, data, len, err);
}

tryon_status tryon_storage_get(tryon_storage *s, const char *key, tryon_buf *out, tryon_err *err) {
  tryon_status st = check_key(key, err);
  return st != TRYON_OK ? st : s->ops->get(s->impl, key, out, err);
}

tryon_status tryon_storage_list(tryon_storage *s, const char *after, tryon_storage_list_fn fn,
                                void *ud, tryon_err *err) {
  if (s == NULL || fn == NULL || s->ops->list == NULL)
    return tryon_err_set(err, TRYON_E_INVALID, "this storage cannot list its objects");
  return s->ops->list(s->impl, after != NULL && after[0] != '\0' ? after : NULL, fn, ud, err);
}

tryon_status tryon_storage_remove(tryon_storage *s, const char *key, tryon_err *err) {
  tryon_status st = check_key(key, err);
  return st != TRYON_OK ? st : s->ops->remove(s->impl, key, err);
}

/* --------------------------------------------------------------- local filesystem */

typedef struct local {
  char *root;
} local;

/* root/ab/cd/<key>; with `dir_only`, root/ab/cd. */
static void local_path(const local *l, const char *key, bool dir_only, char *out, size_t cap) {
  if (dir_only)
    snprintf(out, cap, "%s/%.2s/%.2s", l->root, key, key + 2);
  else
    snprintf(out, cap, "%s/%.2s/%.2s/%s", l->root, key, key + 2, key);
}

static int mkdir_p(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

static tryon_status local_put(void *impl, const char *key, const void *data, size_t len,
                              tryon_err *err) {
  local *l = impl;
  char dir[4096], path[4096], tmp[4200];
  tryon_status st = TRYON_OK;
  int fd = -1;
  bool tmp_made = false;

  local_path(l, key, true, dir, sizeof dir);
  local_path(l, key, false, path, sizeof path);
  if (mkdir_p(dir) != 0) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot create the storage folder: %s", strerror(errno));
    goto out;
  }
  tryon_uuid u;
  char rnd[TRYON_UUID_STR_LEN];
  tryon_uuid_v4(&u);
  tryon_uuid_format(&u, rnd);
  snprintf(tmp, sizeof tmp, "%s/.tmp-%s", dir, rnd);
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    st = tryon_err_set(err, TRYON_E_IO, "cannot create a storage file: %s", strerror(errno));
    goto out;
  }
  tmp_made = true;
  for (size_t done = 0; done < len;) {
    ssize_t w = write(fd, (const char *)data + done, len - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      st = tryon_err_set(err, TRYON_E_IO, "cannot write a storage file: %s", strerror(errno));
      goto out;
    }
    done += (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    fd = -1;
    st = tryon_err_set(err, TRYON_E_IO, "cannot flush a storage file: %s", strerror(errno));
    goto out;
  }
  fd = -1;
  /* link(2), unlike rename(2), refuses to replace an existing object. */
  if (link(tmp, path) != 0) {
    st = errno == EEXIST
             ? tryon_err_set(err, TRYON_E_CONFLICT, "storage key already exists")
             : tryon_err_set(err, TRYON_E_IO, "cannot store a file: %s", strerror(errno));
    goto out;
  }
  if (fsync_dir(dir) != 0)
    st = tryon_err_set(err, TRYON_E_IO, "cannot flush the storage folder: %s", strerror(errno));
out:
  if (fd >= 0)
    close(fd);
  if (tmp_made)
    unlink(tmp);
  return st;
}

static tryon_status local_get(void *impl, const char *key, tryon_buf *out, tryon_err *err) {
  local *l = impl;
  char path[4096], chunk[65536];
  tryon_status st = TRYON_OK;
  ssize_t n;

  local_path(l, key, false, path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return errno == ENOENT
               ? tryon_err_set(err, TRYON_E_NOT_FOUND, "no such stored file")
               : tryon_err_set(err, TRYON_E_IO, "cannot open a stored file: %s", strerror(errno));
  }
  while ((n = read(fd, chunk, sizeof chunk)) != 0) {
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      st = tryon_err_set(err, TRYON_E_IO, "cannot read a stored file: %s", strerror(errno));
      break;
    }
    st = tryon_buf_append(out, chunk, (size_t)n);
    if (st != TRYON_OK) {
      st = tryon_err_set(err, st, "stored file is larger than expected");
      break;
    }
  }
  close(fd);
  return st;
}

static tryon_status local_remove(void *impl, const char *key, tryon_err *err) {
  local *l = impl;
  char path[4096];
  local_path(l, key, false, path, sizeof path);
  if (unlink(path) != 0 && errno != ENOENT)
    return tryon_err_set(err, TRYON_E_IO, "cannot remove a stored file: %s", strerror(errno));
  return TRYON_OK;
}

/* A temporary file older than this was left by a writer that died: removed on sight. */
#define STALE_TMP_S 3600

static bool is_hex2(const char *name) {
  return strlen(name) == 2 && tryon_hex_digit(name[0]) >= 0 && tryon_hex_digit(name[1]) >= 0;
}

/* A folder's entry names, sorted bytewise (not by locale), so the walk is in key order. */
typedef struct names {
  char **v;
  size_t n, cap;
} names;

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_release(names *ns) {
  for (size_t i = 0; i < ns->n; i++)
    free(ns->v[i]);
  free(ns->v);
  memset(ns, 0, sizeof *ns);
}

/* Reads folder `path` (a missing one is empty); false only when out of memory. */
static bool names_read(const char *path, names *ns) {
  bool ok = true;
  memset(ns, 0, sizeof *ns);
  DIR *d = opendir(path);
  if (d == NULL)
    return true;
  for (struct dirent *e; ok && (e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    if (ns->n == ns->cap) {
      size_t cap = ns->cap ? ns->cap * 2 : 64;
      char **v = realloc(ns->v, cap * sizeof *v);
      if (v == NULL) {
        ok = false;
        break;
      }
      ns->v = v;
      ns->cap = cap;
    }
    if ((ns->v[ns->n] = strdup(e->d_name)) == NULL)
      ok = false;
    else
      ns->n++;
  }
  closedir(d);
  if (!ok)
    names_release(ns);
  else if (ns->n > 1) /* qsort wants an array, even for no names */
    qsort(ns->v, ns->n, sizeof *ns->v, cmp_names);
  return ok;
}

/* root/ab/cd/<key>: two levels of two hex digits, then the objects. A key's folders are
 * its first four characters, so walking each level sorted walks the keys in order, and
 * a walk that starts after `after` skips whole folders before it. */
static tryon_status local_list(void *impl, const char *after, tryon_storage_list_fn fn, void *ud,
                               tryon_err *err) {
  local *l = impl;
  char p1[4096], p2[4096], file[4200];
  tryon_status st = TRYON_OK;
  bool go = true;
  names top, mid, leaf;
  memset(&mid, 0, sizeof mid);
  memset(&leaf, 0, sizeof leaf);
  DIR *probe = opendir(l->root);
  if (probe == NULL)
    return tryon_err_set(err, TRYON_E_IO, "cannot read the storage folder: %s", strerror(errno));
  closedir(probe);
  if (!names_read(l->root, &top))
    return tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
  size_t alen = after ? strlen(after) : 0;
  for (size_t i = 0; go && st == TRYON_OK && i < top.n; i++) {
    const char *a = top.v[i];
    if (!is_hex2(a) || (alen >= 2 && strncmp(a, after, 2) < 0))
      continue;
    bool same1 = alen >= 2 && strncmp(a, after, 2) == 0;
    if ((size_t)snprintf(p1, sizeof p1, "%s/%s", l->root, a) >= sizeof p1)
      continue;
    if (!names_read(p1, &mid)) {
      st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
      break;
    }
    for (size_t j = 0; go && st == TRYON_OK && j < mid.n; j++) {
      const char *b = mid.v[j];
      if (!is_hex2(b) || (same1 && alen >= 4 && strncmp(b, after + 2, 2) < 0))
        continue;
      bool same2 = same1 && alen >= 4 && strncmp(b, after + 2, 2) == 0;
      if ((size_t)snprintf(p2, sizeof p2, "%s/%s", p1, b) >= sizeof p2)
        continue;
      if (!names_read(p2, &leaf)) {
        st = tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
        break;
      }
      for (size_t k = 0; go && k < leaf.n; k++) {
        const char *name = leaf.v[k];
        struct stat sb;
        if ((size_t)snprintf(file, sizeof file, "%s/%s", p2, name) >= sizeof file ||
            lstat(file, &sb) != 0 || !S_ISREG(sb.st_mode))
          continue;
        if (strncmp(name, ".tmp-", 5) == 0) {
          if (time(NULL) - sb.st_mtime > STALE_TMP_S)
            unlink(file);
          continue;
        }
        if (same2 && strcmp(name, after) <= 0)
          continue;
        if (tryon_storage_key_valid(name))
          go = fn(name, (int64_t)sb.st_mtime * 1000, ud);
      }
      names_release(&leaf);
    }
    names_release(&mid);
  }
  names_release(&top);
  return st;
}

static void local_free(void *impl) {
  local *l = impl;
  if (l == NULL)
    return;
  free(l->root);
  free(l);
}

static const tryon_storage_ops local_ops = {.put = local_put,
                                            .get = local_get,
                                            .remove = local_remove,
                                            .list = local_list,
                                            .free = local_free};

tryon_status tryon_storage_local_new(const char *root, tryon_storage **out, tryon_err *err) {
  *out = NULL;
  if (root == NULL || root[0] == '\0' || strlen(root) > 3000)
    return tryon_err_set(err, TRYON_E_INVALID, "invalid storage folder");
  if (mkdir_p(root) != 0)
    return tryon_err_set(err, TRYON_E_IO, "cannot create the storage folder: %s", strerror(errno));
  local *l = calloc(1, sizeof *l);
  if (l == NULL || (l->root = strdup(root)) == NULL) {
    free(l);
    return tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
  }
  *out = tryon_storage_new(&local_ops, l);
  return *out ? TRYON_OK : tryon_err_set(err, TRYON_E_NOMEM, "out of memory");
}
