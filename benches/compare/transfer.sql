-- The transfer workload for PostgreSQL (plpgsql), used by run.sh.
-- psql -v accounts=N -v balance=B -f transfer.sql

SET client_min_messages = warning;
DROP TABLE IF EXISTS accounts;
CREATE TABLE accounts (
    id      int    PRIMARY KEY,
    balance bigint NOT NULL
) WITH (fillfactor = 90);

INSERT INTO accounts (id, balance)
SELECT g, :balance FROM generate_series(1, :accounts) AS g;

-- transfer(from, to, amount): moves amount from one account to another.
-- Returns 1 when the money moved, 0 for from = to (a no-op: the two random
-- ids sometimes coincide) and -1 for insufficient funds (nothing written).
-- It locks both rows in id order, so two concurrent transfers over the same
-- pair cannot deadlock, then reads both balances, checks the source and
-- writes both. Under READ COMMITTED the row locks make this serializable
-- for this workload: each row is read after it is locked.
CREATE OR REPLACE FUNCTION transfer(p_from int, p_to int, p_amount bigint)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    r            record;
    from_balance bigint;
    to_balance   bigint;
BEGIN
    IF p_from = p_to THEN
        RETURN 0;
    END IF;
    FOR r IN
        SELECT id, balance FROM accounts
        WHERE id IN (p_from, p_to)
        ORDER BY id
        FOR UPDATE
    LOOP
        IF r.id = p_from THEN
            from_balance := r.balance;
        ELSE
            to_balance := r.balance;
        END IF;
    END LOOP;
    IF from_balance IS NULL OR to_balance IS NULL THEN
        RAISE EXCEPTION 'no such account: % or %', p_from, p_to;
    END IF;
    IF from_balance < p_amount THEN
        RETURN -1;
    END IF;
    UPDATE accounts SET balance = from_balance - p_amount WHERE id = p_from;
    UPDATE accounts SET balance = to_balance + p_amount WHERE id = p_to;
    RETURN 1;
END
$$;

VACUUM ANALYZE accounts;
CHECKPOINT;
