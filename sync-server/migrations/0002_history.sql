-- History: versions, attribution and activity (store version 1, additive).

-- Whole states saved as versions. Ids come from one sequence: unique and
-- increasing across documents and nodes.
CREATE TABLE versions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    doc_id      bigint NOT NULL REFERENCES documents (id),
    -- auto | named | restore
    kind        text NOT NULL,
    label       text NOT NULL,
    description text,
    author      text NOT NULL,
    created_ms  bigint NOT NULL,
    -- The log entry the version reflects.
    seq         bigint NOT NULL,
    -- lib0 v2.
    state       bytea NOT NULL
);
CREATE INDEX versions_by_doc ON versions (doc_id, id);

-- Who wrote what, per document, author and minute: the Yjs item ids they
-- inserted and deleted (lib0 v1 id sets). Several rows for one author and
-- minute are allowed; readers merge them.
CREATE TABLE attribution (
    doc_id   bigint NOT NULL REFERENCES documents (id),
    minute   bigint NOT NULL,
    origin   text NOT NULL,
    updates  bigint NOT NULL,
    bytes    bigint NOT NULL,
    inserted bytea NOT NULL,
    deleted  bytea NOT NULL
);
CREATE INDEX attribution_by_doc ON attribution (doc_id, minute);

-- The per-workspace activity feed.
CREATE TABLE activity (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace text COLLATE "C" NOT NULL,
    document  text NOT NULL,
    actor     text NOT NULL,
    at_ms     bigint NOT NULL,
    -- The event's kind and fields, as the API shows them.
    event     jsonb NOT NULL
);
CREATE INDEX activity_by_workspace ON activity (workspace, id DESC);
