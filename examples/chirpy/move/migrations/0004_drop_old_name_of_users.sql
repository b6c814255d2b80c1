-- capstan:phase contract
-- Moving public.users from service `monolith` to service `users`, step 4 of 4: the
-- old name goes. Runs only when no live instance of `monolith` lacks this
-- migration, i.e. every binary left uses users.users.
-- capstan:up
DROP VIEW public.users;

-- capstan:down
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
  END LOOP;
END
$grants$;
