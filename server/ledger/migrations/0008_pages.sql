-- What buyers and sellers expect of the pages (issue 16): a person's shipping address, remembered per account, and
-- the address each order ships to (server/sales/shipping.py); who waits for a product to come back
-- (server/sales/waitlist.py); each show's likes (server/rooms/shows.py).

CREATE TABLE addresses (
    user_id    text PRIMARY KEY,
    name       text NOT NULL,
    address    text NOT NULL,
    phone      text,
    updated_at timestamptz NOT NULL
);

CREATE TABLE order_shipping (
    order_id    text PRIMARY KEY,
    merchant_id text NOT NULL,
    user_id     text NOT NULL,
    name        text NOT NULL,
    address     text NOT NULL,
    phone       text,
    created_at  timestamptz NOT NULL
);
CREATE INDEX order_shipping_of_merchant ON order_shipping (merchant_id, created_at);

CREATE TABLE waitlist (
    merchant_id text NOT NULL,
    product_id  text NOT NULL,
    user_id     text NOT NULL,
    room_id     text,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, product_id, user_id)
);
CREATE INDEX waitlist_of_user ON waitlist (user_id);

ALTER TABLE shows ADD COLUMN likes_at_start bigint NOT NULL DEFAULT 0;
ALTER TABLE shows ADD COLUMN likes bigint;  -- the show's likes, kept when it ends
