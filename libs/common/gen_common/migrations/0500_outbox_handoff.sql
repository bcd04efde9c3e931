-- An outbox row its writer's process publishes itself right after the commit
-- (gen_common.outbox_handoff) is held from the relays' passes until held_until; should that
-- process die first, the passes publish the row once the hold has passed.
ALTER TABLE outbox ADD COLUMN held_until timestamptz;
