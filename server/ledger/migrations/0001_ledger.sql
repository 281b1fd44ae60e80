-- The record: shows, sales, orders and every change to them, payments, the sandbox gateway, the audit log.
-- Money is never an updated total: every movement is a row, and exactly-once is a unique constraint.

-- A room's shows: each go-live to end, with its numbers (written by server/rooms/shows.py).
CREATE TABLE shows (
    show_id      text PRIMARY KEY,
    merchant_id  text NOT NULL,
    room_id      text NOT NULL,
    title        text NOT NULL,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    peak_viewers integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX shows_one_live_per_room ON shows (room_id) WHERE ended_at IS NULL;
CREATE INDEX shows_of_room ON shows (room_id, started_at DESC);
CREATE INDEX shows_of_merchant ON shows (merchant_id, started_at);

-- Flash sales: their terms, written when created; ends_at and archived_at when they end and leave Redis
-- (written by server/sales/ledger.py).
CREATE TABLE sales (
    sale_id        text PRIMARY KEY,
    merchant_id    text NOT NULL,
    room_id        text NOT NULL,
    show_id        text REFERENCES shows,
    product        jsonb NOT NULL,
    price          bigint NOT NULL CHECK (price >= 0),
    currency       text NOT NULL,
    quantity       integer NOT NULL CHECK (quantity > 0),
    per_user_limit integer NOT NULL,
    hold_ms        integer NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    created_at     timestamptz NOT NULL,
    archived_at    timestamptz
);
CREATE INDEX sales_of_merchant ON sales (merchant_id, created_at DESC);
CREATE INDEX sales_of_show ON sales (show_id);

-- Orders as they are now: one row each, replaced only by a newer version (server/sales/ledger.py).
CREATE TABLE orders (
    order_id        text PRIMARY KEY,
    sale_id         text NOT NULL REFERENCES sales,
    merchant_id     text NOT NULL,
    user_id         text NOT NULL,
    quantity        integer NOT NULL CHECK (quantity > 0),
    unit_price      bigint NOT NULL,
    currency        text NOT NULL,
    status          text NOT NULL CHECK (status IN ('held', 'paid', 'expired', 'cancelled')),
    version         integer NOT NULL,
    idempotency_key text NOT NULL,
    created_at      timestamptz NOT NULL,
    hold_expires_at timestamptz NOT NULL,
    paid_at         timestamptz,
    closed_at       timestamptz,
    payment_ref     text,
    payment_key     text
);
CREATE INDEX orders_of_sale ON orders (sale_id, created_at);
CREATE INDEX orders_of_merchant ON orders (merchant_id, created_at);
CREATE INDEX orders_of_user ON orders (user_id, created_at);
CREATE INDEX orders_paid ON orders (paid_at) WHERE status = 'paid';

-- Every change of every order, as its sale's script made it: (order, version) once.
CREATE TABLE order_changes (
    order_id  text NOT NULL,
    version   integer NOT NULL,
    sale_id   text NOT NULL,
    change    text NOT NULL CHECK (change IN ('held', 'paid', 'expired', 'cancelled')),
    at        timestamptz NOT NULL,
    stream_id text NOT NULL,
    PRIMARY KEY (order_id, version)
);
CREATE INDEX order_changes_of_sale ON order_changes (sale_id);

-- Money movements at the gateway, as we know them: one row per authorization and kind
-- (server/sales/ledger.py, for checkout and the reconciler).
CREATE TABLE payments (
    payment_id       bigserial PRIMARY KEY,
    authorization_id text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('authorization', 'capture', 'void', 'refund')),
    order_id         text NOT NULL,
    merchant_id      text NOT NULL,
    amount           bigint NOT NULL CHECK (amount >= 0),
    currency         text NOT NULL,
    at               timestamptz NOT NULL DEFAULT now(),
    by_reconciler    boolean NOT NULL DEFAULT false,
    UNIQUE (authorization_id, kind)
);
CREATE INDEX payments_of_order ON payments (order_id);
CREATE INDEX payments_of_merchant ON payments (merchant_id, at);

-- The sandbox gateway's own book (server/sales/payments.py): what a real gateway would keep on its side.
CREATE TABLE sandbox_authorizations (
    authorization_id text PRIMARY KEY,
    fingerprint      text NOT NULL,  -- of (reference, payer's key, card): one live authorization each
    reference        text NOT NULL,
    amount           bigint NOT NULL,
    currency         text NOT NULL,
    last4            text NOT NULL,
    state            text NOT NULL CHECK (state IN ('declined', 'authorized', 'captured', 'voided', 'refunded')),
    decline_code     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_authorizations_open ON sandbox_authorizations (state, created_at);
CREATE UNIQUE INDEX sandbox_authorizations_one_live ON sandbox_authorizations (fingerprint)
    WHERE state IN ('declined', 'authorized', 'captured');
CREATE INDEX sandbox_authorizations_of_reference ON sandbox_authorizations (reference);

-- What staff did, per merchant: appended, never edited (server/ledger/audit.py).
CREATE TABLE audit_log (
    audit_id    bigserial PRIMARY KEY,
    merchant_id text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    text NOT NULL,
    actor_name  text NOT NULL,
    actor_role  text NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_of_merchant ON audit_log (merchant_id, audit_id);
CREATE INDEX audit_log_by_age ON audit_log (at);  -- the retention purge

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('livecart.retention', true) = 'on' THEN
        RETURN OLD;  -- the retention purge (AuditLog.purge), and only it, removes entries past ORDER_RETENTION_DAYS
    END IF;
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
