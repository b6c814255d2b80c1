-- users 2.0.0, expand: users.name becomes users.handle; 2.0.0 writes both.
-- capstan:phase expand
-- capstan:up
ALTER TABLE users.users ADD COLUMN handle text;
UPDATE users.users SET handle = name WHERE handle IS NULL;
-- capstan:down
ALTER TABLE users.users DROP COLUMN handle;
