-- 0004_refund_expired: what a failed or cancelled try-on could not give back.
--
-- A refund returns credits to the period they came from; when that period has ended
-- (a free month over, a subscription expired) they come back and expire with it at
-- once (billing's refund rule). The generation keeps how many did, so the user's
-- message says so instead of promising credits that are not there.

ALTER TABLE generations ADD COLUMN credits_expired integer NOT NULL DEFAULT 0;
ALTER TABLE generations ADD CONSTRAINT generations_credits_expired_check
  CHECK (credits_expired >= 0 AND credits_expired <= cost);
COMMENT ON COLUMN generations.credits_expired IS
  'Of the refunded cost, the credits whose period had ended: they expired with it';
