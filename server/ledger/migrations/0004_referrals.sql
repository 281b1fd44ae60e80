-- Share and earn (docs/referrals.md): a merchant's programme and commission rules, share links, clicks,
-- bindings, refunds, the sharers' ledger, withdrawals and the sandbox payout provider's book.

-- A merchant's programme (written by server/referrals/program.py).
CREATE TABLE referral_programs (
    merchant_id    text PRIMARY KEY,
    enabled        boolean NOT NULL DEFAULT false,
    levels         smallint NOT NULL DEFAULT 1 CHECK (levels IN (1, 2)),  -- never three or more (传销)
    binding        text NOT NULL DEFAULT 'first_touch' CHECK (binding IN ('first_touch', 'last_touch', 'new_buyers')),
    binding_days   integer NOT NULL DEFAULT 30 CHECK (binding_days BETWEEN 1 AND 365),
    refund_days    integer NOT NULL DEFAULT 7 CHECK (refund_days BETWEEN 0 AND 90),
    self_purchase  boolean NOT NULL DEFAULT false,
    daily_cap      bigint CHECK (daily_cap >= 0),
    min_withdrawal bigint NOT NULL DEFAULT 1000 CHECK (min_withdrawal > 0),
    currency       text NOT NULL DEFAULT 'USD',
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- What a level earns: the merchant's default ('merchant', id ''), a product's or a sale's; a fixed amount per unit
-- wins over a rate (written by server/referrals/program.py).
CREATE TABLE commission_rules (
    merchant_id text NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('merchant', 'product', 'sale')),
    scope_id    text NOT NULL,
    level       smallint NOT NULL CHECK (level IN (1, 2)),
    rate_bp     integer CHECK (rate_bp BETWEEN 0 AND 10000),
    fixed       bigint CHECK (fixed >= 0),
    CHECK (rate_bp IS NOT NULL OR fixed IS NOT NULL),
    PRIMARY KEY (merchant_id, scope, scope_id, level)
);

-- A sharer's link to a room or a product in it (written by server/referrals/shares.py).
CREATE TABLE shares (
    code        text PRIMARY KEY,
    merchant_id text NOT NULL,
    sharer_id   text NOT NULL,
    sharer_name text NOT NULL,  -- as the room shows it (the top sharers board), when the link was made
    room_id     text NOT NULL,
    product_id  text NOT NULL DEFAULT '',
    device_id   text,
    address     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, sharer_id, room_id, product_id)
);
CREATE INDEX shares_of_sharer ON shares (sharer_id);

