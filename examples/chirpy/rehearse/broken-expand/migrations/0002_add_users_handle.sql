-- A broken 2.0.0, kept as a rehearsal fixture: the rename done in one
-- "expand" migration. It drops users.name, which 1.0.0 still reads and
-- writes, so 1.0.0 fails as soon as this runs (cell 2) and cannot be rolled
-- back to (cell 4). The right way: add handle here, drop name in a later
-- contract migration (see examples/chirpy/migrations).
-- capstan:phase expand
-- capstan:up
ALTER TABLE users ADD COLUMN handle text;
UPDATE users SET handle = name WHERE handle IS NULL;
ALTER TABLE users DROP COLUMN name;
-- capstan:down
ALTER TABLE users ADD COLUMN name text;
UPDATE users SET name = handle;
ALTER TABLE users DROP COLUMN handle;
