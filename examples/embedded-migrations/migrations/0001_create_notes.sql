-- capstan:up
CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);
-- capstan:down
DROP TABLE notes;
