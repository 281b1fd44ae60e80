-- Accounts and sessions: people, the merchants' staff, revocable sessions, and the sandbox messenger's outbox.

-- A person: a guest (no email or phone yet) or a member who signed in with a one-time code. Ids are made by the
-- server, never chosen by a client (written by server/access/accounts.py).
CREATE TABLE users (
    user_id           text PRIMARY KEY,
    name              text NOT NULL,
    email             text UNIQUE,
    phone             text UNIQUE,
    email_verified_at timestamptz,
    phone_verified_at timestamptz,
    device_id         text,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- A guest who signed in to an account that already existed: the guest's orders are the account's
-- (written by server/access/accounts.py).
CREATE TABLE user_aliases (
    alias      text PRIMARY KEY REFERENCES users,
    user_id    text NOT NULL REFERENCES users,
    linked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_aliases_of_user ON user_aliases (user_id, linked_at DESC);

-- A merchant's staff: one role per merchant and user (written by server/access/accounts.py).
CREATE TABLE staff (
    merchant_id text NOT NULL,
    user_id     text NOT NULL REFERENCES users,
    role        text NOT NULL CHECK (role IN ('admin', 'host', 'moderator')),
    added_by    text,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, user_id)
);
CREATE INDEX staff_of_user ON staff (user_id);

-- A signed-in browser or app: short-lived access tokens are refreshed with its refresh token, which rotates on
-- each use (the one before is kept to notice a stolen one used twice). Revoked: refused everywhere
-- (written by server/access/sessions.py).
CREATE TABLE sessions (
    session_id     text PRIMARY KEY,
    user_id        text NOT NULL REFERENCES users,
    refresh_hash   bytea NOT NULL,
    previous_hash  bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    refreshed_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    address        text,
    user_agent     text
);
CREATE INDEX sessions_of_user ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expiring ON sessions (expires_at);

-- What the sandbox messenger "sent": one-time codes, shown in the dev inbox (written by server/access/codes.py).
CREATE TABLE sandbox_messages (
    message_id  bigserial PRIMARY KEY,
    destination text NOT NULL,
    body        text NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_messages_to ON sandbox_messages (destination, message_id DESC);

-- Who may buy in a sale: anyone, signed-in buyers, or buyers with a verified phone (server/sales/ledger.py).
ALTER TABLE sales ADD COLUMN buyers text NOT NULL DEFAULT 'signed_in'
    CHECK (buyers IN ('anyone', 'signed_in', 'verified_phone'));
