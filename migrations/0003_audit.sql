-- The audit log: one append-only record of what the service did (consents written, decisions answered, policy
-- versions loaded, keys created and revoked, ...), made tamper-evident by a Merkle tree over its entries and
-- signed checkpoints of that tree. Decisions become its entries: the decisions table goes.

-- Nothing may be written to what is moved below while it moves (an older instance still running).
LOCK TABLE decisions, consent_records, policy_activations, api_keys IN SHARE MODE;

-- Entries. Written by the transaction that does the action (a decision's COPY, a consent batch's COPY), so an
-- acknowledged action has its entry. Subjects are pseudonymous ids; anything personal is a keyed hash.
-- `payload` is compact JSON with sorted keys, kept verbatim (json, not jsonb): its bytes are what the leaf
-- hash covers. `txid` is how the integrator finds committed entries in order without a gap (see audit/chain).
-- Monthly partitions on `at`, made ahead like the decisions' were; a decision's entry_id is a UUIDv7 stamped
-- with `at`, so a look-up by decision id prunes to one partition.
CREATE TABLE audit_log (
    entry_id   uuid NOT NULL,
    at         timestamptz NOT NULL,
    action     text NOT NULL,
    actor      text NOT NULL,
    subject_id uuid,
    outcome    text,
    payload    json NOT NULL,
    txid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (at, entry_id)
) PARTITION BY RANGE (at);

CREATE INDEX audit_log_by_subject ON audit_log (subject_id, at) WHERE subject_id IS NOT NULL;
CREATE INDEX audit_log_by_txid ON audit_log (txid, entry_id);
-- Everything but decisions and consents is rare (keys, policies, requests, webhooks): found by action without
-- scanning the log; the two hot writers pay nothing for it. Queries repeat the predicate so a generic plan can
-- use it (audit/store.py).
CREATE INDEX audit_log_by_action ON audit_log (action, at) WHERE action NOT IN ('decision.made', 'consent.recorded');

CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;

CREATE FUNCTION make_audit_partition(month_start timestamp) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'audit_log_' || to_char(month_start, 'YYYYMM');
BEGIN
    IF to_regclass(name) IS NULL THEN
        BEGIN
            -- Making a partition locks the whole log; a long export holds it for reading. Waiting behind the
            -- export would queue every writer behind this lock: give up at once and retry at the next
            -- housekeeping (partitions are made two months ahead).
            SET LOCAL lock_timeout = '100ms';
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)',
                name, month_start::text || '+00', (month_start + interval '1 month')::text || '+00'
            );
        EXCEPTION
            WHEN check_violation THEN
                -- The default partition already holds rows of that month (a clock that ran ahead): they stay
                -- there, still found by every query. Never stop a start-up for it.
                RAISE WARNING 'partition % not made: audit_log_default holds rows of that month', name;
            WHEN lock_not_available THEN
                RAISE WARNING 'partition % not made yet: the log is busy', name;
        END;
        RESET lock_timeout;
    END IF;
END
$$;

CREATE FUNCTION ensure_audit_partitions(months_ahead integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Every worker calls this at start-up and from housekeeping: one at a time, or two could race.
    PERFORM pg_advisory_xact_lock(7161828453907742722);
    FOR i IN 0..months_ahead LOOP
        PERFORM make_audit_partition(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i));
    END LOOP;
END
$$;

-- A time as the service writes it in payloads (RFC 3339, UTC, `Z`, microseconds only when there are any).
CREATE FUNCTION pg_temp.audit_time(t timestamptz) RETURNS text LANGUAGE sql AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM t)::bigint % 1000000 = 0 THEN ''
                ELSE to_char(t AT TIME ZONE 'UTC', '.US') END
        || 'Z'
$$;

DO $$
DECLARE
    month_start timestamp;
BEGIN
    FOR month_start IN
        SELECT DISTINCT date_trunc('month', decided_at AT TIME ZONE 'UTC') FROM decisions
        UNION SELECT DISTINCT date_trunc('month', received_at AT TIME ZONE 'UTC') FROM consent_records
    LOOP
        PERFORM make_audit_partition(month_start);
    END LOOP;
