-- capstan:phase expand
-- Moving public.users from service `monolith` to service `users`, step 2 of 4: the
-- table moves into `users`'s schema (its indexes, constraints, triggers,
-- owned sequences and privileges follow it; foreign keys and views that
-- use it keep pointing at it), and a view under the old name keeps binaries
-- that use it working: a `SELECT *` view of one table is updatable
-- (INSERT … RETURNING, ON CONFLICT (columns), UPDATE, DELETE; the table's
-- defaults and triggers apply). Needs step 1 (`users`'s 0001_create_schema_users.sql).
-- Columns added to users.users later are not in the view until it is recreated.
-- capstan:up
-- capstan:ignore changing-schema,wrong-phase,service-boundary hands the table to `users`; the view below keeps the old name working until step 4
ALTER TABLE public.users SET SCHEMA users;
CREATE VIEW public.users AS SELECT * FROM users.users;
DO $grants$
DECLARE g record;
BEGIN
  FOR g IN
    SELECT a.privilege_type AS privilege, a.is_grantable AS grantable,
           CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS role
    FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.oid = 'users.users'::regclass AND a.grantee <> c.relowner
  LOOP
    EXECUTE format('GRANT %s ON public.users TO %s%s', g.privilege, g.role,
                   CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    EXECUTE format('GRANT USAGE ON SCHEMA %s TO %s', 'users', g.role);
  END LOOP;
END
$grants$;

-- capstan:down
DROP VIEW public.users;
-- capstan:ignore changing-schema,wrong-phase,service-boundary moves the table back where the old binaries look for it
ALTER TABLE users.users SET SCHEMA public;
