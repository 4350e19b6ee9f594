-- People who sign in to the console. The e-mail is found by its keyed hash and kept sealed (master key);
-- the password only as an argon2id hash. Repeated failures lock the account for a while.
CREATE TABLE console_users (
    user_id         uuid PRIMARY KEY,
    email_hash      bytea NOT NULL UNIQUE,
    email_enc       bytea NOT NULL,
    role            text NOT NULL CHECK (role IN ('legal', 'privacy_ops', 'admin')),
    password_hash   text NOT NULL,
    failed_attempts integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz
);

-- Server-side sessions: the cookie holds a random token, the database its hash. A session ends when idle too
-- long or past its absolute lifetime, whichever comes first; the CSRF token is bound to it.
CREATE TABLE console_sessions (
    token_hash   bytea PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES console_users,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX console_sessions_by_user ON console_sessions (user_id);

-- The preference center: a customer proves an identifier with a one-time code, then sees and changes their
-- choices for a while. The cookie holds a random token; the identifier is sealed, the code a keyed hash.
CREATE TABLE privacy_sessions (
    token_hash     bytea PRIMARY KEY,
    lookup_hash    bytea NOT NULL,
    identifier_enc bytea NOT NULL,
    region         text NOT NULL,
    code_hash      bytea NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    verified_at    timestamptz,
    expires_at     timestamptz NOT NULL
);
