-- capstan:phase expand
-- Moving public.users from service `monolith` to service `users`, step 1 of 4: the
-- schema the table moves into. Step 2 is `monolith`'s 0003_move_users_to_users.sql.
-- capstan:up
CREATE SCHEMA IF NOT EXISTS users;

-- capstan:down
-- Only an empty schema goes: it may have existed before, with other objects.
DO $down$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_depend WHERE refclassid = 'pg_namespace'::regclass
                 AND refobjid = to_regnamespace('users')) THEN
    DROP SCHEMA IF EXISTS users;
  END IF;
END
$down$;
