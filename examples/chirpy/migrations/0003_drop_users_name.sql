-- chirpy 3.0.0, contract: drop users.name. Runs only once no live instance
-- embeds a migration set without it (no 1.0.0 left). Backfill the rows 1.0.0
-- wrote during the rollout first, so no handle is lost.
-- capstan:phase contract
-- capstan:up
UPDATE users SET handle = name WHERE handle IS NULL;
ALTER TABLE users DROP COLUMN name;
-- capstan:down
ALTER TABLE users ADD COLUMN name text;
UPDATE users SET name = handle;
