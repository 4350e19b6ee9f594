-- Decisions: every live consent check, recorded before it is answered; and the policy versions they used.

-- Who gave the current consent: a minor's use may need a parent's grant (GDPR 8, CCPA 1798.120(c), COPPA).
ALTER TABLE consent_state ADD COLUMN actor text NOT NULL DEFAULT 'subject';
UPDATE consent_state cs
SET actor = src.source ->> 'actor'
FROM consent_records cr
JOIN consent_sources src ON src.source_id = cr.source_id
WHERE (cr.subject_id, cr.collected_at, cr.record_id) = (cs.subject_id, cs.collected_at, cs.record_id)
  AND src.source ->> 'actor' IS NOT NULL AND src.source ->> 'actor' <> 'subject';

-- Every policy set the service has loaded, in full, so any past version can be shown and re-applied.
CREATE TABLE policy_versions (
    version     text PRIMARY KEY,
    files       jsonb NOT NULL,  -- relative path -> file text
    declared    jsonb NOT NULL,  -- relative path -> the version the file declares
    loaded_at   timestamptz NOT NULL DEFAULT now()
);

-- When each version became the one in force: a replay without a version uses the one active at its `at`.
CREATE TABLE policy_activations (
    activated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    version      text NOT NULL REFERENCES policy_versions,
    PRIMARY KEY (activated_at)
);

-- Append-heavy (hundreds of millions of rows): monthly range partitions on decided_at, made ahead by
-- ensure_decision_partitions(); the default partition catches a clock that ran past them. decision_id is a
-- UUIDv7 whose millisecond stamp equals decided_at, so a look-up by id prunes to one partition.
-- Inputs are pseudonymous: the subject id, or for a subject the ledger does not know, the identifier's
-- keyed look-up hash (never the identifier).
CREATE TABLE decisions (
    decision_id       uuid NOT NULL,
    decided_at        timestamptz NOT NULL,
    subject_id        uuid,
    lookup_hash       bytea,
    purpose           text NOT NULL,
    region            text NOT NULL,
    gpc               boolean NOT NULL,
    age               smallint,
    sensitive         boolean NOT NULL,
    existing_customer boolean NOT NULL,
    allowed           boolean NOT NULL,
    reason            text NOT NULL,
    regime            text NOT NULL,
    regime_version    text NOT NULL,
    record_id         uuid,
    policy_version    text NOT NULL,
    api_key_id        text NOT NULL,
    PRIMARY KEY (decision_id, decided_at)
) PARTITION BY RANGE (decided_at);

CREATE INDEX decisions_by_subject ON decisions (subject_id, decided_at) WHERE subject_id IS NOT NULL;

CREATE TABLE decisions_default PARTITION OF decisions DEFAULT;

CREATE FUNCTION ensure_decision_partitions(months_ahead integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    first_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    month_start timestamp;
    name text;
BEGIN
    -- Every worker calls this at start-up and from housekeeping: one at a time, or two could race to create
    -- the same partition.
    PERFORM pg_advisory_xact_lock(7161828453907742722);
    FOR i IN 0..months_ahead LOOP
        month_start := first_month + make_interval(months => i);
        name := 'decisions_' || to_char(month_start, 'YYYYMM');
        IF to_regclass(name) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF decisions FOR VALUES FROM (%L) TO (%L)',
                    name, month_start::text || '+00', (month_start + interval '1 month')::text || '+00'
                );
            EXCEPTION WHEN check_violation THEN
                -- The default partition already holds rows of that month (a clock that ran ahead): they stay
                -- there, still found by every query; an operator moves them. Never stop a start-up for it.
                RAISE WARNING 'partition % not made: decisions_default holds rows of that month', name;
            END;
        END IF;
    END LOOP;
END
$$;

SELECT ensure_decision_partitions(2);

-- Decisions are evidence: like the ledger, never changed or removed in place.
CREATE TRIGGER decisions_no_change BEFORE UPDATE OR DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
