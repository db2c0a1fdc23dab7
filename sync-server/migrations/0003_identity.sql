-- Identity: users provisioned at first sign-in, explicit workspace roles,
-- and API keys (only their SHA-256 is stored). Additive.

CREATE TABLE identity_users (
    id             text PRIMARY KEY,
    name           text,
    first_seen_ms  bigint NOT NULL
);

CREATE TABLE identity_members (
    workspace  text NOT NULL,
    user_id    text NOT NULL,
    role       text NOT NULL,
    PRIMARY KEY (workspace, user_id)
);

CREATE TABLE identity_api_keys (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    hash          text NOT NULL UNIQUE,
    workspaces    text[] NOT NULL,
    role          text NOT NULL,
    created_by    text NOT NULL,
    created_ms    bigint NOT NULL,
    revoked_ms    bigint,
    last_used_ms  bigint
);
