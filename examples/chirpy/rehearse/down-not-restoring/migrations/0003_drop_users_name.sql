-- A broken 3.0.0 contract, kept as a rehearsal fixture: its down section
-- adds a column with the wrong name, so rolling the schema back does not
-- give 2.0.0 the users.name it writes. Expected: 2.0.0 fails in cell 6.
-- capstan:phase contract
-- capstan:up
UPDATE users SET handle = name WHERE handle IS NULL;
ALTER TABLE users DROP COLUMN name;
-- capstan:down
ALTER TABLE users ADD COLUMN full_name text;
UPDATE users SET full_name = handle;
