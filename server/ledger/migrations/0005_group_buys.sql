-- Group buys (docs/group-buys.md): an offer is a sale with group terms; a group member's order carries its group
-- and the price it pays; a failed group's paid orders are `refunded`; each group is a row at its newest version.
-- All written by server/sales/ledger.py (groups and orders only by the projection of the order log).

ALTER TABLE sales ADD COLUMN group_terms jsonb;  -- {size, window_ms, leader_price}; NULL for a flash sale

ALTER TABLE orders ADD COLUMN group_id text;
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('held', 'paid', 'expired', 'cancelled', 'refunded'));
ALTER TABLE order_changes DROP CONSTRAINT order_changes_change_check;
ALTER TABLE order_changes ADD CONSTRAINT order_changes_change_check
    CHECK (change IN ('held', 'paid', 'expired', 'cancelled', 'refunded'));
CREATE INDEX orders_of_group ON orders (group_id) WHERE group_id IS NOT NULL;

CREATE TABLE group_buys (
    group_id    text PRIMARY KEY,
    sale_id     text NOT NULL REFERENCES sales,
    merchant_id text NOT NULL,
    leader_id   text NOT NULL,
    size        integer NOT NULL CHECK (size >= 2),
    state       text NOT NULL CHECK (state IN ('pending', 'open', 'filled', 'failed', 'cancelled')),
    members     jsonb NOT NULL,  -- [{order_id, user_id, name, paid, leader}]
    created_at  timestamptz NOT NULL,
    opened_at   timestamptz,
    expires_at  timestamptz,
    closed_at   timestamptz,
    version     integer NOT NULL,
    CHECK (jsonb_array_length(members) <= size)
);
CREATE INDEX group_buys_of_sale ON group_buys (sale_id, created_at DESC);
CREATE INDEX group_buys_of_merchant ON group_buys (merchant_id, created_at);
