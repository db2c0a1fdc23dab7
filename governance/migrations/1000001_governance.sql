-- Governance tables, version 1: audit chains, checkpoints, pruning anchors,
-- workspace settings and lineage.
--
-- These migrations share the schema, and sqlx's `_sqlx_migrations` table,
-- with the sync server's document store: their versions start at 1000001 so
-- they can never collide with the store's (0001, 0002, ...), and both
-- migrators run with ignore_missing so each tolerates the other's rows.
-- Every table is prefixed `governance_` for the same reason.
--
-- Same rules as the store's migrations: additive only, and never edit one
-- once applied anywhere (sqlx checks checksums at start-up).

-- The end of each workspace's chain. Appends lock this row, so entries are
-- linked gap-free and in commit order even with several nodes appending.
CREATE TABLE governance_audit_heads (
    workspace      text COLLATE "C" PRIMARY KEY,
    seq            bigint NOT NULL,
    hash           bytea NOT NULL,
    checkpoint_seq bigint NOT NULL DEFAULT 0
);

-- The entries. `event` is the canonical JSON the hash covers, kept as text
-- (jsonb would normalise it); the columns after it are copies for searching,
-- which verification checks against `event`.
CREATE TABLE governance_audit_entries (
    workspace  text COLLATE "C" NOT NULL,
    seq        bigint NOT NULL,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL,
    event      text NOT NULL,
    at_ms      bigint NOT NULL,
    actor_kind text NOT NULL,
    actor_id   text COLLATE "C" NOT NULL,
    action     text NOT NULL,
    document   text COLLATE "C",
    outcome    text NOT NULL,
    PRIMARY KEY (workspace, seq)
);
CREATE INDEX governance_audit_entries_time ON governance_audit_entries (at_ms, workspace, seq);
CREATE INDEX governance_audit_entries_actor ON governance_audit_entries (actor_id, at_ms, workspace, seq);
CREATE INDEX governance_audit_entries_document ON governance_audit_entries (document, at_ms, workspace, seq);
CREATE INDEX governance_audit_entries_action ON governance_audit_entries (action, at_ms, workspace, seq);

-- Signed checkpoints: the signature covers workspace, seq, hash, prev_seq,
-- at_ms and key_id.
CREATE TABLE governance_audit_checkpoints (
    workspace text COLLATE "C" NOT NULL,
    seq       bigint NOT NULL,
    hash      bytea NOT NULL,
    prev_seq  bigint NOT NULL,
    at_ms     bigint NOT NULL,
    key_id    text NOT NULL,
    signature text NOT NULL,
    PRIMARY KEY (workspace, seq)
);

-- Signed "entries through through_seq were pruned" statements, one per chain.
CREATE TABLE governance_audit_anchors (
    workspace   text COLLATE "C" PRIMARY KEY,
    through_seq bigint NOT NULL,
    hash        bytea NOT NULL,
    at_ms       bigint NOT NULL,
    key_id      text NOT NULL,
    signature   text NOT NULL
);

-- Per-workspace settings (retention, legal hold, erasure mode), as text.
CREATE TABLE governance_settings (
    workspace text COLLATE "C" NOT NULL,
    name      text COLLATE "C" NOT NULL,
    value     text NOT NULL,
    PRIMARY KEY (workspace, name)
);

-- Where content came from and went to.
CREATE TABLE governance_lineage_edges (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_node text COLLATE "C" NOT NULL,
    to_node   text COLLATE "C" NOT NULL,
    edge      text NOT NULL
);
CREATE INDEX governance_lineage_edges_from ON governance_lineage_edges (from_node, id);
CREATE INDEX governance_lineage_edges_to ON governance_lineage_edges (to_node, id);
