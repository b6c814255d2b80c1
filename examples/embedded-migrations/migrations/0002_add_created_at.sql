-- capstan:up
ALTER TABLE notes ADD COLUMN created_at text;
-- capstan:down
ALTER TABLE notes DROP COLUMN created_at;
