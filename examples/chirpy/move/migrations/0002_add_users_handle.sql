-- chirpy 2.0.0, expand: users.name becomes users.handle. Add the new column
-- and backfill it; 2.0.0 reads handle (falling back to name for rows that
-- 1.0.0 instances still write during the rollout) and writes both, so 1.0.0
-- keeps working on this schema and can be rolled back to.
-- capstan:phase expand
-- capstan:up
ALTER TABLE users ADD COLUMN handle text;
UPDATE users SET handle = name WHERE handle IS NULL;
-- capstan:down
ALTER TABLE users DROP COLUMN handle;
