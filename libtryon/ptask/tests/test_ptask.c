/*
 * The provider task engine's pure decisions (ptask_internal.h), table by table: the
 * createTask repeat rule, progress inside the caller's range, where results may be
 * downloaded from, upload names and MIME types, and which configurations are refused.
 * The flow itself (uploads, createTask, polls, callbacks, resumes, the ambiguous
 * createTask) runs end to end in tests/integration/test_tryon.c against the kie fake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <tryon/ptask.h>

#include "ptask_internal.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void test_ptask__create_repeats_only_when_nothing_was_made(void **state) {
  static const struct {
    const char *code;
    bool sent;
    bool again;
  } cases[] = {
      {"rate_limited", true, true}, /* 429/433: kie.ai made nothing */
      {"maintenance", true, true},  /* 455 */
      {"network", false, true},     /* the connection never opened */
      {"timeout", false, true},
      {"network", true, false}, /* a reset after sending: a task may exist */
      {"timeout", true, false},
      {"server_error", true, false}, /* a 5xx may hide a task */
      {"bad_answer", true, false},
      {"internal", true, false},
  };
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tryon_verdict v;
    memset(&v, 0, sizeof v);
    tryon_verdict_set(&v, TRYON_VERDICT_RETRY, cases[i].code, NULL);
    if (tryon__ptask_create_may_repeat(&v, cases[i].sent) != cases[i].again)
      fail_msg("case %zu (%s, sent %d)", i, cases[i].code, (int)cases[i].sent);
  }
}

static void test_ptask__progress_fills_the_range(void **state) {
  (void)state;
  /* The try-on's range, 5..85: the numbers it has always shown. */
  assert_int_equal(tryon__ptask_progress(5, 85, 0), 5);
  assert_int_equal(tryon__ptask_progress(5, 85, 3), 20);  /* uploads done */
  assert_int_equal(tryon__ptask_progress(5, 85, 4), 25);  /* task created */
  assert_int_equal(tryon__ptask_progress(5, 85, 5), 30);  /* task recorded */
  assert_int_equal(tryon__ptask_progress(5, 85, 16), 85); /* downloading */
  static const struct {
    int polls, want;
  } polls[] = {{0, 30}, {1, 35}, {4, 50}, {10, 80}, {11, 80}, {1000, 80}};
  for (size_t i = 0; i < ARRAY_LEN(polls); i++)
    assert_int_equal(tryon__ptask_poll_progress(5, 85, polls[i].polls), polls[i].want);
  /* Another caller's range stays inside it. */
  assert_int_equal(tryon__ptask_progress(0, 50, 16), 50);
  assert_int_equal(tryon__ptask_poll_progress(10, 10, 99), 10);
  assert_true(tryon__ptask_poll_progress(0, 100, 1000) <= 100);
}

static void test_ptask__results_come_from_public_addresses_unless_local(void **state) {
  static const struct {
    const char *url;
    bool local;
  } cases[] = {
      {"https://api.kie.ai", false},
      {"http://127.0.0.1:8080", true},
      {"http://localhost:9000/", true},
      {"http://[::1]:81", true},
      {"https://localhost.evil.example", true /* a name we would not configure */},
      {"https://example.com/127.0.0.1", false},
      {NULL, false},
      {"", false},
  };
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    if (tryon__ptask_url_local(cases[i].url) != cases[i].local)
      fail_msg("case %zu: %s", i, cases[i].url ? cases[i].url : "(null)");
  }
}

