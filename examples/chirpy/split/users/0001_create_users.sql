-- users 1.0.0: the accounts every other service refers to.
-- capstan:up
CREATE SCHEMA users;
CREATE TABLE users.users (
    id   bigint PRIMARY KEY,
    name text
);
-- capstan:down
DROP TABLE users.users;
DROP SCHEMA users;
