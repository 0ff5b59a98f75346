/*
 * json.c - JSON out of a response, and the blocking JSON round trip.
 */
#include <tryon/http.h>

tryon_status tryon_http_response_json(const tryon_http_response *r, cJSON **out, tryon_err *err) {
  tryon_status st = TRYON_OK;
  const char *end = NULL;
  cJSON *doc = NULL;
  if (out != NULL)
    *out = NULL;
  if (r == NULL || out == NULL) {
    st = tryon_err_set(err, TRYON_E_INVALID, "no response");
    goto out;
  }
  if (r->body.data == NULL || r->body.len == 0) {
    st = tryon_err_set(err, TRYON_E_UPSTREAM, "the response body is empty, not JSON");
    goto bad;
  }
  doc = cJSON_ParseWithLengthOpts(r->body.data, r->body.len, &end, 0);
  if (doc != NULL) {
    /* Whitespace may follow the document; anything else is a malformed answer. */
    const char *stop = r->body.data + r->body.len;
    while (end < stop && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
      end++;
    if (end != stop) {
      cJSON_Delete(doc);
      doc = NULL;
    }
  }
  if (doc == NULL) {
    st = tryon_err_set(err, TRYON_E_UPSTREAM, "the response body is not JSON");
    goto bad;
  }
  *out = doc;
  goto out;
bad:
  if (err != NULL)
    err->http_status = (int)r->status;
out:
  return st;
}

tryon_status tryon_http_json(const tryon_http_request *req, tryon_http_response *out,
                             cJSON **json_out, tryon_err *err) {
  tryon_status st;
  tryon_err perr;
  if (json_out != NULL)
    *json_out = NULL;
  st = tryon_http_perform(req, out, err);
  if (json_out == NULL || out == NULL || out->attempts == 0)
    goto out;
  if (st == TRYON_OK) {
    st = tryon_http_response_json(out, json_out, err);
  } else {
    /* An error answer's JSON, when it is JSON; the transfer's verdict stands. */
    tryon_err_clear(&perr);
    (void)tryon_http_response_json(out, json_out, &perr);
  }
out:
  return st;
}
