-- A rehearsal fixture: a 1.1.0 that indexes users.name for a search
-- feature. CREATE INDEX without CONCURRENTLY holds a SHARE lock on users for
-- the whole build, so every write to users waits (and chirpy's pipelined
-- connection with it). On the seeded table that is a stall `--load` reports
-- in cell 2. The fix: `-- capstan:no-transaction` and CREATE INDEX CONCURRENTLY.
-- capstan:phase expand
-- capstan:up
CREATE INDEX users_name ON users (name);
-- capstan:down
DROP INDEX users_name;