END
$$;
SELECT ensure_audit_partitions(2);

-- What earlier versions recorded becomes entries, in the same shapes the service now writes (sorted keys).
-- A key's name is free text (it could be a person's e-mail) and stays out of the log, which is never erased.
-- Consents written before this log existed have no recorded key: their actor is `system`.
INSERT INTO audit_log (entry_id, at, action, actor, subject_id, outcome, payload)
SELECT record_id, received_at, 'consent.recorded', 'system', subject_id, status,
       ('{"collected_at":' || to_json(pg_temp.audit_time(collected_at))
        || ',"expires_at":' || coalesce(to_json(pg_temp.audit_time(expires_at))::text, 'null')
        || ',"fingerprint":' || to_json(encode(fingerprint, 'base64'))
        || ',"purpose":' || to_json(purpose)
        || ',"region":' || to_json(region)
        || ',"source_id":' || to_json(encode(source_id, 'base64'))
        || '}')::json
FROM consent_records
ORDER BY received_at, record_id;

INSERT INTO audit_log (entry_id, at, action, actor, subject_id, outcome, payload)
SELECT decision_id, decided_at, 'decision.made', api_key_id, subject_id,
       CASE WHEN allowed THEN 'allowed' ELSE 'denied' END,
       ('{"age":' || coalesce(age::text, 'null')
        || ',"existing_customer":' || existing_customer::text
        || ',"gpc":' || gpc::text
        || ',"lookup_hash":' || coalesce(to_json(encode(lookup_hash, 'base64'))::text, 'null')
        || ',"policy_version":' || to_json(policy_version)
        || ',"purpose":' || to_json(purpose)
        || ',"reason":' || to_json(reason)
        || ',"record_id":' || coalesce(to_json(record_id)::text, 'null')
        || ',"regime":' || to_json(regime)
        || ',"regime_version":' || to_json(regime_version)
        || ',"region":' || to_json(region)
        || ',"sensitive":' || sensitive::text
        || '}')::json
FROM decisions
ORDER BY decided_at, decision_id;

INSERT INTO audit_log (entry_id, at, action, actor, payload)
SELECT gen_random_uuid(), a.activated_at, 'policy.loaded', 'system',
       ('{"version":' || to_json(a.version) || '}')::json
FROM policy_activations a
ORDER BY a.activated_at;

INSERT INTO audit_log (entry_id, at, action, actor, payload)
SELECT gen_random_uuid(), t.at, t.action, 'system',
       ('{"key_id":' || to_json(k.id) || ',"scopes":' || to_json(k.scopes) || '}')::json
FROM api_keys k
CROSS JOIN LATERAL (VALUES ('key.created', k.created_at), ('key.revoked', k.revoked_at)) AS t (action, at)
WHERE t.at IS NOT NULL
ORDER BY t.at;

DROP TABLE decisions;
DROP FUNCTION ensure_decision_partitions(integer);

-- The Merkle tree: one row per leaf, in the order the integrator appended them (seq from 1, with no gap).
-- `nodes` holds the hashes of the complete subtrees this leaf closes, levels 1 upwards, 32 bytes each: every
-- subtree hash an inclusion proof needs is then one primary-key look-up. `at` repeats the entry's, so the
-- entry is found by its primary key.
CREATE TABLE audit_chain (
    seq       bigint PRIMARY KEY CHECK (seq > 0),
    entry_id  uuid NOT NULL UNIQUE,
    at        timestamptz NOT NULL,
    leaf_hash bytea NOT NULL,
    nodes     bytea NOT NULL
);

-- Signed tree heads: Ed25519 over audit/chain.checkpoint_body(tree_size, root_hash, signed_at).
CREATE TABLE audit_checkpoints (
    tree_size bigint PRIMARY KEY,
    root_hash bytea NOT NULL,
    signed_at timestamptz NOT NULL,
    key_id    text NOT NULL,
    signature bytea NOT NULL
);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
