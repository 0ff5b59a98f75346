-- 0002_billing: what the billing module needs beyond 0001_init.
--
-- * subscriptions.idempotency_key: buying a period is idempotent by the caller's key
--   (a payment's key, an operator's grant key) even while the period is only queued
--   and has no ledger row yet.
-- * credit_ledger.period_key: the period a change to the period bucket belongs to
--   ('YYYY-MM' for the free month, the subscription id for a paid period), so a refund
--   knows whether its charge's period is still the current one.

ALTER TABLE subscriptions ADD COLUMN idempotency_key text;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_idempotency_key_key
  UNIQUE (idempotency_key);
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_idempotency_key_check
  CHECK (char_length(idempotency_key) BETWEEN 1 AND 200);
COMMENT ON COLUMN subscriptions.idempotency_key IS
  'The key the period was bought under; a replay returns this subscription';

ALTER TABLE credit_ledger ADD COLUMN period_key text;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_period_key_check
  CHECK (char_length(period_key) BETWEEN 1 AND 100);
COMMENT ON COLUMN credit_ledger.period_key IS
  'The period (YYYY-MM of the free month, or the subscription id) whose bucket the entry changed';
