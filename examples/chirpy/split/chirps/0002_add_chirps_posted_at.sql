-- chirps 2.0.0, expand: when a chirp was posted.
-- capstan:phase expand
-- capstan:up
ALTER TABLE chirps.chirps ADD COLUMN posted_at timestamptz;
-- capstan:down
ALTER TABLE chirps.chirps DROP COLUMN posted_at;
