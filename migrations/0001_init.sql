-- 0001_init: the initial tryon schema (PostgreSQL 15).
--
-- Applied by `tryonctl migrate` inside one transaction together with its row in
-- schema_migrations (which the runner creates and fills): so no BEGIN/COMMIT here and
-- nothing that cannot run in a transaction. Never edit this file once it has been
-- applied anywhere: its SHA-256 is recorded, and a changed file makes the runner
-- refuse. Change the schema with a new file, 0002_<name>.sql and so on.
--
-- Conventions (docs/database.md explains each choice):
--   * names are unqualified, so the schema follows search_path;
--   * closed value sets are text + CHECK, not enum types, so that a later migration
--     can widen them with DROP/ADD CONSTRAINT;
--   * timestamps are timestamptz; row bookkeeping (created_at, updated_at) is NOT NULL
--     DEFAULT now(), an event timestamp (started_at, blocked_at ...) is NULL until the
--     event happens;
--   * money is integer kopecks (bigint), credits are whole numbers (bigint);
--   * rows that point at another row of the same user use a composite foreign key
--     (id, user_id), so the database itself refuses a reference to someone else's row.

-- ---------------------------------------------------------------------------------------
-- Generic trigger functions
-- ---------------------------------------------------------------------------------------

-- Keeps updated_at current on every UPDATE (BEFORE UPDATE ... FOR EACH ROW).
CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION touch_updated_at() IS
  'BEFORE UPDATE row trigger: sets updated_at to now()';

-- ---------------------------------------------------------------------------------------
-- users
-- ---------------------------------------------------------------------------------------

CREATE TABLE users (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  telegram_id    bigint NOT NULL,
  first_name     text NOT NULL DEFAULT '',
  last_name      text,
  username       text,
  language_code  text,
  is_premium     boolean NOT NULL DEFAULT false,
  allows_write_to_pm boolean NOT NULL DEFAULT false,
  photo_url      text,
  blocked        boolean NOT NULL DEFAULT false,
  blocked_reason text,
  blocked_at     timestamptz,
  bot_blocked_at timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  last_login_at  timestamptz,

  CONSTRAINT users_telegram_id_key UNIQUE (telegram_id),
  CONSTRAINT users_telegram_id_check CHECK (telegram_id > 0),
  CONSTRAINT users_first_name_check CHECK (char_length(first_name) <= 256),
  CONSTRAINT users_last_name_check CHECK (char_length(last_name) <= 256),
  CONSTRAINT users_username_check CHECK (char_length(username) BETWEEN 1 AND 64),
  CONSTRAINT users_language_code_check CHECK (char_length(language_code) BETWEEN 1 AND 35),
  CONSTRAINT users_photo_url_check CHECK (char_length(photo_url) <= 2048),
  -- blocked and blocked_at go together; an unblocked user carries no reason.
  CONSTRAINT users_blocked_at_check CHECK (blocked = (blocked_at IS NOT NULL)),
  CONSTRAINT users_blocked_reason_check CHECK (
    blocked OR blocked_reason IS NULL),
  CONSTRAINT users_blocked_reason_len_check CHECK (char_length(blocked_reason) <= 1000)
);

-- `tryonctl user show @name`; not unique: our copy of a username can be stale.
CREATE INDEX users_username_idx ON users (lower(username)) WHERE username IS NOT NULL;

CREATE TRIGGER users_touch_updated_at BEFORE UPDATE ON users
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMENT ON TABLE users IS
  'Telegram users, created on first login from initData; blocked users get 403 everywhere';

-- ---------------------------------------------------------------------------------------
-- uploads
-- ---------------------------------------------------------------------------------------

