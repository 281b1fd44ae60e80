-- Live moments: giveaways (docs/giveaways.md, written by server/giveaways/record.py) and auctions
-- (docs/auctions.md, written by server/auctions/record.py). An auction's win is paid through an award sale: a
-- one-unit sale only its winner may hold (sales.auction_id, sales.winner_id; server/sales/ledger.py).

ALTER TABLE sales ADD COLUMN auction_id text;
ALTER TABLE sales ADD COLUMN winner_id text;

CREATE TABLE giveaways (
    giveaway_id    text PRIMARY KEY,
    merchant_id    text NOT NULL,
    room_id        text NOT NULL,
    product        jsonb NOT NULL,
    winners_count  integer NOT NULL CHECK (winners_count BETWEEN 1 AND 100),
    conditions     jsonb NOT NULL,  -- {signed_in, keyword, watch_seconds}
    claim_seconds  integer NOT NULL CHECK (claim_seconds > 0),
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL CHECK (ends_at > starts_at),
    created_by     text NOT NULL,
    seed           text NOT NULL,  -- secret until the draw
    commitment     text NOT NULL,  -- sha256(seed), published at the start
    state          text NOT NULL CHECK (state IN ('open', 'drawn')),
    entrants_hash  text,           -- at the draw
    entrants_count integer,
    drawn_at       timestamptz
);
CREATE INDEX giveaways_of_merchant ON giveaways (merchant_id, starts_at DESC);
CREATE INDEX giveaways_open ON giveaways (ends_at) WHERE state = 'open';
CREATE UNIQUE INDEX giveaways_one_open_per_room ON giveaways (room_id) WHERE state = 'open';

CREATE TABLE giveaway_entries (
    giveaway_id text NOT NULL REFERENCES giveaways ON DELETE CASCADE,
    user_id     text NOT NULL,
    name        text NOT NULL,
    ticket      text NOT NULL,
    entered_at  timestamptz NOT NULL,
    PRIMARY KEY (giveaway_id, user_id),
    UNIQUE (giveaway_id, ticket)
);

CREATE TABLE giveaway_winners (
    giveaway_id  text NOT NULL REFERENCES giveaways ON DELETE CASCADE,
    rank         integer NOT NULL CHECK (rank >= 1),  -- place in the ranking (1: first drawn)
    user_id      text NOT NULL,
    ticket       text NOT NULL,
    drawn_at     timestamptz NOT NULL,
    claim_by     timestamptz NOT NULL,
    outcome      text CHECK (outcome IN ('claimed', 'forfeited')),  -- NULL: won, the claim awaited
    settled_at   timestamptz,
    notified_at  timestamptz,  -- the messenger notice claimed (NULL again when its send failed)
    PRIMARY KEY (giveaway_id, rank),
    UNIQUE (giveaway_id, user_id)
);
CREATE INDEX giveaway_winners_due ON giveaway_winners (claim_by) WHERE outcome IS NULL;

CREATE TABLE giveaway_claims (
    giveaway_id text NOT NULL,
    rank        integer NOT NULL,
    user_id     text NOT NULL,
    name        text NOT NULL,
    address     text NOT NULL,
    phone       text,
    claimed_at  timestamptz NOT NULL,
    PRIMARY KEY (giveaway_id, rank),
    FOREIGN KEY (giveaway_id, rank) REFERENCES giveaway_winners ON DELETE CASCADE
);

CREATE TABLE auctions (
    auction_id  text PRIMARY KEY,
    merchant_id text NOT NULL,
    room_id     text NOT NULL,
    terms       jsonb NOT NULL,  -- product, currency, starting_bid, duration_ms, mode, extend_ms, increments, unpaid, pay_ms
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,  -- as planned, then as it closed (after any extension)
    created_by  text NOT NULL,
    state       text NOT NULL CHECK (state IN ('open', 'closed', 'awarded', 'sold', 'unsold')),
    winner_id   text,            -- the highest bidder at the close, then whoever the win is offered to
    winner_name text,
    price       bigint,
    bids        integer NOT NULL DEFAULT 0,
    extensions  integer NOT NULL DEFAULT 0,
    version     integer NOT NULL,  -- the card's: above every bid's
    closed_at   timestamptz
);
CREATE INDEX auctions_of_merchant ON auctions (merchant_id, starts_at DESC);
CREATE INDEX auctions_unsettled ON auctions (state) WHERE state IN ('open', 'closed', 'awarded');
CREATE UNIQUE INDEX auctions_one_open_per_room ON auctions (room_id) WHERE state = 'open';

CREATE TABLE auction_bids (
    auction_id text NOT NULL REFERENCES auctions ON DELETE CASCADE,
    seq        integer NOT NULL,
    user_id    text NOT NULL,
    name       text NOT NULL,
    amount     bigint NOT NULL CHECK (amount > 0),
    proxy      boolean NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (auction_id, seq)
);
CREATE INDEX auction_bids_of_user ON auction_bids (auction_id, user_id, amount DESC);

CREATE TABLE auction_awards (
    auction_id text NOT NULL REFERENCES auctions ON DELETE CASCADE,
    round      integer NOT NULL CHECK (round >= 1),
    user_id    text NOT NULL,
    name       text NOT NULL,
    price      bigint NOT NULL,
    sale_id    text NOT NULL,
    order_id   text,
    offered_at timestamptz NOT NULL,
    outcome    text CHECK (outcome IN ('paid', 'unpaid')),
    settled_at timestamptz,
    notified_at timestamptz,  -- the messenger notice claimed (NULL again when its send failed)
    PRIMARY KEY (auction_id, round),
    UNIQUE (auction_id, user_id)
);
CREATE INDEX auction_awards_open ON auction_awards (auction_id) WHERE outcome IS NULL;

CREATE TABLE auction_bars (
    merchant_id text NOT NULL,
    user_id     text NOT NULL,
    barred_by   text NOT NULL,
    barred_at   timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, user_id)
);
