-- pgsplit's session cache: the trigger function that tells every pgsplit instance which rows of a cached table
-- changed (README, *Session cache*). Install it once per database that owns a cached table, then a trigger per table.
create or replace function public.pgsplit_cache_notify() returns trigger language plpgsql as $$
begin
  if tg_level = 'STATEMENT' or tg_nargs = 0 then   -- the whole table
    perform pg_notify('pgsplit_cache', tg_table_schema || '.' || tg_table_name);
    return null;
  end if;
  if tg_op in ('UPDATE', 'DELETE') then           -- a row's key: 'schema.table value'
    perform pg_notify('pgsplit_cache', tg_table_schema || '.' || tg_table_name || ' ' || coalesce(to_jsonb(old) ->> tg_argv[0], ''));
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    perform pg_notify('pgsplit_cache', tg_table_schema || '.' || tg_table_name || ' ' || coalesce(to_jsonb(new) ->> tg_argv[0], ''));
  end if;
  return null;
end $$;