CREATE TABLE uploads (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  origin       text NOT NULL,
  mime         text NOT NULL,
  width        integer NOT NULL,
  height       integer NOT NULL,
  bytes        bigint NOT NULL,
  sha256       bytea NOT NULL,
  has_thumb    boolean NOT NULL DEFAULT false,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz NOT NULL DEFAULT now(),
  deleted_at   timestamptz,

  -- Target of the composite foreign keys (x_upload_id, user_id) of other tables.
  CONSTRAINT uploads_id_user_id_key UNIQUE (id, user_id),
  CONSTRAINT uploads_origin_check CHECK (origin IN ('upload', 'result')),
  CONSTRAINT uploads_mime_check CHECK (mime IN ('image/jpeg', 'image/png')),
  CONSTRAINT uploads_width_check CHECK (width > 0),
  CONSTRAINT uploads_height_check CHECK (height > 0),
  CONSTRAINT uploads_bytes_check CHECK (bytes > 0),
  CONSTRAINT uploads_sha256_check CHECK (octet_length(sha256) = 32)
);

-- "Your recent uploads" (keyset pagination on created_at, id).
CREATE INDEX uploads_user_recent_idx ON uploads (user_id, created_at DESC, id);
-- Finding an identical file the user already has (reuse instead of storing twice).
CREATE INDEX uploads_user_sha256_idx ON uploads (user_id, sha256);

COMMENT ON TABLE uploads IS
  'Every stored image, user upload or generation result; the file is named by id';

-- ---------------------------------------------------------------------------------------
-- chats and chat_history
-- ---------------------------------------------------------------------------------------

CREATE TABLE chats (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id           bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  title             text NOT NULL DEFAULT '',
  current_upload_id uuid NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),

  CONSTRAINT chats_id_user_id_key UNIQUE (id, user_id),
  CONSTRAINT chats_title_check CHECK (char_length(title) <= 200),
  -- NO ACTION (checked at the end of the statement): an image under edit cannot be
  -- deleted alone, but a user's chats and uploads go together when the user goes.
  CONSTRAINT chats_current_upload_fkey FOREIGN KEY (current_upload_id, user_id)
    REFERENCES uploads (id, user_id)
);

-- The user's chat list, most recently active first.
CREATE INDEX chats_user_recent_idx ON chats (user_id, updated_at DESC, id);

CREATE TRIGGER chats_touch_updated_at BEFORE UPDATE ON chats
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMENT ON TABLE chats IS
  'Edit chats: one image under edit (current_upload_id) and a message history';

CREATE TABLE chat_history (
  chat_id    uuid PRIMARY KEY REFERENCES chats (id) ON DELETE CASCADE,
  messages   jsonb NOT NULL DEFAULT '[]'::jsonb,
  updated_at timestamptz NOT NULL DEFAULT now(),

  -- Only the last 10 messages are kept (and sent to OpenRouter). CASE, because
  -- jsonb_array_length raises on a non-array and AND does not promise an order.
  CONSTRAINT chat_history_messages_check CHECK (
    CASE WHEN jsonb_typeof(messages) = 'array'
         THEN jsonb_array_length(messages) <= 10
              AND NOT jsonb_path_exists(messages, '$[*] ? (@.type() != "object")')
         ELSE false
    END)
);

CREATE TRIGGER chat_history_touch_updated_at BEFORE UPDATE ON chat_history
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMENT ON TABLE chat_history IS
  'The last 10 messages of a chat as a JSONB array of objects, oldest first';

-- ---------------------------------------------------------------------------------------
-- jobs: the PostgreSQL-backed queue
-- ---------------------------------------------------------------------------------------

