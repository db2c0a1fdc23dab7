-- The PostgreSQL store, version 1.
--
-- Rules for every migration here (rolling upgrades run older and newer nodes
-- side by side on one schema):
-- - Additive only (expand, then contract later): add tables, nullable or
--   defaulted columns, indexes. Never rename, retype or drop what an older
--   node still reads or writes.
-- - A change older nodes cannot live with raises
--   schema_compat.min_store_version (they then refuse to start), and lands
--   only once every node runs a build at least that new.
-- - Never edit a migration once applied anywhere, not even a comment: sqlx
--   checks each applied migration's checksum at start-up.

-- One row per document that ever stored anything. next_seq is the sequence
-- number the next appended entry gets: appends lock this row, so numbers are
-- handed out gap-free and in commit order even with several nodes writing.
CREATE TABLE documents (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- "C" collation: byte order, the same order the writer sorts names in.
    name       text COLLATE "C" NOT NULL UNIQUE,
    next_seq   bigint NOT NULL DEFAULT 1 CHECK (next_seq >= 1),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Accepted updates not yet folded into the snapshot, as received.
CREATE TABLE log_entries (
    doc_id       bigint NOT NULL REFERENCES documents (id),
    seq          bigint NOT NULL,
    -- Milliseconds since the Unix epoch when the server accepted it.
    at_ms        bigint NOT NULL,
    -- A user id, or conn:<id> for an anonymous connection.
    origin       text NOT NULL,
    -- 1 = lib0 v1, 2 = lib0 v2.
    encoding     smallint NOT NULL,
    update_bytes bytea NOT NULL,
    PRIMARY KEY (doc_id, seq)
);

-- The latest compacted state: it covers every log entry up to through_seq,
-- which compaction deletes in the same transaction.
CREATE TABLE snapshots (
    doc_id      bigint PRIMARY KEY REFERENCES documents (id),
    through_seq bigint NOT NULL,
    encoding    smallint NOT NULL,
    state       bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Which builds may use this schema. A node whose store version is below
-- min_store_version refuses to start; latest_store_version records the newest
-- build that has opened it (for the error message and for operators).
CREATE TABLE schema_compat (
    singleton            boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    min_store_version    integer NOT NULL,
    latest_store_version integer NOT NULL
);
INSERT INTO schema_compat (min_store_version, latest_store_version) VALUES (1, 1);
