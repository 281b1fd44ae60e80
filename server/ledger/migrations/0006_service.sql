-- Customer service (docs/customer-service.md): one thread per buyer and merchant, its messages, the buyers'
-- blocks (written by server/service/threads.py), the canned replies (server/service/replies.py) and the
-- notices sent to buyers who were not connected (server/service/notices.py).

CREATE TABLE service_threads (
    thread_id       text PRIMARY KEY,
    merchant_id     text NOT NULL,
    user_id         text NOT NULL,
    buyer_name      text NOT NULL,
    state           text NOT NULL CHECK (state IN ('open', 'pending', 'resolved')),
    assignee_id     text,
    assignee_name   text,
    room_id         text,             -- where the buyer last wrote from a room
    last_message_id bigint NOT NULL DEFAULT 0,
    buyer_read      bigint NOT NULL DEFAULT 0,  -- the newest message id each side has read
    buyer_delivered bigint NOT NULL DEFAULT 0,  -- the newest one a page of the buyer received
    staff_read      bigint NOT NULL DEFAULT 0,
    waiting_since   timestamptz,      -- the buyer's first message the staff have not answered yet
    waiting_show    text,             -- the show live in its room then (first response per show)
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (merchant_id, user_id)
);
CREATE INDEX service_threads_of_merchant ON service_threads (merchant_id, updated_at DESC);
CREATE INDEX service_threads_of_user ON service_threads (user_id, updated_at DESC);
CREATE INDEX service_threads_waiting ON service_threads (waiting_show) WHERE waiting_since IS NOT NULL;

CREATE TABLE service_messages (
    message_id   bigserial PRIMARY KEY,
    thread_id    text NOT NULL REFERENCES service_threads ON DELETE CASCADE,
    merchant_id  text NOT NULL,
    side         text NOT NULL CHECK (side IN ('buyer', 'staff')),
    author_id    text NOT NULL,
    author_name  text NOT NULL,
    author_role  text NOT NULL,       -- viewer for the buyer; a staff member's role then (a public answer's badge)
    body         text NOT NULL,
    client_key   text NOT NULL,       -- the author's Idempotency-Key: sent twice, stored once
    room_id      text,
    order_id     text,
    product_id   text,
    show_id      text,                -- a question: the show it started a wait in; an answer: the wait's show
    starts_wait  boolean NOT NULL DEFAULT false,
    response_ms  bigint,              -- an answer that ended a wait: how long the buyer waited
    public_state text CHECK (public_state IN ('asked', 'posted', 'declined')),
    question_id  bigint,              -- a public answer's question
    created_at   timestamptz NOT NULL,
    UNIQUE (thread_id, author_id, client_key)
);
CREATE INDEX service_messages_of_thread ON service_messages (thread_id, message_id);
CREATE INDEX service_messages_of_show ON service_messages (show_id) WHERE show_id IS NOT NULL;
CREATE INDEX service_messages_unnotified ON service_messages (created_at) WHERE side = 'staff';

CREATE TABLE service_blocks (
    user_id     text NOT NULL,
    merchant_id text NOT NULL,
    blocked_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, merchant_id)
);
CREATE INDEX service_blocks_of_merchant ON service_blocks (merchant_id);

CREATE TABLE service_replies (
    reply_id    text PRIMARY KEY,
    merchant_id text NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX service_replies_of_merchant ON service_replies (merchant_id, title);

-- One row per notice: claimed (the primary key) before it is sent, so each is sent once whichever process
-- runs the pass; it covers every staff message of its thread up to message_id.
CREATE TABLE service_notices (
    message_id  bigint PRIMARY KEY REFERENCES service_messages ON DELETE CASCADE,
    thread_id   text NOT NULL REFERENCES service_threads ON DELETE CASCADE,
    merchant_id text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('sending', 'sent', 'no_destination')),
    at          timestamptz NOT NULL
);
CREATE INDEX service_notices_of_thread ON service_notices (thread_id, message_id DESC);