CREATE TABLE jobs (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  kind             text NOT NULL,
  payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
  user_id          bigint REFERENCES users (id) ON DELETE CASCADE,
  state            text NOT NULL DEFAULT 'queued',
  attempts         integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL DEFAULT 3,
  run_after        timestamptz NOT NULL DEFAULT now(),
  lease_owner      text,
  lease_expires_at timestamptz,
  progress         smallint NOT NULL DEFAULT 0,
  stage            text,
  result           jsonb,
  error            jsonb,
  idempotency_key  text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now(),

  CONSTRAINT jobs_idempotency_key_key UNIQUE (idempotency_key),
  CONSTRAINT jobs_kind_check CHECK (kind ~ '^[a-z][a-z0-9_.]*$' AND char_length(kind) <= 64),
  CONSTRAINT jobs_payload_check CHECK (jsonb_typeof(payload) = 'object'),
  CONSTRAINT jobs_state_check CHECK (
    state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  CONSTRAINT jobs_attempts_check CHECK (attempts >= 0),
  CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1),
  CONSTRAINT jobs_progress_check CHECK (progress BETWEEN 0 AND 100),
  CONSTRAINT jobs_idempotency_key_len_check CHECK (
    char_length(idempotency_key) BETWEEN 1 AND 200),
  -- A running job is always leased, so a dead worker's job is found by its lease.
  CONSTRAINT jobs_lease_check CHECK (
    state <> 'running' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
  CONSTRAINT jobs_finished_check CHECK (
    state NOT IN ('succeeded', 'failed', 'cancelled') OR finished_at IS NOT NULL)
);

-- Dequeue: SELECT ... WHERE state = 'queued' AND run_after <= now()
--          ORDER BY run_after, created_at FOR UPDATE SKIP LOCKED LIMIT n.
-- Also gives a queued job its position in the queue.
CREATE INDEX jobs_dequeue_idx ON jobs (run_after, created_at) WHERE state = 'queued';
-- Reaper: running jobs whose lease has expired (their worker died); also counts the
-- jobs running in total.
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
-- Per-user concurrency bound: count of the user's queued/running jobs.
CREATE INDEX jobs_user_active_idx ON jobs (user_id, state)
  WHERE state IN ('queued', 'running');

CREATE TRIGGER jobs_touch_updated_at BEFORE UPDATE ON jobs
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMENT ON TABLE jobs IS
  'Job queue: at-least-once delivery with leases, dequeued with FOR UPDATE SKIP LOCKED';

-- ---------------------------------------------------------------------------------------
-- generations
-- ---------------------------------------------------------------------------------------

CREATE TABLE generations (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  kind             text NOT NULL,
  status           text NOT NULL DEFAULT 'queued',
  category         text,
  prompt           text NOT NULL,
  prompt_version   text,
  person_upload_id uuid,
  item_upload_id   uuid,
  source_upload_id uuid,
  chat_id          uuid,
  aspect_ratio     text NOT NULL DEFAULT 'auto',
  output_format    text NOT NULL DEFAULT 'png',
  cost             bigint NOT NULL,
  watermarked      boolean NOT NULL DEFAULT false,
  provider         text NOT NULL DEFAULT 'kie',
  model            text,
  provider_task_id text,
  result_upload_id uuid,
  error_code       text,
  error_message    text,
  job_id           uuid REFERENCES jobs (id) ON DELETE SET NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  finished_at      timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now(),

  CONSTRAINT generations_kind_check CHECK (kind IN ('tryon', 'edit')),
  CONSTRAINT generations_status_check CHECK (
    status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  CONSTRAINT generations_category_check CHECK (
    category IN ('top', 'bottom', 'dress', 'outerwear', 'shoes', 'headwear', 'glasses',
                 'bag', 'jewelry', 'other')),
  CONSTRAINT generations_prompt_check CHECK (char_length(prompt) BETWEEN 1 AND 20000),
  CONSTRAINT generations_prompt_version_check CHECK (
    char_length(prompt_version) BETWEEN 1 AND 64),
  CONSTRAINT generations_aspect_ratio_check CHECK (
    aspect_ratio = 'auto' OR aspect_ratio ~ '^[1-9][0-9]?:[1-9][0-9]?$'),
  CONSTRAINT generations_output_format_check CHECK (output_format IN ('png', 'jpeg')),
  CONSTRAINT generations_cost_check CHECK (cost > 0),
  CONSTRAINT generations_provider_check CHECK (provider IN ('kie')),
  CONSTRAINT generations_provider_task_id_check CHECK (
    char_length(provider_task_id) BETWEEN 1 AND 200),
  CONSTRAINT generations_error_code_check CHECK (char_length(error_code) BETWEEN 1 AND 64),

  -- Each kind has exactly its own inputs: a try-on has a category, a prompt template
  -- version, a person photo and an item photo; an edit has a source image and a chat.
  CONSTRAINT generations_tryon_check CHECK (
    kind <> 'tryon' OR (category IS NOT NULL AND prompt_version IS NOT NULL
                        AND person_upload_id IS NOT NULL AND item_upload_id IS NOT NULL
                        AND source_upload_id IS NULL AND chat_id IS NULL)),
  CONSTRAINT generations_edit_check CHECK (
    kind <> 'edit' OR (category IS NULL
                       AND person_upload_id IS NULL AND item_upload_id IS NULL
                       AND source_upload_id IS NOT NULL AND chat_id IS NOT NULL)),
  -- Status and its companions.
  CONSTRAINT generations_result_check CHECK (
    (status = 'succeeded') = (result_upload_id IS NOT NULL)),
  CONSTRAINT generations_started_check CHECK (
    status <> 'running' OR started_at IS NOT NULL),
  CONSTRAINT generations_finished_check CHECK (
    status NOT IN ('succeeded', 'failed', 'cancelled') OR finished_at IS NOT NULL),
  CONSTRAINT generations_failed_check CHECK (status <> 'failed' OR error_code IS NOT NULL),

  -- Inputs and result belong to the same user as the generation. NO ACTION: an
  -- image used by a generation cannot be deleted alone (mark uploads.deleted_at and
  -- remove the file instead); everything goes together when the user is deleted.
  CONSTRAINT generations_person_upload_fkey FOREIGN KEY (person_upload_id, user_id)
    REFERENCES uploads (id, user_id),
  CONSTRAINT generations_item_upload_fkey FOREIGN KEY (item_upload_id, user_id)
    REFERENCES uploads (id, user_id),
  CONSTRAINT generations_source_upload_fkey FOREIGN KEY (source_upload_id, user_id)
    REFERENCES uploads (id, user_id),
  CONSTRAINT generations_result_upload_fkey FOREIGN KEY (result_upload_id, user_id)
    REFERENCES uploads (id, user_id),
  -- Deleting a chat deletes its edit generations (their result images stay uploads).
  CONSTRAINT generations_chat_fkey FOREIGN KEY (chat_id, user_id)
    REFERENCES chats (id, user_id) ON DELETE CASCADE
);

-- The user's history, newest first (keyset pagination on created_at, id).
CREATE INDEX generations_user_recent_idx ON generations (user_id, created_at DESC, id);
-- The images of a chat in order ("go back to an earlier image").
CREATE INDEX generations_chat_idx ON generations (chat_id, created_at)
  WHERE chat_id IS NOT NULL;
-- kie.ai callback: find the generation by the task id it reports.
CREATE UNIQUE INDEX generations_provider_task_uidx ON generations (provider_task_id, provider)
  WHERE provider_task_id IS NOT NULL;
-- The worker finds a job's generation; one job produces one generation.
CREATE UNIQUE INDEX generations_job_uidx ON generations (job_id) WHERE job_id IS NOT NULL;

CREATE TRIGGER generations_touch_updated_at BEFORE UPDATE ON generations
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMENT ON TABLE generations IS
  'Try-on and edit generations: inputs, prompt, cost, provider task and result';

-- ---------------------------------------------------------------------------------------
-- payments
-- ---------------------------------------------------------------------------------------

CREATE TABLE payments (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id             bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
  provider            text NOT NULL DEFAULT 'yookassa',
  provider_payment_id text,
  idempotence_key     text NOT NULL,
  product             text NOT NULL,
  status              text NOT NULL DEFAULT 'created',
  amount_kopecks      bigint NOT NULL,
  currency            text NOT NULL DEFAULT 'RUB',
  income_kopecks      bigint,
  fee_kopecks         bigint,
  tax_kopecks         bigint,
  net_kopecks         bigint,
  confirmation_url    text,
  payment_method_id   text,
  is_test             boolean NOT NULL DEFAULT false,
  is_renewal          boolean NOT NULL DEFAULT false,
  cancellation_party  text,
  cancellation_reason text,
  metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  succeeded_at        timestamptz,
  credited_at         timestamptz,

  CONSTRAINT payments_provider_payment_id_key UNIQUE (provider_payment_id),
  CONSTRAINT payments_idempotence_key_key UNIQUE (idempotence_key),
  CONSTRAINT payments_id_user_id_key UNIQUE (id, user_id),
  CONSTRAINT payments_provider_check CHECK (provider IN ('yookassa')),
  CONSTRAINT payments_provider_payment_id_check CHECK (
    char_length(provider_payment_id) BETWEEN 1 AND 64),
  -- YooKassa: at most 64 characters of [0-9a-zA-Z+-_.].
  CONSTRAINT payments_idempotence_key_check CHECK (
    idempotence_key ~ '^[0-9A-Za-z+_.-]{1,64}$'),
  CONSTRAINT payments_product_check CHECK (product IN ('start', 'pro', 'max', 'pack')),
  CONSTRAINT payments_status_check CHECK (
    status IN ('created', 'pending', 'waiting_for_capture', 'succeeded', 'canceled')),
  CONSTRAINT payments_amount_check CHECK (amount_kopecks > 0),
  CONSTRAINT payments_currency_check CHECK (currency = 'RUB'),
  CONSTRAINT payments_income_check CHECK (
    income_kopecks >= 0 AND income_kopecks <= amount_kopecks),
  CONSTRAINT payments_fee_check CHECK (fee_kopecks >= 0),
  CONSTRAINT payments_tax_check CHECK (tax_kopecks >= 0),
  -- The accounting figures are set together, and add up.
  CONSTRAINT payments_accounting_set_check CHECK (
    (fee_kopecks IS NULL) = (tax_kopecks IS NULL)
    AND (tax_kopecks IS NULL) = (net_kopecks IS NULL)),
  CONSTRAINT payments_net_check CHECK (
    net_kopecks = amount_kopecks - fee_kopecks - tax_kopecks),
  -- A succeeded payment has its time and its accounting; only it can be credited.
  CONSTRAINT payments_succeeded_check CHECK (
    (status = 'succeeded') = (succeeded_at IS NOT NULL)
    AND (status <> 'succeeded' OR net_kopecks IS NOT NULL)),
  CONSTRAINT payments_credited_check CHECK (credited_at IS NULL OR status = 'succeeded'),
  CONSTRAINT payments_renewal_check CHECK (NOT is_renewal OR product <> 'pack'),
  CONSTRAINT payments_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
);

-- The user's payments, newest first.
CREATE INDEX payments_user_recent_idx ON payments (user_id, created_at DESC);
-- `tryonctl report --month`: succeeded payments by time.
CREATE INDEX payments_succeeded_idx ON payments (succeeded_at) WHERE status = 'succeeded';
-- Reconciliation: payments still open at the provider (re-fetch when a webhook is late).
CREATE INDEX payments_open_idx ON payments (created_at)
  WHERE status IN ('created', 'pending', 'waiting_for_capture');
-- Recovery: succeeded but not yet credited.
CREATE INDEX payments_uncredited_idx ON payments (succeeded_at)
  WHERE status = 'succeeded' AND credited_at IS NULL;

CREATE TRIGGER payments_touch_updated_at BEFORE UPDATE ON payments
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMENT ON TABLE payments IS
  'YooKassa payments in integer kopecks, with the fee, tax and net of each succeeded one';

-- ---------------------------------------------------------------------------------------
-- subscriptions
-- ---------------------------------------------------------------------------------------

CREATE TABLE subscriptions (
  id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id             bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
  plan                text NOT NULL,
  status              text NOT NULL,
  starts_at           timestamptz NOT NULL,
  ends_at             timestamptz NOT NULL,
  credits             bigint NOT NULL,
  payment_id          uuid,
  auto_renew          boolean NOT NULL DEFAULT false,
  payment_method_id   text,
  reminded_3d_at      timestamptz,
  reminded_1d_at      timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),

  CONSTRAINT subscriptions_id_user_id_key UNIQUE (id, user_id),
  -- One paid period per payment: replaying a payment cannot add a second period.
  CONSTRAINT subscriptions_payment_id_key UNIQUE (payment_id),
  CONSTRAINT subscriptions_plan_check CHECK (plan IN ('start', 'pro', 'max')),
  CONSTRAINT subscriptions_status_check CHECK (
    status IN ('active', 'queued', 'expired', 'cancelled')),
  CONSTRAINT subscriptions_period_check CHECK (ends_at > starts_at),
  CONSTRAINT subscriptions_credits_check CHECK (credits > 0),
  CONSTRAINT subscriptions_payment_fkey FOREIGN KEY (payment_id, user_id)
    REFERENCES payments (id, user_id) ON DELETE RESTRICT
);

-- At most one active subscription per user.
CREATE UNIQUE INDEX subscriptions_one_active_uidx ON subscriptions (user_id)
  WHERE status = 'active';
-- Expiry and reminder jobs: active periods by end.
CREATE INDEX subscriptions_expiry_idx ON subscriptions (ends_at) WHERE status = 'active';
-- The user's periods (the queue of periods: the latest ends_at is where a new one starts).
CREATE INDEX subscriptions_user_idx ON subscriptions (user_id, ends_at DESC);

CREATE TRIGGER subscriptions_touch_updated_at BEFORE UPDATE ON subscriptions
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMENT ON TABLE subscriptions IS
  'Subscription periods (30 days each); queued periods extend an active one';

-- ---------------------------------------------------------------------------------------
-- wallets
-- ---------------------------------------------------------------------------------------

CREATE TABLE wallets (
  user_id        bigint PRIMARY KEY REFERENCES users (id) ON DELETE RESTRICT,
  period_credits bigint NOT NULL DEFAULT 0,
  pack_credits   bigint NOT NULL DEFAULT 0,
  period_source  text NOT NULL DEFAULT 'none',
  period_key     text,
  period_ends_at timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now(),

  -- Balances are never negative, also under concurrent requests: a spend that
  -- would go below zero fails here even if the application's check raced.
  CONSTRAINT wallets_period_credits_check CHECK (period_credits >= 0),
  CONSTRAINT wallets_pack_credits_check CHECK (pack_credits >= 0),
  CONSTRAINT wallets_period_source_check CHECK (
    period_source IN ('none', 'free', 'start', 'pro', 'max')),
  -- No period: no period credits and no period fields. A period: a key and an end.
  CONSTRAINT wallets_period_check CHECK (
    CASE WHEN period_source = 'none'
         THEN period_credits = 0 AND period_key IS NULL AND period_ends_at IS NULL
         ELSE period_key IS NOT NULL AND period_ends_at IS NOT NULL
    END),
  -- The free allowance is keyed by its Moscow calendar month.
  CONSTRAINT wallets_free_key_check CHECK (
    period_source <> 'free' OR period_key ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
  CONSTRAINT wallets_period_key_check CHECK (char_length(period_key) BETWEEN 1 AND 100)
);

CREATE TRIGGER wallets_touch_updated_at BEFORE UPDATE ON wallets
  FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

COMMENT ON TABLE wallets IS
  'Current balances per user: period allowance (free or subscription) and pack credits';

-- ---------------------------------------------------------------------------------------
-- credit_ledger: append-only
-- ---------------------------------------------------------------------------------------

CREATE TABLE credit_ledger (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id         bigint NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
  idempotency_key text NOT NULL,
  reason          text NOT NULL,
  delta_period    bigint NOT NULL DEFAULT 0,
  delta_pack      bigint NOT NULL DEFAULT 0,
  period_after    bigint NOT NULL,
  pack_after      bigint NOT NULL,
  from_free       boolean NOT NULL DEFAULT false,
  job_id          uuid,
  payment_id      uuid,
  subscription_id uuid,
  refund_of       bigint REFERENCES credit_ledger (id) ON DELETE RESTRICT,
  actor           text,
  note            text,
  created_at      timestamptz NOT NULL DEFAULT now(),

  -- Replaying the same operation (webhook twice, job rerun) inserts nothing new.
  CONSTRAINT credit_ledger_idempotency_key_key UNIQUE (idempotency_key),
  -- A charge is refunded at most once.
  CONSTRAINT credit_ledger_refund_of_key UNIQUE (refund_of),
  CONSTRAINT credit_ledger_idempotency_key_check CHECK (
    idempotency_key ~ '^[a-z][a-z_]*:[^[:space:]]+$' AND char_length(idempotency_key) <= 200),
  CONSTRAINT credit_ledger_reason_check CHECK (
    reason IN ('free_grant', 'subscription_grant', 'purchase', 'charge', 'refund', 'grant',
               'revoke', 'expire')),
  CONSTRAINT credit_ledger_period_after_check CHECK (period_after >= 0),
  CONSTRAINT credit_ledger_pack_after_check CHECK (pack_after >= 0),
  -- The direction of each kind of entry. Pack credits never expire; free and
  -- subscription grants give period credits; a purchase (pack) gives pack credits.
  CONSTRAINT credit_ledger_delta_check CHECK (
    CASE reason
      WHEN 'free_grant'         THEN delta_period > 0 AND delta_pack = 0
      WHEN 'subscription_grant' THEN delta_period > 0 AND delta_pack = 0
      WHEN 'purchase'           THEN delta_period = 0 AND delta_pack > 0
      WHEN 'charge'             THEN delta_period <= 0 AND delta_pack <= 0
                                     AND delta_period + delta_pack < 0
      WHEN 'refund'             THEN delta_period >= 0 AND delta_pack >= 0
                                     AND delta_period + delta_pack > 0
      WHEN 'grant'              THEN delta_period >= 0 AND delta_pack >= 0
                                     AND delta_period + delta_pack > 0
      WHEN 'revoke'             THEN delta_period <= 0 AND delta_pack <= 0
                                     AND delta_period + delta_pack < 0
      WHEN 'expire'             THEN delta_period < 0 AND delta_pack = 0
    END),
  -- The references each kind of entry needs.
  CONSTRAINT credit_ledger_from_free_check CHECK (NOT from_free OR reason = 'charge'),
  CONSTRAINT credit_ledger_charge_job_check CHECK (reason <> 'charge' OR job_id IS NOT NULL),
  CONSTRAINT credit_ledger_refund_of_check CHECK ((reason = 'refund') = (refund_of IS NOT NULL)),
  CONSTRAINT credit_ledger_purchase_check CHECK (reason <> 'purchase' OR payment_id IS NOT NULL),
  CONSTRAINT credit_ledger_subscription_check CHECK (
    reason <> 'subscription_grant' OR subscription_id IS NOT NULL),
  CONSTRAINT credit_ledger_note_check CHECK (char_length(note) <= 1000),
  CONSTRAINT credit_ledger_actor_check CHECK (char_length(actor) BETWEEN 1 AND 200),
  -- Same-user references to money rows; RESTRICT: financial records survive.
  CONSTRAINT credit_ledger_payment_fkey FOREIGN KEY (payment_id, user_id)
    REFERENCES payments (id, user_id) ON DELETE RESTRICT,
  CONSTRAINT credit_ledger_subscription_fkey FOREIGN KEY (subscription_id, user_id)
    REFERENCES subscriptions (id, user_id) ON DELETE RESTRICT
  -- job_id deliberately has no foreign key: finished jobs may be purged from the
  -- queue, while the ledger keeps every entry forever.
);

-- The user's history, newest first (`tryonctl credits history`, the app's wallet page).
CREATE INDEX credit_ledger_user_idx ON credit_ledger (user_id, id DESC);
-- One charge per job; also finds the charge to refund when a job finally fails.
CREATE UNIQUE INDEX credit_ledger_job_charge_uidx ON credit_ledger (job_id)
  WHERE reason = 'charge';
-- A payment is credited once; also finds the entry of a payment (`payments show`).
CREATE UNIQUE INDEX credit_ledger_payment_uidx ON credit_ledger (payment_id)
  WHERE reason IN ('purchase', 'subscription_grant') AND payment_id IS NOT NULL;
-- A subscription period is granted once.
CREATE UNIQUE INDEX credit_ledger_subscription_uidx ON credit_ledger (subscription_id)
  WHERE reason = 'subscription_grant';

-- Append-only: any UPDATE, DELETE or TRUNCATE raises. Corrections are new entries
-- (grant, revoke, refund). The message names the operation that was refused.
CREATE FUNCTION credit_ledger_forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'credit_ledger is append-only: % refused', lower(TG_OP)
    USING ERRCODE = 'integrity_constraint_violation',
          HINT = 'record a correcting entry (grant, revoke or refund) instead';
END;
$$;

COMMENT ON FUNCTION credit_ledger_forbid_change() IS
  'Raises on UPDATE, DELETE and TRUNCATE of credit_ledger (append-only)';

CREATE TRIGGER credit_ledger_no_update BEFORE UPDATE ON credit_ledger
  FOR EACH ROW EXECUTE FUNCTION credit_ledger_forbid_change();
CREATE TRIGGER credit_ledger_no_delete BEFORE DELETE ON credit_ledger
  FOR EACH ROW EXECUTE FUNCTION credit_ledger_forbid_change();
CREATE TRIGGER credit_ledger_no_truncate BEFORE TRUNCATE ON credit_ledger
  FOR EACH STATEMENT EXECUTE FUNCTION credit_ledger_forbid_change();

-- A refund must refund a charge of the same user, and no more than it charged.
-- (UNIQUE (refund_of) already makes it at most once.) The table is named through
-- TG_RELID so the function works whatever the search_path of the session.
CREATE FUNCTION credit_ledger_check_refund() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  c_user   bigint;
  c_reason text;
  c_total  bigint;
BEGIN
  IF NEW.refund_of IS NULL THEN
    RETURN NEW;
  END IF;
  EXECUTE format('SELECT user_id, reason, -(delta_period + delta_pack) FROM %s WHERE id = $1',
                 TG_RELID::regclass)
    INTO c_user, c_reason, c_total
    USING NEW.refund_of;
  IF c_user IS NULL THEN
    RETURN NEW; -- the foreign key reports the missing entry
  END IF;
  IF c_reason <> 'charge' OR c_user <> NEW.user_id THEN
    RAISE EXCEPTION 'refund_of % is not a charge of user %', NEW.refund_of, NEW.user_id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'credit_ledger_refund_target_check';
  END IF;
  IF NEW.delta_period + NEW.delta_pack > c_total THEN
    RAISE EXCEPTION 'refund of % credits exceeds the charge of %',
                    NEW.delta_period + NEW.delta_pack, c_total
      USING ERRCODE = 'check_violation', CONSTRAINT = 'credit_ledger_refund_amount_check';
  END IF;
  RETURN NEW;
END;
$$;

COMMENT ON FUNCTION credit_ledger_check_refund() IS
  'BEFORE INSERT on credit_ledger: a refund targets a charge of the same user, up to its amount';

CREATE TRIGGER credit_ledger_check_refund BEFORE INSERT ON credit_ledger
  FOR EACH ROW EXECUTE FUNCTION credit_ledger_check_refund();

COMMENT ON TABLE credit_ledger IS
  'Append-only journal of every balance change, one unique idempotency key per entry';
