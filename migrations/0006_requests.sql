-- Data-subject requests, from intake to proof of completion.
-- A request's identifiers are sealed under its own data key (wrapped by the master key), so finishing a
-- deletion destroys them with the key; their keyed look-up hashes find the subject and spot a resubmission.
CREATE TABLE requests (
    request_id      uuid PRIMARY KEY,
    type            text NOT NULL,
    status          text NOT NULL
        CHECK (status IN ('received', 'verifying', 'verified', 'in_progress', 'completed', 'rejected')),
    region          text NOT NULL,
    regime          text NOT NULL,           -- whose deadlines apply
    policy_version  text NOT NULL,
    channel         text NOT NULL,
    lookup_hashes   bytea[] NOT NULL,
    subject_id      uuid,                    -- the ledger's subject, when the identifiers name one
    wrapped_key     bytea,                   -- NULL once destroyed
    master_key_id   text NOT NULL,
    identifiers_enc bytea,
    details_enc     bytea,
    appeals         uuid REFERENCES requests,
    received_at     timestamptz NOT NULL,
    verified_at     timestamptz,
    clock_start     date NOT NULL,
    due_at          date NOT NULL,
    acknowledge_by  date,
    extended        boolean NOT NULL DEFAULT false,
    closed_at       timestamptz,
    created_by      text NOT NULL,           -- an API key id, or `public`
    created_at      timestamptz NOT NULL DEFAULT now(),
    due_soon_sent   boolean NOT NULL DEFAULT false,
    overdue_sent    boolean NOT NULL DEFAULT false
);
CREATE INDEX requests_open_by_due ON requests (due_at, request_id) WHERE status NOT IN ('completed', 'rejected');
CREATE INDEX requests_by_received ON requests (received_at DESC, request_id DESC);
CREATE INDEX requests_by_subject ON requests (subject_id) WHERE subject_id IS NOT NULL;
CREATE INDEX requests_by_identifier ON requests USING gin (lookup_hashes);

-- Every transition, with who made it and why: the request's own history, shown to staff and signed into its
-- receipt. Audit entries carry the same without the free-text reason (the audit log is never erased).
CREATE TABLE request_history (
    request_id  uuid NOT NULL REFERENCES requests,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    action      text NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    actor       text NOT NULL,
    reason      text,
    PRIMARY KEY (request_id, at, action)
);

-- Downstream systems that must act on requests: each has an outbound subscription (its URL and signing
-- secret) and an API key of its own with which it confirms.
CREATE TABLE downstream_systems (
    system_id       uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    subscription_id uuid NOT NULL REFERENCES webhook_subscriptions,
    api_key_id      text NOT NULL REFERENCES api_keys,
    request_types   text[] NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE request_systems (
    request_id   uuid NOT NULL REFERENCES requests,
    system_id    uuid NOT NULL REFERENCES downstream_systems,
    notified_at  timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    PRIMARY KEY (request_id, system_id)
);

-- Identifiers of erased subjects, by keyed hash only: what the law lets us keep to honour the erasure, so a
-- later import cannot bring the person back unnoticed.
CREATE TABLE suppressed_identifiers (
    lookup_hash   bytea PRIMARY KEY,
    request_id    uuid NOT NULL,
    suppressed_at timestamptz NOT NULL DEFAULT now()
);

-- Outbound events that carry personal data (the identifiers a downstream system must act on, a verification
-- code) are sealed at rest, and go only to their audience (the subscriptions of the systems that must act),
-- not to every subscriber of their type. NULL audience: every subscription that wants the event.
ALTER TABLE outbox ADD COLUMN sealed boolean NOT NULL DEFAULT false;
ALTER TABLE outbox ADD COLUMN audience uuid[];
-- An access request lists the deliveries that named its subject.
CREATE INDEX outbox_by_subject ON outbox (subject_id) WHERE subject_id IS NOT NULL;

-- Public intake: a one-time code proves the requester holds the identifier (stored as a keyed hash, expiring,
-- with a bounded number of tries); an export reaches the customer through a one-time, expiring link.
CREATE TABLE request_codes (
    request_id uuid PRIMARY KEY REFERENCES requests,
    code_hash  bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    attempts   integer NOT NULL DEFAULT 0,
    used_at    timestamptz
);

CREATE TABLE export_links (
    token_hash bytea PRIMARY KEY,
    request_id uuid NOT NULL REFERENCES requests,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

-- Fixed-window counters of the public endpoints, shared by every worker: per client address and per
-- identifier, both by keyed hash.
CREATE TABLE rate_limits (
    bucket       bytea NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