-- Each opening of a link, and what it did (written by server/referrals/shares.py).
CREATE TABLE share_visits (
    visit_id    bigserial PRIMARY KEY,
    code        text NOT NULL REFERENCES shares,
    merchant_id text NOT NULL,
    sharer_id   text NOT NULL,
    visitor_id  text NOT NULL,
    device_id   text,
    address     text,
    outcome     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX share_visits_of_sharer ON share_visits (merchant_id, sharer_id);
CREATE INDEX share_visits_of_visitor ON share_visits (visitor_id);

-- Who brought whom to a merchant, and for how long; a rebinding ends the binding before (written by
-- server/referrals/shares.py). An order earns for the binding in effect when it was placed.
CREATE TABLE referral_bindings (
    binding_id  bigserial PRIMARY KEY,
    merchant_id text NOT NULL,
    buyer_id    text NOT NULL,
    sharer_id   text NOT NULL,
    code        text NOT NULL,
    bound_at    timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    CHECK (buyer_id <> sharer_id)
);
CREATE INDEX referral_bindings_of_buyer ON referral_bindings (merchant_id, buyer_id, bound_at DESC);
CREATE INDEX referral_bindings_of_sharer ON referral_bindings (merchant_id, sharer_id);

-- A paid order refunded in full: once (written by server/sales/refunds.py, with the gateway's refund).
CREATE TABLE refunds (
    order_id    text PRIMARY KEY,
    merchant_id text NOT NULL,
    amount      bigint NOT NULL CHECK (amount >= 0),
    currency    text NOT NULL,
    reason      text NOT NULL,
    refunded_by text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_by_time ON refunds (at);

-- The sharers' ledger: every movement a row, a balance a sum (written by server/referrals/earnings.py).
-- Exactly one commission and one reversal per order and level; one debit and one credit back per withdrawal.
CREATE TABLE commissions (
    entry_id     bigserial PRIMARY KEY,
    merchant_id  text NOT NULL,
    sharer_id    text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('commission', 'reversal', 'withdrawal', 'withdrawal_refund')),
    amount       bigint NOT NULL,
    currency     text NOT NULL,
    order_id     text,
    level        smallint CHECK (level IN (1, 2)),
    buyer_id     text,
    room_id      text,
    base         bigint,          -- what the buyer paid (a commission's base)
    payout_id    text,
    available_at timestamptz NOT NULL DEFAULT now(),  -- a commission's refund window ends
    flag         text,            -- same_device, same_address or same_card: waits for the merchant
    review       text CHECK (review IN ('approved', 'rejected')),
    reviewed_by  text,
    note         text,
    at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind IN ('commission', 'reversal')) = (order_id IS NOT NULL AND level IS NOT NULL)),
    CHECK ((kind IN ('withdrawal', 'withdrawal_refund')) = (payout_id IS NOT NULL))
);
CREATE UNIQUE INDEX commissions_once_per_order ON commissions (order_id, level, kind) WHERE order_id IS NOT NULL;
CREATE UNIQUE INDEX commissions_once_per_payout ON commissions (payout_id, kind) WHERE payout_id IS NOT NULL;
CREATE INDEX commissions_of_sharer ON commissions (merchant_id, sharer_id, entry_id);
CREATE INDEX commissions_of_merchant ON commissions (merchant_id, entry_id);

-- Withdrawals: requested -> approved -> paid | failed (-> approved again); requested | failed -> refused
-- (written by server/referrals/payouts.py).
CREATE TABLE payouts (
    payout_id       text PRIMARY KEY,
    merchant_id     text NOT NULL,
    sharer_id       text NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        text NOT NULL,
    recipient       text NOT NULL,
    state           text NOT NULL CHECK (state IN ('requested', 'approved', 'paid', 'failed', 'refused')),
    attempts        integer NOT NULL DEFAULT 0,
    provider_ref    text,
    failure         text,
    idempotency_key text NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, sharer_id, idempotency_key)
);
CREATE INDEX payouts_of_merchant ON payouts (merchant_id, requested_at DESC);

-- The sandbox payout provider's own book (server/referrals/payouts.py): one transfer per payout and attempt.
CREATE TABLE sandbox_payouts (
    provider_ref text PRIMARY KEY,
    payout_id    text NOT NULL,
    attempt      integer NOT NULL,
    recipient    text NOT NULL,
    amount       bigint NOT NULL,
    currency     text NOT NULL,
    state        text NOT NULL CHECK (state IN ('paid', 'failed')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (payout_id, attempt)
);

-- Where the commission pass is in the projected order changes (written by server/referrals/earnings.py).
CREATE TABLE referral_cursor (
    name     text PRIMARY KEY,
    position bigint NOT NULL
);

-- The projection numbers every change it writes, in commit order (it runs one at a time): the commission pass
-- reads the paid ones after its cursor.
ALTER TABLE order_changes ADD COLUMN seq bigserial;
CREATE INDEX order_changes_paid ON order_changes (seq) WHERE change = 'paid';

-- A keyed hash of the card an authorization was made with (server/sales/ledger.py): a sharer paying for their
-- own referred orders is flagged.
ALTER TABLE payments ADD COLUMN card text;
CREATE INDEX payments_by_card ON payments (card) WHERE card IS NOT NULL;

-- "new buyers only" asks whether a person ever paid the merchant; only paid orders enter this index (a storm's
-- held orders cost it nothing).
CREATE INDEX orders_paid_by_user ON orders (user_id) WHERE status = 'paid';
CREATE INDEX commissions_of_room ON commissions (room_id) WHERE kind = 'commission' AND level = 1;
