-- The backup's log: order changes as copied from Redis, one row per sale per pass, each array one entry per
-- change (written by server/sales/ledger.py). Cheap to append during a purchase storm (one row, no per-change
-- index); the projection then moves each change into order_changes and orders and deletes the row. A change
-- copied twice (a redelivery after a crash) is in two rows and projected once.
CREATE TABLE order_log (
    batch_id   bigserial PRIMARY KEY,
    sale_id    text NOT NULL,
    stream_ids text[] NOT NULL,
    changes    text[] NOT NULL,
    entries    text[] NOT NULL,
    logged_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_log_of_sale ON order_log (sale_id);
-- Stored out of line but not compressed: compressing costs CPU during the storm, and the row lives seconds.
ALTER TABLE order_log ALTER COLUMN entries SET STORAGE EXTERNAL;

-- Each index and check on orders costs every projected change (the foreign key's per-row trigger measured a
-- third of the projection's time). Keep the indexes a query uses (by sale; paid, for the reconciler); one by
-- merchant or by buyer comes with the query that needs it. The sale's row is written before its orders by
-- their one writer (server/sales/ledger.py) and removed after them (retention).
DROP INDEX orders_of_merchant;
DROP INDEX orders_of_user;
ALTER TABLE orders DROP CONSTRAINT orders_sale_id_fkey;