static void test_ptask__upload_names_and_types(void **state) {
  tryon_buf png, jpg;
  char name[64];
  const char *mime = NULL;
  (void)state;
  tryon_buf_init(&png, 64);
  tryon_buf_init(&jpg, 64);
  assert_int_equal(tryon_buf_append(&png, "\x89PNG\r\n\x1a\n", 8), TRYON_OK);
  assert_int_equal(tryon_buf_append(&jpg, "\xff\xd8\xff\xe0", 4), TRYON_OK);
  assert_true(tryon__ptask_file_name("gen-1", "person", &png, name, sizeof name, &mime));
  assert_string_equal(name, "gen-1-person.png");
  assert_string_equal(mime, "image/png");
  assert_true(tryon__ptask_file_name("gen-1", "item", &jpg, name, sizeof name, &mime));
  assert_string_equal(name, "gen-1-item.jpg");
  assert_string_equal(mime, "image/jpeg");
  assert_false(tryon__ptask_file_name("a-long-prefix", "image", &jpg, name, 10, &mime));
  tryon_buf_release(&png);
  tryon_buf_release(&jpg);
  assert_true(tryon__ptask_name_ok("person"));
  assert_true(tryon__ptask_name_ok("image_2"));
  assert_false(tryon__ptask_name_ok("Person"));
  assert_false(tryon__ptask_name_ok(""));
  assert_false(tryon__ptask_name_ok(NULL));
  assert_false(tryon__ptask_name_ok("a/b"));
  assert_false(tryon__ptask_name_ok("sixteen_chars_xx"));
}

static void done_fn(tryon_run *run, tryon_buf *result, void *ud) {
  (void)run;
  (void)result;
  (void)ud;
}

static void test_ptask__bad_configurations_are_refused(void **state) {
  static const tryon_kie_config kie = {.api_url = "http://127.0.0.1:1", .api_key = "k"};
  tryon_ptask_input one[] = {{.name = "image"}};
  tryon_ptask_input two_same[] = {{.name = "image"}, {.name = "image"}};
  tryon_ptask_input bad_name[] = {{.name = "Image"}};
  const tryon_ptask_config good = {.kie = &kie,
                                   .prompt = "make it blue",
                                   .inputs = one,
                                   .n_inputs = 1,
                                   .file_prefix = "gen-1",
                                   .done = done_fn};
  tryon_ptask_config c;
  tryon_err err;
  (void)state;
  /* The chat's edit: one input and a prompt. */
  assert_int_equal(tryon__ptask_config_check(&good, &err), TRYON_OK);
  assert_int_equal(tryon__ptask_config_check(NULL, &err), TRYON_E_INVALID);

  static const struct {
    const char *field;
  } fields[] = {{"kie"},    {"prompt"},       {"done"},        {"inputs"}, {"n_inputs"},
                {"prefix"}, {"long prefix"},  {"twice"},       {"name"},   {"format"},
                {"range"},  {"n_inputs max"}, {"empty prompt"}};
  for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
    const char *f = fields[i].field;
    c = good;
    if (strcmp(f, "kie") == 0)
      c.kie = NULL;
    else if (strcmp(f, "prompt") == 0)
      c.prompt = NULL;
    else if (strcmp(f, "empty prompt") == 0)
      c.prompt = "";
    else if (strcmp(f, "done") == 0)
      c.done = NULL;
    else if (strcmp(f, "inputs") == 0)
      c.inputs = NULL;
    else if (strcmp(f, "n_inputs") == 0)
      c.n_inputs = 0;
    else if (strcmp(f, "n_inputs max") == 0)
      c.n_inputs = TRYON_PTASK_INPUTS_MAX + 1;
    else if (strcmp(f, "prefix") == 0)
      c.file_prefix = "";
    else if (strcmp(f, "long prefix") == 0)
      c.file_prefix = "a-prefix-of-sixty-four-bytes-is-one-byte-too-long-for-the-field-";
    else if (strcmp(f, "twice") == 0) {
      c.inputs = two_same;
      c.n_inputs = 2;
    } else if (strcmp(f, "name") == 0)
      c.inputs = bad_name;
    else if (strcmp(f, "format") == 0)
      c.output_format = "jpeg-2000-extra";
    else if (strcmp(f, "range") == 0) {
      c.progress_from = 90;
      c.progress_to = 10;
    }
    tryon_err_clear(&err);
    if (tryon__ptask_config_check(&c, &err) != TRYON_E_INVALID)
      fail_msg("%s: accepted", f);
    assert_non_null(strstr(tryon_err_message(&err), "provider task"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ptask__create_repeats_only_when_nothing_was_made),
      cmocka_unit_test(test_ptask__progress_fills_the_range),
      cmocka_unit_test(test_ptask__results_come_from_public_addresses_unless_local),
      cmocka_unit_test(test_ptask__upload_names_and_types),
      cmocka_unit_test(test_ptask__bad_configurations_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
