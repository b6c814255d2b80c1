-- chirps 1.0.0: what users write. The foreign key into users.users crosses
-- the boundary between the two services (reported, not refused).
-- capstan:up
CREATE SCHEMA chirps;
CREATE TABLE chirps.chirps (
    id      bigint PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users.users (id),
    body    text NOT NULL
);
CREATE INDEX chirps_user_id ON chirps.chirps (user_id);
-- capstan:down
DROP TABLE chirps.chirps;
DROP SCHEMA chirps;
