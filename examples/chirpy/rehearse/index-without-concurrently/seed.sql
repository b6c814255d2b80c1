-- A users table big enough that building an index on it takes a while.
INSERT INTO users (id, name)
SELECT g, 'user ' || md5(g::text) FROM generate_series(1, 400000) AS g;
ANALYZE users;
