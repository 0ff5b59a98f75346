-- 0003_generations: try-on results from the built-in offline provider.
--
-- Without a kie.ai key the worker makes a local preview (the item composited onto the
-- person photo, labelled "offline preview") through the same job path, so the whole
-- product can be tried without keys. Its generations say so: provider 'offline'.

ALTER TABLE generations DROP CONSTRAINT generations_provider_check;
ALTER TABLE generations ADD CONSTRAINT generations_provider_check
  CHECK (provider IN ('kie', 'offline'));
