-- CMP sources: who may push consent to POST /v1/inbound/{name}, signed per Standard Webhooks.

CREATE TABLE sources (
    name           text PRIMARY KEY,
    kind           text NOT NULL,
    default_region text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);

-- A source's signing secrets, wrapped by the master key (verifying needs the secret itself, so it cannot be
-- a hash). A rotation retires the old secret at a time in the future: until then both verify.
CREATE TABLE source_secrets (
    source      text NOT NULL REFERENCES sources ON DELETE CASCADE,
    secret_id   uuid NOT NULL,
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retires_at  timestamptz,
    PRIMARY KEY (source, secret_id)
);
