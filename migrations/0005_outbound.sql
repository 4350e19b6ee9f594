-- Outbound webhooks: subscriptions, the outbox of events, and each subscription's deliveries.

CREATE TABLE webhook_subscriptions (
    id          uuid PRIMARY KEY,
    url         text NOT NULL,
    events      text[] NOT NULL,          -- names, or families such as `request.*`
    purposes    text[],                   -- NULL: every purpose
    paused_at   timestamptz,              -- paused: events queue up, nothing is sent
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz               -- kept so its delivery history still names it
);

-- Signing secrets, wrapped by the master key (signing needs the secret itself). After a rotation the old one
-- keeps signing next to the new one until it retires, so receivers can switch at their own pace.
CREATE TABLE webhook_subscription_secrets (
    subscription_id uuid NOT NULL REFERENCES webhook_subscriptions,
    secret_id       uuid NOT NULL,
    wrapped         bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    retires_at      timestamptz,
    PRIMARY KEY (subscription_id, secret_id)
);

-- Events, written by the transaction that makes the change they announce. Like audit_log, `txid` lets the
-- dispatcher take committed events in a gap-free order without the writers taking a lock or a sequence.
-- `data` is the event's compact JSON; no identifier in clear: subjects are named by their pseudonymous id.
CREATE TABLE outbox (
    txid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id   uuid NOT NULL,
    type       text NOT NULL,
    purpose    text,                      -- what purpose filters match; NULL for events about no one purpose
    subject_id uuid,
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (txid, event_id)
);

-- Where the dispatcher is: the last event it fanned out, and the last sequence number it gave.
CREATE TABLE outbox_cursor (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    txid     xid8 NOT NULL,
    event_id uuid NOT NULL,
    seq      bigint NOT NULL
);
INSERT INTO outbox_cursor (txid, event_id, seq) VALUES ('0', '00000000-0000-0000-0000-000000000000', 0);

-- One row per (subscription, event): delivered in `seq` order (the order events committed).
CREATE TABLE webhook_deliveries (
    subscription_id  uuid NOT NULL REFERENCES webhook_subscriptions,
    seq              bigint NOT NULL,
    txid             xid8 NOT NULL,
    event_id         uuid NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    PRIMARY KEY (subscription_id, seq)
);
-- What is waiting (the senders' queue) and what gave up (counted in listings) are found without reading the
-- delivered history.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (subscription_id, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (subscription_id, seq) WHERE status = 'dead';
