-- API keys: the secret is stored only as its SHA-256 (keys are 256-bit random, so no slow hash is needed).
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    secret_hash bytea NOT NULL,
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- A subject is an opaque id with its own data key, wrapped by the master key. Destroying the wrapped key
-- erases everything encrypted under it (identifiers, proofs) without touching any other row.
CREATE TABLE subjects (
    subject_id    uuid PRIMARY KEY,
    wrapped_key   bytea,
    master_key_id text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    erased_at     timestamptz
);

-- Identifiers: a keyed hash to find the subject, the normalized value encrypted under the subject's key.
-- Finding a subject by an identifier: the keyed hash, nothing else. Not subject-owned: a distributed
-- deployment shards it by lookup_hash (or keeps it on the coordinator) while subject tables shard by subject.
CREATE TABLE identifier_lookup (
    lookup_hash bytea PRIMARY KEY,
    subject_id  uuid NOT NULL
);

-- A subject's identifiers: the normalized value encrypted under the subject's key. No foreign key to
-- subjects: rows are written only with their subject, in one transaction, and a per-row RI check is a
-- measurable share of bulk ingestion.
CREATE TABLE subject_identifiers (
    subject_id  uuid NOT NULL,
    lookup_hash bytea NOT NULL,
    kind        text NOT NULL,
    value_enc   bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_id, lookup_hash)
);

-- Where consent came from (system, touchpoint, method, notice version, CMP, actor): few distinct values,
-- stored once and named by the SHA-256 of their canonical JSON.
CREATE TABLE consent_sources (
    source_id     bytea PRIMARY KEY,
    source        jsonb NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);

-- The ledger: append-only. `fingerprint` (an HMAC of the record's content) recognizes a resent record.
CREATE TABLE consent_records (
    subject_id   uuid NOT NULL,
    record_id    uuid NOT NULL,
    purpose      text NOT NULL,
    status       text NOT NULL CHECK (status IN ('granted', 'denied', 'withdrawn')),
    collected_at timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),  -- the writing transaction's time
    region       text NOT NULL,
    source_id    bytea NOT NULL,  -- consent_sources; written by the same transaction, no per-row FK check
    expires_at   timestamptz,
    proof_enc    bytea,
    fingerprint  bytea NOT NULL,
    -- One index serves history (newest first, scanned backwards) and finding a record of a subject.
    PRIMARY KEY (subject_id, collected_at, record_id)
);
CREATE UNIQUE INDEX consent_records_fingerprint ON consent_records (subject_id, fingerprint);

-- Append-only: a record, once written, is never changed or removed (erasure destroys the subject's key
-- instead). A later migration that must delete rows says so by changing these triggers.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER consent_records_append_only BEFORE UPDATE OR DELETE ON consent_records
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER consent_records_no_truncate BEFORE TRUNCATE ON consent_records
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Current state per (subject, purpose): the record with the latest collected_at (ties: received_at),
-- kept in the same transaction as the ledger insert so a check reads one row. The rest of the record
-- (region, source, proof) is one primary-key look-up away in consent_records.
CREATE TABLE consent_state (
    subject_id   uuid NOT NULL,
    purpose      text NOT NULL,
    record_id    uuid NOT NULL,
    status       text NOT NULL,
    collected_at timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    PRIMARY KEY (subject_id, purpose)
);

-- Idempotency-Key replays: the first answer, per API key. Holds ids only, no personal data.
CREATE TABLE idempotency_keys (
    api_key_id   text NOT NULL,
    key_hash     bytea NOT NULL,
    request_hash bytea NOT NULL,
    status_code  integer,
    response     bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key_hash)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Which keys this database's data was written with (digests, never the keys): starting with other keys
-- would make every stored identifier unreadable and every look-up miss, so start-up refuses instead.
CREATE TABLE key_checks (
    name   text PRIMARY KEY,
    digest bytea NOT NULL
);
